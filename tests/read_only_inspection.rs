//! Issue 9, cases 7 to 9: inspection works when it is needed most. The
//! reader and `annals verify` and `annals dump` take no lock and change
//! nothing (read-only media, a live writer beside them), say "not an Annals
//! log" where there is none, and get the intact records out of a damaged
//! log (`dump --salvage`, `repair --into`) without touching it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use annals::{Error, Expectation, Log, LogReader, Lsn, Options, Record};

fn all_records(log: &Log) -> Vec<Record> {
    log.read_all(Lsn::ZERO, usize::MAX).unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A cleanly closed log over several 8 KiB segments.
fn closed_log(dir: &Path) -> Vec<Record> {
    common::write_closed_log(dir, common::small_options(), 80, 300)
}

/// Issue 9, case 7: the reader took a shared lock (creating `LOCK`) and so
/// could not run beside a writer nor on media it may not write. It takes no
/// lock: a writer opens while a reader is open, and no file appears.
#[test]
fn log_reader_takes_no_lock_and_creates_no_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let records = closed_log(dir.path());
    let _ = std::fs::remove_file(dir.path().join("LOCK"));
    let before = common::dir_snapshot(dir.path());
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), records);
    common::assert_dir_unchanged(dir.path(), &before, "the reader");
    assert!(!dir.path().join("LOCK").exists());
    let writer = Log::open(dir.path(), common::small_options()).expect("a writer opens beside a reader");
    writer.append("s", Expectation::Any, &b"beside a reader"[..]).wait().unwrap();
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), records, "the reader keeps what it read");
    writer.close().wait().unwrap();
}

/// Issue 9, case 7: `LogReader::open` failed with `Locked` while a writer
/// had the log open. Opened beside a writer that keeps appending, it sees at
/// least every record acknowledged before it opened, reports no false
/// corruption, and the writer goes on undisturbed.
#[test]
fn log_reader_beside_a_live_writer_sees_every_acknowledged_record_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (log, acked, stop) = (log.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) || i < 50 {
                let appended = log
                    .append(format!("stream-{}", i % 3), Expectation::Any, common::unique_payload(i, 300))
                    .wait()
                    .expect("the writer is not disturbed by readers");
                acked.fetch_max(appended.lsn.0, Ordering::SeqCst);
                i += 1;
            }
        })
    };
    let mut seen = Vec::new();
    for _ in 0..30 {
        let acked_before = acked.load(Ordering::SeqCst);
        let reader = LogReader::open(dir.path()).expect("a reader opens beside a writer");
        assert!(reader.problems().is_empty(), "false corruption beside a writer: {:?}", reader.problems());
        assert!(reader.last_lsn().0 >= acked_before, "{} < {acked_before}", reader.last_lsn());
        seen.push(reader.read_all(Lsn::ZERO, usize::MAX).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let after = log.append("s", Expectation::Any, &b"after the readers"[..]).wait().unwrap();
    let all = all_records(&log);
    for records in &seen {
        assert_eq!(records.as_slice(), &all[..records.len()], "a reader saw something the log does not hold");
    }
    log.close().wait().unwrap();
    let reopened = Log::open(dir.path(), common::small_options()).unwrap();
    assert_eq!(reopened.last_lsn(), after.lsn);
    assert_eq!(all_records(&reopened), all);
}

/// Issue 9, case 7: `annals verify` and `annals dump` could not run while a
/// writer had the log open. Beside a writer appending, they report it clean
/// and print what was acknowledged; the writer goes on.
#[test]
fn annals_verify_and_dump_beside_a_live_writer_work_and_do_not_disturb_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    for i in 0..40u64 {
        log.append(format!("stream-{}", i % 3), Expectation::Any, common::unique_payload(i, 300)).wait().unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 1000u64;
            while !stop.load(Ordering::SeqCst) {
                log.append("busy", Expectation::Any, common::unique_payload(i, 200)).wait().expect("undisturbed");
                i += 1;
            }
        })
    };
    let mut dumps = Vec::new();
    for _ in 0..3 {
        let acked = log.last_lsn().0;
        let out = common::run_annals(&["verify", path(dir.path()), "--json"]);
        assert_eq!(out.status.code(), Some(0), "verify beside a writer: {}{}", text(&out.stdout), text(&out.stderr));
        let verified: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(verified["records"].as_u64().unwrap() >= acked, "{verified}");
        let corruption = verified["problems"].as_array().unwrap().iter().filter(|p| p["kind"] == "corruption").count();
        assert_eq!(corruption, 0, "{verified}");

        let acked = log.last_lsn().0;
        let out = common::run_annals(&["dump", path(dir.path())]);
        assert!(out.status.success(), "dump beside a writer: {}", text(&out.stderr));
        let lines = common::dump_lines(&out);
        assert!(lines.len() as u64 >= acked, "dump printed {} records, {acked} were acknowledged", lines.len());
        dumps.push(lines);
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    log.append("s", Expectation::Any, &b"after"[..]).wait().unwrap();
    // A dump may show a record written but not yet acknowledged when it ran;
    // the writer never failed, so every record it printed is in the log now.
    let all: Vec<serde_json::Value> = all_records(&log).iter().map(common::dump_line_of).collect();
    for lines in &dumps {
        assert!(lines.len() <= all.len(), "dump printed {} records, the log holds {}", lines.len(), all.len());
        assert_eq!(lines.as_slice(), &all[..lines.len()], "dump printed something the log does not hold");
    }
    log.close().wait().unwrap();
    Log::open(dir.path(), common::small_options()).unwrap();
}

/// Restores write permission on the log so the temporary directory can be
/// removed, also when the test fails.
struct Writable(PathBuf);

impl Drop for Writable {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for entry in entries.flatten() {
                let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o644));
            }
        }
    }
}

/// Runs `annals` as the unprivileged user `nobody`, if this machine can.
fn run_annals_as_nobody(args: &[&str]) -> Option<std::process::Output> {
    let run = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_annals")])
            .args(args)
            .output()
            .ok()
    };
    match run(&["--help"]) {
        Some(out) if out.status.success() => run(args),
        Some(out) => {
            println!("skipped the unprivileged part: setpriv failed: {}", text(&out.stderr).trim());
            None
        }
        None => {
            println!("skipped the unprivileged part: setpriv is not available");
            None
        }
    }
}

/// Issue 9, case 7: on read-only media, or for a user with read permission
/// only, inspection failed (it created `LOCK`, deleted spares, cut a torn
/// tail). On a directory made read-only (0555, files 0444) the reader,
/// `annals verify` and `annals dump` work, and no name or byte in the
/// directory changes (tests run as root, who may write anyway: the
/// comparison is what proves it), also with a torn tail and a spare file
/// that a read-write open would cut and delete.
#[test]
fn inspection_of_a_read_only_directory_changes_nothing() {
    let (live, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = common::open(live.path());
    for i in 0..60u64 {
        log.append(format!("stream-{}", i % 3), Expectation::Any, common::unique_payload(i, 300)).wait().unwrap();
    }
    let records = all_records(&log);
    let dir = root.path().join("log");
    common::crash_image(live.path(), &dir); // a crash: no close marker
    drop(log);
    // A torn last record, and a spare a crash left behind.
    let last = records.last().unwrap();
    let (segment, end) = common::payload_end(&dir, &last.payload).unwrap();
    common::zero_range(&segment, end - 100, end - 50);
    std::fs::write(dir.join("spare-7.seg.tmp"), vec![0u8; 8192]).unwrap();

    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let _writable = Writable(dir.clone());
    for entry in std::fs::read_dir(&dir).unwrap() {
        std::fs::set_permissions(entry.unwrap().path(), std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let before = common::dir_snapshot(&dir);

    let reader = LogReader::open(&dir).expect("the reader opens a read-only directory");
    assert!(reader.problems().is_empty(), "{:?}", reader.problems());
    assert!(reader.report().torn_tail.is_some(), "the torn tail is reported, not cut");
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), &records[..records.len() - 1]);
    drop(reader);
    common::assert_dir_unchanged(&dir, &before, "the reader");

    let out = common::run_annals(&["verify", path(&dir)]);
    assert_eq!(out.status.code(), Some(0), "verify: {}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("clean"), "{}", text(&out.stdout));
    let out = common::run_annals(&["dump", path(&dir)]);
    assert!(out.status.success(), "dump: {}", text(&out.stderr));
    assert_eq!(common::dump_lines(&out).len(), records.len() - 1);
    common::assert_dir_unchanged(&dir, &before, "verify or dump");

    if let Some(out) = run_annals_as_nobody(&["verify", path(&dir)]) {
        assert_eq!(out.status.code(), Some(0), "verify as nobody: {}{}", text(&out.stdout), text(&out.stderr));
        let out = run_annals_as_nobody(&["dump", path(&dir)]).unwrap();
        assert!(out.status.success(), "dump as nobody: {}", text(&out.stderr));
        assert_eq!(common::dump_lines(&out).len(), records.len() - 1);
        common::assert_dir_unchanged(&dir, &before, "an unprivileged verify or dump");
    }
}

fn outcome(result: &annals::Result<LogReader>) -> String {
    match result {
        Ok(_) => "the reader opened".to_owned(),
        Err(error) => format!("{error:?}"),
    }
}

/// Issue 9, case 7: on an empty directory, or one holding other files, the
/// reader said "clean" (an empty log). It fails with `NotALog` and creates
/// nothing; on a path that does not exist it fails and creates no directory.
#[test]
fn log_reader_on_an_empty_directory_or_one_of_unrelated_files_is_not_a_log() {
    let empty = tempfile::tempdir().unwrap();
    let result = LogReader::open(empty.path());
    assert!(matches!(result, Err(Error::NotALog { .. })), "{}", outcome(&result));
    assert!(common::dir_snapshot(empty.path()).is_empty(), "the reader created a file");

    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("notes.txt"), b"not a log").unwrap();
    std::fs::write(other.path().join("data.bin"), vec![7u8; 8192]).unwrap();
    std::fs::write(other.path().join("00000000000000000001.txt"), b"").unwrap();
    let before = common::dir_snapshot(other.path());
    let result = LogReader::open(other.path());
    assert!(matches!(result, Err(Error::NotALog { .. })), "{}", outcome(&result));
    common::assert_dir_unchanged(other.path(), &before, "the reader");

    let missing = empty.path().join("missing");
    assert!(LogReader::open(&missing).is_err());
    assert!(!missing.exists(), "the reader created the directory");
}

/// Issue 9, case 7, for the command: `annals verify` of an empty directory
/// printed "clean". Both commands exit 2 saying "not an Annals log".
#[test]
fn annals_verify_and_dump_of_a_directory_without_a_log_say_not_an_annals_log() {
    let empty = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("notes.txt"), b"not a log").unwrap();
    for dir in [empty.path(), other.path()] {
        let before = common::dir_snapshot(dir);
        for command in ["verify", "dump"] {
            let out = common::run_annals(&[command, path(dir)]);
            assert_eq!(out.status.code(), Some(2), "{command}: {}{}", text(&out.stdout), text(&out.stderr));
            assert!(text(&out.stderr).contains("not an Annals log"), "{command}: {}", text(&out.stderr));
            assert!(!text(&out.stdout).contains("clean"), "{command}: {}", text(&out.stdout));
        }
        common::assert_dir_unchanged(dir, &before, "verify or dump");
    }
}

/// A cleanly closed log whose newest segment's last 4 KiB of written data
/// are garbage; returns every record, the intact ones, the damaged segment
/// and the offset of its first damaged frame.
fn log_with_damaged_tail(dir: &Path) -> (Vec<Record>, Vec<Record>, PathBuf, usize) {
    let options = Options { segment_bytes: 64 << 10, record_bytes_max: 4096, ..Options::default() };
    let records = common::write_closed_log(dir, options, 250, 300);
    let newest = common::segment_files(dir).pop().unwrap();
    let start = common::damage_written_tail(&newest, true);
    let intact = common::records_before(dir, &records, &newest, start);
    // Frames lie back to back: the first damaged one starts where the last
    // intact one ends.
    let (file, frame) = common::payload_end(dir, &intact.last().unwrap().payload).unwrap();
    assert_eq!(file, newest, "the newest segment keeps intact records");
    (records, intact, newest, frame)
}

/// A cleanly closed log with one damaged record in a sealed segment;
/// returns every record, the damaged one's LSN, its segment and offset.
fn log_with_a_damaged_sealed_record(dir: &Path) -> (Vec<Record>, Lsn, PathBuf, usize) {
    let records = closed_log(dir);
    let segments = common::segment_files(dir);
    assert!(segments.len() >= 3);
    let in_second: Vec<&Record> =
        records.iter().filter(|r| common::payload_end(dir, &r.payload).unwrap().0 == segments[1]).collect();
    assert!(in_second.len() >= 3, "the second segment holds several records");
    let (previous, damaged) = (in_second[0], in_second[1]);
    let (_, frame) = common::payload_end(dir, &previous.payload).unwrap();
    let (_, end) = common::payload_end(dir, &damaged.payload).unwrap();
    common::flip_bit(&segments[1], end - 10, 3); // a payload byte
    let damaged = damaged.lsn;
    (records, damaged, segments[1].clone(), frame)
}

/// Issue 9, case 8: `annals dump` of a damaged log printed nothing, so the
/// intact data could not be got out. With `--salvage` it prints the intact
/// records, warns on stderr and changes nothing; without it, it fails.
#[test]
fn annals_dump_salvage_prints_the_intact_records_of_a_log_with_a_damaged_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (_, intact, _, _) = log_with_damaged_tail(dir.path());
    let before = common::dir_snapshot(dir.path());
    let out = common::run_annals(&["dump", path(dir.path())]);
    assert!(!out.status.success(), "dump of a damaged log without --salvage succeeded");
    let out = common::run_annals(&["dump", path(dir.path()), "--salvage"]);
    assert!(out.status.code().is_some_and(|c| c < 2), "dump --salvage: {}", text(&out.stderr));
    assert_eq!(common::dump_lines(&out), intact.iter().map(common::dump_line_of).collect::<Vec<_>>());
    assert!(!text(&out.stderr).trim().is_empty(), "no warning on stderr");
    common::assert_dir_unchanged(dir.path(), &before, "dump");
}

/// Issue 9, case 8, damage in the middle: `dump --salvage` prints every
/// record before the damaged one, never the damaged one, and nothing that
/// differs from what was written.
#[test]
fn annals_dump_salvage_of_a_damaged_sealed_record_prints_the_records_around_it() {
    let dir = tempfile::tempdir().unwrap();
    let (records, damaged, _, _) = log_with_a_damaged_sealed_record(dir.path());
    let before = common::dir_snapshot(dir.path());
    assert!(!common::run_annals(&["dump", path(dir.path())]).status.success());
    let out = common::run_annals(&["dump", path(dir.path()), "--salvage"]);
    assert!(out.status.code().is_some_and(|c| c < 2), "dump --salvage: {}", text(&out.stderr));
    assert!(!text(&out.stderr).trim().is_empty(), "no warning on stderr");
    let lines = common::dump_lines(&out);
    let printed: Vec<u64> = lines.iter().map(|l| l["lsn"].as_u64().unwrap()).collect();
    for record in records.iter().filter(|r| r.lsn < damaged) {
        assert!(printed.contains(&record.lsn.0), "intact record {} is missing", record.lsn);
    }
    assert!(!printed.contains(&damaged.0), "the damaged record was printed");
    for line in &lines {
        let lsn = line["lsn"].as_u64().unwrap();
        let original = records.iter().find(|r| r.lsn.0 == lsn).expect("an LSN that was written");
        assert_eq!(line["stream"], common::dump_line_of(original)["stream"], "lsn {lsn}");
        assert_eq!(line["len"], common::dump_line_of(original)["len"], "lsn {lsn}");
    }
    common::assert_dir_unchanged(dir.path(), &before, "dump");
}

/// Checks a repair's output names the file and offset of what it dropped.
fn assert_reports_dropped(out: &std::process::Output, file: &Path, offset: usize) {
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(said.contains(name), "the repair does not name {name}: {said}");
    assert!(said.contains(&offset.to_string()), "the repair does not give offset {offset}: {said}");
}

/// Issue 9, case 9: there was no way to copy the intact records out of a
/// damaged log. `annals repair DIR --into NEW` copies them with their LSNs,
/// names what it dropped, leaves DIR byte for byte as it was, and NEW
/// opens cleanly.
#[test]
fn annals_repair_copies_the_intact_records_into_a_new_log_and_leaves_the_source_unchanged() {
    let (dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_, intact, newest, frame) = log_with_damaged_tail(dir.path());
    let before = common::dir_snapshot(dir.path());
    let new = root.path().join("repaired");
    let out = common::run_annals(&["repair", path(dir.path()), "--into", path(&new)]);
    assert!(out.status.code().is_some_and(|c| c < 2), "repair: {}{}", text(&out.stdout), text(&out.stderr));
    assert_reports_dropped(&out, &newest, frame);
    common::assert_dir_unchanged(dir.path(), &before, "repair");

    let out = common::run_annals(&["verify", path(&new)]);
    assert_eq!(out.status.code(), Some(0), "verify of the repaired log: {}", text(&out.stdout));
    let log = Log::open(&new, Options::default()).expect("the repaired log opens cleanly");
    assert_eq!(log.recovery_report().torn_tail, None);
    assert!(log.recovery_report().salvaged.is_empty());
    assert_eq!(all_records(&log), intact, "the intact records, with their LSNs");
}

/// Issue 9, case 9, damage in the middle: the repaired log holds every
/// record before the damaged one, never the damaged one, only records as
/// they were written, and opens cleanly; the source is unchanged.
#[test]
fn annals_repair_of_a_damaged_sealed_record_keeps_every_record_before_it() {
    let (dir, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (records, damaged, segment, frame) = log_with_a_damaged_sealed_record(dir.path());
    let before = common::dir_snapshot(dir.path());
    let new = root.path().join("repaired");
    let out = common::run_annals(&["repair", path(dir.path()), "--into", path(&new)]);
    assert!(out.status.code().is_some_and(|c| c < 2), "repair: {}{}", text(&out.stdout), text(&out.stderr));
    assert_reports_dropped(&out, &segment, frame);
    common::assert_dir_unchanged(dir.path(), &before, "repair");

    let log = Log::open(&new, Options::default()).expect("the repaired log opens cleanly");
    let repaired = all_records(&log);
    let prefix: Vec<Record> = records.iter().filter(|r| r.lsn < damaged).cloned().collect();
    assert!(repaired.len() >= prefix.len(), "{} records repaired, {} precede the damage", repaired.len(), prefix.len());
    assert_eq!(&repaired[..prefix.len()], prefix.as_slice(), "every record before the damage, with its LSN");
    assert!(repaired.iter().all(|r| r.lsn != damaged), "the damaged record was copied");
    for record in &repaired[prefix.len()..] {
        let original = records.iter().find(|r| r.lsn == record.lsn).expect("an LSN that was written");
        assert_eq!((&record.stream, &record.payload), (&original.stream, &original.payload));
    }
}
