//! Attacks on the append path's shared, reused requests (`commit::
//! WriteRequest`, `commit::OwnedRequest`): one allocation held by the
//! appender's `Pending`, the queue and the writer, emptied and kept per
//! thread for the next append. Futures made on one thread and polled,
//! answered and dropped on others (as tokio tasks migrate), dropped before
//! they were polled or while queued, several logs from the same threads, a
//! batch of many operations before single appends, blocking callers leading
//! groups beside tasks, an appender that panics with its request queued,
//! and appends refused by a closed or poisoned log: each append is told
//! its own outcome, once, and what the log holds is what was acknowledged.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use annals::{Appended, Batch, Error, Expectation, Log, Pending, StreamSeq};

/// Polls `pending` once, with a waker that does nothing.
fn poll_once<T>(pending: &mut Pending<T>) -> Poll<annals::Result<T>> {
    Pin::new(pending).poll(&mut Context::from_waker(Waker::noop()))
}

/// Every entry of `stream`, by sequence: its payload.
fn entries(log: &Log, stream: &str) -> BTreeMap<u64, Vec<u8>> {
    log.read_stream(stream).unwrap().entries.into_iter().map(|r| (r.seq.0, r.payload.to_vec())).collect()
}

/// How an appender treats its `Pending` in [`requests_made_on_one_thread_and_answered_on_others_each_get_their_own_outcome_once`].
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fate {
    /// Awaited by a task on another worker.
    Awaited,
    /// Polled once here (queued), then awaited by a task elsewhere.
    QueuedThenAwaited,
    /// Waited for by a blocking thread, which may lead the group.
    Blocking,
    /// Dropped before it was ever polled: never written.
    DroppedUnpolled,
    /// Polled once here (queued), then dropped: written all the same.
    DroppedQueued,
}

const FATES: [Fate; 5] =
    [Fate::Awaited, Fate::QueuedThenAwaited, Fate::Blocking, Fate::DroppedUnpolled, Fate::DroppedQueued];

/// Three logs appended to from the same threads, each `Pending` made on
/// the test's thread and (by its [`Fate`]) awaited by a task on a worker,
/// waited for by a blocking thread, or dropped; a batch of 500 operations
/// every so often, so that its request (and its operations' list) is
/// reused for single appends after it. Each acknowledgement names a
/// sequence no other acknowledgement of its log names, holding the
/// payload of the append it answers; an append dropped unpolled is never
/// written, one dropped queued is written; nothing else is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_made_on_one_thread_and_answered_on_others_each_get_their_own_outcome_once() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // Room for a frame of 500 operations.
    let options = annals::Options { record_bytes_max: 64 << 10, segment_bytes: 1 << 20, ..common::small_options() };
    let logs: Vec<Log> = dirs.iter().map(|d| Log::open(d.path(), options.clone()).unwrap()).collect();
    let mut answered = Vec::new();
    let mut written_unacknowledged: Vec<Vec<(String, Vec<u8>)>> = vec![Vec::new(); 3];
    let mut never_written: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
    for i in 0..900usize {
        let at = i % 3;
        let log = logs[at].clone();
        if i % 150 == 0 {
            let batch = (0..500).fold(Batch::new(), |b, k| b.append("batched", Expectation::Any, format!("{i}/{k}")));
            let acked = log.commit(batch).await.unwrap();
            assert_eq!(acked.len(), 500);
            for (k, appended) in acked.into_iter().enumerate() {
                answered.push(tokio::spawn(async move { (at, "batched", format!("{i}/{k}").into_bytes(), appended) }));
            }
        }
        let payload = format!("append {i}").into_bytes();
        let mut pending = log.append("s", Expectation::Any, payload.clone());
        let fate = FATES[(i / 3) % FATES.len()];
        match fate {
            Fate::Awaited => {
                answered.push(tokio::spawn(async move { (at, "s", payload, pending.await.unwrap()) }));
            }
            Fate::QueuedThenAwaited => {
                assert!(poll_once(&mut pending).is_pending(), "queued, not answered before the writer ran");
                answered.push(tokio::spawn(async move { (at, "s", payload, pending.await.unwrap()) }));
            }
            Fate::Blocking => {
                let handle = tokio::task::spawn_blocking(move || (at, "s", payload, pending.wait().unwrap()));
                answered.push(tokio::spawn(async move { handle.await.unwrap() }));
            }
            Fate::DroppedUnpolled => {
                drop(pending);
                never_written[at].push(payload);
            }
            Fate::DroppedQueued => {
                assert!(poll_once(&mut pending).is_pending());
                drop(pending);
                written_unacknowledged[at].push(("s".to_owned(), payload));
            }
        }
    }
    let mut acknowledged: Vec<BTreeMap<(&str, u64), Vec<u8>>> = vec![BTreeMap::new(); 3];
    for task in answered {
        let (at, stream, payload, Appended { seq, .. }) = task.await.unwrap();
        let earlier = acknowledged[at].insert((stream, seq.0), payload);
        assert_eq!(earlier, None, "log {at}: {stream} seq {} acknowledged twice", seq.0);
    }
    for (at, log) in logs.iter().enumerate() {
        log.close().await.unwrap();
        let reopened = Log::open(dirs[at].path(), options.clone()).unwrap();
        for stream in ["s", "batched"] {
            let held = entries(&reopened, stream);
            for ((s, seq), payload) in acknowledged[at].iter().filter(|((s, _), _)| *s == stream) {
                assert_eq!(held.get(seq), Some(payload), "log {at}: {s} seq {seq} holds what was acknowledged for it");
            }
            let acked = acknowledged[at].keys().filter(|(s, _)| *s == stream).count();
            let unacknowledged: Vec<&Vec<u8>> =
                written_unacknowledged[at].iter().filter(|(s, _)| s == stream).map(|(_, p)| p).collect();
            assert_eq!(held.len(), acked + unacknowledged.len(), "log {at}: {stream} holds nothing else");
            let payloads: Vec<&Vec<u8>> = held.values().collect();
            assert!(unacknowledged.iter().all(|p| payloads.contains(p)), "log {at}: a queued append was written");
            assert!(never_written[at].iter().all(|p| !payloads.contains(&p)), "log {at}: an unpolled append was not");
        }
    }
}

/// Appenders on several threads; one of them panics while its request is
/// queued (the unwind drops its `Pending`), another holds a polled one
/// across its thread's exit (its spares are gone by then). Every other
/// append is answered, the log closes, and the queued requests of the
/// threads that went away were written.
#[test]
fn an_appender_that_panics_or_exits_with_a_queued_request_leaves_the_others_their_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..100u64 {
                    let payload = format!("{t}/{i}");
                    if t == 0 && i == 50 {
                        let mut queued = log.append("panicked", Expectation::Any, payload);
                        assert!(poll_once(&mut queued).is_pending());
                        panic!("an appender panics with its request queued");
                    }
                    let appended = log.append(format!("thread-{t}"), Expectation::Any, payload).wait().unwrap();
                    assert_eq!(appended.seq, StreamSeq(i), "thread {t}: its own outcome");
                }
                let mut queued = log.append("exited", Expectation::Any, format!("{t}"));
                assert!(poll_once(&mut queued).is_pending());
                // The thread's locals (its spare requests) go before the
                // request, which outlives it until the writer answers.
                thread_local_holder::keep(queued);
            })
        })
        .collect();
    let outcomes: Vec<_> = workers.into_iter().map(std::thread::JoinHandle::join).collect();
    assert!(outcomes[0].is_err(), "thread 0 panicked");
    assert!(outcomes[1..].iter().all(Result::is_ok), "the other threads did not");
    log.close().wait().unwrap();
    let reopened = common::open(dir.path());
    assert_eq!(entries(&reopened, "thread-0").len(), 50);
    for t in 1..4 {
        let want: BTreeMap<u64, Vec<u8>> = (0..100).map(|i| (i, format!("{t}/{i}").into_bytes())).collect();
        assert_eq!(entries(&reopened, &format!("thread-{t}")), want);
    }
    assert_eq!(entries(&reopened, "panicked").into_values().collect::<Vec<_>>(), vec![b"0/50".to_vec()]);
    assert_eq!(entries(&reopened, "exited").len(), 3, "each exited thread's queued append");
}

/// Holds a `Pending` in a thread-local declared before the first append's
/// (so destroyed after the spare requests' list, in the order the
/// thread-locals' destructors happen to run): a request dropped while its
/// thread exits is freed, never kept nor a panic.
mod thread_local_holder {
    use std::cell::RefCell;

    thread_local! {
        static HELD: RefCell<Vec<annals::Pending<annals::Appended>>> = const { RefCell::new(Vec::new()) };
    }

    pub fn keep(pending: annals::Pending<annals::Appended>) {
        HELD.with(|held| held.borrow_mut().push(pending));
    }
}

/// A poisoned log refuses every append after the failure, each with its
/// own `Poisoned` (the refused requests reused one after another), and the
/// same thread's appends to a healthy log are answered as ever; a closed
/// log's likewise with `Closed`.
#[test]
fn appends_refused_by_a_poisoned_or_closed_log_reuse_requests_without_mixing_outcomes() {
    let (poisoned_dir, closed_dir, healthy_dir) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let fs = common::FaultyFs::default();
    let poisoned = Log::open(poisoned_dir.path(), fs.options()).unwrap();
    let closed = common::open(closed_dir.path());
    let healthy = common::open(healthy_dir.path());
    poisoned.append("s", Expectation::Any, &b"durable"[..]).wait().unwrap();
    fs.faults.fail_syncs.store(true, Ordering::SeqCst);
    assert!(matches!(poisoned.append("s", Expectation::Any, &b"failed"[..]).wait(), Err(Error::Poisoned { .. })));
    closed.close().wait().unwrap();
    for i in 0..200u64 {
        let mut refused = poisoned.append("s", Expectation::Any, format!("refused {i}"));
        match poll_once(&mut refused) {
            Poll::Ready(Err(Error::Poisoned { .. })) => {}
            other => panic!("append {i} to a poisoned log: {other:?}"),
        }
        drop(refused);
        match closed.commit(Batch::new().append("s", Expectation::Any, "a").append("t", Expectation::Any, "b")).wait() {
            Err(Error::Closed) => {}
            other => panic!("batch {i} to a closed log: {other:?}"),
        }
        let appended = healthy.append("s", Expectation::Exact(StreamSeq(i)), format!("healthy {i}")).wait().unwrap();
        assert_eq!(appended.seq, StreamSeq(i));
    }
    healthy.close().wait().unwrap();
    let reopened = common::open(healthy_dir.path());
    let want: BTreeMap<u64, Vec<u8>> = (0..200).map(|i| (i, format!("healthy {i}").into_bytes())).collect();
    assert_eq!(entries(&reopened, "s"), want);
}
