//! A batch commits all of its operations or none, across a crash too.

mod common;

use annals::{Batch, Error, Expectation, Log, Lsn, StreamSeq};

#[test]
fn one_failing_guard_rejects_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    log.append("b", Expectation::Any, &b"b0"[..]).wait().unwrap();
    let batch = Batch::new()
        .append("a", Expectation::NoStream, &b"a0"[..])
        .append("b", Expectation::NoStream, &b"b?"[..]) // fails: b is at 1
        .append("c", Expectation::Any, &b"c0"[..]);
    let result = log.commit(batch).wait();
    assert!(matches!(result, Err(Error::Conflict { actual: StreamSeq(1), .. })), "{result:?}");
    assert_eq!(log.last_lsn().unwrap(), Lsn(1));
    assert_eq!(log.next_seq("a").unwrap(), StreamSeq(0));
    assert_eq!(log.next_seq("c").unwrap(), StreamSeq(0));
}

#[test]
fn guards_inside_a_batch_see_the_batch_own_earlier_operations() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let batch = Batch::new()
        .append("s", Expectation::NoStream, &b"0"[..])
        .append("s", Expectation::Exact(StreamSeq(1)), &b"1"[..])
        .snapshot("s", StreamSeq(1), &b"through 1"[..]);
    let appended = log.commit(batch).wait().unwrap();
    assert_eq!(appended.iter().map(|a| a.lsn).collect::<Vec<_>>(), vec![Lsn(1), Lsn(2), Lsn(3)]);
    let duplicate =
        Batch::new().append("t", Expectation::NoStream, &b""[..]).append("t", Expectation::NoStream, &b""[..]);
    assert!(matches!(log.commit(duplicate).wait(), Err(Error::Conflict { .. })));
}

#[test]
fn a_torn_batch_is_absent_after_recovery_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let image = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    log.append("a", Expectation::Any, &b"before"[..]).wait().unwrap();
    let batch = Batch::new()
        .append("a", Expectation::Any, vec![1; 300])
        .append("b", Expectation::Any, vec![2; 300])
        .append("c", Expectation::Any, vec![3; 300]);
    log.commit(batch).wait().unwrap();
    common::crash_image(dir.path(), image.path());
    let segment = common::segment_files(image.path()).pop().unwrap();
    let batch_frame = *common::frame_offsets(&segment).last().unwrap();
    // Lose the batch's last sector-sized piece, as a torn write would.
    common::zero_range(&segment, batch_frame + 600, batch_frame + 1000);
    let recovered = Log::open(image.path(), common::small_options()).unwrap();
    assert_eq!(recovered.recovery_report().torn_tail.as_ref().unwrap().offset, batch_frame as u64);
    assert_eq!(recovered.last_lsn().unwrap(), Lsn(1));
    for stream in ["b", "c"] {
        assert_eq!(recovered.next_seq(stream).unwrap(), StreamSeq(0));
    }
    assert_eq!(recovered.read_stream("a").unwrap().entries.len(), 1);
}
