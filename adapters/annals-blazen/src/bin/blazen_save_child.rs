//! The child process of `tests/process_kill.rs`: saves and deletes blazen
//! checkpoints on an [`AnnalsCheckpointStore`] until the test SIGKILLs it.
//! Not meant to be run by hand.
//!
//! ```text
//! blazen_save_child <log dir> <writers>
//! ```
//!
//! Each of `writers` tasks runs its own deterministic schedule of
//! operations (see [`operation`]) on its own runs, one at a time, and prints
//! `ACK <writer> <op>` once the store has acknowledged operation `op`, so
//! every printed line is a promise that the operation is durable. The test
//! recomputes the schedule to know what the log must hold.

use std::io::Write as _;
use std::sync::Arc;

use annals_blazen::AnnalsCheckpointStore;
use blazen_persist::{CheckpointStore, SerializedEvent, WorkflowCheckpoint};
use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

/// Runs each writer owns.
const RUNS_PER_WRITER: u64 = 3;
/// Operations a writer performs before it stops (the test kills it long
/// before, unless the test itself died).
const OPS_PER_WRITER_MAX: u64 = 50_000;

/// What operation `op` of a writer does. The test uses the same rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// Saves the checkpoint [`checkpoint`] builds for `(writer, op)`.
    Save { slot: u64 },
    /// Deletes the slot's run (which may have no checkpoint).
    Delete { slot: u64 },
}

fn operation(op: u64) -> Action {
    let slot = op % RUNS_PER_WRITER;
    if op % 5 == 4 { Action::Delete { slot } } else { Action::Save { slot } }
}

fn run_id(writer: u64, slot: u64) -> Uuid {
    Uuid::from_u128((u128::from(writer) + 1) << 64 | u128::from(slot))
}

/// Timestamps run backwards as operations go forwards, so newest-first by
/// timestamp is the opposite of the order the saves were committed in.
fn timestamp(writer: u64, op: u64) -> DateTime<Utc> {
    let base = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z").expect("a valid base time").to_utc();
    let step = i64::try_from(op * 16 + writer).expect("op fits in i64");
    base - TimeDelta::milliseconds(step)
}

fn checkpoint(writer: u64, op: u64, slot: u64) -> WorkflowCheckpoint {
    WorkflowCheckpoint {
        workflow_name: format!("writer-{writer}"),
        run_id: run_id(writer, slot),
        timestamp: timestamp(writer, op),
        state: [
            ("writer".to_owned(), serde_json::json!(writer)),
            ("op".to_owned(), serde_json::json!(op)),
            ("padding".to_owned(), serde_json::json!("x".repeat(512))),
        ]
        .into(),
        pending_events: vec![SerializedEvent {
            event_type: "blazen::StartEvent".to_owned(),
            data: serde_json::json!({ "op": op }),
        }],
        metadata: Default::default(),
    }
}

/// Prints a line for the parent; exits if the parent is gone.
fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{line}").and_then(|()| stdout.flush()).is_err() {
        std::process::exit(1);
    }
}

async fn write(store: Arc<AnnalsCheckpointStore>, writer: u64) -> Result<(), String> {
    for op in 0..OPS_PER_WRITER_MAX {
        match operation(op) {
            Action::Save { slot } => store.save(&checkpoint(writer, op, slot)).await,
            Action::Delete { slot } => store.delete(&run_id(writer, slot)).await,
        }
        .map_err(|error| format!("writer {writer}, op {op}: {error}"))?;
        say(&format!("ACK {writer} {op}"));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, writers] = &args[..] else {
        eprintln!("usage: blazen_save_child <log dir> <writers>");
        std::process::exit(2);
    };
    let writers: u64 = writers.parse()?;
    let store = Arc::new(AnnalsCheckpointStore::open(dir)?);
    let tasks: Vec<_> = (0..writers).map(|writer| tokio::spawn(write(Arc::clone(&store), writer))).collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}
