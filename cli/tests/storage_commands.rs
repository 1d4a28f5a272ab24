//! `annals stats` and `annals compact` (issue 11, points 2 and 5): stats
//! reports where a log's disk goes without changing anything, read-only
//! media included; compact gives back the disk of dead records and keeps
//! every live one, and refuses a damaged log without touching it.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::path::Path;

use annals::{LogReader, Lsn, Record};
use serde_json::Value;
use support::{
    EXIT_CORRUPTION, EXIT_RUNTIME, chmod, make_read_only, path, run_annals, run_annals_as_nobody, stderr_of, text,
};

/// `annals stats DIR --json`, which must succeed.
fn stats_json(dir: &Path) -> Value {
    let out = run_annals(&["stats", path(dir), "--json"]);
    assert_eq!(out.status.code(), Some(0), "stats: {}{}", text(&out.stdout), stderr_of(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

fn number(value: &Value, key: &str) -> u64 {
    value[key].as_u64().unwrap_or_else(|| panic!("{key} is not a count: {value}"))
}

fn all_records(dir: &Path) -> Vec<Record> {
    LogReader::open(dir).unwrap().read_all(Lsn::ZERO, usize::MAX).unwrap()
}

/// A fresh log of a few records: one segment, every record live, the
/// figures those records and the file on disk give.
#[test]
fn annals_stats_of_a_fresh_small_log_counts_every_record_live_and_the_file_it_takes() {
    let dir = tempfile::tempdir().unwrap();
    let records = common::write_closed_log(dir.path(), annals::Options::default(), 12, 200);
    let stats = stats_json(dir.path());
    let segments = stats["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 1, "{stats}");
    let segment = &segments[0];
    let file = dir.path().join(segment["file"].as_str().unwrap());
    assert_eq!(number(segment, "file_bytes"), std::fs::metadata(&file).unwrap().len());
    assert_eq!(segment["compacted"], false);
    let live_bytes: u64 = records
        .iter()
        .map(|r| {
            (annals::frame::FRAME_HEADER_BYTES + annals::frame::OP_HEADER_BYTES + r.stream.len() + r.payload.len())
                as u64
        })
        .sum();
    let total = &stats["total"];
    assert_eq!(number(total, "live_bytes"), live_bytes);
    assert_eq!(number(total, "live_records"), 12);
    assert_eq!(number(&stats, "streams"), 3);
    assert_eq!(number(&stats, "operations"), 12);
    // Only framing is dead in a log nothing was removed from: a frame
    // header per append and a close marker.
    assert_eq!(number(total, "dead_bytes"), number(total, "written_bytes") - live_bytes);
    assert!(number(total, "dead_bytes") <= 13 * 64, "{total}");
    let oldest = &stats["oldest_record"];
    assert_eq!(number(oldest, "lsn"), 1);
    assert!(number(oldest, "age_ms") < 600_000, "written just now: {oldest}");
    // A clean close with the default options writes the index image; the
    // reader `annals stats` opens loads it.
    assert!(number(&stats, "index_image_age_ms") < 600_000, "written just now: {stats}");
    let on_disk: u64 = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert_eq!(number(&stats, "directory_bytes"), on_disk);
    assert!(on_disk <= 8 << 20, "a log of a few records takes at most 8 MiB: {on_disk}");

    let out = run_annals(&["stats", path(dir.path())]);
    assert_eq!(out.status.code(), Some(0));
    let shown = text(&out.stdout);
    for line in [segment["file"].as_str().unwrap(), "total", "streams 3", "live records 12 of 12", "index image "] {
        assert!(shown.contains(line), "the table lacks `{line}`:\n{shown}");
    }
}

/// The JSON report has every documented field, with its type, for a log
/// with records and for an empty one (whose amplification and oldest
/// record are null, not infinite or missing).
#[test]
fn annals_stats_json_has_every_documented_field() {
    let dir = tempfile::tempdir().unwrap();
    common::write_closed_log(dir.path(), common::small_options(), 40, 300);
    let empty = tempfile::tempdir().unwrap();
    annals::Log::open(empty.path(), annals::Options::default()).unwrap().close().wait().unwrap();
    let space = [
        "file_bytes",
        "written_bytes",
        "live_bytes",
        "dead_bytes",
        "unused_bytes",
        "space_amplification",
        "live_records",
    ];
    for (stats, has_records) in [(stats_json(dir.path()), true), (stats_json(empty.path()), false)] {
        let keys: Vec<&str> = stats.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "dir",
                "segments",
                "total",
                "streams",
                "operations",
                "oldest_lsn",
                "next_lsn",
                "oldest_record",
                "taken_ms",
                "index_image_age_ms",
                "directory_bytes",
                "frames_checked",
                "problems"
            ],
            "{stats}"
        );
        let segments = stats["segments"].as_array().unwrap();
        assert!(!segments.is_empty());
        for segment in segments {
            let keys: Vec<&str> = segment.as_object().unwrap().keys().map(String::as_str).collect();
            let head = ["file", "compacted", "first_lsn", "frames", "newest_frame_ms"];
            assert_eq!(keys, [&head[..], &space[..]].concat(), "{segment}");
            assert!(segment["file"].is_string() && segment["compacted"].is_boolean(), "{segment}");
        }
        let total: Vec<&str> = stats["total"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(total, space);
        for key in ["streams", "operations", "oldest_lsn", "next_lsn", "taken_ms", "directory_bytes"] {
            assert!(stats[key].is_u64(), "{key}: {stats}");
        }
        assert!(stats["problems"].as_array().unwrap().is_empty());
        // The small options write no index image; the default ones do at close.
        assert_eq!(stats["index_image_age_ms"].is_u64(), !has_records, "{stats}");
        if has_records {
            assert!(segments.len() > 1, "several 8 KiB segments");
            assert!(stats["total"]["space_amplification"].is_f64(), "{stats}");
            let oldest: Vec<&str> = stats["oldest_record"].as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(oldest, ["lsn", "timestamp_ms", "age_ms"]);
        } else {
            assert_eq!(stats["total"]["space_amplification"], Value::Null, "{stats}");
            assert_eq!(stats["oldest_record"], Value::Null, "{stats}");
            assert_eq!(number(&stats["total"], "live_records"), 0);
        }
    }
}

/// On a churned log, `annals compact` gives back the dead records' disk:
/// after it, stats shows fewer dead bytes and fewer file bytes, the same
/// live bytes and records, and every live record reads the same.
#[test]
fn annals_compact_of_a_churned_log_drops_dead_bytes_and_keeps_every_live_record() {
    let dir = tempfile::tempdir().unwrap();
    let live = common::write_churned_log(dir.path(), 40);
    let before = stats_json(dir.path());

    let out = run_annals(&["compact", path(dir.path()), "--json"]);
    assert_eq!(out.status.code(), Some(0), "compact: {}{}", text(&out.stdout), stderr_of(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(number(&report, "generation"), 1, "{report}");
    assert!(number(&report, "inputs") > 1 && number(&report, "reclaimed_bytes") > 0, "{report}");
    assert_eq!(number(&report, "records_kept"), number(&before["total"], "live_records") - tail_records(&before));
    assert!(number(&report, "records_kept") >= 3, "the untouched stream's records are copied: {report}");
    assert!(report["leftovers"].as_array().unwrap().is_empty(), "{report}");

    let after = stats_json(dir.path());
    let figure = |stats: &Value, key: &str| number(&stats["total"], key);
    assert!(figure(&after, "dead_bytes") < figure(&before, "dead_bytes") / 2, "{before}\n{after}");
    assert!(figure(&after, "file_bytes") < figure(&before, "file_bytes"), "{before}\n{after}");
    assert!(number(&after, "directory_bytes") < number(&before, "directory_bytes"));
    // The same live records, plus what a compacted segment keeps for them
    // (stream bases, a closing gap).
    assert!(figure(&after, "live_bytes") >= figure(&before, "live_bytes"), "{before}\n{after}");
    assert_eq!(figure(&after, "live_records"), figure(&before, "live_records"));
    assert_eq!(number(&after, "streams"), number(&before, "streams"));
    let compacted = after["segments"].as_array().unwrap().iter().filter(|s| s["compacted"] == true);
    assert!(compacted.map(|s| number(s, "live_records")).sum::<u64>() >= 3, "{after}");
    assert_eq!(after["oldest_record"]["lsn"], before["oldest_record"]["lsn"]);
    assert_eq!(all_records(dir.path()), live, "every live record, with its LSN and bytes");

    // The text report of a second compaction: the first left nothing dead
    // in the sealed segments, so nothing is rewritten.
    let out = run_annals(&["compact", path(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(text(&out.stdout).contains("nothing to compact"), "{}", text(&out.stdout));
    assert_eq!(stats_json(dir.path())["segments"], after["segments"], "no segment was rewritten");
    assert_eq!(all_records(dir.path()), live);
}

/// Live records in the last segment, which compaction never rewrites.
fn tail_records(stats: &Value) -> u64 {
    number(stats["segments"].as_array().unwrap().last().unwrap(), "live_records")
}

/// A log with nothing sealed has nothing to compact, and says so.
#[test]
fn annals_compact_of_a_log_with_one_segment_says_there_is_nothing_to_compact() {
    let dir = tempfile::tempdir().unwrap();
    let records = common::write_closed_log(dir.path(), annals::Options::default(), 5, 100);
    let out = run_annals(&["compact", path(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(text(&out.stdout).contains("nothing to compact"), "{}", text(&out.stdout));
    assert_eq!(all_records(dir.path()), records);
}

/// Stats on a read-only directory (0555, files 0444) works and changes no
/// name or byte; as an unprivileged user too, where the machine allows it.
#[test]
fn annals_stats_of_a_read_only_directory_works_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("log");
    common::write_closed_log(&dir, common::small_options(), 40, 300);
    let expected = stats_json(&dir);
    chmod(root.path(), 0o755);
    let _writable = make_read_only(&dir);
    let before = common::dir_snapshot(&dir);
    let read_only = stats_json(&dir);
    for key in ["segments", "total", "streams", "operations", "oldest_record", "directory_bytes"] {
        let differs = if key == "oldest_record" {
            read_only[key]["lsn"] != expected[key]["lsn"]
        } else {
            read_only[key] != expected[key]
        };
        assert!(!differs, "{key} differs on read-only media: {read_only}");
    }
    common::assert_dir_unchanged(&dir, &before, "stats");
    if let Some(out) = run_annals_as_nobody(&["stats", path(&dir), "--json"]) {
        assert_eq!(out.status.code(), Some(0), "stats as nobody: {}{}", text(&out.stdout), stderr_of(&out));
        common::assert_dir_unchanged(&dir, &before, "an unprivileged stats");
    }
}

/// Beside a writer that keeps the log open, stats runs (no lock taken),
/// counts at least every acknowledged record, and the writer goes on.
#[test]
fn annals_stats_beside_a_live_writer_counts_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    for i in 0..30u64 {
        log.append(format!("stream-{}", i % 3), annals::Expectation::Any, common::unique_payload(i, 300))
            .wait()
            .unwrap();
    }
    let stats = stats_json(dir.path());
    assert!(number(&stats["total"], "live_records") >= 30, "{stats}");
    assert!(stats["problems"].as_array().unwrap().is_empty(), "{stats}");
    log.append("after", annals::Expectation::Any, &b"the writer goes on"[..]).wait().unwrap();
    log.close().wait().unwrap();
    assert_eq!(number(&stats_json(dir.path())["total"], "live_records"), 31);
}

/// A directory that does not exist is a runtime failure (exit 3) for both
/// commands, and compact does not make it: the read-write open it uses
/// would create the directory and a new log in it. (A directory that holds
/// no log: `inspection.rs`.)
#[test]
fn annals_stats_and_compact_of_a_missing_directory_fail_with_exit_3_and_do_not_make_it() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("missing");
    for command in ["stats", "compact"] {
        let out = run_annals(&[command, path(&missing), "--json"]);
        assert_eq!(out.status.code(), Some(EXIT_RUNTIME), "{command}: {}{}", text(&out.stdout), stderr_of(&out));
        assert!(out.stdout.is_empty(), "{command} printed a report: {}", text(&out.stdout));
        assert!(!missing.exists(), "{command} made the directory");
    }
}

/// A flipped bit in a sealed segment: compact fails with the corruption
/// exit code naming the file and changes nothing; stats reports it (exit
/// 1) with the file and offset.
#[test]
fn annals_compact_of_a_log_with_a_damaged_sealed_segment_fails_as_corruption_and_changes_nothing() {
    let (dir, _) = common::closed_multi_segment_log();
    let sealed = common::segment_files(dir.path()).remove(1);
    common::flip_bit(&sealed, common::frame_offsets(&sealed)[1] + 60, 4);
    let before = common::dir_snapshot(dir.path());

    let out = run_annals(&["compact", path(dir.path()), "--json"]);
    assert_eq!(out.status.code(), Some(EXIT_CORRUPTION), "compact: {}{}", text(&out.stdout), stderr_of(&out));
    let file_name = sealed.file_name().unwrap().to_str().unwrap();
    assert!(stderr_of(&out).contains(file_name), "the error names the damaged file: {}", stderr_of(&out));
    assert!(out.stdout.is_empty(), "no report of a compaction that did not happen: {}", text(&out.stdout));
    common::assert_dir_unchanged(dir.path(), &before, "a refused compact");

    let out = run_annals(&["stats", path(dir.path()), "--json"]);
    assert_eq!(out.status.code(), Some(EXIT_CORRUPTION), "stats: {}{}", text(&out.stdout), stderr_of(&out));
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = stats["problems"].as_array().unwrap();
    assert!(!problems.is_empty(), "{stats}");
    assert!(problems[0]["file"].as_str().unwrap().ends_with(file_name), "{stats}");
    common::assert_dir_unchanged(dir.path(), &before, "stats");
}
