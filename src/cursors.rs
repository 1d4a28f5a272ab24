//! Durable named cursors: a consumer's position, stored in the log itself.
//!
//! [`Log::commit_cursor`](crate::Log::commit_cursor) records that the
//! consumer `name` has processed everything up to an LSN;
//! [`Log::cursor`](crate::Log::cursor) reads it back, after a restart too;
//! [`Log::delete_cursor`](crate::Log::delete_cursor) forgets it. A
//! consumer resumes with `log.subscribe(log.cursor(name)?.unwrap_or(Lsn::ZERO))`
//! and misses nothing: the subscription delivers every live record after
//! the cursor (see [`crate::subscribe`]).
//!
//! # How it is stored
//!
//! Each cursor is a stream in a namespace reserved for the log itself:
//! stream ids starting with the byte `0xff` then `annals/` (never valid
//! UTF-8, so no text id collides). Appends, batches and clears of such ids
//! are refused ([`Error::InvalidArgument`]), and listings, `read_all` and
//! subscriptions leave them out. A commit writes one atomic batch: a clear
//! of the cursor's stream and an entry holding the position, so the stream
//! always has one live record and compaction reclaims every older one. No
//! new frame kind: segments-format.md, section 9.3.
//!
//! # What a cursor holds back
//!
//! A registered cursor holds back log-wide retention (`max_age_ms`,
//! `max_bytes`): a compaction does not trim the segment holding the first
//! record after the lowest cursor, so nothing a consumer has not read is
//! dropped under it. An abandoned cursor must not keep the disk forever:
//! one that lags more than
//! [`Options::cursor_lag_bytes_max`](crate::Options::cursor_lag_bytes_max)
//! behind the end of the log (counted in segment bytes, from the segment
//! holding the first record it has not read) is released, and a
//! subscription from it then gets [`Error::Trimmed`] once retention passed
//! it. Compaction of records that are no longer live (cleared, pruned)
//! does not wait for cursors: a subscription never delivers those anyway,
//! so it changes nothing a consumer sees.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::frame::STREAM_ID_BYTES_MAX;
use crate::index::Index;
use crate::types::{Lsn, StreamSeq};

/// Stream ids that start with these bytes belong to the log itself.
pub const RESERVED_STREAM_PREFIX: &[u8] = b"\xffannals/";

/// Where named cursors live inside the reserved namespace.
const CURSOR_PREFIX: &[u8] = b"\xffannals/cursor/";

/// A cursor record's payload: a version byte, then the LSN (little-endian).
// Format: { version: u8 = 1 | lsn: u64 LE }
const CURSOR_PAYLOAD_BYTES: usize = 1 + 8;
const CURSOR_PAYLOAD_VERSION: u8 = 1;

/// The longest cursor name, in bytes: a stream id less the reserved prefix.
pub const CURSOR_NAME_BYTES_MAX: usize = STREAM_ID_BYTES_MAX - CURSOR_PREFIX.len();

/// Whether a stream id belongs to the log's reserved namespace.
pub fn is_reserved(stream: &[u8]) -> bool {
    stream.starts_with(RESERVED_STREAM_PREFIX)
}

/// The stream that holds cursor `name`.
///
/// # Errors
/// [`Error::InvalidArgument`] for an empty name; [`Error::TooLarge`] over
/// [`CURSOR_NAME_BYTES_MAX`].
pub(crate) fn stream_of(name: &str) -> Result<Vec<u8>> {
    if name.is_empty() {
        return Err(Error::InvalidArgument("empty cursor name".to_owned()));
    }
    if name.len() > CURSOR_NAME_BYTES_MAX {
        return Err(Error::TooLarge { what: "cursor name", len: name.len(), max: CURSOR_NAME_BYTES_MAX });
    }
    let mut stream = Vec::with_capacity(CURSOR_PREFIX.len() + name.len());
    stream.extend_from_slice(CURSOR_PREFIX);
    stream.extend_from_slice(name.as_bytes());
    Ok(stream)
}

/// A cursor record's payload.
pub(crate) fn encode(lsn: Lsn) -> Bytes {
    let mut payload = Vec::with_capacity(CURSOR_PAYLOAD_BYTES);
    payload.push(CURSOR_PAYLOAD_VERSION);
    payload.extend_from_slice(&lsn.0.to_le_bytes());
    Bytes::from(payload)
}

/// The position a cursor record holds, if its payload is one this
/// version writes.
fn decode(payload: &[u8]) -> Option<Lsn> {
    match payload {
        [CURSOR_PAYLOAD_VERSION, lsn @ ..] if lsn.len() == 8 => {
            Some(Lsn(u64::from_le_bytes(lsn.try_into().expect("eight bytes"))))
        }
        _ => None,
    }
}

/// The position `op` registers, if it writes a cursor record: what the
/// writer checks against the log-wide trim when it commits the write.
pub(crate) fn position_written(op: &crate::commit::Op) -> Option<Lsn> {
    match op.kind {
        crate::commit::OpKind::Entry(_) if op.stream.starts_with(CURSOR_PREFIX) => decode(&op.payload),
        _ => None,
    }
}

/// Cursor `name`'s position as the index holds it.
///
/// # Errors
/// [`Error::CursorTrimmed`] if retention dropped the cursor's own record
/// (it was released, and the log trimmed past it);
/// [`Error::InvalidArgument`] for a record this version cannot read.
pub(crate) fn read(index: &Index, name: &str) -> Result<Option<Lsn>> {
    let stream = stream_of(name)?;
    let Some(state) = index.stream(&stream) else { return Ok(None) };
    if state.live_entries() == 0 {
        // The stream goes on (it has a next sequence) with nothing live:
        // log-wide retention dropped its record.
        return if state.next_seq() > StreamSeq(0) {
            Err(Error::CursorTrimmed { name: name.to_owned(), oldest: index.oldest_lsn() })
        } else {
            Ok(None)
        };
    }
    let record = index.read_stream_from(&stream, StreamSeq(state.next_seq().0 - 1))?.pop();
    match record.map(|record| decode(&record.payload)) {
        Some(Some(lsn)) => Ok(Some(lsn)),
        Some(None) => Err(Error::InvalidArgument(format!(
            "cursor {name} holds a position this version cannot read (its first byte is not version {CURSOR_PAYLOAD_VERSION})"
        ))),
        None => Ok(None),
    }
}

/// Every named cursor with its position, in name order (cursors whose
/// record was trimmed are left out).
pub(crate) fn list(index: &Index) -> Vec<(String, Lsn)> {
    let mut cursors = Vec::new();
    for (stream, _) in index.streams_with_prefix(CURSOR_PREFIX) {
        let name = String::from_utf8_lossy(&stream[CURSOR_PREFIX.len()..]).into_owned();
        if let Ok(Some(lsn)) = read(index, &name) {
            cursors.push((name, lsn));
        }
    }
    cursors
}

/// How many of the log's oldest segments log-wide retention may drop
/// without taking a record that a registered cursor has not read: the
/// segment holding the first record after each cursor stays, unless the
/// cursor lags more than `lag_bytes_max` (from that segment to the end of
/// the log, in segment bytes) and is released. `usize::MAX` if no cursor
/// holds anything back.
pub(crate) fn trim_limit(index: &Index, lag_bytes_max: u64) -> usize {
    let segments = index.segments();
    let mut limit = usize::MAX;
    for (_, lsn) in list(index) {
        let first_unread = Lsn(lsn.0.saturating_add(1));
        if first_unread < index.trimmed_before() {
            // Already past it: released before, and `Trimmed` for it.
            continue;
        }
        let holding =
            segments.partition_point(|entry| entry.segment.header.first_lsn <= first_unread).saturating_sub(1);
        let lag: u64 = segments[holding..].iter().map(|entry| entry.segment.header.segment_bytes).sum();
        if lag > lag_bytes_max {
            continue;
        }
        limit = limit.min(holding);
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cursor's payload reads back as written, and anything else is not
    /// taken for a position.
    #[test]
    fn cursor_payloads_round_trip_and_reject_other_versions() {
        for lsn in [Lsn(0), Lsn(1), Lsn(u64::MAX)] {
            assert_eq!(decode(&encode(lsn)), Some(lsn));
        }
        assert_eq!(decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(decode(&[1, 0, 0]), None);
        assert_eq!(decode(&[]), None);
    }

    /// Names map into the reserved namespace and are bounded.
    #[test]
    fn cursor_names_are_reserved_streams_and_bounded() {
        let stream = stream_of("projection").unwrap();
        assert!(is_reserved(&stream));
        assert!(!is_reserved(b"projection"));
        assert!(matches!(stream_of(""), Err(Error::InvalidArgument(_))));
        let longest = "n".repeat(CURSOR_NAME_BYTES_MAX);
        assert_eq!(stream_of(&longest).unwrap().len(), STREAM_ID_BYTES_MAX);
        assert!(matches!(stream_of(&format!("{longest}n")), Err(Error::TooLarge { .. })));
    }
}
