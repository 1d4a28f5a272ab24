//! Review 13: the read-only tools (`annals verify`, `dump --salvage`,
//! `repair`: the intact scan) over segment files longer than the format
//! allows.
//!
//! Each test is named after what it attacks; one that found a bug failed
//! before the fix.

mod common;

use std::path::{Path, PathBuf};

use annals::{CorruptionKind, Expectation, Log, LogReader, Lsn};

/// Just over the largest segment the format allows (2^32 - 1 bytes): made
/// sparse, so it costs no disk, only reading.
const FILE_BYTES_OVER_MAX: u64 = (1 << 32) + 8192;

/// A closed log of a few small segments, and its records' LSNs.
fn closed_log(dir: &Path) -> Vec<Lsn> {
    let log = Log::open(dir, common::small_options()).unwrap();
    for i in 0..40 {
        log.append("s", Expectation::Any, common::unique_payload(i, 300)).wait().unwrap();
    }
    let lsns = log.read_all(Lsn::ZERO, usize::MAX).unwrap().iter().map(|record| record.lsn).collect();
    log.close().wait().unwrap();
    lsns
}

fn newest_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    segments.sort();
    segments.pop().unwrap()
}

/// Makes `path` `FILE_BYTES_OVER_MAX` long, with non-zero bytes at `garbage_at`.
fn lengthen_with_garbage(path: &Path, garbage_at: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).unwrap();
    file.set_len(FILE_BYTES_OVER_MAX).unwrap();
    file.write_all_at(&[0xA5; 100], garbage_at).unwrap();
}

/// A segment file lengthened past what its header says (to just over 4
/// GiB here; 64 GiB took `annals verify` half a minute). The intact scan
/// read every byte of it, reported nothing about the length (a read-only
/// open calls it corruption, row 6) and reported whatever lay past the
/// segment's end as damaged records. It now reports the excess, from the
/// header's length on, as one damaged range and reads none of it.
#[test]
fn intact_scan_of_a_segment_longer_than_its_header_reports_the_excess_unread() {
    let dir = tempfile::tempdir().unwrap();
    let lsns = closed_log(dir.path());
    let newest = newest_segment(dir.path());
    let segment_bytes = std::fs::metadata(&newest).unwrap().len();
    lengthen_with_garbage(&newest, segment_bytes + 100);

    let reader = LogReader::open(dir.path()).unwrap();
    let expected = CorruptionKind::SegmentLength { expected: segment_bytes, found: FILE_BYTES_OVER_MAX };
    assert!(reader.problems().iter().any(|problem| problem.kind == expected), "{:?}", reader.problems());

    let mut visited = Vec::new();
    let scan = annals::inspect::scan_intact(&annals::fs::RealFs, dir.path(), |_, _, frame| {
        visited.extend(frame.ops().map(|op| op.lsn));
    })
    .unwrap();
    assert_eq!(scan.damage.len(), 1, "{:?}", scan.damage);
    let damage = &scan.damage[0];
    assert_eq!(damage.file, newest);
    assert_eq!((damage.offset, damage.bytes), (segment_bytes, FILE_BYTES_OVER_MAX - segment_bytes));
    assert_eq!(damage.what, expected.to_string());
    assert!(lsns.iter().all(|lsn| visited.contains(lsn)), "a record was not visited");
}

/// A file named like a segment, longer than any segment can be, whose
/// header says nothing (a sparse file of zeros with a few stray bytes).
/// The intact scan read all of it (12 to 36 s for 64 GiB) and reported its
/// header and the stray bytes; it now reports the file as too long for a
/// segment, whole, and reads none of it past the header.
#[test]
fn intact_scan_of_a_file_longer_than_the_largest_segment_refuses_it_unread() {
    let dir = tempfile::tempdir().unwrap();
    let lsns = closed_log(dir.path());
    let stray = dir.path().join(format!("{:020}.seg", 1_000_000));
    lengthen_with_garbage(&stray, 1 << 20);

    let mut visited = Vec::new();
    let scan = annals::inspect::scan_intact(&annals::fs::RealFs, dir.path(), |_, _, frame| {
        visited.extend(frame.ops().map(|op| op.lsn));
    })
    .unwrap();
    let expected = CorruptionKind::SegmentTooLong { found: FILE_BYTES_OVER_MAX, max: u64::from(u32::MAX) };
    assert_eq!(scan.damage.len(), 1, "{:?}", scan.damage);
    let damage = &scan.damage[0];
    assert_eq!(damage.file, stray);
    assert_eq!((damage.offset, damage.bytes), (0, FILE_BYTES_OVER_MAX));
    assert_eq!(damage.what, expected.to_string());
    assert!(lsns.iter().all(|lsn| visited.contains(lsn)), "a record was not visited");
}

/// An index image made longer than its header says (here to 64 GiB,
/// sparse). It is rightly not used, and costs nothing to refuse; but the
/// reason the open reported (`annals stats` prints it) was "image is
/// truncated", the opposite of what is wrong. It now says the image is
/// longer than its header says.
#[test]
fn an_image_longer_than_its_header_says_is_not_reported_as_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let options = annals::Options { index_image: annals::IndexImageWrites::Background, ..common::small_options() };
    let log = Log::open(dir.path(), options).unwrap();
    for i in 0..100 {
        log.append("s", Expectation::Any, common::unique_payload(i, 300)).wait().unwrap();
    }
    log.close().wait().unwrap();
    let image = dir.path().join("annals.index");
    std::fs::OpenOptions::new().write(true).open(&image).unwrap().set_len(64 << 30).unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    match &reader.report().index_image {
        annals::ImageUse::Rejected { reason } => {
            assert!(reason.contains("longer than its header says"), "{reason}");
        }
        other => panic!("an image of the wrong length was {other:?}"),
    }
    assert!(reader.problems().is_empty(), "{:?}", reader.problems());
}
