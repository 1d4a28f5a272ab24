//! An awaited durable append of a lone appender on a worker of tokio's
//! multi-threaded runtime commits in place, inside `block_in_place`
//! (`Options::awaited_commits_in_place`): it is answered at its first poll,
//! with no hand-off to the writer thread. Everywhere else (a current-thread
//! runtime, a `LocalSet` or the `block_on` thread of a multi-threaded
//! runtime, the option off, an append that is not `Sync`) it is handed to
//! the writer thread: no executor panics, and none stalls.

mod common;

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use annals::{Appended, Durability, Error, Expectation, Log, Options, StreamSeq};
use common::FaultyFs;

/// Options with nothing in the background that could hold the writer.
fn options() -> Options {
    Options { compaction: annals::CompactionOptions { background: false, ..Default::default() }, ..Options::default() }
}

/// Polls `append` once: whether it was answered then, and its outcome.
async fn first_poll<F: Future<Output = annals::Result<Appended>>>(append: F) -> (bool, annals::Result<Appended>) {
    let mut append = pin!(append);
    match poll_fn(|cx| Poll::Ready(append.as_mut().poll(cx))).await {
        Poll::Ready(outcome) => (true, outcome),
        Poll::Pending => (false, append.await),
    }
}

/// `count` appends to `stream` from where it ends, each awaited: how many
/// were answered at their first poll.
async fn appends(log: &Log, stream: &str, count: u64, durability: Durability) -> u64 {
    let start = log.read_stream(stream).unwrap().entries.len() as u64;
    let mut at_first_poll = 0;
    for n in start..start + count {
        let append = log.append_with(stream, Expectation::Exact(StreamSeq(n)), vec![n as u8; 64], durability);
        let (answered, outcome) = first_poll(append).await;
        assert_eq!(outcome.unwrap().seq, StreamSeq(n));
        at_first_poll += u64::from(answered);
    }
    at_first_poll
}

fn multi_threaded(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap()
}

#[test]
fn a_lone_awaited_append_on_a_multi_threaded_worker_is_committed_at_its_first_poll_and_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    let rt = multi_threaded(2);
    let task_log = log.clone();
    let at_first_poll = rt.block_on(async move {
        tokio::spawn(async move { appends(&task_log, "wf", 20, Durability::Sync).await }).await.unwrap()
    });
    assert_eq!(at_first_poll, 20, "every append was committed in place");
    drop(rt);
    drop(log);
    let reopened = Log::open(dir.path(), options()).unwrap();
    let entries = reopened.read_stream("wf").unwrap().entries;
    assert_eq!(entries.len(), 20);
    assert!(entries.iter().enumerate().all(|(n, entry)| entry.payload[..] == [n as u8; 64][..]));
}

#[test]
fn elsewhere_an_awaited_append_is_handed_to_the_writer_thread_and_nothing_panics() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options()).unwrap();

    // A current-thread runtime: blocking its one thread would stall it.
    let current = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_eq!(current.block_on(appends(&log, "current", 5, Durability::Sync)), 0);
    let spawned = log.clone();
    let in_task = current.block_on(async move {
        tokio::spawn(async move { appends(&spawned, "current-task", 5, Durability::Sync).await }).await.unwrap()
    });
    assert_eq!(in_task, 0);

    // A multi-threaded runtime's `block_on` thread is no worker, and in a
    // `LocalSet` there `block_in_place` would panic.
    let multi = multi_threaded(2);
    assert_eq!(multi.block_on(appends(&log, "block-on", 5, Durability::Sync)), 0);
    let local = tokio::task::LocalSet::new();
    assert_eq!(multi.block_on(local.run_until(appends(&log, "local", 5, Durability::Sync))), 0);
    let local_log = log.clone();
    let in_local_task = local.run_until(async move {
        tokio::task::spawn_local(async move { appends(&local_log, "local-task", 5, Durability::Sync).await })
            .await
            .unwrap()
    });
    assert_eq!(multi.block_on(in_local_task), 0);

    // No runtime at all: a plain executor polling on its own thread.
    let (waker, mut at_first_poll) = (std::task::Waker::noop(), 0);
    let mut cx = std::task::Context::from_waker(waker);
    for n in 0..5 {
        let mut append = pin!(log.append("no-runtime", Expectation::Exact(StreamSeq(n)), vec![1]));
        if append.as_mut().poll(&mut cx).is_ready() {
            at_first_poll += 1;
        }
        while append.as_mut().poll(&mut cx).is_pending() {
            std::thread::yield_now();
        }
    }
    assert_eq!(at_first_poll, 0);

    // On a worker, only `Sync` appends lead: the others have no fdatasync
    // to save a hand-off around.
    let worker_log = log.clone();
    let (flush, periodic) = multi.block_on(async move {
        tokio::spawn(async move {
            let flush = appends(&worker_log, "flush", 5, Durability::Flush).await;
            (flush, appends(&worker_log, "periodic", 5, Durability::Periodic).await)
        })
        .await
        .unwrap()
    });
    assert_eq!((flush, periodic), (0, 0));
    for stream in ["current", "current-task", "block-on", "local", "local-task", "no-runtime", "flush", "periodic"] {
        assert_eq!(log.read_stream(stream).unwrap().entries.len(), 5, "{stream}");
    }
}

#[test]
fn turned_off_an_awaited_append_on_a_worker_is_handed_to_the_writer_thread() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options { awaited_commits_in_place: false, ..options() }).unwrap();
    let rt = multi_threaded(2);
    let task_log = log.clone();
    let at_first_poll = rt.block_on(async move {
        tokio::spawn(async move { appends(&task_log, "wf", 10, Durability::Sync).await }).await.unwrap()
    });
    assert_eq!(at_first_poll, 0);
    assert_eq!(log.read_stream("wf").unwrap().entries.len(), 10);
}

/// The worker's other tasks go on while it commits in place: with one
/// worker and a task that never yields between its appends (each answered
/// at its first poll), a second task still runs, on the thread that took
/// the worker's tasks over.
#[test]
fn a_worker_committing_in_place_leaves_its_other_tasks_to_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    let rt = multi_threaded(1);
    let ticks = Arc::new(AtomicU64::new(0));
    let ticking = ticks.clone();
    let (ticked_during, appended) = rt.block_on(async move {
        let ticker = tokio::spawn(async move {
            loop {
                ticking.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        });
        let appender = tokio::spawn(async move {
            // Never yields while its appends are answered at their first
            // poll: the ticker runs only if the worker's tasks moved.
            let mut n = 0;
            while ticks.load(Ordering::Relaxed) == 0 && n < 5_000 {
                let (answered, outcome) = first_poll(task_log_append(&log, n)).await;
                assert!(answered, "a lone appender commits in place");
                outcome.unwrap();
                n += 1;
            }
            (ticks.load(Ordering::Relaxed) > 0, n)
        })
        .await
        .unwrap();
        ticker.abort();
        appender
    });
    assert!(ticked_during, "the other task ran while the worker committed {appended} appends in place");
}

fn task_log_append(log: &Log, n: u64) -> annals::Pending<Appended> {
    log.append("wf", Expectation::Exact(StreamSeq(n)), vec![0; 32])
}

/// Appenders that come and go (some awaiting on workers, some blocking
/// threads) share the writer: whoever leads, every acknowledged append is
/// there after a reopen, densely, and nothing unacknowledged is.
#[test]
fn awaited_appends_in_place_beside_other_appenders_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    let rt = multi_threaded(2);
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let log = log.clone();
            rt.spawn(async move {
                for n in 0..40u64 {
                    log.append(format!("task-{t}"), Expectation::Exact(StreamSeq(n)), vec![t as u8; 100])
                        .await
                        .unwrap();
                    if (n + t) % 3 == 0 {
                        tokio::time::sleep(std::time::Duration::from_micros(200 * t)).await;
                    }
                }
            })
        })
        .collect();
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for n in 0..40u64 {
                    log.append(format!("thread-{t}"), Expectation::Exact(StreamSeq(n)), vec![0xA0; 50]).wait().unwrap();
                }
            })
        })
        .collect();
    rt.block_on(async {
        for task in tasks {
            task.await.unwrap();
        }
    });
    threads.into_iter().for_each(|thread| thread.join().unwrap());
    let end = log.last_lsn().unwrap();
    drop(log);
    let reopened = Log::open(dir.path(), options()).unwrap();
    assert_eq!(reopened.last_lsn().unwrap(), end);
    for stream in (0..8).map(|t| format!("task-{t}")).chain((0..2).map(|t| format!("thread-{t}"))) {
        let entries = reopened.read_stream(&stream).unwrap().entries;
        assert_eq!(entries.len(), 40, "{stream}");
        assert!(entries.iter().enumerate().all(|(n, entry)| entry.seq == StreamSeq(n as u64)), "{stream}");
    }
}

/// Fail-stop holds in place: an in-place commit whose fdatasync fails
/// poisons the log, its own append is told so at once, and no later write
/// or fsync is tried.
#[test]
fn an_in_place_commit_whose_fdatasync_fails_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::default();
    let log = Log::open(dir.path(), Options { awaited_commits_in_place: true, ..fs.options() }).unwrap();
    let rt = multi_threaded(2);
    let (task_log, faults) = (log.clone(), fs.faults.clone());
    let (first, after, syncs_before, syncs_after) = rt.block_on(async move {
        tokio::spawn(async move {
            let (answered, outcome) = first_poll(task_log.append("s", Expectation::Any, vec![1])).await;
            assert!(answered && outcome.is_ok());
            faults.fail_syncs.store(true, Ordering::SeqCst);
            let first = first_poll(task_log.append("s", Expectation::Any, vec![2])).await;
            faults.fail_syncs.store(false, Ordering::SeqCst);
            let syncs_before = faults.syncs.load(Ordering::SeqCst);
            let after = task_log.append("s", Expectation::Any, vec![3]).await;
            (first, after, syncs_before, faults.syncs.load(Ordering::SeqCst))
        })
        .await
        .unwrap()
    });
    assert!(first.0, "the failing commit ran in place");
    match first.1 {
        Err(Error::Poisoned { cause }) => assert!(matches!(*cause, Error::Io { op: "fdatasync", .. }), "{cause}"),
        other => panic!("expected poisoned, got {other:?}"),
    }
    assert!(matches!(after, Err(Error::Poisoned { .. })));
    assert_eq!(syncs_after, syncs_before, "no fsync is retried after a failure");
    assert_eq!(log.read_stream("s").unwrap().entries.len(), 1, "readers never saw the failed append");
}
