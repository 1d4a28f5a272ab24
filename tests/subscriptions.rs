//! Subscriptions deliver every durable, live record after a cursor exactly
//! once, in LSN order, and nothing a power cut could take; named cursors
//! resume them after a restart and hold back log-wide retention until
//! they lag too far.

mod common;

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use annals::sim::fs::{CrashMode, SimFs};
use annals::sim::rng::SimRng;
use annals::{
    CompactionOptions, Durability, Error, Expectation, Log, LogReader, Lsn, Options, Record, SegmentPreparation,
    Subscription,
};
use common::{FaultyFs, small_options};
use futures_core::Stream;

/// The next record if one is deliverable now, without waiting.
fn poll_now(subscription: &mut Subscription) -> Poll<Option<annals::Result<Record>>> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(subscription).poll_next(&mut cx)
}

/// Every record deliverable now.
fn drain_now(subscription: &mut Subscription) -> Vec<Record> {
    let mut out = Vec::new();
    while let Poll::Ready(Some(record)) = poll_now(subscription) {
        out.push(record.unwrap());
    }
    out
}

fn sim_options(fs: &SimFs) -> Options {
    Options { file_system: Arc::new(fs.clone()), segment_preparation: SegmentPreparation::Inline, ..small_options() }
}

/// The first test: 64 writers append concurrently (async tasks,
/// each awaiting its own appends); one subscriber on a thread (the blocking
/// iterator) and one on the runtime (the stream) each receive every
/// acknowledged record exactly once, in strictly increasing LSN order.
#[test]
fn a_subscriber_under_64_concurrent_writers_receives_every_durable_record_exactly_once_in_order() {
    const WRITERS: u64 = 64;
    const PER_WRITER: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options { segment_bytes: 64 << 10, ..small_options() }).unwrap();
    log.append("before", Expectation::Any, &b"already there"[..]).wait().unwrap();
    let total = (WRITERS * PER_WRITER + 1) as usize;
    let blocking = {
        let mut subscription = log.subscribe(Lsn::ZERO).unwrap();
        std::thread::spawn(move || (&mut subscription).take(total).map(Result::unwrap).collect::<Vec<_>>())
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let (acked, streamed) = runtime.block_on(async {
        let mut subscription = log.subscribe(Lsn::ZERO).unwrap();
        let streamed = tokio::spawn(async move {
            let mut out = Vec::new();
            while out.len() < total {
                out.push(subscription.next_async().await.unwrap().unwrap());
            }
            out
        });
        let mut writers = Vec::new();
        for writer in 0..WRITERS {
            let log = log.clone();
            writers.push(tokio::spawn(async move {
                let mut lsns = Vec::new();
                for i in 0..PER_WRITER {
                    let payload = format!("w{writer}-{i}").into_bytes();
                    lsns.push(log.append(format!("w{writer}"), Expectation::Any, payload).await.unwrap().lsn);
                }
                lsns
            }));
        }
        let mut acked = BTreeSet::from([Lsn(1)]);
        for writer in writers {
            acked.extend(writer.await.unwrap());
        }
        (acked, streamed.await.unwrap())
    });
    for (who, got) in [("blocking", blocking.join().unwrap()), ("stream", streamed)] {
        assert_eq!(got.len(), total, "{who}");
        assert!(got.windows(2).all(|w| w[0].lsn < w[1].lsn), "{who}: not in strictly increasing LSN order");
        let lsns: BTreeSet<Lsn> = got.iter().map(|r| r.lsn).collect();
        assert_eq!(lsns, acked, "{who}: not every acknowledged record exactly once");
        for record in &got[1..] {
            let text = String::from_utf8(record.payload.to_vec()).unwrap();
            assert!(text.starts_with(&format!("{}-", String::from_utf8_lossy(&record.stream))), "{text}");
        }
    }
    log.close().wait().unwrap();
}

/// The second test, on the crash simulator: `Flush` and `Periodic`
/// appends are readable at once but not durable; a subscriber must not
/// receive them, because the power cut that follows takes them. What it
/// did receive is exactly what the log holds after the cut.
#[test]
fn a_subscriber_never_receives_a_record_that_a_later_power_cut_removes() {
    for (seed, durability) in [(1, Durability::Flush), (2, Durability::Periodic)] {
        let fs = SimFs::new();
        let options = Options { fsync_interval_ms: 3_600_000, ..sim_options(&fs) };
        let log = Log::open(annals::sim::sim_dir(), options).unwrap();
        let mut subscription = log.subscribe(Lsn::ZERO).unwrap();
        let synced = log.append("s", Expectation::Any, &b"synced"[..]).wait().unwrap();
        let mut unsynced = Vec::new();
        for i in 0..5u8 {
            unsynced.push(log.append_with("s", Expectation::Any, vec![i; 10], durability).wait().unwrap());
        }
        assert_eq!(log.read_all(Lsn::ZERO, 100).unwrap().len(), 6, "{durability:?}: readable before durable");
        let delivered = drain_now(&mut subscription);
        assert_eq!(delivered.iter().map(|r| r.lsn).collect::<Vec<_>>(), [synced.lsn], "{durability:?}");
        assert_eq!(log.durable_lsn(), synced.lsn);

        fs.crash_now();
        drop(log);
        let image = fs.crash_image(CrashMode::Drop, &mut SimRng::new(seed));
        let reopened = Log::open(annals::sim::sim_dir(), sim_options(&image)).unwrap();
        let kept = reopened.read_all(Lsn::ZERO, usize::MAX).unwrap();
        assert_eq!(kept, delivered, "{durability:?}: the subscriber saw exactly what survived the power cut");
        assert!(unsynced.iter().all(|a| kept.iter().all(|r| r.lsn != a.lsn)));
        // In every way a power cut can leave the disk, what was delivered survives.
        for mode in CrashMode::ALL {
            for seed in 0..20 {
                let image = fs.crash_image(mode, &mut SimRng::new(seed));
                let kept = Log::open(annals::sim::sim_dir(), sim_options(&image)).unwrap();
                let kept = kept.read_all(Lsn::ZERO, usize::MAX).unwrap();
                assert_eq!(kept[..delivered.len()], delivered[..], "{durability:?} {} seed {seed}", mode.name());
            }
        }
    }
}

/// Once synced, the same records are delivered: a `Sync` append syncs the
/// `Flush` appends before it, and the subscriber receives all, in order.
#[test]
fn flushed_records_are_delivered_once_a_sync_covers_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let mut subscription = log.subscribe(Lsn::ZERO).unwrap();
    for i in 0..3u8 {
        log.append_with("s", Expectation::Any, vec![i], Durability::Flush).wait().unwrap();
    }
    assert!(drain_now(&mut subscription).is_empty());
    log.append("s", Expectation::Any, vec![3]).wait().unwrap();
    let got: Vec<u8> = drain_now(&mut subscription).iter().map(|r| r.payload[0]).collect();
    assert_eq!(got, [0, 1, 2, 3]);
}

/// The third test: a consumer commits its position in the log,
/// the process goes away, and a new one resumes from the saved cursor and
/// receives exactly the records after it: none twice, none missed.
#[test]
fn a_saved_cursor_resumes_with_no_gap_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    for i in 0..100u64 {
        log.append(format!("s{}", i % 7), Expectation::Any, i.to_le_bytes().to_vec()).wait().unwrap();
    }
    let mut subscription = log.subscribe(log.cursor("consumer").unwrap().unwrap_or(Lsn::ZERO)).unwrap();
    let mut seen = Vec::new();
    for record in (&mut subscription).take(40) {
        let record = record.unwrap();
        seen.push(u64::from_le_bytes(record.payload[..].try_into().unwrap()));
        log.commit_cursor("consumer", record.lsn).wait().unwrap();
    }
    assert_eq!(subscription.position(), Lsn(40));
    drop(subscription);
    for i in 100..150u64 {
        log.append(format!("s{}", i % 7), Expectation::Any, i.to_le_bytes().to_vec()).wait().unwrap();
    }
    log.close().wait().unwrap();

    let log = common::open(dir.path());
    let after = log.cursor("consumer").unwrap().expect("the cursor survived the restart");
    assert_eq!(after, Lsn(40));
    let subscription = log.subscribe(after).unwrap();
    seen.extend(subscription.take(110).map(|r| u64::from_le_bytes(r.unwrap().payload[..].try_into().unwrap())));
    assert_eq!(seen, (0..150).collect::<Vec<_>>(), "every record once, in order, across the restart");
}

/// Cursors live in the log's reserved namespace: not listed, not in
/// `read_all` or a subscription, not writable by the user; deleting one
/// forgets it; a cursor past the end of the log is refused.
#[test]
fn named_cursors_are_hidden_from_users_and_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let first = log.append("user", Expectation::Any, &b"a"[..]).wait().unwrap();
    log.commit_cursor("c1", first.lsn).wait().unwrap();
    log.commit_cursor("c2", Lsn::ZERO).wait().unwrap();
    log.commit_cursor("c1", first.lsn).wait().unwrap();
    log.append("user", Expectation::Any, &b"b"[..]).wait().unwrap();
    assert_eq!(log.cursors().unwrap(), [("c1".to_owned(), first.lsn), ("c2".to_owned(), Lsn::ZERO)]);
    assert_eq!(log.streams("").unwrap().len(), 1);
    assert_eq!(log.streams(b"\xff").unwrap().len(), 0);
    let all = log.read_all(Lsn::ZERO, 100).unwrap();
    assert_eq!(all.iter().map(|r| &r.stream[..]).collect::<Vec<_>>(), [b"user", b"user"]);
    let mut subscription = log.subscribe(Lsn::ZERO).unwrap();
    assert_eq!(drain_now(&mut subscription), all);

    let reserved = b"\xffannals/cursor/c1".to_vec();
    assert!(matches!(log.append(&reserved, Expectation::Any, &b"x"[..]).wait(), Err(Error::InvalidArgument(_))));
    assert!(matches!(log.delete_stream(&reserved).wait(), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        log.commit(annals::Batch::new().clear(&reserved, Expectation::Any)).wait(),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(log.commit_cursor("c1", Lsn(99)).wait(), Err(Error::InvalidArgument(_))));
    assert!(matches!(log.commit_cursor("", Lsn(1)).wait(), Err(Error::InvalidArgument(_))));
    assert_eq!(log.cursor("c1").unwrap(), Some(first.lsn), "a refused commit changed nothing");

    log.delete_cursor("c1").wait().unwrap();
    assert_eq!(log.cursor("c1").unwrap(), None);
    log.close().wait().unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.cursors(), [("c2".to_owned(), Lsn::ZERO)]);
    assert_eq!(reader.streams("").len(), 1);
}

/// Options for the retention tests: 8 KiB segments, no background compaction.
fn retention_options(max_bytes: u64, cursor_lag_bytes_max: u64) -> Options {
    Options {
        segment_bytes: 8192,
        record_bytes_max: 2048,
        compaction: CompactionOptions { background: false, ..CompactionOptions::default() },
        max_bytes: Some(max_bytes),
        cursor_lag_bytes_max,
        ..Options::default()
    }
}

fn fill(log: &Log, records: u64) {
    for i in 0..records {
        log.append(format!("s{}", i % 3), Expectation::Any, vec![i as u8; 300]).wait().unwrap();
    }
}

/// A cursor below what `max_bytes` trimmed is answered "trimmed to X", by
/// a new subscription and by one that fell behind, never silently skipped;
/// from the start (`Lsn::ZERO`) reads from the oldest record there is.
#[test]
fn trimmed_cursors_get_a_typed_answer_with_where_the_log_starts() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), retention_options(32 << 10, 1 << 30)).unwrap();
    log.append("s", Expectation::Any, &b"first"[..]).wait().unwrap();
    let mut behind = log.subscribe(Lsn::ZERO).unwrap();
    assert_eq!(behind.next().unwrap().unwrap().lsn, Lsn(1));
    fill(&log, 400);
    let report = log.compact().unwrap();
    let oldest = report.trimmed_before;
    assert!(oldest > Lsn(2), "{report:?}");
    for after in [Lsn(1), Lsn(oldest.0 - 2)] {
        let mut subscription = log.subscribe(after).unwrap();
        match subscription.next() {
            Some(Err(Error::Trimmed { after: asked, oldest: starts })) => {
                assert_eq!((asked, starts), (after, oldest));
            }
            other => panic!("a subscription after {after} got {other:?}"),
        }
        assert!(subscription.next().is_none(), "it ends after the answer");
    }
    assert!(matches!(behind.next(), Some(Err(Error::Trimmed { after: Lsn(1), .. }))));
    // Right below the trim misses nothing: it goes on.
    let mut at_the_edge = log.subscribe(Lsn(oldest.0 - 1)).unwrap();
    assert_eq!(at_the_edge.next().unwrap().unwrap().lsn, oldest);
    let mut from_start = log.subscribe(Lsn::ZERO).unwrap();
    assert_eq!(from_start.next().unwrap().unwrap().lsn, oldest);
    assert!(matches!(log.commit_cursor("late", Lsn(1)).wait(), Err(Error::Trimmed { .. })));
}

/// The retention test: a registered cursor holds back a
/// `max_bytes` trim (nothing it has not read is dropped, it resumes with
/// no gap), and once it lags more than `cursor_lag_bytes_max` it is
/// released: the trim passes it, and it is told "trimmed".
#[test]
fn a_registered_cursor_holds_back_a_max_bytes_trim_and_a_lagging_one_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let options = retention_options(32 << 10, 128 << 10);
    let log = Log::open(dir.path(), options.clone()).unwrap();
    fill(&log, 10);
    log.commit_cursor("slow", Lsn(5)).wait().unwrap();
    fill(&log, 200); // about 70 KiB: over max_bytes, under the lag maximum
    let held = log.compact().unwrap();
    assert!(held.trimmed_before <= Lsn(6), "the cursor was not respected: {held:?}");
    let mut resumed = log.subscribe(Lsn(5)).unwrap();
    assert_eq!(resumed.next().unwrap().unwrap().lsn, Lsn(6), "nothing the cursor has not read was dropped");

    fill(&log, 600); // now the cursor lags over 128 KiB
    let live_before_the_trim = log.read_all(Lsn(6), usize::MAX).unwrap();
    let released = log.compact().unwrap();
    assert!(released.trimmed_before > Lsn(6), "a lagging cursor still holds: {released:?}");
    assert!(matches!(log.subscribe(Lsn(5)).unwrap().next(), Some(Err(Error::Trimmed { after: Lsn(5), .. }))));
    // The running subscription delivers what it read before the trim, then is told.
    let mut delivered = 0;
    let end = loop {
        match resumed.next().unwrap() {
            Ok(record) => {
                assert_eq!(record, live_before_the_trim[delivered], "no gap before the answer");
                delivered += 1;
            }
            Err(error) => break error,
        }
    };
    assert!(matches!(end, Error::Trimmed { .. }), "{end}");
    // The released cursor's own record was in the trimmed part: it says so,
    // after a restart too, rather than reading as "no cursor".
    assert!(matches!(log.cursor("slow"), Err(Error::CursorTrimmed { .. })), "{:?}", log.cursor("slow"));
    log.close().wait().unwrap();
    let log = Log::open(dir.path(), options).unwrap();
    assert!(matches!(log.cursor("slow"), Err(Error::CursorTrimmed { .. })), "{:?}", log.cursor("slow"));
    // Committing it again registers it anew.
    let last = log.last_lsn().unwrap();
    log.commit_cursor("slow", last).wait().unwrap();
    assert_eq!(log.cursor("slow").unwrap(), Some(last));
}

/// A cursor that keeps up keeps the log trimmed to `max_bytes`: the hold
/// is only what it has not read.
#[test]
fn a_cursor_that_keeps_up_does_not_stop_retention() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), retention_options(32 << 10, 1 << 30)).unwrap();
    fill(&log, 400);
    log.commit_cursor("fast", log.last_lsn().unwrap()).wait().unwrap();
    let report = log.compact().unwrap();
    assert!(report.trimmed_before > Lsn(300), "{report:?}");
    assert_eq!(log.cursor("fast").unwrap(), Some(Lsn(400)), "the cursor's own record is kept");
}

/// Compaction of records that are no longer live does not wait for
/// cursors and changes nothing a subscriber sees: a subscriber behind a
/// compaction of cleared records goes on without `Trimmed`.
#[test]
fn compaction_of_dead_records_does_not_change_what_a_subscriber_sees() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), retention_options(u64::MAX, 1 << 30)).unwrap();
    for i in 0..200u64 {
        log.append("gone", Expectation::Any, vec![i as u8; 300]).wait().unwrap();
    }
    // A consumer at LSN 10, in what is about to stop being live.
    log.commit_cursor("consumer", Lsn(10)).wait().unwrap();
    let mut subscription = log.subscribe(Lsn(10)).unwrap();
    log.delete_stream("gone").wait().unwrap();
    let kept = log.append("keep", Expectation::Any, &b"k1"[..]).wait().unwrap();
    for _ in 0..40 {
        log.append("pad", Expectation::Any, vec![0; 300]).wait().unwrap();
    }
    let report = log.compact().unwrap();
    assert!(report.operations_dropped >= 200 && report.trimmed_before == Lsn(0), "{report:?}");
    assert_eq!(log.cursor("consumer").unwrap(), Some(Lsn(10)));
    let next = subscription.next().unwrap().unwrap();
    assert_eq!((next.lsn, &next.payload[..]), (kept.lsn, &b"k1"[..]));
    // New subscriptions from inside the reclaimed range too.
    for after in [Lsn(3), Lsn(10)] {
        assert_eq!(log.subscribe(after).unwrap().next().unwrap().unwrap().lsn, kept.lsn);
    }
}

/// A subscriber blocked waiting is woken by a close and told so; after a
/// close or a poisoning, subscriptions end with the typed error, and new
/// ones are refused.
#[test]
fn a_closed_or_poisoned_log_ends_its_subscriptions_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    log.append("s", Expectation::Any, &b"a"[..]).wait().unwrap();
    let mut subscription = log.subscribe(Lsn::ZERO).unwrap();
    // The subscriber has its record before the close: a close ends a
    // subscription even with durable records it has not delivered yet.
    let (read_first, first_read) = std::sync::mpsc::channel();
    let waiting = std::thread::spawn(move || {
        let first = subscription.next().unwrap().unwrap();
        read_first.send(()).unwrap();
        let end = subscription.next();
        (first, end, subscription.next().is_none())
    });
    first_read.recv().unwrap();
    log.close().wait().unwrap();
    let (first, end, ended) = waiting.join().unwrap();
    assert_eq!(first.payload, &b"a"[..]);
    assert!(matches!(end, Some(Err(Error::Closed))), "{end:?}");
    assert!(ended);
    assert!(matches!(log.subscribe(Lsn::ZERO), Err(Error::Closed)));

    // Dropping every handle closes the log too: a subscription does not keep it open.
    let log = common::open(dir.path());
    let mut orphan = log.subscribe(Lsn(1)).unwrap();
    drop(log);
    assert!(matches!(orphan.next(), Some(Err(Error::Closed))));

    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    let mut subscription = log.subscribe(Lsn::ZERO).unwrap();
    let waiting = std::thread::spawn(move || subscription.next());
    fs.faults.fail_syncs.store(true, Ordering::SeqCst);
    assert!(log.append("s", Expectation::Any, &b"never durable"[..]).wait().is_err());
    assert!(matches!(waiting.join().unwrap(), Some(Err(Error::Poisoned { .. }))));
}

/// A `LogReader` beside a live writer (here in the same process; `annals
/// tail` does it from another) follows it with `refresh`, across a
/// rollover, and returns only records the frames say are durable: the
/// writer's last group waits for the next frame, or the close.
#[test]
fn a_log_reader_follows_a_live_writer_and_returns_only_durable_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    log.append("s", Expectation::Any, &b"0"[..]).wait().unwrap();
    let mut reader = LogReader::open(dir.path()).unwrap();
    let mut out = Vec::new();
    let mut after = Lsn::ZERO;
    let mut follow = |reader: &mut LogReader, out: &mut Vec<Record>| {
        reader.refresh().unwrap();
        loop {
            let before = out.len();
            let read_to = reader.read_durable(after, out).unwrap();
            if read_to == after && out.len() == before {
                break;
            }
            after = read_to;
        }
    };
    follow(&mut reader, &mut out);
    assert!(out.is_empty(), "nothing after the first record vouches for it yet");
    log.append_with("s", Expectation::Any, &b"1"[..], Durability::Flush).wait().unwrap();
    follow(&mut reader, &mut out);
    assert_eq!(out.len(), 1, "the second frame vouches for the first, not for itself");
    // Enough to roll over several 8 KiB segments.
    for i in 2..100u64 {
        log.append("s", Expectation::Any, format!("{i}").into_bytes()).wait().unwrap();
    }
    follow(&mut reader, &mut out);
    assert_eq!(out.len(), 99);
    assert_eq!(reader.durable_lsn(), Lsn(99));
    // Many rollovers between two refreshes, then a compaction (the reader
    // reads the log again), then more.
    let padded = |i: u64| {
        let mut payload = format!("{i}").into_bytes();
        payload.resize(1500, b' ');
        payload
    };
    for i in 100..160u64 {
        log.append("s", Expectation::Any, padded(i)).wait().unwrap();
    }
    follow(&mut reader, &mut out);
    assert_eq!(out.len(), 159);
    log.compact().unwrap();
    for i in 160..200u64 {
        log.append("s", Expectation::Any, padded(i)).wait().unwrap();
    }
    log.close().wait().unwrap();
    follow(&mut reader, &mut out);
    let payloads: Vec<String> =
        out.iter().map(|r| String::from_utf8(r.payload.to_vec()).unwrap().trim_end().to_owned()).collect();
    assert_eq!(payloads, (0..200).map(|i| i.to_string()).collect::<Vec<_>>(), "the close vouches for the rest");
}

/// Issue 12 point 3: while a writer has the log open, a `LogReader` reads
/// streams, records by LSN, and lists streams with their next sequence and
/// last time; `Log` lists the same; after `close()`, a clone's reads and
/// listings return `Closed`, not what may be stale.
#[test]
fn read_only_access_lists_streams_with_next_sequence_and_last_time_beside_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let a0 = log.append("a", Expectation::Any, &b"a0"[..]).wait().unwrap();
    log.append("b", Expectation::Any, &b"b0"[..]).wait().unwrap();
    let a1 = log.append("a", Expectation::Any, &b"a1"[..]).wait().unwrap();
    log.commit_cursor("hidden", a1.lsn).wait().unwrap();
    let listed = log.list_streams("").unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.list_streams("").unwrap(), listed, "the reader lists what the writer does");
    assert_eq!(listed.iter().map(|s| (&s.stream[..], s.next_seq.0)).collect::<Vec<_>>(), [(&b"a"[..], 2), (b"b", 1)]);
    let a_last = reader.read_lsn(a1.lsn).unwrap().unwrap().timestamp_ms;
    assert_eq!(listed[0].last_timestamp_ms, a_last);
    assert!(listed[0].last_timestamp_ms >= listed[1].last_timestamp_ms);
    assert_eq!(log.list_streams("b").unwrap().len(), 1);
    assert_eq!(reader.read_stream("a").unwrap().entries.len(), 2);
    assert_eq!(reader.read_lsn(a0.lsn).unwrap().unwrap().payload, &b"a0"[..]);
    assert_eq!(reader.streams(""), log.streams("").unwrap());

    let clone = log.clone();
    log.close().wait().unwrap();
    assert!(matches!(clone.list_streams(""), Err(Error::Closed)));
    assert!(matches!(clone.read_stream("a"), Err(Error::Closed)));
    assert!(matches!(clone.read_lsn(a0.lsn), Err(Error::Closed)));
    assert!(matches!(clone.cursor("hidden"), Err(Error::Closed)));
    assert!(matches!(clone.subscribe(Lsn::ZERO), Err(Error::Closed)));
}

/// A cursor past the end of the log (up to `u64::MAX`) waits, without
/// overflowing or delivering anything, until the log closes.
#[test]
fn a_subscription_after_the_end_of_the_log_waits_and_then_ends_with_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    log.append("s", Expectation::Any, &b"a"[..]).wait().unwrap();
    let mut far = log.subscribe(Lsn(u64::MAX)).unwrap();
    let mut next = log.subscribe(Lsn(1)).unwrap();
    assert!(poll_now(&mut far).is_pending());
    assert!(poll_now(&mut next).is_pending());
    log.append("s", Expectation::Any, &b"b"[..]).wait().unwrap();
    assert!(poll_now(&mut far).is_pending());
    assert_eq!(drain_now(&mut next).len(), 1);
    log.close().wait().unwrap();
    assert!(matches!(poll_now(&mut far), Poll::Ready(Some(Err(Error::Closed)))));
    assert!(matches!(poll_now(&mut far), Poll::Ready(None)));
}

/// `cursor_lag_bytes_max` 0 releases every cursor: retention trims past
/// one that lags at all, as if it were not there (options may differ
/// between runs; the cursor itself is unchanged).
#[test]
fn a_cursor_lag_maximum_of_zero_releases_every_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), retention_options(32 << 10, 1 << 30)).unwrap();
    fill(&log, 10);
    log.commit_cursor("slow", Lsn(5)).wait().unwrap();
    fill(&log, 300);
    assert_eq!(log.compact().unwrap().trimmed_before, Lsn(0), "held with the default maximum");
    log.close().wait().unwrap();
    let log = Log::open(dir.path(), retention_options(32 << 10, 0)).unwrap();
    assert_eq!(log.cursor("slow").unwrap(), Some(Lsn(5)));
    assert!(log.compact().unwrap().trimmed_before > Lsn(6), "released with a maximum of 0");
    assert!(matches!(log.subscribe(Lsn(5)).unwrap().next(), Some(Err(Error::Trimmed { .. }))));
}
