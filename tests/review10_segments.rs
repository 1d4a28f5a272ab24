//! Review 10: segment files an outsider removes, adds or swaps.
//!
//! Each test is named after the bug it found; it failed before the fix.

mod common;

use std::path::{Path, PathBuf};

use annals::{CorruptionKind, Error, Expectation, Log, LogReader, Lsn, Options};

/// Options for these logs: small segments, no background compaction, and
/// an index image written at the close, so that an open loads it when it
/// still describes the log.
fn options() -> Options {
    Options { index_image: annals::IndexImageWrites::AtClose, ..common::small_options() }
}

/// The compacted segment files of a log, oldest first.
fn compacted_files(dir: &Path) -> Vec<PathBuf> {
    common::segment_files(dir)
        .into_iter()
        .filter(|path| path.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.contains('-')))
        .collect()
}

/// A cleanly closed log whose live records fill several compacted
/// segments (and some ordinary ones after them), and its live records.
/// Each live record is a stream of its own, so that the streams' rules
/// cannot tell that a segment's records are missing: only the segments'
/// chain can.
fn log_with_several_compacted_segments(dir: &Path) -> Vec<annals::Record> {
    let log = Log::open(dir, options()).unwrap();
    for i in 0..120u64 {
        log.append(format!("kept-{i}"), Expectation::Any, common::unique_payload(i, 300)).wait().unwrap();
        log.append("dropped", Expectation::Any, common::unique_payload(10_000 + i, 300)).wait().unwrap();
    }
    log.delete_stream("dropped").wait().unwrap();
    for i in 0..40u64 {
        log.append(format!("after-{i}"), Expectation::Any, common::unique_payload(20_000 + i, 300)).wait().unwrap();
    }
    assert!(log.compact().unwrap().generation > 0, "the log was compacted");
    let live = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    log.close().wait().unwrap();
    assert!(compacted_files(dir).len() >= 3, "the live records need several compacted segments");
    live
}

/// Asserts that every way of opening the log says a segment is missing:
/// a writer's open (with the image there or not), a reader's, and the
/// reader a scan makes (`annals verify`).
fn assert_every_open_reports_a_missing_segment(dir: &Path, live: &[annals::Record]) {
    for attempt in ["with the image", "without the image"] {
        match Log::open(dir, options()) {
            Err(Error::Corruption(corruption)) => {
                assert!(matches!(corruption.kind, CorruptionKind::MissingSegment { .. }), "{attempt}: {corruption}");
            }
            Err(other) => panic!("{attempt}: the open failed with {other}, not as corruption"),
            Ok(log) => {
                let read = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
                panic!(
                    "{attempt}: the open returned {} of the {} live records as the whole log",
                    read.len(),
                    live.len()
                );
            }
        }
        let reader = LogReader::open(dir).unwrap();
        assert!(
            reader.problems().iter().any(|problem| matches!(problem.kind, CorruptionKind::MissingSegment { .. })),
            "{attempt}: the reader found {:?}",
            reader.problems()
        );
        let scanning = LogReader::open_scanning(dir, &options()).unwrap();
        assert!(!scanning.problems().is_empty(), "{attempt}: a scanning reader found nothing wrong");
        // A refused open deletes nothing, and the image, if any, goes next.
        let _ = std::fs::remove_file(dir.join("annals.index"));
    }
}

/// A compacted segment deleted from the middle of the compacted ones was
/// not noticed: every open (writer, reader, `annals verify`) accepted the
/// log without the live records it held. Found in review 10: recovery
/// checked that the first compacted segment starts at the log's oldest LSN
/// and that none overlaps the one before, but not that each starts where
/// the one before ends, which compaction guarantees with a closing gap.
#[test]
fn a_deleted_middle_compacted_segment_is_corruption_not_silent_loss() {
    let dir = tempfile::tempdir().unwrap();
    let live = log_with_several_compacted_segments(dir.path());
    std::fs::remove_file(&compacted_files(dir.path())[1]).unwrap();
    assert_every_open_reports_a_missing_segment(dir.path(), &live);
}

/// The same for the newest compacted segment: recovery moved the log's end
/// up to where the ordinary segments start without asking whether the
/// compacted ones reached it. Found in review 10.
#[test]
fn a_deleted_newest_compacted_segment_is_corruption_not_silent_loss() {
    let dir = tempfile::tempdir().unwrap();
    let live = log_with_several_compacted_segments(dir.path());
    std::fs::remove_file(compacted_files(dir.path()).last().unwrap()).unwrap();
    assert_every_open_reports_a_missing_segment(dir.path(), &live);
}

/// What held: the same log, untouched, opens with every live record, from
/// the image and from a full scan.
#[test]
fn a_log_of_several_compacted_segments_opens_with_every_live_record() {
    let dir = tempfile::tempdir().unwrap();
    let live = log_with_several_compacted_segments(dir.path());
    for _ in ["with the image", "without the image"] {
        let log = Log::open(dir.path(), options()).unwrap();
        assert_eq!(log.read_all(Lsn::ZERO, usize::MAX).unwrap(), live);
        log.close().wait().unwrap();
        let reader = LogReader::open_scanning(dir.path(), &options()).unwrap();
        assert!(reader.problems().is_empty(), "{:?}", reader.problems());
        std::fs::remove_file(dir.path().join("annals.index")).unwrap();
    }
}

/// A cleanly closed log of single-record streams over several ordinary
/// segments, and its records.
fn log_of_single_record_streams(dir: &Path) -> Vec<annals::Record> {
    let log = Log::open(dir, common::small_options()).unwrap();
    for i in 0..80u64 {
        log.append(format!("stream-{i}"), Expectation::Any, common::unique_payload(i, 300)).wait().unwrap();
    }
    let records = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    log.close().wait().unwrap();
    assert!(common::segment_files(dir).len() >= 4, "the records need several segments");
    records
}

/// Repairs the log in `dir` into a new directory and returns what the
/// repair reported as damage, asserting that it copied fewer records
/// than the log had.
fn repair_damage(dir: &Path, records: &[annals::Record]) -> Vec<annals::inspect::Damage> {
    let into = tempfile::tempdir().unwrap();
    let report = annals::inspect::repair(dir, &into.path().join("copy"), Options::default()).unwrap();
    assert!(report.records_copied < records.len() as u64, "a removed segment's records cannot be copied");
    report.scan.damage
}

/// `annals repair` (and `dump --salvage`, and the damage `verify` lists)
/// of a log whose middle segment was deleted copied the other segments'
/// records and reported no damage: "nothing was damaged; the copy is
/// complete", with a segment's records missing. Found in review 10: the
/// scan of intact frames only asked that LSNs never go back, so a jump
/// over a whole missing segment passed as nothing.
#[test]
fn repair_of_a_log_whose_middle_segment_was_deleted_reports_the_missing_lsns() {
    let dir = tempfile::tempdir().unwrap();
    let records = log_of_single_record_streams(dir.path());
    std::fs::remove_file(&common::segment_files(dir.path())[1]).unwrap();
    let damage = repair_damage(dir.path(), &records);
    assert!(damage.iter().any(|damage| damage.what.contains("missing")), "{damage:?}");
}

/// The same for the oldest segment, which the state file says the log
/// starts at. Found in review 10.
#[test]
fn repair_of_a_log_whose_oldest_segment_was_deleted_reports_the_missing_lsns() {
    let dir = tempfile::tempdir().unwrap();
    let records = log_of_single_record_streams(dir.path());
    std::fs::remove_file(&common::segment_files(dir.path())[0]).unwrap();
    let damage = repair_damage(dir.path(), &records);
    assert!(damage.iter().any(|damage| damage.what.contains("missing")), "{damage:?}");
}

/// The same for the newest segment, which the state file records. Found
/// in review 10.
#[test]
fn repair_of_a_log_whose_newest_segment_was_deleted_reports_it_missing() {
    let dir = tempfile::tempdir().unwrap();
    let records = log_of_single_record_streams(dir.path());
    std::fs::remove_file(common::segment_files(dir.path()).last().unwrap()).unwrap();
    let damage = repair_damage(dir.path(), &records);
    assert!(damage.iter().any(|damage| damage.what.contains("missing")), "{damage:?}");
}

/// The same for a compacted segment removed from the middle of the
/// compacted ones. Found in review 10.
#[test]
fn repair_of_a_log_whose_middle_compacted_segment_was_deleted_reports_the_missing_lsns() {
    let dir = tempfile::tempdir().unwrap();
    let live = log_with_several_compacted_segments(dir.path());
    std::fs::remove_file(&compacted_files(dir.path())[1]).unwrap();
    let damage = repair_damage(dir.path(), &live);
    assert!(damage.iter().any(|damage| damage.what.contains("missing")), "{damage:?}");
}

/// What held: a repair of an intact log, compacted or not, reports no
/// damage (the checks above raise no false alarm).
#[test]
fn repair_of_an_intact_log_reports_no_damage() {
    for compacted in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let records = if compacted {
            log_with_several_compacted_segments(dir.path())
        } else {
            log_of_single_record_streams(dir.path())
        };
        let into = tempfile::tempdir().unwrap();
        let report = annals::inspect::repair(dir.path(), &into.path().join("copy"), Options::default()).unwrap();
        assert!(report.scan.damage.is_empty(), "compacted {compacted}: {:?}", report.scan.damage);
        let copy = Log::open(into.path().join("copy"), Options::default()).unwrap();
        assert_eq!(copy.read_all(Lsn::ZERO, usize::MAX).unwrap(), records, "compacted {compacted}");
        copy.close().wait().unwrap();
    }
}

/// Found by review 10 (attack10's note): a reader took every `*.seg` name
/// for a segment, so a stray `backup.seg` beside the log read as a change
/// at every refresh, and `annals tail --follow` read the whole log again
/// at every poll. Recovery takes only the names it writes; so does refresh.
#[test]
fn a_stray_seg_file_made_every_reader_refresh_read_the_whole_log_again() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    for i in 0..20u64 {
        log.append("s", Expectation::Any, vec![i as u8; 100]).wait().unwrap();
    }
    let mut reader = LogReader::open_with(dir.path(), &fs.options()).unwrap();
    std::fs::write(dir.path().join("backup.seg"), b"not a segment of this log").unwrap();
    std::fs::write(dir.path().join("00000000000000000001.seg.bak"), b"nor this").unwrap();
    reader.refresh().unwrap();
    let reads = fs.faults.reads.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..3 {
        assert!(!reader.refresh().unwrap(), "nothing was appended");
    }
    assert_eq!(fs.faults.reads.load(std::sync::atomic::Ordering::SeqCst), reads, "a refresh read the log again");
    log.append("s", Expectation::Any, &b"after"[..]).wait().unwrap();
    assert!(reader.refresh().unwrap(), "an append is still seen");
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap().len(), 21);
    log.close().wait().unwrap();
}
