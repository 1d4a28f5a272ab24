//! Retention records (issue 11, point 1): a prune, a snapshot-and-prune,
//! keeping the newest snapshots, pruning by time and deleting a stream are
//! written as records, so every read honours them at once and a restart
//! never brings back what they removed.

mod common;

use std::path::Path;

use annals::{Batch, Error, Expectation, Log, LogReader, Lsn, PruneSnapshots, Record, RecordKind, StreamSeq};

fn append_n(log: &Log, stream: &str, n: u64) -> Vec<Lsn> {
    (0..n)
        .map(|i| log.append(stream, Expectation::Any, format!("{stream}-{i}").into_bytes()).wait().unwrap().lsn)
        .collect()
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.seq.0).collect()
}

fn live_of(log: &Log, stream: &str) -> Vec<(RecordKind, u64)> {
    log.read_all(Lsn::ZERO, usize::MAX)
        .unwrap()
        .iter()
        .filter(|r| r.stream == stream.as_bytes())
        .map(|r| (r.kind, r.seq.0))
        .collect()
}

/// Every read the log offers, for a stream pruned before `start` whose
/// entries were `lsns` (sequence `i` at `lsns[i]`).
fn assert_pruned(log: &Log, stream: &str, start: u64, lsns: &[Lsn]) {
    let read = log.read_stream(stream).unwrap();
    assert_eq!(seqs(&read.entries), (start..lsns.len() as u64).collect::<Vec<_>>());
    match log.read_stream_from(stream, StreamSeq(0)) {
        Err(Error::Pruned { start: found, .. }) if start > 0 => assert_eq!(found, StreamSeq(start)),
        Ok(entries) if start == 0 => assert_eq!(entries.len(), lsns.len()),
        other => panic!("a read from 0 of a stream pruned before {start}: {other:?}"),
    }
    assert_eq!(
        seqs(&log.read_stream_from(stream, StreamSeq(start)).unwrap()),
        (start..lsns.len() as u64).collect::<Vec<_>>()
    );
    for (seq, lsn) in lsns.iter().enumerate() {
        let by_lsn = log.read_lsn(*lsn).unwrap();
        assert_eq!(by_lsn.is_some(), seq as u64 >= start, "read_lsn of sequence {seq} at {lsn}");
    }
    let all: Vec<u64> = live_of(log, stream).into_iter().map(|(_, seq)| seq).collect();
    assert_eq!(all, (start..lsns.len() as u64).collect::<Vec<_>>());
    assert_eq!(log.next_seq(stream).unwrap(), StreamSeq(lsns.len() as u64), "a prune never moves the next sequence");
}

fn reopen(dir: &Path) -> Log {
    common::open(dir)
}

#[test]
fn a_prune_hides_the_entries_before_it_from_every_read_at_once_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = reopen(dir.path());
    let lsns = append_n(&log, "wf", 10);
    append_n(&log, "other", 3);
    log.prune("wf", StreamSeq(6), PruneSnapshots::Before(Lsn::ZERO)).wait().unwrap();
    assert_pruned(&log, "wf", 6, &lsns);
    assert_eq!(live_of(&log, "other").len(), 3, "other streams are untouched");
    log.close().wait().unwrap();

    let log = reopen(dir.path());
    assert_pruned(&log, "wf", 6, &lsns);
    let next = log.append("wf", Expectation::Exact(StreamSeq(10)), &b"wf-10"[..]).wait().unwrap();
    assert_eq!(next.seq, StreamSeq(10));
    drop(log);

    // After a crash too (no clean close), and through the read-only handle.
    let image = tempfile::tempdir().unwrap();
    common::crash_image(dir.path(), image.path());
    let reader = LogReader::open(image.path()).unwrap();
    assert!(matches!(reader.read_stream_from("wf", StreamSeq(5)), Err(Error::Pruned { .. })));
    assert_eq!(seqs(&reader.read_stream("wf").unwrap().entries), (6..11).collect::<Vec<_>>());
}

#[test]
fn a_prune_past_the_next_sequence_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = reopen(dir.path());
    append_n(&log, "wf", 3);
    let before = log.last_lsn().unwrap();
    let refused = log.prune("wf", StreamSeq(4), PruneSnapshots::Before(Lsn::ZERO)).wait();
    assert!(matches!(refused, Err(Error::PruneOutOfRange { next_seq: StreamSeq(3), .. })), "{refused:?}");
    // In a batch, the whole batch is refused.
    let batch =
        Batch::new().append("wf", Expectation::Any, &b"x"[..]).prune("wf", StreamSeq(9), PruneSnapshots::AllButLatest);
    assert!(matches!(log.commit(batch).wait(), Err(Error::PruneOutOfRange { .. })));
    assert_eq!(log.last_lsn().unwrap(), before, "nothing was written");
    assert_eq!(log.next_seq("wf").unwrap(), StreamSeq(3));
    // Pruning up to the next sequence empties the stream but keeps its place.
    log.prune("wf", StreamSeq(3), PruneSnapshots::Before(Lsn::ZERO)).wait().unwrap();
    assert!(log.read_stream("wf").unwrap().entries.is_empty());
    assert_eq!(log.latest("wf").unwrap(), None);
    assert_eq!(log.next_seq("wf").unwrap(), StreamSeq(3));
    drop(log);
    let log = reopen(dir.path());
    assert_eq!(log.next_seq("wf").unwrap(), StreamSeq(3), "an emptied stream keeps its next sequence across reopen");
}

#[test]
fn snapshot_and_prune_leaves_the_snapshot_and_what_came_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = reopen(dir.path());
    append_n(&log, "wf", 20);
    log.snapshot("wf", StreamSeq(9), &b"through 9"[..]).wait().unwrap();
    log.snapshot_and_prune("wf", StreamSeq(19), &b"through 19"[..]).wait().unwrap();
    append_n(&log, "wf", 2);
    let check = |log: &Log| {
        let read = log.read_stream("wf").unwrap();
        assert_eq!(read.snapshot.as_ref().map(|s| (s.seq.0, s.payload.as_ref())), Some((19, &b"through 19"[..])));
        assert_eq!(seqs(&read.entries), vec![20, 21]);
        assert_eq!(
            live_of(log, "wf"),
            vec![(RecordKind::Snapshot, 19), (RecordKind::Entry, 20), (RecordKind::Entry, 21)],
            "the older snapshot and the covered entries are gone from read_all"
        );
        assert!(matches!(log.read_stream_from("wf", StreamSeq(19)), Err(Error::Pruned { start: StreamSeq(20), .. })));
    };
    check(&log);
    log.close().wait().unwrap();
    check(&reopen(dir.path()));
}

#[test]
fn keep_snapshots_keeps_the_newest_ones_and_what_the_oldest_kept_one_needs() {
    let dir = tempfile::tempdir().unwrap();
    let log = reopen(dir.path());
    let mut snapshot_lsns = Vec::new();
    for round in 0..5u64 {
        append_n(&log, "wf", 4);
        let through = StreamSeq(round * 4 + 3);
        snapshot_lsns.push(log.snapshot("wf", through, format!("s{round}").into_bytes()).wait().unwrap().lsn);
    }
    assert_eq!(log.keep_snapshots("wf", 9).unwrap(), None, "fewer than 9 snapshots: nothing to do");
    assert!(matches!(log.keep_snapshots("wf", 0), Err(Error::InvalidArgument(_))));
    log.keep_snapshots("wf", 2).unwrap().expect("a prune was written");
    let check = |log: &Log| {
        let snapshots: Vec<u64> =
            live_of(log, "wf").into_iter().filter(|(kind, _)| *kind == RecordKind::Snapshot).map(|(_, s)| s).collect();
        assert_eq!(snapshots, vec![15, 19]);
        for (i, lsn) in snapshot_lsns.iter().enumerate() {
            assert_eq!(log.read_lsn(*lsn).unwrap().is_some(), i >= 3, "snapshot {i}");
        }
        // The entries the oldest kept snapshot covers are pruned with it.
        assert!(matches!(log.read_stream_from("wf", StreamSeq(15)), Err(Error::Pruned { start: StreamSeq(16), .. })));
        assert_eq!(log.read_stream("wf").unwrap().snapshot.unwrap().payload, &b"s4"[..]);
    };
    check(&log);
    drop(log);
    check(&reopen(dir.path()));
}

#[test]
fn prune_older_than_goes_by_the_logs_own_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let log = reopen(dir.path());
    append_n(&log, "wf", 5);
    std::thread::sleep(std::time::Duration::from_millis(20));
    append_n(&log, "wf", 5);
    let records = log.read_stream("wf").unwrap().entries;
    let times: Vec<u64> = records.iter().map(|r| r.timestamp_ms).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "the log's clock never goes back: {times:?}");
    let cut = records[5].timestamp_ms;
    assert!(records[4].timestamp_ms < cut);
    assert_eq!(log.prune_older_than("wf", records[0].timestamp_ms).unwrap(), None, "nothing is older");
    log.prune_older_than("wf", cut).unwrap().expect("a prune was written");
    assert_eq!(seqs(&log.read_stream("wf").unwrap().entries), (5..10).collect::<Vec<_>>());
    drop(log);
    let log = reopen(dir.path());
    assert_eq!(seqs(&log.read_stream("wf").unwrap().entries), (5..10).collect::<Vec<_>>());
    let again = log.read_stream("wf").unwrap().entries;
    assert_eq!(again.iter().map(|r| r.timestamp_ms).collect::<Vec<_>>(), times[5..].to_vec(), "timestamps are on disk");
}

#[test]
fn a_deleted_stream_is_gone_from_every_read_and_can_start_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = reopen(dir.path());
    let lsns = append_n(&log, "wf", 4);
    log.snapshot("wf", StreamSeq(2), &b"s"[..]).wait().unwrap();
    log.delete_stream("wf").wait().unwrap();
    assert!(live_of(&log, "wf").is_empty(), "read_all returns nothing of a deleted stream");
    assert!(lsns.iter().all(|lsn| log.read_lsn(*lsn).unwrap().is_none()));
    assert!(log.streams("").unwrap().is_empty());
    let again = log.append("wf", Expectation::NoStream, &b"new"[..]).wait().unwrap();
    assert_eq!(again.seq, StreamSeq(0));
    log.close().wait().unwrap();
    let log = reopen(dir.path());
    assert_eq!(live_of(&log, "wf"), vec![(RecordKind::Entry, 0)]);
    // The records are still on disk until compaction reclaims them.
    let on_disk = log.read_all_on_disk(Lsn::ZERO, usize::MAX).unwrap();
    assert!(on_disk.iter().any(|r| r.kind == RecordKind::Tombstone));
}

#[test]
fn the_first_retention_record_marks_the_log_so_older_readers_refuse_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = reopen(dir.path());
    append_n(&log, "wf", 2);
    let features = |dir: &Path| {
        let bytes = std::fs::read(dir.join("annals.state")).unwrap();
        let slot = |i: usize| {
            let slot = &bytes[i * 512..(i + 1) * 512];
            let generation = u64::from_le_bytes(slot[32..40].try_into().unwrap());
            (generation, u64::from_le_bytes(slot[40..48].try_into().unwrap()))
        };
        slot(0).max(slot(1)).1
    };
    // Bit 2 (the clean-close pair) is in every slot a writer writes.
    assert_eq!(features(dir.path()), 4);
    log.prune("wf", StreamSeq(1), PruneSnapshots::AllButLatest).wait().unwrap();
    assert_eq!(features(dir.path()) & 1, 1, "the retention feature bit is set before the prune is written");
}

/// The `start_before` of each acknowledgement, in order.
fn starts_before(acks: &[annals::Appended]) -> Vec<Option<u64>> {
    acks.iter().map(|ack| ack.start_before.map(|seq| seq.0)).collect()
}

/// A prune's acknowledgement says where its stream started before it, so
/// that prunes racing with one bound count each entry they removed once:
/// one after the other, in one batch, and after a clear in the batch
/// started the stream over. (Issue 10: two event prunes both counted the
/// same events, each from what it had read before its commit.)
#[test]
fn a_prune_reports_where_its_stream_started_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = reopen(dir.path());
    append_n(&log, "s", 10);
    let prune = |before: u64| log.prune("s", StreamSeq(before), PruneSnapshots::AllButLatest).wait().unwrap();
    assert_eq!(prune(3).start_before, Some(StreamSeq(0)), "removed 0..3");
    assert_eq!(prune(3).start_before, Some(StreamSeq(3)), "the same bound again removes nothing");
    assert_eq!(prune(2).start_before, Some(StreamSeq(3)), "a lower bound removes nothing");
    assert_eq!(prune(5).start_before, Some(StreamSeq(3)), "removed 3..5");
    let appended = log.append("s", Expectation::Any, &b"x"[..]).wait().unwrap();
    assert_eq!(appended.start_before, None, "only a prune reports it");

    let acks = log
        .commit(Batch::new().prune("s", StreamSeq(7), PruneSnapshots::AllButLatest).prune(
            "s",
            StreamSeq(6),
            PruneSnapshots::AllButLatest,
        ))
        .wait()
        .unwrap();
    assert_eq!(starts_before(&acks), [Some(5), Some(7)], "the second sees the first in its own batch");
    let acks = log
        .commit(
            Batch::new()
                .clear("s", Expectation::Any)
                .append("s", Expectation::NoStream, &b"a"[..])
                .append("s", Expectation::Any, &b"b"[..])
                .prune("s", StreamSeq(1), PruneSnapshots::AllButLatest),
        )
        .wait()
        .unwrap();
    assert_eq!(starts_before(&acks), [None, None, None, Some(0)], "a clear starts the stream over at 0");

    log.close().wait().unwrap();
    let log = reopen(dir.path());
    let ack = log.prune("s", StreamSeq(2), PruneSnapshots::AllButLatest).wait().unwrap();
    assert_eq!(ack.start_before, Some(StreamSeq(1)), "recovered from the log");
    assert_eq!(seqs(&log.read_stream("s").unwrap().entries), Vec::<u64>::new());
}

/// Two prunes of one stream committed in one group report each the start
/// the other left: the writer follows a stream's start through the group
/// it has not yet published to the index. The writer is held inside an
/// fsync while both are queued, so the next group takes them together.
#[test]
fn prunes_in_one_group_commit_report_each_the_start_the_other_left() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    append_n(&log, "s", 10);
    log.prune("s", StreamSeq(2), PruneSnapshots::AllButLatest).wait().unwrap();

    let (entered, entered_rx) = std::sync::mpsc::channel();
    let (open_gate, gate) = std::sync::mpsc::channel();
    *fs.faults.sync_gate.lock().unwrap() = Some((entered, gate));
    let held = {
        let log = log.clone();
        std::thread::spawn(move || log.append("other", Expectation::Any, &b"held"[..]).wait())
    };
    entered_rx.recv().unwrap();
    let syncs_before = fs.faults.syncs.load(std::sync::atomic::Ordering::SeqCst);
    // Queued (a first poll queues a write) while the writer is held.
    let mut queued: Vec<_> =
        [4, 3, 6].map(|before| log.prune("s", StreamSeq(before), PruneSnapshots::AllButLatest)).into_iter().collect();
    let waker = std::task::Waker::noop();
    for pending in &mut queued {
        let polled = std::future::Future::poll(std::pin::Pin::new(pending), &mut std::task::Context::from_waker(waker));
        assert!(polled.is_pending(), "the writer is held");
    }
    open_gate.send(()).unwrap();
    held.join().unwrap().unwrap();
    let acks: Vec<_> = queued.into_iter().map(|pending| pending.wait().unwrap()).collect();
    assert_eq!(starts_before(&acks), [Some(2), Some(4), Some(4)]);
    assert_eq!(
        fs.faults.syncs.load(std::sync::atomic::Ordering::SeqCst),
        syncs_before + 2,
        "the held group's fsync and one for the three prunes: they were one group"
    );
    assert_eq!(seqs(&log.read_stream("s").unwrap().entries), (6..10).collect::<Vec<_>>());
}
