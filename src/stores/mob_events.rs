//! Mob events: the shape of meerkat-mob's `MobEventStore`.
//!
//! An append-only list of events, each given a [`Cursor`] by the backend.
//! `append` and `append_batch` (all or nothing) return the events with
//! their cursors; `poll(after, limit)` returns the events after a cursor;
//! `replay_all` every event; `clear` removes every event; `prune(older_than)`
//! removes the old ones and says how many.
//!
//! # What a consumer may rely on
//!
//! - Cursors only grow, in commit order, and are never given twice: not
//!   after a `clear`, a `prune`, a restart or a power cut.
//! - `poll` returns only durable events (every append is acknowledged
//!   after the backend made it durable, and the backend shows nothing
//!   before) and never skips one: a consumer that saved the cursor of the
//!   last event it handled and comes back, after a restart or a power cut,
//!   sees every event committed after it, in order. Only `clear` and
//!   `prune` remove events, and only the oldest ones.
//! - An event's timestamp is the caller's if it gave one, else the
//!   backend's commit time ([`crate::stores::backend::Entry::timestamp_ms`]).
//!
//! # Layout and retention
//!
//! The events are the entries of one stream, `mob-events` (or
//! `mob-events@<namespace>`). `clear` and `prune` are prunes of that
//! stream through the backend's retention, which gives the space back
//! (the log: by compaction); nothing clears the stream, so its sequences
//! and the cursors only grow. `prune(older_than)` removes the longest run
//! of events from the oldest whose timestamps are all before `older_than`:
//! with backend timestamps (never earlier than an event committed before)
//! that is every older event; an event whose caller-given timestamp is old
//! but that follows a newer one stays until the events before it go, so a
//! consumer never finds a hole behind its cursor.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::stores::backend::{Backend, Cursor, Entry, Expect, StoreError, StoreOp};
use crate::stores::codec;
use crate::stores::documents;

/// The schema version this build writes events under.
pub const EVENT_SCHEMA: u16 = 1;
/// The events' stream (in the default namespace).
pub const EVENT_STREAM: &str = "mob-events";
/// Events read per page while `prune` looks for the first one it keeps.
const PRUNE_PAGE_EVENTS: usize = 1024;

/// An event as stored.
///
/// ```text
/// // Format (MessagePack map, by field name, in the codec envelope):
/// // { timestamp_ms: u64 or nil | event: E }
/// ```
#[derive(Serialize, serde::Deserialize)]
struct StoredEvent<E> {
    /// The caller's timestamp, if it gave one.
    timestamp_ms: Option<u64>,
    event: E,
}

/// An event with where and when it was committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MobEvent<E> {
    /// Its position: every event committed later has a larger one.
    pub cursor: Cursor,
    /// The caller's timestamp, or the backend's commit time, ms since the
    /// Unix epoch.
    pub timestamp_ms: u64,
    /// The event.
    pub event: E,
}

/// An event to append, with the caller's timestamp if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMobEvent<E> {
    /// The event.
    pub event: E,
    /// The caller's timestamp (ms since the Unix epoch); `None`: the
    /// backend's commit time.
    pub timestamp_ms: Option<u64>,
}

/// Mob events over a backend.
pub struct MobEvents<B, E> {
    backend: Arc<B>,
    stream: String,
    _events: std::marker::PhantomData<fn() -> E>,
}

impl<B: Backend, E: Serialize + DeserializeOwned + Send + Sync + 'static> MobEvents<B, E> {
    /// A store over `backend`, in the stream `mob-events`.
    pub fn new(backend: Arc<B>) -> MobEvents<B, E> {
        MobEvents::in_namespace(backend, "")
    }

    /// A store over `backend` in its own namespace (the stream
    /// `mob-events@<namespace>`), apart from other stores on it.
    pub fn in_namespace(backend: Arc<B>, namespace: &str) -> MobEvents<B, E> {
        let stream = documents::prefix(EVENT_STREAM, namespace);
        let stream = stream.trim_end_matches('/').to_owned();
        MobEvents { backend, stream, _events: std::marker::PhantomData }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    /// The stream the events are in.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Appends `event` durably and returns it with its cursor.
    ///
    /// # Errors
    /// [`StoreError::Encode`], [`StoreError::Backend`].
    pub async fn append(&self, event: NewMobEvent<E>) -> Result<MobEvent<E>, StoreError> {
        Ok(self.append_batch(vec![event]).await?.pop().expect("one event in, one out"))
    }

    /// Appends `events` durably, all or none, in order, and returns them
    /// with their cursors.
    ///
    /// # Errors
    /// [`StoreError::Encode`] (nothing is written); [`StoreError::Backend`],
    /// also for a batch over the backend's limits (nothing is written).
    pub async fn append_batch(&self, events: Vec<NewMobEvent<E>>) -> Result<Vec<MobEvent<E>>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut ops = Vec::with_capacity(events.len());
        for new in &events {
            let stored = StoredEvent { timestamp_ms: new.timestamp_ms, event: &new.event };
            ops.push(StoreOp::append(&self.stream, Expect::Any, codec::encode(&self.stream, EVENT_SCHEMA, &stored)?));
        }
        let committed = self.backend.commit(ops).await?;
        Ok(events
            .into_iter()
            .zip(committed)
            .map(|(new, at)| MobEvent {
                cursor: at.cursor,
                timestamp_ms: new.timestamp_ms.unwrap_or(at.timestamp_ms),
                event: new.event,
            })
            .collect())
    }

    fn decode(&self, entry: Entry) -> Result<MobEvent<E>, StoreError> {
        let (stored, _) = codec::decode::<StoredEvent<E>>(&self.stream, entry.seq, EVENT_SCHEMA, &entry.payload)?;
        Ok(MobEvent {
            cursor: entry.cursor,
            timestamp_ms: stored.timestamp_ms.unwrap_or(entry.timestamp_ms),
            event: stored.event,
        })
    }

    /// Up to `limit` events committed after `after` ([`Cursor::START`]: from
    /// the first), in order.
    ///
    /// # Errors
    /// [`StoreError::Decode`] naming the stream and sequence of an event
    /// that does not decode; [`StoreError::Backend`].
    pub async fn poll(&self, after: Cursor, limit: usize) -> Result<Vec<MobEvent<E>>, StoreError> {
        let entries = self.backend.read_stream_after(&self.stream, after, limit).await?;
        entries.into_iter().map(|entry| self.decode(entry)).collect()
    }

    /// Every event, in order.
    ///
    /// # Errors
    /// As [`MobEvents::poll`].
    pub async fn replay_all(&self) -> Result<Vec<MobEvent<E>>, StoreError> {
        let contents = self.backend.read(&self.stream).await?;
        contents.entries.into_iter().map(|entry| self.decode(entry)).collect()
    }

    /// The stream's next sequence: every event before it has been appended.
    async fn next_seq(&self) -> Result<u64, StoreError> {
        let streams = self.backend.streams(&self.stream).await?;
        Ok(streams.into_iter().find(|(stream, _)| *stream == self.stream).map_or(0, |(_, next)| next))
    }

    /// Removes every event committed before it, durably, through the
    /// backend's retention; later cursors still only grow.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn clear(&self) -> Result<(), StoreError> {
        let next = self.next_seq().await?;
        if next > 0 {
            // Events appended meanwhile come after it and stay.
            self.backend.commit(vec![StoreOp::prune(&self.stream, next)]).await?;
        }
        Ok(())
    }

    /// Removes, durably and through the backend's retention, the oldest
    /// events whose timestamps are before `older_than_ms` (ms since the
    /// Unix epoch), up to the first one that is not; returns how many.
    ///
    /// # Errors
    /// [`StoreError::Decode`] if an event to look at does not decode;
    /// [`StoreError::Backend`].
    pub async fn prune(&self, older_than_ms: u64) -> Result<u64, StoreError> {
        let mut after = Cursor::START;
        let mut first_kept = None;
        let mut first_seen = None;
        'pages: loop {
            let page = self.backend.read_stream_after(&self.stream, after, PRUNE_PAGE_EVENTS).await?;
            let Some(last) = page.last() else { break };
            after = last.cursor;
            for entry in page {
                let seq = entry.seq;
                first_seen.get_or_insert(seq);
                if self.decode(entry)?.timestamp_ms >= older_than_ms {
                    first_kept = Some(seq);
                    break 'pages;
                }
                first_kept = Some(seq + 1);
            }
        }
        let (Some(first_seen), Some(before)) = (first_seen, first_kept) else { return Ok(0) };
        if before == first_seen {
            return Ok(0);
        }
        // The stream is never cleared, so its sequences name the same
        // events however it moved since the read: appends land after
        // `before`. Another prune may have removed some of them since: the
        // backend says where the stream started, and this one removed only
        // the events from there to `before`.
        let committed = self.backend.commit(vec![StoreOp::prune(&self.stream, before)]).await?;
        let start_before = committed.first().expect("one operation, one acknowledgement").seq;
        Ok(before.saturating_sub(start_before))
    }
}
