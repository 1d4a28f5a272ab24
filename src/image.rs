//! The persisted index image: `annals.index`, a checksummed copy of the
//! index as recovery would build it for a prefix of the log, so that open
//! loads it and scans only the frames after it (segments-format.md,
//! section 11).
//!
//! An image is never needed: a missing, damaged or stale one makes open
//! scan every segment, as it always did. Nothing in it is trusted before its
//! checksums, the state file and the segments present agree with it, and
//! the bytes it covers are never rewritten (only salvage cuts covered bytes,
//! and it deletes the image first).
//!
//! Every image is a recovery's own result: the writer never serializes its
//! live index. `refresh` runs a read-only recovery (from the current
//! image, if valid, and the frames after it) of the sealed segments, or of
//! the whole log at a clean close, and writes what it built. So an open
//! from an image equals a full scan by construction, and the crash
//! simulator checks that it does.
//!
//! Open checks the header and the tables (scalars, segments, the stream
//! directory), not the streams' entries: each stream's section (its entry
//! positions and their record checksums) has its own checksum, checked on
//! the stream's first use (`StreamSection`), and a read of a record the
//! image covers checks that record alone (its own frame, or in a batch its
//! bytes alone) against its record checksum.
//!
//! ```text
//! // Image: { header (104 bytes) | body: tables { scalars | segment × segments | stream directory × streams }
//! //          | stream section × streams }
//! ```

use std::path::Path;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::error::{Corruption, Error, Result};
use crate::frame::RecordKind;
use crate::fs::{File, FileSystem};
use crate::index::{CHECKPOINT_FRAMES, Index, Locs, RecordLoc, SegmentEntry, SnapshotLoc, StreamState};
use crate::segment::{SEGMENT_HEADER_BYTES, Segment};
use crate::state::LogState;
use crate::sync::{Condvar, Mutex};
use crate::types::{Lsn, StreamSeq};

/// The image's file name in the log directory.
pub const IMAGE_FILE_NAME: &str = "annals.index";
/// An image being written, before it is renamed into place; deleted by a
/// read-write open, ignored by readers.
pub const IMAGE_TEMP_FILE_NAME: &str = "annals.index.tmp";
/// The image's magic.
pub const IMAGE_MAGIC: [u8; 8] = *b"ANNALSIX";
/// The image format this build writes and reads. An image of another
/// version (1: one checksum over the whole body, no record checksums; 2:
/// every record checksum computed over the operation alone) is not used:
/// open scans, and writes a version-3 image at the next chance.
pub const IMAGE_VERSION: u32 = 3;

// Header: { magic | image_version | header_bytes | log_id | written_ms | compaction_generation
//           | compacted_end_lsn | oldest_segment_lsn | trimmed_lsn | next_lsn | body_bytes | tables_bytes
//           | tables_crc | header_crc }
const VERSION_AT: usize = 8;
const HEADER_BYTES_AT: usize = 12;
const LOG_ID_AT: usize = 16;
const WRITTEN_AT: usize = 32;
const GENERATION_AT: usize = 40;
const COMPACTED_END_AT: usize = 48;
const OLDEST_AT: usize = 56;
const TRIMMED_AT: usize = 64;
const NEXT_LSN_AT: usize = 72;
const BODY_BYTES_AT: usize = 80;
const TABLES_BYTES_AT: usize = 88;
const TABLES_CRC_AT: usize = 96;
const HEADER_CRC_AT: usize = 100;
/// Bytes of the image header.
pub const IMAGE_HEADER_BYTES: usize = HEADER_CRC_AT + 4;
const _: () = assert!(IMAGE_HEADER_BYTES == 104);

// Body scalars: { last_durable_lsn | records | retention_records | last_timestamp_ms | flags | segments | streams }
const SCALARS_BYTES: usize = 8 * 4 + 4 + 4 + 8;
// Segment: { header (64) | flags | frames | end_offset | last_frame_offset | last_frame_crc | live_bytes
//            | max_timestamp_ms | checkpoints | batch_frames } checkpoints (lsn, offset) batch_frames (start, end)
const SEGMENT_FIXED_BYTES: usize = SEGMENT_HEADER_BYTES + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 4 + 4;
/// Bytes of one seek point in a segment's table: its LSN and its offset.
pub(crate) const SEEK_POINT_BYTES: usize = 8 + 4;
const BATCH_FRAME_BYTES: usize = 4 + 4;
// Stream directory: { stream_bytes | snapshots | entries | start | since | snapshots_before | section_crc }
//                   stream (seq | position | lsn | record_crc) × snapshots
const STREAM_FIXED_BYTES: usize = 2 + 4 + 8 * 4 + 4;
const SNAPSHOT_BYTES: usize = 8 * 3 + 4;
// Stream section: (position u64 | record_crc u32) × entries
/// Bytes of one entry in a stream's section: its position and its record checksum.
pub(crate) const ENTRY_BYTES: usize = 8 + 4;

const FLAG_ENDS_WITH_MARKER: u32 = 1;
const SEGMENT_FLAG_COMPACTED: u32 = 1;
const SEGMENT_FLAG_HAS_LAST_FRAME: u32 = 2;

/// Why an image was not used: open scanned instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageDefect {
    /// Shorter than its header, or than its header says.
    Truncated,
    /// Not an image: the magic differs.
    BadMagic,
    /// An image version this build does not read.
    UnsupportedVersion(u32),
    /// A checksum does not match (damage).
    Checksum,
    /// A field out of range although the checksums matched.
    Malformed(&'static str),
    /// Written for another log.
    ForeignLog,
    /// The log changed in a way the image does not cover (a compaction, a
    /// trim, a segment replaced or missing): it describes an older log.
    Stale(&'static str),
}

impl std::fmt::Display for ImageDefect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageDefect::Truncated => write!(f, "image is truncated"),
            ImageDefect::BadMagic => write!(f, "not an index image"),
            ImageDefect::UnsupportedVersion(version) => write!(f, "unsupported image version {version}"),
            ImageDefect::Checksum => write!(f, "image checksum mismatch"),
            ImageDefect::Malformed(what) => write!(f, "malformed image: {what}"),
            ImageDefect::ForeignLog => write!(f, "image of another log"),
            ImageDefect::Stale(what) => write!(f, "stale image: {what}"),
        }
    }
}

/// What open did with the index image, in [`crate::RecoveryReport`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum ImageUse {
    /// There was none (or the open does not read images): a full scan.
    #[default]
    None,
    /// Loaded: the frames before `covered_lsn` were not scanned.
    Loaded {
        /// The LSN the image reaches: the scan went on from there.
        covered_lsn: Lsn,
        /// Segments it covered.
        segments: usize,
        /// When it was written, ms since the Unix epoch.
        written_ms: u64,
    },
    /// Found but not used (damaged, stale or another log's): a full scan;
    /// a read-write open deleted it.
    Rejected {
        /// Why.
        reason: String,
    },
}

/// The record checksum of one operation of a batch frame
/// (segments-format.md, 11.1): CRC-32 (as a frame's) of the log id, the 8
/// bytes of its frame's `timestamp_ms`, the record kind's byte (as in a
/// frame's `kind`) and the operation's bytes (its 22-byte header, stream and
/// payload): every byte a read derives the [`crate::Record`] from.
pub(crate) fn record_crc(log_id: &[u8; 16], timestamp: &[u8], kind: RecordKind, op: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(log_id);
    hasher.update(timestamp);
    hasher.update(&[kind.frame_kind() as u8]);
    hasher.update(op);
    hasher.finalize()
}

/// The record checksum of an operation that is its frame's whole body
/// (segments-format.md, 11.1): its frame's checksum, CRC-32 of the log id
/// and `frame` (the frame's bytes after its `crc` field). For a frame whose
/// checksum was checked, the stored `crc` field: the image writer copies
/// it, hashing nothing.
pub(crate) fn frame_record_crc(log_id: &[u8; 16], frame: &[u8]) -> u32 {
    crc(log_id, frame)
}

const SECTION_UNCHECKED: u8 = 0;
const SECTION_GOOD: u8 = 1;
const SECTION_DAMAGED: u8 = 2;

/// A stream's section of a loaded image: its live entries' positions and
/// record checksums, checked against the section's checksum (from the
/// stream directory, which open checked) on the stream's first use, once:
/// an atomic flag, no lock. Concurrent first uses may both compute it;
/// they find the same. A section that fails is never used: the index walks
/// the covered frames for the stream's positions instead, once
/// (`index::walk_stream_entries`), and keeps what it found here.
pub(crate) struct StreamSection {
    /// The sequence of the section's first entry.
    first_seq: u64,
    /// [`ENTRY_BYTES`] per entry, in the mapped image.
    items: bytes::Bytes,
    /// The section's checksum as the directory records it.
    crc: u32,
    log_id: [u8; 16],
    /// The image file and the section's offset in it, for errors.
    path: Arc<Path>,
    offset: u64,
    checked: AtomicU8,
    /// Of a damaged section: the positions the covered frames say, or why
    /// they could not.
    pub(crate) walked: OnceLock<Result<Vec<RecordLoc>, Corruption>>,
    /// One bit per entry, set once a read found the record's bytes match
    /// its checksum: later reads in this process need not hash them again
    /// (as a scanned frame's records are checked once, at open). Allocated
    /// on the first such read: a bit per entry, 1 MiB for 8 M entries.
    verified: OnceLock<Box<[AtomicU64]>>,
}

impl std::fmt::Debug for StreamSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSection")
            .field("first_seq", &self.first_seq)
            .field("entries", &(self.items.len() / ENTRY_BYTES))
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl StreamSection {
    /// Whether the section passes its checksum: computed the first time,
    /// then read from the flag.
    pub(crate) fn check(&self) -> bool {
        let mut state = self.checked.load(Ordering::Acquire);
        if state == SECTION_UNCHECKED {
            state = if crc(&self.log_id, &self.items) == self.crc { SECTION_GOOD } else { SECTION_DAMAGED };
            self.checked.store(state, Ordering::Release);
        }
        state == SECTION_GOOD
    }

    /// The section's bytes and the checksum the directory records for
    /// them, if they pass it ([`StreamSection::check`]).
    pub(crate) fn intact(&self) -> Option<(&[u8], u32)> {
        self.check().then_some((&self.items[..], self.crc))
    }

    /// Whether a check in this process found the section damaged (without
    /// checking it if none did).
    pub(crate) fn found_damaged(&self) -> bool {
        self.checked.load(Ordering::Acquire) == SECTION_DAMAGED
    }

    /// The sequence of the section's first entry, and how many it holds.
    pub(crate) fn span(&self) -> (u64, usize) {
        (self.first_seq, self.items.len() / ENTRY_BYTES)
    }

    /// The image file and the section's offset in it.
    pub(crate) fn location(&self) -> (std::path::PathBuf, u64) {
        (self.path.to_path_buf(), self.offset)
    }

    /// Whether a read in this process found the entry at `seq` to match its
    /// record checksum ([`StreamSection::mark_verified`]).
    pub(crate) fn is_verified(&self, seq: u64) -> bool {
        let Some(bits) = self.verified.get() else { return false };
        let Some(i) = seq.checked_sub(self.first_seq) else { return false };
        bits.get((i / 64) as usize).is_some_and(|word| word.load(Ordering::Acquire) & (1 << (i % 64)) != 0)
    }

    /// Records that the entry at `seq` matched its record checksum.
    pub(crate) fn mark_verified(&self, seq: u64) {
        let entries = self.items.len() / ENTRY_BYTES;
        let Some(i) = seq.checked_sub(self.first_seq).filter(|&i| i < entries as u64) else { return };
        let bits = self.verified.get_or_init(|| (0..entries.div_ceil(64)).map(|_| AtomicU64::new(0)).collect());
        bits[(i / 64) as usize].fetch_or(1 << (i % 64), Ordering::Release);
    }

    /// The record checksum of the entry at `seq`, if the section holds it.
    /// Meaningful once [`StreamSection::check`] passed.
    pub(crate) fn crc_of(&self, seq: u64) -> Option<u32> {
        let i = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        let at = i.checked_mul(ENTRY_BYTES)?.checked_add(8)?;
        self.items.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")))
    }
}

/// The header of an image: what it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ImageHeader {
    pub log_id: [u8; 16],
    pub written_ms: u64,
    pub compaction_generation: u64,
    pub compacted_end_lsn: Lsn,
    pub oldest_segment_lsn: Lsn,
    pub trimmed_lsn: Lsn,
    pub next_lsn: Lsn,
}

impl ImageHeader {
    /// Whether the image describes the log the state file records now: the
    /// same log, compaction and trim. (Appends and rollovers since do not
    /// matter: the image covers a prefix, and the scan reads the rest.)
    pub fn check_against(&self, state: &LogState) -> Result<(), ImageDefect> {
        if self.log_id != state.log_id {
            return Err(ImageDefect::ForeignLog);
        }
        if self.compaction_generation != state.compaction_generation
            || self.compacted_end_lsn != state.compacted_end_lsn
            || self.oldest_segment_lsn != state.oldest_segment_lsn
        {
            return Err(ImageDefect::Stale("another compaction generation"));
        }
        if self.trimmed_lsn != state.trimmed_lsn {
            return Err(ImageDefect::Stale("another trim"));
        }
        Ok(())
    }
}

/// One covered segment as the image records it.
pub(crate) struct ImageSegment {
    /// The segment's 64 header bytes, as they must still be on disk.
    pub header: [u8; SEGMENT_HEADER_BYTES],
    pub compacted: bool,
    /// The checksum field of its last covered frame: which frame is there.
    pub last_frame_crc: u32,
    entry: EntryFields,
}

struct EntryFields {
    end_offset: usize,
    checkpoints: crate::index::SeekPoints,
    frames: u32,
    last_frame_offset: Option<usize>,
    batch_frames: Vec<(u32, u32)>,
    live_bytes: u64,
    max_timestamp_ms: u64,
}

impl ImageSegment {
    /// End of the covered frames in the segment.
    pub fn end_offset(&self) -> usize {
        self.entry.end_offset
    }

    /// Where the segment's last covered frame starts, if any.
    pub fn last_frame_offset(&self) -> Option<usize> {
        self.entry.last_frame_offset
    }
}

/// A decoded, checksummed image.
pub(crate) struct DecodedImage {
    pub header: ImageHeader,
    pub segments: Vec<ImageSegment>,
    streams: crate::index::StreamMap,
    last_durable_lsn: Lsn,
    records: u64,
    retention_records: u64,
    last_timestamp_ms: u64,
    ends_with_marker: bool,
}

impl DecodedImage {
    /// The index the image holds, over the covered segments, opened.
    /// `segments` are in the image's order, each checked against its header.
    pub fn into_index(self, segments: Vec<Segment>) -> Index {
        debug_assert_eq!(segments.len(), self.segments.len());
        let entries = self
            .segments
            .into_iter()
            .zip(segments)
            .map(|(image, segment)| SegmentEntry {
                segment,
                end_offset: image.entry.end_offset,
                checkpoints: image.entry.checkpoints,
                frames: image.entry.frames,
                last_frame_offset: image.entry.last_frame_offset,
                batch_frames: image.entry.batch_frames,
                live_bytes: image.entry.live_bytes,
                max_timestamp_ms: image.entry.max_timestamp_ms,
                image_covered_end: image.entry.end_offset,
                read_calls_per_window: std::sync::OnceLock::new(),
            })
            .collect();
        Index {
            segments: entries,
            streams: self.streams,
            next_lsn: self.header.next_lsn,
            last_durable_lsn: self.last_durable_lsn,
            ends_with_marker: self.ends_with_marker,
            records: self.records,
            retention_records: self.retention_records,
            last_timestamp_ms: self.last_timestamp_ms,
            trimmed_before: self.header.trimmed_lsn,
            image_found_wrong: std::sync::atomic::AtomicBool::new(false),
            holes: Vec::new(),
        }
    }
}

fn crc(log_id: &[u8; 16], bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(log_id);
    hasher.update(bytes);
    hasher.finalize()
}

/// The checksum of bytes whose checksum (as [`crc`], seeded) was `crc`,
/// followed by `more`: the hash goes on from it.
fn crc_continued(crc: u32, more: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(crc);
    hasher.update(more);
    hasher.finalize()
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Encodes `index` (a recovery's result, every segment of it covered) as an
/// image of the log `state` describes.
///
/// # Errors
/// [`Error::Corruption`] if a stream's section of the image the recovery
/// loaded is damaged, or a record is not where the index says: its record
/// checksums cannot be carried over ([`Index::record_crc`]).
pub(crate) fn encode(index: &Index, state: &LogState, written_ms: u64) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    put_u64(&mut body, index.last_durable_lsn.0);
    put_u64(&mut body, index.records);
    put_u64(&mut body, index.retention_records);
    put_u64(&mut body, index.last_timestamp_ms);
    put_u32(&mut body, if index.ends_with_marker { FLAG_ENDS_WITH_MARKER } else { 0 });
    put_u32(&mut body, u32::try_from(index.segments.len()).expect("fewer than 2^32 segments"));
    put_u64(&mut body, index.streams.len() as u64);
    for entry in &index.segments {
        body.extend_from_slice(&entry.segment.header.encode());
        let mut flags = if entry.segment.compacted { SEGMENT_FLAG_COMPACTED } else { 0 };
        if entry.last_frame_offset.is_some() {
            flags |= SEGMENT_FLAG_HAS_LAST_FRAME;
        }
        put_u32(&mut body, flags);
        put_u32(&mut body, entry.frames);
        put_u64(&mut body, entry.end_offset as u64);
        put_u64(&mut body, entry.last_frame_offset.unwrap_or(0) as u64);
        let last_frame_crc = entry.last_frame_offset.map_or(0, |at| {
            let crc = entry.segment.map.slice(at, 4);
            u32::from_le_bytes(crc.as_ref().try_into().expect("a frame starts with its checksum"))
        });
        put_u32(&mut body, last_frame_crc);
        put_u64(&mut body, entry.live_bytes);
        put_u64(&mut body, entry.max_timestamp_ms);
        put_u32(&mut body, u32::try_from(entry.checkpoints.len()).expect("checkpoints fit a segment"));
        put_u32(&mut body, u32::try_from(entry.batch_frames.len()).expect("batch frames fit a segment"));
        match &entry.checkpoints {
            // Still the loaded image's table, in the same layout.
            crate::index::SeekPoints::Mapped(items) => body.extend_from_slice(items),
            crate::index::SeekPoints::Owned(points) => {
                for (lsn, offset) in points {
                    put_u64(&mut body, lsn.0);
                    put_u32(&mut body, *offset);
                }
            }
        }
        for (start, end) in &entry.batch_frames {
            put_u32(&mut body, *start);
            put_u32(&mut body, *end);
        }
    }
    let entries: usize = index.streams.values().map(|stream_state| stream_state.entries.len()).sum();
    let mut sections = Vec::with_capacity(entries * ENTRY_BYTES);
    for (stream, stream_state) in &index.streams {
        let section_at = sections.len();
        let crate::index::ImageStream { carried, snapshot_crcs } =
            index.image_stream(stream, stream_state, &mut sections)?;
        let section_crc = match carried {
            // The loaded image's section, then the entries after it: its
            // checksum goes on over them.
            Some((carried_bytes, carried_crc)) => crc_continued(carried_crc, &sections[section_at + carried_bytes..]),
            None => crc(&state.log_id, &sections[section_at..]),
        };
        body.extend_from_slice(&u16::try_from(stream.len()).expect("stream ids are at most 1,024 bytes").to_le_bytes());
        put_u32(&mut body, u32::try_from(stream_state.snapshots.len()).expect("snapshots fit in the log"));
        put_u64(&mut body, stream_state.entries.len() as u64);
        put_u64(&mut body, stream_state.start);
        put_u64(&mut body, stream_state.since.0);
        put_u64(&mut body, stream_state.snapshots_before.0);
        put_u32(&mut body, section_crc);
        body.extend_from_slice(stream);
        for (snapshot, record_crc) in stream_state.snapshots.iter().zip(snapshot_crcs) {
            put_u64(&mut body, snapshot.seq.0);
            put_u64(&mut body, snapshot.loc.0);
            put_u64(&mut body, snapshot.lsn.0);
            put_u32(&mut body, record_crc);
        }
    }
    let tables_bytes = body.len();
    let mut out = Vec::with_capacity(IMAGE_HEADER_BYTES + tables_bytes + sections.len());
    out.extend_from_slice(&IMAGE_MAGIC);
    put_u32(&mut out, IMAGE_VERSION);
    put_u32(&mut out, IMAGE_HEADER_BYTES as u32);
    out.extend_from_slice(&state.log_id);
    put_u64(&mut out, written_ms);
    put_u64(&mut out, state.compaction_generation);
    put_u64(&mut out, state.compacted_end_lsn.0);
    put_u64(&mut out, state.oldest_segment_lsn.0);
    put_u64(&mut out, state.trimmed_lsn.0);
    put_u64(&mut out, index.next_lsn.0);
    put_u64(&mut out, (tables_bytes + sections.len()) as u64);
    put_u64(&mut out, tables_bytes as u64);
    put_u32(&mut out, crc(&state.log_id, &body));
    let header_crc = crc(&state.log_id, &out[..HEADER_CRC_AT]);
    put_u32(&mut out, header_crc);
    debug_assert_eq!(out.len(), IMAGE_HEADER_BYTES);
    out.extend_from_slice(&body);
    out.extend_from_slice(&sections);
    Ok(out)
}

/// Reads little-endian fields off a checked byte slice, each bounded by
/// what is left.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], ImageDefect> {
        let end = self.at.checked_add(len).filter(|end| *end <= self.bytes.len()).ok_or(ImageDefect::Truncated)?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, ImageDefect> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("two bytes")))
    }

    fn u32(&mut self) -> Result<u32, ImageDefect> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("four bytes")))
    }

    fn u64(&mut self) -> Result<u64, ImageDefect> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("eight bytes")))
    }

    /// A count of items of `item_bytes` each, refused if they cannot all fit
    /// in what is left: no allocation is sized by an unchecked length.
    fn count(&mut self, count: u64, item_bytes: usize) -> Result<usize, ImageDefect> {
        let left = (self.bytes.len() - self.at) as u64;
        if count.saturating_mul(item_bytes as u64) > left {
            return Err(ImageDefect::Malformed("a count runs past the end of the image"));
        }
        Ok(count as usize)
    }
}

fn header_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

/// Decodes and checks the image header alone.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<ImageHeader, ImageDefect> {
    if bytes.len() < IMAGE_HEADER_BYTES {
        return Err(ImageDefect::Truncated);
    }
    if bytes[..8] != IMAGE_MAGIC {
        return Err(ImageDefect::BadMagic);
    }
    let log_id: [u8; 16] = bytes[LOG_ID_AT..LOG_ID_AT + 16].try_into().expect("sixteen bytes");
    let stored = u32::from_le_bytes(bytes[HEADER_CRC_AT..IMAGE_HEADER_BYTES].try_into().expect("four bytes"));
    if crc(&log_id, &bytes[..HEADER_CRC_AT]) != stored {
        return Err(ImageDefect::Checksum);
    }
    let version = u32::from_le_bytes(bytes[VERSION_AT..VERSION_AT + 4].try_into().expect("four bytes"));
    if version != IMAGE_VERSION {
        return Err(ImageDefect::UnsupportedVersion(version));
    }
    let header_bytes = u32::from_le_bytes(bytes[HEADER_BYTES_AT..HEADER_BYTES_AT + 4].try_into().expect("four bytes"));
    if header_bytes as usize != IMAGE_HEADER_BYTES {
        return Err(ImageDefect::Malformed("header length"));
    }
    Ok(ImageHeader {
        log_id,
        written_ms: header_u64(bytes, WRITTEN_AT),
        compaction_generation: header_u64(bytes, GENERATION_AT),
        compacted_end_lsn: Lsn(header_u64(bytes, COMPACTED_END_AT)),
        oldest_segment_lsn: Lsn(header_u64(bytes, OLDEST_AT)),
        trimmed_lsn: Lsn(header_u64(bytes, TRIMMED_AT)),
        next_lsn: Lsn(header_u64(bytes, NEXT_LSN_AT)),
    })
}

/// Decodes and checks an image's header and tables: both their checksums,
/// every length against what is left, every snapshot's position against
/// the segments it names, and that the streams' sections fill the rest of
/// the file exactly. The sections themselves are not read: each stays in
/// `image` (its array is the index's own layout, [`crate::index::Locs`])
/// with its checksum, checked on the stream's first use
/// ([`StreamSection`]), so open costs work per segment and per stream, not
/// per record; a read checks the position it uses. `dir` is the log's
/// directory, where errors say the image is.
pub(crate) fn decode(image: &bytes::Bytes, dir: &Path) -> Result<DecodedImage, ImageDefect> {
    let bytes: &[u8] = image;
    let header = decode_header(bytes)?;
    let body_bytes = header_u64(bytes, BODY_BYTES_AT);
    let found_bytes = (bytes.len() - IMAGE_HEADER_BYTES) as u64;
    if body_bytes > found_bytes {
        return Err(ImageDefect::Truncated);
    }
    if body_bytes < found_bytes {
        return Err(ImageDefect::Malformed("longer than its header says"));
    }
    let tables_bytes = header_u64(bytes, TABLES_BYTES_AT);
    if tables_bytes > body_bytes {
        return Err(ImageDefect::Malformed("tables longer than the body"));
    }
    let tables = &bytes[IMAGE_HEADER_BYTES..IMAGE_HEADER_BYTES + tables_bytes as usize];
    let stored = u32::from_le_bytes(bytes[TABLES_CRC_AT..TABLES_CRC_AT + 4].try_into().expect("four bytes"));
    if crc(&header.log_id, tables) != stored {
        return Err(ImageDefect::Checksum);
    }
    let mut cursor = Cursor { bytes: tables, at: 0 };
    let scalars = cursor.take(SCALARS_BYTES)?;
    let mut fields = Cursor { bytes: scalars, at: 0 };
    let last_durable_lsn = Lsn(fields.u64()?);
    let records = fields.u64()?;
    let retention_records = fields.u64()?;
    let last_timestamp_ms = fields.u64()?;
    let flags = fields.u32()?;
    let segment_count = fields.u32()?;
    let stream_count = fields.u64()?;
    let segment_count = cursor.count(u64::from(segment_count), SEGMENT_FIXED_BYTES)?;
    let mut segments = Vec::with_capacity(segment_count);
    for _ in 0..segment_count {
        segments.push(decode_segment(&mut cursor, image)?);
    }
    let stream_count = cursor.count(stream_count, STREAM_FIXED_BYTES)?;
    let mut streams = crate::index::StreamMap::with_capacity_and_hasher(stream_count, Default::default());
    let mut sections = Sections {
        image,
        at: IMAGE_HEADER_BYTES + tables.len(),
        log_id: header.log_id,
        path: Arc::from(dir.join(IMAGE_FILE_NAME)),
    };
    for _ in 0..stream_count {
        let (id, state) = decode_stream(&mut cursor, &segments, &mut sections)?;
        if streams.insert(id, state).is_some() {
            return Err(ImageDefect::Malformed("a stream twice"));
        }
    }
    if cursor.at != tables.len() {
        return Err(ImageDefect::Malformed("bytes after the stream directory"));
    }
    if sections.at != bytes.len() {
        return Err(ImageDefect::Malformed("bytes after the stream sections"));
    }
    Ok(DecodedImage {
        header,
        segments,
        streams,
        last_durable_lsn,
        records,
        retention_records,
        last_timestamp_ms,
        ends_with_marker: flags & FLAG_ENDS_WITH_MARKER != 0,
    })
}

/// The streams' sections of an image, handed out in directory order.
struct Sections<'a> {
    image: &'a bytes::Bytes,
    /// Where the next stream's section starts in the file.
    at: usize,
    log_id: [u8; 16],
    path: Arc<Path>,
}

/// One segment of the table; `image` is the whole image, whose tables the
/// cursor reads, so that the seek points stay in it.
fn decode_segment(cursor: &mut Cursor<'_>, image: &bytes::Bytes) -> Result<ImageSegment, ImageDefect> {
    let header: [u8; SEGMENT_HEADER_BYTES] = cursor.take(SEGMENT_HEADER_BYTES)?.try_into().expect("a header");
    let flags = cursor.u32()?;
    let frames = cursor.u32()?;
    let end_offset = cursor.u64()?;
    let last_frame_offset = cursor.u64()?;
    let last_frame_crc = cursor.u32()?;
    let live_bytes = cursor.u64()?;
    let max_timestamp_ms = cursor.u64()?;
    let checkpoints = cursor.u32()?;
    let batch_frames = cursor.u32()?;
    if end_offset > u64::from(u32::MAX) || end_offset < SEGMENT_HEADER_BYTES as u64 {
        return Err(ImageDefect::Malformed("a segment's end"));
    }
    let end_offset = end_offset as usize;
    let has_last = flags & SEGMENT_FLAG_HAS_LAST_FRAME != 0;
    if has_last && last_frame_offset as usize >= end_offset {
        return Err(ImageDefect::Malformed("a segment's last frame"));
    }
    let compacted = flags & SEGMENT_FLAG_COMPACTED != 0;
    let first_lsn = crate::segment::SegmentHeader::decode(&header)
        .map_err(|_| ImageDefect::Malformed("a segment's header"))?
        .first_lsn;
    // Every 32nd frame's position, 129 k of them at 1 GiB: checked in one
    // pass over the table and left there (`SeekPoints::Mapped`), not
    // copied: decoding them into memory was three fifths of open's work.
    let checkpoint_count = cursor.count(u64::from(checkpoints), SEEK_POINT_BYTES)?;
    let points_at = IMAGE_HEADER_BYTES + cursor.at;
    let points = cursor.take(checkpoint_count * SEEK_POINT_BYTES)?;
    let last = has_last.then_some(last_frame_offset);
    match seek_points_in_order(points, frames, first_lsn, compacted, end_offset, last) {
        SeekPointsFound::InOrder => {}
        SeekPointsFound::PastEnd => return Err(ImageDefect::Malformed("a checkpoint past a segment's end")),
        SeekPointsFound::OutOfOrder => return Err(ImageDefect::Malformed("seek points out of order")),
    }
    let checkpoints = crate::index::SeekPoints::mapped(image.slice(points_at..points_at + points.len()));
    let batch_count = cursor.count(u64::from(batch_frames), BATCH_FRAME_BYTES)?;
    let mut outside = false;
    let batch_frames: Vec<(u32, u32)> = cursor
        .take(batch_count * BATCH_FRAME_BYTES)?
        .chunks_exact(BATCH_FRAME_BYTES)
        .map(|frame| {
            let (start, end) = frame.split_at(4);
            let start = u32::from_le_bytes(start.try_into().expect("four bytes"));
            let end = u32::from_le_bytes(end.try_into().expect("four bytes"));
            outside |= start >= end || end as usize > end_offset;
            (start, end)
        })
        .collect();
    if outside {
        return Err(ImageDefect::Malformed("a batch frame past a segment's end"));
    }
    if !batch_frames_in_order(&batch_frames, frames) {
        return Err(ImageDefect::Malformed("batch frames out of order"));
    }
    let entry = EntryFields {
        end_offset,
        checkpoints,
        frames,
        last_frame_offset: has_last.then_some(last_frame_offset as usize),
        batch_frames,
        live_bytes,
        max_timestamp_ms,
    };
    Ok(ImageSegment { header, compacted, last_frame_crc, entry })
}

/// What the check of a segment's seek points found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SeekPointsFound {
    InOrder,
    /// Points in order, the last at or past the end of the segment's
    /// covered frames.
    PastEnd,
    /// Points a scan would not have recorded.
    OutOfOrder,
}

fn seek_point_at(points: &[u8], i: usize) -> (u64, u32) {
    let item = &points[i * SEEK_POINT_BYTES..][..SEEK_POINT_BYTES];
    let (lsn, offset) = item.split_at(8);
    (
        u64::from_le_bytes(lsn.try_into().expect("eight bytes")),
        u32::from_le_bytes(offset.try_into().expect("four bytes")),
    )
}

/// Whether a segment's seek points (`points`, [`SEEK_POINT_BYTES`] each) are
/// those a scan of its `frames` would record (segments-format.md, 11.1):
/// one per [`CHECKPOINT_FRAMES`] frames from the first, in strictly
/// increasing LSN and offset, the first at the segment's first frame
/// (after its header: right after it, or at the next multiple of 512 for a
/// clean-close marker; at the segment's first LSN unless compaction left a
/// gap there), none past the last frame nor the covered end. A table that
/// says otherwise was written wrong, whatever its checksum says: a read by
/// LSN would walk from a point that is no frame's, so open scans. One pass,
/// each pair's comparisons folded into flags rather than a branch each.
fn seek_points_in_order(
    points: &[u8],
    frames: u32,
    first_lsn: Lsn,
    compacted: bool,
    end_offset: usize,
    last_frame_offset: Option<u64>,
) -> SeekPointsFound {
    let count = points.len() / SEEK_POINT_BYTES;
    if count == 0 {
        return if frames == 0 { SeekPointsFound::InOrder } else { SeekPointsFound::OutOfOrder };
    }
    let (first_point_lsn, first_offset) = seek_point_at(points, 0);
    let (mut previous_lsn, mut previous_offset) = (first_point_lsn, first_offset);
    let mut in_order = true;
    let (items, _) = points.as_chunks::<SEEK_POINT_BYTES>();
    for item in &items[1..] {
        let (lsn, offset) = item.split_at(8);
        let lsn = u64::from_le_bytes(lsn.try_into().expect("eight bytes"));
        let offset = u32::from_le_bytes(offset.try_into().expect("four bytes"));
        in_order &= (lsn > previous_lsn) & (offset > previous_offset);
        (previous_lsn, previous_offset) = (lsn, offset);
    }
    // Offsets in order put the last point furthest: no other can be past
    // the end without breaking the order.
    if in_order && previous_offset as usize >= end_offset {
        return SeekPointsFound::PastEnd;
    }
    let first_right = first_offset as usize >= SEGMENT_HEADER_BYTES
        && (first_point_lsn == first_lsn.0 || (compacted && first_point_lsn > first_lsn.0));
    let last_right = last_frame_offset.is_some_and(|last| u64::from(previous_offset) <= last);
    if in_order && first_right && last_right && count == frames.div_ceil(CHECKPOINT_FRAMES) as usize {
        SeekPointsFound::InOrder
    } else {
        SeekPointsFound::OutOfOrder
    }
}

/// Whether a segment's batch frames are in file order, apart, after the
/// header and no more than its frames: `(start, end)` ranges a scan records.
fn batch_frames_in_order(ranges: &[(u32, u32)], frames: u32) -> bool {
    ranges.len() <= frames as usize
        && ranges.first().is_none_or(|&(start, _)| start as usize >= SEGMENT_HEADER_BYTES)
        && ranges.windows(2).all(|pair| pair[0].1 <= pair[1].0)
}

/// One stream of the directory, and its section from `sections`.
fn decode_stream(
    cursor: &mut Cursor<'_>,
    segments: &[ImageSegment],
    sections: &mut Sections<'_>,
) -> Result<(Box<[u8]>, StreamState), ImageDefect> {
    let stream_bytes = cursor.u16()?;
    let snapshots = cursor.u32()?;
    let entries = cursor.u64()?;
    let start = cursor.u64()?;
    let since = Lsn(cursor.u64()?);
    let snapshots_before = Lsn(cursor.u64()?);
    let section_crc = cursor.u32()?;
    if !(1..=crate::frame::STREAM_ID_BYTES_MAX as u16).contains(&stream_bytes) {
        return Err(ImageDefect::Malformed("a stream id's length"));
    }
    let id: Box<[u8]> = cursor.take(usize::from(stream_bytes))?.into();
    let check = |loc: RecordLoc| -> Result<RecordLoc, ImageDefect> {
        match segments.get(loc.segment()) {
            Some(segment) if loc.offset() < segment.entry.end_offset => Ok(loc),
            _ => Err(ImageDefect::Malformed("a record position outside the covered segments")),
        }
    };
    let snapshot_count = cursor.count(u64::from(snapshots), SNAPSHOT_BYTES)?;
    let mut snapshot_locs: Vec<SnapshotLoc> = Vec::with_capacity(snapshot_count);
    for _ in 0..snapshot_count {
        let seq = StreamSeq(cursor.u64()?);
        let loc = check(RecordLoc(cursor.u64()?))?;
        let lsn = Lsn(cursor.u64()?);
        let image_crc = cursor.u32()?;
        if snapshot_locs.last().is_some_and(|last| last.lsn >= lsn) {
            return Err(ImageDefect::Malformed("snapshots out of lsn order"));
        }
        snapshot_locs.push(SnapshotLoc { seq, loc, lsn, image_crc });
    }
    if start.checked_add(entries).is_none() {
        return Err(ImageDefect::Malformed("a stream's sequences overflow"));
    }
    let left = (sections.image.len() - sections.at) as u64;
    if entries.saturating_mul(ENTRY_BYTES as u64) > left {
        return Err(ImageDefect::Malformed("a stream's section runs past the end of the image"));
    }
    let section_at = sections.at;
    sections.at += entries as usize * ENTRY_BYTES;
    let items = sections.image.slice(section_at..sections.at);
    let image = (entries > 0).then(|| {
        Box::new(StreamSection {
            first_seq: start,
            items: items.clone(),
            crc: section_crc,
            log_id: sections.log_id,
            path: sections.path.clone(),
            offset: section_at as u64,
            checked: AtomicU8::new(SECTION_UNCHECKED),
            walked: OnceLock::new(),
            verified: OnceLock::new(),
        })
    });
    let state =
        StreamState { start, entries: Locs::mapped(items), snapshots: snapshot_locs, since, snapshots_before, image };
    Ok((id, state))
}

/// The image in `dir`: `None` if there is none.
///
/// # Errors
/// [`Error::Io`] if it exists but cannot be read.
pub(crate) fn read(fs: &dyn FileSystem, dir: &Path) -> Result<Option<bytes::Bytes>> {
    let path = dir.join(IMAGE_FILE_NAME);
    let file = match fs.open(&path, false) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io("open", &path, error)),
    };
    let map = file.map().map_err(|error| Error::io("mmap", &path, error))?;
    Ok(Some(map.slice(0, map.len())))
}

/// Writes `image` atomically: under [`IMAGE_TEMP_FILE_NAME`], fdatasync,
/// renamed over [`IMAGE_FILE_NAME`], directory synced.
///
/// # Errors
/// [`Error::Io`] or [`Error::DiskFull`]; the previous image (if any) stays.
pub(crate) fn write(fs: &dyn FileSystem, dir: &Path, image: &[u8]) -> Result<()> {
    let temp = dir.join(IMAGE_TEMP_FILE_NAME);
    let path = dir.join(IMAGE_FILE_NAME);
    let _ = fs.remove(&temp);
    let written = (|| {
        let file: Arc<dyn File> = fs.create(&temp).map_err(|error| Error::io_or_full("create", &temp, error))?;
        file.write_at(image, 0).map_err(|error| Error::io_or_full("write", &temp, error))?;
        file.sync_data().map_err(|error| Error::io_or_full("fdatasync", &temp, error))?;
        fs.rename(&temp, &path).map_err(|error| Error::io_or_full("rename", &path, error))?;
        fs.sync_dir(dir).map_err(|error| Error::io_or_full("fsync directory", dir, error))
    })();
    if written.is_err() {
        let _ = fs.remove(&temp);
    }
    written
}

/// Deletes the image and any temporary, and syncs the directory if there
/// was one: before anything rewrites bytes an image may cover (salvage),
/// and when an open finds it unusable.
///
/// # Errors
/// [`Error::Io`].
pub(crate) fn remove(fs: &dyn FileSystem, dir: &Path, names: &[String]) -> Result<bool> {
    let mut removed = false;
    for name in [IMAGE_FILE_NAME, IMAGE_TEMP_FILE_NAME] {
        if names.iter().any(|n| n == name) {
            let path = dir.join(name);
            match fs.remove(&path) {
                Ok(()) => removed = true,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(Error::io("remove", &path, error)),
            }
        }
    }
    if removed {
        fs.sync_dir(dir).map_err(|error| Error::io("fsync directory", dir, error))?;
    }
    Ok(removed)
}

/// How much of the log an image written now covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coverage {
    /// The sealed segments: every ordinary segment before the newest one the
    /// state file records. Wholly durable, written beside a live writer.
    Sealed,
    /// Every segment: at a clean close, once the writer wrote its last byte.
    Whole,
}

/// Writes a new image of `dir`'s log: a read-only recovery of what
/// `coverage` says (from the current image and the frames after it), then
/// [`write`]. Writes nothing if that recovery found anything but a whole,
/// clean prefix, or if the current image already covers as much.
///
/// # Errors
/// [`Error::Io`] and [`Error::DiskFull`] from writing it; never poisons.
pub(crate) fn refresh(
    fs: &dyn FileSystem,
    dir: &Path,
    coverage: Coverage,
    sections: SectionsKnown,
) -> Result<Option<Lsn>> {
    if let crate::state::StateRead::Found { state, .. } = crate::state::read_state(fs, dir)?
        && let Some(current) = read(fs, dir)?
        && let Ok(header) = decode_header(&current)
        && header.check_against(&state).is_ok()
        && let Ok(decoded) = decode(&current, dir)
        && match sections {
            // Every section passes its checksum (a whole pass over the
            // image), so that a damaged one is not loaded again.
            SectionsKnown::CheckAll => decoded.streams.values().all(StreamState::image_intact),
            SectionsKnown::NoneFoundDamaged => true,
            SectionsKnown::SomeFoundDamaged | SectionsKnown::ImageFoundWrong => false,
        }
        && covered_segments_unchanged(fs, dir, &decoded, header.compaction_generation)
    {
        // The current image reaches as far already: the newest segment
        // (sealed), or the end a clean close recorded (a reopen that wrote
        // nothing, whose close wrote no second marker).
        let reach = match coverage {
            Coverage::Sealed => state.newest_segment_lsn,
            Coverage::Whole if state.clean_close => state.durable_end_lsn,
            Coverage::Whole => Lsn(u64::MAX),
        };
        if header.next_lsn >= reach {
            return Ok(None);
        }
    }
    // Seek points are carried over from the image a recovery loads: a wrong
    // one is replaced only by a scan's.
    let recovered = if sections == SectionsKnown::ImageFoundWrong {
        crate::recovery::recover_for_image_with(fs, dir, coverage, crate::recovery::ImagePolicy::Ignore)?
    } else {
        crate::recovery::recover_for_image(fs, dir, coverage)?
    };
    let Some((index, state)) = recovered else {
        return Ok(None);
    };
    let image = match encode(&index, &state, fs.now_ms()) {
        Ok(image) => image,
        // A record checksum cannot be carried over (the frames under a
        // damaged stream section are damaged too, or disagree with it): an
        // image from a full scan, if that finds a clean log; else none.
        Err(_) => {
            let Some((index, state)) =
                crate::recovery::recover_for_image_with(fs, dir, coverage, crate::recovery::ImagePolicy::Ignore)?
            else {
                return Ok(None);
            };
            encode(&index, &state, fs.now_ms())?
        }
    };
    write(fs, dir, &image)?;
    Ok(Some(index.next_lsn))
}

/// Whether every segment `image` covers is still on disk with the header
/// the image recorded. A rollover of a log whose newest segment holds no
/// frame renames the new segment over it (the same first LSN); if that
/// append then fails (its directory sync), the log reaches no further, yet
/// the image covers a file that was replaced and the next open would refuse
/// it: such an image is not kept. Reads each covered segment's 64 bytes.
fn covered_segments_unchanged(fs: &dyn FileSystem, dir: &Path, image: &DecodedImage, generation: u64) -> bool {
    image.segments.iter().all(|covered| {
        let Ok(header) = crate::segment::SegmentHeader::decode(&covered.header) else { return false };
        let name = if covered.compacted {
            crate::segment::compacted_file_name(header.first_lsn, generation)
        } else {
            crate::segment::segment_file_name(header.first_lsn)
        };
        let mut on_disk = [0u8; SEGMENT_HEADER_BYTES];
        fs.open(&dir.join(name), false).is_ok_and(|file| file.read_at(&mut on_disk, 0).is_ok())
            && on_disk == covered.header
    })
}

/// What a refresh knows of the current image's stream sections, to decide
/// whether an image that reaches far enough must still be replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SectionsKnown {
    /// Nothing: check every one (a whole pass over the image).
    CheckAll,
    /// The open loaded the image and no read in this process found a damaged
    /// section: one never read is checked when the next open's first read of
    /// its stream is (and that session's close replaces the image). A close
    /// of a 1 GiB log no longer hashes its 48 MB image.
    NoneFoundDamaged,
    /// A read found a damaged section: replace the image.
    SomeFoundDamaged,
    /// A read found a seek point at no frame of its LSN: replace the image
    /// with one from a full scan.
    ImageFoundWrong,
}

/// The background image writer: refreshes the sealed prefix's image after
/// each compaction, and after rollovers once they have sealed at least a
/// full segment's worth of bytes (`Options::segment_bytes`) since the last
/// one, off the append path; stopped (and waited for) at close, which
/// writes the last one. A young log's first segments are small (1 MiB,
/// then doubling): rewriting the whole image as each of them seals would
/// cost more than the scan it saves an open.
pub(crate) struct ImageWriter {
    state: Mutex<ImageWriterState>,
    wake: Condvar,
    /// Held while an image is built and written: one at a time.
    writing: Mutex<()>,
}

#[derive(Default)]
struct ImageWriterState {
    poked: bool,
    stopped: bool,
    /// Bytes of the segments sealed since the last poke.
    sealed_bytes: u64,
}

impl ImageWriter {
    pub(crate) fn new() -> ImageWriter {
        ImageWriter { state: Mutex::new(ImageWriterState::default()), wake: Condvar::new(), writing: Mutex::new(()) }
    }

    /// Asks for a new image of the sealed prefix (a compaction committed).
    pub(crate) fn poke(&self) {
        self.state.lock().poked = true;
        self.wake.notify_all();
    }

    /// A segment of `bytes` was sealed: asks for a new image once the
    /// segments sealed since the last request add up to `every_bytes`.
    pub(crate) fn sealed(&self, bytes: u64, every_bytes: u64) {
        let mut state = self.state.lock();
        state.sealed_bytes = state.sealed_bytes.saturating_add(bytes);
        if state.sealed_bytes >= every_bytes {
            state.sealed_bytes = 0;
            state.poked = true;
            self.wake.notify_all();
        }
    }

    /// Stops the background writer; returns once no image is being written.
    pub(crate) fn stop(&self) {
        self.state.lock().stopped = true;
        self.wake.notify_all();
        drop(self.writing.lock());
    }

    /// Writes an image now, unless stopped; one at a time. A failure is not
    /// the log's: it is returned to whoever asked, and the next open scans
    /// more.
    pub(crate) fn write_now(
        &self,
        fs: &dyn FileSystem,
        dir: &Path,
        coverage: Coverage,
        sections: SectionsKnown,
    ) -> Result<Option<Lsn>> {
        let _one_at_a_time = self.writing.lock();
        if coverage == Coverage::Sealed && self.state.lock().stopped {
            return Ok(None);
        }
        refresh(fs, dir, coverage, sections)
    }

    /// The thread's loop: an image of the sealed prefix after every poke.
    pub(crate) fn run(&self, fs: &dyn FileSystem, dir: &Path) {
        loop {
            {
                let mut state = self.state.lock();
                while !state.stopped && !state.poked {
                    self.wake.wait(&mut state);
                }
                if state.stopped {
                    return;
                }
                state.poked = false;
            }
            // Not user data: a failure leaves the previous image, and the
            // next open scans a little more.
            let _ = self.write_now(fs, dir, Coverage::Sealed, SectionsKnown::CheckAll);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A section's checksum goes on from the loaded image's over the
    /// entries after it: the checksum of the whole.
    #[test]
    fn a_checksum_continued_over_more_bytes_is_the_checksum_of_the_whole() {
        let log_id = [7u8; 16];
        let (first, more) = (b"twelve bytes".repeat(5), b"and more after them".to_vec());
        let whole: Vec<u8> = first.iter().chain(&more).copied().collect();
        assert_eq!(crc_continued(crc(&log_id, &first), &more), crc(&log_id, &whole));
        assert_eq!(crc_continued(crc(&log_id, &first), &[]), crc(&log_id, &first));
    }

    /// A young log's first segments (1 MiB, then doubling) add up before
    /// the background writer rewrites the image; full-size segments ask at
    /// every rollover; a compaction asks at once.
    #[test]
    fn the_background_writer_is_asked_once_a_segment_s_worth_has_sealed() {
        let writer = ImageWriter::new();
        let asked = || std::mem::take(&mut writer.state.lock().poked);
        let every = 64 << 20;
        for small in [1 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20, 32 << 20] {
            writer.sealed(small, every);
            assert!(!asked(), "{small} more bytes sealed, 63 MiB at most, of {every}");
        }
        writer.sealed(64 << 20, every);
        assert!(asked(), "127 MiB sealed");
        writer.sealed(every, every);
        assert!(asked(), "a full-size segment");
        writer.sealed(1 << 20, every);
        assert!(!asked(), "the count starts again after each request");
        writer.poke();
        assert!(asked(), "a compaction");
    }
}
