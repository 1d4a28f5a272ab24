//! Flush acknowledges without an fsync; Periodic is synced by the writer
//! within the interval; Sync fsyncs before acknowledging.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use annals::sim::fs::{CrashMode, SimFs};
use annals::sim::rng::SimRng;
use annals::{Durability, Expectation, Log, Lsn, Options, SegmentPreparation};
use common::FaultyFs;

#[test]
fn sync_appends_fsync_and_flush_appends_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    let before = fs.faults.syncs.load(Ordering::SeqCst);
    // The first takes an LSN lease in the state file: one synced sector per 2^20 LSNs.
    log.append_with("s", Expectation::Any, &b"f"[..], Durability::Flush).wait().unwrap();
    assert_eq!(fs.faults.syncs.load(Ordering::SeqCst), before + 1);
    for _ in 0..4 {
        log.append_with("s", Expectation::Any, &b"f"[..], Durability::Flush).wait().unwrap();
    }
    let before = before + 1;
    assert_eq!(fs.faults.syncs.load(Ordering::SeqCst), before);
    assert_eq!(log.read_stream("s").unwrap().entries.len(), 5, "flushed appends are readable at once");
    log.append_with("s", Expectation::Any, &b"s"[..], Durability::Sync).wait().unwrap();
    assert_eq!(fs.faults.syncs.load(Ordering::SeqCst), before + 1);
}

#[test]
fn periodic_appends_are_synced_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::default();
    let options = Options { durability: Durability::Periodic, fsync_interval_ms: 5, ..fs.options() };
    let log = Log::open(dir.path(), options).unwrap();
    let before = fs.faults.syncs.load(Ordering::SeqCst);
    log.append("s", Expectation::Any, &b"p"[..]).wait().unwrap();
    // A liveness bound, not a measurement: the sync is due after 5 ms.
    let mut polls = 0;
    while fs.faults.syncs.load(Ordering::SeqCst) == before {
        polls += 1;
        assert!(polls < 5_000, "the periodic fsync never ran");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Small logs on a simulated disk, so that a test can cut the power.
fn sim_options(fs: &SimFs) -> Options {
    Options {
        file_system: std::sync::Arc::new(fs.clone()),
        segment_preparation: SegmentPreparation::Inline,
        ..common::small_options()
    }
}

/// Issue 9, case 4, for appends acknowledged before they are synced: a
/// power cut may take `Flush` records (that is their contract), but their
/// LSNs were acknowledged, so the log must never hand them out again for
/// other content. The state file's LSN lease makes the log resume past them.
#[test]
fn flushed_records_lost_in_a_power_cut_leave_their_lsns_unused() {
    let fs = SimFs::new();
    let log = Log::open(annals::sim::sim_dir(), sim_options(&fs)).unwrap();
    let durable = log.append("s", Expectation::Any, &b"synced"[..]).wait().unwrap();
    let mut flushed = Vec::new();
    for i in 0..5u8 {
        flushed.push(log.append_with("s", Expectation::Any, vec![i; 10], Durability::Flush).wait().unwrap());
    }
    fs.crash_now();
    drop(log);
    let image = fs.crash_image(CrashMode::Drop, &mut SimRng::new(1));
    let reopened = Log::open(annals::sim::sim_dir(), sim_options(&image)).unwrap();
    let kept = reopened.read_all(Lsn::ZERO, usize::MAX).unwrap();
    assert_eq!(kept.len(), 1, "the power cut took the unsynced records (their contract)");
    assert_eq!(kept[0].lsn, durable.lsn);
    let next = reopened.append("s", Expectation::Any, &b"after the cut"[..]).wait().unwrap();
    let highest = flushed.iter().map(|a| a.lsn).max().unwrap();
    assert!(next.lsn > highest, "lsn {} was handed out again (acknowledged up to {})", next.lsn, highest);
}

/// A log that only ever acknowledges synced records takes no lease and
/// keeps its LSNs dense across a crash.
#[test]
fn synced_records_keep_lsns_dense_across_a_crash() {
    let fs = SimFs::new();
    let log = Log::open(annals::sim::sim_dir(), sim_options(&fs)).unwrap();
    for _ in 0..3 {
        log.append("s", Expectation::Any, &b"synced"[..]).wait().unwrap();
    }
    fs.crash_now();
    drop(log);
    let image = fs.crash_image(CrashMode::Drop, &mut SimRng::new(2));
    let reopened = Log::open(annals::sim::sim_dir(), sim_options(&image)).unwrap();
    assert_eq!(reopened.recovery_report().resumes_at, None);
    assert_eq!(reopened.append("s", Expectation::Any, &b"next"[..]).wait().unwrap().lsn, Lsn(4));
}
