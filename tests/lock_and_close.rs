//! One writer (one handle) at a time per directory; close releases it at
//! once even while clones live. Readers take no lock: they neither wait for
//! a writer nor keep one out.

mod common;

use annals::{Error, Expectation, Log, LogReader};

#[test]
fn a_second_opener_gets_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _log = common::open(dir.path());
    assert!(matches!(Log::open(dir.path(), common::small_options()), Err(Error::Locked { .. })));
}

#[test]
fn close_while_clones_live_releases_the_lock_and_fails_the_clones() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let clone = log.clone();
    log.append("s", Expectation::Any, &b"kept"[..]).wait().unwrap();
    log.close().wait().unwrap();
    assert!(matches!(clone.append("s", Expectation::Any, &b"late"[..]).wait(), Err(Error::Closed)));
    assert!(matches!(clone.check_open(), Err(Error::Closed)));
    let reopened = Log::open(dir.path(), common::small_options()).expect("the lock was released while a clone lives");
    assert_eq!(reopened.read_stream("s").unwrap().entries.len(), 1);
    assert!(clone.close().wait().is_ok(), "closing twice is harmless");
}

#[test]
fn dropping_the_last_handle_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let clone = log.clone();
    drop(log);
    assert!(
        matches!(Log::open(dir.path(), common::small_options()), Err(Error::Locked { .. })),
        "a clone still holds it"
    );
    drop(clone);
    Log::open(dir.path(), common::small_options()).unwrap();
}

/// Issue 9, case 7: inspection failed beside a live writer. A reader opens
/// while the writer runs, sees what was acknowledged before it opened, and
/// a writer opens while a reader lives.
#[tokio::test]
async fn a_reader_opens_beside_a_live_writer_and_a_writer_beside_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    log.append("s", Expectation::Any, &b"x"[..]).await.unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.read_all(annals::Lsn::ZERO, 10).unwrap().len(), 1);
    assert!(reader.problems().is_empty(), "{:?}", reader.problems());
    log.append("s", Expectation::Any, &b"y"[..]).await.unwrap();
    log.close().await.unwrap();
    let reopened = Log::open(dir.path(), common::small_options()).expect("a reader keeps no writer out");
    assert_eq!(reopened.next_seq("s").unwrap(), annals::StreamSeq(2));
}

/// A clone's reads after `close()` served the closed log's index, which
/// another process may have changed since (issue 12, point 3): they fail
/// with `Closed`.
#[test]
fn reads_of_a_closed_log_fail_with_closed() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let clone = log.clone();
    log.append("s", Expectation::Any, &b"x"[..]).wait().unwrap();
    log.close().wait().unwrap();
    assert!(matches!(clone.read_stream("s"), Err(Error::Closed)));
    assert!(matches!(clone.read_all(annals::Lsn::ZERO, 10), Err(Error::Closed)));
    assert!(matches!(clone.read_lsn(annals::Lsn(1)), Err(Error::Closed)));
    assert!(matches!(clone.latest("s"), Err(Error::Closed)));
    assert!(matches!(clone.read_stream_from("s", annals::StreamSeq(0)), Err(Error::Closed)));
    assert!(matches!(clone.list_streams(""), Err(Error::Closed)));
    assert!(matches!(clone.cursors(), Err(Error::Closed)));
}

/// The index's other answers, the streams with their next sequence and the
/// last LSN, were plain values: a clone of a closed log still gave the
/// figures of the moment it closed, which another process may have moved
/// on since. They fail with `Closed` too.
#[test]
fn listing_streams_and_lsns_of_a_closed_log_fail_with_closed() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let clone = log.clone();
    log.append("s", Expectation::Any, &b"x"[..]).wait().unwrap();
    assert_eq!(clone.next_seq("s").unwrap(), annals::StreamSeq(1));
    assert_eq!(clone.last_lsn().unwrap(), annals::Lsn(1));
    assert_eq!(clone.streams("").unwrap().len(), 1);
    log.close().wait().unwrap();
    assert!(matches!(clone.next_seq("s"), Err(Error::Closed)));
    assert!(matches!(clone.last_lsn(), Err(Error::Closed)));
    assert!(matches!(clone.streams(""), Err(Error::Closed)));
}

/// The read-only handle reads streams, records by LSN and lists streams
/// beside a live writer (issue 12, point 3).
#[test]
fn a_reader_reads_streams_and_lists_them_beside_a_live_writer() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    for i in 0..5u64 {
        log.append(format!("run-{}", i % 2), Expectation::Any, vec![i as u8; 10]).wait().unwrap();
    }
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.read_stream("run-0").unwrap().entries.len(), 3);
    assert_eq!(reader.read_stream_from("run-1", annals::StreamSeq(1)).unwrap().len(), 1);
    assert_eq!(reader.read_lsn(annals::Lsn(2)).unwrap().unwrap().stream, &b"run-1"[..]);
    let listed: Vec<(Vec<u8>, u64)> = reader.streams("run-").into_iter().map(|(s, n)| (s.to_vec(), n.0)).collect();
    assert_eq!(listed, vec![(b"run-0".to_vec(), 3), (b"run-1".to_vec(), 2)]);
    assert_eq!(log.streams("").unwrap().len(), 2);
}

/// Closing a log and opening it again while another thread of the program
/// starts processes: a child forked at that moment shares the released
/// lock until it runs its program, and the reopen got `Locked` (seen in
/// the command-line tests). The open waits that moment out.
#[test]
fn a_reopen_while_another_thread_starts_processes_is_not_refused_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spawner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::process::Command::new("true").status();
            }
        })
    };
    for round in 0..200 {
        let log = Log::open(dir.path(), common::small_options())
            .unwrap_or_else(|error| panic!("reopen {round} beside process starts: {error}"));
        drop(log);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spawner.join().unwrap();
}
