//! A log's cost follows what it holds (issue 11, point 4): a log of a few
//! records is small on disk, and reopening one writes nothing recovery does
//! not need.

mod common;

use std::path::Path;

use annals::{Expectation, Log, Lsn, Options};

/// Bytes the directory's files take: their lengths, and the blocks the file
/// system allocated for them.
fn disk_use(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut lengths = 0;
    let mut allocated = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let metadata = entry.unwrap().metadata().unwrap();
        lengths += metadata.len();
        allocated += metadata.blocks() * 512;
    }
    (lengths, allocated)
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "LOCK")
        .map(|e| (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

/// An empty log and one of a few records took 128 MiB (a 64 MiB segment
/// and a 64 MiB spare); with the default options they now stay within 8 MiB,
/// open and closed.
#[test]
fn a_log_of_a_few_records_takes_at_most_8_mib_with_the_default_options() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::default()).unwrap();
    for i in 0..20u64 {
        log.append(format!("run-{}", i % 4), Expectation::Any, vec![i as u8; 300]).wait().unwrap();
    }
    let open = disk_use(dir.path());
    log.close().wait().unwrap();
    drop(log);
    let closed = disk_use(dir.path());
    for (when, (lengths, allocated)) in [("open", open), ("closed", closed)] {
        assert!(lengths <= 8 << 20, "{when}: files are {lengths} bytes long");
        assert!(allocated <= 8 << 20, "{when}: {allocated} bytes allocated");
    }
}

/// Reopening rewrote a 64 MiB spare and re-synced the tail frames every
/// time. Reopening a cleanly closed log now rewrites nothing (the index
/// image written at the close covers its marker), and closing it again
/// writes nothing either: the state file holds the close's record in both
/// slots (segments-format.md, 5, "the clean-close pair"), the first synced
/// before the second was written, so it is durable. A close used to write
/// both slots again, because a state read at open may sit in the page
/// cache after a failed fsync (simulator seed 617 of the issue-9
/// simulator, which lost a record behind exactly such a skipped write):
/// a pair cannot, and a single slot still gets written again
/// (`tests/regressions.rs`).
#[test]
fn reopening_and_closing_a_cleanly_closed_log_changes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::default()).unwrap();
    for i in 0..50u64 {
        log.append("s", Expectation::Any, vec![i as u8; 100]).wait().unwrap();
    }
    log.close().wait().unwrap();
    drop(log);
    for round in 0..3 {
        let before = files(dir.path());
        let log = Log::open(dir.path(), Options::default()).unwrap();
        assert!(files(dir.path()) == before, "round {round}: opening a cleanly closed log changed its files");
        // The index image written at the close covers the close marker,
        // which that close synced: nothing is written again (recovery.rs).
        assert_eq!(log.recovery_report().tail_bytes_resynced, 0, "{:?}", log.recovery_report());
        assert_eq!(log.last_lsn().unwrap(), Lsn(50));
        log.close().wait().unwrap();
        drop(log);
        assert!(files(dir.path()) == before, "round {round}: closing changed a file");
    }
}

/// Segments grow from 1 MiB, doubling up to `segment_bytes`; a record too
/// large for the next size gets a segment it fits in (and one too large
/// for an empty first segment replaces it).
#[test]
fn segments_double_from_one_mib_and_a_large_record_gets_a_segment_it_fits_in() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options { segment_bytes: 8 << 20, record_bytes_max: 6 << 20, ..Options::default() };
    let log = Log::open(dir.path(), options()).unwrap();
    log.append("s", Expectation::Any, &b"small"[..]).wait().unwrap();
    log.append("s", Expectation::Any, vec![1u8; 5 << 20]).wait().unwrap();
    for _ in 0..40 {
        log.append("s", Expectation::Any, vec![2u8; 256 << 10]).wait().unwrap();
    }
    log.close().wait().unwrap();
    drop(log);
    let mut sizes: Vec<(String, u64)> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| (e.file_name().into_string().unwrap(), e.metadata().unwrap().len()))
        .collect();
    sizes.sort();
    let sizes: Vec<u64> = sizes.into_iter().map(|(_, len)| len).collect();
    assert_eq!(sizes[0], 1 << 20, "the first segment is 1 MiB: {sizes:?}");
    assert!(sizes[1] >= (5 << 20) + 64 + 40, "the large record's segment holds it: {sizes:?}");
    assert!(sizes.iter().all(|&len| len <= 8 << 20), "{sizes:?}");
    let reopened = Log::open(dir.path(), options()).unwrap();
    assert_eq!(reopened.next_seq("s").unwrap(), annals::StreamSeq(42));
    drop(reopened);

    let empty_first = tempfile::tempdir().unwrap();
    let log = Log::open(empty_first.path(), options()).unwrap();
    log.append("s", Expectation::Any, vec![3u8; 5 << 20]).wait().unwrap();
    assert_eq!(log.read_stream("s").unwrap().entries[0].payload.len(), 5 << 20);
    log.close().wait().unwrap();
    drop(log);
    let reopened = Log::open(empty_first.path(), options()).unwrap();
    assert_eq!(reopened.read_all(Lsn::ZERO, 10).unwrap().len(), 1);
}

/// Appends 700 records of 1,000 bytes to stream "s" (past the middle of a
/// 1 MiB first segment) and closes the log.
fn fill_past_the_middle(dir: &Path, options: Options) {
    let log = Log::open(dir, options).unwrap();
    for i in 0..700u64 {
        log.append("s", Expectation::Any, vec![i as u8; 1000]).wait().unwrap();
    }
    log.close().wait().unwrap();
}

/// A log reopened past the middle of its active segment made its next
/// segment's spare at once (writing and syncing a segment's worth of zeros,
/// deleted again at close) although nothing might ever be appended. The
/// spare now comes with the first group written, as it does after every
/// group: opening and closing such a log syncs no directory, where the
/// spare's creation and removal synced it (and the open synced it too,
/// before the clean-close pair made that needless).
#[test]
fn reopening_a_busy_log_makes_no_spare_until_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let options = || Options {
        segment_preparation: annals::SegmentPreparation::Background,
        index_image: annals::IndexImageWrites::AtClose,
        ..fs.options()
    };
    fill_past_the_middle(dir.path(), options());
    let dir_syncs = || fs.faults.dir_syncs.load(std::sync::atomic::Ordering::SeqCst);
    let before = dir_syncs();
    let log = Log::open(dir.path(), options()).unwrap();
    assert_eq!(log.read_stream("s").unwrap().entries.len(), 700);
    log.close().wait().unwrap();
    drop(log);
    assert_eq!(dir_syncs() - before, 0, "no directory sync");
    assert!(!files(dir.path()).iter().any(|(name, _)| name.starts_with("spare")));
}

/// A close soon after a session's first append waited for the spare segment
/// that append asked for (its active segment was past the middle): a
/// segment's worth of zeros and an fdatasync, about 40 ms of a 67 ms close
/// of a 100k-row log (64 MiB spares), for a file the close then removed.
/// The preparer now gives the spare up between two chunks of zeros once the
/// log closes, and removes the half-made file. Here each chunk of the 2 MiB
/// spare takes 300 ms to write: the close waits for at most the one under
/// way, not both.
#[test]
fn a_close_gives_up_the_spare_being_made_instead_of_waiting_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let options = || Options {
        segment_bytes: 8 << 20,
        segment_preparation: annals::SegmentPreparation::Background,
        ..fs.options()
    };
    fill_past_the_middle(dir.path(), options());
    let spare_writes = || fs.faults.spare_writes.load(std::sync::atomic::Ordering::SeqCst);
    let before = spare_writes();
    fs.faults.spare_write_delay_ms.store(300, std::sync::atomic::Ordering::SeqCst);
    let log = Log::open(dir.path(), options()).unwrap();
    log.append("s", Expectation::Any, &b"one more"[..]).wait().unwrap();
    log.close().wait().unwrap();
    drop(log);
    assert!(spare_writes() - before < 2, "{} chunks of the 2 MiB spare written", spare_writes() - before);
    assert!(!files(dir.path()).iter().any(|(name, _)| name.starts_with("spare")), "the half-made spare is removed");
    let log = Log::open(dir.path(), options()).unwrap();
    assert_eq!(log.read_stream("s").unwrap().entries.len(), 701);
}
