//! Guards decide in commit order, a failed guard writes nothing, and
//! compare-and-swap is a guarded append.

mod common;

use annals::{Error, Expectation, StreamSeq};

#[test]
fn every_guard_case_accepts_or_rejects_with_expected_and_actual() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    log.append("s", Expectation::NoStream, &b"0"[..]).wait().unwrap();
    log.append("s", Expectation::Exact(StreamSeq(1)), &b"1"[..]).wait().unwrap();
    log.append("s", Expectation::Any, &b"2"[..]).wait().unwrap();
    let before = log.last_lsn().unwrap();
    for expected in [Expectation::NoStream, Expectation::Exact(StreamSeq(2)), Expectation::Exact(StreamSeq(4))] {
        match log.append("s", expected, &b"x"[..]).wait() {
            Err(Error::Conflict { stream, expected: e, actual }) => {
                assert_eq!((stream.as_str(), e, actual), ("s", expected, StreamSeq(3)));
            }
            other => panic!("expected a conflict for {expected:?}, got {other:?}"),
        }
    }
    assert_eq!(log.last_lsn().unwrap(), before, "a rejected append writes nothing");
    // A guard on another stream is independent; a cleared stream is "no stream" again.
    log.append("other", Expectation::NoStream, &b"o"[..]).wait().unwrap();
    log.clear("s", Expectation::Exact(StreamSeq(3))).wait().unwrap();
    let again = log.append("s", Expectation::NoStream, &b"new 0"[..]).wait().unwrap();
    assert_eq!(again.seq, StreamSeq(0));
    assert!(matches!(log.clear("s", Expectation::NoStream).wait(), Err(Error::Conflict { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_racing_guarded_appends_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    for round in 0..50u64 {
        let stream = format!("race-{round}");
        let (first, second) = (log.clone(), log.clone());
        let (s1, s2) = (stream.clone(), stream.clone());
        let a = tokio::spawn(async move { first.append(s1, Expectation::NoStream, &b"a"[..]).await });
        let b = tokio::spawn(async move { second.append(s2, Expectation::NoStream, &b"b"[..]).await });
        let results = [a.await.unwrap(), b.await.unwrap()];
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        let loser = results.iter().find(|r| r.is_err()).unwrap();
        assert!(matches!(loser, Err(Error::Conflict { actual: StreamSeq(1), .. })), "{loser:?}");
        assert_eq!(log.read_stream(&stream).unwrap().entries.len(), 1);
    }
}

#[test]
fn compare_and_swap_replaces_only_the_value_it_saw() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let first = log.compare_and_swap("run", None, &b"pending"[..]).wait().unwrap();
    let seen = log.latest("run").unwrap().unwrap();
    assert_eq!((seen.seq, seen.payload.as_ref()), (first.seq, &b"pending"[..]));
    log.compare_and_swap("run", Some(seen.seq), &b"running"[..]).wait().unwrap();
    // A second writer that saw the old value loses.
    let stale = log.compare_and_swap("run", Some(seen.seq), &b"failed"[..]).wait();
    assert!(matches!(stale, Err(Error::Conflict { .. })));
    assert!(matches!(log.compare_and_swap("run", None, &b"x"[..]).wait(), Err(Error::Conflict { .. })));
    assert_eq!(log.latest("run").unwrap().unwrap().payload, &b"running"[..]);
}

/// An `ExactSince` guard names the stream's incarnation as a read or an
/// acknowledgement gave it: it holds while the stream is that incarnation,
/// and fails once a clear ended it, even with the stream refilled to the
/// same next sequence (review 9's bug 8, at the engine), through a single
/// append, a batch and a clear, and it stays the same across a reopen.
#[test]
fn an_incarnation_guard_fails_after_a_clear_and_a_refill_to_the_same_length() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    assert_eq!(log.read_stream("s").unwrap().since, None, "no state, no incarnation");
    let first = log.append("s", Expectation::NoStream, &b"0"[..]).wait().unwrap();
    assert_eq!(first.since, Some(first.lsn), "a stream's first record begins its incarnation");
    let second = log.append("s", Expectation::Any, &b"1"[..]).wait().unwrap();
    assert_eq!(second.since, Some(first.lsn));
    let read = log.read_stream("s").unwrap();
    assert_eq!((read.next_seq, read.since), (StreamSeq(2), Some(first.lsn)));
    let old = Expectation::ExactSince { next: StreamSeq(2), since: first.lsn };
    let held = log.append("s", old, &b"2"[..]).wait().unwrap();
    assert_eq!((held.seq, held.since), (StreamSeq(2), Some(first.lsn)));
    let stale = Expectation::ExactSince { next: StreamSeq(3), since: first.lsn };
    let cleared = log.clear("s", Expectation::Any).wait().unwrap();
    assert_eq!(cleared.since, None, "a clear ends the incarnation");
    let mut refill_since = None;
    for payload in [&b"a"[..], b"b", b"c"] {
        refill_since = log.append("s", Expectation::Any, payload).wait().unwrap().since;
    }
    let refilled = log.read_stream("s").unwrap();
    assert_eq!(refilled.next_seq, StreamSeq(3));
    assert_ne!(refilled.since, Some(first.lsn));
    assert_eq!(refilled.since, refill_since);
    let before = log.last_lsn().unwrap();
    let refused = [
        log.append("s", stale, &b"stale"[..]).wait().map(|_| ()),
        log.clear("s", stale).wait().map(|_| ()),
        log.commit(annals::Batch::new().append("t", Expectation::Any, &b"t"[..]).check("s", stale)).wait().map(|_| ()),
    ];
    for result in refused {
        match result {
            Err(Error::Conflict { stream, expected, actual }) => {
                assert_eq!((stream.as_str(), expected, actual), ("s", stale, StreamSeq(3)));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(log.last_lsn().unwrap(), before, "a refused guard writes nothing");
    let fresh = Expectation::ExactSince { next: StreamSeq(3), since: refilled.since.unwrap() };
    log.append("s", fresh, &b"d"[..]).wait().unwrap();
    log.close().wait().unwrap();
    let log = common::open(dir.path());
    assert_eq!(log.read_stream("s").unwrap().since, refilled.since, "the incarnation survives a reopen");
    log.append("s", Expectation::ExactSince { next: StreamSeq(4), since: refilled.since.unwrap() }, &b"e"[..])
        .wait()
        .unwrap();
    log.close().wait().unwrap();
}
