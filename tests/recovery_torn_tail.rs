//! A record torn at any byte at the in-flight tail is cut, the cut is
//! reported and made durable, and everything before it survives.

mod common;

use std::path::Path;

use annals::{Expectation, Log, Lsn, StreamSeq};

/// Writes `records` entries to one stream and returns a crash image taken
/// while the log is still open (no clean-close marker).
fn crashed_log(records: u64, image: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    for i in 0..records {
        log.append("s", Expectation::Exact(StreamSeq(i)), format!("record {i} {}", "x".repeat(80))).wait().unwrap();
    }
    common::crash_image(dir.path(), image);
}

fn copy_dir(from: &Path, to: &Path) {
    common::crash_image(from, to);
}

#[test]
fn a_torn_last_record_cut_at_every_byte_recovers_the_prefix() {
    let image = tempfile::tempdir().unwrap();
    crashed_log(5, image.path());
    let segment = common::segment_files(image.path()).pop().unwrap();
    let offsets = common::frame_offsets(&segment);
    let last = *offsets.last().unwrap();
    let end = last + (offsets[1] - offsets[0]);
    for cut in last..end {
        let case = tempfile::tempdir().unwrap();
        copy_dir(image.path(), case.path());
        let case_segment = case.path().join(segment.file_name().unwrap());
        common::zero_range(&case_segment, cut, end);
        let log = Log::open(case.path(), common::small_options()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(log.last_lsn().unwrap(), Lsn(4), "cut at {cut}");
        let torn = log.recovery_report().torn_tail.clone();
        if cut == last {
            assert!(torn.is_none(), "a record that never reached the disk is a clean end");
        } else {
            let torn = torn.unwrap_or_else(|| panic!("cut at {cut}: torn tail not reported"));
            assert_eq!((torn.offset, torn.from_lsn), (last as u64, Lsn(5)));
        }
        let entries = log.read_stream("s").unwrap().entries;
        assert_eq!(entries.len(), 4);
        assert!(entries.iter().enumerate().all(|(i, r)| r.payload.starts_with(format!("record {i} ").as_bytes())));
        // The cut was made durable: appending continues at the cut, and a reopen agrees.
        log.append("s", Expectation::Exact(StreamSeq(4)), &b"after recovery"[..]).wait().unwrap();
        drop(log);
        let again = Log::open(case.path(), common::small_options()).unwrap();
        assert!(again.recovery_report().torn_tail.is_none());
        assert_eq!(again.latest("s").unwrap().unwrap().payload, &b"after recovery"[..]);
    }
}

#[test]
fn garbage_in_place_of_the_last_record_is_a_torn_tail() {
    let image = tempfile::tempdir().unwrap();
    crashed_log(3, image.path());
    let segment = common::segment_files(image.path()).pop().unwrap();
    let last = *common::frame_offsets(&segment).last().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    for (i, byte) in bytes[last + 10..last + 600].iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    std::fs::write(&segment, bytes).unwrap();
    let log = Log::open(image.path(), common::small_options()).unwrap();
    assert_eq!(log.last_lsn().unwrap(), Lsn(2));
    assert_eq!(log.recovery_report().torn_tail.as_ref().unwrap().offset, last as u64);
}

#[test]
fn recovering_twice_with_no_writes_gives_the_same_log() {
    let image = tempfile::tempdir().unwrap();
    crashed_log(6, image.path());
    let segment = common::segment_files(image.path()).pop().unwrap();
    let last = *common::frame_offsets(&segment).last().unwrap();
    common::zero_range(&segment, last + 50, last + 60);
    let first = Log::open(image.path(), common::small_options()).unwrap();
    let records = first.read_all(Lsn::ZERO, 100).unwrap();
    drop(first);
    let second = Log::open(image.path(), common::small_options()).unwrap();
    assert_eq!(second.read_all(Lsn::ZERO, 100).unwrap(), records);
}
