//! blazen-persist's `CheckpointStore` contract through the adapter: save and
//! load, a missing run is `None`, `list` newest first by timestamp, delete,
//! save overwrites, each across a reopen of the log; written anew against
//! `AnnalsCheckpointStore` and used as blazen uses a store, through
//! `Arc<dyn CheckpointStore>`. Then what is particular to Annals: damaged
//! and misfiled checkpoints, concurrency, the record limit, the lock.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use annals::stores::whole_checkpoints::{CHECKPOINT_STREAM_PREFIX, WholeCheckpoints};
use annals::stores::{Backend, Expect, StoreOp};
use annals_blazen::AnnalsCheckpointStore;
use blazen_persist::{CheckpointStore, PersistError, SerializedEvent, WorkflowCheckpoint};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use uuid::Uuid;

/// The store as blazen holds it.
fn open(dir: &Path) -> Arc<dyn CheckpointStore> {
    Arc::new(AnnalsCheckpointStore::open(dir).expect("open the store"))
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).expect("a valid time").to_utc()
}

fn checkpoint(name: &str, run_id: Uuid, timestamp: DateTime<Utc>) -> WorkflowCheckpoint {
    WorkflowCheckpoint {
        workflow_name: name.to_owned(),
        run_id,
        timestamp,
        state: HashMap::from([("step".to_owned(), json!(name))]),
        pending_events: Vec::new(),
        metadata: HashMap::new(),
    }
}

/// A checkpoint using every kind of value blazen puts in one.
fn rich_checkpoint() -> WorkflowCheckpoint {
    WorkflowCheckpoint {
        workflow_name: "pipeline ✓".to_owned(),
        run_id: Uuid::new_v4(),
        timestamp: at("2026-03-04T05:06:07.123456789Z"),
        state: HashMap::from([
            ("counter".to_owned(), json!(42)),
            ("negative".to_owned(), json!(-7)),
            ("largest".to_owned(), json!(u64::MAX)),
            ("smallest".to_owned(), json!(i64::MIN)),
            ("ratio".to_owned(), json!(0.1)),
            ("nothing".to_owned(), json!(null)),
            ("nested".to_owned(), json!({ "list": [1, "two", false, { "deep": [] }], "empty": {} })),
            ("text".to_owned(), json!("")),
        ]),
        pending_events: vec![
            SerializedEvent { event_type: "blazen::StartEvent".to_owned(), data: json!({ "input": "hello" }) },
            SerializedEvent { event_type: "app::Approved".to_owned(), data: json!(["by", 3]) },
        ],
        metadata: HashMap::from([("attempt".to_owned(), json!(2)), ("host".to_owned(), json!("a"))]),
    }
}

/// `WorkflowCheckpoint` has no `PartialEq`: compare what serde sees.
fn as_json(checkpoint: &WorkflowCheckpoint) -> serde_json::Value {
    serde_json::to_value(checkpoint).expect("a checkpoint is JSON")
}

fn run_ids(checkpoints: &[WorkflowCheckpoint]) -> Vec<Uuid> {
    checkpoints.iter().map(|checkpoint| checkpoint.run_id).collect()
}

/// Resume needs back exactly what was saved: every field, every kind of
/// JSON value and the timestamp to the nanosecond, in a later process.
#[tokio::test]
async fn a_saved_checkpoint_loads_back_field_for_field_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let saved = rich_checkpoint();
    {
        let store = open(dir.path());
        store.save(&saved).await.unwrap();
        let loaded = store.load(&saved.run_id).await.unwrap().expect("loads in the same process");
        assert_eq!(as_json(&loaded), as_json(&saved));
    }
    let loaded = open(dir.path()).load(&saved.run_id).await.unwrap().expect("loads after a reopen");
    assert_eq!(as_json(&loaded), as_json(&saved));
    assert_eq!(loaded.timestamp, saved.timestamp);
    assert_eq!(loaded.state["largest"], json!(u64::MAX));
    assert_eq!(loaded.pending_events[1].event_type, "app::Approved");
}

/// `resume_from` turns `None` into "no checkpoint for this run": a run
/// never saved loads as `None`, not as an error, before and after a reopen.
#[tokio::test]
async fn a_run_never_saved_loads_as_none_before_and_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let other = checkpoint("other", Uuid::new_v4(), Utc::now());
    let missing = Uuid::new_v4();
    {
        let store = open(dir.path());
        assert!(store.load(&missing).await.unwrap().is_none(), "an empty store");
        store.save(&other).await.unwrap();
        assert!(store.load(&missing).await.unwrap().is_none(), "a store holding another run");
    }
    let store = open(dir.path());
    assert!(store.load(&missing).await.unwrap().is_none());
    assert!(store.load(&other.run_id).await.unwrap().is_some());
}

/// An empty store lists nothing rather than failing.
#[tokio::test]
async fn an_empty_store_lists_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(open(dir.path()).list().await.unwrap().is_empty());
}

/// blazen's contract orders `list` by the checkpoint's own timestamp, newest
/// first, whatever order the saves came in (the store underneath lists in
/// save order, so this is the adapter's sort), and still after a reopen.
#[tokio::test]
async fn list_is_newest_first_by_checkpoint_timestamp_not_by_save_order() {
    let dir = tempfile::tempdir().unwrap();
    let (old, middle, new) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    {
        let store = open(dir.path());
        store.save(&checkpoint("middle", middle, at("2025-06-15T12:00:00Z"))).await.unwrap();
        store.save(&checkpoint("new", new, at("2026-01-01T00:00:00Z"))).await.unwrap();
        store.save(&checkpoint("old", old, at("2024-01-01T00:00:00Z"))).await.unwrap();
        assert_eq!(run_ids(&store.list().await.unwrap()), [new, middle, old]);
    }
    let store = open(dir.path());
    assert_eq!(run_ids(&store.list().await.unwrap()), [new, middle, old], "the same order after a reopen");
    // Saved last, but with the oldest timestamp of all: it lists last.
    store.save(&checkpoint("new, rewound", new, at("2023-01-01T00:00:00Z"))).await.unwrap();
    let listed = store.list().await.unwrap();
    assert_eq!(run_ids(&listed), [middle, old, new]);
    assert_eq!(listed[2].workflow_name, "new, rewound", "list returns each run's current checkpoint");
}

/// Equal timestamps (a coarse clock, or several runs checkpointed in one
/// tick) still list in a stable order: the most recently saved first.
#[tokio::test]
async fn checkpoints_with_equal_timestamps_list_the_most_recently_saved_first() {
    let dir = tempfile::tempdir().unwrap();
    let tick = at("2026-02-02T02:02:02Z");
    let runs: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    {
        let store = open(dir.path());
        for run in &runs {
            store.save(&checkpoint("tied", *run, tick)).await.unwrap();
        }
    }
    let listed = run_ids(&open(dir.path()).list().await.unwrap());
    assert_eq!(listed, runs.iter().rev().copied().collect::<Vec<_>>());
}

/// A finished run deletes its checkpoint: that run is gone for good (also
/// after a reopen), the others stay, deleting a run that has no checkpoint
/// is not an error, and a deleted run can be saved anew.
#[tokio::test]
async fn delete_forgets_one_run_durably_and_deleting_a_missing_run_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, gone) = (Uuid::new_v4(), Uuid::new_v4());
    {
        let store = open(dir.path());
        store.save(&checkpoint("kept", kept, at("2026-01-01T00:00:00Z"))).await.unwrap();
        store.save(&checkpoint("gone", gone, at("2026-01-02T00:00:00Z"))).await.unwrap();
        store.delete(&gone).await.unwrap();
        store.delete(&gone).await.expect("deleting twice is a no-op");
        store.delete(&Uuid::new_v4()).await.expect("deleting a run never saved is a no-op");
        assert!(store.load(&gone).await.unwrap().is_none());
    }
    let store = open(dir.path());
    assert!(store.load(&gone).await.unwrap().is_none(), "the delete is durable");
    assert_eq!(run_ids(&store.list().await.unwrap()), [kept]);
    store.delete(&Uuid::new_v4()).await.expect("a missing run after a reopen too");
    store.save(&checkpoint("back", gone, at("2026-01-03T00:00:00Z"))).await.unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.load(&gone).await.unwrap().expect("saved anew").workflow_name, "back");
    assert_eq!(run_ids(&store.list().await.unwrap()), [gone, kept]);
}

/// A run has one checkpoint: each save replaces it, `load` returns the last
/// one saved and `list` shows the run once, before and after a reopen.
#[tokio::test]
async fn save_overwrites_the_run_checkpoint_and_the_run_lists_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = Uuid::new_v4();
    let other = Uuid::new_v4();
    let first = at("2026-01-01T00:00:00Z");
    {
        let store = open(dir.path());
        store.save(&checkpoint("other", other, first)).await.unwrap();
        for step in 0..5 {
            let mut saved = checkpoint(&format!("step {step}"), run, first + TimeDelta::seconds(step));
            saved.pending_events.push(SerializedEvent { event_type: "e".to_owned(), data: json!(step) });
            store.save(&saved).await.unwrap();
            let loaded = store.load(&run).await.unwrap().unwrap();
            assert_eq!(loaded.workflow_name, format!("step {step}"));
            assert_eq!(loaded.pending_events.len(), 1, "the earlier checkpoint's events are not merged in");
        }
        assert_eq!(run_ids(&store.list().await.unwrap()), [run, other]);
    }
    let store = open(dir.path());
    let loaded = store.load(&run).await.unwrap().unwrap();
    assert_eq!(loaded.workflow_name, "step 4");
    assert_eq!(loaded.state["step"], json!("step 4"));
    assert_eq!(run_ids(&store.list().await.unwrap()), [run, other], "one entry per run after a reopen");
    assert_eq!(store.load(&other).await.unwrap().unwrap().workflow_name, "other", "other runs untouched");
}

/// The layout the docs promise: a run is the stream
/// `checkpoint/<lowercase hyphenated run id>`, holding one live entry.
#[tokio::test]
async fn a_run_is_stored_under_its_hyphenated_run_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = AnnalsCheckpointStore::open(dir.path()).unwrap();
    let run = Uuid::from_u128(0xA1B2_C3D4_E5F6_0718_293A_4B5C_6D7E_8F90);
    for _ in 0..3 {
        store.save(&checkpoint("layout", run, Utc::now())).await.unwrap();
    }
    let streams = annals::stores::Backend::streams(store.log().as_ref(), CHECKPOINT_STREAM_PREFIX).await.unwrap();
    let names: Vec<&str> = streams.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["checkpoint/a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90"]);
    let contents = Backend::read(store.log().as_ref(), names[0]).await.unwrap();
    assert_eq!(contents.entries.len(), 1, "the overwritten checkpoints are not live");
}

/// Bytes that are no checkpoint fail `load` and `list` with a typed
/// `PersistError` naming the run and where it sits, and never panic; other
/// runs still load and the damaged run can be overwritten or deleted.
#[tokio::test]
async fn a_checkpoint_that_does_not_decode_is_an_error_naming_the_run_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = AnnalsCheckpointStore::open(dir.path()).unwrap();
    let (damaged, healthy) = (Uuid::new_v4(), Uuid::new_v4());
    store.save(&checkpoint("healthy", healthy, Utc::now())).await.unwrap();
    let stream = format!("{CHECKPOINT_STREAM_PREFIX}{damaged}");
    for garbage in [&[0xFF_u8; 4][..], b"\xA5\x01\x01\x00not msgpack", b"\xA5\x01\x01\x00\x81\xA1a\x01", b""] {
        let ops = vec![
            StoreOp::clear(stream.clone(), Expect::Any),
            StoreOp::append(stream.clone(), Expect::Empty, garbage.to_vec()),
        ];
        // `Log::commit` (a log batch) shadows the backend seam's `commit`.
        Backend::commit(store.log().as_ref(), ops).await.unwrap();
        let error = store.load(&damaged).await.expect_err("a damaged checkpoint is an error");
        assert!(matches!(error, PersistError::BinarySerialization(_)), "{error}");
        let message = error.to_string();
        assert!(message.contains(&format!("load of run {damaged}")) && message.contains(&stream), "{message}");
        let error = store.list().await.expect_err("list decodes every run");
        assert!(error.to_string().contains(&stream), "{error}");
    }
    assert!(store.load(&healthy).await.unwrap().is_some(), "other runs still load");
    store.save(&checkpoint("repaired", damaged, Utc::now())).await.expect("a damaged run can be overwritten");
    assert_eq!(store.load(&damaged).await.unwrap().unwrap().workflow_name, "repaired");
    store.delete(&damaged).await.unwrap();
    assert_eq!(run_ids(&store.list().await.unwrap()), [healthy]);
}

/// A valid checkpoint filed under another run's id (a foreign writer, or
/// damage) is refused rather than handed to blazen as this run's state.
#[tokio::test]
async fn a_checkpoint_filed_under_another_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = AnnalsCheckpointStore::open(dir.path()).unwrap();
    let (filed_under, named) = (Uuid::new_v4(), Uuid::new_v4());
    let raw: WholeCheckpoints<annals::Log, WorkflowCheckpoint> = WholeCheckpoints::new(Arc::clone(store.log()));
    raw.save(&filed_under.to_string(), &checkpoint("misfiled", named, Utc::now())).await.unwrap();
    let error = store.load(&filed_under).await.expect_err("a misfiled checkpoint is refused");
    assert!(matches!(error, PersistError::Storage(_)), "{error}");
    assert!(error.to_string().contains(&named.to_string()), "{error}");
    assert!(store.list().await.is_err(), "list refuses it too");
    assert!(store.load(&named).await.unwrap().is_none(), "nor is it found under the id it names");
}

/// Blazen saves from many workflows at once: concurrent saves of distinct
/// runs all land, and concurrent saves of one run leave exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_saves_all_land_and_a_contended_run_keeps_one_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let shared = Uuid::new_v4();
    let base = at("2026-01-01T00:00:00Z");
    let tasks: Vec<_> = (0..16_i64)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let own = Uuid::new_v4();
                for save in 0..8 {
                    let timestamp = base + TimeDelta::seconds(task * 100 + save);
                    store.save(&checkpoint(&format!("{task}/{save}"), own, timestamp)).await.unwrap();
                    store.save(&checkpoint(&format!("shared {task}/{save}"), shared, base)).await.unwrap();
                }
                (own, format!("{task}/7"))
            })
        })
        .collect();
    let mut expected = Vec::new();
    for task in tasks {
        expected.push(task.await.unwrap());
    }
    for (own, last) in &expected {
        assert_eq!(&store.load(own).await.unwrap().unwrap().workflow_name, last);
    }
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 17, "16 runs of their own and the shared one, once");
    let shared_name = store.load(&shared).await.unwrap().unwrap().workflow_name;
    assert!(
        shared_name.starts_with("shared ") && shared_name.ends_with("/7"),
        "a last save of some task: {shared_name}"
    );
    assert!(listed.windows(2).all(|pair| pair[0].timestamp >= pair[1].timestamp), "newest first");
}

/// A checkpoint larger than the log's record limit is refused with a
/// storage error naming the run, and the run keeps its previous checkpoint.
#[tokio::test]
async fn a_checkpoint_over_the_record_limit_is_refused_and_the_previous_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let options = annals::Options { record_bytes_max: 4096, ..annals::Options::default() };
    let store = AnnalsCheckpointStore::from_log(Arc::new(annals::Log::open(dir.path(), options).unwrap()));
    let run = Uuid::new_v4();
    store.save(&checkpoint("small", run, Utc::now())).await.unwrap();
    let mut large = checkpoint("large", run, Utc::now());
    large.state.insert("blob".to_owned(), json!("x".repeat(8192)));
    let error = store.save(&large).await.expect_err("over the record limit");
    assert!(matches!(error, PersistError::Storage(_)), "{error}");
    assert!(error.to_string().contains(&format!("save of run {run}")), "{error}");
    assert_eq!(store.load(&run).await.unwrap().unwrap().workflow_name, "small");
}

/// Only one process may write a log: a second open of a live directory is
/// refused with a typed error; `close` releases it at once, and the closed
/// store then refuses work with an error saying so.
#[tokio::test]
async fn the_directory_is_locked_while_a_store_lives_and_close_releases_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = AnnalsCheckpointStore::open(dir.path()).unwrap();
    let run = Uuid::new_v4();
    first.save(&checkpoint("before close", run, Utc::now())).await.unwrap();
    assert!(matches!(AnnalsCheckpointStore::open(dir.path()), Err(annals::Error::Locked { .. })));
    first.close().await.unwrap();
    let error = first.save(&checkpoint("after close", run, Utc::now())).await.expect_err("a closed store refuses work");
    assert!(matches!(error, PersistError::Storage(_)) && error.to_string().contains("closed"), "{error}");
    let second = open(dir.path());
    assert_eq!(second.load(&run).await.unwrap().unwrap().workflow_name, "before close");
    first.close().await.expect("closing twice is harmless");
}
