//! Model checks of the group-commit hand-off (appenders, the writer thread,
//! acknowledgements, poisoning, close) with shuttle, which explores thread
//! interleavings of the real code (built with `--cfg annals_shuttle`, see
//! `src/sync.rs`; without it this binary has no tests). Run with
//! `RUSTFLAGS="--cfg annals_shuttle" CARGO_TARGET_DIR=target/shuttle cargo test --release -p annals --test group_commit_shuttle`
//! (its own target directory, so that the flag does not rebuild the usual one).
#![cfg(annals_shuttle)]

use std::sync::Arc;

use annals::sim::fs::{CrashMode, FaultKind, SimFs};
use annals::sim::rng::SimRng;
use annals::{Error, Expectation, Log, Lsn, Options, SegmentPreparation, StreamSeq};
use shuttle::thread;

const ITERATIONS: usize = 5000;

fn options(fs: &SimFs) -> Options {
    Options {
        segment_bytes: 4096,
        record_bytes_max: 1024,
        segment_preparation: SegmentPreparation::Inline,
        file_system: Arc::new(fs.clone()),
        compaction: annals::CompactionOptions { background: false, ..Default::default() },
        ..Options::default()
    }
}

fn open(fs: &SimFs) -> Log {
    Log::open(annals::sim::sim_dir(), options(fs)).expect("open")
}

/// A log whose awaited appends all go to the writer thread: none commits
/// in place (which, under the model, any awaited `Sync` append may do, as
/// on a worker of tokio's multi-threaded runtime).
fn open_for_the_writer_thread(fs: &SimFs) -> Log {
    Log::open(annals::sim::sim_dir(), Options { awaited_commits_in_place: false, ..options(fs) }).expect("open")
}

/// A log whose queue holds one request: appenders wait for room. Awaited
/// appends go to the writer thread.
fn open_with_a_queue_of_one(fs: &SimFs) -> Log {
    Log::open(annals::sim::sim_dir(), Options { queue_requests_max: 1, awaited_commits_in_place: false, ..options(fs) })
        .expect("open")
}

type Results = Vec<annals::Result<annals::Appended>>;

/// `threads` appenders, each making three blocking appends to its own stream.
fn appenders(log: &Log, threads: u8) -> Vec<thread::JoinHandle<Results>> {
    (0..threads)
        .map(|i| {
            let log = log.clone();
            thread::spawn(move || {
                (0..3).map(|_| log.append(format!("s{i}"), Expectation::Any, vec![i]).wait()).collect()
            })
        })
        .collect()
}

#[test]
fn racing_guarded_appends_decide_in_commit_order_and_every_ack_is_visible() {
    shuttle::check_random(
        || {
            let fs = SimFs::new();
            let log = open(&fs);
            let threads: Vec<_> = (0..3u8)
                .map(|i| {
                    let log = log.clone();
                    thread::spawn(move || {
                        let race = log.append("race", Expectation::NoStream, vec![i]).wait();
                        let own = log.append(format!("own-{i}"), Expectation::NoStream, vec![i]).wait().unwrap();
                        // Read your own write: an acknowledged append is visible at once.
                        assert_eq!(log.read_lsn(own.lsn).unwrap().unwrap().payload, vec![i]);
                        (i, race)
                    })
                })
                .collect();
            let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            let winners: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
            assert_eq!(winners.len(), 1, "exactly one NoStream append wins: {results:?}");
            for (_, result) in &results {
                if let Err(error) = result {
                    assert!(matches!(error, Error::Conflict { actual: StreamSeq(1), .. }), "{error}");
                }
            }
            let stored = log.read_stream("race").unwrap().entries;
            assert_eq!(stored.len(), 1);
            assert_eq!(stored[0].payload, vec![winners[0].0]);
            assert_eq!(log.last_lsn().unwrap(), Lsn(4));
            log.close().wait().unwrap();
        },
        ITERATIONS,
    );
}

#[test]
fn a_failed_write_or_sync_fails_every_waiting_and_later_append() {
    for fault_at in 1..=4 {
        shuttle::check_random(
            move || {
                let fs = SimFs::new();
                let log = open(&fs);
                fs.inject_fault_after(fault_at, FaultKind::Eio, false);
                let threads = appenders(&log, 3);
                let mut acked = Vec::new();
                let mut failures = 0;
                for thread in threads {
                    let mut failed = false;
                    for result in thread.join().unwrap() {
                        match result {
                            Ok(appended) => {
                                assert!(!failed, "an append was acknowledged after this appender saw the log fail");
                                acked.push(appended.lsn);
                            }
                            Err(Error::Poisoned { .. }) => {
                                failed = true;
                                failures += 1;
                            }
                            Err(other) => panic!("unexpected error {other}"),
                        }
                    }
                }
                assert!(failures > 0, "the fault hit one of the nine appends' writes or syncs");
                assert!(matches!(log.check_open(), Err(Error::Poisoned { .. })));
                drop(log);
                fs.clear_fault();
                let reopened = open(&fs);
                for lsn in acked {
                    assert!(reopened.read_lsn(lsn).unwrap().is_some(), "acknowledged lsn {lsn} survives");
                }
            },
            ITERATIONS / 2,
        );
    }
}

#[test]
fn close_racing_appends_answers_every_append_and_keeps_every_ack() {
    shuttle::check_random(
        || {
            let fs = SimFs::new();
            let log = open(&fs);
            let threads = appenders(&log, 2);
            log.close().wait().unwrap();
            let mut acked = Vec::new();
            for thread in threads {
                for result in thread.join().unwrap() {
                    match result {
                        Ok(appended) => acked.push(appended.lsn),
                        Err(Error::Closed) => {}
                        Err(other) => panic!("unexpected error {other}"),
                    }
                }
            }
            drop(log);
            let reopened = open(&fs);
            assert_eq!(reopened.last_lsn().unwrap(), Lsn(acked.len() as u64), "nothing but the acknowledged appends");
            for lsn in acked {
                assert!(reopened.read_lsn(lsn).unwrap().is_some());
            }
        },
        ITERATIONS,
    );
}

/// A blocking appender that waits for room in a full queue pushes its
/// request later, after it first tried to lead; it must still be committed.
#[test]
fn blocking_appenders_behind_a_full_queue_are_all_committed() {
    shuttle::check_random(
        || {
            let log = open_with_a_queue_of_one(&SimFs::new());
            let threads = appenders(&log, 3);
            for thread in threads {
                assert!(thread.join().unwrap().iter().all(Result::is_ok));
            }
            assert_eq!(log.last_lsn().unwrap(), Lsn(9));
        },
        ITERATIONS,
    );
}

/// Async appenders (each append awaited, the writer thread committing) behind
/// a queue that holds one request: every append either waits for room, or
/// is queued and answered through its reply slot, whose waker the
/// completer thread wakes (the writer thread hands it every group here). Every append is acknowledged once, densely, and a dropped
/// append that was queued is still committed or not, never half.
#[test]
fn awaited_appends_behind_a_full_queue_are_all_answered_by_the_writer_thread() {
    shuttle::check_random(
        || {
            let fs = SimFs::new();
            let log = open_with_a_queue_of_one(&fs);
            let tasks: Vec<_> = (0..3u8)
                .map(|i| {
                    let log = log.clone();
                    shuttle::future::spawn(async move {
                        let mut seqs = Vec::new();
                        for n in 0..2u64 {
                            let appended =
                                log.append(format!("s{i}"), Expectation::Exact(StreamSeq(n)), vec![i]).await.unwrap();
                            seqs.push(appended.seq);
                        }
                        seqs
                    })
                })
                .collect();
            // A Pending polled once (queued, or waiting for room) and dropped.
            let dropped = log.append("dropped", Expectation::Any, vec![9]);
            let polled = shuttle::future::spawn(async move {
                let mut dropped = std::pin::pin!(dropped);
                std::future::poll_fn(|cx| {
                    let _ = dropped.as_mut().poll(cx);
                    std::task::Poll::Ready(())
                })
                .await;
            });
            shuttle::future::block_on(polled).unwrap();
            for task in tasks {
                assert_eq!(shuttle::future::block_on(task).unwrap(), vec![StreamSeq(0), StreamSeq(1)]);
            }
            log.close().wait().unwrap();
            // A closed handle reads nothing: the log as the next open finds it.
            let last = open(&fs).last_lsn().unwrap();
            assert!(last == Lsn(6) || last == Lsn(7), "six acknowledged appends, and the dropped one or not");
        },
        ITERATIONS,
    );
}

/// The writer thread hands a synced group's replies to the completer
/// thread, which wakes the awaiting tasks while the writer goes on: an
/// awaited append is told `Ok` only once its frame is synced. A crash at
/// any point (the disk frozen, every later write and sync failing) keeps
/// every acknowledged append: nothing acknowledged is lost, and no waiter
/// of a group the crash cut is told `Ok`.
#[test]
fn awaited_appends_are_acknowledged_by_the_completer_only_after_their_sync() {
    shuttle::check_random(|| crash_while_awaiting(open_for_the_writer_thread, 3, false), ITERATIONS);
}

/// `tasks` tasks awaiting two appends each, and a blocking appender if
/// `blocking`, on the log `open` makes, while the disk crashes at any point:
/// every acknowledged append is there after a reopen of the crash's image,
/// and every append the crash cut is told the log is poisoned.
fn crash_while_awaiting(open_log: fn(&SimFs) -> Log, tasks: u8, blocking: bool) {
    let fs = SimFs::new();
    let log = open_log(&fs);
    let tasks: Vec<_> = (0..tasks)
        .map(|i| {
            let log = log.clone();
            shuttle::future::spawn(async move {
                let mut acked = Vec::new();
                for _ in 0..2 {
                    match log.append(format!("s{i}"), Expectation::Any, vec![i]).await {
                        Ok(appended) => acked.push(appended.lsn),
                        Err(Error::Poisoned { .. }) => break,
                        Err(other) => panic!("unexpected error {other}"),
                    }
                }
                acked
            })
        })
        .collect();
    let blocking = blocking.then(|| {
        let log = log.clone();
        thread::spawn(move || match log.append("thread", Expectation::Any, vec![9]).wait() {
            Ok(appended) => vec![appended.lsn],
            Err(Error::Poisoned { .. }) => Vec::new(),
            Err(other) => panic!("unexpected error {other}"),
        })
    });
    let crasher = {
        let fs = fs.clone();
        thread::spawn(move || fs.crash_now())
    };
    let mut acked: Vec<Lsn> = tasks.into_iter().flat_map(|task| shuttle::future::block_on(task).unwrap()).collect();
    if let Some(blocking) = blocking {
        acked.extend(blocking.join().unwrap());
    }
    crasher.join().unwrap();
    drop(log);
    let reopened = open(&fs.crash_image(CrashMode::Drop, &mut SimRng::new(1)));
    for lsn in acked {
        assert!(reopened.read_lsn(lsn).unwrap().is_some(), "acknowledged lsn {lsn} survives the crash");
    }
}

/// Awaited appends that commit in place (under the model every awaited
/// `Sync` append may, as on a worker of tokio's multi-threaded runtime,
/// when it finds no one writing) race blocking leaders and each other:
/// every append is answered once, densely per stream, each acknowledged
/// one is visible at once, and a close racing them all answers every one
/// and keeps every acknowledgement.
#[test]
fn awaited_appends_leading_in_place_race_blocking_leaders_and_a_close() {
    shuttle::check_random(
        || {
            let fs = SimFs::new();
            let log = open(&fs);
            let tasks: Vec<_> = (0..2u8)
                .map(|i| {
                    let log = log.clone();
                    shuttle::future::spawn(async move {
                        let mut acked = Vec::new();
                        for n in 0..2u64 {
                            match log.append(format!("task-{i}"), Expectation::Exact(StreamSeq(n)), vec![i]).await {
                                Ok(appended) => {
                                    assert_eq!(appended.seq, StreamSeq(n));
                                    // Read your own write, unless the close came first.
                                    match log.read_lsn(appended.lsn) {
                                        Ok(record) => assert_eq!(record.unwrap().payload, vec![i]),
                                        Err(error) => assert!(matches!(error, Error::Closed), "{error}"),
                                    }
                                    acked.push(appended.lsn);
                                }
                                Err(Error::Closed) => break,
                                Err(other) => panic!("unexpected error {other}"),
                            }
                        }
                        acked
                    })
                })
                .collect();
            let blocking = {
                let log = log.clone();
                thread::spawn(move || {
                    let mut acked = Vec::new();
                    for n in 0..2u64 {
                        match log.append("thread", Expectation::Exact(StreamSeq(n)), vec![9]).wait() {
                            Ok(appended) => acked.push(appended.lsn),
                            Err(Error::Closed) => break,
                            Err(other) => panic!("unexpected error {other}"),
                        }
                    }
                    acked
                })
            };
            let closer = {
                let log = log.clone();
                thread::spawn(move || log.close().wait())
            };
            let mut acked: Vec<Lsn> =
                tasks.into_iter().flat_map(|task| shuttle::future::block_on(task).unwrap()).collect();
            acked.extend(blocking.join().unwrap());
            closer.join().unwrap().unwrap();
            drop(log);
            let reopened = open(&fs);
            for lsn in &acked {
                assert!(reopened.read_lsn(*lsn).unwrap().is_some(), "acknowledged lsn {lsn} survives the close");
            }
            let mut sorted = acked.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), acked.len(), "no LSN acknowledged twice");
        },
        ITERATIONS,
    );
}

/// A crash at any point while awaited appends commit in place (the disk
/// frozen, every later write and sync failing) keeps every acknowledged
/// append; a leader whose write or sync failed poisons the log, and no
/// append after it is told `Ok`.
#[test]
fn awaited_appends_leading_in_place_keep_every_ack_through_a_crash() {
    shuttle::check_random(|| crash_while_awaiting(open, 2, true), ITERATIONS);
}
