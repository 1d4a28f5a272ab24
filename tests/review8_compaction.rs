//! Review 8 of "a close waits for a compaction under way": the close holds
//! the writer while it waits for the compaction's mutex, and a compaction
//! takes the writer with `try_lock_for` in a loop that gives up once the
//! log closes. These try a compaction that must commit while appenders
//! keep the writer busy (it must not starve), and a close (or the last
//! handle dropped) while a background compaction reads, writes or waits
//! for the writer, with many clones appending: the close must end the
//! compaction, leave no compaction output behind, and the next open must
//! find everything acknowledged.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use annals::{CompactionOptions, Error, Expectation, Log, Lsn, Options, StreamSeq};

/// Appenders on their own threads, each to its own stream, until `stop`:
/// returns how many each had acknowledged, by stream.
fn appenders(log: &Log, count: usize, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<(String, u64)>> {
    (0..count)
        .map(|thread| {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let stream = format!("appender-{thread}");
                let mut acked = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    match log.append(&stream, Expectation::Exact(StreamSeq(acked)), vec![7u8; 100]).wait() {
                        Ok(_) => acked += 1,
                        Err(Error::Closed) => break,
                        Err(error) => panic!("{stream}: {error:?}"),
                    }
                }
                (stream, acked)
            })
        })
        .collect()
}

fn compacting_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".compacting"))
        .collect()
}

/// A compaction takes the writer for its decision and its commit with
/// `try_lock_for` in a loop: a steady stream of appends (blocking leaders,
/// each taking the writer with `try_lock`) must not keep it from ever
/// committing. Each of 10 on-demand compactions, run while 4 threads
/// append without pause, commits; the log is whole after a reopen. Prints
/// how long each took (the machine is shared: indicative only).
#[test]
fn a_compaction_commits_while_appenders_keep_the_writer_busy() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let threads = appenders(&log, 4, &stop);
    let mut took = Vec::new();
    let mut committed = 0;
    for round in 0..10u64 {
        common::fill_worth_compacting(&log, 6, &format!("round-{round}"));
        let started = Instant::now();
        let report = log.compact().unwrap();
        took.push(started.elapsed());
        committed += usize::from(report.generation > 0);
    }
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<(String, u64)> = threads.into_iter().map(|thread| thread.join().unwrap()).collect();
    println!("compactions under 4 appenders: {committed} of 10 committed, took {took:?}, appends {acked:?}");
    assert_eq!(committed, 10, "every compaction found something to compact and committed");
    log.close().wait().unwrap();
    drop(log);
    let reopened = common::open(dir.path());
    for (stream, count) in acked {
        assert_eq!(reopened.next_seq(&stream).unwrap(), StreamSeq(count), "{stream}");
    }
}

/// How a log ends in [`closing_under_a_background_compaction_leaves_the_log_whole`].
#[derive(Clone, Copy, Debug)]
enum Ending {
    Close,
    /// Every handle dropped: the last one closes as `close()` would.
    Drop,
}

/// A background compaction is throttled to a slow rate (so it is inside a
/// throttle pass, reading or writing) or slowed by its writes, while 4
/// clones append and prune; the log closes (or is dropped) mid-way. The
/// close must return (no deadlock with the compaction waiting for the
/// writer), no `.compacting` output may be left, and the next open must
/// hold every acknowledged append; a compaction of it commits.
fn closing_under_a_background_compaction_leaves_the_log_whole(ending: Ending, rate: u64, write_delay_ms: u64) {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let options = Options {
        compaction: CompactionOptions { background: true, dead_ratio: 0.1, bytes_per_second: rate, interval_ms: 5 },
        ..fs.options()
    };
    let log = Log::open(dir.path(), options.clone()).unwrap();
    common::fill_worth_compacting(&log, 20, "fill");
    fs.faults.compacting_write_delay_ms.store(write_delay_ms, Ordering::SeqCst);
    let writes_before = fs.faults.compacting_writes.load(Ordering::SeqCst);
    let stop = Arc::new(AtomicBool::new(false));
    let threads = appenders(&log, 4, &stop);
    // More dead records, and rollovers that poke the compactor.
    common::fill_worth_compacting(&log, 10, "more");
    let waited = Instant::now();
    while write_delay_ms > 0
        && fs.faults.compacting_writes.load(Ordering::SeqCst) == writes_before
        && waited.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (closed, acked) = match ending {
        Ending::Close => {
            let closed = log.close().wait();
            (closed, threads.into_iter().map(|thread| thread.join().unwrap()).collect::<Vec<_>>())
        }
        // The appenders' clones go first: the last handle dropped is this one.
        Ending::Drop => {
            stop.store(true, Ordering::SeqCst);
            (Ok(()), threads.into_iter().map(|thread| thread.join().unwrap()).collect())
        }
    };
    drop(log);
    closed.unwrap();
    assert_eq!(compacting_files(dir.path()), Vec::<String>::new(), "{ending:?}: a compaction's output left behind");
    fs.faults.compacting_write_delay_ms.store(0, Ordering::SeqCst);
    let reopened = Log::open(dir.path(), Options { compaction: CompactionOptions::default(), ..fs.options() }).unwrap();
    for (stream, count) in &acked {
        assert_eq!(reopened.next_seq(stream).unwrap(), StreamSeq(*count), "{ending:?}: {stream}");
    }
    let everything = reopened.read_all(Lsn::ZERO, usize::MAX).unwrap();
    reopened.compact().unwrap();
    assert_eq!(reopened.read_all(Lsn::ZERO, usize::MAX).unwrap(), everything, "{ending:?}");
    reopened.close().wait().unwrap();
}

/// Slow writes of a compaction's outputs: the close comes while it writes.
#[test]
fn a_close_while_a_background_compaction_writes_slowly_leaves_the_log_whole() {
    closing_under_a_background_compaction_leaves_the_log_whole(Ending::Close, 0, 50);
}

/// The same with the log's handles dropped instead of closed.
#[test]
fn dropping_every_handle_while_a_background_compaction_writes_leaves_the_log_whole() {
    closing_under_a_background_compaction_leaves_the_log_whole(Ending::Drop, 0, 50);
}

/// A background compaction throttled to 64 KiB/s is asleep in a throttle
/// pass when the close comes: the close wakes it (and must not wait out
/// its rate).
#[test]
fn a_close_while_a_throttled_background_compaction_sleeps_leaves_the_log_whole() {
    closing_under_a_background_compaction_leaves_the_log_whole(Ending::Close, 64 << 10, 0);
}

/// The close holds the writer while it waits for the compaction; an
/// on-demand compaction waiting for the writer at its decision must give
/// up, not deadlock. The writer is held inside an fsync (the sync gate)
/// while the compaction reaches its decision and the close is queued.
#[test]
fn a_close_queued_while_a_compaction_waits_for_the_writer_does_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    common::fill_worth_compacting(&log, 30, "fill");
    let expected = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (open_tx, open_rx) = std::sync::mpsc::channel();
    *fs.faults.sync_gate.lock().unwrap() = Some((entered_tx, open_rx));
    // An append whose fsync holds the writer.
    let held = {
        let log = log.clone();
        std::thread::spawn(move || log.append("held", Expectation::Any, "held").wait())
    };
    entered_rx.recv().unwrap();
    let compacting = {
        let log = log.clone();
        std::thread::spawn(move || log.compact())
    };
    let closing = {
        let log = log.clone();
        std::thread::spawn(move || log.close().wait())
    };
    // Let the compaction reach the writer and the close be queued, then
    // let the fsync finish.
    std::thread::sleep(Duration::from_millis(20));
    open_tx.send(()).unwrap();
    let held = held.join().unwrap();
    closing.join().unwrap().unwrap();
    let compacted = compacting.join().unwrap();
    assert!(held.is_ok(), "{held:?}");
    assert!(matches!(compacted, Ok(_) | Err(Error::Closed)), "{compacted:?}");
    drop(log);
    assert_eq!(compacting_files(dir.path()), Vec::<String>::new());
    let reopened = Log::open(dir.path(), fs.options()).unwrap();
    let mut now = reopened.read_all(Lsn::ZERO, usize::MAX).unwrap();
    assert_eq!(now.pop().map(|record| record.payload.to_vec()), Some(b"held".to_vec()));
    assert_eq!(now, expected);
}

/// The log poisoned (an fsync fails) while a background compaction writes
/// slowly and appenders run: the close answers `Poisoned` and still waits
/// for the compaction, which leaves no output behind; the next open finds
/// every acknowledged append.
#[test]
fn a_close_of_a_log_poisoned_while_a_compaction_writes_leaves_the_log_whole() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let options = Options {
        compaction: CompactionOptions { background: true, dead_ratio: 0.1, bytes_per_second: 0, interval_ms: 5 },
        ..fs.options()
    };
    let log = Log::open(dir.path(), options).unwrap();
    common::fill_worth_compacting(&log, 20, "fill");
    fs.faults.compacting_write_delay_ms.store(50, Ordering::SeqCst);
    let writes_before = fs.faults.compacting_writes.load(Ordering::SeqCst);
    common::fill_worth_compacting(&log, 10, "more");
    let waited = Instant::now();
    while fs.faults.compacting_writes.load(Ordering::SeqCst) == writes_before
        && waited.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let expected = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    fs.faults.fail_syncs.store(true, Ordering::SeqCst);
    let refused = log.append("poison", Expectation::Any, "x").wait();
    assert!(matches!(refused, Err(Error::Io { .. } | Error::Poisoned { .. })), "{refused:?}");
    let closed = log.close().wait();
    assert!(matches!(closed, Err(Error::Poisoned { .. })), "{closed:?}");
    drop(log);
    fs.faults.fail_syncs.store(false, Ordering::SeqCst);
    fs.faults.compacting_write_delay_ms.store(0, Ordering::SeqCst);
    assert_eq!(compacting_files(dir.path()), Vec::<String>::new(), "a compaction's output left behind");
    let reopened = Log::open(dir.path(), fs.options()).unwrap();
    let mut now = reopened.read_all(Lsn::ZERO, usize::MAX).unwrap();
    // The poisoning append's group was written, never acknowledged: it may be there.
    now.retain(|record| record.payload.as_ref() != b"x");
    assert_eq!(now, expected);
}

/// The same with 64 async appenders, whose groups the writer thread
/// commits (it takes the writer with a plain lock each round, and gathers
/// between rounds without it): each of 5 compactions commits.
#[test]
fn a_compaction_commits_while_64_async_appenders_keep_the_writer_thread_busy() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|task| {
            let (log, stop) = (log.clone(), stop.clone());
            runtime.spawn(async move {
                let stream = format!("async-{task}");
                let mut acked = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    log.append(&stream, Expectation::Exact(StreamSeq(acked)), vec![3u8; 100]).await.unwrap();
                    acked += 1;
                }
                (stream, acked)
            })
        })
        .collect();
    let mut took = Vec::new();
    for round in 0..5u64 {
        common::fill_worth_compacting(&log, 6, &format!("round-{round}"));
        let started = Instant::now();
        let report = log.compact().unwrap();
        took.push(started.elapsed());
        assert!(report.generation > 0, "round {round}: {report:?}");
    }
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<(String, u64)> = runtime.block_on(async {
        let mut acked = Vec::new();
        for task in tasks {
            acked.push(task.await.unwrap());
        }
        acked
    });
    let appends: u64 = acked.iter().map(|(_, count)| count).sum();
    println!("compactions under 64 async appenders: took {took:?}, {appends} appends meanwhile");
    log.close().wait().unwrap();
    drop(log);
    let reopened = common::open(dir.path());
    for (stream, count) in acked {
        assert_eq!(reopened.next_seq(&stream).unwrap(), StreamSeq(count), "{stream}");
    }
}
