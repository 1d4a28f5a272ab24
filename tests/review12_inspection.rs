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
