//! Every record kind written through the log reads back byte for byte, by
//! stream, by LSN and in LSN order, before and after a reopen.

mod common;

use annals::{Batch, Expectation, Lsn, RecordKind, StreamSeq};

#[test]
fn entries_read_back_by_stream_lsn_and_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let a0 = log.append("a", Expectation::NoStream, &b"a0"[..]).wait().unwrap();
    let b0 = log.append("b", Expectation::Any, &b"b0"[..]).wait().unwrap();
    let a1 = log.append("a", Expectation::Exact(StreamSeq(1)), &b""[..]).wait().unwrap();
    assert_eq!((a0.lsn, a0.seq), (Lsn(1), StreamSeq(0)));
    assert_eq!((b0.lsn, b0.seq), (Lsn(2), StreamSeq(0)));
    assert_eq!((a1.lsn, a1.seq), (Lsn(3), StreamSeq(1)));

    let a = log.read_stream("a").unwrap();
    assert!(a.snapshot.is_none());
    let payloads: Vec<&[u8]> = a.entries.iter().map(|r| r.payload.as_ref()).collect();
    assert_eq!(payloads, vec![&b"a0"[..], &b""[..]]);
    assert_eq!(log.read_lsn(Lsn(2)).unwrap().unwrap().payload, &b"b0"[..]);
    assert!(log.read_lsn(Lsn(4)).unwrap().is_none());
    let all = log.read_all(Lsn(1), 10).unwrap();
    assert_eq!(all.iter().map(|r| r.lsn).collect::<Vec<_>>(), vec![Lsn(2), Lsn(3)]);
    assert_eq!(log.last_lsn().unwrap(), Lsn(3));
}

#[test]
fn snapshot_tombstone_and_batch_round_trip_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = common::open(dir.path());
        for i in 0..3u8 {
            log.append("s", Expectation::Exact(StreamSeq(u64::from(i))), vec![i]).wait().unwrap();
        }
        log.snapshot("s", StreamSeq(1), &b"state through 1"[..]).wait().unwrap();
        log.append("t", Expectation::Any, &b"t0"[..]).wait().unwrap();
        log.clear("t", Expectation::Exact(StreamSeq(1))).wait().unwrap();
        let batch = Batch::new()
            .append("u", Expectation::NoStream, &b"u0"[..])
            .append("s", Expectation::Exact(StreamSeq(3)), &b"s3"[..])
            .snapshot("u", StreamSeq(0), &b"u-state"[..]);
        let appended = log.commit(batch).wait().unwrap();
        assert_eq!(appended.iter().map(|a| a.seq.0).collect::<Vec<_>>(), vec![0, 3, 0]);
        log.close().wait().unwrap();
    }
    let log = common::open(dir.path());
    let s = log.read_stream("s").unwrap();
    let snapshot = s.snapshot.unwrap();
    assert_eq!(
        (snapshot.seq, snapshot.payload.as_ref(), snapshot.kind),
        (StreamSeq(1), &b"state through 1"[..], RecordKind::Snapshot)
    );
    assert_eq!(s.entries.iter().map(|r| r.seq.0).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(log.read_stream_from("s", StreamSeq(0)).unwrap().len(), 4, "entries before a snapshot stay readable");
    assert_eq!(log.read_stream("t").unwrap().entries.len(), 0);
    assert_eq!(log.next_seq("t").unwrap(), StreamSeq(0));
    let u = log.read_stream("u").unwrap();
    assert_eq!(u.snapshot.unwrap().payload, &b"u-state"[..]);
    assert!(u.entries.is_empty());
    let kinds: Vec<RecordKind> = log.read_all(Lsn::ZERO, 100).unwrap().iter().map(|r| r.kind).collect();
    use RecordKind::*;
    // The cleared stream's entry and its tombstone are not live: read_all
    // returns only live entries and snapshots.
    assert_eq!(kinds, vec![Entry, Entry, Entry, Snapshot, Entry, Entry, Snapshot]);
}

#[test]
fn reopen_keeps_every_record_and_appends_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = Vec::new();
    for round in 0..3 {
        let log = common::open(dir.path());
        for i in 0..50u32 {
            let payload = format!("round {round} record {i}").into_bytes();
            let stream = format!("stream-{}", i % 7);
            let appended = log.append(&stream, Expectation::Any, payload.clone()).wait().unwrap();
            written.push((appended.lsn, stream, appended.seq, payload));
        }
        drop(log); // dropping the last handle closes it
    }
    let log = common::open(dir.path());
    let all = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    assert_eq!(all.len(), written.len());
    for (record, (lsn, stream, seq, payload)) in all.iter().zip(&written) {
        assert_eq!(
            (record.lsn, record.stream.as_ref(), record.seq, record.payload.as_ref()),
            (*lsn, stream.as_bytes(), *seq, payload.as_slice())
        );
    }
}

#[test]
fn rollover_across_many_small_segments_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let payload = vec![0xAB; 700];
    for i in 0..400u64 {
        let appended = log.append("one", Expectation::Exact(StreamSeq(i)), payload.clone()).wait().unwrap();
        assert_eq!(appended.lsn, Lsn(i + 1));
    }
    assert!(common::segment_files(dir.path()).len() > 30, "700-byte records in 8 KiB segments roll over often");
    // Reads cross segment boundaries, both by stream and by cursor.
    assert_eq!(log.read_stream("one").unwrap().entries.len(), 400);
    for start in [0u64, 9, 10, 11, 399] {
        let page = log.read_all(Lsn(start), 25).unwrap();
        let expect: Vec<Lsn> = (start + 1..=(start + 25).min(400)).map(Lsn).collect();
        assert_eq!(page.iter().map(|r| r.lsn).collect::<Vec<_>>(), expect);
    }
    log.close().wait().unwrap();
    let log = common::open(dir.path());
    assert_eq!(log.next_seq("one").unwrap(), StreamSeq(400));
    assert!(log.read_stream("one").unwrap().entries.iter().all(|r| r.payload == payload));
}

/// Writes snapshots, entries, a clear and batches over many small segments.
fn write_history(log: &annals::Log) {
    for i in 0..300u64 {
        let stream = format!("s{}", i % 3);
        log.append(stream.as_str(), Expectation::Exact(StreamSeq(i / 3)), format!("entry {i:>40}").into_bytes())
            .wait()
            .unwrap();
    }
    log.snapshot("s0", StreamSeq(9), &b"s0 through 9"[..]).wait().unwrap();
    log.clear("s2", Expectation::Any).wait().unwrap();
    let batch = Batch::new().append("s0", Expectation::Exact(StreamSeq(100)), &b"s0 100"[..]).append(
        "s2",
        Expectation::NoStream,
        &b"s2 again"[..],
    );
    log.commit(batch).wait().unwrap();
}

/// What `visit_stream` saw, as owned records: the snapshot first, if any.
fn visited(log: &annals::Log, stream: &str) -> Vec<annals::Record> {
    let mut seen = Vec::new();
    let count = log.visit_stream(stream, |r| seen.push(r.to_record())).unwrap();
    assert_eq!(count, seen.len());
    seen
}

fn assert_visit_matches_read_stream(log: &annals::Log) {
    for stream in ["s0", "s1", "s2"] {
        let read = log.read_stream(stream).unwrap();
        let expected: Vec<annals::Record> = read.snapshot.into_iter().chain(read.entries).collect();
        assert!(!expected.is_empty());
        assert_eq!(visited(log, stream), expected, "stream {stream}");
    }
    let s0 = visited(log, "s0");
    assert_eq!(s0[0].kind, RecordKind::Snapshot);
    assert_eq!(s0.iter().map(|r| r.seq.0).collect::<Vec<_>>(), (9..=100).collect::<Vec<_>>());
    assert_eq!(visited(log, "s2").iter().map(|r| r.payload.as_ref()).collect::<Vec<_>>(), vec![&b"s2 again"[..]]);
    assert_eq!(log.visit_stream("missing", |_| panic!("a missing stream has no records")).unwrap(), 0);
}

#[test]
fn visit_stream_sees_what_read_stream_returns_on_disk_and_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = common::open(dir.path());
        write_history(&log);
        assert!(common::segment_files(dir.path()).len() > 2, "the history spans segments");
        assert_visit_matches_read_stream(&log);
        log.close().wait().unwrap();
    }
    assert_visit_matches_read_stream(&common::open(dir.path()));
}

#[test]
fn visit_stream_sees_what_read_stream_returns_where_the_map_cannot_lend_its_bytes() {
    // The simulated file system copies on every read instead of lending a slice.
    let fs = annals::sim::fs::SimFs::new();
    let options = annals::Options { file_system: std::sync::Arc::new(fs), ..common::small_options() };
    let log = annals::Log::open(annals::sim::sim_dir(), options).unwrap();
    write_history(&log);
    assert_visit_matches_read_stream(&log);
}
