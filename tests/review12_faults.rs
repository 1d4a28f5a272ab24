//! Review 12: resource faults (a full disk, an I/O error) on the writes
//! that are not user records: compaction outputs, the index image, the
//! state file's slots, spare segments.
//!
//! Each test is named after what it attacks; one that found a bug failed
//! before the fix.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;

use annals::{Error, Expectation, Log, Lsn};

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn stray(dir: &Path) -> Vec<String> {
    names(dir).into_iter().filter(|name| name.ends_with(".compacting") || name.ends_with(".tmp")).collect()
}

/// What a failed compaction must leave: the log open for appends, no
/// output file, and a reopen reading exactly the live records.
fn assert_compaction_fault_harmless(dir: &Path, fs: &common::FaultyFs, log: Log, error: Error, what: &str) {
    assert!(!matches!(error, Error::Poisoned { .. }), "{what}: a compaction output fault poisoned the log: {error}");
    let live = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    for fault in [&fs.faults.fail_writes, &fs.faults.fail_syncs, &fs.faults.fail_dir_syncs] {
        fault.store(false, Ordering::SeqCst);
    }
    fs.faults.fail_dir_sync_number.store(0, Ordering::SeqCst);
    let after = log.append("after", Expectation::Any, &b"after the fault"[..]).wait();
    assert!(after.is_ok(), "{what}: an append after the fault failed: {after:?}");
    let live_after = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    assert_eq!(live_after.len(), live.len() + 1, "{what}");
    assert_eq!(stray(dir), Vec::<String>::new(), "{what}: files left behind");
    log.close().wait().unwrap();
    drop(log);
    let log = Log::open(dir, fs.options()).unwrap();
    assert_eq!(log.read_all(Lsn::ZERO, usize::MAX).unwrap(), live_after, "{what}");
    let report = log.compact().unwrap();
    assert!(report.generation > 0, "{what}: the next compaction did nothing: {report:?}");
}

fn log_worth_compacting(dir: &Path, fs: &common::FaultyFs) -> Log {
    let log = Log::open(dir, fs.options()).unwrap();
    common::fill_worth_compacting(&log, 8, "w");
    log
}

#[test]
fn a_full_disk_while_a_compaction_writes_its_output_fails_only_the_compaction() {
    for kind in [1, 0] {
        let dir = tempfile::tempdir().unwrap();
        let fs = common::FaultyFs::default();
        let log = log_worth_compacting(dir.path(), &fs);
        fs.faults.error_kind.store(kind, Ordering::SeqCst);
        fs.faults.fail_writes.store(true, Ordering::SeqCst);
        let error = log.compact().unwrap_err();
        if kind == 1 {
            assert!(matches!(error, Error::DiskFull { .. }), "{error}");
        }
        assert_compaction_fault_harmless(dir.path(), &fs, log, error, &format!("write fault kind {kind}"));
    }
}

#[test]
fn a_failed_fsync_of_a_compaction_output_fails_only_the_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let log = log_worth_compacting(dir.path(), &fs);
    // The compaction's own sync of the log comes first: fail only the
    // output's, by failing syncs once the output is being written.
    let (started, written) = std::sync::mpsc::channel();
    *fs.faults.compacting_write_started.lock().unwrap() = Some(started);
    let faults = fs.faults.clone();
    let watcher = std::thread::spawn(move || {
        if written.recv().is_ok() {
            faults.fail_syncs.store(true, Ordering::SeqCst);
        }
    });
    fs.faults.compacting_write_delay_ms.store(50, Ordering::SeqCst);
    let error = log.compact().unwrap_err();
    watcher.join().unwrap();
    fs.faults.compacting_write_delay_ms.store(0, Ordering::SeqCst);
    assert_compaction_fault_harmless(dir.path(), &fs, log, error, "output fsync");
}

#[test]
fn a_failed_directory_fsync_after_a_compaction_renamed_its_outputs_fails_only_the_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let log = log_worth_compacting(dir.path(), &fs);
    // Every directory sync from now on fails: the first is the one after
    // the outputs' renames.
    fs.faults.fail_dir_syncs.store(true, Ordering::SeqCst);
    let error = log.compact().unwrap_err();
    assert_compaction_fault_harmless(dir.path(), &fs, log, error, "directory fsync after the renames");
}

/// A compaction that gave up after renaming its outputs into place (its
/// directory sync failed) and could not remove them (every unlink failed,
/// or the listing to find them did) left files named as compacted
/// segments of the generation it did not commit. The next compaction in
/// the same session commits that generation with other outputs: the
/// leftovers then passed for part of the log, and the log, clean, no
/// longer opened (a compacted segment below the oldest: corruption).
#[test]
fn a_compaction_after_one_whose_outputs_could_not_be_removed_leaves_a_log_that_opens() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let log = log_worth_compacting(dir.path(), &fs);
    fs.faults.fail_dir_syncs.store(true, Ordering::SeqCst);
    fs.faults.fail_removes.store(true, Ordering::SeqCst);
    let error = log.compact().unwrap_err();
    assert!(!matches!(error, Error::Poisoned { .. }), "{error}");
    fs.faults.fail_dir_syncs.store(false, Ordering::SeqCst);
    // While they cannot be removed, a compaction of that generation fails
    // before it writes anything.
    let error = log.compact().unwrap_err();
    assert!(!matches!(error, Error::Poisoned { .. }), "{error}");
    fs.faults.fail_removes.store(false, Ordering::SeqCst);
    let left: Vec<String> = names(dir.path()).into_iter().filter(|name| name.contains('-')).collect();
    // The first live record's stream goes: the next compaction's outputs
    // start later, under other names.
    let first = log.read_all(Lsn::ZERO, 1).unwrap().remove(0);
    log.delete_stream(&first.stream).wait().unwrap();
    common::fill_worth_compacting(&log, 8, "v");
    let report = log.compact();
    let live = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    log.close().wait().unwrap();
    drop(log);
    let reopened = Log::open(dir.path(), fs.options())
        .unwrap_or_else(|error| panic!("left {left:?}, then {report:?}: the log no longer opens: {error}"));
    assert_eq!(reopened.read_all(Lsn::ZERO, usize::MAX).unwrap(), live);
    let reader = annals::LogReader::open_scanning(dir.path(), &common::small_options()).unwrap();
    assert!(reader.problems().is_empty(), "{:?}", reader.problems());
}
