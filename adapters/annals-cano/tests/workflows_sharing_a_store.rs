//! Whole cano workflows on one Annals store: many at once, two fighting over
//! one id, and a crash on the third append resumed on a store reopened in
//! the same process. cano's `recovery_hardening` scenarios, written anew,
//! with `AnnalsCheckpointStore` in place of redb.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use annals_cano::AnnalsCheckpointStore;
use cano::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Step {
    Start,
    Work,
    Done,
}

/// A file the tasks append their names to.
struct SideEffects(PathBuf);

impl Resource for SideEffects {}

impl SideEffects {
    fn record(&self, task: &str) {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.0).unwrap();
        writeln!(file, "{task}").unwrap();
    }
}

fn side_effects(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

#[derive(Clone)]
struct StartTask;

#[cano::task(state = Step)]
impl StartTask {
    async fn run(&self, resources: &Resources) -> Result<TaskResult<Step>, CanoError> {
        resources.get::<SideEffects, _>("side effects")?.record("Start");
        Ok(TaskResult::Single(Step::Work))
    }
}

#[derive(Clone)]
struct WorkTask;

#[cano::task(state = Step)]
impl WorkTask {
    async fn run(&self, resources: &Resources) -> Result<TaskResult<Step>, CanoError> {
        resources.get::<SideEffects, _>("side effects")?.record("Work");
        Ok(TaskResult::Single(Step::Done))
    }
}

fn workflow(store: Arc<dyn CheckpointStore>, workflow_id: &str, side_effects: &Path) -> Workflow<Step> {
    Workflow::new(Resources::new().insert("side effects", SideEffects(side_effects.to_owned())))
        .register(Step::Start, StartTask)
        .register(Step::Work, WorkTask)
        .add_exit_state(Step::Done)
        .with_checkpoint_store(store)
        .with_workflow_id(workflow_id.to_owned())
}

/// Twelve workflows share one store and one log: each runs every task once,
/// finishes, and clears only its own rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twelve_concurrent_workflows_on_one_store_each_complete_once() {
    const WORKFLOWS: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(AnnalsCheckpointStore::open(dir.path().join("log")).unwrap());
    let runs: Vec<_> = (0..WORKFLOWS)
        .map(|index| {
            let store = store.clone();
            let side_effects = dir.path().join(format!("side-effects-{index}.txt"));
            tokio::spawn(async move {
                workflow(store, &format!("run-{index}"), &side_effects)
                    .orchestrate(Step::Start, CancellationToken::disabled())
                    .await
            })
        })
        .collect();
    for run in runs {
        assert_eq!(run.await.unwrap().unwrap(), Step::Done);
    }
    for index in 0..WORKFLOWS {
        assert!(store.load_run(&format!("run-{index}")).await.unwrap().is_empty(), "run-{index} left rows");
        assert_eq!(side_effects(&dir.path().join(format!("side-effects-{index}.txt"))), ["Start", "Work"]);
    }
}

/// Lets the first append of sequence 0 wait for the second, so two runs of
/// one id really race for it.
struct RaceForSequenceZero {
    inner: AnnalsCheckpointStore,
    both_arrived: tokio::sync::Barrier,
}

#[cano::checkpoint_store]
impl CheckpointStore for RaceForSequenceZero {
    async fn append(&self, workflow_id: &str, row: CheckpointRow) -> Result<(), CanoError> {
        if row.sequence == 0 {
            self.both_arrived.wait().await;
        }
        self.inner.append(workflow_id, row).await
    }

    async fn load_run(&self, workflow_id: &str) -> Result<Vec<CheckpointRow>, CanoError> {
        self.inner.load_run(workflow_id).await
    }

    async fn clear(&self, workflow_id: &str) -> Result<(), CanoError> {
        self.inner.clear(workflow_id).await
    }
}

/// Two runs started under one id (a misuse cano guards against): exactly
/// one wins sequence 0 and completes; the other fails with cano's
/// `checkpoint_store` category before any of its tasks runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_racing_one_id_one_loses_with_the_checkpoint_store_category() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(RaceForSequenceZero {
        inner: AnnalsCheckpointStore::open(dir.path().join("log")).unwrap(),
        both_arrived: tokio::sync::Barrier::new(2),
    });
    let runs: Vec<_> = (0..2)
        .map(|index| {
            let store = store.clone();
            let side_effects = dir.path().join(format!("side-effects-{index}.txt"));
            tokio::spawn(async move {
                let outcome =
                    workflow(store, "dup", &side_effects).orchestrate(Step::Start, CancellationToken::disabled()).await;
                (outcome, side_effects)
            })
        })
        .collect();
    let (mut won, mut lost) = (0, 0);
    for run in runs {
        let (outcome, side_effects_file) = run.await.unwrap();
        match outcome {
            Ok(state) => {
                assert_eq!(state, Step::Done);
                assert_eq!(side_effects(&side_effects_file), ["Start", "Work"]);
                won += 1;
            }
            Err(error) => {
                assert_eq!(error.inner().category(), "checkpoint_store", "{error}");
                assert!(error.message().contains("checkpoint conflict"), "{error}");
                assert!(side_effects(&side_effects_file).is_empty(), "the loser ran a task");
                lost += 1;
            }
        }
    }
    assert_eq!((won, lost), (1, 1));
}

/// Fails every append after the first `ok_appends`: a process that dies
/// with its earlier rows durable.
struct KillAfter {
    inner: AnnalsCheckpointStore,
    ok_appends: usize,
    appends: AtomicUsize,
}

#[cano::checkpoint_store]
impl CheckpointStore for KillAfter {
    async fn append(&self, workflow_id: &str, row: CheckpointRow) -> Result<(), CanoError> {
        if self.appends.fetch_add(1, Ordering::SeqCst) >= self.ok_appends {
            return Err(CanoError::checkpoint_store("simulated crash"));
        }
        self.inner.append(workflow_id, row).await
    }

    async fn load_run(&self, workflow_id: &str) -> Result<Vec<CheckpointRow>, CanoError> {
        self.inner.load_run(workflow_id).await
    }

    async fn clear(&self, workflow_id: &str) -> Result<(), CanoError> {
        self.inner.clear(workflow_id).await
    }
}

/// The third append (Done's entry row) fails; once that workflow and its
/// store are dropped, the same process reopens the log directory (so the
/// lock was released), resumes at Work without re-running Start, and the
/// completed run leaves an empty log for its id.
#[tokio::test]
async fn a_crash_on_the_third_append_resumes_on_a_store_reopened_in_the_same_process() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let side_effects_file = dir.path().join("side-effects.txt");
    {
        let store = Arc::new(KillAfter {
            inner: AnnalsCheckpointStore::open(&log_dir).unwrap(),
            ok_appends: 2,
            appends: AtomicUsize::new(0),
        });
        let error = workflow(store, "gen", &side_effects_file)
            .orchestrate(Step::Start, CancellationToken::disabled())
            .await
            .expect_err("the third append fails");
        assert_eq!(error.inner().category(), "checkpoint_store", "{error}");
    }
    assert_eq!(side_effects(&side_effects_file), ["Start", "Work"]);

    let store = Arc::new(AnnalsCheckpointStore::open(&log_dir).expect("dropping the first store released the lock"));
    let rows = store.load_run("gen").await.unwrap();
    assert_eq!(rows.iter().map(|row| row.state.as_str()).collect::<Vec<_>>(), ["Start", "Work"]);
    let resumed =
        workflow(store.clone(), "gen", &side_effects_file).resume_from("gen", CancellationToken::disabled()).await;
    assert_eq!(resumed.unwrap(), Step::Done);
    assert_eq!(side_effects(&side_effects_file), ["Start", "Work", "Work"], "Work re-ran, Start did not");
    drop(store);

    let reopened = AnnalsCheckpointStore::open(&log_dir).unwrap();
    assert!(reopened.load_run("gen").await.unwrap().is_empty(), "the completed run cleared its rows");
}

/// `resume_from` refuses rows stamped with another workflow version: the
/// version cano stamps survives the Annals log and still guards the resume.
#[tokio::test]
async fn a_run_checkpointed_under_one_workflow_version_refuses_to_resume_under_another() {
    let dir = tempfile::tempdir().unwrap();
    let side_effects_file = dir.path().join("side-effects.txt");
    let inner = AnnalsCheckpointStore::open(dir.path().join("log")).unwrap();
    inner.append("versioned", CheckpointRow::new(0, "Start", "StartTask").with_workflow_version(2)).await.unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(inner);

    let error = workflow(store.clone(), "versioned", &side_effects_file)
        .with_workflow_version(3)
        .resume_from("versioned", CancellationToken::disabled())
        .await
        .expect_err("version 2 rows under a version 3 workflow");
    assert!(
        matches!(error.inner(), CanoError::WorkflowVersionMismatch { stored: 2, expected: 3 }),
        "expected a version mismatch, got {error}"
    );
    assert!(side_effects(&side_effects_file).is_empty(), "no task ran");

    let resumed = workflow(store, "versioned", &side_effects_file)
        .with_workflow_version(2)
        .resume_from("versioned", CancellationToken::disabled())
        .await;
    assert_eq!(resumed.unwrap(), Step::Done, "the matching version resumes");
}
