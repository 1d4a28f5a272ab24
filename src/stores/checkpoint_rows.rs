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
//! is guarded by the stream's next sequence and its life (a clear ends
//! one), so two racing appends of one sequence cannot both land, nor can an
//! append decided on a run another store cleared and refilled since: the
//! loser reads the run again and finds the duplicate.
//!
//! A long run folds its history into one checkpoint with `snapshot_run`:
//! a snapshot and a prune of the rows it covers, in one atomic commit, so
//! the backend gives their space back. The fold names the run as the load
//! its state came from read it (`load_run_versioned`), and is refused if a
//! row it would cover was appended since; `load_snapshot` reads the state,
//! `load_run` the rows after it, and a folded sequence stays a duplicate.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::stores::backend::{
    Backend, Cursor, Entry, EntryKind, EntryRef, Expect, Incarnation, StoreError, StoreOp, StreamContents,
};
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

/// How far a run's snapshot (at `seq`, `payload`) folded its rows, without
/// decoding its state.
fn folded_through(stream: &str, seq: u64, payload: &[u8]) -> Result<u64, StoreError> {
    #[derive(serde::Deserialize)]
    struct Through {
        through: u64,
    }
    Ok(codec::decode::<Through>(stream, seq, RUN_SNAPSHOT_SCHEMA, payload)?.0.through)
}

/// What a run's latest fold hides of the rows a read finds after it: a
/// fold prunes the rows before the first one above its `through`, and a
/// row at or below it appended before the fold but after a row above it
/// stays in the stream; the fold's state holds it (the fold is refused
/// otherwise), so a read hands it back once, in the state. A row at or
/// below `through` appended after the fold is not in the state and is read.
#[derive(Clone, Copy)]
struct Folded {
    through: u64,
    at: Cursor,
}

impl Folded {
    fn hides(&self, sequence: u64, cursor: Cursor) -> bool {
        sequence <= self.through && cursor < self.at
    }
}

/// A row with a caller-chosen position in its run.
pub trait SequencedRow: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The row's sequence within its run.
    fn sequence(&self) -> u64;

    /// Appends the row's body (the MessagePack after the envelope;
    /// [`codec`]) to `out`. The default is serde's ([`codec::encode_body`]).
    /// A row type written often may write the bodies it knows faster
    /// itself, as long as it writes exactly serde's bytes for them (so a
    /// reader cannot tell) and hands every other row to
    /// [`codec::encode_body`].
    ///
    /// # Errors
    /// Why the row does not encode.
    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), String> {
        codec::encode_body(self, out)
    }

    /// Bytes [`SequencedRow::encode_body`] will write for this row, if the
    /// type knows without writing them (`None`, the default: it does not).
    /// The encoding buffer is then allocated at its exact size, so the
    /// payload the backend gets takes no second allocation (a buffer with
    /// room left over does: see [`codec::encode_sized`]). A wrong answer
    /// costs an allocation, never a wrong encoding.
    fn encoded_body_bytes(&self) -> Option<usize> {
        None
    }

    /// Decodes a row from its body (the MessagePack after the envelope;
    /// [`codec`]). The default is serde's ([`codec::decode_body`]). A row
    /// type read often may decode the bodies it knows faster itself, from
    /// the same bytes, as long as it returns what serde would for them and
    /// hands every other body to [`codec::decode_body`].
    ///
    /// # Errors
    /// Why the body does not decode as a row.
    fn decode_body(body: &[u8]) -> Result<Self, String> {
        codec::decode_body(body)
    }
}

/// Decodes the row at `seq` of `stream` with the row type's own decoder.
fn decode_row<R: SequencedRow>(stream: &str, seq: u64, payload: &[u8]) -> Result<R, StoreError> {
    // The envelope, then the body in place: no closure or (row, schema)
    // pair is passed through, which a load pays per row.
    let (body, _schema) = codec::body_of(stream, seq, ROW_SCHEMA, payload)?;
    R::decode_body(body).map_err(|reason| codec::decode_error(stream, seq, reason))
}

/// The schema version this build writes a run's snapshot under.
pub const RUN_SNAPSHOT_SCHEMA: u16 = 1;

/// What the store remembers of a run it has read.
#[derive(Debug, Default)]
struct RunState {
    /// The stream's next sequence (not the rows' sequences).
    next: u64,
    /// The stream's life the store read (`None`: it has no state). An
    /// append is guarded by it as well as by `next`: another store's clear
    /// and refill to the same length leaves `next` where it was, and
    /// sequences this store never saw behind it.
    incarnation: Option<Incarnation>,
    /// The rows' sequences.
    sequences: BTreeSet<u64>,
    /// The highest row sequence a snapshot folded in: its rows are pruned,
    /// and a row at or below it is a duplicate.
    folded_through: Option<u64>,
}

/// A run's snapshot's row sequence and state.
fn decode_fold<S: DeserializeOwned>(stream: &str, snapshot: &Entry) -> Result<(u64, S), StoreError> {
    let (folded, _) = codec::decode::<RunSnapshot<S>>(stream, snapshot.seq, RUN_SNAPSHOT_SCHEMA, &snapshot.payload)?;
    Ok((folded.through, folded.state))
}

/// A run's history folded into one checkpoint ([`CheckpointRows::snapshot_run`]).
#[derive(Serialize, serde::Deserialize)]
struct RunSnapshot<S> {
    /// The highest row sequence it covers.
    through: u64,
    /// The caller's state.
    state: S,
}

/// A run as one read found it ([`CheckpointRows::load_run_versioned`]):
/// its stream's next sequence and life, and its latest snapshot.
/// [`CheckpointRows::snapshot_run`] folds only rows it covers, over the
/// snapshot it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunVersion {
    /// [`StreamContents::unchanged`] of that read.
    seen: Expect,
    /// Its latest snapshot's position in commit order.
    snapshot: Option<Cursor>,
}

impl RunVersion {
    fn of(contents: &StreamContents) -> RunVersion {
        RunVersion { seen: contents.unchanged(), snapshot: contents.snapshot.as_ref().map(|snapshot| snapshot.cursor) }
    }

    /// Whether a fold whose last row at or below its `through` is the
    /// entry at `stream_seq` of the run read as `contents` folds only what
    /// this version saw: the same life, the same latest snapshot, and the
    /// entry there when it was read.
    fn covers(&self, contents: &StreamContents, stream_seq: u64) -> bool {
        let same_snapshot = self.snapshot == contents.snapshot.as_ref().map(|snapshot| snapshot.cursor);
        match self.seen {
            Expect::NextIn { next, incarnation } => {
                same_snapshot && contents.incarnation == Some(incarnation) && stream_seq < next
            }
            // Read without state: it saw no entry of any life.
            _ => false,
        }
    }
}

/// A run as one read found it ([`CheckpointRows::load_run_versioned`]).
#[derive(Debug)]
pub struct VersionedRun<R, S> {
    /// The latest fold's state and the row sequence it reaches
    /// ([`CheckpointRows::load_snapshot`]).
    pub folded: Option<(u64, S)>,
    /// The rows after it, in ascending sequence ([`CheckpointRows::load_run`]).
    pub rows: Vec<R>,
    /// The run as read: what a fold of state computed from `folded` and
    /// `rows` names ([`CheckpointRows::snapshot_run`]).
    pub version: RunVersion,
}

/// Rows a load's decoding list keeps room for when it is handed on to the
/// next load ([`CheckpointRows::load_run`]); a longer run's list is freed.
const LOAD_SCRATCH_ROWS_MAX: usize = 1024;

/// A run the store has seen: its stream's name, made once, and what the
/// store remembers of it.
#[derive(Debug)]
struct Run {
    /// `rows/<workflow id>`.
    stream: String,
    /// What the store remembers (`None`: read it again); an append holds
    /// it from its check through its commit.
    known: tokio::sync::Mutex<Option<RunState>>,
}

/// The runs by workflow id. foldhash, as the log's own stream map: the ids
/// are the streams' names, and a crafted collision could only slow a
/// lookup, never change its answer.
type Runs = HashMap<String, Arc<Run>, foldhash::fast::RandomState>;

/// Checkpoint rows over a backend.
pub struct CheckpointRows<B, R> {
    backend: Arc<B>,
    runs: Mutex<Runs>,
    /// An empty list that a load decodes into before it allocates the one
    /// it returns, at the run's length ([`CheckpointRows::load_run`]).
    load_scratch: Mutex<Vec<R>>,
    _rows: std::marker::PhantomData<fn() -> R>,
}

impl<B: Backend, R: SequencedRow> CheckpointRows<B, R> {
    /// A store over `backend`.
    pub fn new(backend: Arc<B>) -> CheckpointRows<B, R> {
        CheckpointRows {
            backend,
            runs: Mutex::new(Runs::default()),
            load_scratch: Mutex::new(Vec::new()),
            _rows: std::marker::PhantomData,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    fn stream(workflow_id: &str) -> String {
        // Not `format!`: its machinery costs more than the copy, on every load.
        [RUN_STREAM_PREFIX, workflow_id].concat()
    }

    fn run(&self, workflow_id: &str) -> Arc<Run> {
        let mut runs = self.runs.lock();
        // Looked up before it is inserted: the id is copied, and the
        // stream's name made, only for a new run.
        if let Some(run) = runs.get(workflow_id) {
            return run.clone();
        }
        if runs.len() >= RUNS_REMEMBERED_MAX {
            // Forget what is not in use: a forgotten run is read again when
            // it is next appended to. Memory stays bounded however many ids.
            runs.retain(|_, run| Arc::strong_count(run) > 1);
        }
        let run = Arc::new(Run { stream: Self::stream(workflow_id), known: tokio::sync::Mutex::new(None) });
        runs.insert(workflow_id.to_owned(), run.clone());
        run
    }

    /// Reads what the store remembers of a run: its rows' sequences (and
    /// how far a snapshot folded them), its next stream sequence and life.
    async fn read_state(&self, workflow_id: &str) -> Result<RunState, StoreError> {
        let stream = Self::stream(workflow_id);
        let contents = self.backend.read(&stream).await?;
        let mut sequences = BTreeSet::new();
        for entry in &contents.entries {
            sequences.insert(decode_row::<R>(&stream, entry.seq, &entry.payload)?.sequence());
        }
        let folded_through = match &contents.snapshot {
            Some(snapshot) => Some(folded_through(&stream, snapshot.seq, &snapshot.payload)?),
            None => None,
        };
        Ok(RunState { next: contents.next_seq, incarnation: contents.incarnation, sequences, folded_through })
    }

    /// Appends `row` to the run durably.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] if the run has a row with this sequence
    /// (nothing is written, the old row stays); [`StoreError::Backend`].
    pub async fn append(&self, workflow_id: &str, row: R) -> Result<(), StoreError> {
        let run = self.run(workflow_id);
        let stream = run.stream.as_str();
        // Encoded before the run is locked; moved into the first attempt's
        // append, and encoded again only for a later attempt (which a
        // conflict makes rare): no attempt copies or shares it.
        let body_bytes = row.encoded_body_bytes();
        let mut payload = Some(codec::encode_sized(stream, ROW_SCHEMA, body_bytes, |out| row.encode_body(out))?);
        let sequence = row.sequence();
        // One append per run at a time in this store; other stores (or
        // processes, through the log) are caught by the guard.
        let mut known = run.known.lock().await;
        for _ in 0..APPEND_RETRIES_MAX {
            let fresh = known.is_none();
            if fresh {
                *known = Some(self.read_state(workflow_id).await?);
            }
            let state = known.as_mut().expect("read above");
            // The sequence is recorded as it is checked, in one search of
            // the set: if the append fails, or this future is dropped before
            // it is answered, what is remembered is forgotten or checked
            // again on a fresh read before anything is refused.
            if state.folded_through.is_some_and(|through| sequence <= through) || !state.sequences.insert(sequence) {
                if !fresh {
                    // What this store remembers may be stale (another store
                    // over the same backend may have cleared the run): a
                    // duplicate is refused only on a fresh read.
                    *known = None;
                    continue;
                }
                return Err(StoreError::Duplicate { stream: stream.to_owned(), what: format!("sequence {sequence}") });
            }
            let payload = match payload.take() {
                Some(payload) => payload,
                None => codec::encode_sized(stream, ROW_SCHEMA, body_bytes, |out| row.encode_body(out))?,
            };
            let expect = match state.incarnation {
                Some(incarnation) => Expect::NextIn { next: state.next, incarnation },
                None => Expect::Empty,
            };
            match self.backend.append(stream, expect, payload).await {
                Ok(committed) => {
                    state.next += 1;
                    // The first append after a clear begins the stream's next life.
                    state.incarnation = committed.incarnation;
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => *known = None, // moved by someone else: read again
                Err(error) => {
                    *known = None;
                    return Err(error);
                }
            }
        }
        Err(StoreError::Contention { stream: stream.to_owned(), attempts: APPEND_RETRIES_MAX })
    }

    /// The run's rows in ascending sequence (empty for an unknown id).
    ///
    /// # Errors
    /// [`StoreError::Decode`] naming the run and the row that does not
    /// decode; [`StoreError::Backend`].
    pub async fn load_run(&self, workflow_id: &str) -> Result<Vec<R>, StoreError> {
        let stream = Self::stream(workflow_id);
        // Decoded into the last load's emptied list (a fresh one while
        // another load holds it), not into the one returned: that one is
        // allocated once, at the run's length, after the rows. Grown from
        // empty it took four allocations and copies a load, and sized
        // before the rows it made glibc consolidate the chunks the last
        // load's rows freed, which the rows' own allocations then missed.
        let mut rows = std::mem::take(&mut *self.load_scratch.lock());
        // Decoded from the backend's own bytes: nothing is copied per row
        // but the row itself. A snapshot's rows are folded, so it is
        // skipped, with the rows it holds that were not pruned.
        let mut folded: Option<Folded> = None;
        let decode = |entry: EntryRef<'_>| {
            if entry.kind == EntryKind::Entry {
                let row = decode_row::<R>(&stream, entry.seq, entry.payload)?;
                if !folded.is_some_and(|folded| folded.hides(row.sequence(), entry.cursor)) {
                    rows.push(row);
                }
            } else {
                let through = folded_through(&stream, entry.seq, entry.payload)?;
                folded = Some(Folded { through, at: entry.cursor });
            }
            Ok(())
        };
        let visited = self.backend.visit(&stream, decode).await;
        let loaded = match visited {
            Ok(()) => {
                rows.sort_by_key(SequencedRow::sequence);
                let mut loaded = Vec::with_capacity(rows.len());
                loaded.append(&mut rows);
                Ok(loaded)
            }
            Err(error) => {
                rows.clear();
                Err(error)
            }
        };
        if rows.capacity() <= LOAD_SCRATCH_ROWS_MAX {
            *self.load_scratch.lock() = rows;
        }
        loaded
    }

    /// The run's latest fold and the rows after it, from one read, with
    /// the run's version: the base from which a caller computes the state
    /// it folds with [`CheckpointRows::snapshot_run`]. (Read apart,
    /// `load_snapshot` and `load_run` may straddle another handle's fold:
    /// the state would miss the rows it folded.)
    ///
    /// # Errors
    /// As [`CheckpointRows::load_run`] and [`CheckpointRows::load_snapshot`].
    pub async fn load_run_versioned<S: DeserializeOwned>(
        &self,
        workflow_id: &str,
    ) -> Result<VersionedRun<R, S>, StoreError> {
        let stream = Self::stream(workflow_id);
        let contents = self.backend.read(&stream).await?;
        let (folded, hidden) = match &contents.snapshot {
            Some(snapshot) => {
                let (through, state) = decode_fold(&stream, snapshot)?;
                (Some((through, state)), Some(Folded { through, at: snapshot.cursor }))
            }
            None => (None, None),
        };
        let mut rows = Vec::with_capacity(contents.entries.len());
        for entry in &contents.entries {
            let row = decode_row::<R>(&stream, entry.seq, &entry.payload)?;
            if !hidden.is_some_and(|hidden| hidden.hides(row.sequence(), entry.cursor)) {
                rows.push(row);
            }
        }
        rows.sort_by_key(SequencedRow::sequence);
        Ok(VersionedRun { folded, rows, version: RunVersion::of(&contents) })
    }

    /// Folds the run's history through row sequence `through` into `state`,
    /// durably and atomically: the snapshot is recorded and the rows it
    /// covers are pruned (those appended before the first one above
    /// `through`; a row at or below `through` appended after that one stays
    /// on disk, hidden from reads by the fold), so that the backend
    /// reclaims them. Afterwards `load_run` returns the rows after it,
    /// [`CheckpointRows::load_snapshot`] the state, and a row at or below
    /// `through` is a duplicate. Returns whether anything was folded
    /// (`false`: the run's first row is above `through`, or it has none).
    ///
    /// `version` is the run as the caller read it to compute `state`
    /// ([`CheckpointRows::load_run_versioned`]): a row the fold would cover
    /// that was appended since, a run cleared since, or another fold since
    /// is not in `state`, so the fold is refused rather than losing it.
    /// Rows appended since above `through` are no reason to refuse: they
    /// are not folded.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] (nothing folded) if, since `version`, a row
    /// at or below `through` was appended to the run, another fold was
    /// recorded, or the run was cleared and began again with a row at or
    /// below `through` (load again, compute the state again);
    /// [`StoreError::Encode`]; [`StoreError::Contention`] if other appends
    /// to the run kept moving it; [`StoreError::Backend`].
    pub async fn snapshot_run<S: Serialize>(
        &self,
        workflow_id: &str,
        version: &RunVersion,
        through: u64,
        state: &S,
    ) -> Result<bool, StoreError> {
        let run = self.run(workflow_id);
        let stream = run.stream.as_str();
        let mut known = run.known.lock().await;
        *known = None;
        for _ in 0..APPEND_RETRIES_MAX {
            let contents = self.backend.read(stream).await?;
            // The rows appended before the first one above `through` (a
            // prefix, which the fold prunes), and the last row at or below
            // `through` wherever it is: one appended after a row above
            // `through` is not pruned, but `state` must hold it as well.
            let (mut last_covered, mut last_at_or_below, mut in_prefix) = (None, None, true);
            for entry in &contents.entries {
                let row = decode_row::<R>(stream, entry.seq, &entry.payload)?;
                let at_or_below = row.sequence() <= through;
                in_prefix &= at_or_below;
                if at_or_below {
                    last_at_or_below = Some(entry.seq);
                }
                if in_prefix {
                    last_covered = Some(entry.seq);
                }
            }
            let (Some(stream_seq), Some(last_at_or_below)) = (last_covered, last_at_or_below) else { return Ok(false) };
            // `state` was computed from what `version` saw: in that life (so
            // a retry never folds another's rows either, review 13), over
            // its fold, and before its next sequence (review 14), every row
            // at or below `through` included (review 16).
            if !version.covers(&contents, last_at_or_below) {
                let actual = contents.next_seq;
                return Err(StoreError::Conflict { stream: stream.to_owned(), expected: version.seen, actual });
            }
            let payload = codec::encode(stream, RUN_SNAPSHOT_SCHEMA, &RunSnapshot { through, state })?;
            // Which entries hold the rows through `through` was decided on
            // this read: guarded by the run's life and length as read, so
            // that another store's clear and refill (or append) meanwhile
            // never has its rows folded by position (review 12).
            let ops = vec![
                StoreOp::check(stream, contents.unchanged()),
                StoreOp::snapshot_and_prune(stream, stream_seq, payload),
            ];
            match self.backend.commit(ops).await {
                Ok(_) => return Ok(true),
                Err(StoreError::Conflict { .. }) => {} // moved by someone else: read again
                Err(error) => return Err(error),
            }
        }
        Err(StoreError::Contention { stream: stream.to_owned(), attempts: APPEND_RETRIES_MAX })
    }

    /// The run's folded state and the row sequence it reaches, if a
    /// snapshot folded it ([`CheckpointRows::snapshot_run`]).
    ///
    /// # Errors
    /// [`StoreError::Decode`] naming the run; [`StoreError::Backend`].
    pub async fn load_snapshot<S: DeserializeOwned>(&self, workflow_id: &str) -> Result<Option<(u64, S)>, StoreError> {
        let stream = Self::stream(workflow_id);
        let contents = self.backend.read(&stream).await?;
        match &contents.snapshot {
            Some(snapshot) => Ok(Some(decode_fold(&stream, snapshot)?)),
            None => Ok(None),
        }
    }

    /// Forgets the run; an unknown id is a no-op.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn clear(&self, workflow_id: &str) -> Result<(), StoreError> {
        let run = self.run(workflow_id);
        let stream = run.stream.as_str();
        let mut known = run.known.lock().await;
        *known = None;
        let contents = self.backend.read(stream).await?;
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
