//! cano's `recovery::CheckpointStore` on Annals.
//!
//! [cano](https://docs.rs/cano) records one [`CheckpointRow`] per state a
//! workflow enters (plus saga completion rows and `SteppedTask` cursor
//! rows) and replays them in `resume_from` after a crash.
//! [`AnnalsCheckpointStore`] keeps those rows in an Annals log instead of
//! cano's redb file: each append is one checksummed record, acknowledged
//! after an fdatasync that concurrent workflows share, instead of one
//! fsync'd B-tree transaction per step.
//!
//! Switching a workflow to Annals is one constructor: where it had
//! `Arc::new(RedbCheckpointStore::new("checkpoints.redb")?)`, it takes
//! `Arc::new(AnnalsCheckpointStore::open("checkpoints")?)`.
//!
//! ```
//! use std::sync::Arc;
//!
//! use annals_cano::AnnalsCheckpointStore;
//! use cano::prelude::*;
//!
//! #[derive(Debug, Clone, PartialEq, Eq, Hash)]
//! enum Step {
//!     Fetch,
//!     Done,
//! }
//!
//! #[derive(Clone)]
//! struct Fetch;
//!
//! #[cano::task(state = Step)]
//! impl Fetch {
//!     async fn run(&self, _resources: &Resources) -> Result<TaskResult<Step>, CanoError> {
//!         Ok(TaskResult::Single(Step::Done))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let checkpoints = dir.path().join("checkpoints");
//! // The one line that changes: the store.
//! let store = Arc::new(AnnalsCheckpointStore::open(&checkpoints)?);
//! let workflow = Workflow::bare()
//!     .register(Step::Fetch, Fetch)
//!     .add_exit_state(Step::Done)
//!     .with_checkpoint_store(store.clone())
//!     .with_workflow_id("order-42");
//! assert_eq!(workflow.orchestrate(Step::Fetch, CancellationToken::disabled()).await?, Step::Done);
//! // A run that completes clears its rows; a crashed one is picked up
//! // with `workflow.resume_from("order-42", ..)` in the next process.
//! assert!(store.load_run("order-42").await?.is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! # Layout and encoding
//!
//! A workflow id is one stream of the log, `rows/<workflow id>`, managed by
//! [`annals::stores::checkpoint_rows::CheckpointRows`]: a duplicate
//! `(workflow id, sequence)` is rejected and never overwrites, `load_run`
//! sorts by sequence, `clear` empties the stream. A row is MessagePack with
//! field names inside the stores' versioned envelope
//! ([`annals::stores::codec`]); the blob is stored as MessagePack binary,
//! not as a list of numbers, so a 5 MiB blob takes 5 MiB.
//!
//! # Errors
//!
//! Every trait method fails with [`CanoError::CheckpointStore`] (category
//! `"checkpoint_store"`), whose message says what happened: a duplicate
//! starts with `checkpoint conflict`, a row that does not decode names the
//! workflow id and its position in the stream, and a failure of the log
//! itself (I/O, a full disk, a closed or poisoned log, a row over the log's
//! `record_bytes_max`) carries the log's own message.
//!
//! # Where an append's fdatasync runs
//!
//! From a future that a multi-threaded tokio runtime drives in `block_on`
//! (as `#[tokio::main]` drives `main`), the append commits on the calling
//! thread, which blocks there anyway: one write and one fdatasync, with no
//! hand-off to the log's writer thread and back. From a task spawned on a
//! multi-threaded runtime, the log itself commits a lone workflow's append
//! on the worker's thread inside `block_in_place`, which first hands the
//! worker's other tasks to another thread (`annals::Options::awaited_commits_in_place`);
//! with many workflows appending at once, and from a current-thread
//! runtime or another executor, it is handed to the writer thread and
//! awaited. Either way no thread a runtime still schedules tasks on waits
//! on the disk.
//!
//! # Lock
//!
//! The log's directory is locked while the store (or any other handle on
//! its log) lives; dropping the last one, or [`AnnalsCheckpointStore::close`],
//! releases it, so a process can reopen the directory at once. A second
//! [`AnnalsCheckpointStore::open`] of a live directory fails with
//! [`annals::Error::Locked`]; share one store (it is meant to be shared as
//! `Arc<dyn CheckpointStore>`) or build several over one log with
//! [`AnnalsCheckpointStore::from_log`].

mod row_body;

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use annals::stores::checkpoint_rows::{CheckpointRows, SequencedRow};
use annals::stores::{Backend, Committed, Cursor, Entry, EntryRef, Expect, StoreError, StoreOp, StreamContents};
use bytes::Bytes;
use cano::CanoError;
use cano::recovery::{CheckpointRow, CheckpointStore, RowKind};

/// A cano [`CheckpointStore`] over an Annals log.
///
/// Cheap to share: wrap it in an `Arc` and hand clones to every workflow.
/// All methods may be called concurrently, for the same or different ids.
pub struct AnnalsCheckpointStore {
    rows: CheckpointRows<RowsBackend, StoredRow>,
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
        AnnalsCheckpointStore { rows: CheckpointRows::new(Arc::new(RowsBackend { log })) }
    }

    /// The log the rows are kept in.
    pub fn log(&self) -> &Arc<annals::Log> {
        &self.rows.backend().log
    }

    /// Syncs and closes the log and releases its directory lock now, even
    /// while other handles on it live; every later call on this store (or
    /// on any store over the same log) fails with a `checkpoint_store` error
    /// saying the log is closed. Closing twice is harmless.
    ///
    /// # Errors
    /// [`annals::Error::Poisoned`] if an earlier failure poisoned the log
    /// (the lock is released all the same); [`annals::Error::Io`] if the
    /// final sync fails.
    pub async fn close(&self) -> annals::Result<()> {
        self.log().close().await
    }
}

impl fmt::Debug for AnnalsCheckpointStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnnalsCheckpointStore").field("dir", &self.log().dir()).finish()
    }
}

#[cano::checkpoint_store]
impl CheckpointStore for AnnalsCheckpointStore {
    async fn append(&self, workflow_id: &str, row: CheckpointRow) -> Result<(), CanoError> {
        let sequence = row.sequence;
        self.rows
            .append(workflow_id, StoredRow::from(row))
            .await
            .map_err(|error| checkpoint_store_error(workflow_id, Operation::Append { sequence }, error))
    }

    async fn load_run(&self, workflow_id: &str) -> Result<Vec<CheckpointRow>, CanoError> {
        let rows = self
            .rows
            .load_run(workflow_id)
            .await
            .map_err(|error| checkpoint_store_error(workflow_id, Operation::Load, error))?;
        Ok(rows.into_iter().map(CheckpointRow::from).collect())
    }

    async fn clear(&self, workflow_id: &str) -> Result<(), CanoError> {
        self.rows.clear(workflow_id).await.map_err(|error| checkpoint_store_error(workflow_id, Operation::Clear, error))
    }
}

/// The log as the rows' backend: every method is the log's, and a commit
/// made where the calling thread may block runs on that thread.
///
/// The log's async commit hands the batch to its writer thread, which
/// writes, fdatasyncs and wakes the caller: two thread hand-offs per append,
/// which a busy machine makes cost as much as the fdatasync. A blocking
/// commit ([`Backend::commit_blocking`]) leads the group commit on the
/// caller's own thread when no one else is writing. That thread may block
/// when it is no async runtime's worker: a future that tokio's
/// multi-threaded runtime drives in `block_on` (as `#[tokio::main]` drives
/// `main`), which has no task id. Anywhere else (a spawned task, a
/// current-thread runtime, another executor) the commit is awaited (the
/// log may commit a lone appender's in place on a multi-threaded runtime's
/// worker, inside `block_in_place`), so no fdatasync ever runs on a thread
/// a runtime still schedules tasks on.
struct RowsBackend {
    log: Arc<annals::Log>,
}

/// Whether the calling thread may block: it runs a future in the
/// `block_on` of tokio's multi-threaded runtime, not a task on a worker.
fn may_block_here() -> bool {
    use tokio::runtime::{Handle, RuntimeFlavor};
    tokio::task::try_id().is_none()
        && Handle::try_current().is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread)
}

impl Backend for RowsBackend {
    async fn commit(&self, ops: Vec<StoreOp>) -> Result<Vec<Committed>, StoreError> {
        if may_block_here() { self.log.commit_blocking(ops) } else { Backend::commit(self.log.as_ref(), ops).await }
    }

    fn commit_blocking(&self, ops: Vec<StoreOp>) -> Result<Vec<Committed>, StoreError> {
        Backend::commit_blocking(self.log.as_ref(), ops)
    }

    async fn append(&self, stream: &str, expect: Expect, payload: Bytes) -> Result<Committed, StoreError> {
        if may_block_here() {
            self.log.append_blocking(stream, expect, payload)
        } else {
            Backend::append(self.log.as_ref(), stream, expect, payload).await
        }
    }

    fn append_blocking(&self, stream: &str, expect: Expect, payload: Bytes) -> Result<Committed, StoreError> {
        Backend::append_blocking(self.log.as_ref(), stream, expect, payload)
    }

    fn read(&self, stream: &str) -> impl Future<Output = Result<StreamContents, StoreError>> + Send {
        self.log.read(stream)
    }

    fn visit<F>(&self, stream: &str, f: F) -> impl Future<Output = Result<(), StoreError>> + Send
    where
        F: FnMut(EntryRef<'_>) -> Result<(), StoreError> + Send,
    {
        self.log.visit(stream, f)
    }

    fn read_range(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send {
        self.log.read_range(stream, from, limit)
    }

    fn read_stream_after(
        &self,
        stream: &str,
        after: Cursor,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send {
        Backend::read_stream_after(self.log.as_ref(), stream, after, limit)
    }

    fn streams(&self, prefix: &str) -> impl Future<Output = Result<Vec<(String, u64)>, StoreError>> + Send {
        Backend::streams(self.log.as_ref(), prefix)
    }

    fn read_after(&self, after: Cursor, limit: usize) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send {
        self.log.read_after(after, limit)
    }
}

/// Which trait method failed, for the error message.
#[derive(Clone, Copy, Debug)]
enum Operation {
    Append { sequence: u64 },
    Load,
    Clear,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Append { sequence } => write!(f, "append of sequence {sequence}"),
            Operation::Load => f.write_str("load"),
            Operation::Clear => f.write_str("clear"),
        }
    }
}

/// Maps a store error to cano's `checkpoint_store` category, with a message
/// that says what happened and to which workflow.
fn checkpoint_store_error(workflow_id: &str, operation: Operation, error: StoreError) -> CanoError {
    let message = match (operation, error) {
        (Operation::Append { sequence }, StoreError::Duplicate { .. }) => format!(
            "checkpoint conflict: workflow {workflow_id:?} already has a row at sequence {sequence}; \
             resume the existing run or clear it before starting a new one (nothing was written)"
        ),
        (_, StoreError::Decode { stream, seq, reason }) => format!(
            "cannot decode a checkpoint row of workflow {workflow_id:?} (entry {seq} of stream {stream}): {reason}"
        ),
        (_, StoreError::Conflict { .. }) => format!(
            "checkpoint contention: the {operation} for workflow {workflow_id:?} kept losing to concurrent \
             appends to the same workflow and gave up (nothing was written)"
        ),
        (_, other) => format!("annals: {operation} for workflow {workflow_id:?} failed: {other}"),
    };
    CanoError::checkpoint_store(message)
}

/// A [`CheckpointRow`] as stored: the same fields, with the blob encoded as
/// bytes rather than as a list of numbers.
///
/// ```text
/// // Format (MessagePack map, by field name):
/// // { sequence: u64 | state: str | task_id: str | output_blob: bin or nil | kind: RowKind | workflow_version: u32 }
/// ```
///
/// `kind` uses cano's own serde form of [`RowKind`] (the variant name), so a
/// kind a later cano adds needs no change here. `output_blob` and
/// `workflow_version` default when absent, so a row written without them
/// still reads.
///
/// It is cano's row itself, so a loaded run is handed to cano as it was
/// decoded, with no field moved.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
struct StoredRow(#[serde(with = "RowFields")] CheckpointRow);

/// The stored form of [`CheckpointRow`]'s fields, for serde.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(remote = "CheckpointRow")]
struct RowFields {
    sequence: u64,
    state: String,
    task_id: String,
    #[serde(default, with = "blob")]
    output_blob: Option<Vec<u8>>,
    #[serde(default)]
    kind: RowKind,
    #[serde(default)]
    workflow_version: u32,
}

impl SequencedRow for StoredRow {
    fn sequence(&self) -> u64 {
        self.0.sequence
    }

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), String> {
        row_body::encode(self, out)
    }

    fn encoded_body_bytes(&self) -> Option<usize> {
        row_body::encoded_bytes(self)
    }

    fn decode_body(body: &[u8]) -> Result<StoredRow, String> {
        row_body::decode(body)
    }
}

impl From<CheckpointRow> for StoredRow {
    fn from(row: CheckpointRow) -> StoredRow {
        StoredRow(row)
    }
}

impl From<StoredRow> for CheckpointRow {
    fn from(row: StoredRow) -> CheckpointRow {
        row.0
    }
}

/// `Option<Vec<u8>>` as serde bytes (MessagePack `bin`); reads a list of
/// numbers too.
mod blob {
    use std::fmt;

    use serde::de::{self, Deserializer, SeqAccess, Visitor};
    use serde::ser::{Serialize, Serializer};

    struct AsBytes<'a>(&'a [u8]);

    impl Serialize for AsBytes<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    pub(crate) fn serialize<S: Serializer>(blob: &Option<Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
        match blob {
            Some(bytes) => serializer.serialize_some(&AsBytes(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<u8>>, D::Error> {
        deserializer.deserialize_option(OptionalBytes)
    }

    struct OptionalBytes;

    impl<'de> Visitor<'de> for OptionalBytes {
        type Value = Option<Vec<u8>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bytes or nil")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_byte_buf(Bytes).map(Some)
        }
    }

    struct Bytes;

    impl<'de> Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(byte) = seq.next_element::<u8>()? {
                bytes.push(byte);
            }
            Ok(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit may block only where no runtime worker would be held: the
    /// `block_on` of tokio's multi-threaded runtime (a LocalSet's
    /// `run_until` in it included, which forbids `block_in_place` and gets
    /// none), never a task or a current-thread runtime.
    #[test]
    fn only_a_multi_threaded_runtimes_block_on_may_block() {
        assert!(!may_block_here(), "outside any runtime: the caller's executor is unknown");
        let multi = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        assert!(multi.block_on(async { may_block_here() }));
        assert!(!multi.block_on(async { tokio::spawn(async { may_block_here() }).await.unwrap() }));
        let local = tokio::task::LocalSet::new();
        assert!(multi.block_on(local.run_until(async { may_block_here() })));
        let in_local_task = local.run_until(async { tokio::task::spawn_local(async { may_block_here() }).await });
        assert!(!multi.block_on(in_local_task).unwrap());
        let current = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert!(!current.block_on(async { may_block_here() }));
    }

    fn round_trip(row: &CheckpointRow) -> (CheckpointRow, usize) {
        let stored = StoredRow::from(row.clone());
        let bytes = annals::stores::codec::encode("rows/t", 1, &stored).unwrap();
        let (back, _schema): (StoredRow, u16) = annals::stores::codec::decode("rows/t", 0, 1, &bytes).unwrap();
        (CheckpointRow::from(back), bytes.len())
    }

    #[test]
    fn every_field_and_kind_survives_the_encoding() {
        for row in [
            CheckpointRow::new(0, "Start", "t0"),
            CheckpointRow::new(1, "Pay", "charge").with_output(vec![1, 2, 255]),
            CheckpointRow::new(2, "Step", "stepper").with_cursor(Vec::new()),
            CheckpointRow::new(u64::MAX, "", "").with_workflow_version(u32::MAX),
        ] {
            assert_eq!(round_trip(&row).0, row);
        }
    }

    #[test]
    fn a_blob_is_stored_as_bytes_not_as_a_list_of_numbers() {
        let blob = vec![0xFF; 4096];
        let (back, encoded_bytes) = round_trip(&CheckpointRow::new(0, "S", "t").with_output(blob.clone()));
        assert_eq!(back.output_blob, Some(blob));
        assert!(encoded_bytes < 4096 + 128, "{encoded_bytes} bytes for a 4096-byte blob");
    }

    #[test]
    fn a_row_without_the_optional_fields_reads_with_their_defaults() {
        #[derive(serde::Serialize)]
        struct Minimal {
            sequence: u64,
            state: &'static str,
            task_id: &'static str,
        }
        let bytes =
            annals::stores::codec::encode("rows/t", 1, &Minimal { sequence: 3, state: "S", task_id: "t" }).unwrap();
        let (back, _): (StoredRow, u16) = annals::stores::codec::decode("rows/t", 0, 1, &bytes).unwrap();
        assert_eq!(CheckpointRow::from(back), CheckpointRow::new(3, "S", "t"));
    }
}
