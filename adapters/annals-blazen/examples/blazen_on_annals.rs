//! blazen-persist's `CheckpointStore` on Annals: a run's checkpoint saved
//! at each step (each save replaces the last), loaded back as
//! `Workflow::resume_from` would, listed newest first, and deleted.
//!
//! ```text
//! cargo run --release -p annals-blazen --example blazen_on_annals [DIR]
//! ```
//!
//! With `DIR` the log is kept there (look at it with
//! `annals dump DIR --decode`); without, in a temporary directory.

use std::collections::HashMap;
use std::sync::Arc;

use annals_blazen::AnnalsCheckpointStore;
use blazen_persist::{CheckpointStore, SerializedEvent, WorkflowCheckpoint};
use serde_json::json;

fn checkpoint(run_id: uuid::Uuid, step: &str, pending: &str) -> WorkflowCheckpoint {
    WorkflowCheckpoint {
        workflow_name: "summarise-report".to_owned(),
        run_id,
        timestamp: chrono::Utc::now(),
        state: HashMap::from([("step".to_owned(), json!(step))]),
        pending_events: vec![SerializedEvent { event_type: pending.to_owned(), data: json!({ "step": step }) }],
        metadata: HashMap::new(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let dir = std::env::args_os().nth(1).map_or_else(|| scratch.path().join("checkpoints"), Into::into);

    // The one line that changes: the store blazen is given.
    let store: Arc<dyn CheckpointStore> = Arc::new(AnnalsCheckpointStore::open(&dir)?);

    let run_id = uuid::Uuid::new_v4();
    for (step, pending) in [("fetch", "app::Fetched"), ("summarise", "app::Summarised")] {
        store.save(&checkpoint(run_id, step, pending)).await?;
        println!("saved run {run_id} at step {step}");
    }
    let other = uuid::Uuid::new_v4();
    store.save(&checkpoint(other, "fetch", "app::Fetched")).await?;

    // What `Workflow::resume_from(store, &run_id, steps)` reads first.
    let loaded = store.load(&run_id).await?.expect("saved above");
    println!("load: step {} with {} pending event(s)", loaded.state["step"], loaded.pending_events.len());
    let listed: Vec<_> = store.list().await?.into_iter().map(|checkpoint| checkpoint.run_id).collect();
    println!("list, newest first: {listed:?}");
    store.delete(&other).await?;
    println!("after delete: {} run(s)", store.list().await?.len());
    if std::env::args_os().nth(1).is_some() {
        println!("log in {}", dir.display());
    } else {
        println!("log in a temporary directory, removed on exit (give a DIR to keep it)");
    }
    Ok(())
}
