//! The embedded log as a [`Backend`]: streams are the log's streams, a
//! commit is one atomic batch acknowledged after an fdatasync, and a cursor
//! is an LSN (which the stores never look inside).

use std::future::Future;

use bytes::Bytes;

use crate::index::Record;
use crate::stores::backend::{
    Action, Backend, Committed, Cursor, Entry, EntryKind, EntryRef, Expect, Incarnation, StoreError, StoreOp,
    StreamContents,
};
use crate::{Appended, Batch, Durability, Error, Expectation, Log, Lsn, PruneSnapshots, RecordKind, StreamSeq};

fn expectation(expect: Expect) -> Expectation {
    match expect {
        Expect::Any => Expectation::Any,
        Expect::Empty => Expectation::NoStream,
        Expect::Next(seq) => Expectation::Exact(StreamSeq(seq)),
        // A stream's life is its first record since its last clear.
        Expect::NextIn { next, incarnation } => {
            Expectation::ExactSince { next: StreamSeq(next), since: Lsn(incarnation.0) }
        }
    }
}

fn incarnation(since: Option<Lsn>) -> Option<Incarnation> {
    since.map(|since| Incarnation(since.0))
}

/// A record as the stores see it: entries and snapshots (the only records
/// the log's reads return; anything else is left out).
fn entry(record: Record) -> Option<Entry> {
    let kind = match record.kind {
        RecordKind::Entry => EntryKind::Entry,
        RecordKind::Snapshot => EntryKind::Snapshot,
        RecordKind::Tombstone | RecordKind::Prune | RecordKind::Base => return None,
    };
    Some(Entry {
        stream: String::from_utf8_lossy(&record.stream).into_owned(),
        seq: record.seq.0,
        cursor: Cursor(record.lsn.0),
        kind,
        timestamp_ms: record.timestamp_ms,
        payload: record.payload,
    })
}

/// The log renders stream ids for display; give back the caller's own,
/// one of `streams`.
fn own_stream<'a>(displayed: String, mut streams: impl Iterator<Item = &'a str>) -> String {
    streams.find(|stream| crate::display_stream(stream.as_bytes()) == displayed).map_or(displayed, str::to_owned)
}

fn store_error(error: Error, ops: &[StoreOp]) -> StoreError {
    store_error_of(error, || ops.iter().map(|op| op.stream.as_str()))
}

/// The stores' error for the log's `error` of an operation on one of
/// `streams`.
fn store_error_of<'a, I: Iterator<Item = &'a str>>(error: Error, streams: impl Fn() -> I) -> StoreError {
    match error {
        Error::Conflict { stream, expected, actual } => {
            let expected = match expected {
                Expectation::Any => Expect::Any,
                Expectation::NoStream => Expect::Empty,
                Expectation::Exact(seq) => Expect::Next(seq.0),
                Expectation::ExactSince { next, since } => {
                    Expect::NextIn { next: next.0, incarnation: Incarnation(since.0) }
                }
            };
            StoreError::Conflict { stream: own_stream(stream, streams()), expected, actual: actual.0 }
        }
        Error::SnapshotOutOfRange { stream, seq, next_seq } => StoreError::OutOfRange {
            stream: own_stream(stream, streams()),
            action: "snapshot",
            seq: seq.0,
            next_seq: next_seq.0,
        },
        Error::PruneOutOfRange { stream, seq, next_seq } => StoreError::OutOfRange {
            stream: own_stream(stream, streams()),
            action: "prune",
            seq: seq.0,
            next_seq: next_seq.0,
        },
        other => StoreError::Backend(other),
    }
}

/// The log's batch for `ops`.
fn batch_of(ops: &[StoreOp]) -> Batch {
    let mut batch = Batch::new();
    for op in ops {
        batch = match op.action {
            Action::Append(expect) => batch.append(&op.stream, expectation(expect), op.payload.clone()),
            Action::Snapshot { through } => batch.snapshot(&op.stream, StreamSeq(through), op.payload.clone()),
            Action::Clear(expect) => batch.clear(&op.stream, expectation(expect)),
            Action::SnapshotAndPrune { through } => {
                batch.snapshot_and_prune(&op.stream, StreamSeq(through), op.payload.clone())
            }
            // Snapshots stay: none was written before LSN 0.
            Action::Prune { before } => batch.prune(&op.stream, StreamSeq(before), PruneSnapshots::Before(Lsn(0))),
            Action::Check(expect) => batch.check(&op.stream, expectation(expect)),
        };
    }
    batch
}

/// What the log acknowledged for `ops`, as the stores see it.
fn committed(ops: &[StoreOp], acknowledged: crate::Result<Vec<Appended>>) -> Result<Vec<Committed>, StoreError> {
    let appended = acknowledged.map_err(|error| store_error(error, ops))?;
    // One acknowledgement per store operation: a snapshot-and-prune
    // is two operations of the log, the snapshot's is the one.
    let mut appended = appended.into_iter();
    let mut committed = Vec::with_capacity(ops.len());
    for op in ops {
        let a = appended.next().expect("the log acknowledges every operation");
        if matches!(op.action, Action::SnapshotAndPrune { .. }) {
            appended.next();
        }
        // A prune reports where its stream started before it, not its own sequence.
        let seq = match op.action {
            Action::Prune { .. } => a.start_before.expect("the log acknowledges a prune with its start").0,
            _ => a.seq.0,
        };
        committed.push(Committed {
            cursor: Cursor(a.lsn.0),
            seq,
            timestamp_ms: a.timestamp_ms,
            incarnation: incarnation(a.since),
        });
    }
    Ok(committed)
}

/// What the log acknowledged for an append to `stream`, as the stores see it.
fn appended(stream: &str, acknowledged: crate::Result<Appended>) -> Result<Committed, StoreError> {
    match acknowledged {
        Ok(a) => Ok(Committed {
            cursor: Cursor(a.lsn.0),
            seq: a.seq.0,
            timestamp_ms: a.timestamp_ms,
            incarnation: incarnation(a.since),
        }),
        Err(error) => Err(store_error_of(error, || std::iter::once(stream))),
    }
}

impl Backend for Log {
    fn commit(&self, ops: Vec<StoreOp>) -> impl Future<Output = Result<Vec<Committed>, StoreError>> + Send {
        let pending = self.commit_with(batch_of(&ops), Durability::Sync);
        async move { committed(&ops, pending.await) }
    }

    fn commit_blocking(&self, ops: Vec<StoreOp>) -> Result<Vec<Committed>, StoreError> {
        // `wait` leads the group commit on this thread if no one is writing.
        committed(&ops, self.commit_with(batch_of(&ops), Durability::Sync).wait())
    }

    fn append(
        &self,
        stream: &str,
        expect: Expect,
        payload: Bytes,
    ) -> impl Future<Output = Result<Committed, StoreError>> + Send {
        // One operation, no batch: no list goes in or comes back, and a
        // short stream name is held in the request itself.
        let pending = self.append_with(stream, expectation(expect), payload, Durability::Sync);
        async move { appended(stream, pending.await) }
    }

    fn append_blocking(&self, stream: &str, expect: Expect, payload: Bytes) -> Result<Committed, StoreError> {
        // `wait` leads the group commit on this thread if no one is writing.
        appended(stream, self.append_with(stream, expectation(expect), payload, Durability::Sync).wait())
    }

    fn read(&self, stream: &str) -> impl Future<Output = Result<StreamContents, StoreError>> + Send {
        let read = self.read_stream(stream).map(|read| {
            // From the one read, not a second look that an append could follow.
            StreamContents {
                next_seq: read.next_seq.0,
                incarnation: incarnation(read.since),
                snapshot: read.snapshot.and_then(entry),
                entries: read.entries.into_iter().filter_map(entry).collect(),
            }
        });
        std::future::ready(read.map_err(StoreError::Backend))
    }

    fn visit<F>(&self, stream: &str, mut f: F) -> impl Future<Output = Result<(), StoreError>> + Send
    where
        F: FnMut(EntryRef<'_>) -> Result<(), StoreError> + Send,
    {
        // Straight from the memory map: no record, stream name or payload
        // handle is made per entry.
        let mut failed = None;
        let visited = self.visit_stream(stream, |record| {
            let kind = match record.kind {
                RecordKind::Entry => EntryKind::Entry,
                RecordKind::Snapshot => EntryKind::Snapshot,
                RecordKind::Tombstone | RecordKind::Prune | RecordKind::Base => return,
            };
            if failed.is_none() {
                let lent = EntryRef {
                    seq: record.seq.0,
                    cursor: Cursor(record.lsn.0),
                    kind,
                    timestamp_ms: record.timestamp_ms,
                    payload: record.payload,
                };
                failed = f(lent).err();
            }
        });
        let result = match (visited, failed) {
            (Err(error), _) => Err(StoreError::Backend(error)),
            (Ok(_), Some(error)) => Err(error),
            (Ok(_), None) => Ok(()),
        };
        std::future::ready(result)
    }

    fn read_range(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send {
        let read = self.read_stream_range(stream, StreamSeq(from), limit);
        std::future::ready(
            read.map(|records| records.into_iter().filter_map(entry).collect()).map_err(StoreError::Backend),
        )
    }

    fn read_stream_after(
        &self,
        stream: &str,
        after: Cursor,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send {
        let read = Log::read_stream_after(self, stream, Lsn(after.0), limit);
        std::future::ready(
            read.map(|records| records.into_iter().filter_map(entry).collect()).map_err(StoreError::Backend),
        )
    }

    fn streams(&self, prefix: &str) -> impl Future<Output = Result<Vec<(String, u64)>, StoreError>> + Send {
        let streams = Log::streams(self, prefix)
            .map(|streams| {
                streams.into_iter().map(|(id, next)| (String::from_utf8_lossy(&id).into_owned(), next.0)).collect()
            })
            .map_err(StoreError::Backend);
        std::future::ready(streams)
    }

    fn read_after(&self, after: Cursor, limit: usize) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send {
        let read = self.read_all(Lsn(after.0), limit).map(|records| records.into_iter().filter_map(entry).collect());
        std::future::ready(read.map_err(StoreError::Backend))
    }
}
