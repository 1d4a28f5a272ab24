//! Damage that a crash cannot cause is reported as corruption with the file
//! and offset, never cut silently; salvage mode cuts it and says what it dropped.

mod common;

use std::path::{Path, PathBuf};

use annals::{CorruptionKind, Error, Expectation, Log, Lsn, Options, RecoveryMode, StreamSeq};

/// A cleanly closed log spread over several 8 KiB segments.
fn closed_log(dir: &Path, records: u64) {
    let log = common::open(dir);
    for i in 0..records {
        log.append(format!("stream-{}", i % 3), Expectation::Any, vec![i as u8; 300]).wait().unwrap();
    }
    log.close().wait().unwrap();
}

fn copy_of(image: &Path) -> tempfile::TempDir {
    let case = tempfile::tempdir().unwrap();
    common::crash_image(image, case.path());
    case
}

fn open_error(dir: &Path) -> annals::Corruption {
    match Log::open(dir, common::small_options()) {
        Err(Error::Corruption(corruption)) => *corruption,
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("expected corruption, the log opened"),
    }
}

fn in_case(case: &Path, file: &Path) -> PathBuf {
    case.join(file.file_name().unwrap())
}

#[test]
fn a_flipped_bit_in_every_field_of_a_sealed_record_is_corruption_at_its_offset() {
    let image = tempfile::tempdir().unwrap();
    closed_log(image.path(), 80);
    let segments = common::segment_files(image.path());
    assert!(segments.len() >= 3);
    let sealed = &segments[0];
    let frame = common::frame_offsets(sealed)[1];
    // Every byte of the frame header (crc, length, lsn, durable lsn, time,
    // kind, flags, reserved, count), of the operation header (stream length,
    // payload length, seq, lsn), of the stream id, and a payload byte.
    let stream_len = "stream-1".len();
    let bytes: Vec<usize> = (0..40 + 22 + stream_len).chain([40 + 22 + stream_len + 100]).collect();
    for byte in bytes {
        let case = copy_of(image.path());
        let file = in_case(case.path(), sealed);
        common::flip_bit(&file, frame + byte, (byte % 8) as u8);
        let corruption = open_error(case.path());
        assert_eq!((corruption.file.as_path(), corruption.offset), (file.as_path(), frame as u64), "byte {byte}");
    }
}

/// Recovery's scan checks a frame's checksum and header as it decodes it,
/// and the layout of its operations itself, parsing the first one once for
/// the check and the index: a frame whose checksum holds over operations
/// that break the format (written so by a bug, never by a crash) is still
/// corruption at its offset, never indexed.
#[test]
fn a_frame_whose_checksum_holds_over_a_malformed_operation_is_corruption_at_its_offset() {
    let image = tempfile::tempdir().unwrap();
    closed_log(image.path(), 80);
    let sealed = common::segment_files(image.path())[0].clone();
    let frame = common::frame_offsets(&sealed)[1];
    let log_id = annals::segment::SegmentHeader::decode(&std::fs::read(&sealed).unwrap()).unwrap().log_id;
    let op = annals::frame::FRAME_HEADER_BYTES;
    // (what the operation's header is given, how the scan must describe it)
    let malformations: [(usize, Vec<u8>, &str); 4] = [
        (op, 0u16.to_le_bytes().to_vec(), "stream id length out of range"),
        (op + 2, 301u32.to_le_bytes().to_vec(), "operation runs past the body"),
        (op + 2, 299u32.to_le_bytes().to_vec(), "bytes left over after the last operation"),
        (op + 14, 1_000u64.to_le_bytes().to_vec(), "operation lsn does not follow the frame's"),
    ];
    for (at, value, why) in malformations {
        let case = copy_of(image.path());
        let file = in_case(case.path(), &sealed);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[frame + at..frame + at + value.len()].copy_from_slice(&value);
        let body = u32::from_le_bytes(bytes[frame + 4..frame + 8].try_into().unwrap()) as usize;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&log_id);
        hasher.update(&bytes[frame + 4..frame + op + body]);
        bytes[frame..frame + 4].copy_from_slice(&hasher.finalize().to_le_bytes());
        std::fs::write(&file, bytes).unwrap();
        let corruption = open_error(case.path());
        assert_eq!((corruption.file.as_path(), corruption.offset), (file.as_path(), frame as u64), "{why}");
        assert_eq!(corruption.kind, CorruptionKind::BadRecord(format!("malformed frame: {why}")));
    }
}

#[test]
fn damage_in_the_last_segment_confirmed_by_later_frames_is_corruption() {
    let image = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    for i in 0..6u64 {
        log.append("s", Expectation::Exact(StreamSeq(i)), vec![1; 200]).wait().unwrap();
    }
    common::crash_image(dir.path(), image.path()); // a crash: no close marker
    let segment = common::segment_files(image.path()).pop().unwrap();
    let frames = common::frame_offsets(&segment);
    common::flip_bit(&segment, frames[2] + 100, 3);
    let corruption = open_error(image.path());
    assert_eq!(corruption.offset, frames[2] as u64);
    assert!(matches!(corruption.kind, CorruptionKind::BadRecord(_)));
}

#[test]
fn a_flipped_bit_in_the_last_record_of_a_cleanly_closed_log_is_corruption() {
    let image = tempfile::tempdir().unwrap();
    closed_log(image.path(), 4);
    let segment = common::segment_files(image.path()).pop().unwrap();
    let frames = common::frame_offsets(&segment);
    let last_record = frames[frames.len() - 2]; // the last frame is the close marker
    common::flip_bit(&segment, last_record + 45, 0);
    assert_eq!(open_error(image.path()).offset, last_record as u64);
}

#[test]
fn a_missing_middle_segment_is_reported() {
    let image = tempfile::tempdir().unwrap();
    closed_log(image.path(), 80);
    let segments = common::segment_files(image.path());
    std::fs::remove_file(&segments[1]).unwrap();
    let corruption = open_error(image.path());
    assert_eq!(corruption.file, segments[2]);
    assert!(matches!(corruption.kind, CorruptionKind::MissingSegment { .. }), "{corruption}");
}

#[test]
fn a_segment_from_another_log_is_reported() {
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    closed_log(ours.path(), 80);
    closed_log(theirs.path(), 80);
    let stranger = &common::segment_files(theirs.path())[1];
    std::fs::copy(stranger, ours.path().join(stranger.file_name().unwrap())).unwrap();
    let corruption = open_error(ours.path());
    assert_eq!(corruption.kind, CorruptionKind::ForeignSegment);
}

#[test]
fn salvage_cuts_at_the_damage_and_reports_exactly_what_it_dropped() {
    let image = tempfile::tempdir().unwrap();
    closed_log(image.path(), 80);
    let segments = common::segment_files(image.path());
    let frame = common::frame_offsets(&segments[1])[2];
    common::flip_bit(&segments[1], frame + 60, 1);
    let first_lost = {
        let reader = annals::LogReader::open(image.path()).unwrap();
        assert_eq!(reader.problems()[0].offset, frame as u64);
        let bytes = std::fs::read(&segments[1]).unwrap();
        Lsn(u64::from_le_bytes(bytes[frame + 8..frame + 16].try_into().unwrap()))
    };
    let options = Options { recovery_mode: RecoveryMode::Salvage, ..common::small_options() };
    let log = Log::open(image.path(), options).unwrap();
    let salvaged = &log.recovery_report().salvaged;
    assert_eq!(
        (salvaged[0].file.as_path(), salvaged[0].offset, salvaged[0].file_deleted),
        (segments[1].as_path(), frame as u64, false)
    );
    assert_eq!(salvaged[0].from_lsn, first_lost);
    let deleted: Vec<&Path> = salvaged[1..].iter().map(|d| d.file.as_path()).collect();
    assert_eq!(deleted, segments[2..].iter().map(PathBuf::as_path).collect::<Vec<_>>());
    let kept = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    assert_eq!(kept.last().map(|r| r.lsn), Some(Lsn(first_lost.0 - 1)), "everything before the damage is kept");
    // Issue 9, case 4: the next append took the first lost LSN, which an
    // acknowledged record had held. The state file says 80 were durable
    // (its durable end and the clean close's marker name 81): the log
    // resumes one past that, so no frame it writes repeats the old history.
    assert_eq!(log.recovery_report().resumes_at, Some(Lsn(82)));
    let appended = log.append("after", Expectation::NoStream, &b"x"[..]).wait().unwrap();
    assert_eq!(appended.lsn, Lsn(82), "no acknowledged lsn is handed out again");
}

#[test]
fn a_record_changed_under_an_open_log_is_reported_by_reads_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    for payload in ["first-payload", "second-payload", "third-payload"] {
        log.append("stream-s", Expectation::Any, payload.as_bytes().to_vec()).wait().unwrap();
    }
    // Another writer changes the second record's stream id behind the log's back.
    let segment = common::segment_files(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&segment).unwrap();
    let at = bytes.windows(22).position(|w| w == b"stream-ssecond-payload").unwrap();
    common::flip_bit(&segment, at, 0);

    let mut seen = Vec::new();
    let error = log.visit_stream("stream-s", |r| seen.push(r.payload.to_vec())).unwrap_err();
    let corruption = error.as_corruption().expect("a typed corruption");
    assert!(matches!(corruption.kind, CorruptionKind::IndexMismatch(_)), "{corruption}");
    assert_eq!(corruption.file, segment);
    assert_eq!(seen, vec![b"first-payload".to_vec()], "only the records before the damage were visited");
    let error = log.read_stream("stream-s").unwrap_err();
    assert!(matches!(error.as_corruption().unwrap().kind, CorruptionKind::IndexMismatch(_)));
}
