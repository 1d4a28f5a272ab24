//! Checkpoint history: the shape of oxify-model's `CheckpointStorage`.
//!
//! A key (a workflow or execution id) keeps every checkpoint saved under
//! it, oldest first. `save` returns a [`CheckpointId`]: a UUIDv7, so ids
//! sort by time, and within one key each id is larger than every id saved
//! before it. "Latest" is the checkpoint the backend committed last, never
//! a comparison of clocks. `load_latest` and `load(id)` decode one
//! checkpoint; `list` gives each checkpoint's [`CheckpointMeta`], newest
//! first, from a small header alone, so a body is never decoded to be
//! listed; `prune(keep_count)` removes the oldest through the backend's
//! retention, which gives their space back; `delete_all` forgets the key.
//!
//! Each key is one stream, `history/<key>`, one entry per checkpoint:
//!
//! ```text
//! // Format: { tag | version | flags | reserved | id | raw_bytes | summary } body
//! ```
//!
//! | offset | size | field | value |
//! |---|---|---|---|
//! | 0 | 1 | tag | `0xC4`: a checkpoint history entry |
//! | 1 | 1 | version | `1` |
//! | 2 | 1 | flags | bit 0: the body is an LZ4 block; other bits 0 |
//! | 3 | 1 | reserved | `0` |
//! | 4 | 16 | id | the [`CheckpointId`], in RFC 9562 byte order |
//! | 20 | 8 | raw_bytes | the body's length before compression (little-endian) |
//! | 28 | 8 | summary | a number the caller attached ([`CheckpointHistory::save_with_summary`]; little-endian) |
//! | 36 | … | body | the checkpoint in the [`codec`] envelope, compressed if flagged |
//!
//! The timestamp in [`CheckpointMeta`] is the backend's commit time of the
//! entry ([`Entry::timestamp_ms`]), not a caller's clock.
//!
//! The methods are `async`, like every store's. A synchronous caller (such
//! as oxify's trait) drives them on a runtime it owns, for example with
//! `tokio::runtime::Runtime::block_on`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::stores::backend::{Backend, Entry, Expect, StoreError, StoreOp};
use crate::stores::codec;

/// A checkpoint's id: a UUIDv7.
pub type CheckpointId = Uuid;

/// The schema version this build writes checkpoints under.
pub const HISTORY_SCHEMA: u16 = 1;
/// Prefix of a key's stream name.
pub const HISTORY_STREAM_PREFIX: &str = "history/";
/// The first byte of every entry.
pub const HISTORY_TAG: u8 = 0xC4;
/// The entry format this build writes and reads.
pub const HISTORY_VERSION: u8 = 1;
/// The flag bit of an LZ4-compressed body.
pub const FLAG_LZ4: u8 = 0b1;

const TAG_AT: usize = 0;
const VERSION_AT: usize = 1;
const FLAGS_AT: usize = 2;
const RESERVED_AT: usize = 3;
const ID_AT: usize = 4;
const ID_BYTES: usize = 16;
const RAW_BYTES_AT: usize = ID_AT + ID_BYTES;
const SUMMARY_AT: usize = RAW_BYTES_AT + 8;
/// Bytes before the body.
pub const HEADER_BYTES: usize = SUMMARY_AT + 8;
const _: () = assert!(HEADER_BYTES == 36);

/// LZ4's block format expands at most 255 times, so a larger `raw_bytes`
/// is damage, found before anything is allocated for it.
const LZ4_EXPANSION_MAX: u64 = 255;
/// How often a save, prune or delete retries after another writer moved
/// the key first.
const SAVE_RETRIES_MAX: usize = 64;
/// Keys whose last id the store keeps in memory before it forgets those
/// not in use.
const KEYS_REMEMBERED_MAX: usize = 4096;

/// Whether a store compresses the checkpoints it saves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Bodies are stored as encoded (the default).
    #[default]
    None,
    /// Bodies are LZ4 blocks (`lz4_flex`) when that makes them smaller;
    /// [`CheckpointMeta::compressed`] says which were.
    Lz4,
}

/// What `list` says of a checkpoint, read from its header alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointMeta {
    /// Its id.
    pub id: CheckpointId,
    /// When the backend committed it, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Its body's size as stored.
    pub stored_bytes: u64,
    /// Its body's size before compression (equal to `stored_bytes` if not
    /// compressed).
    pub raw_bytes: u64,
    /// Whether its body is compressed.
    pub compressed: bool,
    /// The number the caller attached when saving it (0 if none).
    pub summary: u64,
}

/// A checkpoint's header, parsed.
struct Header {
    id: CheckpointId,
    compressed: bool,
    raw_bytes: u64,
    summary: u64,
}

fn decode_error(stream: &str, seq: u64, reason: impl Into<String>) -> StoreError {
    StoreError::Decode { stream: stream.to_owned(), seq, reason: reason.into() }
}

fn parse_header(stream: &str, entry: &Entry) -> Result<Header, StoreError> {
    parse_header_bytes(&entry.payload).map_err(|reason| decode_error(stream, entry.seq, reason))
}

fn parse_header_bytes(bytes: &[u8]) -> Result<Header, String> {
    if bytes.len() < HEADER_BYTES {
        return Err(format!("{} bytes is shorter than a checkpoint header", bytes.len()));
    }
    if bytes[TAG_AT] != HISTORY_TAG {
        return Err("not a checkpoint history entry".to_owned());
    }
    if bytes[VERSION_AT] != HISTORY_VERSION {
        return Err(format!("unknown entry version {}", bytes[VERSION_AT]));
    }
    let flags = bytes[FLAGS_AT];
    if flags & !FLAG_LZ4 != 0 || bytes[RESERVED_AT] != 0 {
        return Err(format!("unknown flags {flags:#04x}"));
    }
    let mut id = [0; ID_BYTES];
    id.copy_from_slice(&bytes[ID_AT..RAW_BYTES_AT]);
    let le_u64 = |at: usize| {
        let mut word = [0; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    };
    Ok(Header {
        id: Uuid::from_bytes(id),
        compressed: flags & FLAG_LZ4 != 0,
        raw_bytes: le_u64(RAW_BYTES_AT),
        summary: le_u64(SUMMARY_AT),
    })
}

/// The body after `header`: `stored` itself, or decompressed if flagged,
/// checked against the header's `raw_bytes` before anything is allocated.
fn body<'a>(header: &Header, stored: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, String> {
    if !header.compressed {
        return Ok(std::borrow::Cow::Borrowed(stored));
    }
    if header.raw_bytes > (stored.len() as u64).saturating_mul(LZ4_EXPANSION_MAX) {
        return Err(format!("{} raw bytes cannot come from {} compressed", header.raw_bytes, stored.len()));
    }
    let raw =
        lz4_flex::block::decompress(stored, header.raw_bytes as usize).map_err(|error| format!("lz4 body: {error}"))?;
    if raw.len() as u64 != header.raw_bytes {
        return Err(format!("lz4 body gave {} bytes, the header says {}", raw.len(), header.raw_bytes));
    }
    Ok(std::borrow::Cow::Owned(raw))
}

/// A history entry opened without knowing its checkpoint type (for tools
/// such as `annals dump --decode`): its header and its body, decompressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedEntry {
    /// The checkpoint's id.
    pub id: CheckpointId,
    /// Whether the body was stored compressed.
    pub compressed: bool,
    /// The body's length before compression.
    pub raw_bytes: u64,
    /// The number the caller attached.
    pub summary: u64,
    /// The checkpoint in the [`codec`] envelope.
    pub body: Vec<u8>,
}

/// Opens a history entry's bytes: checks its header and decompresses its
/// body, bounded by the header and the bytes given.
///
/// # Errors
/// Why the bytes are not an intact history entry: too short, another tag,
/// an unknown version or flags, a compressed body that does not inflate
/// to the size its header says.
pub fn open_entry(payload: &[u8]) -> Result<OpenedEntry, String> {
    let header = parse_header_bytes(payload)?;
    let body = body(&header, &payload[HEADER_BYTES..])?.into_owned();
    Ok(OpenedEntry {
        id: header.id,
        compressed: header.compressed,
        raw_bytes: header.raw_bytes,
        summary: header.summary,
        body,
    })
}

fn meta(stream: &str, entry: &Entry) -> Result<CheckpointMeta, StoreError> {
    let header = parse_header(stream, entry)?;
    Ok(CheckpointMeta {
        id: header.id,
        timestamp_ms: entry.timestamp_ms,
        stored_bytes: (entry.payload.len() - HEADER_BYTES) as u64,
        raw_bytes: header.raw_bytes,
        compressed: header.compressed,
        summary: header.summary,
    })
}

/// An id larger than `last`: a fresh UUIDv7, or, if the clock (or another
/// process's) is behind `last`, the next UUIDv7 after it.
fn next_id(last: Option<CheckpointId>) -> CheckpointId {
    let fresh = Uuid::now_v7();
    let Some(last) = last else { return fresh };
    if fresh > last {
        return fresh;
    }
    // The low 62 bits are a UUIDv7's random part: one more keeps its
    // version and variant, unless they are all ones.
    const RANDOM_MASK: u128 = (1 << 62) - 1;
    let bits = last.as_u128();
    if bits & RANDOM_MASK != RANDOM_MASK {
        return Uuid::from_u128(bits + 1);
    }
    let millis = (bits >> 80) as u64;
    uuid::Builder::from_unix_timestamp_millis(millis + 1, &[0; 10]).into_uuid()
}

/// What a store remembers of a key it has read: the expectation that its
/// stream is as the store last saw it (next sequence and life, so that
/// another store's delete and as many saves again do not pass for it) and
/// the last id saved, behind the lock its saves take.
type KeyState = Arc<tokio::sync::Mutex<Option<(Expect, Option<CheckpointId>)>>>;

/// Checkpoint history over a backend.
pub struct CheckpointHistory<B, C> {
    backend: Arc<B>,
    prefix: String,
    compression: Compression,
    keys: Mutex<HashMap<String, KeyState>>,
    _checkpoints: std::marker::PhantomData<fn() -> C>,
}

impl<B: Backend, C: Serialize + DeserializeOwned + Send + Sync + 'static> CheckpointHistory<B, C> {
    /// A store over `backend`, in the streams `history/<key>`, without
    /// compression.
    pub fn new(backend: Arc<B>) -> CheckpointHistory<B, C> {
        CheckpointHistory::in_namespace(backend, "", Compression::None)
    }

    /// A store over `backend` in its own namespace (the streams
    /// `history@<namespace>/<key>`, or `history/<key>` for an empty one;
    /// `%` and `/` in the namespace escaped as `%25` and `%2F`, so no
    /// namespace reaches into another's keys), saving under `compression`.
    /// Any store reads what any other wrote, compressed or not.
    pub fn in_namespace(backend: Arc<B>, namespace: &str, compression: Compression) -> CheckpointHistory<B, C> {
        // Escaped: a namespace with a `/` must not reach into another's
        // streams (`tenant/b` and the keys `b/...` of `tenant`).
        let prefix = crate::stores::documents::prefix("history", namespace);
        CheckpointHistory {
            backend,
            prefix,
            compression,
            keys: Mutex::new(HashMap::new()),
            _checkpoints: std::marker::PhantomData,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    fn stream(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn key_lock(&self, key: &str) -> KeyState {
        let mut keys = self.keys.lock();
        if keys.len() >= KEYS_REMEMBERED_MAX && !keys.contains_key(key) {
            keys.retain(|_, state| Arc::strong_count(state) > 1);
        }
        keys.entry(key.to_owned()).or_default().clone()
    }

    fn encode_entry(&self, stream: &str, id: CheckpointId, summary: u64, checkpoint: &C) -> Result<Bytes, StoreError> {
        let body = codec::encode(stream, HISTORY_SCHEMA, checkpoint)?;
        let compressed = match self.compression {
            Compression::Lz4 => Some(lz4_flex::block::compress(&body)).filter(|block| block.len() < body.len()),
            Compression::None => None,
        };
        let stored = compressed.as_deref().unwrap_or(&body);
        let mut out = Vec::with_capacity(HEADER_BYTES + stored.len());
        out.extend_from_slice(&[HISTORY_TAG, HISTORY_VERSION, if compressed.is_some() { FLAG_LZ4 } else { 0 }, 0]);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&summary.to_le_bytes());
        out.extend_from_slice(stored);
        Ok(Bytes::from(out))
    }

    fn decode_entry(stream: &str, entry: &Entry) -> Result<C, StoreError> {
        let header = parse_header(stream, entry)?;
        let body =
            body(&header, &entry.payload[HEADER_BYTES..]).map_err(|reason| decode_error(stream, entry.seq, reason))?;
        Ok(codec::decode(stream, entry.seq, HISTORY_SCHEMA, &body)?.0)
    }

    /// Saves `checkpoint` as the key's newest, durably, and returns its id:
    /// larger than every id saved under the key before it.
    ///
    /// # Errors
    /// [`StoreError::Encode`]; [`StoreError::Decode`] if the key's last
    /// header is damaged; [`StoreError::Contention`] if other writers kept
    /// moving the key; [`StoreError::Backend`].
    pub async fn save(&self, key: &str, checkpoint: &C) -> Result<CheckpointId, StoreError> {
        self.save_with_summary(key, checkpoint, 0).await
    }

    /// As [`CheckpointHistory::save`], attaching `summary` to the header,
    /// where `list` reads it without decoding the body (oxify's adapter
    /// keeps the completed node count there).
    ///
    /// # Errors
    /// As [`CheckpointHistory::save`].
    pub async fn save_with_summary(&self, key: &str, checkpoint: &C, summary: u64) -> Result<CheckpointId, StoreError> {
        let stream = self.stream(key);
        let lock = self.key_lock(key);
        let mut known = lock.lock().await;
        for _ in 0..SAVE_RETRIES_MAX {
            let (expect, last) = match *known {
                Some(state) => state,
                None => {
                    let contents = self.backend.read(&stream).await?;
                    let last = contents.entries.last().map(|entry| parse_header(&stream, entry)).transpose()?;
                    (contents.unchanged(), last.map(|header| header.id))
                }
            };
            let id = next_id(last);
            let payload = self.encode_entry(&stream, id, summary, checkpoint)?;
            match self.backend.append(&stream, expect, payload).await {
                Ok(committed) => {
                    *known = Some((committed.unchanged_after_append(), Some(id)));
                    return Ok(id);
                }
                // Another store or process moved the key: read it again.
                Err(StoreError::Conflict { .. }) => *known = None,
                Err(error) => {
                    *known = None;
                    return Err(error);
                }
            }
        }
        Err(StoreError::Contention { stream, attempts: SAVE_RETRIES_MAX })
    }

    /// The key's checkpoint saved last, with its id, if it has one.
    ///
    /// # Errors
    /// [`StoreError::Decode`] naming the stream and sequence of a damaged
    /// checkpoint; [`StoreError::Backend`].
    pub async fn load_latest(&self, key: &str) -> Result<Option<(CheckpointId, C)>, StoreError> {
        let stream = self.stream(key);
        let contents = self.backend.read(&stream).await?;
        let Some(entry) = contents.entries.last() else { return Ok(None) };
        let id = parse_header(&stream, entry)?.id;
        Ok(Some((id, Self::decode_entry(&stream, entry)?)))
    }

    /// The key's checkpoint `id`, if the key has it (a pruned or deleted
    /// one is gone). Only its body is decoded.
    ///
    /// # Errors
    /// As [`CheckpointHistory::load_latest`].
    pub async fn load(&self, key: &str, id: CheckpointId) -> Result<Option<C>, StoreError> {
        let stream = self.stream(key);
        let contents = self.backend.read(&stream).await?;
        for entry in contents.entries.iter().rev() {
            if parse_header(&stream, entry)?.id == id {
                return Ok(Some(Self::decode_entry(&stream, entry)?));
            }
        }
        Ok(None)
    }

    /// The checkpoint `id` under whichever key has it, with that key: reads
    /// the headers of every key of this store, so it costs a scan (a
    /// caller that knows the key uses [`CheckpointHistory::load`]).
    ///
    /// # Errors
    /// As [`CheckpointHistory::load_latest`].
    pub async fn find(&self, id: CheckpointId) -> Result<Option<(String, C)>, StoreError> {
        for (stream, _) in self.backend.streams(&self.prefix).await? {
            let key = &stream[self.prefix.len()..];
            if let Some(checkpoint) = self.load(key, id).await? {
                return Ok(Some((key.to_owned(), checkpoint)));
            }
        }
        Ok(None)
    }

    /// The key's checkpoints' metadata, the newest first, from their
    /// headers alone: a body that does not decode is still listed.
    ///
    /// # Errors
    /// [`StoreError::Decode`] for a damaged header; [`StoreError::Backend`].
    pub async fn list(&self, key: &str) -> Result<Vec<CheckpointMeta>, StoreError> {
        let stream = self.stream(key);
        let contents = self.backend.read(&stream).await?;
        contents.entries.iter().rev().map(|entry| meta(&stream, entry)).collect()
    }

    /// Keeps the key's `keep_count` newest checkpoints and removes the
    /// others through the backend's retention, which reclaims their space.
    /// Returns how many were removed: each checkpoint is counted by the one
    /// prune that removed it, however stores over one backend race.
    ///
    /// # Errors
    /// [`StoreError::Contention`] if other writers kept moving the key;
    /// [`StoreError::Backend`].
    pub async fn prune(&self, key: &str, keep_count: usize) -> Result<usize, StoreError> {
        let stream = self.stream(key);
        let lock = self.key_lock(key);
        let _serialized = lock.lock().await;
        for _ in 0..SAVE_RETRIES_MAX {
            let contents = self.backend.read(&stream).await?;
            let over = contents.entries.len().saturating_sub(keep_count);
            if over == 0 {
                return Ok(0);
            }
            let first_kept = contents.entries.get(over).map_or(contents.next_seq, |entry| entry.seq);
            // Decided on the key as read: a save or a delete since (from
            // another store) makes it read again; a racing prune does not
            // move the key, and the backend says where it left the key's start.
            let ops = vec![StoreOp::check(stream.clone(), contents.unchanged()), StoreOp::prune(&stream, first_kept)];
            match self.backend.commit(ops).await {
                Ok(committed) => return Ok(removed(&committed, first_kept)),
                Err(StoreError::Conflict { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Err(StoreError::Contention { stream, attempts: SAVE_RETRIES_MAX })
    }

    /// Forgets every checkpoint of the key and returns how many it had,
    /// counting each checkpoint once however it races a `prune` or another
    /// `delete_all`; an unknown key is a no-op.
    ///
    /// # Errors
    /// [`StoreError::Contention`] if other writers kept moving the key;
    /// [`StoreError::Backend`].
    pub async fn delete_all(&self, key: &str) -> Result<usize, StoreError> {
        let stream = self.stream(key);
        let lock = self.key_lock(key);
        let mut known = lock.lock().await;
        *known = None;
        for _ in 0..SAVE_RETRIES_MAX {
            let contents = self.backend.read(&stream).await?;
            if contents.next_seq == 0 && contents.snapshot.is_none() {
                return Ok(0);
            }
            // The prune reports where the key's start was, so the count is
            // what this commit removed; the check makes a save or a delete
            // since the read read again.
            let ops = vec![
                StoreOp::check(stream.clone(), contents.unchanged()),
                StoreOp::prune(stream.clone(), contents.next_seq),
                StoreOp::clear(stream.clone(), Expect::Any),
            ];
            match self.backend.commit(ops).await {
                Ok(committed) => return Ok(removed(&committed, contents.next_seq)),
                Err(StoreError::Conflict { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Err(StoreError::Contention { stream, attempts: SAVE_RETRIES_MAX })
    }
}

/// How many entries the prune of a commit of [check, prune, ...] removed:
/// from where the stream started before it up to `before`.
fn removed(committed: &[crate::stores::backend::Committed], before: u64) -> usize {
    let start_before = committed.get(1).expect("a commit acknowledges each of its operations").seq;
    usize::try_from(before.saturating_sub(start_before)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_id_is_larger_than_the_last_even_when_the_clock_is_behind() {
        let future = uuid::Builder::from_unix_timestamp_millis(u64::MAX >> 20, &[0xFF; 10]).into_uuid();
        for last in [None, Some(Uuid::now_v7()), Some(future), Some(Uuid::from_u128(future.as_u128() - 7))] {
            let next = next_id(last);
            assert!(last.is_none_or(|last| next > last), "{next} after {last:?}");
            assert_eq!(next.get_version_num(), 7, "{next}");
        }
    }

    #[test]
    fn a_damaged_header_is_a_typed_error_and_never_a_panic() {
        let entry = |payload: Vec<u8>| Entry {
            stream: "history/k".to_owned(),
            seq: 3,
            cursor: crate::stores::Cursor(9),
            kind: crate::stores::EntryKind::Entry,
            timestamp_ms: 0,
            payload: Bytes::from(payload),
        };
        let mut good = vec![HISTORY_TAG, HISTORY_VERSION, FLAG_LZ4, 0];
        good.extend_from_slice(&[0; HEADER_BYTES - 4]);
        assert!(parse_header("history/k", &entry(good.clone())).is_ok());
        for cut in 0..HEADER_BYTES {
            assert!(parse_header("history/k", &entry(good[..cut].to_vec())).is_err(), "cut at {cut}");
        }
        for (at, byte) in [(TAG_AT, 0), (VERSION_AT, 2), (FLAGS_AT, 0b10), (RESERVED_AT, 1)] {
            let mut bad = good.clone();
            bad[at] = byte;
            let error = parse_header("history/k", &entry(bad)).err().expect("refused");
            assert!(matches!(&error, StoreError::Decode { stream, seq: 3, .. } if stream == "history/k"), "{error}");
        }
    }
}
