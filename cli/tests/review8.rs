//! Review 8 of the command line: `dump` after its flush-before-an-error
//! change, `verify` on a damaged log, and every printing command with its
//! reader gone (a pipe closed early, as `| head` does).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn annals(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_annals")).args(args).output().expect("run annals")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A closed log of 1,500 records over several segments, with an index
/// image (an open does not read the frames it covers); its records.
fn log_with_an_image(dir: &Path) -> Vec<annals::Record> {
    let options = annals::Options { index_image: annals::IndexImageWrites::AtClose, ..common::small_options() };
    let log = annals::Log::open(dir, options).unwrap();
    for i in 0..1500u64 {
        log.append(format!("s{}", i % 3), annals::Expectation::Any, common::unique_payload(i, 100)).wait().unwrap();
    }
    let records = log.read_all(annals::Lsn::ZERO, usize::MAX).unwrap();
    log.close().wait().unwrap();
    records
}

/// Review 8: `dump --limit 3` read a whole page (1,024 records) to print
/// three, so damage anywhere in the page after them failed the dump (exit
/// 1, nothing printed) though every record asked for was intact. It reads
/// no more than it prints.
#[test]
fn dump_with_a_limit_failed_on_damage_past_the_records_it_was_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let records = log_with_an_image(dir.path());
    let segments = common::segment_files(dir.path());
    assert!(segments.len() > 2 && dir.path().join("annals.index").exists());
    let damaged = &segments[segments.len() - 2];
    let frames = common::frame_offsets(damaged);
    let frame = frames[frames.len() / 2];
    let intact = common::records_before(dir.path(), &records, damaged, frame);
    common::flip_bit(damaged, frame + 70, 3);
    // The three records right before the damage.
    let after = intact[intact.len() - 4].lsn.0.to_string();
    let out = annals(&["dump", path(dir.path()), "--after", &after, "--limit", "3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3, "{stderr}");
    // One more, and the dump reaches the damage.
    let out = annals(&["dump", path(dir.path()), "--after", &after, "--limit", "4"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A reader gone after the first bytes (`| head -c 1`): every printing
/// command stops quietly with its usual exit code (a damaged log's 1), and
/// never panics on the closed pipe.
#[test]
fn every_printing_command_stops_quietly_when_its_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    log_with_an_image(dir.path());
    let damaged = tempfile::tempdir().unwrap();
    log_with_an_image(damaged.path());
    let segments = common::segment_files(damaged.path());
    let frames = common::frame_offsets(&segments[1]);
    common::flip_bit(&segments[1], frames[frames.len() / 2] + 70, 3);
    let runs: [(&[&str], &Path, i32); 10] = [
        (&["dump"], dir.path(), 0),
        (&["dump", "--decode"], dir.path(), 0),
        (&["dump", "--salvage"], dir.path(), 0),
        (&["dump", "--salvage", "--decode"], damaged.path(), 0),
        (&["verify", "--json"], dir.path(), 0),
        (&["verify"], damaged.path(), 1),
        (&["verify", "--json"], damaged.path(), 1),
        (&["stats"], dir.path(), 0),
        (&["stats", "--json"], dir.path(), 0),
        (&["dump"], damaged.path(), 1),
    ];
    for (args, log, code) in runs {
        let mut child = Command::new(env!("CARGO_BIN_EXE_annals"))
            .args(args)
            .arg(log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 1];
        let mut stdout = child.stdout.take().unwrap();
        let _ = stdout.read(&mut first);
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    }
}

/// Review 8 (tests/review8_reader_holes.rs, through the command): verify
/// of a log with damage in a compacted segment reported a second, false
/// problem (a missing segment where none is missing), since its reader
/// stopped reading compacted segments at the damage. One damage, one
/// problem.
#[test]
fn verify_of_damage_in_a_compacted_segment_reported_a_missing_segment_too() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = common::open(dir.path());
        for i in 0..160u64 {
            log.append(format!("s{}", i % 4), annals::Expectation::Any, common::unique_payload(i, 300)).wait().unwrap();
        }
        let last = log.next_seq("s3").unwrap().0;
        log.prune("s3", annals::StreamSeq(last), annals::PruneSnapshots::Before(annals::Lsn::ZERO)).wait().unwrap();
        log.append("s0", annals::Expectation::Any, "after").wait().unwrap();
        let report = log.compact().unwrap();
        assert!(report.outputs >= 2, "{report:?}");
        log.close().wait().unwrap();
    }
    let first = &common::segment_files(dir.path())[0];
    let frames = common::frame_offsets(first);
    common::flip_bit(first, frames[frames.len() / 2] + 70, 3);
    let out = annals(&["verify", path(dir.path()), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0]["file"].as_str(), Some(path(first)), "{problems:#?}");
}

/// Review 8: a dump that met damage under the index image printed only
/// the whole pages (1,024 records each) before the page holding it: the
/// intact records between the last such page and the damage were left
/// out, though the dump's failure came after them. Every record before
/// the damage is now printed, then the failure.
#[test]
fn dump_that_met_damage_left_out_the_intact_records_of_the_page_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let records = log_with_an_image(dir.path());
    let segments = common::segment_files(dir.path());
    let damaged = &segments[segments.len() - 2];
    let frames = common::frame_offsets(damaged);
    let frame = frames[frames.len() / 2];
    let intact = common::records_before(dir.path(), &records, damaged, frame);
    assert!(!intact.len().is_multiple_of(1024), "the damage is not at a page's start");
    common::flip_bit(damaged, frame + 70, 3);
    let out = annals(&["dump", path(dir.path())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("annals verify") && stderr.contains("--salvage"), "{stderr}");
    let printed: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let lsns: Vec<u64> = printed.iter().map(|line| line["lsn"].as_u64().unwrap()).collect();
    assert_eq!(lsns, intact.iter().map(|record| record.lsn.0).collect::<Vec<_>>(), "{stderr}");
}
