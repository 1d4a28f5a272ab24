//! Logs written by earlier format versions, from committed fixtures, open
//! with every record, and a read-write open upgrades them (segments-format.md,
//! "Version history").

mod common;

use std::path::{Path, PathBuf};

use annals::state::{FEATURE_CLEAN_CLOSE_CLEARED_FIRST, STATE_FILE_NAME, STATE_SLOT_BYTES, StateRead, read_state};
use annals::{Expectation, Log, LogReader, LogState, Lsn, Options, Record};

/// The fixture: a cleanly closed version-1 log of three 4 KiB segments
/// (entries, a snapshot, a clear and a batch), made by the version-1 build,
/// and its records as that build read them back.
fn fixture() -> (PathBuf, Vec<String>) {
    fixture_named("v1-clean-close")
}

/// The fixture `name` under `tests/fixtures`, and its records as the build
/// that wrote it read them back (`name.records`).
fn fixture_named(name: &str) -> (PathBuf, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let records = std::fs::read_to_string(root.join(format!("{name}.records"))).unwrap();
    (root.join(name), records.lines().map(str::to_owned).collect())
}

fn line(record: &Record) -> String {
    let hex: String = record.payload.iter().map(|b| format!("{b:02x}")).collect();
    let payload = if hex.is_empty() { "-".to_owned() } else { hex };
    let stream = String::from_utf8_lossy(&record.stream);
    format!("{} {stream} {} {} {payload}", record.lsn, record.seq, record.kind.name())
}

fn copy_of(fixture: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn a_version_1_log_reads_back_every_record_without_being_changed() {
    let (fixture, expected) = fixture();
    let dir = copy_of(&fixture);
    let before = files(dir.path());
    let reader = LogReader::open(dir.path()).unwrap();
    assert!(reader.problems().is_empty(), "{:?}", reader.problems());
    assert_eq!(reader.report().format_version, 1);
    let got: Vec<String> = reader.read_all_on_disk(Lsn::ZERO, usize::MAX).unwrap().iter().map(line).collect();
    assert_eq!(got, expected);
    assert_eq!(files(dir.path()), before, "reading changes nothing");
}

#[test]
fn a_read_write_open_upgrades_a_version_1_log_and_then_guards_its_end() {
    let (fixture, expected) = fixture();
    let dir = copy_of(&fixture);
    let options = || Options { segment_bytes: 4096, record_bytes_max: 2048, ..Options::default() };
    let log = Log::open(dir.path(), options()).unwrap();
    let got: Vec<String> = log.read_all_on_disk(Lsn::ZERO, usize::MAX).unwrap().iter().map(line).collect();
    assert_eq!(got, expected);
    assert!(dir.path().join("annals.state").exists(), "the upgrade writes the state file");
    let last = Lsn(expected.len() as u64);
    let segments_before = common::segment_files(dir.path()).len();
    let mut appended = Vec::new();
    while common::segment_files(dir.path()).len() == segments_before {
        appended.push(log.append("after-upgrade", Expectation::Any, vec![7u8; 700]).wait().unwrap());
    }
    assert_eq!(appended[0].lsn, Lsn(last.0 + 1));
    log.close().wait().unwrap();
    let newest = common::segment_files(dir.path()).pop().unwrap();
    let version = u32::from_le_bytes(std::fs::read(&newest).unwrap()[8..12].try_into().unwrap());
    assert_eq!(version, 2, "new segments are written in the current version");

    let reopened = Log::open(dir.path(), options()).unwrap();
    assert_eq!(reopened.read_all_on_disk(Lsn::ZERO, usize::MAX).unwrap().len(), expected.len() + appended.len());
    drop(reopened);
    std::fs::remove_file(&newest).unwrap();
    let error = Log::open(dir.path(), options()).err().expect("the upgraded log notices its newest segment missing");
    assert!(error.as_corruption().is_some(), "{error}");
}

/// Options the version-2 fixture was written with (4 KiB segments), and no
/// index image, so that what an open reads is what the fixture holds.
fn v2_options() -> Options {
    Options {
        segment_bytes: 4096,
        record_bytes_max: 2048,
        index_image: annals::IndexImageWrites::Off,
        ..Options::default()
    }
}

/// Both slots of the state file of `dir`, decoded.
fn state_slots(dir: &Path) -> Vec<LogState> {
    let bytes = std::fs::read(dir.join(STATE_FILE_NAME)).unwrap();
    bytes.chunks(STATE_SLOT_BYTES).map(|slot| LogState::decode(slot).unwrap()).collect()
}

/// Fills the last 100 bytes of the newest segment of `dir` with non-zero
/// bytes, far past its clean-close marker; returns where they start.
fn plant_bytes_past_the_marker(dir: &Path) -> u64 {
    let newest = common::segment_files(dir).pop().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let from = bytes.len() - 100;
    bytes[from..].fill(0xa5);
    std::fs::write(&newest, bytes).unwrap();
    from as u64
}

/// The fixture `v2-no-pair`: a version-2 log closed cleanly by the build
/// before the clean-close pair (`make-v2-no-pair.sh` writes it again with
/// that build), so both of its state slots say clean and lack feature bit
/// 2. That clean flag vouches for nothing (an older build may have written
/// past its marker): this build reads every record, and reads the rest of
/// the newest segment after the marker (row 1: bytes planted there are
/// found, by a reader and by a writer, which cuts them as a torn tail),
/// and changes nothing when it only reads.
#[test]
fn a_version_2_log_without_the_clean_close_pair_is_read_to_the_end_of_its_newest_segment() {
    let (fixture, expected) = fixture_named("v2-no-pair");
    for slot in state_slots(&fixture) {
        assert!(slot.clean_close && slot.features & FEATURE_CLEAN_CLOSE_CLEARED_FIRST == 0, "{slot:?}");
    }
    let dir = copy_of(&fixture);
    assert_eq!(read_state(&annals::fs::RealFs, dir.path()).unwrap().clean_close_pair(), None);
    let before = files(dir.path());
    let reader = LogReader::open(dir.path()).unwrap();
    assert!(reader.problems().is_empty() && reader.report().torn_tail.is_none(), "{:?}", reader.problems());
    assert_eq!(reader.report().format_version, 2);
    let got: Vec<String> = reader.read_all_on_disk(Lsn::ZERO, usize::MAX).unwrap().iter().map(line).collect();
    assert_eq!(got, expected);
    assert_eq!(files(dir.path()), before, "reading changes nothing");

    // The torn tail runs from the end of the frames to the planted bytes' end.
    let planted = plant_bytes_past_the_marker(dir.path());
    let reaches = |torn: Option<&annals::DroppedRange>| torn.is_some_and(|t| t.offset + t.bytes == planted + 100);
    let reader = LogReader::open(dir.path()).unwrap();
    assert!(reaches(reader.report().torn_tail.as_ref()), "the reader skipped the zeros: {:?}", reader.report());
    let log = Log::open(dir.path(), v2_options()).unwrap();
    let report = log.recovery_report();
    assert!(reaches(report.torn_tail.as_ref()), "the open skipped the zeros: {report:?}");
    let got: Vec<String> = log.read_all_on_disk(Lsn::ZERO, usize::MAX).unwrap().iter().map(line).collect();
    assert_eq!(got, expected);
}

/// After one session of this build that writes nothing, the same log
/// carries feature bit 2 in both slots and its clean close is a pair: the
/// next open takes the zeros after the marker for the end (row 1c), and
/// leaves bytes planted there unread; every record reads as before, and
/// the next append gets the next LSN.
#[test]
fn one_session_of_this_build_gives_a_version_2_log_the_clean_close_pair() {
    let (fixture, expected) = fixture_named("v2-no-pair");
    let dir = copy_of(&fixture);
    let log = Log::open(dir.path(), v2_options()).unwrap();
    let got: Vec<String> = log.read_all_on_disk(Lsn::ZERO, usize::MAX).unwrap().iter().map(line).collect();
    assert_eq!(got, expected);
    log.close().wait().unwrap();
    drop(log);
    for slot in state_slots(dir.path()) {
        assert!(slot.clean_close && slot.features & FEATURE_CLEAN_CLOSE_CLEARED_FIRST != 0, "{slot:?}");
    }
    let read = read_state(&annals::fs::RealFs, dir.path()).unwrap();
    let StateRead::Found { state, .. } = read else { panic!("{read:?}") };
    assert_eq!(read.clean_close_pair(), Some(state));
    plant_bytes_past_the_marker(dir.path());
    let log = Log::open(dir.path(), v2_options()).unwrap();
    assert_eq!(log.recovery_report().torn_tail, None, "the pair vouches for the zeros after its marker");
    let got: Vec<String> = log.read_all_on_disk(Lsn::ZERO, usize::MAX).unwrap().iter().map(line).collect();
    assert_eq!(got, expected);
    let appended = log.append("after", Expectation::Any, &b"next"[..]).wait().unwrap();
    assert_eq!(appended.lsn, Lsn(expected.len() as u64 + 1));
}
