//! SIGINT or SIGTERM during `annals load` stops the appending: the log is
//! closed cleanly (the state file records a clean close, verify says
//! clean), the summary of what was acknowledged is printed, and the exit
//! code says it was interrupted.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use annals::fs::RealFs;
use annals::state::{StateRead, read_state};
use annals::{LogReader, Lsn};
use support::{EXIT_INTERRUPTED, path, run_annals, text};

/// Waits up to `limit` for `child` to exit; kills it and fails if it does not.
fn wait_for(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts a long `load` with an ack log, sends `signal` once it has
/// acknowledged appends, and checks what it left.
fn interrupted_load_closes_cleanly_and_prints_the_summary(signal: &str) {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("log");
    let acks = parent.path().join("acks");
    let requested = 100_000_000u64;
    let mut child = Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(["load", "--dir", path(&dir), "--records", &requested.to_string(), "--concurrency", "16"])
        .args(["--payload-bytes", "100", "--ack-log", path(&acks), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::fs::metadata(&acks).map_or(0, |m| m.len()) < 4096 {
        assert!(child.try_wait().unwrap().is_none(), "load ended before it was interrupted");
        assert!(started.elapsed() < Duration::from_secs(30), "load acknowledged nothing in 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(sent.success(), "kill -{signal}");
    let status = wait_for(&mut child, Duration::from_secs(30), "load after the signal");
    let out = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(EXIT_INTERRUPTED), "{signal}: stderr {}", text(&out.stderr));

    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{signal}: no summary ({e}): {}", text(&out.stdout)));
    assert_eq!(summary["interrupted"], true, "{summary}");
    assert_eq!(summary["closed_cleanly"], true, "{summary}");
    let records = summary["records"].as_u64().unwrap();
    assert!(records > 0 && records < requested, "{summary}");
    let acked = std::fs::read_to_string(&acks).unwrap();
    assert_eq!(acked.lines().count() as u64, records, "the summary counts every acknowledged append");
    assert!(text(&out.stderr).contains("interrupted"), "{}", text(&out.stderr));

    assert_clean_close(&dir);
    let reader = LogReader::open(&dir).unwrap();
    assert_eq!(reader.report().records, records, "every acknowledged append is in the log, and nothing else");
    assert_eq!(reader.last_lsn(), Lsn(summary["last_lsn"].as_u64().unwrap()));
    let out = run_annals(&["verify", path(&dir)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).ends_with("clean\n"), "{}", text(&out.stdout));
}

/// The state file records a clean close at the end of the log.
fn assert_clean_close(dir: &Path) {
    match read_state(&RealFs, dir).unwrap() {
        StateRead::Found { state, .. } => assert!(state.clean_close, "the log was not closed cleanly: {state:?}"),
        StateRead::Missing => panic!("no state file"),
        StateRead::Damaged(corruption) => panic!("damaged state file: {corruption}"),
    }
}

#[test]
fn sigint_during_load_closes_the_log_cleanly_and_prints_the_summary() {
    interrupted_load_closes_cleanly_and_prints_the_summary("INT");
}

#[test]
fn sigterm_during_load_closes_the_log_cleanly_and_prints_the_summary() {
    interrupted_load_closes_cleanly_and_prints_the_summary("TERM");
}
