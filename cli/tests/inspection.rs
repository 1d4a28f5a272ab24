//! The inspection commands on logs: `annals verify` and `annals dump`
//! beside a live writer and on read-only media take no lock and change
//! nothing, say "not an Annals log" where there is none, and get the intact
//! records out of a damaged log (`dump --salvage`, `repair --into`) without
//! touching it (issue 9, cases 7 to 9); records over 16 MiB survive verify,
//! dump and load (issue 9, case 1).

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use annals::{Expectation, Log, LogReader, Lsn, Options, Record};
use support::{
    EXIT_RUNTIME, chmod, dump_line_of, dump_lines, make_read_only, path, run_annals, run_annals_as_nobody, text,
};

fn all_records(log: &Log) -> Vec<Record> {
    log.read_all(Lsn::ZERO, usize::MAX).unwrap()
}

/// A cleanly closed log over several 8 KiB segments.
fn closed_log(dir: &Path) -> Vec<Record> {
    common::write_closed_log(dir, common::small_options(), 80, 300)
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
        let acked = log.last_lsn().unwrap().0;
        let out = run_annals(&["verify", path(dir.path()), "--json"]);
        assert_eq!(out.status.code(), Some(0), "verify beside a writer: {}{}", text(&out.stdout), text(&out.stderr));
        let verified: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(verified["records"].as_u64().unwrap() >= acked, "{verified}");
        let corruption = verified["problems"].as_array().unwrap().iter().filter(|p| p["kind"] == "corruption").count();
        assert_eq!(corruption, 0, "{verified}");

        let acked = log.last_lsn().unwrap().0;
        let out = run_annals(&["dump", path(dir.path())]);
        assert!(out.status.success(), "dump beside a writer: {}", text(&out.stderr));
        let lines = dump_lines(&out);
        assert!(lines.len() as u64 >= acked, "dump printed {} records, {acked} were acknowledged", lines.len());
        dumps.push(lines);
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    log.append("s", Expectation::Any, &b"after"[..]).wait().unwrap();
    // A dump may show a record written but not yet acknowledged when it ran;
    // the writer never failed, so every record it printed is in the log now.
    let all: Vec<serde_json::Value> = all_records(&log).iter().map(dump_line_of).collect();
    for lines in &dumps {
        assert!(lines.len() <= all.len(), "dump printed {} records, the log holds {}", lines.len(), all.len());
        assert_eq!(lines.as_slice(), &all[..lines.len()], "dump printed something the log does not hold");
    }
    log.close().wait().unwrap();
    Log::open(dir.path(), common::small_options()).unwrap();
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

    chmod(root.path(), 0o755);
    let _writable = make_read_only(&dir);
    let before = common::dir_snapshot(&dir);

    let reader = LogReader::open(&dir).expect("the reader opens a read-only directory");
    assert!(reader.problems().is_empty(), "{:?}", reader.problems());
    assert!(reader.report().torn_tail.is_some(), "the torn tail is reported, not cut");
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), &records[..records.len() - 1]);
    drop(reader);
    common::assert_dir_unchanged(&dir, &before, "the reader");

    let out = run_annals(&["verify", path(&dir)]);
    assert_eq!(out.status.code(), Some(0), "verify: {}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("clean"), "{}", text(&out.stdout));
    let out = run_annals(&["dump", path(&dir)]);
    assert!(out.status.success(), "dump: {}", text(&out.stderr));
    assert_eq!(dump_lines(&out).len(), records.len() - 1);
    common::assert_dir_unchanged(&dir, &before, "verify or dump");

    if let Some(out) = run_annals_as_nobody(&["verify", path(&dir)]) {
        assert_eq!(out.status.code(), Some(0), "verify as nobody: {}{}", text(&out.stdout), text(&out.stderr));
        let out = run_annals_as_nobody(&["dump", path(&dir)]).unwrap();
        assert!(out.status.success(), "dump as nobody: {}", text(&out.stderr));
        assert_eq!(dump_lines(&out).len(), records.len() - 1);
        common::assert_dir_unchanged(&dir, &before, "an unprivileged verify or dump");
    }
}

/// Issue 9, case 7, for the command: `annals verify` of an empty directory
/// printed "clean". Both commands fail (exit 3, a runtime failure) saying
/// "not an Annals log"; so do `stats` and `compact` (which must not make a
/// new log there, as the read-write open it uses would).
#[test]
fn annals_commands_on_a_directory_without_a_log_say_not_an_annals_log() {
    let empty = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("notes.txt"), b"not a log").unwrap();
    for dir in [empty.path(), other.path()] {
        let before = common::dir_snapshot(dir);
        for command in ["verify", "dump", "stats", "compact"] {
            let out = run_annals(&[command, path(dir)]);
            assert_eq!(out.status.code(), Some(EXIT_RUNTIME), "{command}: {}{}", text(&out.stdout), text(&out.stderr));
            assert!(text(&out.stderr).contains("not an Annals log"), "{command}: {}", text(&out.stderr));
            assert!(!text(&out.stdout).contains("clean"), "{command}: {}", text(&out.stdout));
        }
        common::assert_dir_unchanged(dir, &before, "verify, dump, stats or compact");
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
    let out = run_annals(&["dump", path(dir.path())]);
    assert!(!out.status.success(), "dump of a damaged log without --salvage succeeded");
    let out = run_annals(&["dump", path(dir.path()), "--salvage"]);
    assert!(out.status.code().is_some_and(|c| c < 2), "dump --salvage: {}", text(&out.stderr));
    assert_eq!(dump_lines(&out), intact.iter().map(dump_line_of).collect::<Vec<_>>());
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
    assert!(!run_annals(&["dump", path(dir.path())]).status.success());
    let out = run_annals(&["dump", path(dir.path()), "--salvage"]);
    assert!(out.status.code().is_some_and(|c| c < 2), "dump --salvage: {}", text(&out.stderr));
    assert!(!text(&out.stderr).trim().is_empty(), "no warning on stderr");
    let lines = dump_lines(&out);
    let printed: Vec<u64> = lines.iter().map(|l| l["lsn"].as_u64().unwrap()).collect();
    for record in records.iter().filter(|r| r.lsn < damaged) {
        assert!(printed.contains(&record.lsn.0), "intact record {} is missing", record.lsn);
    }
    assert!(!printed.contains(&damaged.0), "the damaged record was printed");
    for line in &lines {
        let lsn = line["lsn"].as_u64().unwrap();
        let original = records.iter().find(|r| r.lsn.0 == lsn).expect("an LSN that was written");
        assert_eq!(line["stream"], dump_line_of(original)["stream"], "lsn {lsn}");
        assert_eq!(line["len"], dump_line_of(original)["len"], "lsn {lsn}");
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
    let out = run_annals(&["repair", path(dir.path()), "--into", path(&new)]);
    assert!(out.status.code().is_some_and(|c| c < 2), "repair: {}{}", text(&out.stdout), text(&out.stderr));
    assert_reports_dropped(&out, &newest, frame);
    common::assert_dir_unchanged(dir.path(), &before, "repair");

    let out = run_annals(&["verify", path(&new)]);
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
    let out = run_annals(&["repair", path(dir.path()), "--into", path(&new)]);
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

/// Issue 9, case 1, for the command: `annals verify` and `annals dump` read
/// with a fixed 16 MiB limit, called records over it a torn tail ("clean"),
/// and `annals load` then cut them.
#[test]
fn records_over_the_commands_16_mib_limit_survive_verify_dump_and_load() {
    let (live, image) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = Log::open(live.path(), Options { record_bytes_max: 20 << 20, ..Options::default() }).unwrap();
    for i in 0..4u64 {
        let len = if i >= 2 { 17 << 20 } else { 300 };
        log.append("big", Expectation::Any, common::unique_payload(i, len)).wait().unwrap();
    }
    let expected = all_records(&log);
    common::crash_image(live.path(), image.path());
    drop(log);
    let dir = image.path().to_str().unwrap();

    let out = run_annals(&["verify", dir, "--json"]);
    assert!(out.status.success(), "verify: {}", String::from_utf8_lossy(&out.stdout));
    let verified: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verified["records"].as_u64(), Some(4), "{verified}");
    assert_eq!(verified["problems"].as_array().map(Vec::len), Some(0), "no torn tail, no corruption: {verified}");

    let out = run_annals(&["dump", dir]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = dump_lines(&out);
    assert_eq!(lines, expected.iter().map(dump_line_of).collect::<Vec<_>>());

    let out = run_annals(&["load", "--dir", dir, "--streams", "1", "--records", "10", "--payload-bytes", "16"]);
    assert!(out.status.success(), "load: {}", String::from_utf8_lossy(&out.stderr));
    let log = Log::open(image.path(), Options { record_bytes_max: 20 << 20, ..Options::default() }).unwrap();
    let records = all_records(&log);
    assert_eq!(records.len(), 14, "load appended after every record");
    assert_eq!(&records[..4], expected.as_slice());
}

/// Issue 9, case 8: under damage, verify's counts are those of the records
/// actually readable, not of what the files once held.
#[test]
fn verify_counts_only_the_readable_records_of_a_log_with_a_damaged_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (_, intact, _, _) = log_with_damaged_tail(dir.path());
    let out = run_annals(&["verify", path(dir.path()), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let verified: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verified["records"].as_u64(), Some(intact.len() as u64), "{verified}");
    assert_eq!(verified["last_lsn"].as_u64(), Some(intact.last().unwrap().lsn.0), "{verified}");
    assert_eq!(verified["streams"].as_u64(), Some(3), "{verified}");
}
