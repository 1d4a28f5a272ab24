//! meerkat-mob 0.4.6's own store scenarios (its in-memory and redb store
//! tests), written anew against the Annals stores, and what a store that
//! survives restarts must add: reopen, cursors that never go back, errors
//! for missing runs and steps.

use std::sync::Arc;

use annals_meerkat_mob::AnnalsMobStores;
use chrono::{Duration, Utc};
use meerkat_mob::run::{FailureLedgerEntry, MobRun, MobRunStatus, StepLedgerEntry, StepRunStatus};
use meerkat_mob::{
    FlowId, MeerkatId, MobDefinition, MobError, MobEventKind, MobEventStore, MobId, MobRunStore, MobSpecStore,
    NewMobEvent, RunId, StepId,
};

fn stores(dir: &tempfile::TempDir) -> AnnalsMobStores {
    AnnalsMobStores::open(dir.path()).expect("open the log")
}

fn definition(mob: &str) -> MobDefinition {
    serde_json::from_value(serde_json::json!({ "id": mob, "flows": { "flow-a": { "steps": {} } } }))
        .expect("a minimal mob definition")
}

fn new_run(status: MobRunStatus) -> MobRun {
    MobRun {
        run_id: RunId::new(),
        mob_id: MobId::from("mob"),
        flow_id: FlowId::from("flow-a"),
        status,
        activation_params: serde_json::json!({ "a": 1 }),
        created_at: Utc::now(),
        completed_at: None,
        step_ledger: Vec::new(),
        failure_ledger: Vec::new(),
    }
}

fn step_entry(step: &str, worker: &str, status: StepRunStatus) -> StepLedgerEntry {
    StepLedgerEntry {
        step_id: StepId::from(step),
        meerkat_id: MeerkatId::from(worker),
        status,
        output: None,
        timestamp: Utc::now(),
    }
}

fn completed(timestamp: Option<chrono::DateTime<Utc>>) -> NewMobEvent {
    NewMobEvent { mob_id: MobId::from("mob"), timestamp, kind: MobEventKind::MobCompleted }
}

/// meerkat-mob's event store scenario: two events, one backdated ten
/// minutes; both poll from cursor 0; a prune a minute back removes one.
#[tokio::test]
async fn events_append_poll_replay_and_prune_the_backdated_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = stores(&dir).event_store();
    let now = Utc::now();
    let old = store.append(completed(Some(now - Duration::minutes(10)))).await.unwrap();
    let new = store.append(completed(Some(now))).await.unwrap();
    assert!(old.cursor < new.cursor);
    assert_eq!((old.timestamp, new.timestamp), (now - Duration::minutes(10), now), "caller timestamps kept exactly");
    assert_eq!(store.poll(0, 10).await.unwrap().len(), 2);
    assert_eq!(store.prune(now - Duration::minutes(1)).await.unwrap(), 1);
    let replayed = store.replay_all().await.unwrap();
    assert_eq!(replayed.iter().map(|e| e.cursor).collect::<Vec<_>>(), [new.cursor]);
    assert!(matches!(replayed[0].kind, MobEventKind::MobCompleted));
}

/// meerkat-mob's large-keyset scenario (2,000 events over ten minutes of
/// timestamps, a prune, then a clear), the older half appended first.
#[tokio::test]
async fn a_large_keyset_prunes_and_clears() {
    let dir = tempfile::tempdir().unwrap();
    let store = stores(&dir).event_store();
    let now = Utc::now();
    for chunk in 0..20 {
        let batch = (0..100)
            .map(|i| completed(Some(now - Duration::minutes(10) + Duration::seconds(chunk * 30 + i % 30))))
            .collect();
        store.append_batch(batch).await.unwrap();
    }
    let removed = store.prune(now - Duration::minutes(5)).await.unwrap();
    assert_eq!(removed, 1_000, "the events of the first five minutes");
    assert!(store.replay_all().await.unwrap().iter().all(|e| e.timestamp >= now - Duration::minutes(5)));
    store.clear().await.unwrap();
    assert!(store.replay_all().await.unwrap().is_empty(), "clear removes every persisted event");
}

#[tokio::test]
async fn an_event_batch_gets_consecutive_cursors_and_appears_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = stores(&dir).event_store();
    let batch = store.append_batch((0..5).map(|_| completed(None)).collect()).await.unwrap();
    assert!(batch.windows(2).all(|pair| pair[0].cursor < pair[1].cursor));
    assert_eq!(
        store.poll(batch[1].cursor, 2).await.unwrap().iter().map(|e| e.cursor).collect::<Vec<_>>(),
        [batch[2].cursor, batch[3].cursor]
    );
    assert!(store.append_batch(Vec::new()).await.unwrap().is_empty());
}

/// What meerkat-mob's redb store does not promise: a consumer's cursor
/// stays valid across a clear and a restart.
#[tokio::test]
async fn cursors_never_go_back_across_clear_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let saved = {
        let store = stores(&dir).event_store();
        let last = store.append_batch((0..3).map(|_| completed(None)).collect()).await.unwrap().pop().unwrap();
        store.clear().await.unwrap();
        last.cursor
    };
    let store = stores(&dir).event_store();
    assert!(store.replay_all().await.unwrap().is_empty());
    let next = store.append(completed(None)).await.unwrap();
    assert!(next.cursor > saved);
    assert_eq!(store.poll(saved, 10).await.unwrap().len(), 1);
}

/// meerkat-mob's status CAS scenario: ten racers move Running to
/// Completed; exactly one wins and the run records its completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_status_cas_has_a_single_winner() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(stores(&dir).run_store());
    let run = new_run(MobRunStatus::Running);
    let run_id = run.run_id.clone();
    store.create_run(run).await.unwrap();
    let mut racers = Vec::new();
    for _ in 0..10 {
        let (store, run_id) = (store.clone(), run_id.clone());
        racers.push(tokio::spawn(async move {
            store.cas_run_status(&run_id, MobRunStatus::Running, MobRunStatus::Completed).await.unwrap()
        }));
    }
    let mut wins = 0;
    for racer in racers {
        wins += usize::from(racer.await.unwrap());
    }
    assert_eq!(wins, 1);
    let stored = store.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(stored.status, MobRunStatus::Completed);
    assert!(stored.completed_at.is_some());
    assert!(
        !store.cas_run_status(&run_id, MobRunStatus::Completed, MobRunStatus::Running).await.unwrap(),
        "a terminal run does not move"
    );
}

/// meerkat-mob's redb scenario: two racers to different terminal states.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_racers_to_different_outcomes_have_one_winner_and_dedup_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(stores(&dir).run_store());
    let run = new_run(MobRunStatus::Running);
    let run_id = run.run_id.clone();
    store.create_run(run).await.unwrap();
    let racer = |next: MobRunStatus| {
        let (store, run_id) = (store.clone(), run_id.clone());
        tokio::spawn(async move { store.cas_run_status(&run_id, MobRunStatus::Running, next).await.unwrap() })
    };
    let (a, b) = (racer(MobRunStatus::Completed), racer(MobRunStatus::Failed));
    assert_eq!(usize::from(a.await.unwrap()) + usize::from(b.await.unwrap()), 1);
    let entry = step_entry("step-a", "worker-1", StepRunStatus::Completed);
    assert!(store.append_step_entry_if_absent(&run_id, entry.clone()).await.unwrap());
    assert!(!store.append_step_entry_if_absent(&run_id, entry).await.unwrap());
}

/// meerkat-mob's ledger scenario: dedup, an output, a failure.
#[tokio::test]
async fn step_dedup_outputs_and_ledgers() {
    let dir = tempfile::tempdir().unwrap();
    let store = stores(&dir).run_store();
    let run = new_run(MobRunStatus::Running);
    let run_id = run.run_id.clone();
    store.create_run(run).await.unwrap();
    let entry = step_entry("s1", "worker-1", StepRunStatus::Dispatched);
    assert!(store.append_step_entry_if_absent(&run_id, entry.clone()).await.unwrap());
    assert!(!store.append_step_entry_if_absent(&run_id, entry).await.unwrap());
    store.put_step_output(&run_id, &StepId::from("s1"), serde_json::json!({ "ok": true })).await.unwrap();
    let failure = FailureLedgerEntry { step_id: StepId::from("s1"), reason: "failed".into(), timestamp: Utc::now() };
    store.append_failure_entry(&run_id, failure).await.unwrap();
    let stored = store.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!((stored.step_ledger.len(), stored.failure_ledger.len()), (1, 1));
    assert_eq!(stored.step_ledger[0].output, Some(serde_json::json!({ "ok": true })));
    assert_eq!(stored.failure_ledger[0].reason, "failed");
}

/// An output lands on the latest entry of its step when it is put, as in
/// meerkat-mob, and a later put replaces it.
#[tokio::test]
async fn an_output_belongs_to_the_latest_entry_of_its_step_when_put() {
    let dir = tempfile::tempdir().unwrap();
    let store = stores(&dir).run_store();
    let mut run = new_run(MobRunStatus::Running);
    run.step_ledger.push(step_entry("s1", "w0", StepRunStatus::Dispatched));
    let run_id = run.run_id.clone();
    store.create_run(run).await.unwrap();
    assert!(
        !store.append_step_entry_if_absent(&run_id, step_entry("s1", "w0", StepRunStatus::Dispatched)).await.unwrap(),
        "an entry the run was created with counts"
    );
    store.put_step_output(&run_id, &StepId::from("s1"), serde_json::json!(1)).await.unwrap();
    store.append_step_entry(&run_id, step_entry("s1", "w1", StepRunStatus::Completed)).await.unwrap();
    store.put_step_output(&run_id, &StepId::from("s1"), serde_json::json!(2)).await.unwrap();
    store.put_step_output(&run_id, &StepId::from("s1"), serde_json::json!(3)).await.unwrap();
    let stored = store.get_run(&run_id).await.unwrap().unwrap();
    let outputs: Vec<_> = stored.step_ledger.iter().map(|e| e.output.clone()).collect();
    assert_eq!(outputs, [Some(serde_json::json!(1)), Some(serde_json::json!(3))]);
    let error = store.put_step_output(&run_id, &StepId::from("nope"), serde_json::json!(0)).await.unwrap_err();
    assert!(matches!(error, MobError::Internal(_)), "{error}");
}

#[tokio::test]
async fn a_missing_run_is_none_or_run_not_found_and_a_duplicate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = stores(&dir).run_store();
    let missing = RunId::new();
    assert!(store.get_run(&missing).await.unwrap().is_none());
    assert!(!store.cas_run_status(&missing, MobRunStatus::Pending, MobRunStatus::Running).await.unwrap());
    let entry = step_entry("s", "w", StepRunStatus::Dispatched);
    for error in [
        store.append_step_entry(&missing, entry.clone()).await.unwrap_err(),
        store.append_step_entry_if_absent(&missing, entry).await.unwrap_err(),
        store.put_step_output(&missing, &StepId::from("s"), serde_json::json!(null)).await.unwrap_err(),
        store
            .append_failure_entry(
                &missing,
                FailureLedgerEntry { step_id: StepId::from("s"), reason: String::new(), timestamp: Utc::now() },
            )
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(&error, MobError::RunNotFound(id) if *id == missing), "{error}");
    }
    let run = new_run(MobRunStatus::Pending);
    store.create_run(run.clone()).await.unwrap();
    assert!(matches!(store.create_run(run).await, Err(MobError::Internal(_))));
}

#[tokio::test]
async fn runs_are_listed_by_mob_and_flow_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (new_run(MobRunStatus::Pending), new_run(MobRunStatus::Running));
    let mut other_flow = new_run(MobRunStatus::Pending);
    other_flow.flow_id = FlowId::from("flow-b");
    let mut other_mob = new_run(MobRunStatus::Pending);
    other_mob.mob_id = MobId::from("other");
    {
        let store = stores(&dir).run_store();
        for run in [a.clone(), b.clone(), other_flow.clone(), other_mob] {
            store.create_run(run).await.unwrap();
        }
        store.append_step_entry(&a.run_id, step_entry("s", "w", StepRunStatus::Dispatched)).await.unwrap();
        store.cas_run_status(&b.run_id, MobRunStatus::Running, MobRunStatus::Failed).await.unwrap();
    }
    let store = stores(&dir).run_store();
    let ids = |runs: Vec<MobRun>| {
        let mut ids: Vec<String> = runs.into_iter().map(|run| run.run_id.to_string()).collect();
        ids.sort();
        ids
    };
    let mut expected = vec![a.run_id.to_string(), b.run_id.to_string()];
    expected.sort();
    assert_eq!(ids(store.list_runs(&MobId::from("mob"), Some(&FlowId::from("flow-a"))).await.unwrap()), expected);
    assert_eq!(store.list_runs(&MobId::from("mob"), None).await.unwrap().len(), 3);
    let reopened_a = store.get_run(&a.run_id).await.unwrap().unwrap();
    assert_eq!(reopened_a.step_ledger.len(), 1);
    assert_eq!(reopened_a.activation_params, serde_json::json!({ "a": 1 }));
    assert_eq!(store.get_run(&b.run_id).await.unwrap().unwrap().status, MobRunStatus::Failed);
}

/// meerkat-mob's spec scenario: revisions 1 and 2, a stale put is a
/// revision conflict with expected and actual, a stale delete is `false`.
#[tokio::test]
async fn spec_revisions_and_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let store = stores(&dir).spec_store();
    let mob = MobId::from("mob");
    let rev1 = store.put_spec(&mob, &definition("mob"), None).await.unwrap();
    assert_eq!(rev1, 1);
    assert_eq!(store.put_spec(&mob, &definition("mob"), Some(rev1)).await.unwrap(), 2);
    let conflict = store.put_spec(&mob, &definition("mob"), Some(1)).await.unwrap_err();
    assert!(matches!(conflict, MobError::SpecRevisionConflict { expected: Some(1), actual: 2, .. }), "{conflict}");
    assert!(!store.delete_spec(&mob, Some(1)).await.unwrap());
    assert!(store.delete_spec(&mob, Some(2)).await.unwrap());
    assert!(store.get_spec(&mob).await.unwrap().is_none());
}

/// meerkat-mob's redb spec scenario: `Some(0)` means absent, so it
/// conflicts once a spec exists; the spec still loads.
#[tokio::test]
async fn expecting_an_absent_spec_conflicts_once_one_exists() {
    let dir = tempfile::tempdir().unwrap();
    let store = stores(&dir).spec_store();
    let mob = MobId::from("mob");
    assert_eq!(store.put_spec(&mob, &definition("mob"), None).await.unwrap(), 1);
    let conflict = store.put_spec(&mob, &definition("mob"), Some(0)).await.unwrap_err();
    assert!(matches!(conflict, MobError::SpecRevisionConflict { expected: Some(0), actual: 1, .. }), "{conflict}");
    let (loaded, revision) = store.get_spec(&mob).await.unwrap().unwrap();
    assert_eq!((loaded.id, revision), (mob, 1));
}

#[tokio::test]
async fn specs_survive_a_reopen_and_list_their_mobs() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = stores(&dir).spec_store();
        for mob in ["b", "a", "gone"] {
            store.put_spec(&MobId::from(mob), &definition(mob), None).await.unwrap();
        }
        store.delete_spec(&MobId::from("gone"), None).await.unwrap();
    }
    let store = stores(&dir).spec_store();
    assert_eq!(store.list_specs().await.unwrap(), [MobId::from("a"), MobId::from("b")]);
    let (spec, revision) = store.get_spec(&MobId::from("b")).await.unwrap().unwrap();
    assert_eq!((spec.id.as_str(), revision), ("b", 1));
    assert!(spec.flows.contains_key(&FlowId::from("flow-a")), "the definition round-trips");
}

/// meerkat-mob's shared-handle scenario: the three stores over one log,
/// handed to meerkat-mob as its storage bundle.
#[tokio::test]
async fn the_three_stores_share_one_log_as_a_storage_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let storage = stores(&dir).storage();
    storage.events.append(completed(None)).await.unwrap();
    let run = new_run(MobRunStatus::Pending);
    let run_id = run.run_id.clone();
    storage.runs.create_run(run).await.unwrap();
    assert!(storage.runs.get_run(&run_id).await.unwrap().is_some());
    assert_eq!(storage.specs.put_spec(&MobId::from("mob"), &definition("mob"), None).await.unwrap(), 1);
    assert_eq!(storage.events.replay_all().await.unwrap().len(), 1);
    drop(storage);
    let reopened = stores(&dir).storage();
    assert_eq!(reopened.events.replay_all().await.unwrap().len(), 1, "one log holds all three");
    assert!(reopened.runs.get_run(&run_id).await.unwrap().is_some());
}
