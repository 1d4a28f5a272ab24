//! `annals tail` beside a live `annals load` in another process: with
//! `--follow` it prints every acknowledged record exactly once, in LSN
//! order, as it becomes durable, and stops cleanly on SIGINT; without it,
//! it prints what is durable and exits; `--after` and `--stream` select.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{EXIT_INTERRUPTED, EXIT_USAGE, path, run_annals, text};

/// `LSN STREAM SEQ` per acknowledged append, as `load --ack-log` writes them.
fn acknowledged(file: &std::path::Path) -> Vec<(u64, String, u64)> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|line| {
            let mut fields = line.split(' ');
            let lsn = fields.next().unwrap().parse().unwrap();
            let stream = fields.next().unwrap().to_owned();
            (lsn, stream, fields.next().unwrap().parse().unwrap())
        })
        .collect()
}

fn field(line: &serde_json::Value, name: &str) -> u64 {
    line[name].as_u64().unwrap_or_else(|| panic!("no {name} in {line}"))
}

/// The load runs until it is interrupted (it asks for far more records
/// than it can append in the test), so that the first record tail prints
/// arrives while it is still appending whatever the scheduler does: with a
/// load of a fixed size, a loaded machine could let the load finish before
/// tail printed anything (or before the test saw its first
/// acknowledgement), and the test failed although tail was right. Tail must
/// then print every record the load acknowledged (its ack log, and its
/// summary's count), exactly once, in LSN order.
#[test]
fn tail_follow_beside_a_live_load_prints_every_acknowledged_record_once_in_order() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("log");
    let acks = parent.path().join("acks");
    let requested = 100_000_000u64;
    let mut load = Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(["load", "--dir", path(&dir), "--records", &requested.to_string(), "--concurrency", "16"])
        .args(["--streams", "10", "--payload-bytes", "100", "--ack-log", path(&acks), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Start tailing while the writer runs: once it has acknowledged something.
    let started = Instant::now();
    while std::fs::metadata(&acks).map_or(0, |m| m.len()) == 0 {
        assert!(load.try_wait().unwrap().is_none(), "load ended before it acknowledged anything");
        // A liveness bound, not a measurement.
        assert!(started.elapsed() < Duration::from_secs(60), "load acknowledged nothing in 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut tail = Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(["tail", path(&dir), "--follow", "--json", "--poll-ms", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = tail.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let reading = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    // A liveness bound on each line, not a measurement.
    let next_line = |printed: usize| match lines.recv_timeout(Duration::from_secs(120)) {
        Ok(line) => line,
        Err(error) => panic!("tail printed {printed} records, then {error:?}"),
    };
    let mut printed = Vec::new();
    while printed.len() < 2_000 {
        printed.push(next_line(printed.len()));
    }
    // The load cannot have run out of records: it is still appending.
    assert!(load.try_wait().unwrap().is_none(), "load ended before it was interrupted");
    let sent = Command::new("kill").args(["-INT", &load.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = load.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(EXIT_INTERRUPTED), "load: {}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let records = summary["records"].as_u64().unwrap();
    assert_eq!(summary["closed_cleanly"], true, "{summary}");
    while printed.len() < records as usize {
        printed.push(next_line(printed.len()));
    }

    let sent = Command::new("kill").args(["-INT", &tail.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let status = tail.wait().unwrap();
    reading.join().unwrap();
    assert_eq!(status.code(), Some(EXIT_INTERRUPTED), "tail --follow stops on SIGINT");
    // Nothing after the last acknowledged record.
    printed.extend(lines.try_iter());

    let acked = acknowledged(&acks);
    assert_eq!(acked.len(), records as usize, "the summary counts every acknowledged append");
    let mut expected: Vec<(u64, String, u64)> = acked;
    expected.sort();
    let got: Vec<(u64, String, u64)> = printed
        .iter()
        .map(|line| (field(line, "lsn"), line["stream"].as_str().unwrap().to_owned(), field(line, "seq")))
        .collect();
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "tail printed out of LSN order, or twice");
    assert_eq!(got, expected, "tail printed every acknowledged record, exactly once");
    assert!(printed.iter().all(|line| field(line, "len") == 100 && line["kind"] == "entry"));
}

#[test]
fn tail_without_follow_prints_what_is_durable_and_selects_by_lsn_and_stream() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("log");
    let out = run_annals(&["load", "--dir", path(&dir), "--records", "30", "--streams", "3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let all = run_annals(&["tail", path(&dir), "--json"]);
    assert!(all.status.success(), "{}", text(&all.stderr));
    let lines: Vec<serde_json::Value> = support::dump_lines(&all);
    assert_eq!(lines.iter().map(|l| field(l, "lsn")).collect::<Vec<_>>(), (1..=30).collect::<Vec<_>>());

    let some = run_annals(&["tail", path(&dir), "--json", "--after", "20", "--stream", "stream-1"]);
    let lines = support::dump_lines(&some);
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| field(l, "lsn") > 20 && l["stream"] == "stream-1"), "{lines:?}");

    let text_out = run_annals(&["tail", path(&dir), "--after", "29"]);
    assert_eq!(text(&text_out.stdout).lines().count(), 1);
    assert!(text(&text_out.stdout).starts_with("lsn 30 stream "), "{}", text(&text_out.stdout));

    for bad in [&["--poll-ms", "0"][..], &["--after", "-1"], &["--poll-ms", "60001"]] {
        let out = run_annals(&[&["tail", path(&dir)][..], bad].concat());
        assert_eq!(out.status.code(), Some(EXIT_USAGE), "{bad:?}: {}", text(&out.stderr));
    }
    let missing = run_annals(&["tail", path(&parent.path().join("none"))]);
    assert_eq!(missing.status.code(), Some(support::EXIT_RUNTIME));
}

/// A damaged log is refused with the corruption exit code, not tailed
/// past the damage.
#[test]
fn tail_refuses_a_damaged_log_with_exit_code_1() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("log");
    let out = run_annals(&["load", "--dir", path(&dir), "--records", "50", "--streams", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let segment = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[64 + 60] ^= 0x10; // inside the first frame
    std::fs::write(&segment, bytes).unwrap();
    let out = run_annals(&["tail", path(&dir)]);
    assert_eq!(out.status.code(), Some(support::EXIT_CORRUPTION), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("verify"), "{}", text(&out.stderr));
}
