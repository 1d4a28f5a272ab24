//! Checkpoint rows: the shape of cano's `recovery::CheckpointStore`.
//!
//! A run (one workflow id) is an append-only list of rows, each with a
//! caller-chosen sequence. `append` is durable when it returns and rejects
//! a sequence the run already has, without overwriting it; `load_run`
//! returns the rows in ascending sequence, whatever order they were
//! appended in; `clear` forgets a run (an unknown id is a no-op). Every
//! method may be called concurrently, from any number of tasks.
//!
//! Each run is one stream, `rows/<workflow id>`. A duplicate is found from
//! the run's sequences, kept in memory once read; the append that follows
//! is guarded by the stream's next sequence, so two racing appends of one
//! sequence cannot both land: the loser reads the run again and finds the
//! duplicate.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::stores::backend::{Backend, Expect, StoreError, StoreOp};
use crate::stores::codec;

/// The schema version this build writes rows under.
pub const ROW_SCHEMA: u16 = 1;
/// Prefix of a run's stream name.
pub const RUN_STREAM_PREFIX: &str = "rows/";
/// How often an append retries after another append to the same run
/// moved it first.
const APPEND_RETRIES_MAX: usize = 64;
/// Runs whose sequences the store keeps in memory before it forgets those
/// not in use.
const RUNS_REMEMBERED_MAX: usize = 4096;

/// A row with a caller-chosen position in its run.
pub trait SequencedRow: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The row's sequence within its run.
    fn sequence(&self) -> u64;
}

/// What the store remembers of a run it has read.
#[derive(Debug, Default)]
struct RunState {
    /// The stream's next sequence (not the rows' sequences).
    next: u64,
    /// The rows' sequences.
    sequences: BTreeSet<u64>,
}

/// Checkpoint rows over a backend.
pub struct CheckpointRows<B, R> {
    backend: Arc<B>,
    runs: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<RunState>>>>>,
    _rows: std::marker::PhantomData<fn() -> R>,
}

impl<B: Backend, R: SequencedRow> CheckpointRows<B, R> {
    /// A store over `backend`.
    pub fn new(backend: Arc<B>) -> CheckpointRows<B, R> {
        CheckpointRows { backend, runs: Mutex::new(HashMap::new()), _rows: std::marker::PhantomData }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    fn stream(workflow_id: &str) -> String {
        format!("{RUN_STREAM_PREFIX}{workflow_id}")
    }

    fn run(&self, workflow_id: &str) -> Arc<tokio::sync::Mutex<Option<RunState>>> {
        let mut runs = self.runs.lock();
        if runs.len() >= RUNS_REMEMBERED_MAX && !runs.contains_key(workflow_id) {
            // Forget what is not in use: a forgotten run is read again when
            // it is next appended to. Memory stays bounded however many ids.
            runs.retain(|_, run| Arc::strong_count(run) > 1);
        }
        runs.entry(workflow_id.to_owned()).or_default().clone()
    }

    /// Reads a run's rows, decoded, in the order they were appended.
    async fn read_rows(&self, workflow_id: &str) -> Result<(Vec<R>, u64), StoreError> {
        let stream = Self::stream(workflow_id);
        let contents = self.backend.read(&stream).await?;
        let mut rows = Vec::with_capacity(contents.entries.len());
        for entry in &contents.entries {
            let (row, _schema) = codec::decode::<R>(&stream, entry.seq, ROW_SCHEMA, &entry.payload)?;
            rows.push(row);
        }
        Ok((rows, contents.next_seq))
    }

    /// Appends `row` to the run durably.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] if the run has a row with this sequence
    /// (nothing is written, the old row stays); [`StoreError::Backend`].
    pub async fn append(&self, workflow_id: &str, row: R) -> Result<(), StoreError> {
        let stream = Self::stream(workflow_id);
        let payload = codec::encode(&stream, ROW_SCHEMA, &row)?;
        let sequence = row.sequence();
        // One append per run at a time in this store; other stores (or
        // processes, through the log) are caught by the guard.
        let run = self.run(workflow_id);
        let mut known = run.lock().await;
        for _ in 0..APPEND_RETRIES_MAX {
            let fresh = known.is_none();
            if fresh {
                let (rows, next) = self.read_rows(workflow_id).await?;
                *known = Some(RunState { next, sequences: rows.iter().map(SequencedRow::sequence).collect() });
            }
            let state = known.as_mut().expect("read above");
            if state.sequences.contains(&sequence) {
                if !fresh {
                    // What this store remembers may be stale (another store
                    // over the same backend may have cleared the run): a
                    // duplicate is refused only on a fresh read.
                    *known = None;
                    continue;
                }
                return Err(StoreError::Duplicate { stream, what: format!("sequence {sequence}") });
            }
            let op = StoreOp::append(stream.clone(), Expect::Next(state.next), payload.clone());
            match self.backend.commit(vec![op]).await {
                Ok(_) => {
                    state.next += 1;
                    state.sequences.insert(sequence);
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => *known = None, // moved by someone else: read again
                Err(error) => {
                    *known = None;
                    return Err(error);
                }
            }
        }
        Err(StoreError::Contention { stream, attempts: APPEND_RETRIES_MAX })
    }

    /// The run's rows in ascending sequence (empty for an unknown id).
    ///
    /// # Errors
    /// [`StoreError::Decode`] naming the run and the row that does not
    /// decode; [`StoreError::Backend`].
    pub async fn load_run(&self, workflow_id: &str) -> Result<Vec<R>, StoreError> {
        let (mut rows, _) = self.read_rows(workflow_id).await?;
        rows.sort_by_key(SequencedRow::sequence);
        Ok(rows)
    }

    /// Forgets the run; an unknown id is a no-op.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn clear(&self, workflow_id: &str) -> Result<(), StoreError> {
        let stream = Self::stream(workflow_id);
        let run = self.run(workflow_id);
        let mut known = run.lock().await;
        *known = None;
        let contents = self.backend.read(&stream).await?;
        if contents.next_seq == 0 && contents.snapshot.is_none() {
            return Ok(());
        }
        self.backend.commit(vec![StoreOp::clear(stream, Expect::Any)]).await?;
        *known = Some(RunState::default());
        drop(known);
        self.runs.lock().remove(workflow_id);
        Ok(())
    }
}
