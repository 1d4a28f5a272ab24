//! Review 12: read-only inspection (`LogReader`, `annals verify`, `stats`)
//! beside a live writer that compacts and rolls over.
//!
//! Each test is named after what it attacks; one that found a bug failed
//! before the fix.

mod common;

use std::sync::Arc;

use annals::{Log, LogReader, Lsn, Options};

/// A live log over many sealed segments, mostly dead: worth compacting.
fn live_log_worth_compacting(dir: &std::path::Path, compactions_before: usize) -> Arc<Log> {
    let log = Arc::new(Log::open(dir, common::small_options()).unwrap());
    for round in 0..=compactions_before {
        common::fill_worth_compacting(&log, 6, &format!("r{round}"));
        if round < compactions_before {
            log.compact().unwrap();
        }
    }
    log
}

/// A read-only open reads the state file, then lists the directory. A
/// compaction that commits in between (beside a live writer, at any time)
/// leaves a listing whose files are of a newer generation than the state
/// read: that is not a missing segment, and the reader must not report it
/// as corruption (`annals verify` would call a clean log corrupt).
fn reader_open_with_compaction_between_state_and_listing(compactions_before: usize) {
    let dir = tempfile::tempdir().unwrap();
    let log = live_log_worth_compacting(dir.path(), compactions_before);
    let fs = common::FaultyFs::default();
    let hook_log = log.clone();
    *fs.faults.on_next_list.0.lock().unwrap() = Some(Box::new(move || {
        let report = hook_log.compact().unwrap();
        assert!(report.generation > 0 && report.inputs > 0, "{report:?}");
    }));
    let options = Options { file_system: Arc::new(fs.clone()), ..common::small_options() };
    let reader = LogReader::open_scanning(dir.path(), &options).unwrap();
    assert!(fs.faults.on_next_list.0.lock().unwrap().is_none(), "the hook ran");
    assert!(reader.problems().is_empty(), "false corruption: {:?}", reader.problems());
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), log.read_all(Lsn::ZERO, usize::MAX).unwrap());
}

#[test]
fn reader_open_with_a_first_compaction_between_state_and_listing_reports_no_corruption() {
    reader_open_with_compaction_between_state_and_listing(0);
}

#[test]
fn reader_open_with_a_later_compaction_between_state_and_listing_reports_no_corruption() {
    reader_open_with_compaction_between_state_and_listing(2);
}

/// The intact scan (`annals repair`, `dump --salvage`, and `verify` of a
/// damaged log) reads the state file, then lists the directory, as an open
/// does: a compaction committing in between must not read as a segment
/// missing from the chain.
#[test]
fn intact_scan_with_a_compaction_between_state_and_listing_reports_no_damage() {
    for compactions_before in [0, 2] {
        let dir = tempfile::tempdir().unwrap();
        let log = live_log_worth_compacting(dir.path(), compactions_before);
        let fs = common::FaultyFs::default();
        let hook_log = log.clone();
        *fs.faults.on_next_list.0.lock().unwrap() = Some(Box::new(move || {
            let report = hook_log.compact().unwrap();
            assert!(report.generation > 0 && report.inputs > 0, "{report:?}");
        }));
        let mut lsns = Vec::new();
        let scan = annals::inspect::scan_intact(&fs, dir.path(), |_, _, frame| {
            lsns.extend(frame.ops().map(|op| op.lsn));
        })
        .unwrap();
        assert!(fs.faults.on_next_list.0.lock().unwrap().is_none(), "the hook ran");
        assert!(scan.damage.is_empty(), "{compactions_before} compactions before: false damage: {:?}", scan.damage);
        let live: Vec<Lsn> = log.read_all(Lsn::ZERO, usize::MAX).unwrap().iter().map(|record| record.lsn).collect();
        assert!(
            live.iter().all(|lsn| lsns.contains(lsn)),
            "{compactions_before} compactions before: a live record unread"
        );
    }
}

/// The intact scan beside a live writer: a segment file it listed and
/// that a compaction or retention removed before the scan opened it. The
/// scan failed with an I/O error (`annals dump --salvage`, `repair`, and
/// `verify` of a damaged log, beside a live writer); it now lists again,
/// as a read-only open does, before it visits any frame.
#[test]
fn intact_scan_lists_again_when_a_listed_segment_is_gone_before_it_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let log = live_log_worth_compacting(dir.path(), 1);
    let fs = common::FaultyFs::default();
    for skipped_opens in 0..3 {
        fs.faults.vanish_next_segment_open.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut visited = Vec::new();
        let scan = annals::inspect::scan_intact(&fs, dir.path(), |_, _, frame| {
            visited.extend(frame.ops().map(|op| op.lsn));
        })
        .unwrap_or_else(|error| panic!("round {skipped_opens}: {error}"));
        assert!(!fs.faults.vanish_next_segment_open.load(std::sync::atomic::Ordering::SeqCst), "a file vanished");
        assert!(scan.damage.is_empty(), "{:?}", scan.damage);
        let mut sorted = visited.clone();
        sorted.dedup();
        assert_eq!(sorted, visited, "a frame was visited twice");
        let live: Vec<Lsn> = log.read_all(Lsn::ZERO, usize::MAX).unwrap().iter().map(|record| record.lsn).collect();
        assert!(live.iter().all(|lsn| visited.contains(lsn)), "a live record unread");
        log.compact().unwrap();
    }
}

/// The intact scan beside a live writer: the group being written can show
/// a damaged frame ahead of a complete later one, which the next look finds
/// whole. The scan reported such a frame as damage (a stress run of
/// `dump --salvage`'s scan beside a writer found "zeroed frame header" in
/// the newest segment); it now looks again while a writer holds the log,
/// as a read-only open does, and reports only damage that stays.
#[test]
fn intact_scan_beside_a_writer_does_not_report_a_frame_still_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), common::small_options()).unwrap();
    for i in 0..5u64 {
        log.append("s", annals::Expectation::Any, common::unique_payload(i, 100)).wait().unwrap();
    }
    let newest = common::segment_files(dir.path()).pop().unwrap();
    let last = *common::frame_offsets(&newest).last().unwrap();
    let frame_header = std::fs::read(&newest).unwrap()[last..last + annals::frame::FRAME_HEADER_BYTES].to_vec();
    let write_at = |bytes: &[u8]| {
        use std::os::unix::fs::FileExt;
        std::fs::OpenOptions::new().write(true).open(&newest).unwrap().write_all_at(bytes, last as u64).unwrap();
    };
    log.append("s", annals::Expectation::Any, common::unique_payload(5, 100)).wait().unwrap();
    // A frame before the last one, as a reader beside the writer may see it
    // while the group is written: its header not there yet. It appears
    // shortly after.
    write_at(&vec![0u8; frame_header.len()]);
    let written_later = {
        let (newest, frame_header) = (newest.clone(), frame_header.clone());
        std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            std::thread::sleep(std::time::Duration::from_millis(20));
            let file = std::fs::OpenOptions::new().write(true).open(&newest).unwrap();
            file.write_all_at(&frame_header, last as u64).unwrap();
        })
    };
    let scan = annals::inspect::scan_intact(&annals::fs::RealFs, dir.path(), |_, _, _| {}).unwrap();
    written_later.join().unwrap();
    assert!(scan.damage.is_empty(), "{:?}", scan.damage);
    assert_eq!(scan.records, 6);
    // Damage that stays is reported, writer or not.
    write_at(&vec![0u8; frame_header.len()]);
    let scan = annals::inspect::scan_intact(&annals::fs::RealFs, dir.path(), |_, _, _| {}).unwrap();
    assert_eq!(scan.damage.len(), 1, "{:?}", scan.damage);
    drop(log);
}
