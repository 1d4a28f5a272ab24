//! A saga resumed from the Annals log compensates each completed step once:
//! cano's `saga_hardening` crash scenario, written anew, with
//! `AnnalsCheckpointStore` in place of redb.

use std::sync::{Arc, Mutex};

use annals_cano::AnnalsCheckpointStore;
use cano::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Stage {
    Reserve,
    Charge,
    Ship,
    Done,
}

/// What was compensated, in order: (step name, the output it undid).
#[derive(Clone, Default)]
struct Compensations(Arc<Mutex<Vec<(String, u32)>>>);

impl Resource for Compensations {}

/// A compensatable step: `run` yields `output` and moves to `next`, or
/// fails before doing anything if `fails`; `compensate` records what it undid.
#[derive(Clone)]
struct SagaStep {
    name: &'static str,
    output: u32,
    next: Stage,
    fails: bool,
}

#[cano::saga::task(state = Stage)]
impl SagaStep {
    type Output = u32;

    fn config(&self) -> TaskConfig {
        TaskConfig::minimal()
    }

    fn name(&self) -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed(self.name)
    }

    async fn run(&self, _resources: &Resources) -> Result<(TaskResult<Stage>, u32), CanoError> {
        if self.fails {
            return Err(CanoError::task_execution(format!("{} failed", self.name)));
        }
        Ok((TaskResult::Single(self.next.clone()), self.output))
    }

    async fn compensate(&self, resources: &Resources, output: u32) -> Result<(), CanoError> {
        let compensations = resources.get::<Compensations, _>("compensations")?;
        compensations.0.lock().unwrap().push((self.name.to_owned(), output));
        Ok(())
    }
}

fn saga(store: Arc<AnnalsCheckpointStore>, compensations: Compensations) -> Workflow<Stage> {
    let step = |name, output, next, fails| SagaStep { name, output, next, fails };
    Workflow::new(Resources::new().insert("compensations", compensations))
        .register_with_compensation(Stage::Reserve, step("reserve", 1, Stage::Charge, false))
        .register_with_compensation(Stage::Charge, step("charge", 2, Stage::Ship, false))
        .register_with_compensation(Stage::Ship, step("ship", 3, Stage::Done, true))
        .add_exit_state(Stage::Done)
        .with_checkpoint_store(store)
}

/// A crash after `charge`'s completion row and before the next state's
/// entry row: on resume `charge` runs again, and its persisted completion
/// row must not be replayed as well, or the rollback would refund it twice.
#[tokio::test]
async fn a_saga_resumed_after_a_completion_row_compensates_each_step_once() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("checkpoints");
    let blob = |output: u32| serde_json::to_vec(&output).unwrap();
    {
        // The log a crashed process left: entry and completion rows of the
        // first two steps, nothing after. Closed explicitly, so the reopen
        // below also proves `close` releases the directory.
        let crashed = AnnalsCheckpointStore::open(&log_dir).unwrap();
        for row in [
            CheckpointRow::new(0, "Reserve", "reserve"),
            CheckpointRow::new(1, "Reserve", "reserve").with_output(blob(1)),
            CheckpointRow::new(2, "Charge", "charge"),
            CheckpointRow::new(3, "Charge", "charge").with_output(blob(2)),
        ] {
            crashed.append("order-7", row).await.unwrap();
        }
        crashed.close().await.unwrap();
    }

    let store = Arc::new(AnnalsCheckpointStore::open(&log_dir).expect("close released the directory"));
    let compensations = Compensations::default();
    let error = saga(store.clone(), compensations.clone())
        .resume_from("order-7", CancellationToken::disabled())
        .await
        .expect_err("ship fails, so the saga rolls back");
    assert_eq!(error.message(), "ship failed");
    assert_eq!(
        *compensations.0.lock().unwrap(),
        [("charge".to_owned(), 2), ("reserve".to_owned(), 1)],
        "charge compensated once (its re-run, not also its persisted row), then reserve"
    );
    assert!(store.load_run("order-7").await.unwrap().is_empty(), "a clean rollback clears the run");
}

/// The same saga without a crash: a failure rolls back every completed
/// step in reverse order and leaves no rows, through the Annals store.
#[tokio::test]
async fn a_saga_that_fails_rolls_back_in_reverse_and_clears_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(AnnalsCheckpointStore::open(dir.path()).unwrap());
    let compensations = Compensations::default();
    let error = saga(store.clone(), compensations.clone())
        .with_workflow_id("order-8")
        .orchestrate(Stage::Reserve, CancellationToken::disabled())
        .await
        .expect_err("ship fails");
    assert_eq!(error.message(), "ship failed");
    assert_eq!(*compensations.0.lock().unwrap(), [("charge".to_owned(), 2), ("reserve".to_owned(), 1)]);
    assert!(store.load_run("order-8").await.unwrap().is_empty());
}
