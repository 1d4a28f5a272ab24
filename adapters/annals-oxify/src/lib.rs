//! oxify-model's `CheckpointStorage` on Annals.
//!
//! oxify keeps a history of [`ExecutionCheckpoint`]s per execution:
//! `save_checkpoint` adds one and returns its [`CheckpointId`],
//! `load_latest_checkpoint` and `load_checkpoint` read one back,
//! `list_checkpoints` describes them newest first, `prune_checkpoints`
//! keeps the newest few and `delete_checkpoints` forgets an execution.
//! [`AnnalsCheckpointStorage`] keeps them in an Annals log, through
//! [`annals::stores::checkpoint_history::CheckpointHistory`]: each save is
//! one checksummed commit acknowledged after an fdatasync, and a prune goes
//! through the log's retention, so compaction gives the space back.
//!
//! ```
//! use annals_oxify::AnnalsCheckpointStorage;
//! use oxify_model::{CheckpointStorage, ExecutionCheckpoint, ExecutionState};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! // The one line that changes: the storage.
//! let storage = AnnalsCheckpointStorage::open(dir.path().join("checkpoints"))?;
//! let execution = uuid::Uuid::new_v4();
//! let checkpoint = ExecutionCheckpoint {
//!     timestamp: chrono::Utc::now(),
//!     completed_nodes: vec![uuid::Uuid::new_v4()],
//!     variables: Default::default(),
//!     state: ExecutionState::Running,
//! };
//! let id = storage.save_checkpoint(execution, &checkpoint)?;
//! assert_eq!(storage.list_checkpoints(execution)?[0].id, id);
//! assert!(storage.load_latest_checkpoint(execution)?.is_some());
//! # Ok(())
//! # }
//! ```
//!
//! # What the trait's values mean here
//!
//! - A [`CheckpointId`] is a UUIDv7: ids sort by time, and within an
//!   execution each is larger than every one saved before it. "Latest" is
//!   the checkpoint the log committed last, whatever the checkpoints' own
//!   `timestamp`s say.
//! - [`CheckpointMetadata`] is read from a small header, never by decoding
//!   a checkpoint: `created_at` is when the log committed it, `size_bytes`
//!   its stored size, `completed_node_count` the count saved with it.
//!   `workflow_id` is the one given to
//!   [`AnnalsCheckpointStorage::with_workflow_id`] (nil by default): the
//!   trait's `save_checkpoint` is not told one.
//! - `load_checkpoint` is given an id alone, so it scans the headers of
//!   every execution's checkpoints for it.
//! - With [`Compression::Lz4`] (oxify's `CheckpointConfig::compress`) a
//!   checkpoint is an LZ4 block when that makes it smaller, and its
//!   metadata says so.
//!
//! # Synchronous calls
//!
//! The trait is synchronous and the store is async: each method waits for
//! its future on the calling thread (no runtime needed, and none is
//! entered, so it may be called from inside one, though it blocks that
//! thread for the length of an fdatasync).
//!
//! # Errors
//!
//! A stored checkpoint that does not decode (damage, including a damaged
//! compressed body) is [`CheckpointError::InvalidData`] naming the
//! execution's stream and the entry; one that does not encode is
//! [`CheckpointError::SerializationError`]; any failure of the log is
//! [`CheckpointError::StorageError`] with the log's message.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use annals::stores::StoreError;
pub use annals::stores::checkpoint_history::Compression;
use annals::stores::checkpoint_history::{CheckpointHistory, CheckpointMeta};
use oxify_model::{
    CheckpointError, CheckpointId, CheckpointMetadata, CheckpointStorage, ExecutionCheckpoint, ExecutionId, WorkflowId,
};

/// oxify-model's `CheckpointStorage` over an Annals log.
pub struct AnnalsCheckpointStorage {
    history: CheckpointHistory<annals::Log, ExecutionCheckpoint>,
    workflow_id: WorkflowId,
}

impl AnnalsCheckpointStorage {
    /// Opens (or creates) the log in `dir`, without compression.
    ///
    /// # Errors
    /// As [`annals::Log::open`].
    pub fn open(dir: impl AsRef<Path>) -> annals::Result<AnnalsCheckpointStorage> {
        let log = annals::Log::open(dir, annals::Options::default())?;
        Ok(AnnalsCheckpointStorage::from_log(Arc::new(log), Compression::None))
    }

    /// A storage over a log the caller opened, saving under `compression`.
    pub fn from_log(log: Arc<annals::Log>, compression: Compression) -> AnnalsCheckpointStorage {
        AnnalsCheckpointStorage {
            history: CheckpointHistory::in_namespace(log, "oxify", compression),
            workflow_id: WorkflowId::nil(),
        }
    }

    /// The same storage, reporting `workflow_id` in every checkpoint's
    /// metadata.
    pub fn with_workflow_id(self, workflow_id: WorkflowId) -> AnnalsCheckpointStorage {
        AnnalsCheckpointStorage { workflow_id, ..self }
    }

    /// The log the checkpoints are kept in.
    pub fn log(&self) -> &Arc<annals::Log> {
        self.history.backend()
    }

    fn metadata(&self, execution_id: ExecutionId, meta: &CheckpointMeta) -> CheckpointMetadata {
        let created_at =
            i64::try_from(meta.timestamp_ms).ok().and_then(chrono::DateTime::from_timestamp_millis).unwrap_or_default();
        CheckpointMetadata {
            id: meta.id,
            execution_id,
            workflow_id: self.workflow_id,
            created_at,
            completed_node_count: usize::try_from(meta.summary).unwrap_or(usize::MAX),
            size_bytes: usize::try_from(meta.stored_bytes).unwrap_or(usize::MAX),
            compressed: meta.compressed,
        }
    }
}

fn key(execution_id: ExecutionId) -> String {
    execution_id.hyphenated().to_string()
}

fn checkpoint_error(error: StoreError) -> CheckpointError {
    match error {
        StoreError::Decode { .. } => CheckpointError::InvalidData(error.to_string()),
        StoreError::Encode { .. } => CheckpointError::SerializationError(error.to_string()),
        other => CheckpointError::StorageError(other.to_string()),
    }
}

/// Wakes the thread that waits in [`wait`].
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives `future` to completion on this thread, parking between polls.
fn wait<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

impl CheckpointStorage for AnnalsCheckpointStorage {
    fn save_checkpoint(
        &self,
        execution_id: ExecutionId,
        checkpoint: &ExecutionCheckpoint,
    ) -> Result<CheckpointId, CheckpointError> {
        let completed = checkpoint.completed_nodes.len() as u64;
        wait(self.history.save_with_summary(&key(execution_id), checkpoint, completed)).map_err(checkpoint_error)
    }

    fn load_latest_checkpoint(
        &self,
        execution_id: ExecutionId,
    ) -> Result<Option<ExecutionCheckpoint>, CheckpointError> {
        let latest = wait(self.history.load_latest(&key(execution_id))).map_err(checkpoint_error)?;
        Ok(latest.map(|(_, checkpoint)| checkpoint))
    }

    fn load_checkpoint(&self, checkpoint_id: CheckpointId) -> Result<Option<ExecutionCheckpoint>, CheckpointError> {
        let found = wait(self.history.find(checkpoint_id)).map_err(checkpoint_error)?;
        Ok(found.map(|(_, checkpoint)| checkpoint))
    }

    fn list_checkpoints(&self, execution_id: ExecutionId) -> Result<Vec<CheckpointMetadata>, CheckpointError> {
        let listed = wait(self.history.list(&key(execution_id))).map_err(checkpoint_error)?;
        Ok(listed.iter().map(|meta| self.metadata(execution_id, meta)).collect())
    }

    fn prune_checkpoints(&self, execution_id: ExecutionId, keep_count: usize) -> Result<usize, CheckpointError> {
        wait(self.history.prune(&key(execution_id), keep_count)).map_err(checkpoint_error)
    }

    fn delete_checkpoints(&self, execution_id: ExecutionId) -> Result<usize, CheckpointError> {
        wait(self.history.delete_all(&key(execution_id))).map_err(checkpoint_error)
    }
}

#[cfg(test)]
mod tests {
    use oxify_model::ExecutionState;

    use super::*;

    fn storage(dir: &tempfile::TempDir) -> AnnalsCheckpointStorage {
        AnnalsCheckpointStorage::open(dir.path()).expect("open")
    }

    fn checkpoint(nodes: usize, state: ExecutionState) -> ExecutionCheckpoint {
        ExecutionCheckpoint {
            timestamp: chrono::Utc::now(),
            completed_nodes: (0..nodes).map(|_| uuid::Uuid::new_v4()).collect(),
            variables: [("nodes".to_owned(), serde_json::json!(nodes))].into(),
            state,
        }
    }

    fn nodes_of(checkpoint: &ExecutionCheckpoint) -> usize {
        checkpoint.completed_nodes.len()
    }

    #[test]
    fn a_saved_checkpoint_loads_by_id_and_as_the_latest_also_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let execution = uuid::Uuid::new_v4();
        let (first, second) = {
            let storage = storage(&dir);
            let first = storage.save_checkpoint(execution, &checkpoint(1, ExecutionState::Running)).unwrap();
            let second = storage.save_checkpoint(execution, &checkpoint(2, ExecutionState::Completed)).unwrap();
            (first, second)
        };
        let storage = storage(&dir);
        let latest = storage.load_latest_checkpoint(execution).unwrap().expect("saved");
        assert_eq!((nodes_of(&latest), latest.state), (2, ExecutionState::Completed));
        let loaded = storage.load_checkpoint(first).unwrap().expect("saved");
        assert_eq!((nodes_of(&loaded), loaded.variables["nodes"].clone()), (1, serde_json::json!(1)));
        assert!(storage.load_checkpoint(second).unwrap().is_some());
        assert!(storage.load_checkpoint(uuid::Uuid::new_v4()).unwrap().is_none());
        assert!(storage.load_latest_checkpoint(uuid::Uuid::new_v4()).unwrap().is_none());
    }

    #[test]
    fn list_describes_each_checkpoint_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let workflow = uuid::Uuid::new_v4();
        let storage = storage(&dir).with_workflow_id(workflow);
        let execution = uuid::Uuid::new_v4();
        let ids: Vec<_> = (1..=3)
            .map(|nodes| storage.save_checkpoint(execution, &checkpoint(nodes, ExecutionState::Running)).unwrap())
            .collect();
        let listed = storage.list_checkpoints(execution).unwrap();
        assert_eq!(listed.iter().map(|meta| meta.id).collect::<Vec<_>>(), [ids[2], ids[1], ids[0]]);
        assert_eq!(listed.iter().map(|meta| meta.completed_node_count).collect::<Vec<_>>(), [3, 2, 1]);
        for meta in &listed {
            assert_eq!((meta.execution_id, meta.workflow_id, meta.compressed), (execution, workflow, false));
            assert!(meta.size_bytes > 0);
            assert!((chrono::Utc::now() - meta.created_at).num_seconds() < 60, "{}", meta.created_at);
        }
    }

    #[test]
    fn prune_keeping_2_of_5_deletes_3_and_they_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(&dir);
        let execution = uuid::Uuid::new_v4();
        let ids: Vec<_> = (0..5)
            .map(|nodes| storage.save_checkpoint(execution, &checkpoint(nodes, ExecutionState::Running)).unwrap())
            .collect();
        assert_eq!(storage.prune_checkpoints(execution, 2).unwrap(), 3);
        let listed: Vec<_> = storage.list_checkpoints(execution).unwrap().iter().map(|meta| meta.id).collect();
        assert_eq!(listed, [ids[4], ids[3]]);
        for id in &ids[..3] {
            assert!(storage.load_checkpoint(*id).unwrap().is_none(), "{id} was pruned");
        }
        assert_eq!(nodes_of(&storage.load_latest_checkpoint(execution).unwrap().unwrap()), 4);
        assert_eq!(storage.prune_checkpoints(execution, 2).unwrap(), 0);
    }

    #[test]
    fn delete_removes_every_checkpoint_of_the_execution() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(&dir);
        let execution = uuid::Uuid::new_v4();
        let id = storage.save_checkpoint(execution, &checkpoint(1, ExecutionState::Running)).unwrap();
        storage.save_checkpoint(execution, &checkpoint(2, ExecutionState::Running)).unwrap();
        assert_eq!(storage.delete_checkpoints(execution).unwrap(), 2);
        assert_eq!(storage.delete_checkpoints(execution).unwrap(), 0);
        assert!(storage.list_checkpoints(execution).unwrap().is_empty());
        assert!(storage.load_latest_checkpoint(execution).unwrap().is_none());
        assert!(storage.load_checkpoint(id).unwrap().is_none());
    }

    #[test]
    fn executions_are_isolated() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(&dir);
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        for nodes in 0..3 {
            storage.save_checkpoint(a, &checkpoint(nodes, ExecutionState::Running)).unwrap();
        }
        storage.save_checkpoint(b, &checkpoint(7, ExecutionState::Failed("boom".to_owned()))).unwrap();
        assert_eq!(storage.prune_checkpoints(a, 1).unwrap(), 2);
        assert_eq!(storage.list_checkpoints(b).unwrap().len(), 1);
        assert_eq!(storage.delete_checkpoints(a).unwrap(), 1);
        let latest = storage.load_latest_checkpoint(b).unwrap().expect("b is untouched");
        assert_eq!((nodes_of(&latest), latest.state), (7, ExecutionState::Failed("boom".to_owned())));
    }

    #[test]
    fn compressed_checkpoints_round_trip_and_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(annals::Log::open(dir.path(), annals::Options::default()).unwrap());
        let storage = AnnalsCheckpointStorage::from_log(log, Compression::Lz4);
        let execution = uuid::Uuid::new_v4();
        let mut roomy = checkpoint(2, ExecutionState::Running);
        roomy.variables.insert("text".to_owned(), serde_json::json!("oxify ".repeat(2000)));
        let id = storage.save_checkpoint(execution, &roomy).unwrap();
        let meta = &storage.list_checkpoints(execution).unwrap()[0];
        assert!(meta.compressed && meta.size_bytes < 2000, "{meta:?}");
        assert_eq!(storage.load_checkpoint(id).unwrap().unwrap().variables, roomy.variables);
    }
}
