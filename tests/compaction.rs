//! Compaction (issue 11, point 2): sealed segments are rewritten with only
//! their live records, keeping their LSNs, and the disk the dead ones took
//! is given back; nothing live is lost and nothing dead comes back.

mod common;

use std::path::Path;

use annals::{CompactionOptions, Error, Expectation, Log, LogReader, Lsn, Options, PruneSnapshots, Record, StreamSeq};

/// Small segments, and compaction only when a test asks for it.
fn options() -> Options {
    Options {
        segment_bytes: 8192,
        record_bytes_max: 2048,
        compaction: CompactionOptions { background: false, ..CompactionOptions::default() },
        // Opens scan every frame, so that damage a test does is found at
        // open (tests/index_image.rs tests the image over compacted segments).
        index_image: annals::IndexImageWrites::Off,
        ..Options::default()
    }
}

fn open(dir: &Path) -> Log {
    Log::open(dir, options()).unwrap()
}

fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// Everything a reader can see: every live record by LSN, and each
/// stream's read, start and next sequence.
#[derive(Debug, PartialEq)]
struct View {
    all: Vec<Record>,
    streams: Vec<(String, Vec<Record>, Option<Record>, u64)>,
}

fn view(log: &Log) -> View {
    let all = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    let streams = log
        .streams("")
        .unwrap()
        .into_iter()
        .map(|(id, next)| {
            let name = String::from_utf8(id.to_vec()).unwrap();
            let read = log.read_stream(&name).unwrap();
            (name, read.entries, read.snapshot, next.0)
        })
        .collect();
    View { all, streams }
}

/// 40 workflows, each appending steps and folding them into a snapshot
/// every 5 steps; two streams deleted, one pruned by hand, one untouched.
fn churn(log: &Log, rounds: u64) {
    for round in 0..rounds {
        for wf in 0..40u64 {
            let stream = format!("wf-{wf}");
            let appended = log.append(&stream, Expectation::Any, vec![round as u8; 100]).wait().unwrap();
            if appended.seq.0 % 5 == 4 {
                log.snapshot_and_prune(&stream, appended.seq, format!("state {round}").into_bytes()).wait().unwrap();
            }
        }
        log.append("kept", Expectation::Any, vec![7u8; 50]).wait().unwrap();
    }
    log.delete_stream("wf-0").wait().unwrap();
    log.delete_stream("wf-1").wait().unwrap();
    log.prune("wf-2", StreamSeq(log.next_seq("wf-2").unwrap().0 - 1), PruneSnapshots::Before(Lsn::ZERO))
        .wait()
        .unwrap();
}

#[test]
fn compaction_gives_back_the_disk_of_dead_records_and_keeps_every_live_one_with_its_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    churn(&log, 30);
    let before = view(&log);
    let bytes_before = disk_bytes(dir.path());
    let report = log.compact().unwrap();
    assert!(report.inputs > 0 && report.generation == 1, "{report:?}");
    assert!(report.reclaimed_bytes > 0, "{report:?}");
    assert_eq!(view(&log), before, "reads are the same after compaction");
    let bytes_after = disk_bytes(dir.path());
    assert!(bytes_after * 2 < bytes_before, "disk {bytes_before} -> {bytes_after}");
    // Appends go on, and a second compaction takes the first one's output in.
    churn(&log, 10);
    let before = view(&log);
    assert_eq!(log.compact().unwrap().generation, 2);
    assert_eq!(view(&log), before);
    log.close().wait().unwrap();
    let log = open(dir.path());
    assert_eq!(view(&log), before, "and after a reopen");
    assert_eq!(log.recovery_report().superseded_removed, 0, "compaction removed its inputs itself");
    let reader = LogReader::open(dir.path()).unwrap();
    assert!(reader.problems().is_empty(), "{:?}", reader.problems());
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), before.all);
}

#[test]
fn a_record_read_before_compaction_keeps_its_bytes_after_its_file_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    churn(&log, 20);
    let held = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    let copies: Vec<Vec<u8>> = held.iter().map(|r| r.payload.to_vec()).collect();
    log.compact().unwrap();
    churn(&log, 5);
    log.compact().unwrap();
    assert_eq!(held.iter().map(|r| r.payload.to_vec()).collect::<Vec<_>>(), copies);
}

#[test]
fn a_flipped_bit_in_a_compaction_input_fails_it_and_leaves_the_log_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    churn(&log, 20);
    let before = view(&log);
    let files_before = names(dir.path());
    let sealed = common::segment_files(dir.path()).remove(0);
    let frames = common::frame_offsets(&sealed);
    common::flip_bit(&sealed, frames[1] + 100, 2);
    let failed = log.compact();
    assert!(matches!(&failed, Err(Error::Corruption(c)) if c.file == sealed), "{failed:?}");
    assert_eq!(names(dir.path()), files_before, "no output is left behind");
    log.append("after", Expectation::Any, &b"still open"[..]).wait().unwrap();
    // The damage is reported where it is, never returned as data.
    assert!(matches!(log.read_all(Lsn::ZERO, usize::MAX), Err(Error::Corruption(c)) if c.file == sealed));
    // With the bit restored, the same compaction goes through.
    common::flip_bit(&sealed, frames[1] + 100, 2);
    log.compact().unwrap();
    let after = view(&log);
    assert_eq!(after.all[..before.all.len()], before.all[..]);
}

#[test]
fn a_cursor_below_what_compaction_reclaimed_is_told_it_was_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for i in 0..200u64 {
        log.append("old", Expectation::Any, vec![1u8; 100]).wait().unwrap();
        let _ = i;
    }
    log.delete_stream("old").wait().unwrap();
    for _ in 0..100 {
        log.append("new", Expectation::Any, vec![2u8; 100]).wait().unwrap();
    }
    log.compact().unwrap();
    let first_live = log.read_all(Lsn::ZERO, 1).unwrap()[0].lsn;
    assert!(first_live > Lsn(200));
    match log.read_all(Lsn(5), 10) {
        Err(Error::Trimmed { after: Lsn(5), oldest }) => assert!(oldest > Lsn(6) && oldest <= first_live),
        other => panic!("a cursor at lsn 5 after compaction: {other:?}"),
    }
    assert!(matches!(log.read_lsn(Lsn(3)), Err(Error::Trimmed { .. })));
}

#[test]
fn files_a_compaction_left_behind_are_removed_by_the_next_open_and_ignored_by_readers() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    churn(&log, 20);
    let inputs: Vec<(String, Vec<u8>)> = common::segment_files(dir.path())
        .iter()
        .take(2)
        .map(|p| (p.file_name().unwrap().to_str().unwrap().to_owned(), std::fs::read(p).unwrap()))
        .collect();
    log.compact().unwrap();
    let before = view(&log);
    log.close().wait().unwrap();
    let clean = names(dir.path());
    // A crash after the commit and before the unlinks leaves the inputs; a
    // crash before the rename leaves a half-written output.
    for (name, bytes) in &inputs {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    std::fs::write(dir.path().join("00000000000000000001-0000000009.seg.compacting"), [1u8; 100]).unwrap();
    std::fs::write(dir.path().join("00000000000000000001-0000000009.seg"), [2u8; 4096]).unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    assert!(reader.problems().is_empty(), "{:?}", reader.problems());
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), before.all);
    let log = open(dir.path());
    assert_eq!(log.recovery_report().superseded_removed, inputs.len() + 2);
    assert_eq!(view(&log), before);
    drop(log);
    assert_eq!(names(dir.path()), clean);
}

#[test]
fn repair_of_a_compacted_log_reads_like_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    churn(&log, 20);
    log.compact().unwrap();
    let before = view(&log);
    log.close().wait().unwrap();
    let into = tempfile::tempdir().unwrap();
    let copy = into.path().join("copy");
    let report = annals::inspect::repair(dir.path(), &copy, options()).unwrap();
    assert!(report.records_dropped.is_empty(), "{report:?}");
    let repaired = open(&copy);
    assert_eq!(view(&repaired), before);
}

/// Waits for `done`, polling: background work. No deadline: how long the
/// compactor takes is a bench's question; a compactor that never acts
/// hangs the test, which the test run's own limit reports.
fn eventually(mut done: impl FnMut() -> bool) {
    while !done() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn the_background_compactor_gives_back_dead_space_on_its_own_and_reads_stay_the_same() {
    let quiet = tempfile::tempdir().unwrap();
    let log = open(quiet.path());
    churn(&log, 30);
    log.close().wait().unwrap();
    let without = disk_bytes(quiet.path());

    let dir = tempfile::tempdir().unwrap();
    let background = CompactionOptions { background: true, interval_ms: 20, ..CompactionOptions::default() };
    let log = Log::open(dir.path(), Options { compaction: background, ..options() }).unwrap();
    churn(&log, 30);
    let before = view(&log);
    eventually(|| {
        names(dir.path()).iter().any(|name| name.contains('-') && name.ends_with(".seg"))
            && disk_bytes(dir.path()) * 2 < without
    });
    assert_eq!(view(&log), before);
    log.close().wait().unwrap();
    assert_eq!(view(&open(dir.path())), before);
}

#[test]
fn max_bytes_drops_the_oldest_segments_live_records_and_all_and_says_where_the_log_starts() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { max_bytes: Some(64 << 10), ..options() };
    let log = Log::open(dir.path(), options.clone()).unwrap();
    for i in 0..600u64 {
        log.append(format!("s{}", i % 3), Expectation::Any, vec![i as u8; 300]).wait().unwrap();
    }
    let report = log.compact().unwrap();
    assert!(report.trimmed_before > Lsn(1), "{report:?}");
    assert!(disk_bytes(dir.path()) <= (64 << 10) + 16384, "disk {}", disk_bytes(dir.path()));
    // Every stream now starts after the trim, and says so.
    let oldest = report.trimmed_before;
    for stream in ["s0", "s1", "s2"] {
        let entries = log.read_stream(stream).unwrap().entries;
        assert!(entries.iter().all(|r| r.lsn >= oldest));
        let start = entries[0].seq;
        assert!(matches!(log.read_stream_from(stream, StreamSeq(start.0 - 1)), Err(Error::Pruned { .. })));
        assert_eq!(log.next_seq(stream).unwrap(), StreamSeq(200));
    }
    assert!(matches!(log.read_all(Lsn(1), 10), Err(Error::Trimmed { .. })));
    let live = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    log.close().wait().unwrap();
    let log = Log::open(dir.path(), options).unwrap();
    assert_eq!(log.read_all(Lsn::ZERO, usize::MAX).unwrap(), live, "the same after reopen");
    assert_eq!(log.append("s0", Expectation::Exact(StreamSeq(200)), &b"next"[..]).wait().unwrap().seq, StreamSeq(200));
}

/// On the simulated disk's clock, which moves only when the test moves it:
/// on the wall clock, a loaded machine that stalled the test for 200 ms
/// between the new appends and the compaction made the new records old
/// too, and retention dropped them (a legal outcome the test took for a
/// failure).
#[test]
fn max_age_drops_segments_whose_every_record_is_older() {
    let fs = annals::sim::fs::SimFs::new();
    let options = || Options {
        file_system: std::sync::Arc::new(fs.clone()),
        segment_preparation: annals::SegmentPreparation::Inline,
        ..options()
    };
    let dir = annals::sim::sim_dir();
    let log = Log::open(dir, options()).unwrap();
    for i in 0..200u64 {
        log.append("old", Expectation::Any, vec![i as u8; 300]).wait().unwrap();
    }
    drop(log);
    fs.move_clock(300);
    let log = Log::open(dir, Options { max_age_ms: Some(200), ..options() }).unwrap();
    for i in 0..5u64 {
        log.append("new", Expectation::Any, vec![i as u8; 300]).wait().unwrap();
    }
    let report = log.compact().unwrap();
    assert!(report.trimmed_before > Lsn(150), "{report:?}");
    assert_eq!(log.read_stream("new").unwrap().entries.len(), 5);
    let old = log.read_stream("old").unwrap().entries;
    assert!(old.len() < 50, "{} old entries left", old.len());
}

/// Damage after a clean close inside a compacted segment is corruption in
/// every mode (row 17): a strict open refuses it, salvage refuses it too
/// (it cannot cut a compacted segment), a reader reports it, and repair
/// copies every intact record around it. A deleted compacted segment is
/// corruption too.
#[test]
fn damage_to_a_compacted_segment_after_a_clean_close_is_refused_and_repair_copies_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    churn(&log, 30);
    log.compact().unwrap();
    let before = view(&log);
    log.close().wait().unwrap();
    let compacted: Vec<std::path::PathBuf> = names(dir.path())
        .iter()
        .filter(|name| name.contains('-') && name.ends_with(".seg"))
        .map(|name| dir.path().join(name))
        .collect();
    assert!(!compacted.is_empty());

    let damaged = tempfile::tempdir().unwrap();
    common::crash_image(dir.path(), damaged.path());
    // A live record's payload inside the compacted segment.
    let (file, end) = before
        .all
        .iter()
        .filter_map(|r| common::payload_end(damaged.path(), &r.payload))
        .find(|(file, _)| file.file_name() == compacted[0].file_name())
        .expect("a live record in the compacted segment");
    common::flip_bit(&file, end - 1, 3);
    assert!(matches!(Log::open(damaged.path(), options()), Err(Error::Corruption(c)) if c.file == file));
    let salvage = Options { recovery_mode: annals::RecoveryMode::Salvage, ..options() };
    assert!(matches!(Log::open(damaged.path(), salvage), Err(Error::Corruption(_))));
    assert!(!LogReader::open(damaged.path()).unwrap().problems().is_empty());
    let copy = tempfile::tempdir().unwrap().keep().join("copy");
    let report = annals::inspect::repair(damaged.path(), &copy, options()).unwrap();
    assert!(!report.scan.damage.is_empty());
    let repaired = view(&open(&copy));
    // Only records as they were written, with their LSNs, and not the damaged one.
    assert!(repaired.all.len() < before.all.len(), "{} of {}", repaired.all.len(), before.all.len());
    assert!(repaired.all.iter().all(|r| before.all.contains(r)));
    assert!(!repaired.all.is_empty());

    let deleted = tempfile::tempdir().unwrap();
    common::crash_image(dir.path(), deleted.path());
    std::fs::remove_file(deleted.path().join(compacted[0].file_name().unwrap())).unwrap();
    assert!(matches!(Log::open(deleted.path(), options()), Err(Error::Corruption(_))));
}

#[test]
fn absurd_compaction_and_retention_options_are_refused_before_anything_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        Options { compaction: CompactionOptions { dead_ratio: 0.0, ..CompactionOptions::default() }, ..options() },
        Options { compaction: CompactionOptions { dead_ratio: 1.5, ..CompactionOptions::default() }, ..options() },
        Options { compaction: CompactionOptions { dead_ratio: f64::NAN, ..CompactionOptions::default() }, ..options() },
        Options { compaction: CompactionOptions { interval_ms: 0, ..CompactionOptions::default() }, ..options() },
        Options { max_bytes: Some(0), ..options() },
        Options { max_age_ms: Some(0), ..options() },
    ];
    for options in bad {
        let what = format!("{options:?}");
        assert!(matches!(Log::open(dir.path(), options), Err(Error::InvalidArgument(_))), "{what}");
    }
    assert!(names(dir.path()).is_empty(), "nothing was created");
}

/// On demand, a compaction with nothing dead to drop and nothing to trim
/// would copy every sealed byte to give back none: it does nothing.
#[test]
fn compact_on_demand_with_nothing_dead_rewrites_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for round in 0..400u64 {
        log.append(format!("wf-{}", round % 7), Expectation::Any, vec![round as u8; 100]).wait().unwrap();
    }
    let files = names(dir.path());
    assert!(files.len() > 3, "several sealed segments: {files:?}");
    let report = log.compact().unwrap();
    assert_eq!(report.generation, 0, "nothing was compacted: {report:?}");
    assert_eq!(names(dir.path()), files, "no file was written or removed");
    // One dead record is enough to make it worth doing when asked.
    log.prune("wf-3", StreamSeq(0), PruneSnapshots::Before(Lsn::ZERO)).wait().unwrap();
    for round in 0..100u64 {
        log.append("after", Expectation::Any, vec![round as u8; 100]).wait().unwrap();
    }
    let before = view(&log);
    let report = log.compact().unwrap();
    assert_eq!(report.generation, 1, "{report:?}");
    assert!(report.operations_dropped >= 1, "the pruned entry at least: {report:?}");
    assert_eq!(view(&log), before);
}
