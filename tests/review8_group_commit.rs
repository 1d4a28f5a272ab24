//! Review 8 of the group commit's burst gathering (the writer thread sleeps
//! on the queue's condvar until a burst as big as the last whole one has
//! come, and a queued write wakes it only if it is the first queued or the
//! one the gathering waits for). These drive the shapes where a wake-up
//! could be lost: bursts that grow and shrink (1, then 64, then 1
//! appender), a queue smaller than the burst the gathering waits for (its
//! appenders wait for room), blocking `wait()` callers leading groups while
//! the writer thread gathers, `Pending`s dropped mid-burst, periodic
//! durability, and a close while all of that is under way. Every append
//! must be answered exactly once, and everything acknowledged must be there
//! after a reopen. A lost wake-up shows as a test that never ends.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};

use annals::{Durability, Error, Expectation, Log, Lsn, Options, StreamSeq};

/// Acknowledged appends, by stream: the payloads in the order their
/// appenders were told they were committed.
type Acked = Arc<Mutex<BTreeMap<String, Vec<Vec<u8>>>>>;

fn options(durability: Durability, queue_requests_max: usize) -> Options {
    Options { durability, fsync_interval_ms: 2, queue_requests_max, ..common::small_options() }
}

/// `appenders` tasks, each awaiting `each` appends to its own stream (the
/// shape of a burst: every appender back right after its reply).
async fn burst(log: &Log, phase: usize, appenders: usize, each: usize, acked: &Acked) {
    let mut tasks = Vec::new();
    for task in 0..appenders {
        let (log, acked) = (log.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let stream = format!("phase-{phase}-task-{task}");
            for i in 0..each {
                let payload = format!("{stream}-{i}").into_bytes();
                // Exact: a request committed twice would be refused the second time
                // and the stream would show a gap or a duplicate.
                let ack = log.append(&stream, Expectation::Exact(StreamSeq(i as u64)), payload.clone()).await.unwrap();
                assert_eq!(ack.seq, StreamSeq(i as u64));
                acked.lock().unwrap().entry(stream.clone()).or_default().push(payload);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Drives a log through bursts of 1, 64, 1, 64 and 1 appenders, with a
/// blocking appender leading groups beside them and `Pending`s dropped
/// after their first poll, then closes it while both still append, and
/// checks that every acknowledged append is there after a reopen, in
/// order, and nothing else in the acknowledged streams.
fn bursts_of_changing_size_answer_every_append(durability: Durability, queue_requests_max: usize) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options(durability, queue_requests_max)).unwrap();
    let acked: Acked = Arc::default();
    // A blocking appender leading its own groups through every phase.
    let blocking = {
        let (log, acked) = (log.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            loop {
                let payload = format!("blocking-{i}").into_bytes();
                match log.append("blocking", Expectation::Exact(StreamSeq(i)), payload.clone()).wait() {
                    Ok(ack) => {
                        assert_eq!(ack.seq, StreamSeq(i));
                        acked.lock().unwrap().entry("blocking".to_owned()).or_default().push(payload);
                    }
                    Err(Error::Closed) => return i,
                    Err(error) => panic!("blocking append {i}: {error:?}"),
                }
                // A Pending polled once and dropped: its request stays queued
                // (committed or not, it is never answered to anyone).
                let mut dropped = log.append("dropped", Expectation::Any, format!("dropped-{i}"));
                let _ = Pin::new(&mut dropped).poll(&mut Context::from_waker(Waker::noop()));
                drop(dropped);
                i += 1;
            }
        })
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        for (phase, (appenders, each)) in
            [(1, 200), (64, 12), (1, 50), (64, 12), (1, 50), (9, 30), (1, 20)].into_iter().enumerate()
        {
            burst(&log, phase, appenders, each, &acked).await;
        }
        // A last burst of 64 the close lands in the middle of.
        let closing = {
            let log = log.clone();
            let acked = acked.clone();
            tokio::spawn(async move {
                let mut tasks = Vec::new();
                for task in 0..64 {
                    let (log, acked) = (log.clone(), acked.clone());
                    tasks.push(tokio::spawn(async move {
                        let stream = format!("closing-{task}");
                        for i in 0..1_000u64 {
                            let payload = format!("{stream}-{i}").into_bytes();
                            match log.append(&stream, Expectation::Exact(StreamSeq(i)), payload.clone()).await {
                                Ok(_) => acked.lock().unwrap().entry(stream.clone()).or_default().push(payload),
                                Err(Error::Closed) => return,
                                Err(error) => panic!("{stream} {i}: {error:?}"),
                            }
                        }
                    }));
                }
                for task in tasks {
                    task.await.unwrap();
                }
            })
        };
        // Let the last burst run a few rounds, then close under it.
        let from = log.last_lsn().unwrap();
        while log.last_lsn().unwrap() < Lsn(from.0 + 3_000) && !closing.is_finished() {
            tokio::task::yield_now().await;
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        log.close().await.unwrap();
        closing.await.unwrap();
    });
    let blocking_appends = blocking.join().unwrap();
    assert!(blocking_appends > 0);
    drop(log);
    let reopened = Log::open(dir.path(), options(durability, queue_requests_max)).unwrap();
    let acked = acked.lock().unwrap();
    for (stream, payloads) in acked.iter() {
        let found: Vec<Vec<u8>> =
            reopened.read_stream(stream).unwrap().entries.into_iter().map(|record| record.payload.to_vec()).collect();
        // A request answered Closed was not committed; one acknowledged is
        // there, and nothing follows the acknowledged ones but (for the
        // streams the close cut) nothing at all.
        assert_eq!(&found, payloads, "stream {stream}");
    }
    // The dropped Pendings' requests: each committed at most once, in order.
    let dropped: Vec<Vec<u8>> =
        reopened.read_stream("dropped").unwrap().entries.into_iter().map(|record| record.payload.to_vec()).collect();
    // (One dropped while the queue was full was never queued, so some may be missing.)
    let numbers: Vec<u64> = dropped
        .iter()
        .map(|payload| std::str::from_utf8(payload).unwrap().strip_prefix("dropped-").unwrap().parse().unwrap())
        .collect();
    assert!(
        numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "a dropped Pending's request committed twice: {numbers:?}"
    );
}

/// Sync appends, and a queue as big as the default: the gathering waits
/// for whole bursts of 64.
#[test]
fn bursts_of_1_then_64_then_1_appender_answer_every_sync_append_once() {
    bursts_of_changing_size_answer_every_append(Durability::Sync, Options::default().queue_requests_max);
}

/// A queue of 16 requests, smaller than the burst of 64 the gathering
/// waits for: the rest of the burst waits for room while the writer thread
/// waits for it; the full queue must wake the writer.
#[test]
fn a_queue_smaller_than_the_burst_the_gathering_waits_for_answers_every_append() {
    bursts_of_changing_size_answer_every_append(Durability::Sync, 16);
}

/// Periodic durability: the writer thread's sleep has a deadline for the
/// background sync as well as the gathering's.
#[test]
fn bursts_under_periodic_durability_answer_every_append_once() {
    bursts_of_changing_size_answer_every_append(Durability::Periodic, 16);
}

/// Every fsync failing from some point (the log poisoned, or appends
/// refused where a spare segment's fsync fails) while 64 appenders keep
/// bursts going and a blocking appender leads: every append is answered
/// (acknowledged before the failure, refused after it), none waits
/// forever, the close fails, and the acknowledged ones are there after a
/// reopen.
#[test]
fn a_log_poisoned_during_bursts_answers_every_waiting_append() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    let acked: Acked = Arc::default();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let blocking = {
        let (log, acked) = (log.clone(), acked.clone());
        std::thread::spawn(move || {
            for i in 0u64.. {
                let payload = format!("blocking-{i}").into_bytes();
                match log.append("blocking", Expectation::Exact(StreamSeq(i)), payload.clone()).wait() {
                    Ok(_) => acked.lock().unwrap().entry("blocking".to_owned()).or_default().push(payload),
                    Err(Error::Poisoned { .. } | Error::Io { .. }) => return,
                    Err(error) => panic!("blocking {i}: {error:?}"),
                }
            }
        })
    };
    runtime.block_on(async {
        burst(&log, 0, 64, 5, &acked).await;
        let mut tasks = Vec::new();
        for task in 0..64 {
            let (log, acked) = (log.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                let stream = format!("poisoned-{task}");
                for i in 0u64.. {
                    let payload = format!("{stream}-{i}").into_bytes();
                    match log.append(&stream, Expectation::Exact(StreamSeq(i)), payload.clone()).await {
                        Ok(_) => acked.lock().unwrap().entry(stream.clone()).or_default().push(payload),
                        Err(Error::Poisoned { .. } | Error::Io { .. }) => return,
                        Err(error) => panic!("{stream} {i}: {error:?}"),
                    }
                }
            }));
        }
        let from = log.last_lsn().unwrap();
        while log.last_lsn().unwrap() < Lsn(from.0 + 2_000) {
            tokio::task::yield_now().await;
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        fs.faults.fail_syncs.store(true, std::sync::atomic::Ordering::SeqCst);
        for task in tasks {
            task.await.unwrap();
        }
    });
    blocking.join().unwrap();
    // Poisoned, or (when what failed first was a spare's fsync, which
    // refuses appends without poisoning) the close's own failed fsync.
    let closed = log.close().wait();
    assert!(matches!(closed, Err(Error::Poisoned { .. } | Error::Io { .. })), "{closed:?}");
    drop(log);
    fs.faults.fail_syncs.store(false, std::sync::atomic::Ordering::SeqCst);
    let reopened = Log::open(dir.path(), fs.options()).unwrap();
    for (stream, payloads) in acked.lock().unwrap().iter() {
        let found: Vec<Vec<u8>> =
            reopened.read_stream(stream).unwrap().entries.into_iter().map(|record| record.payload.to_vec()).collect();
        // What the failed fsync's group wrote may be there too (never acknowledged).
        assert_eq!(&found[..payloads.len()], &payloads[..], "stream {stream}");
    }
}
