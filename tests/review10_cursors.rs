//! Review 10: a named cursor committed while a compaction was under way
//! was checked against the trim before the compaction's, and the
//! compaction then trimmed below it: `commit_cursor` said yes, and the
//! records the cursor had not read were dropped.

mod common;

use std::sync::atomic::Ordering;

use annals::{CompactionOptions, Error, Expectation, Log, Lsn, Options};

fn options(fs: &common::FaultyFs) -> Options {
    Options {
        segment_bytes: 8192,
        record_bytes_max: 2048,
        compaction: CompactionOptions { background: false, ..CompactionOptions::default() },
        max_bytes: Some(32 << 10),
        cursor_lag_bytes_max: 1 << 30,
        ..fs.options()
    }
}

/// The compaction planned its trim with no cursor registered; while it
/// wrote its output (the writer free), a consumer committed a cursor below
/// that trim. The compaction must not drop what the cursor has not read.
#[test]
fn a_cursor_committed_while_a_compaction_wrote_its_output_was_trimmed_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let log = Log::open(dir.path(), options(&fs)).unwrap();
    for i in 0..400u64 {
        // Every record live (one stream each), so the output has frames
        // to write and the only thing dropped is the trim's.
        log.append(format!("s{i}"), Expectation::Any, vec![i as u8; 300]).wait().unwrap();
    }
    fs.faults.compacting_write_delay_ms.store(100, Ordering::SeqCst);
    let (started, writing) = std::sync::mpsc::channel();
    *fs.faults.compacting_write_started.lock().unwrap() = Some(started);
    let compacting = {
        let log = log.clone();
        std::thread::spawn(move || log.compact())
    };
    writing.recv().expect("the compaction writes its output");
    log.commit_cursor("consumer", Lsn(5)).wait().expect("nothing is trimmed yet");
    let report = compacting.join().unwrap().unwrap();
    assert!(report.trimmed_before <= Lsn(6), "the compaction trimmed under a registered cursor: {report:?}");
    let mut resumed = log.subscribe(Lsn(5)).unwrap();
    match resumed.next() {
        Some(Ok(record)) => assert_eq!(record.lsn, Lsn(6), "nothing the cursor had not read was dropped"),
        other => panic!("the cursor's consumer resumed with {other:?}"),
    }
    // A compaction that starts with the cursor registered holds back too.
    fs.faults.compacting_write_delay_ms.store(0, Ordering::SeqCst);
    let again = log.compact().unwrap();
    assert!(again.trimmed_before <= Lsn(6), "{again:?}");
    assert!(!matches!(log.subscribe(Lsn(5)).unwrap().next(), Some(Err(Error::Trimmed { .. }))));
    log.close().wait().unwrap();
}

/// The window the writer's own check closes: `commit_cursor` checked the
/// cursor against the trim, found it above, and queued its write; before
/// the writer took it, a compaction committed a trim above the cursor. The
/// compaction is held at its commit (the state file's fdatasync, with the
/// writer held) while the cursor is committed, so the write is queued
/// behind it every time. The writer must refuse it with `Trimmed` and write
/// nothing: no cursor registered, before or after a reopen.
#[test]
fn a_cursor_checked_before_a_compaction_committed_its_trim_is_refused_by_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let log = Log::open(dir.path(), options(&fs)).unwrap();
    for i in 0..400u64 {
        log.append(format!("s{i}"), Expectation::Any, vec![i as u8; 300]).wait().unwrap();
    }
    let (entered, at_commit) = std::sync::mpsc::channel();
    let (release, gate) = std::sync::mpsc::channel();
    *fs.faults.state_sync_gate.lock().unwrap() = Some((entered, gate));
    let compacting = {
        let log = log.clone();
        std::thread::spawn(move || log.compact())
    };
    at_commit.recv_timeout(std::time::Duration::from_secs(60)).expect("the compaction reaches its commit");
    // Checked against the trim before the compaction's: above it.
    let committed = log.commit_cursor("consumer", Lsn(5));
    release.send(()).unwrap();
    let report = compacting.join().unwrap().unwrap();
    assert!(report.trimmed_before > Lsn(6), "the compaction trimmed nothing: {report:?}");
    match committed.wait() {
        Err(Error::Trimmed { after, .. }) => assert_eq!(after, Lsn(5)),
        other => panic!("a cursor below a committed trim was answered {other:?}"),
    }
    assert_eq!(log.cursor("consumer").unwrap(), None, "a refused commit wrote its cursor");
    log.close().wait().unwrap();
    drop(log);
    let log = Log::open(dir.path(), options(&fs)).unwrap();
    assert_eq!(log.cursor("consumer").unwrap(), None, "a refused commit's cursor came back after a reopen");
    log.close().wait().unwrap();
}
