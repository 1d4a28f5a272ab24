//! A failed write or fsync poisons the log: the waiting append fails, every
//! later write fails without touching the disk, no fsync is retried, and a
//! reopen recovers.

mod common;

use std::sync::atomic::Ordering;

use annals::{Error, Expectation, Log, Lsn, StreamSeq};
use common::FaultyFs;

#[test]
fn an_injected_fsync_failure_poisons_the_log_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    log.append("s", Expectation::Any, &b"durable"[..]).wait().unwrap();
    fs.faults.fail_syncs.store(true, Ordering::SeqCst);
    let failed = log.append("s", Expectation::Any, &b"in doubt"[..]).wait();
    match failed {
        Err(Error::Poisoned { cause }) => assert!(matches!(*cause, Error::Io { op: "fdatasync", .. }), "{cause}"),
        other => panic!("expected poisoned, got {other:?}"),
    }
    fs.faults.fail_syncs.store(false, Ordering::SeqCst);
    let syncs = fs.faults.syncs.load(Ordering::SeqCst);
    for _ in 0..3 {
        assert!(matches!(log.append("s", Expectation::Any, &b"refused"[..]).wait(), Err(Error::Poisoned { .. })));
    }
    assert!(matches!(
        log.commit(annals::Batch::new().clear("s", Expectation::Any)).wait(),
        Err(Error::Poisoned { .. })
    ));
    assert_eq!(fs.faults.syncs.load(Ordering::SeqCst), syncs, "no fsync is retried after a failure");
    assert!(log.read_stream("s").unwrap().entries.len() == 1, "readers never saw the failed append");
    assert!(matches!(log.close().wait(), Err(Error::Poisoned { .. })));

    let reopened = Log::open(dir.path(), fs.options()).expect("the lock was released");
    let entries = reopened.read_stream("s").unwrap().entries;
    assert_eq!(entries[0].payload, &b"durable"[..]);
    // The failed append was written but not acknowledged: recovery may keep it
    // (it is in flight), and if it does it has synced it again before serving.
    if entries.len() == 2 {
        assert!(reopened.recovery_report().tail_bytes_resynced > 0);
    }
    assert!(entries.len() <= 2);
    reopened.append("s", Expectation::Exact(StreamSeq(entries.len() as u64)), &b"after"[..]).wait().unwrap();
}

#[test]
fn an_injected_write_failure_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    log.append("s", Expectation::Any, &b"one"[..]).wait().unwrap();
    fs.faults.fail_writes.store(true, Ordering::SeqCst);
    assert!(matches!(log.append("s", Expectation::Any, &b"two"[..]).wait(), Err(Error::Poisoned { .. })));
    fs.faults.fail_writes.store(false, Ordering::SeqCst);
    assert!(matches!(log.append("s", Expectation::Any, &b"three"[..]).wait(), Err(Error::Poisoned { .. })));
    assert_eq!(log.last_lsn().unwrap(), Lsn(1));
}

/// Preparing a spare segment writes no user data: a failed directory fsync
/// there fails the append that needed the segment, discards the spare and
/// leaves the log open (issue 9, case 5). Everything acknowledged stays.
#[test]
fn a_failed_directory_fsync_while_preparing_a_spare_fails_only_the_append() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    fs.faults.fail_dir_syncs.store(true, Ordering::SeqCst);
    let mut acked = 0u64;
    let failure = loop {
        match log.append("s", Expectation::Any, vec![0; 1000]).wait() {
            Ok(_) => acked += 1,
            Err(error) => break error,
        }
        assert!(acked < 100, "a rollover must have happened by now");
    };
    assert!(matches!(failure, Error::Io { .. }), "{failure}");
    log.check_open().expect("a spare's failure does not poison the log");
    let spares: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(spares.is_empty(), "a failed spare is removed: {spares:?}");
    fs.faults.fail_dir_syncs.store(false, Ordering::SeqCst);
    for _ in 0..20 {
        log.append("s", Expectation::Any, vec![1; 1000]).wait().unwrap();
    }
    assert_eq!(log.last_lsn().unwrap(), Lsn(acked + 20));
    log.close().wait().unwrap();
    let reopened = Log::open(dir.path(), fs.options()).unwrap();
    assert_eq!(reopened.next_seq("s").unwrap(), StreamSeq(acked + 20));
}

/// Once a new segment is renamed into place, a failed directory fsync
/// leaves its name maybe durable and maybe not. Nothing is ever written
/// into it: the append that needed it fails, the log stays open, and the
/// next append publishes a new segment over it. A crash in between leaves
/// an empty segment that chains onto the sealed one, which is harmless.
#[test]
fn a_failed_directory_fsync_after_publishing_a_segment_fails_the_append_and_writes_nothing_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    let dir_syncs = fs.faults.dir_syncs.load(Ordering::SeqCst);
    // Inline preparation: the spare's own directory fsync, then the publish's.
    fs.faults.fail_dir_sync_number.store(dir_syncs + 2, Ordering::SeqCst);
    let mut acked = 0u64;
    let failure = loop {
        match log.append("s", Expectation::Any, vec![0; 1000]).wait() {
            Ok(_) => acked += 1,
            Err(error) => break error,
        }
        assert!(acked < 100, "a rollover must have happened by now");
    };
    assert!(matches!(failure, Error::Io { .. }), "{failure}");
    assert_eq!(log.last_lsn().unwrap(), Lsn(acked), "everything before the rollover was acknowledged, nothing after");
    let crashed = tempfile::tempdir().unwrap();
    common::crash_image(dir.path(), crashed.path());
    let image = Log::open(crashed.path(), common::small_options()).expect("an empty published segment is harmless");
    assert_eq!(image.next_seq("s").unwrap(), StreamSeq(acked));
    drop(image);
    log.append("s", Expectation::Any, vec![1; 1000]).wait().expect("the next append publishes a new segment");
    log.close().wait().unwrap();
    let reopened = Log::open(dir.path(), fs.options()).unwrap();
    assert_eq!(reopened.next_seq("s").unwrap(), StreamSeq(acked + 1));
}

/// Issue 9, case 6: "reopen it" did not help a log poisoned by a full disk
/// or a read-only directory. The error names the cause and the remedy.
#[test]
fn a_poisoned_log_says_what_to_do_about_a_full_disk_or_a_read_only_directory() {
    for (kind, says) in
        [(1, "the disk is full: free space"), (2, "not writable"), (3, "not writable"), (0, "check the device")]
    {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::default();
        let log = Log::open(dir.path(), fs.options()).unwrap();
        log.append("s", Expectation::Any, &b"kept"[..]).wait().unwrap();
        fs.faults.error_kind.store(kind, Ordering::SeqCst);
        fs.faults.fail_syncs.store(true, Ordering::SeqCst);
        let error = log.append("s", Expectation::Any, &b"lost"[..]).wait().unwrap_err();
        assert!(matches!(error, Error::Poisoned { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains(says), "kind {kind}: {message}");
        assert!(message.contains("reopen the log"), "kind {kind}: {message}");
    }
}
