//! A batch's check-only operations (`Batch::check`): guards that write
//! nothing, decided by the writer with the batch's other guards.

mod common;

use annals::{Batch, Error, Expectation, Lsn, StreamSeq};

#[test]
fn a_check_guards_the_writes_of_its_batch_and_takes_no_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    log.append("guard", Expectation::Any, &b"g"[..]).wait().unwrap();
    let batch =
        Batch::new().append("data", Expectation::Any, &b"d0"[..]).check("guard", Expectation::Exact(StreamSeq(1)));
    let acks = log.commit(batch).wait().unwrap();
    assert_eq!(acks[0].lsn, Lsn(2));
    assert_eq!(
        (acks[1].lsn, acks[1].seq),
        (Lsn(2), StreamSeq(1)),
        "a check: the last LSN before it, the next sequence"
    );
    assert_eq!(acks[0].timestamp_ms, acks[1].timestamp_ms, "one batch, one time");
    assert_eq!(log.last_lsn().unwrap(), Lsn(2), "the check took no LSN");
    let stale = Batch::new().check("guard", Expectation::NoStream).append("data", Expectation::Any, &b"d1"[..]);
    let refused = log.commit(stale).wait();
    assert!(matches!(refused, Err(Error::Conflict { actual: StreamSeq(1), .. })), "{refused:?}");
    assert_eq!(log.next_seq("data").unwrap(), StreamSeq(1), "nothing of the refused batch was written");
    assert!(matches!(log.commit(Batch::new().check("", Expectation::Any)).wait(), Err(Error::InvalidArgument(_))));
}

#[test]
fn a_batch_of_checks_alone_writes_nothing_and_survives_no_reopen_as_a_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = common::open(dir.path());
        log.append("a", Expectation::Any, &b"a"[..]).wait().unwrap();
        let acks = log
            .commit(Batch::new().check("a", Expectation::Exact(StreamSeq(1))).check("b", Expectation::NoStream))
            .wait()
            .unwrap();
        assert_eq!(acks.len(), 2);
        assert!(matches!(
            log.commit(Batch::new().check("a", Expectation::NoStream)).wait(),
            Err(Error::Conflict { .. })
        ));
        assert_eq!(log.last_lsn().unwrap(), Lsn(1));
    }
    let log = common::open(dir.path());
    assert_eq!(log.last_lsn().unwrap(), Lsn(1));
    assert_eq!(log.read_all(Lsn::ZERO, usize::MAX).unwrap().len(), 1, "the checks left no record");
    assert_eq!(log.next_seq("b").unwrap(), StreamSeq(0));
}

/// A check queued behind an append to its stream in the same group sees
/// that append (the writer's overlay of the group), not the index alone.
#[test]
fn a_check_sees_appends_queued_before_it_in_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for n in 0..50u64 {
            let append = log.append("s", Expectation::Exact(StreamSeq(n)), vec![n as u8]);
            let check = log.commit(Batch::new().check("s", Expectation::Exact(StreamSeq(n + 1))));
            let (appended, checked) = tokio::join!(append, check);
            appended.unwrap();
            checked.expect("the check sees the append queued before it");
        }
    });
}
