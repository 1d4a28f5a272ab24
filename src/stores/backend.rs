//! The backend seam: what a typed store needs from storage, and nothing
//! about how the storage keeps it.
//!
//! A backend holds named streams of entries with dense sequences from 0,
//! commits several operations on several streams all or nothing, checks an
//! expectation on a stream's next sequence before it writes, and reads a
//! stream, or everything after an opaque cursor in commit order. The
//! embedded log implements it ([`crate::Log`]); a PostgreSQL backend will
//! implement the same trait, so nothing here names a segment, a memory map
//! or an LSN: a [`Cursor`] is only an ordered position.

use std::fmt;
use std::future::Future;

use bytes::Bytes;

/// A position in a backend's commit order, opaque to the stores: every
/// entry committed later has a larger cursor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Cursor(pub u64);

impl Cursor {
    /// Before everything.
    pub const START: Cursor = Cursor(0);
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which life of a stream a read or commit saw, opaque to the stores: a
/// clear ends a stream's life, and its next entry begins a new one. Two
/// are equal only for the same life of the same stream, and only as one
/// backend handle returned them (the log: until it is reopened; a
/// PostgreSQL backend: a generation its clear moves on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Incarnation(pub u64);

/// What an operation requires of its stream's next sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expect {
    /// Nothing.
    Any,
    /// The stream holds no entry.
    Empty,
    /// The stream's next sequence is this one.
    Next(u64),
    /// The stream's next sequence is `next`, in the life `incarnation`
    /// names: it was not cleared since the read or commit that returned
    /// it, even by a clear followed by as many entries again. A store that
    /// remembers what a stream holds guards with it, so that another
    /// store's clear and refill cannot pass for the stream it remembers.
    NextIn {
        /// The stream's next sequence.
        next: u64,
        /// Its life, as [`StreamContents::incarnation`] or
        /// [`Committed::incarnation`] returned it.
        incarnation: Incarnation,
    },
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Any => f.write_str("any"),
            Expect::Empty => f.write_str("an empty stream"),
            Expect::Next(seq) => write!(f, "next sequence {seq}"),
            Expect::NextIn { next, incarnation } => {
                write!(f, "next sequence {next} of the stream's life {}", incarnation.0)
            }
        }
    }
}

/// What one operation of a commit does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Appends an entry at the stream's next sequence.
    Append(Expect),
    /// Records that the stream's state through sequence `through` is the
    /// payload: reads return it and the entries after it.
    Snapshot {
        /// The last sequence the snapshot covers.
        through: u64,
    },
    /// Empties the stream; its sequence restarts at 0.
    Clear(Expect),
    /// Records that the stream's state through sequence `through` is the
    /// payload, and removes what it covers: the entries through `through`
    /// and every older snapshot. The backend reclaims their space (the log:
    /// by compaction). The stream's next sequence is unchanged.
    SnapshotAndPrune {
        /// The last sequence the snapshot covers.
        through: u64,
    },
    /// Removes the stream's entries before sequence `before` (at most its
    /// next sequence); its snapshots are kept and its next sequence is
    /// unchanged. The backend reclaims their space (the log: by compaction).
    /// The payload is empty. Its [`Committed::seq`] says where the stream
    /// started before it, so the caller knows what it removed.
    Prune {
        /// The first sequence kept.
        before: u64,
    },
    /// Only checks that the stream meets the expectation, at the same point
    /// as the commit's other operations: nothing is written, but the commit
    /// lands only if it holds (a compare-and-swap that reads one stream and
    /// writes others). The payload is empty.
    Check(Expect),
}

/// One operation of a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOp {
    /// The stream.
    pub stream: String,
    /// What it does.
    pub action: Action,
    /// The bytes (empty for a clear).
    pub payload: Bytes,
}

impl StoreOp {
    /// An append to `stream` under `expect`.
    pub fn append(stream: impl Into<String>, expect: Expect, payload: impl Into<Bytes>) -> StoreOp {
        StoreOp { stream: stream.into(), action: Action::Append(expect), payload: payload.into() }
    }

    /// A snapshot of `stream` through `through`.
    pub fn snapshot(stream: impl Into<String>, through: u64, payload: impl Into<Bytes>) -> StoreOp {
        StoreOp { stream: stream.into(), action: Action::Snapshot { through }, payload: payload.into() }
    }

    /// A snapshot of `stream` through `through` that removes what it covers.
    pub fn snapshot_and_prune(stream: impl Into<String>, through: u64, payload: impl Into<Bytes>) -> StoreOp {
        StoreOp { stream: stream.into(), action: Action::SnapshotAndPrune { through }, payload: payload.into() }
    }

    /// A prune of `stream`'s entries before sequence `before`.
    pub fn prune(stream: impl Into<String>, before: u64) -> StoreOp {
        StoreOp { stream: stream.into(), action: Action::Prune { before }, payload: Bytes::new() }
    }

    /// A clear of `stream` under `expect`.
    pub fn clear(stream: impl Into<String>, expect: Expect) -> StoreOp {
        StoreOp { stream: stream.into(), action: Action::Clear(expect), payload: Bytes::new() }
    }

    /// A check that `stream` meets `expect`, writing nothing.
    pub fn check(stream: impl Into<String>, expect: Expect) -> StoreOp {
        StoreOp { stream: stream.into(), action: Action::Check(expect), payload: Bytes::new() }
    }
}

/// Where a committed operation landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// Its position in commit order. A check, which writes nothing: the
    /// position of the last entry committed before it.
    pub cursor: Cursor,
    /// Append: its sequence. Snapshot: the last sequence it covers. Clear:
    /// the stream's next sequence before the clear. Prune: the stream's
    /// first live sequence before the prune, so that it removed the entries
    /// from there up to its `before` (none if that is not below it: another
    /// prune removed them first), and a caller counts each entry it removed
    /// once however prunes race. Check: the stream's next sequence it found.
    pub seq: u64,
    /// When the backend committed it, ms since the Unix epoch, by the
    /// backend's clock (as [`Entry::timestamp_ms`] reads it back).
    pub timestamp_ms: u64,
    /// The stream's life after the operation ([`Expect::NextIn`]); `None`
    /// if the stream has no state then (after a clear, or a check of a
    /// stream never written).
    pub incarnation: Option<Incarnation>,
}

/// What an entry read back is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// An appended entry.
    Entry,
    /// A snapshot.
    Snapshot,
}

/// One entry read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its stream.
    pub stream: String,
    /// Its sequence (see [`Committed::seq`]).
    pub seq: u64,
    /// Its position in commit order.
    pub cursor: Cursor,
    /// What it is.
    pub kind: EntryKind,
    /// When the backend committed it, ms since the Unix epoch, by the
    /// backend's clock (never earlier than an entry committed before it).
    pub timestamp_ms: u64,
    /// Its bytes.
    pub payload: Bytes,
}

/// One entry lent to the caller of [`Backend::visit`]: what [`Entry`] holds
/// of it, with the bytes borrowed rather than owned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// Its sequence (see [`Committed::seq`]).
    pub seq: u64,
    /// Its position in commit order.
    pub cursor: Cursor,
    /// What it is.
    pub kind: EntryKind,
    /// As [`Entry::timestamp_ms`].
    pub timestamp_ms: u64,
    /// Its bytes, valid for the call.
    pub payload: &'a [u8],
}

/// A stream as read back: its latest snapshot and the entries after it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamContents {
    /// The latest snapshot, if any.
    pub snapshot: Option<Entry>,
    /// The live entries after the snapshot, in sequence order.
    pub entries: Vec<Entry>,
    /// The sequence the next append gets.
    pub next_seq: u64,
    /// The stream's life, as of the same read ([`Expect::NextIn`]); `None`
    /// if the stream has no state (never written, or cleared since).
    pub incarnation: Option<Incarnation>,
}

impl Committed {
    /// For an append: the expectation that its stream is still as the
    /// append left it (as [`StreamContents::unchanged`] of a read just
    /// after it), for a store that remembers the stream between commits.
    pub fn unchanged_after_append(&self) -> Expect {
        match self.incarnation {
            Some(incarnation) => Expect::NextIn { next: self.seq.saturating_add(1), incarnation },
            None => Expect::Empty,
        }
    }
}

impl StreamContents {
    /// The expectation that the stream is still as this read found it: at
    /// the same next sequence in the same life ([`Expect::NextIn`]), or
    /// still without state ([`Expect::Empty`]). A commit decided on the
    /// read guards with it, so that neither an append nor a clear and
    /// refill to the same length by another writer passes for the stream
    /// the decision saw.
    pub fn unchanged(&self) -> Expect {
        match self.incarnation {
            Some(incarnation) => Expect::NextIn { next: self.next_seq, incarnation },
            None => Expect::Empty,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An expectation did not hold; nothing was written.
    #[error("conflict on {stream}: expected {expected}, the stream is at next sequence {actual}")]
    Conflict {
        /// The stream.
        stream: String,
        /// What the operation required.
        expected: Expect,
        /// The stream's next sequence.
        actual: u64,
    },
    /// A record already exists where the caller asked for a new one
    /// (a duplicate sequence, id or key); nothing was written.
    #[error("{what} already exists in {stream}; nothing was written")]
    Duplicate {
        /// The stream.
        stream: String,
        /// What is duplicated.
        what: String,
    },
    /// What an operation needs does not exist (a run, say); nothing was
    /// written.
    #[error("{key} does not exist; nothing was written")]
    NotFound {
        /// What is missing.
        key: String,
    },
    /// A stored value does not decode.
    #[error("cannot decode the value at sequence {seq} of {stream}: {reason}")]
    Decode {
        /// The stream.
        stream: String,
        /// The entry's sequence.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// Other writers kept moving the stream: the operation gave up after
    /// this many attempts; nothing was written.
    #[error("{stream} kept moving under {attempts} attempts; nothing was written")]
    Contention {
        /// The stream.
        stream: String,
        /// Attempts made.
        attempts: usize,
    },
    /// A value does not encode.
    #[error("cannot encode a value for {stream}: {reason}")]
    Encode {
        /// The stream.
        stream: String,
        /// Why.
        reason: String,
    },
    /// A revision a caller expected is not the stored one; nothing was
    /// written.
    #[error("revision conflict on {key}: expected {}, found {actual}", expected.map_or_else(|| "any".to_owned(), |r| r.to_string()))]
    RevisionConflict {
        /// The document.
        key: String,
        /// The revision the caller expected (0: absent).
        expected: Option<u64>,
        /// The stored revision (0: absent).
        actual: u64,
    },
    /// A snapshot or prune names a sequence the stream does not have: a
    /// snapshot through a sequence at or past the stream's next one (or
    /// below its latest snapshot's), or a prune past the next one; nothing
    /// was written.
    #[error("{action} of {stream} through sequence {seq} is out of range: the stream's next sequence is {next_seq}")]
    OutOfRange {
        /// The stream.
        stream: String,
        /// `"snapshot"` or `"prune"`.
        action: &'static str,
        /// The sequence asked for.
        seq: u64,
        /// The stream's next sequence.
        next_seq: u64,
    },
    /// An argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The backend failed (I/O, corruption, a closed or poisoned log, ...).
    #[error(transparent)]
    Backend(#[from] crate::Error),
}

/// The acknowledgement of a commit of one operation.
fn only(committed: Vec<Committed>) -> Committed {
    *committed.first().expect("a backend acknowledges every operation of a commit")
}

/// What a typed store needs from storage.
///
/// Every future is `Send`, so stores run on any async runtime; a backend
/// does no blocking I/O on the caller's thread while it is polled, but
/// where the runtime lets it block without stalling other tasks (the log:
/// inside tokio's `block_in_place` on a multi-threaded runtime's worker).
pub trait Backend: Send + Sync + 'static {
    /// Commits `ops` all or nothing: every expectation holds (checked in
    /// order, each operation seeing the effects of those before it) and
    /// every operation is durable, or nothing is written and the first
    /// expectation that failed is the error.
    fn commit(&self, ops: Vec<StoreOp>) -> impl Future<Output = Result<Vec<Committed>, StoreError>> + Send;

    /// Commits `ops` as [`Backend::commit`] does, blocking the calling
    /// thread until the commit is durable or has failed. The backend may do
    /// the I/O on the calling thread (the log: an appender that finds no one
    /// writing leads the group commit itself, which saves the hand-offs to
    /// its writer thread and back), so call it only where blocking is
    /// allowed: never from an async runtime's worker (in tokio's
    /// multi-threaded runtime, inside `block_in_place`).
    ///
    /// # Errors
    /// As [`Backend::commit`].
    fn commit_blocking(&self, ops: Vec<StoreOp>) -> Result<Vec<Committed>, StoreError>;

    /// Appends `payload` to `stream` under `expect`, durably: a
    /// [`Backend::commit`] of the one [`StoreOp::append`], the guarded
    /// append a store makes on every step. The default builds that commit;
    /// a backend may append without the lists a commit takes and returns
    /// (the log: nothing is allocated for a short stream name), with the
    /// same guarantees and errors.
    ///
    /// # Errors
    /// As [`Backend::commit`].
    fn append(
        &self,
        stream: &str,
        expect: Expect,
        payload: Bytes,
    ) -> impl Future<Output = Result<Committed, StoreError>> + Send {
        let committed = self.commit(vec![StoreOp::append(stream, expect, payload)]);
        async move { Ok(only(committed.await?)) }
    }

    /// [`Backend::append`], blocking the calling thread as
    /// [`Backend::commit_blocking`] does (and only where that may be called).
    ///
    /// # Errors
    /// As [`Backend::commit`].
    fn append_blocking(&self, stream: &str, expect: Expect, payload: Bytes) -> Result<Committed, StoreError> {
        self.commit_blocking(vec![StoreOp::append(stream, expect, payload)]).map(only)
    }

    /// The latest snapshot of `stream` and its entries after it.
    fn read(&self, stream: &str) -> impl Future<Output = Result<StreamContents, StoreError>> + Send;

    /// Calls `f` on what [`Backend::read`] returns of `stream` (its latest
    /// snapshot, if any, then each entry after it, in sequence order), with
    /// the bytes lent rather than copied: a store that decodes every entry
    /// at once reads without an owned copy of each. The first error `f`
    /// returns is the result, and `f` sees nothing after it.
    ///
    /// `f` may run while the backend holds a lock its writers need (the
    /// log: its index's read lock), so it decodes or copies and nothing
    /// else. The default reads the stream and lends what it read.
    fn visit<F>(&self, stream: &str, mut f: F) -> impl Future<Output = Result<(), StoreError>> + Send
    where
        F: FnMut(EntryRef<'_>) -> Result<(), StoreError> + Send,
    {
        async move {
            let contents = self.read(stream).await?;
            for entry in contents.snapshot.iter().chain(&contents.entries) {
                let lent = EntryRef {
                    seq: entry.seq,
                    cursor: entry.cursor,
                    kind: entry.kind,
                    timestamp_ms: entry.timestamp_ms,
                    payload: &entry.payload,
                };
                f(lent)?;
            }
            Ok(())
        }
    }

    /// Up to `limit` live entries of `stream` from sequence `from` on, in
    /// sequence order, snapshots aside: a page of a long stream.
    ///
    /// An error of [`StoreError::Backend`] if `from` is below the stream's
    /// first live sequence (a prune removed it).
    fn read_range(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send;

    /// Up to `limit` live entries of `stream` committed after `after`, in
    /// commit order, snapshots aside, none skipped: one stream's tail.
    /// Only acknowledged entries are returned (see [`Backend::read_after`]).
    fn read_stream_after(
        &self,
        stream: &str,
        after: Cursor,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send;

    /// The streams whose name starts with `prefix` and that have state (a
    /// live entry or snapshot, or a next sequence a prune kept), with their
    /// next sequence, in name order. A cleared stream is not listed.
    fn streams(&self, prefix: &str) -> impl Future<Output = Result<Vec<(String, u64)>, StoreError>> + Send;

    /// Up to `limit` live entries and snapshots of every stream after
    /// `after`, in commit order, none skipped: a record that a clear or a
    /// prune removed is never returned again, and clears and prunes
    /// themselves are not returned. Only acknowledged entries are returned;
    /// the stores commit with durable acknowledgement, so theirs are durable.
    fn read_after(&self, after: Cursor, limit: usize) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send;
}
