//! Adversarial tests of the issue-9 fixes (format version 2): options that
//! change between runs, damage after a clean close and after a crash, files
//! deleted, added, renamed or replaced, salvage followed by more appends and
//! crashes, repair, and full disks. Each test checks that no acknowledged
//! record vanishes silently, that no LSN is handed out twice, and that
//! inspection changes nothing. The `annals` command on odd inputs and beside
//! a writer in another process is tested in the command's crate
//! (`cli/tests/inspection.rs`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use annals::fs::RealFs;
use annals::inspect::scan_intact;
use annals::sim::fs::{CrashMode, SimFs};
use annals::sim::rng::SimRng;
use annals::{Durability, Error, Expectation, Log, LogReader, Lsn, Options, Record, RecoveryMode, SegmentPreparation};

const STATE_FILE: &str = "annals.state";

fn all_records(log: &Log) -> Vec<Record> {
    log.read_all(Lsn::ZERO, usize::MAX).unwrap()
}

fn salvage(options: Options) -> Options {
    Options { recovery_mode: RecoveryMode::Salvage, ..options }
}

/// What `annals verify` reports as corruption (its exit 1): the reader
/// opens and finds problems.
fn assert_reader_reports_corruption(dir: &Path) {
    let reader = LogReader::open(dir).unwrap_or_else(|e| panic!("the reader failed to open: {e}"));
    assert!(!reader.problems().is_empty(), "the reader found no problem");
}

/// Appends `count` records of `len` bytes over three streams; returns them.
fn append_records(log: &Log, from: u64, count: u64, len: usize) -> Vec<Record> {
    let mut out = Vec::new();
    for i in from..from + count {
        let payload = common::unique_payload(i, len);
        let appended = log.append(format!("stream-{}", i % 3), Expectation::Any, payload.clone()).wait().unwrap();
        out.push(log.read_lsn(appended.lsn).unwrap().expect("the record just appended"));
    }
    out
}

/// A multi-segment log copied as a crash would leave it (every append was
/// synced, no clean close). Returns the image and every acknowledged record.
fn crashed_multi_segment_log(count: u64) -> (tempfile::TempDir, Vec<Record>) {
    let live = tempfile::tempdir().unwrap();
    let image = tempfile::tempdir().unwrap();
    let log = common::open(live.path());
    let records = append_records(&log, 0, count, 300);
    common::crash_image(live.path(), image.path());
    drop(log);
    (image, records)
}

/// The first LSN in the name of a segment file.
fn first_lsn_of(segment: &Path) -> Lsn {
    let name = segment.file_name().unwrap().to_str().unwrap();
    Lsn(name.strip_suffix(".seg").unwrap().parse().unwrap())
}

/// Opens a log in salvage mode, appends one record and returns its LSN (the
/// log is closed again).
fn salvage_and_append(dir: &Path, options: Options) -> Result<Lsn, String> {
    let log = Log::open(dir, salvage(options)).map_err(|e| format!("salvage open failed: {e}"))?;
    let appended =
        log.append("after", Expectation::Any, &b"after salvage"[..]).wait().map_err(|e| format!("append: {e}"))?;
    log.close().wait().map_err(|e| format!("close: {e}"))?;
    Ok(appended.lsn)
}

/// Checks that every record a log returns at an acknowledged LSN is the
/// acknowledged one (no LSN was handed out again for other content).
fn assert_no_lsn_holds_other_content(log: &Log, acknowledged: &[Record], case: &str) {
    for record in all_records(log) {
        if let Some(ack) = acknowledged.iter().find(|a| a.lsn == record.lsn) {
            assert_eq!(
                (&ack.stream, &ack.payload),
                (&record.stream, &record.payload),
                "{case}: lsn {} was acknowledged for one record and now holds another",
                record.lsn
            );
        }
    }
}

// ===========================================================================
// `annals repair`: the copy must not hand out the source's acknowledged LSNs.

/// A cleanly closed log of one 64 KiB segment whose last 4 KiB (the last
/// records and the marker) are garbage. Returns every acknowledged record.
fn closed_log_with_a_damaged_tail(dir: &Path) -> Vec<Record> {
    let options = Options { segment_bytes: 64 << 10, record_bytes_max: 4096, ..Options::default() };
    let records = common::write_closed_log(dir, options, 150, 200);
    let segment = common::segment_files(dir).pop().unwrap();
    common::damage_written_tail(&segment, true);
    records
}

/// `annals repair` of a log whose tail is damaged copies the intact records
/// into a new log; that log must not hand out the LSNs of the records the
/// damage took (they were acknowledged, and the source's state file records
/// them as durable).
#[test]
fn repair_of_a_log_with_a_damaged_tail_hands_out_its_acknowledged_lsns_again() {
    let source = tempfile::tempdir().unwrap();
    let records = closed_log_with_a_damaged_tail(source.path());
    let last_acknowledged = records.last().unwrap().lsn;
    let into = tempfile::tempdir().unwrap();
    let copy = into.path().join("copy");
    annals::inspect::repair(source.path(), &copy, Options::default()).expect("repair");
    let log = Log::open(&copy, Options::default()).unwrap();
    let copied = all_records(&log);
    assert!(copied.len() < records.len(), "the damage took some records");
    assert_eq!(copied, records[..copied.len()], "repair copies exactly the intact records");
    let appended = log.append("new", Expectation::Any, &b"new"[..]).wait().unwrap();
    assert!(
        appended.lsn > last_acknowledged,
        "the repaired log handed out lsn {}, which the source had acknowledged (up to {last_acknowledged}) \
         for another record",
        appended.lsn
    );
}

/// Salvage of a damaged tail writes a gap past every acknowledged LSN; a
/// repair of the salvaged log must keep that gap.
#[test]
fn repair_of_a_salvaged_log_drops_its_trailing_gap_and_hands_out_lsns_again() {
    let source = tempfile::tempdir().unwrap();
    let records = closed_log_with_a_damaged_tail(source.path());
    let last_acknowledged = records.last().unwrap().lsn;
    let options = Options { segment_bytes: 64 << 10, record_bytes_max: 4096, ..Options::default() };
    let log = Log::open(source.path(), salvage(options.clone())).unwrap();
    assert!(log.last_lsn().unwrap() >= last_acknowledged, "salvage moves the next LSN past the acknowledged ones");
    log.close().wait().unwrap();
    drop(log);
    let into = tempfile::tempdir().unwrap();
    let copy = into.path().join("copy");
    annals::inspect::repair(source.path(), &copy, Options::default()).expect("repair");
    let log = Log::open(&copy, options).unwrap();
    let appended = log.append("new", Expectation::Any, &b"new"[..]).wait().unwrap();
    assert!(
        appended.lsn > last_acknowledged,
        "the repaired copy of a salvaged log handed out lsn {}, acknowledged (up to {last_acknowledged}) \
         for another record",
        appended.lsn
    );
}

// ===========================================================================
// Salvage: the resume point must be durable before the evidence is destroyed.

fn sim_options(fs: &SimFs) -> Options {
    Options {
        file_system: Arc::new(fs.clone()),
        segment_preparation: SegmentPreparation::Inline,
        segment_bytes: 64 << 10,
        record_bytes_max: 4096,
        ..Options::default()
    }
}

/// The durable files of `fs` in `dir`, by name.
fn sim_files(fs: &SimFs, dir: &Path) -> Vec<(String, Vec<u8>)> {
    fs.durable_files()
        .into_iter()
        .filter(|(path, _)| path.parent() == Some(dir))
        .map(|(path, bytes)| (path.file_name().unwrap().to_string_lossy().into_owned(), bytes))
        .collect()
}

/// A simulated log of one segment holding 200 synced records, crashed (no
/// clean close), with one byte of the record at LSN 100 flipped: damage
/// that later frames prove was durable (row 3). Returns the files and the
/// acknowledged records.
fn sim_log_with_damage_in_the_middle() -> (Vec<(String, Vec<u8>)>, Vec<Record>) {
    let fs = SimFs::new();
    let dir = annals::sim::sim_dir();
    let log = Log::open(dir, sim_options(&fs)).unwrap();
    let records = append_records(&log, 0, 200, 100);
    fs.crash_now();
    drop(log);
    let image = fs.crash_image(CrashMode::Drop, &mut SimRng::new(1));
    let mut files = sim_files(&image, dir);
    let victim = &records[99];
    let (name, bytes) = files.iter_mut().find(|(name, _)| name.ends_with(".seg")).unwrap();
    let at = bytes.windows(victim.payload.len()).position(|w| w == victim.payload).expect("the payload");
    bytes[at + 5] ^= 0x40;
    assert_eq!(name, "00000000000000000001.seg");
    (files, records)
}

/// Salvage zeroes the damaged frame and every frame after it (synced) before
/// it writes the gap that moves the next LSN past them. A crash in between
/// leaves a log that opens cleanly (strict) at the damaged LSN: the LSNs of
/// the zeroed, acknowledged records are handed out again.
#[test]
fn salvage_crash_before_the_gap_is_durable_hands_out_acknowledged_lsns_again() {
    let dir = annals::sim::sim_dir();
    let (files, records) = sim_log_with_damage_in_the_middle();
    let last_acknowledged = records.last().unwrap().lsn;
    // Strict open refuses the damage.
    let fs = SimFs::with_files(dir, &files);
    assert!(matches!(Log::open(dir, sim_options(&fs)), Err(Error::Corruption(_))));
    // A salvage open that completes: how many mutating operations it takes.
    let fs = SimFs::with_files(dir, &files);
    let before = fs.counts().ops;
    let log = Log::open(dir, salvage(sim_options(&fs))).unwrap();
    assert!(log.last_lsn().unwrap() >= last_acknowledged, "salvage skips past the zeroed records");
    let ops = fs.counts().ops - before;
    drop(log);
    let mut failures = Vec::new();
    for k in 1..=ops {
        for mode in [CrashMode::Drop, CrashMode::Prefix] {
            let fs = SimFs::with_files(dir, &files);
            fs.crash_after(k);
            if let Ok(log) = Log::open(dir, salvage(sim_options(&fs))) {
                drop(log);
            }
            let image = fs.crash_image(mode, &mut SimRng::new(k));
            // What a user does next: open (strict); salvage if that fails.
            let log = match Log::open(dir, sim_options(&image)) {
                Ok(log) => log,
                Err(_) => match Log::open(dir, salvage(sim_options(&image))) {
                    Ok(log) => log,
                    Err(e) => {
                        failures.push(format!("crash after op {k} ({}): salvage again failed: {e}", mode.name()));
                        continue;
                    }
                },
            };
            match log.append("new", Expectation::Any, &b"new"[..]).wait() {
                Ok(appended) if appended.lsn <= last_acknowledged => failures.push(format!(
                    "crash after op {k} of {ops} of the salvage open ({}): the next append took lsn {}, \
                     acknowledged before (up to {last_acknowledged})",
                    mode.name(),
                    appended.lsn
                )),
                Ok(_) => {}
                Err(e) => failures.push(format!("crash after op {k} ({}): append failed: {e}", mode.name())),
            }
        }
    }
    assert!(failures.is_empty(), "{} cases:\n{}", failures.len(), failures.join("\n"));
}

/// Salvage of a newest segment that a crash left zero bytes long (the
/// classic zero-length file after a power cut): its records are gone, and
/// their LSNs, acknowledged, must not be handed out again. Salvage skips
/// past a *missing* newest segment by the most LSNs one can hold; an empty
/// file is no more informative.
#[test]
fn salvage_of_a_newest_segment_truncated_to_zero_bytes_hands_out_acknowledged_lsns_again() {
    let (dir, records) = crashed_multi_segment_log(80);
    let newest = common::segment_files(dir.path()).pop().unwrap();
    let first = first_lsn_of(&newest);
    let last_acknowledged = records.last().unwrap().lsn;
    assert!(last_acknowledged > first, "the newest segment holds acknowledged records");
    std::fs::write(&newest, b"").unwrap();
    assert!(matches!(Log::open(dir.path(), common::small_options()), Err(Error::Corruption(_))));
    let lsn = salvage_and_append(dir.path(), common::small_options()).unwrap();
    assert!(lsn > last_acknowledged, "salvage handed out lsn {lsn}, acknowledged (up to {last_acknowledged}) before");
}

/// The same with the newest segment's bytes all zeros (its length kept):
/// salvage rebuilds the header from the name and finds an empty segment.
#[test]
fn salvage_of_a_zeroed_newest_segment_hands_out_acknowledged_lsns_again() {
    let (dir, records) = crashed_multi_segment_log(80);
    let newest = common::segment_files(dir.path()).pop().unwrap();
    let last_acknowledged = records.last().unwrap().lsn;
    let len = std::fs::metadata(&newest).unwrap().len() as usize;
    std::fs::write(&newest, vec![0u8; len]).unwrap();
    assert!(matches!(Log::open(dir.path(), common::small_options()), Err(Error::Corruption(_))));
    let lsn = salvage_and_append(dir.path(), common::small_options()).unwrap();
    assert!(lsn > last_acknowledged, "salvage handed out lsn {lsn}, acknowledged (up to {last_acknowledged}) before");
}

// ===========================================================================
// The state file: one slot, both, swapped, older, from another log.

fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

#[test]
fn one_damaged_state_slot_after_a_clean_close_still_catches_a_damaged_tail() {
    for slot in 0..2usize {
        let (dir, records) = common::closed_multi_segment_log();
        let mut state = std::fs::read(state_path(dir.path())).unwrap();
        state[slot * 512 + 70] ^= 0xFF;
        std::fs::write(state_path(dir.path()), &state).unwrap();
        // Undamaged segments: opens with every record.
        {
            let reader = LogReader::open(dir.path()).unwrap();
            assert!(reader.problems().is_empty(), "slot {slot}: {:?}", reader.problems());
        }
        let newest = common::segment_files(dir.path()).pop().unwrap();
        let bytes = std::fs::read(&newest).unwrap();
        let end = common::written_end(&newest);
        // Zeros over the last sector (the marker) and the one before it.
        let mut damaged = bytes.clone();
        damaged[end.saturating_sub(1024).max(64)..end].fill(0);
        std::fs::write(&newest, &damaged).unwrap();
        match Log::open(dir.path(), common::small_options()) {
            Err(Error::Corruption(_)) => {}
            Ok(log) => panic!(
                "slot {slot} damaged: the damaged tail was cut silently ({} of {} records)",
                all_records(&log).len(),
                records.len()
            ),
            Err(other) => panic!("slot {slot}: {other}"),
        }
    }
}

#[test]
fn both_state_slots_damaged_is_corruption_and_salvage_keeps_every_record() {
    let (dir, records) = common::closed_multi_segment_log();
    let mut state = std::fs::read(state_path(dir.path())).unwrap();
    state[70] ^= 1;
    state[512 + 70] ^= 1;
    std::fs::write(state_path(dir.path()), &state).unwrap();
    assert!(matches!(Log::open(dir.path(), common::small_options()), Err(Error::Corruption(_))));
    assert_reader_reports_corruption(dir.path());
    let log = Log::open(dir.path(), salvage(common::small_options())).unwrap();
    assert_eq!(all_records(&log), records);
    let appended = log.append("x", Expectation::Any, &b"x"[..]).wait().unwrap();
    assert!(appended.lsn > records.last().unwrap().lsn);
}

#[test]
fn swapped_state_slots_are_read_by_generation() {
    let (dir, records) = common::closed_multi_segment_log();
    let mut state = std::fs::read(state_path(dir.path())).unwrap();
    let (a, b) = state.split_at_mut(512);
    a.swap_with_slice(b);
    std::fs::write(state_path(dir.path()), &state).unwrap();
    let log = Log::open(dir.path(), common::small_options()).unwrap();
    assert_eq!(all_records(&log), records);
}

/// A state file restored from before the last rollovers is an older, true
/// lower bound: the log opens with every record.
#[test]
fn an_older_state_file_restored_opens_with_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let mut records = append_records(&log, 0, 20, 300);
    let old_state = std::fs::read(state_path(dir.path())).unwrap();
    records.extend(append_records(&log, 20, 60, 300));
    log.close().wait().unwrap();
    drop(log);
    std::fs::write(state_path(dir.path()), &old_state).unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    assert!(reader.problems().is_empty(), "{:?}", reader.problems());
    let log = Log::open(dir.path(), common::small_options()).unwrap();
    assert_eq!(all_records(&log), records);
    let appended = log.append("x", Expectation::Any, &b"x"[..]).wait().unwrap();
    assert_eq!(appended.lsn, Lsn(records.last().unwrap().lsn.0 + 1));
}

/// Two cleanly closed logs; the state file of the second copied over the
/// first's. Returns the first log's directory and records.
fn log_with_a_foreign_state_file() -> (tempfile::TempDir, Vec<Record>, tempfile::TempDir) {
    let (dir, records) = common::closed_multi_segment_log();
    let other = tempfile::tempdir().unwrap();
    common::write_closed_log(other.path(), common::small_options(), 10, 300);
    std::fs::copy(state_path(other.path()), state_path(dir.path())).unwrap();
    (dir, records, other)
}

#[test]
fn a_state_file_from_another_log_is_corruption() {
    let (dir, _records, _other) = log_with_a_foreign_state_file();
    assert!(matches!(Log::open(dir.path(), common::small_options()), Err(Error::Corruption(_))));
    assert_reader_reports_corruption(dir.path());
}

/// One foreign file (the state file of another log) hides every intact
/// record of the log from the scan under `dump --salvage` and from
/// `repair`: they take the log's id from the state file and call every
/// segment "another log's".
#[test]
fn dump_salvage_and_repair_with_a_foreign_state_file_lose_every_intact_record() {
    let (dir, records, _other) = log_with_a_foreign_state_file();
    let mut dumped = Vec::new();
    scan_intact(&RealFs, dir.path(), |_, _, frame| dumped.extend(frame.ops().map(|op| op.lsn))).unwrap();
    let into = tempfile::tempdir().unwrap();
    let copy = into.path().join("copy");
    annals::inspect::repair(dir.path(), &copy, Options::default()).expect("repair");
    let copied = all_records(&Log::open(&copy, common::small_options()).unwrap());
    assert_eq!(
        (dumped.len(), copied.len()),
        (records.len(), records.len()),
        "every segment is intact, only annals.state is foreign: dump --salvage printed {} and repair copied {} \
         of {} records",
        dumped.len(),
        copied.len(),
        records.len()
    );
}

/// Salvage of a log whose state file belongs to another log deletes every
/// intact segment (their id differs from the foreign state file's).
#[test]
fn salvage_with_a_state_file_from_another_log_deletes_every_intact_segment() {
    let (dir, records, _other) = log_with_a_foreign_state_file();
    let log = Log::open(dir.path(), salvage(common::small_options())).unwrap();
    let kept = all_records(&log);
    let deleted: Vec<_> = log.recovery_report().salvaged.iter().filter(|d| d.file_deleted).collect();
    let appended = log.append("x", Expectation::Any, &b"x"[..]).wait().unwrap();
    assert!(
        kept.len() == records.len() && appended.lsn > records.last().unwrap().lsn,
        "only annals.state was foreign, yet salvage kept {} of {} records (deleted {} segment files), and the \
         next append took lsn {} (acknowledged up to {})",
        kept.len(),
        records.len(),
        deleted.len(),
        appended.lsn,
        records.last().unwrap().lsn
    );
}

/// The state file deleted and the newest segment deleted too, after a crash.
#[test]
fn deleted_state_file_and_newest_segment_is_corruption() {
    let (dir, _records) = crashed_multi_segment_log(80);
    std::fs::remove_file(state_path(dir.path())).unwrap();
    std::fs::remove_file(common::segment_files(dir.path()).pop().unwrap()).unwrap();
    assert!(matches!(Log::open(dir.path(), common::small_options()), Err(Error::Corruption(_))));
}

// ===========================================================================
// Options that differ between runs, with crashes in between.

/// Runs of a simulated log with other segment sizes, record limits and
/// durabilities, each ending in a crash (or a clean close, then a crash);
/// every synced record survives every run, and no LSN changes hands.
#[test]
fn options_that_change_between_crashed_runs_keep_every_synced_record() {
    let runs: [(u64, usize, Durability, bool); 6] = [
        (64 << 10, 16 << 10, Durability::Sync, false),
        (8 << 10, 1024, Durability::Sync, false),
        (256 << 10, 100 << 10, Durability::Sync, true),
        (4096, 512, Durability::Flush, false),
        (16 << 10, 8 << 10, Durability::Sync, false),
        (1 << 20, 200 << 10, Durability::Sync, true),
    ];
    for seed in 0..4u64 {
        let dir = annals::sim::sim_dir();
        let mut fs = SimFs::new();
        let mut synced: Vec<Record> = Vec::new();
        let mut next = 0u64;
        let mut rng = SimRng::new(seed);
        for (run, &(segment_bytes, record_bytes_max, durability, close)) in runs.iter().enumerate() {
            let options = Options {
                file_system: Arc::new(fs.clone()),
                segment_preparation: SegmentPreparation::Inline,
                segment_bytes,
                record_bytes_max,
                durability,
                ..Options::default()
            };
            let case = format!("seed {seed}, run {run} ({segment_bytes} B segments, {record_bytes_max} B records)");
            let log = Log::open(dir, options).unwrap_or_else(|e| panic!("{case}: open: {e}"));
            let present = log.read_all(Lsn::ZERO, usize::MAX).unwrap_or_else(|e| panic!("{case}: read_all: {e}"));
            assert_eq!(present.get(..synced.len()), Some(&synced[..]), "{case}: a synced record is missing");
            assert_no_lsn_holds_other_content(&log, &synced, &case);
            synced = present; // everything recovered is durable now
            for _ in 0..12 {
                let len = 20 + rng.below((record_bytes_max - 100) as u64) as usize;
                let payload = common::unique_payload(next, len);
                next += 1;
                let appended = log.append(format!("s{}", next % 2), Expectation::Any, payload).wait().unwrap();
                let record = log.read_lsn(appended.lsn).unwrap().unwrap();
                if durability == Durability::Sync {
                    synced.push(record);
                }
            }
            if close {
                // Read before the close: see `reading_a_closed_log_whose_marker_padding_is_short_fails_with_corruption`.
                synced = log.read_all(Lsn::ZERO, usize::MAX).unwrap_or_else(|e| panic!("{case}: read_all: {e}"));
                log.close().wait().unwrap();
            }
            fs.crash_now();
            drop(log);
            let mode = CrashMode::ALL[rng.below(CrashMode::ALL.len() as u64) as usize];
            fs = fs.crash_image(mode, &mut rng);
        }
    }
}

// ===========================================================================
// Files added, renamed, swapped or replaced.

/// A segment of another log, named like the next segment of a cleanly
/// closed log: corruption, and salvage keeps every record of the log.
#[test]
fn a_foreign_segment_named_like_the_next_one_is_corruption_and_salvage_keeps_every_record() {
    let (dir, records) = common::closed_multi_segment_log();
    let other = tempfile::tempdir().unwrap();
    common::write_closed_log(other.path(), common::small_options(), 5, 300);
    let stray = dir.path().join(format!("{:020}.seg", records.last().unwrap().lsn.0 + 1));
    std::fs::copy(common::segment_files(other.path()).remove(0), &stray).unwrap();
    assert!(matches!(Log::open(dir.path(), common::small_options()), Err(Error::Corruption(_))));
    assert_reader_reports_corruption(dir.path());
    let log = Log::open(dir.path(), salvage(common::small_options())).unwrap();
    assert_eq!(all_records(&log), records);
    let appended = log.append("x", Expectation::Any, &b"x"[..]).wait().unwrap();
    assert!(appended.lsn > records.last().unwrap().lsn);
}

/// An old backup copy of a segment of the same log, added under the name
/// the next segment would have: its header names another first LSN.
#[test]
fn an_old_copy_of_a_segment_named_like_the_next_one_is_corruption() {
    let (dir, records) = common::closed_multi_segment_log();
    let stray = dir.path().join(format!("{:020}.seg", records.last().unwrap().lsn.0 + 1));
    std::fs::copy(common::segment_files(dir.path()).remove(0), &stray).unwrap();
    assert!(matches!(Log::open(dir.path(), common::small_options()), Err(Error::Corruption(_))));
    let reader = LogReader::open(dir.path()).unwrap();
    assert!(!reader.problems().is_empty());
}

/// The newest segment of a cleanly closed log replaced by an older copy of
/// itself (fewer records, no marker): the state file knows where it ended.
#[test]
fn an_older_copy_of_the_newest_segment_after_a_clean_close_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let mut records = append_records(&log, 0, 45, 300);
    let newest = common::segment_files(dir.path()).pop().unwrap();
    let old_copy = std::fs::read(&newest).unwrap();
    records.extend(append_records(&log, 45, 3, 300));
    assert_eq!(common::segment_files(dir.path()).pop().unwrap(), newest, "no rollover in between");
    log.close().wait().unwrap();
    drop(log);
    std::fs::write(&newest, &old_copy).unwrap();
    assert!(matches!(Log::open(dir.path(), common::small_options()), Err(Error::Corruption(_))));
    assert_reader_reports_corruption(dir.path());
    let lsn = salvage_and_append(dir.path(), common::small_options()).unwrap();
    assert!(lsn > records.last().unwrap().lsn);
}

/// Two sealed segments whose names are swapped.
#[test]
fn two_segments_with_swapped_names_are_corruption_and_salvage_reuses_no_lsn() {
    let (dir, records) = crashed_multi_segment_log(80);
    let segments = common::segment_files(dir.path());
    let (a, b) = (&segments[0], &segments[1]);
    let tmp = dir.path().join("swap");
    std::fs::rename(a, &tmp).unwrap();
    std::fs::rename(b, a).unwrap();
    std::fs::rename(&tmp, b).unwrap();
    assert!(matches!(Log::open(dir.path(), common::small_options()), Err(Error::Corruption(_))));
    assert_reader_reports_corruption(dir.path());
    let lsn = salvage_and_append(dir.path(), common::small_options()).unwrap();
    assert!(lsn > records.last().unwrap().lsn, "salvage handed out lsn {lsn} again");
}

/// The newest segment renamed to a later name (after a crash).
#[test]
fn a_renamed_newest_segment_is_corruption_and_salvage_reuses_no_lsn() {
    let (dir, records) = crashed_multi_segment_log(80);
    let newest = common::segment_files(dir.path()).pop().unwrap();
    let renamed = dir.path().join(format!("{:020}.seg", first_lsn_of(&newest).0 + 1000));
    std::fs::rename(&newest, renamed).unwrap();
    assert!(matches!(Log::open(dir.path(), common::small_options()), Err(Error::Corruption(_))));
    let lsn = salvage_and_append(dir.path(), common::small_options()).unwrap();
    assert!(lsn > records.last().unwrap().lsn, "salvage handed out lsn {lsn} again");
}

/// The newest segment deleted, and an empty file named like a later
/// segment added: the listing's newest name no longer trips row 8.
#[test]
fn salvage_of_a_deleted_newest_segment_masked_by_a_stray_later_name_hands_out_acknowledged_lsns_again() {
    let (dir, records) = crashed_multi_segment_log(80);
    let newest = common::segment_files(dir.path()).pop().unwrap();
    let stray = dir.path().join(format!("{:020}.seg", first_lsn_of(&newest).0 + 1000));
    std::fs::remove_file(&newest).unwrap();
    std::fs::write(stray, b"").unwrap();
    assert!(matches!(Log::open(dir.path(), common::small_options()), Err(Error::Corruption(_))));
    assert_reader_reports_corruption(dir.path());
    let lsn = salvage_and_append(dir.path(), common::small_options()).unwrap();
    assert!(lsn > records.last().unwrap().lsn, "salvage handed out lsn {lsn}, acknowledged before");
}

/// A whole directory restored from an older copy (state file included) is
/// an older log, which the format says it cannot detect; it must still open.
#[test]
fn a_directory_restored_from_an_older_copy_opens_as_the_older_log() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let records = append_records(&log, 0, 40, 300);
    common::crash_image(dir.path(), backup.path());
    append_records(&log, 40, 40, 300);
    log.close().wait().unwrap();
    let log = Log::open(backup.path(), common::small_options()).unwrap();
    assert_eq!(all_records(&log), records);
}

// ===========================================================================
// Salvage, then more appends, crashes and reopens.

/// Salvage of a cleanly closed log with a damaged tail, then appends, a
/// crash (a copy of the live directory), a strict reopen, more appends and
/// a clean close: every record returned at an LSN is the one acknowledged
/// there, and no LSN is taken twice.
#[test]
fn salvage_then_appends_crashes_and_reopens_reuse_no_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged = closed_log_with_a_damaged_tail(dir.path());
    let options = Options { segment_bytes: 64 << 10, record_bytes_max: 4096, ..Options::default() };
    let log = Log::open(dir.path(), salvage(options.clone())).unwrap();
    let kept = all_records(&log);
    assert_no_lsn_holds_other_content(&log, &acknowledged, "after salvage");
    let new = append_records(&log, 1000, 300, 200);
    assert!(new[0].lsn > acknowledged.last().unwrap().lsn);
    acknowledged.extend(new.iter().cloned());
    let image = tempfile::tempdir().unwrap();
    common::crash_image(dir.path(), image.path());
    drop(log);
    for round in 0..3u64 {
        let log = Log::open(image.path(), options.clone()).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_no_lsn_holds_other_content(&log, &acknowledged, &format!("round {round}"));
        let records = all_records(&log);
        assert_eq!(records[..kept.len()], kept[..], "round {round}");
        acknowledged.extend(append_records(&log, 2000 + round * 100, 100, 200));
        let next = tempfile::tempdir().unwrap();
        common::crash_image(image.path(), next.path());
        drop(log);
        // Carry on from the crash image.
        for entry in std::fs::read_dir(image.path()).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        for entry in std::fs::read_dir(next.path()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), image.path().join(entry.file_name())).unwrap();
        }
    }
    let log = Log::open(image.path(), options).unwrap();
    assert_no_lsn_holds_other_content(&log, &acknowledged, "at the end");
    let mut lsns: Vec<Lsn> = all_records(&log).iter().map(|r| r.lsn).collect();
    let len = lsns.len();
    lsns.dedup();
    assert_eq!(lsns.len(), len);
    log.close().wait().unwrap();
}

// ===========================================================================
// Reads of a closed handle.

/// A record whose frame ends less than 40 bytes before a 512-byte boundary
/// puts the clean-close marker right after a short run of zero padding. The
/// closed handle's `read_all` then reported corruption of an intact log, and
/// a reopen took the marker for a torn tail and cut it. Reads of a closed
/// handle now fail with `Closed` (a clone must not serve stale data), so the
/// padding is checked where it is still read: by a reader and by a reopen,
/// which must find the marker, not a torn tail.
#[test]
fn reading_a_closed_log_whose_marker_padding_is_short_fails_with_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_bytes: 64 << 10, record_bytes_max: 4096, ..Options::default() };
    let log = Log::open(dir.path(), options.clone()).unwrap();
    // 64 (segment header) + 40 (frame header) + 22 (op header) + 1 (stream)
    // + 373 = 500: the marker goes at 512, after 12 bytes of padding.
    log.append("s", Expectation::Any, vec![7u8; 373]).wait().unwrap();
    let before = all_records(&log);
    log.close().wait().unwrap();
    assert!(matches!(log.read_all(Lsn::ZERO, usize::MAX), Err(Error::Closed)));
    drop(log);
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.report().torn_tail, None, "the marker after short padding is no torn tail");
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), before);
    let reopened = Log::open(dir.path(), options).unwrap();
    assert_eq!(reopened.recovery_report().torn_tail, None);
    assert_eq!(all_records(&reopened), before);
}

// ===========================================================================
// A full disk on a real tmpfs, during creation and close.

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let status = std::process::Command::new("umount").arg(&self.0).status();
        if !status.is_ok_and(|s| s.success()) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Mounts a tmpfs of `size`; `None` (the test skips itself) where it cannot.
fn mount_tmpfs(mount: &Path, size: &str) -> Option<Unmount> {
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(mount)
        .output()
        .ok()?;
    if !out.status.success() {
        println!("skipped: cannot mount a tmpfs: {}", String::from_utf8_lossy(&out.stderr).trim());
        return None;
    }
    Some(Unmount(mount.to_owned()))
}

/// A 2 MiB tmpfs too full for a first segment: creation fails with
/// `DiskFull` and leaves no file that keeps the disk full; once space is
/// freed the log is created, filled until full, closed and reopened with
/// every acknowledged record.
#[test]
fn a_full_tmpfs_during_creation_and_close_loses_nothing_and_leaves_no_spare() {
    let mount = tempfile::tempdir().unwrap();
    let Some(_unmount) = mount_tmpfs(mount.path(), "2M") else { return };
    let filler = mount.path().join("filler");
    std::fs::write(&filler, vec![0xA5u8; 1800 << 10]).unwrap();
    let dir = mount.path().join("log");
    let options = Options {
        segment_bytes: 512 << 10,
        record_bytes_max: 4096,
        segment_preparation: SegmentPreparation::Background,
        ..Options::default()
    };
    match Log::open(&dir, options.clone()) {
        Err(Error::DiskFull { .. }) => {}
        Err(other) => panic!("creation on a full disk failed with {other:?}, not DiskFull"),
        Ok(_) => panic!("a 512 KiB segment fit in less than 248 KiB"),
    }
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.starts_with("spare-") || n.ends_with(".tmp")), "left behind: {names:?}");
    // Inspection of what the failed creation left reports no corruption.
    if let Ok(reader) = LogReader::open(&dir) {
        assert!(reader.problems().is_empty(), "{:?}", reader.problems());
    }
    // Room for one segment and a spare that does not fit.
    std::fs::write(&filler, vec![0xA5u8; 1000 << 10]).unwrap();
    let log = Log::open(&dir, options.clone()).expect("creation once space is freed");
    let mut acked: Vec<(Lsn, Vec<u8>)> = Vec::new();
    let mut i = 0u64;
    let failure = loop {
        let payload = common::unique_payload(i, 1000);
        i += 1;
        match log.append("s", Expectation::Any, payload.clone()).wait() {
            Ok(appended) => acked.push((appended.lsn, payload)),
            Err(error) => break error,
        }
        assert!(i < 10_000, "the tmpfs never filled up");
    };
    assert!(matches!(failure, Error::DiskFull { .. }), "{failure:?}");
    // The close on the full disk writes a marker and the state file in place.
    log.close().wait().expect("a clean close needs no new space");
    drop(log);
    let reader = LogReader::open(&dir).unwrap();
    assert!(reader.problems().is_empty(), "{:?}", reader.problems());
    let log = Log::open(&dir, options).expect("reopen on the full disk");
    let got: Vec<(Lsn, Vec<u8>)> = all_records(&log).into_iter().map(|r| (r.lsn, r.payload.to_vec())).collect();
    assert_eq!(got, acked);
    log.close().wait().unwrap();
}
