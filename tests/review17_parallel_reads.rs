//! Review 17: a long first read after an open from the index image shares
//! its read calls with helper threads (`index::Index::prefetch`). Whatever
//! thread fetched a record, a read must answer what a full scan answers,
//! and a damaged record must be an error, never returned.

mod common;

use annals::{Log, LogReader, Options, Record, StreamSeq};
use common::scattered::{ROWS, options, scattered_log};

fn payloads(records: &[Record]) -> Vec<Vec<u8>> {
    records.iter().map(|record| record.payload.to_vec()).collect()
}

/// Every read shape of the long run, first after an open from the image
/// (read calls shared with helper threads), then again (through the map),
/// through the log and a reader: what a full scan reads.
#[test]
fn a_long_first_read_shared_with_helper_threads_answers_what_a_full_scan_answers() {
    let dir = tempfile::tempdir().unwrap();
    let rows = scattered_log(dir.path());
    let scanned = LogReader::open_scanning(dir.path(), &Options::default()).unwrap().read_stream("long").unwrap();
    assert_eq!(payloads(&scanned.entries), rows, "the full scan reads what was written");

    // read_stream, twice.
    let log = Log::open(dir.path(), options()).unwrap();
    assert!(matches!(log.recovery_report().index_image, annals::image::ImageUse::Loaded { .. }));
    assert_eq!(log.read_stream("long").unwrap().entries, scanned.entries, "the first read");
    assert_eq!(log.read_stream("long").unwrap().entries, scanned.entries, "the second read");
    log.close().wait().unwrap();
    drop(log);

    // visit_stream, then a range from the middle.
    let log = Log::open(dir.path(), options()).unwrap();
    let mut seen = Vec::new();
    log.visit_stream("long", |record| seen.push(record.to_record())).unwrap();
    assert_eq!(seen, scanned.entries, "the first visit");
    drop(log);
    let log = Log::open(dir.path(), options()).unwrap();
    let range = log.read_stream_range("long", StreamSeq(300), 1000).unwrap();
    assert_eq!(range, scanned.entries[300..1300], "a first read of a range");
    drop(log);

    // A reader that loads the image.
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.read_stream("long").unwrap().entries, scanned.entries, "a reader's first read");
}

/// A flipped bit in a row near the end of the long run, in the share of
/// the read calls a helper thread makes: every first read of the run is a
/// typed corruption naming the segment, nothing is returned from that row
/// on, and the rows before it are read as written.
#[test]
fn a_flipped_bit_in_a_row_a_helper_thread_reads_is_corruption_and_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let rows = scattered_log(dir.path());
    let damaged = (ROWS as usize * 7) / 8;
    let (file, end) = common::payload_end(dir.path(), &rows[damaged]).expect("the row is on disk");
    common::flip_bit(&file, end - 3, 2);

    let log = Log::open(dir.path(), options()).unwrap();
    assert!(matches!(log.recovery_report().index_image, annals::image::ImageUse::Loaded { .. }));
    match log.read_stream("long") {
        Err(annals::Error::Corruption(corruption)) => assert_eq!(corruption.file, file),
        other => panic!("a damaged row read as {other:?}"),
    }
    let mut seen = Vec::new();
    let visited = log.visit_stream("long", |record| seen.push(record.payload.to_vec()));
    assert!(matches!(visited, Err(annals::Error::Corruption(_))), "{visited:?}");
    assert_eq!(seen, rows[..damaged], "the rows before the damaged one, and nothing after it");
    drop(log);

    let reader = LogReader::open(dir.path()).unwrap();
    assert!(matches!(reader.read_stream("long"), Err(annals::Error::Corruption(_))));
}
