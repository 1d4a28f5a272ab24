//! meerkat-mob 0.4.6's stores on Annals: `MobEventStore`, `MobRunStore`
//! and `MobSpecStore`, through the mob stores of [`annals::stores`].
//!
//! meerkat-mob 0.4.6 is the last release whose store traits are open (0.7
//! sealed them; meerkat's supported extension point since is the
//! `HostStore` of the `annals-meerkat` crate). A mob keeps its structural
//! events, its flow runs and its specs in one Annals log:
//!
//! ```no_run
//! use annals_meerkat_mob::AnnalsMobStores;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In place of `MobStorage::redb(path)?`:
//! let storage = AnnalsMobStores::open("mob-log")?.storage();
//! # let _ = storage;
//! # Ok(())
//! # }
//! ```
//!
//! Every write is acknowledged after an fdatasync that concurrent writes
//! share. Each store works over any [`Backend`] (the log by default).
//!
//! # What differs from meerkat-mob's redb stores
//!
//! - **Cursors** are the backend's positions: they grow in commit order
//!   and are never given twice, not even after `clear` (the redb store
//!   restarts them at 1). A consumer's saved cursor stays valid.
//! - **`prune(older_than)`** removes the oldest events up to the first one
//!   that is not older, at millisecond precision (an event in the same
//!   millisecond as `older_than` is kept): with the store's own timestamps
//!   that is every older event; an event given an old timestamp after a
//!   newer one stays until the events before it go. The space is reclaimed
//!   on disk by compaction.
//! - **Spec revisions** are never given twice for one mob, also across a
//!   delete (a spec created again after a delete does not restart at 1).
//! - **Values** are kept as JSON inside the stores' versioned envelope,
//!   exactly as meerkat-mob serializes them.
//! - **Step outputs** are kept beside the ledger, each naming the entry it
//!   belongs to (the latest entry of its step when it was put), and joined
//!   on read: `put_step_output` writes one small record, not the run.

use std::path::Path;
use std::sync::Arc;

use annals::stores::mob_events::{MobEvents, NewMobEvent as StoreEvent};
use annals::stores::mob_runs::MobRuns;
use annals::stores::mob_specs::MobSpecs;
use annals::stores::{Backend, Cursor, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use meerkat_mob::run::{FailureLedgerEntry, MobRun, MobRunStatus, StepLedgerEntry};
use meerkat_mob::{
    FlowId, MobDefinition, MobError, MobEvent, MobEventKind, MobEventStore, MobId, MobRunStore, MobSpecStore,
    MobStorage, NewMobEvent, RunId, StepId,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A value kept as meerkat-mob's own JSON, inside the stores' envelope.
#[derive(Clone, Debug, PartialEq)]
struct Json<T>(T);

impl<T: Serialize> Serialize for Json<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Json<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        serde_json::from_str(&text).map(Json).map_err(serde::de::Error::custom)
    }
}

fn storage_error(error: StoreError) -> MobError {
    MobError::StorageError(Box::new(error))
}

fn to_ms(timestamp: DateTime<Utc>) -> u64 {
    u64::try_from(timestamp.timestamp_millis()).unwrap_or(0)
}

fn from_ms(ms: u64) -> DateTime<Utc> {
    i64::try_from(ms).ok().and_then(DateTime::from_timestamp_millis).unwrap_or_default()
}

/// The three stores over one backend: what `MobStorage` takes.
pub struct AnnalsMobStores<B: Backend = annals::Log> {
    backend: Arc<B>,
}

impl AnnalsMobStores<annals::Log> {
    /// Opens (creating it if needed) the Annals log in the directory `dir`
    /// with default options, recovers it, and returns the stores over it.
    ///
    /// # Errors
    /// [`annals::Error::Locked`] if another handle or process has the
    /// directory open; [`annals::Error::Corruption`] naming the file and
    /// offset if acknowledged records are damaged; [`annals::Error::Io`].
    pub fn open(dir: impl AsRef<Path>) -> annals::Result<AnnalsMobStores<annals::Log>> {
        Ok(AnnalsMobStores::new(Arc::new(annals::Log::open(dir, annals::Options::default())?)))
    }
}

impl<B: Backend> AnnalsMobStores<B> {
    /// The stores over a backend the caller opened (shared with other
    /// stores, say).
    pub fn new(backend: Arc<B>) -> AnnalsMobStores<B> {
        AnnalsMobStores { backend }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    /// The event store.
    pub fn event_store(&self) -> AnnalsMobEventStore<B> {
        AnnalsMobEventStore { events: MobEvents::new(self.backend.clone()) }
    }

    /// The run store.
    pub fn run_store(&self) -> AnnalsMobRunStore<B> {
        AnnalsMobRunStore { runs: MobRuns::new(self.backend.clone()) }
    }

    /// The spec store.
    pub fn spec_store(&self) -> AnnalsMobSpecStore<B> {
        AnnalsMobSpecStore { specs: MobSpecs::new(self.backend.clone()) }
    }

    /// meerkat-mob's storage bundle with the three stores.
    pub fn storage(&self) -> MobStorage {
        MobStorage {
            events: Arc::new(self.event_store()),
            runs: Arc::new(self.run_store()),
            specs: Arc::new(self.spec_store()),
        }
    }
}

/// An event as the store keeps it.
///
/// ```text
/// // Format (MessagePack map, by field name): { mob_id: str | timestamp: JSON or nil | kind: JSON }
/// ```
#[derive(Serialize, Deserialize)]
struct StoredEvent {
    mob_id: MobId,
    /// The caller's timestamp, exactly (the store keeps milliseconds).
    timestamp: Option<Json<DateTime<Utc>>>,
    kind: Json<MobEventKind>,
}

/// meerkat-mob's `MobEventStore` on Annals.
pub struct AnnalsMobEventStore<B: Backend = annals::Log> {
    events: MobEvents<B, StoredEvent>,
}

impl<B: Backend> AnnalsMobEventStore<B> {
    fn from_store(event: annals::stores::mob_events::MobEvent<StoredEvent>) -> MobEvent {
        let stored = event.event;
        MobEvent {
            cursor: event.cursor.0,
            timestamp: stored.timestamp.map_or_else(|| from_ms(event.timestamp_ms), |Json(timestamp)| timestamp),
            mob_id: stored.mob_id,
            kind: stored.kind.0,
        }
    }
}

#[async_trait]
impl<B: Backend> MobEventStore for AnnalsMobEventStore<B> {
    async fn append(&self, event: NewMobEvent) -> Result<MobEvent, MobError> {
        Ok(self.append_batch(vec![event]).await?.pop().expect("one event in, one out"))
    }

    async fn append_batch(&self, events: Vec<NewMobEvent>) -> Result<Vec<MobEvent>, MobError> {
        let batch = events
            .into_iter()
            .map(|new| StoreEvent {
                timestamp_ms: new.timestamp.map(to_ms),
                event: StoredEvent { mob_id: new.mob_id, timestamp: new.timestamp.map(Json), kind: Json(new.kind) },
            })
            .collect();
        let appended = self.events.append_batch(batch).await.map_err(storage_error)?;
        Ok(appended.into_iter().map(Self::from_store).collect())
    }

    async fn poll(&self, after_cursor: u64, limit: usize) -> Result<Vec<MobEvent>, MobError> {
        let events = self.events.poll(Cursor(after_cursor), limit).await.map_err(storage_error)?;
        Ok(events.into_iter().map(Self::from_store).collect())
    }

    async fn replay_all(&self) -> Result<Vec<MobEvent>, MobError> {
        let events = self.events.replay_all().await.map_err(storage_error)?;
        Ok(events.into_iter().map(Self::from_store).collect())
    }

    async fn clear(&self) -> Result<(), MobError> {
        self.events.clear().await.map_err(storage_error)
    }

    async fn prune(&self, older_than: DateTime<Utc>) -> Result<u64, MobError> {
        // The store keeps milliseconds: an event in the same millisecond as
        // `older_than` is kept, whichever side of it it falls.
        self.events.prune(to_ms(older_than)).await.map_err(storage_error)
    }
}

/// A run document: the run as created, with the ledgers it was created
/// with; later ledger entries and outputs are kept beside it.
#[derive(Serialize, Deserialize)]
struct RunDocument {
    run: Json<MobRun>,
}

/// A step output: the step ledger entry it belongs to and the output.
#[derive(Serialize, Deserialize)]
struct StepOutput {
    entry: u64,
    output: Json<serde_json::Value>,
}

/// meerkat-mob's `MobRunStore` on Annals.
pub struct AnnalsMobRunStore<B: Backend = annals::Log> {
    runs: MobRuns<B>,
}

impl<B: Backend> AnnalsMobRunStore<B> {
    /// The run's step ledger: the entries it was created with, then those
    /// appended since.
    async fn step_ledger(&self, id: &str, created: &MobRun) -> Result<Vec<StepLedgerEntry>, MobError> {
        let appended: Vec<Json<StepLedgerEntry>> = self.runs.step_ledger(id).await.map_err(storage_error)?;
        Ok(created.step_ledger.iter().cloned().chain(appended.into_iter().map(|Json(entry)| entry)).collect())
    }

    /// The run as meerkat-mob sees it: the document joined with its ledgers
    /// and outputs.
    async fn assemble(&self, id: &str, document: RunDocument) -> Result<MobRun, MobError> {
        let mut run = document.run.0;
        let step_ledger = self.step_ledger(id, &run).await?;
        let failures: Vec<Json<FailureLedgerEntry>> = self.runs.failure_ledger(id).await.map_err(storage_error)?;
        run.failure_ledger.extend(failures.into_iter().map(|Json(entry)| entry));
        run.step_ledger = step_ledger;
        let outputs: Vec<(String, StepOutput)> = self.runs.step_outputs(id).await.map_err(storage_error)?;
        for (_, output) in outputs {
            let entry =
                usize::try_from(output.entry).ok().and_then(|at| run.step_ledger.get_mut(at)).ok_or_else(|| {
                    MobError::Internal(format!(
                        "run {id}: a step output names ledger entry {} it does not have",
                        output.entry
                    ))
                })?;
            entry.output = Some(output.output.0);
        }
        Ok(run)
    }

    async fn document(&self, id: &str) -> Result<Option<RunDocument>, MobError> {
        Ok(self.runs.get_run::<RunDocument>(id).await.map_err(storage_error)?.map(|document| document.value))
    }
}

fn not_found(run_id: &RunId) -> impl Fn(StoreError) -> MobError + '_ {
    move |error| match error {
        StoreError::NotFound { .. } => MobError::RunNotFound(run_id.clone()),
        other => storage_error(other),
    }
}

#[async_trait]
impl<B: Backend> MobRunStore for AnnalsMobRunStore<B> {
    async fn create_run(&self, run: MobRun) -> Result<(), MobError> {
        let id = run.run_id.to_string();
        match self.runs.create_run(&id, &RunDocument { run: Json(run) }).await {
            Ok(()) => Ok(()),
            Err(StoreError::Duplicate { .. }) => Err(MobError::Internal(format!("run already exists: {id}"))),
            Err(error) => Err(storage_error(error)),
        }
    }

    async fn get_run(&self, run_id: &RunId) -> Result<Option<MobRun>, MobError> {
        let id = run_id.to_string();
        match self.document(&id).await? {
            None => Ok(None),
            Some(document) => Ok(Some(self.assemble(&id, document).await?)),
        }
    }

    async fn list_runs(&self, mob_id: &MobId, flow_id: Option<&FlowId>) -> Result<Vec<MobRun>, MobError> {
        let mut runs = Vec::new();
        for (id, document) in self.runs.list_runs::<RunDocument>().await.map_err(storage_error)? {
            let run = &document.value.run.0;
            if run.mob_id == *mob_id && flow_id.is_none_or(|flow_id| run.flow_id == *flow_id) {
                runs.push(self.assemble(&id, document.value).await?);
            }
        }
        Ok(runs)
    }

    async fn cas_run_status(
        &self,
        run_id: &RunId,
        expected: MobRunStatus,
        next: MobRunStatus,
    ) -> Result<bool, MobError> {
        let condition =
            |document: &RunDocument| document.run.0.status == expected && !document.run.0.status.is_terminal();
        let change = |document: &mut RunDocument| {
            let run = &mut document.run.0;
            run.status = next.clone();
            if next.is_terminal() && run.completed_at.is_none() {
                run.completed_at = Some(Utc::now());
            }
        };
        self.runs.update_run_if(&run_id.to_string(), condition, change).await.map_err(storage_error)
    }

    async fn append_step_entry(&self, run_id: &RunId, entry: StepLedgerEntry) -> Result<(), MobError> {
        self.runs.append_step(&run_id.to_string(), &Json(entry)).await.map_err(not_found(run_id))
    }

    async fn append_step_entry_if_absent(&self, run_id: &RunId, entry: StepLedgerEntry) -> Result<bool, MobError> {
        let id = run_id.to_string();
        let same = |a: &StepLedgerEntry, b: &StepLedgerEntry| {
            a.step_id == b.step_id && a.meerkat_id == b.meerkat_id && a.status == b.status
        };
        // The entries the run was created with never change.
        let document = self.document(&id).await?.ok_or_else(|| MobError::RunNotFound(run_id.clone()))?;
        if document.run.0.step_ledger.iter().any(|existing| same(existing, &entry)) {
            return Ok(false);
        }
        let same = |a: &Json<StepLedgerEntry>, b: &Json<StepLedgerEntry>| same(&a.0, &b.0);
        self.runs.append_step_if_absent(&id, &Json(entry), same).await.map_err(not_found(run_id))
    }

    async fn put_step_output(
        &self,
        run_id: &RunId,
        step_id: &StepId,
        output: serde_json::Value,
    ) -> Result<(), MobError> {
        let id = run_id.to_string();
        let document = self.document(&id).await?.ok_or_else(|| MobError::RunNotFound(run_id.clone()))?;
        let ledger = self.step_ledger(&id, &document.run.0).await?;
        let Some(entry) = ledger.iter().rposition(|entry| &entry.step_id == step_id) else {
            return Err(MobError::Internal(format!(
                "cannot set output for unknown step '{step_id}' in run '{run_id}'"
            )));
        };
        let output = StepOutput { entry: entry as u64, output: Json(output) };
        self.runs.put_step_output(&id, &entry.to_string(), &output).await.map_err(not_found(run_id))
    }

    async fn append_failure_entry(&self, run_id: &RunId, entry: FailureLedgerEntry) -> Result<(), MobError> {
        self.runs.append_failure(&run_id.to_string(), &Json(entry)).await.map_err(not_found(run_id))
    }
}

/// meerkat-mob's `MobSpecStore` on Annals.
pub struct AnnalsMobSpecStore<B: Backend = annals::Log> {
    specs: MobSpecs<B, Json<MobDefinition>>,
}

#[async_trait]
impl<B: Backend> MobSpecStore for AnnalsMobSpecStore<B> {
    async fn put_spec(
        &self,
        mob_id: &MobId,
        definition: &MobDefinition,
        revision: Option<u64>,
    ) -> Result<u64, MobError> {
        match self.specs.put_spec(mob_id.as_str(), &Json(definition.clone()), revision).await {
            Ok(revision) => Ok(revision),
            Err(StoreError::RevisionConflict { expected, actual, .. }) => {
                Err(MobError::SpecRevisionConflict { mob_id: mob_id.clone(), expected, actual })
            }
            Err(error) => Err(storage_error(error)),
        }
    }

    async fn get_spec(&self, mob_id: &MobId) -> Result<Option<(MobDefinition, u64)>, MobError> {
        let spec = self.specs.get_spec(mob_id.as_str()).await.map_err(storage_error)?;
        Ok(spec.map(|(Json(definition), revision)| (definition, revision)))
    }

    async fn list_specs(&self) -> Result<Vec<MobId>, MobError> {
        Ok(self.specs.list_specs().await.map_err(storage_error)?.into_iter().map(MobId::from).collect())
    }

    async fn delete_spec(&self, mob_id: &MobId, revision: Option<u64>) -> Result<bool, MobError> {
        match self.specs.delete_spec(mob_id.as_str(), revision).await {
            Ok(deleted) => Ok(deleted),
            // meerkat-mob answers a stale revision with `false`.
            Err(StoreError::RevisionConflict { .. }) => Ok(false),
            Err(error) => Err(storage_error(error)),
        }
    }
}
