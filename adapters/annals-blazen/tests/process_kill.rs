//! A process saving and deleting blazen checkpoints is SIGKILLed mid-work
//! and a new process reopens the log: every acknowledged save and delete is
//! there, the one operation per writer that was in flight either happened
//! whole or not at all, and `list` is still newest first by timestamp. The
//! child is `src/bin/blazen_save_child.rs`; this file recomputes its
//! schedule (the same rules, kept in step by hand).
#![cfg(unix)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use annals_blazen::AnnalsCheckpointStore;
use blazen_persist::{CheckpointStore, WorkflowCheckpoint};
use uuid::Uuid;

const CHILD: &str = env!("CARGO_BIN_EXE_blazen_save_child");
/// How long the child may take to acknowledge enough operations.
const CHILD_PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent writer tasks in the child (their saves share fdatasyncs).
const WRITERS: u64 = 4;
/// Acknowledged operations, over all writers, before the kill.
const ACKS_BEFORE_KILL: u64 = 150;
/// As in the child.
const RUNS_PER_WRITER: u64 = 3;

/// What the child's operation `op` of a writer does to which slot:
/// `Some(op)` saves the checkpoint built for `op`, `None` deletes.
fn operation(op: u64) -> (u64, Option<u64>) {
    let slot = op % RUNS_PER_WRITER;
    if op % 5 == 4 { (slot, None) } else { (slot, Some(op)) }
}

fn run_id(writer: u64, slot: u64) -> Uuid {
    Uuid::from_u128((u128::from(writer) + 1) << 64 | u128::from(slot))
}

/// Which save (by op) each of a writer's slots holds after ops `0..ops`.
fn slots_after(ops: u64) -> [Option<u64>; RUNS_PER_WRITER as usize] {
    let mut slots = [None; RUNS_PER_WRITER as usize];
    for op in 0..ops {
        let (slot, saved) = operation(op);
        slots[slot as usize] = saved;
    }
    slots
}

/// Reads the child's stdout on a thread, so waiting has a real deadline.
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

/// Parses `ACK <writer> <op>`.
fn ack(line: &str) -> (u64, u64) {
    let parsed = line.strip_prefix("ACK ").and_then(|rest| {
        let (writer, op) = rest.split_once(' ')?;
        Some((writer.parse().ok()?, op.parse().ok()?))
    });
    parsed.unwrap_or_else(|| panic!("the child printed {line:?}"))
}

/// The op and writer recorded in a checkpoint's state by the child.
fn saved_by(checkpoint: &WorkflowCheckpoint) -> (u64, u64) {
    let field = |name: &str| checkpoint.state[name].as_u64().expect("the child records writer and op");
    (field("writer"), field("op"))
}

fn list_and_load(dir: &Path) -> (Vec<WorkflowCheckpoint>, HashMap<Uuid, Option<WorkflowCheckpoint>>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = AnnalsCheckpointStore::open(dir).expect("the killed child's lock is gone");
        let listed = store.list().await.expect("list after the kill");
        let mut loaded = HashMap::new();
        for writer in 0..WRITERS {
            for slot in 0..RUNS_PER_WRITER {
                let run = run_id(writer, slot);
                loaded.insert(run, store.load(&run).await.expect("load after the kill"));
            }
        }
        (listed, loaded)
    })
}

/// The promise blazen's crash recovery rests on: once `save` or `delete`
/// returned, the next process sees it, even if this one is killed at once;
/// an operation cut short by the kill is all or nothing.
#[test]
fn every_acknowledged_save_and_delete_survives_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("checkpoints");
    let mut child = Command::new(CHILD)
        .arg(&log_dir)
        .arg(WRITERS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let lines = stdout_lines(&mut child);

    // Acknowledged ops per writer; each writer acknowledges in op order.
    let mut acked = [0_u64; WRITERS as usize];
    let deadline = Instant::now() + CHILD_PROGRESS_TIMEOUT;
    while acked.iter().sum::<u64>() < ACKS_BEFORE_KILL || acked.contains(&0) {
        let left = deadline.checked_duration_since(Instant::now()).unwrap_or_default();
        let line = lines.recv_timeout(left).unwrap_or_else(|_| panic!("the child stalled at {acked:?} acks"));
        let (writer, op) = ack(&line);
        assert_eq!(op, acked[writer as usize], "writer {writer} acknowledged out of order");
        acked[writer as usize] += 1;
    }
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    assert!(!status.success(), "a killed child does not exit successfully");
    // Lines written before the kill are acknowledged too: drain them.
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) {
        let (writer, op) = ack(&line);
        assert_eq!(op, acked[writer as usize], "writer {writer} acknowledged out of order");
        acked[writer as usize] += 1;
    }

    let (listed, loaded) = list_and_load(&log_dir);
    let mut present = 0;
    for writer in 0..WRITERS {
        let acknowledged = slots_after(acked[writer as usize]);
        let with_in_flight = slots_after(acked[writer as usize] + 1);
        for slot in 0..RUNS_PER_WRITER {
            let run = run_id(writer, slot);
            let found = loaded[&run].as_ref().map(|checkpoint| {
                assert_eq!(checkpoint.run_id, run);
                let (by_writer, op) = saved_by(checkpoint);
                assert_eq!(by_writer, writer, "run {run} holds another writer's checkpoint");
                op
            });
            let allowed = [acknowledged[slot as usize], with_in_flight[slot as usize]];
            assert!(
                allowed.contains(&found),
                "writer {writer} slot {slot}: the log holds the save of op {found:?}, but after {} acknowledged \
                 ops it must hold {:?} (or {:?} if the op in flight landed)",
                acked[writer as usize],
                allowed[0],
                allowed[1]
            );
            present += usize::from(found.is_some());
        }
    }
    assert_eq!(listed.len(), present, "list returns exactly the runs that load");
    for checkpoint in &listed {
        let loaded = loaded[&checkpoint.run_id].as_ref().expect("a listed run loads");
        assert_eq!(saved_by(checkpoint), saved_by(loaded), "list and load agree on run {}", checkpoint.run_id);
    }
    assert!(listed.windows(2).all(|pair| pair[0].timestamp >= pair[1].timestamp), "newest first after the kill");
}
