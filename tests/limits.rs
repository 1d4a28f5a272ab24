//! Inputs over a limit get a typed error and write nothing.

mod common;

use annals::{Batch, Error, Expectation, Log, Lsn, Options, StreamSeq};

#[test]
fn oversized_records_and_ids_are_rejected_with_the_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path()); // record_bytes_max 4096
    log.append("s", Expectation::Any, &b"ok"[..]).wait().unwrap();
    let too_big = log.append("s", Expectation::Any, vec![0; 5000]).wait();
    assert!(matches!(too_big, Err(Error::TooLarge { what: "record", max: 4096, .. })), "{too_big:?}");
    let long_id = "x".repeat(1025);
    assert!(matches!(
        log.append(&long_id, Expectation::Any, &b""[..]).wait(),
        Err(Error::TooLarge { what: "stream id", len: 1025, max: 1024 })
    ));
    assert!(matches!(log.append("", Expectation::Any, &b""[..]).wait(), Err(Error::InvalidArgument(_))));
    assert!(matches!(log.commit(Batch::new()).wait(), Err(Error::InvalidArgument(_))));
    let mut huge = Batch::new();
    for _ in 0..65_537 {
        huge = huge.append("s", Expectation::Any, &b""[..]);
    }
    assert!(matches!(log.commit(huge).wait(), Err(Error::TooLarge { what: "batch operation count", .. })));
    assert!(matches!(log.snapshot("s", StreamSeq(1), &b""[..]).wait(), Err(Error::SnapshotOutOfRange { .. })));
    assert!(matches!(log.snapshot("nobody", StreamSeq(0), &b""[..]).wait(), Err(Error::SnapshotOutOfRange { .. })));
    assert_eq!(log.last_lsn().unwrap(), Lsn(1), "nothing rejected was written");
    // The largest record that fits is accepted.
    let fits = 4096 - 22 - 1;
    log.append("s", Expectation::Any, vec![1; fits]).wait().unwrap();
}

#[test]
fn options_that_cannot_work_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for options in [
        Options { segment_bytes: 100, ..Options::default() },
        Options { segment_bytes: 8192, record_bytes_max: 8192, ..Options::default() },
        Options { record_bytes_max: 0, ..Options::default() },
        Options { fsync_interval_ms: 0, ..Options::default() },
        Options { queue_requests_max: 0, ..Options::default() },
    ] {
        assert!(matches!(Log::open(dir.path(), options), Err(Error::InvalidArgument(_))));
    }
}
