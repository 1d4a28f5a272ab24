//! The persisted index image (issue 11, point 3; segments-format.md,
//! section 11): open loads `annals.index` and scans only the frames after
//! it; a missing, stale, damaged or foreign image falls back to a full scan,
//! never to a wrong answer. One test per row the image adds to the recovery
//! decision table, and the index an open builds from an image is compared
//! with a full scan's each time.

mod common;

use std::path::Path;
use std::sync::Arc;

use annals::image::{IMAGE_FILE_NAME, IMAGE_TEMP_FILE_NAME, ImageUse};
use annals::recovery::{Access, ImagePolicy, recover_with};
use annals::sim::fs::{CrashMode, SimFs};
use annals::sim::rng::SimRng;
use annals::{
    CompactionOptions, Error, Expectation, IndexImageWrites, Log, LogReader, Lsn, Options, RecoveryMode,
    SegmentPreparation, StreamSeq,
};

/// Small segments, images at close (and when asked), no background work.
fn options() -> Options {
    Options {
        segment_bytes: 8192,
        record_bytes_max: 2048,
        compaction: CompactionOptions { background: false, ..CompactionOptions::default() },
        index_image: IndexImageWrites::AtClose,
        ..Options::default()
    }
}

/// Appends `count` records over three streams, with a snapshot, a prune
/// and a clear among them, so that every part of a stream's state is in
/// the image.
fn fill(log: &Log, from: u64, count: u64) {
    for i in from..from + count {
        let stream = format!("stream-{}", i % 3);
        log.append(&stream, Expectation::Any, common::unique_payload(i, 200)).wait().unwrap();
        if i % 17 == 5 {
            let next = log.next_seq(&stream).unwrap();
            log.snapshot(&stream, StreamSeq(next.0 - 1), &b"folded"[..]).wait().unwrap();
        }
        if i % 29 == 7 {
            let next = log.next_seq(&stream).unwrap();
            log.prune(&stream, StreamSeq(next.0 / 2), annals::PruneSnapshots::AllButLatest).wait().unwrap();
        }
        if i % 97 == 50 {
            log.delete_stream("stream-2").wait().unwrap();
        }
    }
}

fn closed_log(dir: &Path, count: u64) {
    let log = Log::open(dir, options()).unwrap();
    fill(&log, 0, count);
    log.close().wait().unwrap();
}

/// The open loaded no image and the index equals a full scan's.
fn assert_same_as_full_scan(log: &Log, dir: &Path) {
    let scanned = recover_with(&annals::fs::RealFs, dir, Access::ReadOnly, RecoveryMode::Strict, ImagePolicy::Ignore)
        .expect("a full scan");
    assert_eq!(log.index_differences(&scanned.index), Vec::<String>::new());
}

fn loaded(log: &Log) -> Lsn {
    match &log.recovery_report().index_image {
        ImageUse::Loaded { covered_lsn, .. } => *covered_lsn,
        other => panic!("the image was not loaded: {other:?}"),
    }
}

fn rejected(log: &Log) -> String {
    match &log.recovery_report().index_image {
        ImageUse::Rejected { reason } => reason.clone(),
        other => panic!("the image was not rejected: {other:?}"),
    }
}

/// After a clean close the image covers the whole log: the open scans
/// nothing before the close marker, and reads as a full scan would.
#[test]
fn an_open_after_a_clean_close_loads_the_image() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 300);
    assert!(dir.path().join(IMAGE_FILE_NAME).exists());
    let log = Log::open(dir.path(), options()).unwrap();
    assert_eq!(loaded(&log), Lsn(log.last_lsn().unwrap().0 + 1), "it covers the close marker");
    assert_same_as_full_scan(&log, dir.path());
    // The writer goes on from the image: guards and sequences hold.
    let next = log.next_seq("stream-0").unwrap();
    log.append("stream-0", Expectation::Exact(next), &b"after"[..]).wait().unwrap();
    fill(&log, 300, 50);
    log.close().wait().unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    loaded(&log);
    assert_same_as_full_scan(&log, dir.path());
}

/// Row "missing": no image, a full scan, nothing reported.
#[test]
fn a_missing_image_means_a_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 100);
    std::fs::remove_file(dir.path().join(IMAGE_FILE_NAME)).unwrap();
    let log = Log::open(dir.path(), Options { index_image: IndexImageWrites::Off, ..options() }).unwrap();
    assert_eq!(log.recovery_report().index_image, ImageUse::None);
    assert_same_as_full_scan(&log, dir.path());
}

/// Row "damaged": a flipped bit anywhere, or a truncation, fails a
/// checksum or a length; a read-write open deletes the image and scans.
#[test]
fn a_damaged_or_truncated_image_is_refused_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 200);
    let image = dir.path().join(IMAGE_FILE_NAME);
    let good = std::fs::read(&image).unwrap();
    for at in [0, 20, 40, 95, 96, 120, good.len() / 2, good.len() - 1] {
        let mut bytes = good.clone();
        bytes[at] ^= 0x10;
        std::fs::write(&image, &bytes).unwrap();
        let log = Log::open(dir.path(), Options { index_image: IndexImageWrites::Off, ..options() }).unwrap();
        let reason = rejected(&log);
        assert!(reason.contains("checksum") || reason.contains("not an index image"), "byte {at}: {reason}");
        assert!(!image.exists(), "a read-write open deletes an image it cannot use");
        assert_same_as_full_scan(&log, dir.path());
    }
    for len in [0, 10, 96, good.len() - 1] {
        std::fs::write(&image, &good[..len]).unwrap();
        let log = Log::open(dir.path(), Options { index_image: IndexImageWrites::Off, ..options() }).unwrap();
        assert!(rejected(&log).contains("truncated"));
        assert_same_as_full_scan(&log, dir.path());
    }
}

/// Row "another log": an image copied in from another log is refused,
/// whatever else matches.
#[test]
fn an_image_of_another_log_is_refused() {
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    closed_log(ours.path(), 100);
    closed_log(theirs.path(), 100);
    std::fs::copy(theirs.path().join(IMAGE_FILE_NAME), ours.path().join(IMAGE_FILE_NAME)).unwrap();
    let log = Log::open(ours.path(), options()).unwrap();
    assert_eq!(rejected(&log), "image of another log");
    assert_same_as_full_scan(&log, ours.path());
}

/// Row "stale generation": a compaction replaced what the image covers.
#[test]
fn an_image_of_an_older_compaction_generation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 300);
    let older = std::fs::read(dir.path().join(IMAGE_FILE_NAME)).unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    assert!(log.compact().unwrap().generation > 0);
    log.close().wait().unwrap();
    std::fs::write(dir.path().join(IMAGE_FILE_NAME), older).unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    assert_eq!(rejected(&log), "stale image: another compaction generation");
    assert_same_as_full_scan(&log, dir.path());
    log.close().wait().unwrap();
    // The image written at that close covers the compacted segments.
    let log = Log::open(dir.path(), options()).unwrap();
    loaded(&log);
    assert_same_as_full_scan(&log, dir.path());
}

/// Row "covers more than the log holds": the segments were put back as they
/// were before the image was written (a restore of an older copy): the last
/// frame the image covers is not there.
#[test]
fn an_image_that_covers_more_than_the_log_holds_is_refused() {
    let (dir, earlier) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    closed_log(dir.path(), 10);
    common::crash_image(dir.path(), earlier.path());
    let log = Log::open(dir.path(), options()).unwrap();
    fill(&log, 10, 5);
    assert_eq!(common::segment_files(dir.path()).len(), 1, "the same segment, longer");
    log.close().wait().unwrap();
    // The older log, with the newer image.
    std::fs::copy(dir.path().join(IMAGE_FILE_NAME), earlier.path().join(IMAGE_FILE_NAME)).unwrap();
    let log = Log::open(earlier.path(), options()).unwrap();
    assert_eq!(rejected(&log), "stale image: the log no longer holds the last frame it covers");
    assert_same_as_full_scan(&log, earlier.path());
}

/// Row "stale segment": a segment the image covers was replaced by another
/// file of the same name (another header).
#[test]
fn an_image_whose_segment_was_replaced_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 200);
    let first = common::segment_files(dir.path())[0].clone();
    let mut bytes = std::fs::read(&first).unwrap();
    // created_ms, informational: the header still decodes, the segment reads.
    bytes[48] ^= 1;
    let crc = crc32fast::hash(&bytes[..56]);
    bytes[56..60].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&first, bytes).unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    assert_eq!(rejected(&log), "stale image: a segment it covers was replaced");
    assert_same_as_full_scan(&log, dir.path());
}

/// Row "leftover temporary": an image being written when the process died
/// is deleted by a read-write open, ignored by a reader.
#[test]
fn a_leftover_temporary_is_deleted_by_a_writer_and_ignored_by_readers() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 50);
    let temp = dir.path().join(IMAGE_TEMP_FILE_NAME);
    std::fs::write(&temp, b"half an image").unwrap();
    let before = common::dir_snapshot(dir.path());
    let reader = LogReader::open(dir.path()).unwrap();
    assert!(matches!(reader.report().index_image, ImageUse::Loaded { .. }));
    common::assert_dir_unchanged(dir.path(), &before, "a reader");
    let log = Log::open(dir.path(), options()).unwrap();
    loaded(&log);
    assert!(!temp.exists());
}

/// A reader uses the image but never writes one, and `open_scanning`
/// (what `annals verify` uses) reads every frame.
#[test]
fn readers_load_the_image_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 150);
    std::fs::remove_file(dir.path().join(IMAGE_FILE_NAME)).unwrap();
    let before = common::dir_snapshot(dir.path());
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.report().index_image, ImageUse::None);
    assert_eq!(reader.stats().unwrap().index_image_age_ms, None);
    common::assert_dir_unchanged(dir.path(), &before, "a reader");
    Log::open(dir.path(), options()).unwrap().close().wait().unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    assert!(matches!(reader.report().index_image, ImageUse::Loaded { .. }));
    assert!(reader.stats().unwrap().index_image_age_ms.is_some());
    let scanning = LogReader::open_scanning(dir.path(), &Options::default()).unwrap();
    assert_eq!(scanning.report().index_image, ImageUse::None);
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), scanning.read_all(Lsn::ZERO, usize::MAX).unwrap());
}

/// A salvage may cut covered bytes: it deletes the image before it changes
/// anything.
#[test]
fn salvage_deletes_the_image_first() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 200);
    let salvage = Options { recovery_mode: RecoveryMode::Salvage, index_image: IndexImageWrites::Off, ..options() };
    let log = Log::open(dir.path(), salvage).unwrap();
    assert_eq!(log.recovery_report().index_image, ImageUse::None);
    assert!(!dir.path().join(IMAGE_FILE_NAME).exists());
}

/// The image skips the covered frames' checksums at open; a flipped bit in
/// a covered record is found when that record is read, and is an error,
/// never a wrong answer. `open_scanning` reports it.
#[test]
fn a_damaged_record_under_the_image_is_an_error_when_read() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 200);
    // Stream 0's last entry: after its latest snapshot, so a read returns it.
    let victim = common::unique_payload(198, 200);
    let (file, end) = common::payload_end(dir.path(), &victim).unwrap();
    common::flip_bit(&file, end - 5, 2);
    let log = Log::open(dir.path(), options()).unwrap();
    loaded(&log);
    match log.read_stream("stream-0") {
        Err(Error::Corruption(corruption)) => assert_eq!(corruption.file, file),
        other => panic!("a damaged record read as {other:?}"),
    }
    assert!(matches!(log.read_all(Lsn::ZERO, usize::MAX), Err(Error::Corruption(_))));
    drop(log);
    let scanning = LogReader::open_scanning(dir.path(), &Options::default()).unwrap();
    assert!(!scanning.problems().is_empty());
}

/// A read checks an image-covered frame once and remembers it (6259d01,
/// the W3 regression): the frames other reads checked never vouch for a
/// damaged one, and a damaged frame is never remembered as checked, so
/// every read of it fails, the first and the next.
#[test]
fn frames_remembered_as_checked_never_vouch_for_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 200);
    let victim = common::unique_payload(198, 200);
    let (file, end) = common::payload_end(dir.path(), &victim).unwrap();
    common::flip_bit(&file, end - 5, 2);
    let log = Log::open(dir.path(), options()).unwrap();
    loaded(&log);
    let healthy = log.read_stream("stream-1").unwrap();
    assert_eq!(log.read_stream("stream-1").unwrap(), healthy, "a second read of checked frames");
    for attempt in 0..2 {
        match log.read_stream("stream-0") {
            Err(Error::Corruption(corruption)) => assert_eq!(corruption.file, file),
            other => panic!("read {attempt} of a damaged record returned {other:?}"),
        }
    }
}

fn sim_options(fs: &SimFs) -> Options {
    Options { file_system: Arc::new(fs.clone()), segment_preparation: SegmentPreparation::Inline, ..options() }
}

/// How the log's index differs from a full scan of `fs`.
fn differences_from_scan(log: &Log, fs: &SimFs, dir: &Path) -> Vec<String> {
    let scanned = recover_with(fs, dir, Access::ReadOnly, RecoveryMode::Strict, ImagePolicy::Ignore).unwrap();
    log.index_differences(&scanned.index)
}

/// After a crash, the image of the sealed segments (as the background
/// writer leaves it after a rollover) plus a scan of the newest segment
/// equals a full scan.
#[test]
fn after_a_crash_the_image_of_the_sealed_segments_and_the_tail_equal_a_full_scan() {
    let fs = SimFs::new();
    let dir = Path::new("/image/crash");
    let log = Log::open(dir, sim_options(&fs)).unwrap();
    fill(&log, 0, 200);
    let covered = log.write_index_image().unwrap().expect("sealed segments to cover");
    assert_eq!(log.write_index_image().unwrap(), None, "the image reaches as far already");
    fill(&log, 200, 40);
    fs.crash_now();
    drop(log);
    let mut rng = SimRng::new(7);
    for mode in CrashMode::ALL {
        let image = fs.crash_image(mode, &mut rng);
        let log = Log::open(dir, sim_options(&image)).unwrap();
        assert_eq!(loaded(&log), covered, "{}", mode.name());
        assert_eq!(differences_from_scan(&log, &image, dir), Vec::<String>::new(), "{}", mode.name());
    }
}

/// A failure to write an image is not the log's: the append path goes on.
#[test]
fn a_failed_image_write_does_not_poison_the_log() {
    let fs = SimFs::new();
    let dir = Path::new("/image/fault");
    let log = Log::open(dir, sim_options(&fs)).unwrap();
    fill(&log, 0, 200);
    fs.inject_fault_after(1, annals::sim::fs::FaultKind::Eio, false);
    assert!(log.write_index_image().is_err());
    fs.clear_fault();
    log.append("stream-0", Expectation::Any, &b"still appending"[..]).wait().unwrap();
    log.check_open().unwrap();
    assert!(log.write_index_image().unwrap().is_some());
}

/// An image kept from before a salvage covered a clean-close marker; the
/// salvage cut the log before it and wrote a gap, and the next close wrote
/// a new marker at the same offset. The image's check that its last frame
/// was still whole where it said passed, and the open resumed past records
/// the log no longer held: false corruption ("log ends at lsn 6, but every
/// lsn below 9 was recorded durable"). The image now also records that
/// frame's checksum and the LSN it reaches. Found by the simulator at seed
/// 82, which puts older images back before opens.
#[test]
fn an_image_from_before_a_salvage_is_refused_even_where_a_new_marker_sits() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 10);
    let older = std::fs::read(dir.path().join(IMAGE_FILE_NAME)).unwrap();
    let segment = common::segment_files(dir.path()).pop().unwrap();
    // The last record and the close marker: a salvage cuts them.
    let end = common::written_end(&segment);
    common::zero_range(&segment, end - 1500, end);
    let salvage = Options { recovery_mode: RecoveryMode::Salvage, index_image: IndexImageWrites::Off, ..options() };
    let log = Log::open(dir.path(), salvage).unwrap();
    assert!(!log.recovery_report().salvaged.is_empty());
    log.close().wait().unwrap();
    std::fs::write(dir.path().join(IMAGE_FILE_NAME), older).unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    assert!(rejected(&log).starts_with("stale image"), "{:?}", log.recovery_report().index_image);
    assert_same_as_full_scan(&log, dir.path());
}

/// `index_image` changed between runs: a run with `Background` leaves an
/// image, the next runs with `Off` write none and go on appending, pruning,
/// clearing and compacting past it. Whatever the image still covers, the
/// open after them loads it only where it is still true (else falls back
/// to a full scan), and reads as a full scan would: an image a run did not
/// keep up to date never gives a wrong answer.
#[test]
fn an_image_left_by_an_earlier_run_with_images_off_since_never_gives_a_wrong_answer() {
    let dir = tempfile::tempdir().unwrap();
    let background = Options { index_image: IndexImageWrites::Background, ..options() };
    let off = Options { index_image: IndexImageWrites::Off, ..options() };
    let log = Log::open(dir.path(), background.clone()).unwrap();
    fill(&log, 0, 300);
    log.close().wait().unwrap();
    drop(log);
    let kept = std::fs::read(dir.path().join(IMAGE_FILE_NAME)).unwrap();
    // Appends, prunes and clears past the image: it covers a prefix.
    let log = Log::open(dir.path(), off.clone()).unwrap();
    loaded(&log);
    fill(&log, 300, 200);
    log.close().wait().unwrap();
    drop(log);
    assert_eq!(std::fs::read(dir.path().join(IMAGE_FILE_NAME)).unwrap(), kept, "a run with images off writes none");
    let log = Log::open(dir.path(), background.clone()).unwrap();
    assert!(loaded(&log) < Lsn(log.last_lsn().unwrap().0 + 1), "the image covers a prefix; the rest was scanned");
    assert_same_as_full_scan(&log, dir.path());
    log.close().wait().unwrap();
    drop(log);
    // A compaction in a run with images off: the image now describes
    // another compaction generation.
    std::fs::write(dir.path().join(IMAGE_FILE_NAME), &kept).unwrap();
    let log = Log::open(dir.path(), off).unwrap();
    fill(&log, 500, 100);
    for stream in ["stream-0", "stream-1", "stream-2"] {
        log.delete_stream(stream).wait().unwrap();
    }
    fill(&log, 600, 100);
    assert!(log.compact().unwrap().generation > 0, "a compaction committed");
    log.close().wait().unwrap();
    drop(log);
    std::fs::write(dir.path().join(IMAGE_FILE_NAME), &kept).unwrap();
    let log = Log::open(dir.path(), background).unwrap();
    assert!(rejected(&log).starts_with("stale image"), "{:?}", log.recovery_report().index_image);
    assert_same_as_full_scan(&log, dir.path());
}

/// The disk fills up at each step of writing an image (create, write,
/// fdatasync, rename, directory sync): the write fails with a typed error
/// and poisons nothing, the log goes on appending, and the next open (after
/// a close, or after a crash in every mode) either loads the image that is
/// there, old or new, or falls back to a full scan, and reads as one would.
#[test]
fn a_full_disk_while_an_image_is_written_leaves_a_usable_or_no_image() {
    let mut full = 0;
    for step in 1..=6 {
        let fs = SimFs::new();
        let dir = Path::new("/image/full");
        let log = Log::open(dir, sim_options(&fs)).unwrap();
        fill(&log, 0, 200);
        log.write_index_image().unwrap().expect("sealed segments to cover");
        fill(&log, 200, 200);
        fs.inject_fault_after(step, annals::sim::fs::FaultKind::Enospc, true);
        let written = log.write_index_image();
        fs.clear_fault();
        match written {
            Ok(_) => {}
            Err(Error::DiskFull { .. }) => full += 1,
            Err(other) => panic!("step {step}: a full disk is reported as such, got {other}"),
        }
        log.append("stream-0", Expectation::Any, &b"still appending"[..]).wait().unwrap();
        log.check_open().unwrap();
        fill(&log, 400, 30);
        fs.crash_now();
        drop(log);
        let mut rng = SimRng::new(step);
        for mode in CrashMode::ALL {
            let image = fs.crash_image(mode, &mut rng);
            let log = Log::open(dir, sim_options(&image)).unwrap();
            assert_eq!(differences_from_scan(&log, &image, dir), Vec::<String>::new(), "step {step}, {}", mode.name());
            let names = annals::fs::FileSystem::list(&image, dir).unwrap();
            assert!(
                !names.iter().any(|name| name == IMAGE_TEMP_FILE_NAME),
                "step {step}: a writer deletes the temporary"
            );
            log.close().wait().unwrap();
            drop(log);
            let log = Log::open(dir, sim_options(&image)).unwrap();
            loaded(&log);
            assert_eq!(differences_from_scan(&log, &image, dir), Vec::<String>::new(), "step {step}, {}", mode.name());
        }
    }
    assert!(full >= 4, "the disk filled up at every step of the write: {full} failed");
}

/// A reopen after a clean close writes nothing (issue 11, point 4): the
/// image written at the close covers the close marker, which that close
/// synced, so the open does not write the tail again (it used to copy the
/// marker into `annals.resync`, write it back and sync three times).
#[test]
fn a_reopen_after_a_clean_close_syncs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let with_fs = || Options {
        file_system: fs.options().file_system,
        segment_preparation: SegmentPreparation::Inline,
        ..options()
    };
    let log = Log::open(dir.path(), with_fs()).unwrap();
    fill(&log, 0, 300);
    log.close().wait().unwrap();
    drop(log);
    let syncs = fs.faults.syncs.load(std::sync::atomic::Ordering::SeqCst);
    let log = Log::open(dir.path(), with_fs()).unwrap();
    loaded(&log);
    assert_eq!(log.recovery_report().tail_bytes_resynced, 0);
    assert_eq!(fs.faults.syncs.load(std::sync::atomic::Ordering::SeqCst), syncs, "no file was synced");
    assert!(!dir.path().join(annals::recovery::RESYNC_FILE_NAME).exists());
    assert_same_as_full_scan(&log, dir.path());
    // Without an image, the open cannot tell that the marker is durable: it
    // writes it again, as before.
    log.close().wait().unwrap();
    drop(log);
    std::fs::remove_file(dir.path().join(IMAGE_FILE_NAME)).unwrap();
    let log = Log::open(dir.path(), with_fs()).unwrap();
    assert!(log.recovery_report().tail_bytes_resynced > 0);
}

/// The image's entry positions are no longer checked one by one at open:
/// a read checks the one it uses. An image whose checksums hold but whose
/// first stream's first position names a segment the image does not cover,
/// or an offset where no such record is, makes reads of that stream fail
/// with a typed corruption error: never a panic, never another record.
#[test]
fn a_position_in_the_image_that_names_no_record_is_an_error_when_read() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 200);
    let path = dir.path().join(IMAGE_FILE_NAME);
    let good = std::fs::read(&path).unwrap();
    let u32_at = |bytes: &[u8], at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |bytes: &[u8], at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    // segments-format.md 11.1: the header, the body's scalars, each segment.
    let (header, scalars) = (96, 48);
    let segments = u32_at(&good, header + 36);
    let mut at = header + scalars;
    for _ in 0..segments {
        let (checkpoints, batch_frames) = (u32_at(&good, at + 108), u32_at(&good, at + 112));
        at += 116 + checkpoints * 12 + batch_frames * 8;
    }
    // The first stream: its fixed fields, its id, then its positions.
    let (stream_bytes, entries) = (u16::from_le_bytes([good[at], good[at + 1]]) as usize, u64_at(&good, at + 6));
    assert!(entries > 0, "the first stream has entries");
    let start = u64_at(&good, at + 14) as u64;
    let stream = String::from_utf8(good[at + 38..at + 38 + stream_bytes].to_vec()).unwrap();
    let first = at + 38 + stream_bytes;
    let segment_of = |position: u64| position >> 32;
    let original = u64_at(&good, first) as u64;
    for position in [(999u64 << 32) | 100, original + 1, (segment_of(original) << 32) | 8] {
        let mut bad = good.clone();
        bad[first..first + 8].copy_from_slice(&position.to_le_bytes());
        let log_id: [u8; 16] = bad[16..32].try_into().unwrap();
        let crc = |bytes: &[u8]| {
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&log_id);
            hasher.update(bytes);
            hasher.finalize()
        };
        let body_crc = crc(&bad[header..]);
        bad[88..92].copy_from_slice(&body_crc.to_le_bytes());
        let header_crc = crc(&bad[..92]);
        bad[92..96].copy_from_slice(&header_crc.to_le_bytes());
        std::fs::write(&path, &bad).unwrap();
        let reader = LogReader::open(dir.path()).unwrap();
        assert!(matches!(reader.report().index_image, ImageUse::Loaded { .. }), "the checksums hold");
        match reader.read_stream_from(&stream, StreamSeq(start)) {
            Err(Error::Corruption(_)) => {}
            other => panic!("position {position:#x} read as {other:?}"),
        }
    }
}
