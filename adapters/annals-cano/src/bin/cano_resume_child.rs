//! The child process of `tests/process_kill_resume.rs`: runs a cano workflow
//! on an [`AnnalsCheckpointStore`] until the test SIGKILLs it, or resumes
//! one. Not meant to be run by hand.
//!
//! ```text
//! cano_resume_child work <log dir> <workflow id> <fresh|resume> <side-effects file>
//! cano_resume_child stepped <log dir> <workflow id> <fresh|resume>
//! ```
//!
//! `work` runs `Start → Work → Done`. Each task appends its name to the
//! side-effects file when it runs; in `fresh` mode `Work` then prints
//! `WORK_SIDE_EFFECT_WRITTEN` and parks, so the parent kills it with the
//! `Work` row durable (rows are written on entering a state, before its
//! task runs). `stepped` runs a `SteppedTask` counting 0 to 9 in state
//! `Count`, printing `STEP cursor=N` at each step (50 ms apart); in
//! `resume` mode the first step prints `RESUMED cursor=N` instead.
//!
//! Both print `RESUME <id> <sequence>` when cano resumes a run and
//! `DONE <final state>` when the workflow finishes.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use annals_cano::AnnalsCheckpointStore;
use cano::prelude::*;

/// How many steps the stepped task takes.
const STEPS: u32 = 10;

fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Step {
    Start,
    Work,
    Done,
}

/// The file the tasks append their names to, read by the parent.
#[derive(cano::Resource)]
struct SideEffects(PathBuf);

impl SideEffects {
    fn record(&self, task: &str) -> Result<(), CanoError> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.0)
            .map_err(|error| CanoError::task_execution(format!("open {}: {error}", self.0.display())))?;
        writeln!(file, "{task}").map_err(|error| CanoError::task_execution(format!("append: {error}")))
    }
}

/// Whether `Work` parks after its side effect, waiting to be killed.
#[derive(cano::Resource)]
struct ParkInWork(bool);

#[derive(Clone)]
struct StartTask;

#[cano::task(state = Step)]
impl StartTask {
    async fn run(&self, resources: &Resources) -> Result<TaskResult<Step>, CanoError> {
        resources.get::<SideEffects, _>("side effects")?.record("Start")?;
        Ok(TaskResult::Single(Step::Work))
    }
}

#[derive(Clone)]
struct WorkTask;

#[cano::task(state = Step)]
impl WorkTask {
    async fn run(&self, resources: &Resources) -> Result<TaskResult<Step>, CanoError> {
        resources.get::<SideEffects, _>("side effects")?.record("Work")?;
        say("WORK_SIDE_EFFECT_WRITTEN");
        if resources.get::<ParkInWork, _>("park")?.0 {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Ok(TaskResult::Single(Step::Done))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Counting {
    Count,
    Done,
}

struct Counter {
    resumed: bool,
    first_step: AtomicBool,
}

#[cano::task::stepped(state = Counting)]
impl Counter {
    async fn step(&self, _resources: &Resources, cursor: Option<u32>) -> Result<StepOutcome<u32, Counting>, CanoError> {
        let n = cursor.unwrap_or(0);
        if self.resumed && self.first_step.swap(false, Ordering::SeqCst) {
            say(&format!("RESUMED cursor={n}"));
        } else {
            say(&format!("STEP cursor={n}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if n + 1 >= STEPS {
            Ok(StepOutcome::Done(TaskResult::Single(Counting::Done)))
        } else {
            Ok(StepOutcome::More(n + 1))
        }
    }
}

/// Prints cano's resume notice for the parent.
struct ResumeMarker;

impl WorkflowObserver for ResumeMarker {
    fn on_resume(&self, workflow_id: &str, sequence: u64) {
        say(&format!("RESUME {workflow_id} {sequence}"));
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Fresh,
    Resume,
}

fn mode(arg: &str) -> Result<Mode, String> {
    match arg {
        "fresh" => Ok(Mode::Fresh),
        "resume" => Ok(Mode::Resume),
        other => Err(format!("mode must be fresh or resume, not {other:?}")),
    }
}

async fn work(
    dir: &str,
    workflow_id: &str,
    mode: Mode,
    side_effects: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let store = Arc::new(AnnalsCheckpointStore::open(dir)?);
    let resources = Resources::new()
        .insert("side effects", SideEffects(PathBuf::from(side_effects)))
        .insert("park", ParkInWork(mode == Mode::Fresh));
    let workflow = Workflow::new(resources)
        .register(Step::Start, StartTask)
        .register(Step::Work, WorkTask)
        .add_exit_state(Step::Done)
        .with_checkpoint_store(store)
        .with_workflow_id(workflow_id.to_owned())
        .with_observer(Arc::new(ResumeMarker));
    let done = match mode {
        Mode::Fresh => workflow.orchestrate(Step::Start, CancellationToken::disabled()).await?,
        Mode::Resume => workflow.resume_from(workflow_id.to_owned(), CancellationToken::disabled()).await?,
    };
    Ok(format!("{done:?}"))
}

async fn stepped(dir: &str, workflow_id: &str, mode: Mode) -> Result<String, Box<dyn std::error::Error>> {
    let store = Arc::new(AnnalsCheckpointStore::open(dir)?);
    let counter = Counter { resumed: mode == Mode::Resume, first_step: AtomicBool::new(true) };
    let workflow = Workflow::bare()
        .register_stepped(Counting::Count, counter)
        .add_exit_state(Counting::Done)
        .with_checkpoint_store(store)
        .with_workflow_id(workflow_id.to_owned())
        .with_observer(Arc::new(ResumeMarker));
    let done = match mode {
        Mode::Fresh => workflow.orchestrate(Counting::Count, CancellationToken::disabled()).await?,
        Mode::Resume => workflow.resume_from(workflow_id.to_owned(), CancellationToken::disabled()).await?,
    };
    Ok(format!("{done:?}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let done = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["work", dir, workflow_id, run_mode, side_effects] => {
            work(dir, workflow_id, mode(run_mode)?, side_effects).await?
        }
        ["stepped", dir, workflow_id, run_mode] => stepped(dir, workflow_id, mode(run_mode)?).await?,
        _ => {
            eprintln!("usage: cano_resume_child work <log dir> <workflow id> <fresh|resume> <side-effects file>");
            eprintln!("       cano_resume_child stepped <log dir> <workflow id> <fresh|resume>");
            std::process::exit(2);
        }
    };
    say(&format!("DONE {done}"));
    Ok(())
}
