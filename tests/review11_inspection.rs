//! Review 11: inspection (`annals verify`, `repair`, `dump --salvage`) of
//! logs that are fine: beside a writer that compacts, and after
//! compactions that leave nothing or trim a prefix.
//!
//! Each test is named after what it attacks; one that found a bug failed
//! before the fix.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use annals::{Expectation, Log, LogReader, Lsn, Options};

fn options() -> Options {
    common::small_options()
}

/// A read-only scan of the whole log (`annals verify`), and the intact
/// scan (`annals repair`, `dump --salvage`), of a log a writer compacts
/// again and again meanwhile: neither reports damage the log does not have.
#[test]
fn verify_beside_a_writer_that_compacts_reports_no_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), options()).unwrap());
    common::fill_worth_compacting(&log, 10, "warm");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) && round < 200 {
                common::fill_worth_compacting(&log, 3, &format!("r{}", round % 4));
                log.delete_stream(format!("r{}-0", (round + 1) % 4)).wait().unwrap();
                log.compact().unwrap();
                round += 1;
            }
            round
        })
    };
    let mut scans = 0;
    while !writer.is_finished() && scans < 60 {
        let reader = LogReader::open_scanning(dir.path(), &options()).unwrap();
        assert!(reader.problems().is_empty(), "scan {scans}: {:?}", reader.problems());
        scans += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    assert!(rounds > 0 && scans > 0, "{rounds} rounds, {scans} scans");
    let log = Arc::into_inner(log).unwrap();
    log.close().wait().unwrap();
    let scan = annals::inspect::scan_intact(&annals::fs::RealFs, dir.path(), |_, _, _| {}).unwrap();
    assert!(scan.damage.is_empty(), "{:?}", scan.damage);
}

/// A compaction that drops every record of its inputs writes no compacted
/// segment: the log is fine, and every inspection says so.
#[test]
fn a_compaction_that_keeps_nothing_leaves_a_log_every_inspection_calls_intact() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    for i in 0..60u64 {
        log.append("gone", Expectation::Any, common::unique_payload(i, 300)).wait().unwrap();
    }
    log.delete_stream("gone").wait().unwrap();
    for i in 0..30u64 {
        log.append("filler", Expectation::Any, common::unique_payload(1000 + i, 300)).wait().unwrap();
    }
    log.delete_stream("filler").wait().unwrap();
    log.append("kept", Expectation::Any, &b"kept"[..]).wait().unwrap();
    let report = log.compact().unwrap();
    assert!(report.generation > 0, "{report:?}");
    let live = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    log.close().wait().unwrap();
    let scan = annals::inspect::scan_intact(&annals::fs::RealFs, dir.path(), |_, _, _| {}).unwrap();
    assert!(scan.damage.is_empty(), "{:?}", scan.damage);
    let reader = LogReader::open_scanning(dir.path(), &options()).unwrap();
    assert!(reader.problems().is_empty(), "{:?}", reader.problems());
    let log = Log::open(dir.path(), options()).unwrap();
    assert_eq!(log.read_all(Lsn::ZERO, usize::MAX).unwrap(), live);
    // Compacted again, with nothing new to drop, and reopened.
    log.compact().unwrap();
    log.close().wait().unwrap();
    let scan = annals::inspect::scan_intact(&annals::fs::RealFs, dir.path(), |_, _, _| {}).unwrap();
    assert!(scan.damage.is_empty(), "{:?}", scan.damage);
}

/// A log whose prefix log-wide retention trimmed (max_bytes) is fine: the
/// intact scan calls it complete, and a repair copies every live record.
#[test]
fn a_log_with_a_trimmed_prefix_is_intact_for_repair() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { max_bytes: Some(40_000), ..options() };
    let log = Log::open(dir.path(), options.clone()).unwrap();
    for i in 0..400u64 {
        log.append(format!("s-{}", i % 7), Expectation::Any, common::unique_payload(i, 300)).wait().unwrap();
    }
    let report = log.compact().unwrap();
    assert!(report.trimmed_before > Lsn::ZERO, "{report:?}");
    for i in 0..40u64 {
        log.append(format!("s-{}", i % 7), Expectation::Any, common::unique_payload(5000 + i, 300)).wait().unwrap();
    }
    log.compact().unwrap();
    let live = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    log.close().wait().unwrap();
    let scan = annals::inspect::scan_intact(&annals::fs::RealFs, dir.path(), |_, _, _| {}).unwrap();
    assert!(scan.damage.is_empty(), "{:?}", scan.damage);
    let into = tempfile::tempdir().unwrap();
    let into = into.path().join("copy");
    annals::inspect::repair(dir.path(), &into, options.clone()).unwrap();
    let copy = Log::open(&into, options).unwrap();
    assert_eq!(
        copy.read_all(Lsn::ZERO, usize::MAX).unwrap().iter().map(|r| (r.lsn, r.payload.clone())).collect::<Vec<_>>(),
        live.iter().map(|r| (r.lsn, r.payload.clone())).collect::<Vec<_>>()
    );
}

/// A compaction's input left behind (its removal failed, as
/// `CompactionReport::leftovers` reports, or a crash came between the
/// state file's commit and the removal; the writer's next open removes
/// it) is not one of the log's segments: recovery skips it, and a
/// reader's refresh must not take it for a change and read the whole log
/// again at every refresh (`annals tail --follow` at every poll).
#[test]
fn a_compaction_input_left_behind_made_every_reader_refresh_read_the_whole_log_again() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    common::fill_worth_compacting(&log, 10, "wf");
    let first = common::segment_files(dir.path()).remove(0);
    let bytes = std::fs::read(&first).unwrap();
    let report = log.compact().unwrap();
    assert!(report.generation > 0 && !first.exists(), "{report:?}");
    std::fs::write(&first, bytes).unwrap();
    let mut reader = LogReader::open_with(dir.path(), &fs.options()).unwrap();
    let live = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), live, "the reader skips the leftover");
    reader.refresh().unwrap();
    let reads = fs.faults.reads.load(Ordering::SeqCst);
    for _ in 0..3 {
        assert!(!reader.refresh().unwrap(), "nothing was appended");
    }
    assert_eq!(fs.faults.reads.load(Ordering::SeqCst), reads, "a refresh read the log again");
    log.append("wf-0", Expectation::Any, &b"after"[..]).wait().unwrap();
    assert!(reader.refresh().unwrap(), "an append is still seen");
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap().len(), live.len() + 1);
    log.close().wait().unwrap();
}
