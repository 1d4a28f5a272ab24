//! Review 9 of `annals repair` (`annals::inspect::repair`) against
//! configuration drift: the command repairs with the default options,
//! whatever options wrote the damaged log. Each test names the behaviour
//! it holds and says how the bug it guards was found.

use annals::{Expectation, Log, Lsn, Options};

/// A log written with a record limit above the default (20 MiB, in
/// default 64 MiB segments) holds a record of 17 MiB; `repair` with the
/// default options (16 MiB records), as `annals repair` runs it, copies
/// it with the others. Found in review 9: the copy refused the record as
/// too large for its own limit, so repair failed halfway, after it had
/// created the new log and copied the records before it.
#[test]
fn repair_with_default_options_copies_a_record_larger_than_the_default_limit() {
    let source = tempfile::tempdir().unwrap();
    let big_record_bytes = 17 << 20;
    let options = Options { record_bytes_max: 20 << 20, ..Options::default() };
    let log = Log::open(source.path(), options).unwrap();
    log.append("before", Expectation::Any, vec![1u8; 100]).wait().unwrap();
    log.append("big", Expectation::Any, vec![2u8; big_record_bytes]).wait().unwrap();
    log.append("after", Expectation::Any, vec![3u8; 100]).wait().unwrap();
    let records = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    log.close().wait().unwrap();

    let copy = tempfile::tempdir().unwrap();
    let into = copy.path().join("copy");
    let report = annals::inspect::repair(source.path(), &into, Options::default()).expect("repair");
    assert_eq!(report.records_copied, 3);
    assert!(report.records_dropped.is_empty(), "{:?}", report.records_dropped);
    let copied = Log::open(&into, Options { record_bytes_max: 20 << 20, ..Options::default() }).unwrap();
    let copied_records = copied.read_all(Lsn::ZERO, usize::MAX).unwrap();
    assert_eq!(copied_records.len(), records.len());
    for (copied, original) in copied_records.iter().zip(&records) {
        assert_eq!((copied.lsn, &copied.stream, &copied.payload), (original.lsn, &original.stream, &original.payload));
    }
    copied.close().wait().unwrap();
}

/// A log written in large segments holds a record larger than a default
/// segment could: 70 MiB, in 128 MiB segments. `repair` with the default options
/// (64 MiB segments) copies it. Found in review 9 with the test above.
#[test]
fn repair_with_default_options_copies_a_record_larger_than_a_default_segment() {
    let source = tempfile::tempdir().unwrap();
    let big_record_bytes = 70 << 20;
    let options = Options { segment_bytes: 128 << 20, record_bytes_max: 80 << 20, ..Options::default() };
    let log = Log::open(source.path(), options.clone()).unwrap();
    log.append("big", Expectation::Any, vec![2u8; big_record_bytes]).wait().unwrap();
    log.append("after", Expectation::Any, vec![3u8; 100]).wait().unwrap();
    log.close().wait().unwrap();

    let copy = tempfile::tempdir().unwrap();
    let into = copy.path().join("copy");
    let report = annals::inspect::repair(source.path(), &into, Options::default()).expect("repair");
    assert_eq!(report.records_copied, 2);
    let copied = Log::open(&into, options).unwrap();
    let big = copied.read_stream("big").unwrap();
    assert_eq!(big.entries.len(), 1);
    assert_eq!(big.entries[0].payload.len(), big_record_bytes);
    copied.close().wait().unwrap();
}
