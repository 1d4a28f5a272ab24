//! The writer thread starts the other background threads (spare preparer,
//! compactor, image writer, completer) at its first wake-up, not at open:
//! an open that only reads runs its first reads beside one thread of the
//! log's, the rest start by themselves soon after, and a first append that
//! needs a spare at once gets one. One test in this binary, so that the
//! threads counted are this test's alone.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use annals::{CompactionOptions, Expectation, IndexImageWrites, Log, Options, SegmentPreparation};

/// The names of this process's threads that are a log's (Linux); `None`
/// where `/proc` is missing.
fn log_threads() -> Option<Vec<String>> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let comm = std::fs::read_to_string(task.ok()?.path().join("comm")).unwrap_or_default();
        if comm.starts_with("annals-") {
            names.push(comm.trim_end().to_owned());
        }
    }
    names.sort();
    Some(names)
}

/// Every background thread on, in 8 KiB segments (records of 3,000 bytes:
/// the third append rolls over).
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

#[test]
fn an_open_that_only_reads_starts_one_thread_and_the_rest_follow_or_come_when_needed() {
    if log_threads().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let written = common::write_closed_log(dir.path(), options(), 6, 3000);
    // That log's threads are joined, but can stay listed for a moment
    // while they exit (a flake of stop 24's thread count).
    settle_to_none();

    // Right after open, only the writer thread, while the first reads run.
    // (A thread takes its name once it runs: the writer may not be listed
    // yet, and a helper it started would be listed under its name.)
    let opened = Instant::now();
    let log = Log::open(dir.path(), options()).unwrap();
    let read = log.read_stream("stream-0").unwrap();
    let threads = log_threads().unwrap();
    if opened.elapsed() < Duration::from_millis(30) {
        assert!(threads.is_empty() || threads == ["annals-writer"], "threads just after open: {threads:?}");
    }
    assert_eq!(read.entries.len(), 2);

    // Then the others start by themselves, with nothing written: a
    // bounded number of looks (a guard against a hang, not a figure).
    let all = ["annals-compacto", "annals-complete", "annals-image", "annals-spare", "annals-writer"];
    let started = (0..1000).any(|_| {
        let found = log_threads().unwrap() == all;
        if !found {
            std::thread::sleep(Duration::from_millis(5));
        }
        found
    });
    assert!(started, "threads after 1,000 looks 5 ms apart: {:?}", log_threads());
    drop(log);

    // A first append that rolls over at once, blocking (it leads its own
    // group and waits for the spare): the preparer starts when asked.
    // Done on another thread, so that a hang fails the test.
    let (done, finished) = mpsc::channel();
    let path = dir.path().to_owned();
    let appender = std::thread::spawn(move || {
        let log = Log::open(&path, options()).unwrap();
        let lsns: Vec<_> = (0..4u64)
            .map(|i| log.append("s", Expectation::Any, common::unique_payload(100 + i, 3000)).wait().unwrap().lsn)
            .collect();
        drop(log);
        done.send(lsns).unwrap();
    });
    let lsns = finished.recv_timeout(Duration::from_secs(20)).expect("the appends that rolled over finished");
    appender.join().unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    let all_read = log.read_all(annals::Lsn::ZERO, usize::MAX).unwrap();
    assert_eq!(all_read[..written.len()], written[..]);
    assert_eq!(all_read[written.len()..].iter().map(|r| r.lsn).collect::<Vec<_>>(), lsns);
    drop(log);
    settle_to_none();
    assert_eq!(log_threads().unwrap(), Vec::<String>::new(), "every thread joined");
}

/// Waits up to half a second for no log thread to be listed: a joined
/// thread can stay listed for a moment while it exits.
fn settle_to_none() {
    let deadline = Instant::now() + Duration::from_millis(500);
    while !log_threads().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}
