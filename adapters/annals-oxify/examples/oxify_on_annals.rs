//! oxify-model's `CheckpointStorage` on Annals: an execution checkpointed
//! after each node, its history listed newest first from the headers alone,
//! the latest loaded back, and the history pruned to the newest two.
//!
//! ```text
//! cargo run --release -p annals-oxify --example oxify_on_annals [DIR]
//! ```
//!
//! With `DIR` the log is kept there (look at it with
//! `annals dump DIR --decode`); without, in a temporary directory.

use annals_oxify::AnnalsCheckpointStorage;
use oxify_model::{CheckpointStorage, ExecutionCheckpoint, ExecutionState};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let dir = std::env::args_os().nth(1).map_or_else(|| scratch.path().join("checkpoints"), Into::into);

    // The one line that changes: the storage.
    let storage = AnnalsCheckpointStorage::open(&dir)?;

    let execution = uuid::Uuid::new_v4();
    let mut completed_nodes = Vec::new();
    for node in 0..4 {
        completed_nodes.push(uuid::Uuid::new_v4());
        let checkpoint = ExecutionCheckpoint {
            timestamp: chrono::Utc::now(),
            completed_nodes: completed_nodes.clone(),
            variables: [("node".to_owned(), serde_json::json!(node))].into(),
            state: ExecutionState::Running,
        };
        let id = storage.save_checkpoint(execution, &checkpoint)?;
        println!("saved checkpoint {id} after node {node}");
    }
    for meta in storage.list_checkpoints(execution)? {
        println!("listed {}: {} completed node(s), {} bytes", meta.id, meta.completed_node_count, meta.size_bytes);
    }
    let latest = storage.load_latest_checkpoint(execution)?.expect("saved above");
    println!("latest has {} completed node(s)", latest.completed_nodes.len());
    println!("prune keeping 2: {} deleted", storage.prune_checkpoints(execution, 2)?);
    if std::env::args_os().nth(1).is_some() {
        println!("log in {}", dir.display());
    } else {
        println!("log in a temporary directory, removed on exit (give a DIR to keep it)");
    }
    Ok(())
}
