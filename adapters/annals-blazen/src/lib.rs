//! blazen-persist's `CheckpointStore` on Annals.
//!
//! [Blazen](https://docs.rs/blazen-core) keeps one [`WorkflowCheckpoint`]
//! per workflow run: `save` replaces the run's checkpoint, `load` fetches it
//! by run id (`Workflow::resume_from` does this after a crash or a pause),
//! `list` returns every run's checkpoint newest first and `delete` forgets a
//! run. [`AnnalsCheckpointStore`] keeps them in an Annals log instead of
//! blazen's redb file: each save is one atomic, checksummed commit,
//! acknowledged after an fdatasync that concurrent saves share.
//!
//! Switching blazen to Annals is one constructor: where it had
//! `Arc::new(RedbCheckpointStore::new("workflow.db")?)`, it takes
//! `Arc::new(AnnalsCheckpointStore::open("checkpoints")?)`, handed to
//! blazen-core's `WorkflowBuilder::checkpoint_store` or
//! `Workflow::resume_from` as an `Arc<dyn CheckpointStore>` like any store.
//!
//! ```
//! use std::sync::Arc;
//!
//! use annals_blazen::AnnalsCheckpointStore;
//! use blazen_persist::{CheckpointStore, WorkflowCheckpoint};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let checkpoints = dir.path().join("checkpoints");
//! // The one line that changes: the store.
//! let store: Arc<dyn CheckpointStore> = Arc::new(AnnalsCheckpointStore::open(&checkpoints)?);
//!
//! let checkpoint = WorkflowCheckpoint {
//!     workflow_name: "order".to_owned(),
//!     run_id: uuid::Uuid::new_v4(),
//!     timestamp: chrono::Utc::now(),
//!     state: [("paid".to_owned(), serde_json::json!(true))].into(),
//!     pending_events: Vec::new(),
//!     metadata: Default::default(),
//! };
//! store.save(&checkpoint).await?;
//! let loaded = store.load(&checkpoint.run_id).await?.expect("saved just now");
//! assert_eq!(loaded.state["paid"], serde_json::json!(true));
//! assert_eq!(store.list().await?.len(), 1);
//! store.delete(&checkpoint.run_id).await?;
//! assert!(store.load(&checkpoint.run_id).await?.is_none());
//! # Ok(())
//! # }
//! ```
//!
//! # Layout and encoding
//!
//! A run is one stream of the log, `checkpoint/<run id>` (the run id in its
//! lowercase hyphenated form), managed by
//! [`annals::stores::whole_checkpoints::WholeCheckpoints`]: a save clears the
//! stream and appends the new checkpoint in one atomic commit, so a reader
//! (or a process recovering after a crash) sees the old checkpoint or the
//! new one, never neither, and the old version is dead on disk. A
//! checkpoint is blazen's own serde form of [`WorkflowCheckpoint`] in
//! MessagePack with field names, inside the stores' versioned envelope
//! ([`annals::stores::codec`]): the run id is 16 bytes, the timestamp an
//! RFC 3339 string with nanoseconds, state, events and metadata JSON values
//! as MessagePack maps, arrays and scalars.
//!
//! # Order of `list`
//!
//! Newest first by each checkpoint's own `timestamp`, as blazen's contract
//! says, not by when it was saved: a run saved last with an older timestamp
//! lists after newer ones. Checkpoints with equal timestamps list the most
//! recently saved first.
//!
//! # Errors
//!
//! Every trait method fails with a [`PersistError`] whose message names the
//! operation and the run:
//! - [`PersistError::BinarySerialization`] when a checkpoint does not encode
//!   (a JSON value MessagePack refuses) or a stored one does not decode (the
//!   message names the run, the stream and the entry);
//! - [`PersistError::Storage`] for a failure of the log itself (I/O, a full
//!   disk, a closed or poisoned log, a checkpoint over the log's
//!   `record_bytes_max`), carrying the log's own message, and for a stored
//!   checkpoint that names another run than the one it is filed under.
//!
//! A failed save writes nothing: the run keeps its previous checkpoint.
//!
//! # Lock
//!
//! The log's directory is locked while the store (or any other handle on its
//! log) lives; dropping the last one, or [`AnnalsCheckpointStore::close`],
//! releases it. A second [`AnnalsCheckpointStore::open`] of a live directory
//! fails with [`annals::Error::Locked`]; share one store (blazen holds it as
//! an `Arc<dyn CheckpointStore>`) or build several over one log with
//! [`AnnalsCheckpointStore::from_log`].

use std::cmp::Reverse;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use annals::stores::StoreError;
use annals::stores::whole_checkpoints::WholeCheckpoints;
use async_trait::async_trait;
use blazen_persist::{CheckpointStore, PersistError, WorkflowCheckpoint};
use uuid::Uuid;

/// A blazen-persist [`CheckpointStore`] over an Annals log.
///
/// Cheap to share: wrap it in an `Arc` and hand clones to every workflow.
/// All methods may be called concurrently, for the same or different runs;
/// of two concurrent saves of one run, the one committed last stays.
pub struct AnnalsCheckpointStore {
    checkpoints: WholeCheckpoints<annals::Log, WorkflowCheckpoint>,
    log: Arc<annals::Log>,
}

impl AnnalsCheckpointStore {
    /// Opens (creating it if needed) the Annals log in the directory `dir`
    /// with default options, recovers it, and returns a store over it.
    ///
    /// # Errors
    /// [`annals::Error::Locked`] if another store, handle or process has the
    /// directory open; [`annals::Error::Corruption`] naming the file and
    /// offset if acknowledged records are damaged; [`annals::Error::Io`].
    pub fn open(dir: impl AsRef<Path>) -> annals::Result<AnnalsCheckpointStore> {
        let log = annals::Log::open(dir, annals::Options::default())?;
        Ok(AnnalsCheckpointStore::from_log(Arc::new(log)))
    }

    /// A store over a log the caller opened (with its own options, or shared
    /// with other stores).
    pub fn from_log(log: Arc<annals::Log>) -> AnnalsCheckpointStore {
        AnnalsCheckpointStore { checkpoints: WholeCheckpoints::new(Arc::clone(&log)), log }
    }

    /// The log the checkpoints are kept in.
    pub fn log(&self) -> &Arc<annals::Log> {
        &self.log
    }

    /// Syncs and closes the log and releases its directory lock now, even
    /// while other handles on it live; every later call on this store (or on
    /// any store over the same log) fails with a [`PersistError::Storage`]
    /// saying the log is closed. Closing twice is harmless.
    ///
    /// # Errors
    /// [`annals::Error::Poisoned`] if an earlier failure poisoned the log
    /// (the lock is released all the same); [`annals::Error::Io`] if the
    /// final sync fails.
    pub async fn close(&self) -> annals::Result<()> {
        self.log.close().await
    }
}

impl fmt::Debug for AnnalsCheckpointStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnnalsCheckpointStore").field("dir", &self.log.dir()).finish()
    }
}

/// The store's key for a run: the run id's lowercase hyphenated form.
fn run_key(run_id: &Uuid) -> String {
    run_id.hyphenated().to_string()
}

#[async_trait]
impl CheckpointStore for AnnalsCheckpointStore {
    async fn save(&self, checkpoint: &WorkflowCheckpoint) -> Result<(), PersistError> {
        let run_id = checkpoint.run_id;
        self.checkpoints
            .save(&run_key(&run_id), checkpoint)
            .await
            .map_err(|error| persist_error(Operation::Save(run_id), error))
    }

    async fn load(&self, run_id: &Uuid) -> Result<Option<WorkflowCheckpoint>, PersistError> {
        let key = run_key(run_id);
        let loaded =
            self.checkpoints.load(&key).await.map_err(|error| persist_error(Operation::Load(*run_id), error))?;
        match loaded {
            Some(checkpoint) => Ok(Some(filed_under(&key, checkpoint)?)),
            None => Ok(None),
        }
    }

    async fn list(&self) -> Result<Vec<WorkflowCheckpoint>, PersistError> {
        let listed = self.checkpoints.list().await.map_err(|error| persist_error(Operation::List, error))?;
        let mut checkpoints =
            listed.into_iter().map(|(key, checkpoint)| filed_under(&key, checkpoint)).collect::<Result<Vec<_>, _>>()?;
        // The store lists the most recently saved first; blazen wants the
        // newest timestamp first. The sort is stable, so equal timestamps
        // keep the most recently saved first.
        checkpoints.sort_by_key(|checkpoint| Reverse(checkpoint.timestamp));
        Ok(checkpoints)
    }

    async fn delete(&self, run_id: &Uuid) -> Result<(), PersistError> {
        self.checkpoints
            .delete(&run_key(run_id))
            .await
            .map_err(|error| persist_error(Operation::Delete(*run_id), error))
    }
}

/// Checks, after reading, that a checkpoint filed under `key` names that
/// run: a save files it under its own run id, so a mismatch is damage or a
/// foreign writer, never something to hand to blazen as this run's state.
fn filed_under(key: &str, checkpoint: WorkflowCheckpoint) -> Result<WorkflowCheckpoint, PersistError> {
    if run_key(&checkpoint.run_id) == key {
        Ok(checkpoint)
    } else {
        Err(PersistError::Storage(format!(
            "annals: the checkpoint filed under run {key} names run {}; refusing it",
            checkpoint.run_id
        )))
    }
}

/// Which trait method failed, and for which run, for the error message.
#[derive(Clone, Copy, Debug)]
enum Operation {
    Save(Uuid),
    Load(Uuid),
    List,
    Delete(Uuid),
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Save(run_id) => write!(f, "save of run {run_id}"),
            Operation::Load(run_id) => write!(f, "load of run {run_id}"),
            Operation::List => f.write_str("list of every run"),
            Operation::Delete(run_id) => write!(f, "delete of run {run_id}"),
        }
    }
}

/// Maps a store error to blazen's error, with a message that says what
/// happened and to which run.
fn persist_error(operation: Operation, error: StoreError) -> PersistError {
    match error {
        StoreError::Encode { reason, .. } => PersistError::BinarySerialization(format!(
            "annals: {operation} failed: the checkpoint does not encode as MessagePack: {reason} (nothing was written)"
        )),
        StoreError::Decode { stream, seq, reason } => PersistError::BinarySerialization(format!(
            "annals: {operation} failed: cannot decode the checkpoint at entry {seq} of stream {stream}: {reason}"
        )),
        other => PersistError::Storage(format!("annals: {operation} failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_key_is_the_lowercase_hyphenated_run_id() {
        let run_id = Uuid::from_u128(0x0123_4567_89AB_CDEF_0123_4567_89AB_CDEF);
        assert_eq!(run_key(&run_id), "01234567-89ab-cdef-0123-456789abcdef");
        assert_eq!(Uuid::parse_str(&run_key(&run_id)).unwrap(), run_id);
    }

    #[test]
    fn every_error_message_names_the_operation_and_the_run() {
        let run_id = Uuid::from_u128(7);
        let decode = StoreError::Decode { stream: "checkpoint/x".to_owned(), seq: 3, reason: "bad".to_owned() };
        let message = persist_error(Operation::Load(run_id), decode).to_string();
        assert!(
            message.contains(&run_id.to_string()) && message.contains("entry 3 of stream checkpoint/x"),
            "{message}"
        );
        let closed = persist_error(Operation::Delete(run_id), StoreError::Backend(annals::Error::Closed));
        assert!(matches!(closed, PersistError::Storage(_)), "{closed}");
        assert!(closed.to_string().contains(&format!("delete of run {run_id}")), "{closed}");
    }
}
