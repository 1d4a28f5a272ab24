//! What `verify --json` and `stats` say of a damaged log: nothing a reader
//! could take for a clean log's figures, and which frames were read.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};

fn annals(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_annals")).args(args).output().expect("run annals")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A closed log of 1,500 records over several segments with an index image
/// covering them all; a bit flipped in a record of its second segment.
fn damaged_log_with_an_image(dir: &Path) {
    let options = annals::Options { index_image: annals::IndexImageWrites::AtClose, ..common::small_options() };
    let log = annals::Log::open(dir, options).unwrap();
    for i in 0..1500u64 {
        log.append(format!("s{}", i % 3), annals::Expectation::Any, common::unique_payload(i, 100)).wait().unwrap();
    }
    log.close().wait().unwrap();
    let segments = common::segment_files(dir);
    assert!(segments.len() > 2 && dir.join("annals.index").exists());
    let frames = common::frame_offsets(&segments[1]);
    common::flip_bit(&segments[1], frames[frames.len() / 2] + 70, 3);
}

/// Review 8: `verify --json` of a corrupt log carried an `index` object
/// (the entries and streams of an index that says nothing of the intact
/// records the report counts), which the text report already left out. It
/// is `null` for a corrupt log, and an object for a clean one.
#[test]
fn verify_json_of_a_corrupt_log_carried_an_index_object() {
    let dir = tempfile::tempdir().unwrap();
    damaged_log_with_an_image(dir.path());
    let out = annals(&["verify", path(dir.path()), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!report["problems"].as_array().unwrap().is_empty(), "{report:#}");
    assert!(report["index"].is_null(), "{report:#}");

    let clean = tempfile::tempdir().unwrap();
    common::open(clean.path()).append("s", annals::Expectation::Any, "one").wait().unwrap();
    let out = annals(&["verify", path(clean.path()), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["index"]["entries"].as_u64(), Some(1), "{report:#}");
}

/// Review 8: `stats` of a log damaged under its index image exited 0 and
/// said nothing of the damage, since it reads only the frames after the
/// image (as an open does), while the same damage with no image made it
/// exit 1. Both reports now say which frames were read, and `verify` is
/// what finds the damage under the image.
#[test]
fn stats_said_nothing_of_which_frames_it_read_when_damage_was_under_the_image() {
    let dir = tempfile::tempdir().unwrap();
    damaged_log_with_an_image(dir.path());

    let out = annals(&["stats", path(dir.path()), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["frames_checked"].as_str(), Some("after_index_image"), "{report:#}");
    let text = annals(&["stats", path(dir.path())]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("the frames it covers were not read: `annals verify` checks every frame"), "{text}");

    // Without the image the open reads every frame, and finds the damage.
    std::fs::remove_file(dir.path().join("annals.index")).unwrap();
    let out = annals(&["stats", path(dir.path()), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["frames_checked"].as_str(), Some("all"), "{report:#}");
    assert!(!report["problems"].as_array().unwrap().is_empty(), "{report:#}");
}

/// Damage early in a long stream costs every later record of it in a
/// repair (they no longer follow the stream): the text report named each
/// of them, one line per record, burying the rest. It names the first 20
/// and counts the others; `--json` still lists every one.
#[test]
fn repair_printed_one_line_per_dropped_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = common::open(dir.path());
        for i in 0..200u64 {
            log.append("long", annals::Expectation::Any, common::unique_payload(i, 100)).wait().unwrap();
        }
        log.close().wait().unwrap();
    }
    let first = &common::segment_files(dir.path())[0];
    let frames = common::frame_offsets(first);
    common::flip_bit(first, frames[10] + 70, 3);

    let into = tempfile::tempdir().unwrap();
    let copy = into.path().join("text");
    let out = annals(&["repair", path(dir.path()), "--into", path(&copy)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let named = stdout.lines().filter(|line| line.starts_with("dropped the record at lsn")).count();
    assert_eq!(named, 20, "{stdout}");
    // Records 11 to 199 follow the damaged tenth (0-based): 189 dropped.
    assert!(stdout.contains("dropped 169 more records (`--json` lists every one)"), "{stdout}");

    let copy = into.path().join("json");
    let out = annals(&["repair", path(dir.path()), "--into", path(&copy), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records_dropped"].as_array().unwrap().len(), 189, "{report:#}");
    assert_eq!(report["records_copied"].as_u64(), Some(10), "{report:#}");
}
