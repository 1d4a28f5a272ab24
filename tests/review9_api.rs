//! Review 9 of the public API with absurd arguments: each answers with a
//! result, never a panic. Each test names the behaviour it holds and says
//! how the bug it guards was found.

use annals::{Expectation, Log, Options, StreamSeq};

/// `keep_snapshots` with `usize::MAX` keeps every snapshot and writes
/// nothing. Found in review 9: it took `keep + 1` of the stream's
/// snapshots, which overflows: a panic in a build with overflow checks
/// (every debug build), and `take(0)` in one without, which happened to
/// answer right.
#[test]
fn keep_snapshots_of_usize_max_keeps_every_snapshot_without_overflowing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::default()).unwrap();
    for i in 0..4u8 {
        log.append("s", Expectation::Any, vec![i]).wait().unwrap();
        log.snapshot("s", StreamSeq(u64::from(i)), vec![i]).wait().unwrap();
    }
    assert_eq!(log.keep_snapshots("s", usize::MAX).unwrap(), None);
    assert_eq!(log.keep_snapshots("s", 4).unwrap(), None);
    let pruned = log.keep_snapshots("s", 3).unwrap().expect("one snapshot more than kept");
    assert_eq!(pruned.start_before, Some(StreamSeq(0)));
    assert_eq!(log.read_stream("s").unwrap().snapshot.map(|snapshot| snapshot.seq), Some(StreamSeq(3)));
    log.close().wait().unwrap();
}
