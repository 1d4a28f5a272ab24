//! One test per bug found, named after the bug.

mod common;

use annals::{Expectation, Log, StreamSeq};

/// The writer took a ready spare and asked for the next one at once; the
/// preparer then deleted and re-created `spare.seg.tmp` before the writer
/// renamed it, so the writer published the preparer's half-made file under
/// the new segment's name and the next open reported a bad header.
#[test]
fn spare_taken_while_ready_is_not_replaced_before_its_rename() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path()); // background preparation, 8 KiB segments
    let payload = vec![7u8; 1500];
    for i in 0..600u64 {
        log.append("s", Expectation::Exact(StreamSeq(i)), payload.clone()).wait().unwrap();
    }
    log.close().wait().unwrap();
    let reopened = Log::open(dir.path(), common::small_options()).expect("every rolled-over segment is well formed");
    assert_eq!(reopened.next_seq("s"), StreamSeq(600));
}
