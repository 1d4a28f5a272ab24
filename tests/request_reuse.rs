//! An appender's thread reuses the allocation of a request it is done with
//! for its next append (`commit::OwnedRequest`): a reused request must carry
//! nothing of the one before it (operations, outcome, waker), and a request
//! the writer still holds (its `Pending` dropped while it was queued) must
//! not be reused until the writer has answered it.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use annals::{Batch, Error, Expectation, Pending, StreamSeq};

/// Polls `pending` once, with a waker that does nothing.
fn poll_once<T>(pending: &mut Pending<T>) -> Poll<annals::Result<T>> {
    Pin::new(pending).poll(&mut Context::from_waker(Waker::noop()))
}

fn payloads(log: &annals::Log, stream: &str) -> Vec<Vec<u8>> {
    log.read_stream(stream).unwrap().entries.into_iter().map(|record| record.payload.to_vec()).collect()
}

/// One thread, one appender after another: a batch's request is reused for
/// single appends, a refused guard's for a success, a closed log's refusal
/// for an append to another log; each is told its own outcome, and each
/// record holds its own payload.
#[tokio::test(flavor = "current_thread")]
async fn a_thread_reusing_its_requests_answers_each_append_with_its_own_outcome() {
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = common::open(first_dir.path());
    let second = common::open(second_dir.path());
    for round in 0..20u64 {
        let batch = Batch::new()
            .append("batch", Expectation::Exact(StreamSeq(2 * round)), format!("b{round}-0"))
            .append("batch", Expectation::Exact(StreamSeq(2 * round + 1)), format!("b{round}-1"));
        let acked = first.commit(batch).await.unwrap();
        assert_eq!(acked.len(), 2);
        let single = first.append("single", Expectation::Exact(StreamSeq(round)), format!("s{round}")).await.unwrap();
        assert_eq!(single.seq, StreamSeq(round));
        let refused = first.append("single", Expectation::Exact(StreamSeq(round + 7)), "never").await;
        assert!(matches!(refused, Err(Error::Conflict { .. })), "{refused:?}");
        let other = second.append("other", Expectation::Any, format!("o{round}")).await.unwrap();
        assert_eq!(other.seq, StreamSeq(round));
    }
    first.close().await.unwrap();
    for round in 0..5 {
        let closed = first.append("single", Expectation::Any, "after close").await;
        assert!(matches!(closed, Err(Error::Closed)), "{closed:?}");
        let other = second.append("other", Expectation::Any, format!("late{round}")).await.unwrap();
        assert_eq!(other.seq, StreamSeq(20 + round));
    }
    let reopened = common::open(first_dir.path());
    let expected_batch: Vec<Vec<u8>> =
        (0..20).flat_map(|r| [format!("b{r}-0").into_bytes(), format!("b{r}-1").into_bytes()]).collect();
    assert_eq!(payloads(&reopened, "batch"), expected_batch);
    assert_eq!(payloads(&reopened, "single"), (0..20).map(|r| format!("s{r}").into_bytes()).collect::<Vec<_>>());
    let expected_other: Vec<Vec<u8>> =
        (0..20).map(|r| format!("o{r}").into_bytes()).chain((0..5).map(|r| format!("late{r}").into_bytes())).collect();
    assert_eq!(payloads(&second, "other"), expected_other);
}

/// A `Pending` polled once (its request queued) and dropped leaves its
/// request with the writer, which still commits it: the appends this thread
/// makes right after must not take that request over while the writer
/// reads it. Whatever was committed holds the payloads it was given.
#[test]
fn a_queued_request_whose_pending_was_dropped_is_not_reused_before_it_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    for round in 0..200u32 {
        let mut dropped = log.append("dropped", Expectation::Any, format!("dropped {round}"));
        // Queued (or refused at a full queue, which this small load never fills).
        assert!(poll_once(&mut dropped).is_pending());
        drop(dropped);
        let kept = log.append("kept", Expectation::Any, format!("kept {round}")).wait().unwrap();
        assert_eq!(kept.seq, StreamSeq(u64::from(round)));
    }
    // The close answers every request queued before it.
    log.close().wait().unwrap();
    let reopened = common::open(dir.path());
    let kept: Vec<Vec<u8>> = (0..200).map(|r| format!("kept {r}").into_bytes()).collect();
    assert_eq!(payloads(&reopened, "kept"), kept);
    let dropped: Vec<Vec<u8>> = (0..200).map(|r| format!("dropped {r}").into_bytes()).collect();
    assert_eq!(payloads(&reopened, "dropped"), dropped, "a dropped Pending's queued append is still committed");
}

/// A `Pending` dropped after the writer answered it, unread, leaves the
/// outcome in its request: the request is reused only emptied, so the next
/// append polled again before the writer answers it is still pending, and
/// never told the earlier append's outcome.
#[test]
fn a_reused_request_never_answers_with_the_outcome_its_last_append_left_unread() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    for round in 0..100u64 {
        let mut unread = log.append("s", Expectation::Exact(StreamSeq(2 * round)), "unread");
        assert!(poll_once(&mut unread).is_pending());
        // Published, then answered soon after: give the answer time to land.
        while log.next_seq("s").unwrap() != StreamSeq(2 * round + 1) {
            std::thread::yield_now();
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        drop(unread);
        let mut next = log.append("s", Expectation::Exact(StreamSeq(2 * round + 1)), "next");
        assert!(poll_once(&mut next).is_pending());
        let appended = match poll_once(&mut next) {
            Poll::Ready(result) => result.unwrap(),
            Poll::Pending => next.wait().unwrap(),
        };
        assert_eq!(appended.seq, StreamSeq(2 * round + 1), "the append's own outcome");
    }
}
