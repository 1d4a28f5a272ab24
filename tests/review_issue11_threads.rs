//! The writer thread starts the spare preparer, compactor and image writer
//! (issue 11): a log closed or dropped at once, compacted or imaged before
//! they run, or rolled over by its first append, joins every thread it
//! started and loses nothing. One test in this binary, so that the count of
//! the process's threads is this test's alone.

mod common;

use std::path::Path;

use annals::{CompactionOptions, Expectation, IndexImageWrites, Log, Lsn, Options, SegmentPreparation};

/// The threads of this process (Linux); `None` where `/proc` is missing.
fn threads() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/task").ok()?.count())
}

/// [`threads`] once it is `expected`, or after half a second: a thread
/// already joined can still be listed for a moment while it exits (one of
/// the test's own, joined, failed the count one run in about forty on a
/// loaded machine: CI, stop 24), while a thread left running, parked on
/// the log's conditions, stays.
fn settled(expected: Option<usize>) -> Option<usize> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    loop {
        let now = threads();
        if now == expected || std::time::Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Every background thread on: spares ahead of need, compaction and images
/// in the background. Records of 3,000 bytes in 8 KiB segments: a session's
/// first append often rolls over, and waits for the preparer.
fn options() -> Options {
    Options {
        segment_bytes: 8192,
        record_bytes_max: 4096,
        segment_preparation: SegmentPreparation::Background,
        compaction: CompactionOptions { background: true, ..CompactionOptions::default() },
        index_image: IndexImageWrites::Background,
        ..Options::default()
    }
}

fn append(log: &Log, i: u64) -> Lsn {
    log.append(format!("s{}", i % 2), Expectation::Any, common::unique_payload(i, 3000)).wait().unwrap().lsn
}

/// One session in each of the ways a session can end soon after open.
fn sessions(dir: &Path, round: u64, acked: &mut Vec<Lsn>) {
    // Dropped at once, never used.
    drop(Log::open(dir, options()).unwrap());
    // Closed at once, from another thread than the opener's.
    let log = Log::open(dir, options()).unwrap();
    std::thread::scope(|scope| {
        scope.spawn(|| log.close().wait().unwrap());
    });
    drop(log);
    // A compaction and an image asked for before the helpers can have run.
    let log = Log::open(dir, options()).unwrap();
    log.compact().unwrap();
    log.write_index_image().unwrap();
    log.close().wait().unwrap();
    drop(log);
    // The first append rolls over (every other session), then dropped without close.
    let log = Log::open(dir, options()).unwrap();
    acked.push(append(&log, round * 2));
    acked.push(append(&log, round * 2 + 1));
    drop(log);
    // A clone outliving the original, dropped on another thread.
    let log = Log::open(dir, options()).unwrap();
    let clone = log.clone();
    drop(log);
    std::thread::spawn(move || drop(clone)).join().unwrap();
}

#[test]
fn sessions_ended_right_after_open_join_every_thread_they_started_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    // Once first: whatever a process starts once (and keeps) is not a leak.
    sessions(dir.path(), 0, &mut acked);
    let before = threads();
    for round in 1..25 {
        sessions(dir.path(), round, &mut acked);
    }
    assert_eq!(settled(before), before, "threads left running after 120 sessions");
    let log = Log::open(dir.path(), options()).unwrap();
    let lsns: Vec<Lsn> = log.read_all(Lsn::ZERO, usize::MAX).unwrap().iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, acked, "every acknowledged record, in order, and no other");
    log.close().wait().unwrap();
}
