//! Bugs the `lifecycle` fuzz target found, one test each, named after the
//! bug. Each drives the engine on the simulated file system (`annals::sim`)
//! to the point the fuzzer reached, and asserts what the crash model asks:
//! "a crash during recovery is harmless" (CRASH-MODEL.md, rule 5).

use std::sync::Arc;

use annals::fs::FileSystem;
use annals::sim::fs::{CrashMode, SimFs};
use annals::sim::rng::SimRng;
use annals::{Expectation, Log, Options, SegmentPreparation};

fn options(fs: &SimFs) -> Options {
    Options {
        segment_bytes: 8192,
        record_bytes_max: 4096,
        segment_preparation: SegmentPreparation::Inline,
        file_system: Arc::new(fs.clone()),
        ..Options::default()
    }
}

/// Opens the log on `image` with the disk freezing `crash_after` mutating
/// operations into the open, then returns every image a power cut at that
/// point could leave in which unsynced sectors read as zeros or garbage
/// (`CrashMode::Garbage`, one per seed).
fn images_of_a_crash_in_the_open(image: &SimFs, crash_after: u64) -> Vec<SimFs> {
    let during = image.crash_image(CrashMode::Drop, &mut SimRng::new(0));
    during.crash_after(crash_after);
    let opened = Log::open(annals::sim::sim_dir(), options(&during));
    during.crash_now(); // before a log that opened closes itself
    drop(opened);
    (0..16).map(|seed| during.crash_image(CrashMode::Garbage, &mut SimRng::new(seed))).collect()
}

/// Every open after a crash rewrites in place the frames of the newest
/// segment that no later frame vouches durable (`resync_tail`: they may sit
/// in the page cache after a failed fsync), then syncs them. With `Sync`
/// appends those are the last acknowledged ones, durable before they were
/// acknowledged; a power cut during the rewrite leaves their sectors zeros
/// or garbage, and the next open loses the acknowledged record (or reports
/// corruption: "log ends at lsn N, but every lsn below M was recorded
/// durable"). ARCHITECTURE.md says no segment is ever rewritten at an
/// acknowledged offset. Found by the `lifecycle` target (a crash in the
/// open after a crash).
#[test]
fn a_crash_while_recovery_resyncs_the_tail_loses_an_acknowledged_append() {
    let dir = annals::sim::sim_dir();
    let fs = SimFs::new();
    let log = Log::open(dir, options(&fs)).unwrap();
    let acked = log.append("s", Expectation::Any, vec![7u8; 1500]).wait().unwrap();
    fs.crash_now(); // a power cut: dropping the log can close it cleanly no more
    drop(log);
    let crashed = fs.crash_image(CrashMode::Drop, &mut SimRng::new(0));
    for crash_after in 1..=8 {
        for (seed, image) in images_of_a_crash_in_the_open(&crashed, crash_after).into_iter().enumerate() {
            let reopened = Log::open(dir, options(&image)).unwrap_or_else(|error| {
                panic!("crash {crash_after} operations into the open, garbage image {seed}: open failed: {error}")
            });
            let record = reopened.read_lsn(acked.lsn).unwrap();
            assert_eq!(
                record.map(|r| r.payload.to_vec()),
                Some(vec![7u8; 1500]),
                "crash {crash_after} operations into the open, garbage image {seed}: the acknowledged append is gone"
            );
        }
    }
}

/// An open that finds files a compaction left (a `.compacting` output, the
/// inputs of a committed compaction, outputs of another generation) first
/// rewrites the whole state file in place with one 1,024-byte write
/// (`resync_state_file`) and syncs it. The state file keeps two slots so
/// that "a torn write damages only the slot being written and the other
/// keeps the previous state" (segments-format.md, section 5); this write
/// covers both, and a power cut during it leaves neither valid: every later
/// open fails with "bad state file" and the log cannot be opened. Found by
/// the `lifecycle` target (a crash in the open after a crash in a compaction).
#[test]
fn a_crash_while_recovery_resyncs_the_state_file_destroys_both_slots() {
    let dir = annals::sim::sim_dir();
    let fs = SimFs::new();
    let log = Log::open(dir, options(&fs)).unwrap();
    let acked = log.append("s", Expectation::Any, &b"kept"[..]).wait().unwrap();
    log.close().wait().unwrap();
    drop(log);
    // What a compaction interrupted before its commit leaves: an output
    // being written, which the next read-write open deletes.
    let leftover = dir.join("00000000000000000001-0000000001.seg.compacting");
    fs.create(&leftover).unwrap().sync_data().unwrap();
    fs.sync_dir(dir).unwrap();
    let closed = fs.crash_image(CrashMode::Drop, &mut SimRng::new(0));
    for crash_after in 1..=8 {
        for (seed, image) in images_of_a_crash_in_the_open(&closed, crash_after).into_iter().enumerate() {
            let reopened = Log::open(dir, options(&image)).unwrap_or_else(|error| {
                panic!("crash {crash_after} operations into the open, garbage image {seed}: open failed: {error}")
            });
            assert!(
                reopened.read_lsn(acked.lsn).unwrap().is_some(),
                "crash {crash_after} operations into the open, garbage image {seed}: the acknowledged append is gone"
            );
        }
    }
}
