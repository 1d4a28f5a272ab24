//! A cano workflow on Annals: the run fails in `Charge`, its checkpoint rows
//! stay in the log, and `resume_from` picks it up where it stopped.
//!
//! ```text
//! cargo run --release -p annals-cano --example cano_on_annals [DIR]
//! ```
//!
//! With `DIR` the log is kept there; without, in a temporary directory.
//! The finished run's rows are cleared, as cano does, so
//! `annals dump DIR` prints no live record; `annals stats DIR` counts the
//! operations left on disk until compaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use annals_cano::AnnalsCheckpointStore;
use cano::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Order {
    Reserve,
    Charge,
    Ship,
    Done,
}

#[derive(Clone)]
struct Reserve;

#[cano::task(state = Order)]
impl Reserve {
    async fn run(&self, _resources: &Resources) -> Result<TaskResult<Order>, CanoError> {
        println!("  reserve: two items held");
        Ok(TaskResult::Single(Order::Charge))
    }
}

/// Fails the first time, as a payment provider that times out would.
#[derive(Clone)]
struct Charge {
    failed_once: Arc<AtomicBool>,
}

#[cano::task(state = Order)]
impl Charge {
    /// No retries: the failure ends the run, and `resume_from` continues it.
    fn config(&self) -> TaskConfig {
        TaskConfig::minimal()
    }

    async fn run(&self, _resources: &Resources) -> Result<TaskResult<Order>, CanoError> {
        if !self.failed_once.swap(true, Ordering::SeqCst) {
            println!("  charge: the provider timed out");
            return Err(CanoError::task_execution("payment provider timed out"));
        }
        println!("  charge: paid");
        Ok(TaskResult::Single(Order::Ship))
    }
}

#[derive(Clone)]
struct Ship;

#[cano::task(state = Order)]
impl Ship {
    async fn run(&self, _resources: &Resources) -> Result<TaskResult<Order>, CanoError> {
        println!("  ship: label printed");
        Ok(TaskResult::Single(Order::Done))
    }
}

fn workflow(store: Arc<AnnalsCheckpointStore>, charge: &Charge) -> Workflow<Order> {
    Workflow::bare()
        .register(Order::Reserve, Reserve)
        .register(Order::Charge, charge.clone())
        .register(Order::Ship, Ship)
        .add_exit_state(Order::Done)
        .with_checkpoint_store(store)
        .with_workflow_id("order-42")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let dir = std::env::args_os().nth(1).map_or_else(|| scratch.path().join("checkpoints"), Into::into);

    // The one line that changes: the store.
    let store = Arc::new(AnnalsCheckpointStore::open(&dir)?);
    let charge = Charge { failed_once: Arc::new(AtomicBool::new(false)) };

    println!("first attempt:");
    let failed = workflow(store.clone(), &charge).orchestrate(Order::Reserve, CancellationToken::disabled()).await;
    println!("  -> {}", failed.expect_err("the first charge fails"));
    for row in store.load_run("order-42").await? {
        println!("  durable row {}: entered {} ({})", row.sequence, row.state, row.task_id);
    }

    println!("resume_from:");
    let done = workflow(store.clone(), &charge).resume_from("order-42", CancellationToken::disabled()).await?;
    println!("  -> finished in {done:?}; rows left: {}", store.load_run("order-42").await?.len());
    store.close().await?;
    if std::env::args_os().nth(1).is_some() {
        println!("log in {}", dir.display());
    } else {
        println!("log in a temporary directory, removed on exit (give a DIR to keep it)");
    }
    Ok(())
}
