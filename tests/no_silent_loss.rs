//! Issue 9: acknowledged records never vanish while every tool says
//! "clean". A smaller `record_bytes_max` on reopen, damage at the tail of a
//! cleanly closed log, a deleted newest segment or state file, and a full
//! disk each either keep every acknowledged record or fail loudly; salvage
//! keeps what is intact and never hands out an acknowledged LSN again.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use annals::fs::FileSystem;
use annals::sim::fs::{CrashMode, FaultKind, SimFs};
use annals::sim::rng::SimRng;
use annals::{Error, Expectation, Log, LogReader, Lsn, Options, Record, RecoveryMode, SegmentPreparation};

const STATE_FILE: &str = "annals.state";

fn all_records(log: &Log) -> Vec<Record> {
    log.read_all(Lsn::ZERO, usize::MAX).unwrap()
}

fn salvage(options: Options) -> Options {
    Options { recovery_mode: RecoveryMode::Salvage, ..options }
}

/// Opens `dir` in strict mode and expects a typed corruption.
fn assert_open_is_corruption(dir: &Path, options: Options, case: &str) {
    match Log::open(dir, options) {
        Err(Error::Corruption(_)) => {}
        Err(other) => panic!("{case}: expected corruption, open failed with {other}"),
        Ok(log) => panic!("{case}: expected corruption, the log opened with {} records", all_records(&log).len()),
    }
}

/// `LogReader` opens and reports problems (so `annals verify` exits 1 saying "corrupt").
fn assert_inspection_reports_corruption(dir: &Path, case: &str) {
    let reader = LogReader::open(dir).unwrap_or_else(|e| panic!("{case}: the reader failed to open: {e}"));
    assert!(!reader.problems().is_empty(), "{case}: the reader found no problem");
}

/// Salvage opens, keeps exactly `intact`, and the next append takes an LSN
/// above every acknowledged one; the salvaged log then reopens strictly.
fn assert_salvage_keeps(dir: &Path, options: Options, intact: &[Record], last_acknowledged: Lsn, case: &str) {
    let log = Log::open(dir, salvage(options.clone())).unwrap_or_else(|e| panic!("{case}: salvage failed: {e}"));
    assert_eq!(all_records(&log), intact, "{case}: salvage kept other records than the intact ones");
    let appended = log.append("after-salvage", Expectation::Any, &b"new"[..]).wait().unwrap();
    assert!(
        appended.lsn > last_acknowledged,
        "{case}: the next append took lsn {}, acknowledged before up to {last_acknowledged}",
        appended.lsn
    );
    log.close().wait().unwrap();
    let reopened = Log::open(dir, options).unwrap_or_else(|e| panic!("{case}: the salvaged log does not reopen: {e}"));
    assert_eq!(reopened.last_lsn().unwrap(), appended.lsn, "{case}");
    assert_eq!(reopened.read_lsn(appended.lsn).unwrap().expect("the new record").payload, &b"new"[..], "{case}");
}

fn newest_segment(dir: &Path) -> PathBuf {
    common::segment_files(dir).pop().expect("a segment")
}

fn first_lsn_of(segment: &Path) -> Lsn {
    let name = segment.file_name().unwrap().to_str().unwrap();
    Lsn(name.strip_suffix(".seg").unwrap().parse().unwrap())
}

// ---------------------------------------------------------------------------
// 1. A smaller record_bytes_max on reopen.

fn big_limit() -> Options {
    Options { segment_bytes: 4 << 20, record_bytes_max: 256 << 10, ..Options::default() }
}

fn small_limit() -> Options {
    Options { record_bytes_max: 64 << 10, ..big_limit() }
}

/// Appends records of 100 KiB (over 64 KiB) and small ones: between each
/// other, or (`large_last`) small ones first and the large ones after them,
/// where no later small frame vouches for the large ones.
fn append_large_and_small(log: &Log, large_last: bool) {
    for i in 0..24u64 {
        let large = if large_last { i >= 12 } else { i % 2 == 0 };
        let len = if large { 100 << 10 } else { 100 };
        log.append(format!("s{}", i % 3), Expectation::Any, common::unique_payload(i, len)).wait().unwrap();
    }
}

/// Checks a log reopened with the small limit: every record, nothing cut,
/// and the limit applies to new appends only.
fn check_reopened_with_the_small_limit(dir: &Path, expected: &[Record], case: &str) {
    let log = Log::open(dir, small_limit()).unwrap_or_else(|e| panic!("{case}: open with the smaller limit: {e}"));
    assert_eq!(log.recovery_report().torn_tail, None, "{case}: a torn tail was cut");
    assert!(log.recovery_report().salvaged.is_empty(), "{case}");
    assert_eq!(all_records(&log), expected, "{case}: records lost");
    let last = log.last_lsn().unwrap();
    let too_big = log.append("s0", Expectation::Any, vec![5u8; 100 << 10]).wait();
    assert!(matches!(too_big, Err(Error::TooLarge { .. })), "{case}: {too_big:?}");
    assert_eq!(log.last_lsn().unwrap(), last, "{case}: the rejected record was written");
    let fits = log.append("s0", Expectation::Any, &b"fits"[..]).wait().unwrap();
    assert_eq!(fits.lsn, Lsn(last.0 + 1), "{case}");
    log.close().wait().unwrap();
    let again = Log::open(dir, big_limit()).unwrap();
    let records = all_records(&again);
    assert_eq!(&records[..expected.len()], expected, "{case}");
    assert_eq!(records.len(), expected.len() + 1, "{case}: only the record that fit was added");
}

/// Issue 9, case 1: records over 64 KiB, a crash, and a reopen with
/// `record_bytes_max` of 64 KiB reported a torn tail at the first large
/// record and cut every acknowledged record from there on.
#[test]
fn smaller_record_bytes_max_on_reopen_after_a_crash_keeps_every_record() {
    for large_last in [false, true] {
        let (live, image) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let log = Log::open(live.path(), big_limit()).unwrap();
        append_large_and_small(&log, large_last);
        let expected = all_records(&log);
        common::crash_image(live.path(), image.path()); // no clean close
        drop(log);
        let case = if large_last { "after a crash, large records last" } else { "after a crash, mixed records" };
        check_reopened_with_the_small_limit(image.path(), &expected, case);
    }
}

/// Issue 9, case 1: after a clean close, the same mismatch of limits was
/// reported as corruption although nothing was damaged.
#[test]
fn smaller_record_bytes_max_on_reopen_after_a_clean_close_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), big_limit()).unwrap();
    append_large_and_small(&log, false);
    let expected = all_records(&log);
    log.close().wait().unwrap();
    check_reopened_with_the_small_limit(dir.path(), &expected, "after a clean close");
}

/// Issue 9, case 1, for readers: `LogReader::open_with` bounded frames by
/// the option's limit and reported the large records as damage.
#[test]
fn smaller_record_bytes_max_in_log_reader_open_with_reads_every_record() {
    let (live, image) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = Log::open(live.path(), big_limit()).unwrap();
    append_large_and_small(&log, true);
    let expected = all_records(&log);
    common::crash_image(live.path(), image.path());
    log.close().wait().unwrap();
    for (dir, case) in [(image.path(), "after a crash"), (live.path(), "after a clean close")] {
        let reader = LogReader::open_with(dir, &small_limit()).unwrap();
        assert!(reader.problems().is_empty(), "{case}: {:?}", reader.problems());
        assert_eq!(reader.report().torn_tail, None, "{case}");
        assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), expected, "{case}");
    }
}

// ---------------------------------------------------------------------------
// 2. Damage at the tail of a cleanly closed log.

fn tail_options() -> Options {
    Options { segment_bytes: 64 << 10, record_bytes_max: 4096, ..Options::default() }
}

/// A cleanly closed log whose newest segment's last 4 KiB of written data
/// are overwritten; returns every record and the intact ones.
fn closed_log_with_damaged_tail(dir: &Path, garbage: bool) -> (Vec<Record>, Vec<Record>) {
    let records = common::write_closed_log(dir, tail_options(), 250, 300);
    let newest = newest_segment(dir);
    let start = common::damage_written_tail(&newest, garbage);
    let intact = common::records_before(dir, &records, &newest, start);
    assert!(records.len() - intact.len() >= 5, "the damage covers several acknowledged records");
    (records, intact)
}

/// Issue 9, case 2: garbage over the last 4 KiB of a cleanly closed log (the
/// last records and the close marker) was cut as a torn tail; verify said
/// clean, open dropped 14 acknowledged records.
#[test]
fn garbage_over_the_last_4_kib_of_a_cleanly_closed_log_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    closed_log_with_damaged_tail(dir.path(), true);
    assert_inspection_reports_corruption(dir.path(), "garbage tail");
    assert_open_is_corruption(dir.path(), tail_options(), "garbage tail");
}

/// Issue 9, case 2, with zeros: a zeroed tail looked like the clean end of
/// the data, so the records in it vanished without any report.
#[test]
fn zeros_over_the_last_4_kib_of_a_cleanly_closed_log_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    closed_log_with_damaged_tail(dir.path(), false);
    assert_inspection_reports_corruption(dir.path(), "zeroed tail");
    assert_open_is_corruption(dir.path(), tail_options(), "zeroed tail");
}

/// Issue 9, cases 2 and 4: salvage of a damaged tail keeps the records
/// before it, and the next append used to reuse the LSNs of the lost ones.
#[test]
fn salvage_of_a_cleanly_closed_log_with_a_damaged_tail_keeps_what_precedes_it_and_reuses_no_lsn() {
    for garbage in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (records, intact) = closed_log_with_damaged_tail(dir.path(), garbage);
        let case = if garbage { "garbage tail" } else { "zeroed tail" };
        assert_salvage_keeps(dir.path(), tail_options(), &intact, records.last().unwrap().lsn, case);
    }
}

// ---------------------------------------------------------------------------
// 3. A deleted newest segment, and a deleted state file.

/// A log over several 8 KiB segments; `close` says whether it is closed
/// cleanly or copied as a crash would leave it. Returns the log's directory
/// (the image, for a crash) and every record.
fn multi_segment_log(close: bool) -> (tempfile::TempDir, Vec<Record>) {
    let dir = tempfile::tempdir().unwrap();
    if close {
        let records = common::write_closed_log(dir.path(), common::small_options(), 80, 300);
        return (dir, records);
    }
    let live = tempfile::tempdir().unwrap();
    let log = common::open(live.path());
    for i in 0..80u64 {
        log.append(format!("stream-{}", i % 3), Expectation::Any, common::unique_payload(i, 300)).wait().unwrap();
    }
    let records = all_records(&log);
    common::crash_image(live.path(), dir.path());
    drop(log);
    (dir, records)
}

/// Deletes the newest segment; returns the records of the older ones.
fn delete_newest_segment(dir: &Path, records: &[Record]) -> Vec<Record> {
    let segments = common::segment_files(dir);
    assert!(segments.len() >= 3, "a multi-segment log");
    let newest = segments.last().unwrap();
    let first = first_lsn_of(newest);
    std::fs::remove_file(newest).unwrap();
    records.iter().filter(|r| r.lsn < first).cloned().collect()
}

/// Issue 9, case 3: deleting the newest segment of a cleanly closed log went
/// unnoticed; verify was clean and open continued at the old LSN.
#[test]
fn deleting_the_newest_segment_of_a_cleanly_closed_log_is_corruption() {
    let (dir, records) = multi_segment_log(true);
    delete_newest_segment(dir.path(), &records);
    assert_inspection_reports_corruption(dir.path(), "newest segment deleted after a close");
    assert_open_is_corruption(dir.path(), common::small_options(), "newest segment deleted after a close");
}

/// Issue 9, case 3, without a clean close: the state file written at the
/// last rollover names the newest segment.
#[test]
fn deleting_the_newest_segment_of_a_crashed_log_is_corruption() {
    let (dir, records) = multi_segment_log(false);
    delete_newest_segment(dir.path(), &records);
    assert_inspection_reports_corruption(dir.path(), "newest segment deleted after a crash");
    assert_open_is_corruption(dir.path(), common::small_options(), "newest segment deleted after a crash");
}

/// Issue 9, cases 3 and 4: salvage without the newest segment keeps the
/// older segments' records, and the next append must not take an LSN that
/// a record of the deleted segment had.
#[test]
fn salvage_without_the_newest_segment_keeps_the_older_ones_and_reuses_no_lsn() {
    for close in [true, false] {
        let (dir, records) = multi_segment_log(close);
        let intact = delete_newest_segment(dir.path(), &records);
        let case = if close { "after a close" } else { "after a crash" };
        assert_salvage_keeps(dir.path(), common::small_options(), &intact, records.last().unwrap().lsn, case);
    }
}

/// Issue 9, case 3: the state file is what detects a missing newest
/// segment; a version-2 log with segments but without it must not open as
/// if nothing were wrong.
#[test]
fn deleting_annals_state_from_a_log_with_segments_is_corruption() {
    let (dir, _) = multi_segment_log(true);
    let state = dir.path().join(STATE_FILE);
    assert!(state.is_file(), "a version-2 log has {STATE_FILE}");
    std::fs::remove_file(&state).unwrap();
    assert_open_is_corruption(dir.path(), common::small_options(), "state file deleted");
    assert_inspection_reports_corruption(dir.path(), "state file deleted");
}

/// Issue 9, case 4: salvage of a log whose state file was deleted keeps
/// every record (none is damaged) and hands out no acknowledged LSN again.
#[test]
fn salvage_without_annals_state_keeps_every_record_and_reuses_no_lsn() {
    let (dir, records) = multi_segment_log(true);
    std::fs::remove_file(dir.path().join(STATE_FILE)).unwrap();
    let last = records.last().unwrap().lsn;
    assert_salvage_keeps(dir.path(), common::small_options(), &records, last, "state file deleted");
}

/// Salvage opens, keeps at least `kept` (and only records as they were
/// written, in order), and hands out no acknowledged LSN again.
fn assert_salvage_keeps_at_least(dir: &Path, kept: &[Record], records: &[Record], case: &str) {
    let log = Log::open(dir, salvage(common::small_options())).unwrap_or_else(|e| panic!("{case}: salvage: {e}"));
    let got = all_records(&log);
    assert!(got.len() >= kept.len(), "{case}: salvage kept {} records, {} are intact", got.len(), kept.len());
    assert_eq!(got, records[..got.len()], "{case}: salvage kept records that differ from those written");
    let appended = log.append("after", Expectation::Any, &b"x"[..]).wait().unwrap();
    assert!(appended.lsn > records.last().unwrap().lsn, "{case}: the next append took lsn {}", appended.lsn);
}

/// Issue 9, case 8: salvage deleted a whole segment of intact records (and
/// every later one) for a truncation that lost only the zeros after its data.
#[test]
fn salvage_of_a_sealed_segment_truncated_past_its_data_keeps_its_records() {
    let (dir, records) = multi_segment_log(true);
    let sealed = common::segment_files(dir.path())[1].clone();
    let end = common::written_end(&sealed);
    let file = std::fs::OpenOptions::new().write(true).open(&sealed).unwrap();
    file.set_len(end as u64).unwrap();
    drop(file);
    let third = first_lsn_of(&common::segment_files(dir.path())[2]);
    let kept: Vec<Record> = records.iter().filter(|r| r.lsn < third).cloned().collect();
    assert_salvage_keeps_at_least(dir.path(), &kept, &records, "sealed segment truncated past its data");
}

/// Issue 9, case 8: salvage deleted a whole segment of intact records (and
/// every later one) for 8 damaged bytes of its header (here the
/// informational creation time, which no frame depends on).
#[test]
fn salvage_of_a_sealed_segment_with_8_damaged_header_bytes_keeps_its_records() {
    let (dir, records) = multi_segment_log(true);
    let sealed = common::segment_files(dir.path())[1].clone();
    let mut bytes = std::fs::read(&sealed).unwrap();
    bytes[48..56].copy_from_slice(&[0xEE; 8]); // created_ms (segments-format.md 2.1)
    std::fs::write(&sealed, bytes).unwrap();
    let third = first_lsn_of(&common::segment_files(dir.path())[2]);
    let kept: Vec<Record> = records.iter().filter(|r| r.lsn < third).cloned().collect();
    assert_salvage_keeps_at_least(dir.path(), &kept, &records, "8 damaged header bytes");
}

// ---------------------------------------------------------------------------
// 5. A full disk.

fn sim_options(fs: &SimFs) -> Options {
    Options {
        file_system: Arc::new(fs.clone()),
        segment_preparation: SegmentPreparation::Inline,
        ..common::small_options()
    }
}

fn spare_files(fs: &SimFs, dir: &Path) -> Vec<String> {
    fs.list(dir).unwrap().into_iter().filter(|name| name.starts_with("spare-")).collect()
}

fn segment_count(fs: &SimFs, dir: &Path) -> usize {
    fs.list(dir).unwrap().iter().filter(|name| name.ends_with(".seg")).count()
}

const DISK_FULL_PAYLOAD: usize = 1000;

/// Where the first rollover happens with [`sim_options`]: the number of
/// appends before it, the mutating operations of an append that needs none,
/// and of the append that rolls over.
fn first_rollover() -> (u64, u64, u64) {
    let fs = SimFs::new();
    let dir = annals::sim::sim_dir();
    let log = Log::open(dir, sim_options(&fs)).unwrap();
    let mut plain_ops = 0;
    for i in 0..100u64 {
        let (segments, ops) = (segment_count(&fs, dir), fs.counts().ops);
        log.append("s", Expectation::Any, common::unique_payload(i, DISK_FULL_PAYLOAD)).wait().unwrap();
        let delta = fs.counts().ops - ops;
        if segment_count(&fs, dir) > segments {
            return (i, plain_ops, delta);
        }
        plain_ops = delta;
    }
    panic!("no rollover in 100 appends of {DISK_FULL_PAYLOAD} bytes to 8 KiB segments");
}

/// One case of the disk-full sweep: ENOSPC from the `n`-th mutating
/// operation of the first rollover on (`persistent`) or at it only.
fn disk_full_case(before: u64, n: u64, persistent: bool) -> Result<(), String> {
    let fs = SimFs::new();
    let dir = annals::sim::sim_dir();
    let log = Log::open(dir, sim_options(&fs)).map_err(|e| format!("open: {e}"))?;
    let mut acked: Vec<(Lsn, Vec<u8>)> = Vec::new();
    let mut next = 0u64;
    let mut append = |log: &Log, acked: &mut Vec<(Lsn, Vec<u8>)>| {
        let payload = common::unique_payload(next, DISK_FULL_PAYLOAD);
        next += 1;
        let result = log.append("s", Expectation::Any, payload.clone()).wait();
        if let Ok(appended) = &result {
            acked.push((appended.lsn, payload));
        }
        result
    };
    for _ in 0..before {
        append(&log, &mut acked).map_err(|e| format!("append before the fault: {e}"))?;
    }
    fs.inject_fault_after(n, FaultKind::Enospc, persistent);
    let mut failure = None;
    for _ in 0..20 {
        if let Err(error) = append(&log, &mut acked) {
            failure = Some(error);
            break;
        }
        if !persistent {
            break; // the one failing operation is behind us
        }
    }
    match &failure {
        Some(Error::DiskFull { .. }) => {}
        None if !persistent => {} // the engine retried the one failed step
        Some(other) => return Err(format!("the append failed with {other:?}, not DiskFull")),
        None => return Err("no append failed on a full disk".to_owned()),
    }
    log.check_open().map_err(|e| format!("the log is not open after a full disk: {e}"))?;
    if persistent {
        match append(&log, &mut acked) {
            Err(Error::DiskFull { .. }) => {}
            other => return Err(format!("a second append on the still full disk gave {other:?}, not DiskFull")),
        }
        fs.clear_fault();
    } else {
        let spares = spare_files(&fs, dir);
        if !spares.is_empty() {
            return Err(format!("spare files left after the failed step: {spares:?}"));
        }
    }
    for _ in 0..20 {
        append(&log, &mut acked).map_err(|e| format!("append after space came back: {e}"))?;
    }
    let spares = spare_files(&fs, dir);
    if !spares.is_empty() {
        return Err(format!("spare files left behind: {spares:?}"));
    }
    let check = |log: &Log, when: &str| -> Result<(), String> {
        let got: Vec<(Lsn, Vec<u8>)> = all_records(log).into_iter().map(|r| (r.lsn, r.payload.to_vec())).collect();
        if got != acked {
            return Err(format!(
                "{when}: {} records readable, {} acknowledged (first difference at {:?})",
                got.len(),
                acked.len(),
                got.iter().zip(&acked).position(|(a, b)| a != b)
            ));
        }
        Ok(())
    };
    check(&log, "while open")?;
    log.close().wait().map_err(|e| format!("close: {e}"))?;
    drop(log);
    let reopened = Log::open(dir, sim_options(&fs)).map_err(|e| format!("reopen: {e}"))?;
    check(&reopened, "after a close and reopen")?;
    drop(reopened);
    fs.crash_now();
    let image = fs.crash_image(CrashMode::Drop, &mut SimRng::new(n));
    let recovered = Log::open(dir, sim_options(&image)).map_err(|e| format!("open after a power cut: {e}"))?;
    check(&recovered, "after a power cut")
}

/// Issue 9, case 5: a failed preparation of the spare segment (ENOSPC)
/// poisoned the log while the active segment had room, and left a spare
/// file filling the disk. ENOSPC at every mutating step of a rollover, for
/// good or once: the append that cannot be written fails with `DiskFull`,
/// the log is not poisoned, no spare file stays behind, appends resume once
/// space is back, and every acknowledged record is kept.
#[test]
fn enospc_at_every_step_of_a_rollover_fails_the_append_with_disk_full_and_never_poisons() {
    let (before, plain_ops, rollover_append_ops) = first_rollover();
    let rollover_ops = rollover_append_ops - plain_ops;
    println!("rollover after {before} appends: {rollover_ops} mutating operations besides the append's own");
    assert!(rollover_ops >= 6, "a rollover creates, fills and syncs a spare, then publishes it");
    // Every mutating operation of the rollover (about 12: seal the active
    // segment, create, fill and sync a spare, publish it, record it in the
    // state file), measured rather than assumed; the append's own write and
    // fdatasync are not part of it.
    let mut failures = Vec::new();
    for persistent in [true, false] {
        for n in 1..=rollover_ops {
            if let Err(why) = disk_full_case(before, n, persistent) {
                failures.push(format!("ENOSPC at step {n} of the rollover (persistent: {persistent}): {why}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

/// Unmounts the tmpfs when the test ends, also on failure.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let status = std::process::Command::new("umount").arg(&self.0).status();
        if !status.is_ok_and(|s| s.success()) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Issue 9, case 5, on a real file system: a 1 MiB tmpfs fills up; the
/// append that needs a new segment fails with `DiskFull`, the log stays
/// open and leaves no spare file, every acknowledged record reads back, and
/// once space is freed appends go on. Skips itself where it cannot mount.
#[test]
fn a_full_tmpfs_fails_appends_with_disk_full_and_they_resume_once_space_is_freed() {
    let mount = tempfile::tempdir().unwrap();
    let mounted =
        std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=1M", "tmpfs"]).arg(mount.path()).output();
    match mounted {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            println!("skipped: cannot mount a tmpfs: {}", String::from_utf8_lossy(&out.stderr).trim());
            return;
        }
        Err(error) => {
            println!("skipped: cannot run mount: {error}");
            return;
        }
    }
    let _unmount = Unmount(mount.path().to_owned());
    let filler = mount.path().join("filler");
    std::fs::write(&filler, vec![0xA5u8; 300 << 10]).unwrap();
    let dir = mount.path().join("log");
    let options = Options {
        segment_bytes: 256 << 10,
        record_bytes_max: 4096,
        segment_preparation: SegmentPreparation::Inline,
        ..Options::default()
    };
    let log = Log::open(&dir, options.clone()).unwrap();
    let mut acked: Vec<(Lsn, Vec<u8>)> = Vec::new();
    let mut i = 0u64;
    let failure = loop {
        let payload = common::unique_payload(i, DISK_FULL_PAYLOAD);
        i += 1;
        match log.append("s", Expectation::Any, payload.clone()).wait() {
            Ok(appended) => acked.push((appended.lsn, payload)),
            Err(error) => break error,
        }
        assert!(i < 10_000, "a 1 MiB tmpfs never filled up");
    };
    assert!(matches!(failure, Error::DiskFull { .. }), "{failure:?}");
    log.check_open().expect("a full disk does not poison the log");
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.starts_with("spare-")), "a spare file is left on the full disk: {names:?}");
    let read = |log: &Log| -> Vec<(Lsn, Vec<u8>)> {
        all_records(log).into_iter().map(|r| (r.lsn, r.payload.to_vec())).collect()
    };
    assert_eq!(read(&log), acked, "every acknowledged record reads back");

    std::fs::remove_file(&filler).unwrap();
    for _ in 0..50 {
        let payload = common::unique_payload(i, DISK_FULL_PAYLOAD);
        i += 1;
        let appended = log.append("s", Expectation::Any, payload.clone()).wait().expect("appends resume");
        acked.push((appended.lsn, payload));
    }
    assert_eq!(read(&log), acked);
    log.close().wait().unwrap();
    drop(log);
    let reopened = Log::open(&dir, options).unwrap();
    assert_eq!(read(&reopened), acked, "after a close and reopen");
}
