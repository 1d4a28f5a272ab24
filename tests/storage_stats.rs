//! Storage statistics (issue 11, point 5): `LogReader::stats` counts as
//! live exactly the records reads return, each as its operation's bytes
//! (operation header, stream id, payload), and every other written byte as
//! dead; per segment and in total, the figures add up and match the files
//! on disk, before a compaction and after it.

mod common;

use std::path::Path;

use annals::frame::{FRAME_HEADER_BYTES, OP_HEADER_BYTES};
use annals::segment::SEGMENT_HEADER_BYTES;
use annals::stats::LogStats;
use annals::{Expectation, Log, LogReader, Lsn, Options, PruneSnapshots, Record, StreamSeq};

/// A live record's bytes, as `annals::stats` defines live bytes.
fn live_size(record: &Record) -> u64 {
    (FRAME_HEADER_BYTES + OP_HEADER_BYTES + record.stream.len() + record.payload.len()) as u64
}

/// Takes the reader's statistics and checks every figure against what the
/// reader returns and what the directory holds.
fn checked_stats(dir: &Path, reader: &LogReader) -> LogStats {
    let stats = reader.stats().unwrap();
    let live = reader.read_all(Lsn::ZERO, usize::MAX).unwrap();
    let files: Vec<String> = common::segment_files(dir)
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut named: Vec<String> = stats.segments.iter().map(|segment| segment.file.clone()).collect();
    named.sort();
    assert_eq!(named, files, "every segment file, and only those");
    for (i, segment) in stats.segments.iter().enumerate() {
        let space = &segment.space;
        // A segment holds the LSNs from its first up to the next one's first.
        let end = stats.segments.get(i + 1).map_or(Lsn(u64::MAX), |next| next.first_lsn);
        let inside: Vec<&Record> = live.iter().filter(|r| r.lsn >= segment.first_lsn && r.lsn < end).collect();
        let what = &segment.file;
        assert_eq!(space.live_records, inside.len() as u64, "{what}: live records");
        let records: u64 = inside.iter().map(|r| live_size(r)).sum();
        if segment.compacted {
            // A compacted segment also keeps its stream bases and may end
            // with a gap frame (48 bytes): both count as live.
            let on_disk = reader.read_all_on_disk(Lsn::ZERO, usize::MAX).unwrap();
            let bases: u64 = on_disk
                .iter()
                .filter(|r| r.kind == annals::RecordKind::Base && r.lsn >= segment.first_lsn && r.lsn < end)
                .map(live_size)
                .sum();
            let kept = space.live_bytes - records - bases;
            assert!(
                kept == 0 || kept == 48,
                "{what}: live bytes {} for records {records}, bases {bases}",
                space.live_bytes
            );
        } else {
            assert_eq!(space.live_bytes, records, "{what}: live bytes");
        }
        assert_eq!(space.file_bytes, std::fs::metadata(dir.join(what)).unwrap().len(), "{what}: file bytes");
        assert_eq!(space.dead_bytes, space.written_bytes - space.live_bytes, "{what}: dead bytes");
        assert_eq!(SEGMENT_HEADER_BYTES as u64 + space.written_bytes + space.unused_bytes, space.file_bytes, "{what}");
        let amplification = (space.live_bytes > 0).then(|| space.file_bytes as f64 / space.live_bytes as f64);
        assert_eq!(space.space_amplification, amplification, "{what}");
        if let Some(newest) = inside.iter().map(|r| r.timestamp_ms).max() {
            assert!(segment.newest_frame_ms.is_some_and(|ms| ms >= newest), "{what}: {:?}", segment.newest_frame_ms);
        }
    }
    let total = &stats.total;
    let sum = |figure: fn(&annals::stats::SpaceStats) -> u64| stats.segments.iter().map(|s| figure(&s.space)).sum();
    assert_eq!(total.file_bytes, sum(|s| s.file_bytes));
    assert_eq!(total.written_bytes, sum(|s| s.written_bytes));
    assert_eq!(total.dead_bytes, sum(|s| s.dead_bytes));
    assert_eq!(total.unused_bytes, sum(|s| s.unused_bytes));
    assert_eq!(total.live_bytes, sum(|s| s.live_bytes), "total live bytes");
    assert!(total.live_bytes >= live.iter().map(live_size).sum::<u64>(), "total live bytes");
    assert_eq!(total.live_records, live.len() as u64, "total live records");
    assert_eq!(
        total.space_amplification,
        (total.live_bytes > 0).then(|| total.file_bytes as f64 / total.live_bytes as f64)
    );
    assert_eq!(stats.streams, reader.stream_count());
    assert_eq!(stats.operations, reader.report().records);
    assert_eq!(stats.next_lsn, Lsn(reader.last_lsn().0 + 1));
    assert_eq!(stats.oldest_lsn, stats.segments[0].first_lsn);
    match live.first() {
        Some(first) => {
            let oldest = stats.oldest_record.expect("a live record");
            assert_eq!((oldest.lsn, oldest.timestamp_ms), (first.lsn, first.timestamp_ms));
            assert_eq!(oldest.age_ms, stats.taken_ms.saturating_sub(first.timestamp_ms));
        }
        None => assert_eq!(stats.oldest_record, None),
    }
    let image_loaded = matches!(reader.report().index_image, annals::ImageUse::Loaded { .. });
    assert_eq!(stats.index_image_age_ms.is_some(), image_loaded, "the age of the image the reader loaded");
    stats
}

/// Before compaction the churned log's dead records are counted dead, not
/// live; compaction keeps the live bytes to the byte and gives back the
/// dead ones' disk, and the figures still match the reads and the files.
#[test]
fn live_bytes_are_the_operation_bytes_of_exactly_the_records_reads_return() {
    let dir = tempfile::tempdir().unwrap();
    let live = common::write_churned_log(dir.path(), 40);
    let before = checked_stats(dir.path(), &LogReader::open(dir.path()).unwrap());
    assert!(before.segments.len() > 3, "the churn spans several segments: {}", before.segments.len());
    assert!(before.total.live_records < before.operations / 2, "most of the churn is dead: {before:?}");
    assert!(before.total.dead_bytes > 2 * before.total.live_bytes, "{:?}", before.total);
    assert!(before.segments.iter().all(|segment| !segment.compacted));

    let log = Log::open(dir.path(), common::small_options()).unwrap();
    let report = log.compact().unwrap();
    assert!(report.generation == 1 && report.inputs > 0, "{report:?}");
    log.close().wait().unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), live);
    let after = checked_stats(dir.path(), &reader);
    assert!(after.segments.iter().any(|segment| segment.compacted && segment.space.live_records > 0), "{after:?}");
    assert_eq!(after.oldest_record.map(|oldest| oldest.lsn), Some(Lsn(1)), "the untouched stream's first record");
    // The same live records, plus the stream bases and gaps compaction keeps for them.
    assert!(after.total.live_bytes >= before.total.live_bytes, "{:?} -> {:?}", before.total, after.total);
    assert_eq!(after.total.live_records, before.total.live_records);
    assert_eq!(after.streams, before.streams);
    assert!(after.total.dead_bytes < before.total.dead_bytes / 2, "{:?} -> {:?}", before.total, after.total);
    assert!(after.total.file_bytes < before.total.file_bytes, "{:?} -> {:?}", before.total, after.total);
}

/// A prune and a delete move exactly the bytes of the records they remove
/// from live to dead, as a reader beside the open writer sees it.
#[test]
fn a_pruned_or_deleted_record_takes_exactly_its_bytes_out_of_live() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::default()).unwrap();
    for i in 0..3u64 {
        log.append("kept", Expectation::Any, common::unique_payload(i, 100 + i as usize)).wait().unwrap();
    }
    for i in 3..5u64 {
        log.append("deleted", Expectation::Any, common::unique_payload(i, 300)).wait().unwrap();
    }
    let before = checked_stats(dir.path(), &LogReader::open(dir.path()).unwrap());
    assert_eq!((before.total.live_records, before.streams), (5, 2));
    let pruned = log.read_stream("kept").unwrap().entries[0].clone();
    let deleted = log.read_stream("deleted").unwrap().entries;
    log.prune("kept", StreamSeq(1), PruneSnapshots::AllButLatest).wait().unwrap();
    log.delete_stream("deleted").wait().unwrap();

    let after = checked_stats(dir.path(), &LogReader::open(dir.path()).unwrap());
    let removed = live_size(&pruned) + deleted.iter().map(live_size).sum::<u64>();
    assert_eq!(after.total.live_bytes, before.total.live_bytes - removed);
    assert_eq!((after.total.live_records, after.streams), (2, 1));
    assert_eq!(after.operations, before.operations + 2, "the prune and the tombstone are operations on disk");
    assert!(after.total.dead_bytes >= before.total.dead_bytes + removed);
    assert_eq!(after.oldest_record.map(|oldest| oldest.lsn), Some(Lsn(2)), "the oldest live record moved on");
    log.close().wait().unwrap();
}

/// An empty log has one segment, nothing live, and no amplification to
/// speak of (not an infinite or NaN one).
#[test]
fn an_empty_log_has_no_live_bytes_no_oldest_record_and_no_amplification() {
    let dir = tempfile::tempdir().unwrap();
    Log::open(dir.path(), Options::default()).unwrap().close().wait().unwrap();
    let stats = checked_stats(dir.path(), &LogReader::open(dir.path()).unwrap());
    assert_eq!(stats.segments.len(), 1);
    assert_eq!((stats.total.live_bytes, stats.total.live_records, stats.streams), (0, 0, 0));
    assert_eq!(stats.total.space_amplification, None);
    assert_eq!(stats.oldest_record, None);
    assert!(stats.total.file_bytes > 0 && stats.total.file_bytes <= 8 << 20, "{:?}", stats.total);
}
