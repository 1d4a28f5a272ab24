//! Logs written by earlier format versions, from committed fixtures, open
//! with every record, and a read-write open upgrades them (segments-format.md,
//! "Version history").

mod common;

use std::path::{Path, PathBuf};

use annals::{Expectation, Log, LogReader, Lsn, Options, Record};

/// The fixture: a cleanly closed version-1 log of three 4 KiB segments
/// (entries, a snapshot, a clear and a batch), made by the version-1 build,
/// and its records as that build read them back.
fn fixture() -> (PathBuf, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let records = std::fs::read_to_string(root.join("v1-clean-close.records")).unwrap();
    (root.join("v1-clean-close"), records.lines().map(str::to_owned).collect())
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
