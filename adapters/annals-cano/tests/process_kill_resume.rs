//! A workflow process is SIGKILLed mid-run and a second process resumes it
//! from the Annals log: cano's own crash scenarios (`recovery_e2e`,
//! `stepped_resume_e2e`), written anew, with `AnnalsCheckpointStore` where
//! cano uses its redb store. The child is `src/bin/cano_resume_child.rs`.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use annals_cano::AnnalsCheckpointStore;
use cano::recovery::{CheckpointStore, RowKind};

const CHILD: &str = env!("CARGO_BIN_EXE_cano_resume_child");
/// How long a child may take to reach the point where it is killed.
const CHILD_PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the child's stdout on a thread, so waiting for a line has a real
/// deadline even if the child hangs.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Waits for the first line `accept` takes, within the deadline.
fn wait_for_line(lines: &mpsc::Receiver<String>, accept: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + CHILD_PROGRESS_TIMEOUT;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match lines.recv_timeout(left) {
            Ok(line) if accept(&line) => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

fn kill(mut child: Child) {
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    assert!(!status.success(), "a killed child does not exit successfully");
}

fn side_effects(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// Loads a run in this process, then drops the store, releasing the lock
/// for the next child.
fn load_run(dir: &Path, workflow_id: &str) -> Vec<cano::CheckpointRow> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = AnnalsCheckpointStore::open(dir).expect("the killed child's lock is gone");
        store.load_run(workflow_id).await.expect("load the run")
    })
}

/// The core promise: a process killed inside `Work` leaves `Start` and
/// `Work` durable, and a new process resumes at `Work` without re-running
/// `Start`, finishes at `Done` and clears the run.
#[test]
fn a_run_killed_inside_a_task_resumes_in_a_new_process_without_re_running_earlier_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("checkpoints");
    let side_effects_file = dir.path().join("side-effects.txt");
    let workflow_id = "e2e-run";
    let child = |mode: &str| {
        let mut command = Command::new(CHILD);
        command.arg("work").arg(&log_dir).arg(workflow_id).arg(mode).arg(&side_effects_file);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    };

    let mut fresh = child("fresh").spawn().expect("spawn the fresh child");
    let lines = stdout_lines(&mut fresh);
    let parked = wait_for_line(&lines, |line| line == "WORK_SIDE_EFFECT_WRITTEN");
    assert!(parked.is_some(), "the fresh child did not reach Work in {CHILD_PROGRESS_TIMEOUT:?}");
    kill(fresh);
    assert_eq!(side_effects(&side_effects_file), ["Start", "Work"], "Start, then Work once, before the kill");

    let rows = load_run(&log_dir, workflow_id);
    let entered: Vec<(u64, &str)> = rows.iter().map(|row| (row.sequence, row.state.as_str())).collect();
    assert_eq!(entered, [(0, "Start"), (1, "Work")], "both state entries were durable when the process died");

    let resumed = child("resume").output().expect("run the resuming child");
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "resume failed ({}):\n{stdout}\n{stderr}", resumed.status);
    assert!(stdout.contains(&format!("RESUME {workflow_id} 1")), "no resume at sequence 1:\n{stdout}");
    assert!(stdout.contains("DONE Done"), "the resumed run did not finish at Done:\n{stdout}");
    assert_eq!(
        side_effects(&side_effects_file),
        ["Start", "Work", "Work"],
        "the resume re-ran Work (the task at the resume point) and not Start"
    );
    assert!(load_run(&log_dir, workflow_id).is_empty(), "a completed run clears its rows");
}

/// A `SteppedTask` killed mid-loop resumes from the last cursor the store
/// made durable, not from the start.
#[test]
fn a_stepped_task_killed_mid_loop_resumes_from_its_last_durable_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("checkpoints");
    let workflow_id = "stepped-run";
    let child = |mode: &str| {
        let mut command = Command::new(CHILD);
        command.arg("stepped").arg(&log_dir).arg(workflow_id).arg(mode);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    };
    let cursor_of = |line: &str| line.strip_prefix("STEP cursor=").and_then(|n| n.parse::<u32>().ok());

    let mut fresh = child("fresh").spawn().expect("spawn the fresh child");
    let lines = stdout_lines(&mut fresh);
    let reached = wait_for_line(&lines, |line| cursor_of(line).is_some_and(|n| n >= 3));
    assert!(reached.is_some(), "the fresh child did not reach cursor 3 in {CHILD_PROGRESS_TIMEOUT:?}");
    kill(fresh);

    let rows = load_run(&log_dir, workflow_id);
    let cursors: Vec<u32> = rows
        .iter()
        .filter(|row| row.kind == RowKind::StepCursor)
        .map(|row| serde_json::from_slice(row.output_blob.as_deref().expect("a cursor row has a blob")).unwrap())
        .collect();
    let last_cursor = *cursors.iter().max().expect("cursor rows were durable when the process died");
    assert!(last_cursor >= 3, "cursor 3 was announced, so it was durable; the log holds {cursors:?}");

    let resumed = child("resume").output().expect("run the resuming child");
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "resume failed ({}):\n{stdout}\n{stderr}", resumed.status);
    assert!(
        stdout.contains(&format!("RESUMED cursor={last_cursor}")),
        "the first resumed step did not get cursor {last_cursor}:\n{stdout}"
    );
    assert!(!stdout.contains("STEP cursor=0"), "the resumed task restarted from the beginning:\n{stdout}");
    assert!(stdout.contains("DONE Done"), "the resumed run did not finish at Done:\n{stdout}");
    assert!(load_run(&log_dir, workflow_id).is_empty(), "a completed run clears its rows");
}
