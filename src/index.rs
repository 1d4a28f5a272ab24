//! The in-memory index: where every live record is, per stream and per LSN.
//!
//! Per stream the index keeps the position of each live entry (8 bytes: a
//! segment number and an offset), its latest snapshot, and nothing else: the
//! next sequence is the number of live entries. Per segment it keeps one LSN
//! checkpoint every [`CHECKPOINT_FRAMES`] frames, so reading by LSN walks at
//! most that many frames. The stream id is stored once, as the map's key.
//!
//! The index is rebuilt on open by scanning (see `recovery`) and updated by
//! the writer after each group is durable; readers only ever see what has
//! been acknowledged.

use std::collections::HashMap;

use bytes::Bytes;

use crate::error::{CorruptionKind, Error, Result};
use crate::frame::{
    FRAME_HEADER_BYTES, FrameKind, FrameView, OP_HEADER_BYTES, RecordKind, decode_frame_at, decode_op_header,
};
use crate::segment::Segment;
use crate::types::{Lsn, StreamSeq, display_stream};

/// Frames between two LSN checkpoints of a segment.
pub const CHECKPOINT_FRAMES: u32 = 32;

/// Where an operation's header is: a segment number and an offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordLoc(pub(crate) u64);

const _: () = assert!(std::mem::size_of::<RecordLoc>() == 8);

impl RecordLoc {
    pub(crate) fn new(segment: usize, offset: usize) -> RecordLoc {
        let segment = u32::try_from(segment).expect("fewer than 2^32 segments");
        let offset = u32::try_from(offset).expect("segments are at most 4 GiB");
        RecordLoc((u64::from(segment) << 32) | u64::from(offset))
    }

    pub(crate) fn segment(self) -> usize {
        (self.0 >> 32) as usize
    }

    pub(crate) fn offset(self) -> usize {
        (self.0 & u64::from(u32::MAX)) as usize
    }
}

/// A live snapshot: the last sequence it covers, where it is, and its LSN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SnapshotLoc {
    pub(crate) seq: StreamSeq,
    pub(crate) loc: RecordLoc,
    pub(crate) lsn: Lsn,
}

/// The positions of a stream's live entries, in sequence order: in memory,
/// or still in the persisted index image (`image.rs`) that open loaded, as
/// its array of little-endian `u64` positions. Open leaves a stream's
/// positions where the image has them (its checksum was checked over the
/// whole image), so that it costs nothing per record; the first change to
/// the stream copies them into memory.
#[derive(Clone)]
pub(crate) enum Locs {
    /// In memory.
    Owned(Vec<RecordLoc>),
    /// In the image's bytes: `ENTRY_BYTES` per position.
    Mapped(Bytes),
}

impl Default for Locs {
    fn default() -> Locs {
        Locs::Owned(Vec::new())
    }
}

const LOC_BYTES: usize = std::mem::size_of::<u64>();

fn mapped_loc(bytes: &[u8], i: usize) -> RecordLoc {
    RecordLoc(u64::from_le_bytes(bytes[i * LOC_BYTES..][..LOC_BYTES].try_into().expect("eight bytes")))
}

impl Locs {
    /// Positions held in `bytes`, `LOC_BYTES` each (the image's layout).
    pub(crate) fn mapped(bytes: Bytes) -> Locs {
        debug_assert!(bytes.len().is_multiple_of(LOC_BYTES));
        Locs::Mapped(bytes)
    }

    /// How many.
    pub(crate) fn len(&self) -> usize {
        match self {
            Locs::Owned(locs) => locs.len(),
            Locs::Mapped(bytes) => bytes.len() / LOC_BYTES,
        }
    }

    /// The `i`th; `None` past the end.
    pub(crate) fn get(&self, i: usize) -> Option<RecordLoc> {
        match self {
            Locs::Owned(locs) => locs.get(i).copied(),
            Locs::Mapped(bytes) => (i < bytes.len() / LOC_BYTES).then(|| mapped_loc(bytes, i)),
        }
    }

    /// Every position from the `skip`th on, in order.
    pub(crate) fn iter_from(&self, skip: usize) -> impl Iterator<Item = RecordLoc> + '_ {
        (skip.min(self.len())..self.len()).map(move |i| match self {
            Locs::Owned(locs) => locs[i],
            Locs::Mapped(bytes) => mapped_loc(bytes, i),
        })
    }

    /// Every position, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = RecordLoc> + '_ {
        self.iter_from(0)
    }

    /// The positions in memory, copied out of the image first if they are
    /// still there: what every change goes through.
    pub(crate) fn to_mut(&mut self) -> &mut Vec<RecordLoc> {
        if let Locs::Mapped(_) = self {
            *self = Locs::Owned(self.iter().collect());
        }
        match self {
            Locs::Owned(locs) => locs,
            Locs::Mapped(_) => unreachable!("copied into memory above"),
        }
    }

    /// Bytes of memory held for positions (none while they are in the image).
    pub(crate) fn capacity_bytes(&self) -> usize {
        match self {
            Locs::Owned(locs) => locs.capacity() * std::mem::size_of::<RecordLoc>(),
            Locs::Mapped(_) => 0,
        }
    }

    fn shrink_to_fit(&mut self) {
        if let Locs::Owned(locs) = self {
            locs.shrink_to_fit();
        }
    }
}

impl PartialEq for Locs {
    fn eq(&self, other: &Locs) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Locs {}

impl std::fmt::Debug for Locs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// What the index knows of one stream since its last clear.
#[derive(Debug, PartialEq, Eq)]
pub struct StreamState {
    /// The sequence of `entries[0]`: entries before it were pruned.
    pub(crate) start: u64,
    /// Live entries: `entries[i]` is sequence `start + i`.
    pub(crate) entries: Locs,
    /// Live snapshots, oldest first.
    pub(crate) snapshots: Vec<SnapshotLoc>,
    /// LSN of the stream's first record since its last clear: the stream's
    /// records below it are not live.
    pub(crate) since: Lsn,
    /// The stream's snapshots below this LSN are not live.
    pub(crate) snapshots_before: Lsn,
}

impl StreamState {
    fn new(since: Lsn, start: u64) -> StreamState {
        StreamState { start, entries: Locs::default(), snapshots: Vec::new(), since, snapshots_before: Lsn(0) }
    }

    /// The sequence the next entry gets.
    pub fn next_seq(&self) -> StreamSeq {
        StreamSeq(self.start + self.entries.len() as u64)
    }

    /// The first sequence still live: entries before it were pruned.
    pub fn start_seq(&self) -> StreamSeq {
        StreamSeq(self.start)
    }

    /// The last sequence the latest live snapshot covers: a later snapshot
    /// may not cover less.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))] // only outside the crate
    pub fn snapshot_seq(&self) -> Option<StreamSeq> {
        self.snapshots.last().map(|s| s.seq)
    }

    /// Live snapshots, oldest first: the last sequence each covers, and its LSN.
    pub fn snapshots(&self) -> impl DoubleEndedIterator<Item = (StreamSeq, Lsn)> + '_ {
        self.snapshots.iter().map(|s| (s.seq, s.lsn))
    }

    /// Live entries.
    pub fn live_entries(&self) -> usize {
        self.entries.len()
    }

    /// LSN of the stream's first record since its last clear.
    pub fn since(&self) -> Lsn {
        self.since
    }

    /// Whether this stream's operation `kind` at `seq` and `lsn` is live
    /// ([`Index::is_live`] for a stream already looked up).
    pub(crate) fn is_live(&self, kind: RecordKind, seq: StreamSeq, lsn: Lsn) -> bool {
        if lsn < self.since {
            return false;
        }
        match kind {
            RecordKind::Entry => seq.0 >= self.start && seq < self.next_seq(),
            RecordKind::Snapshot => self.snapshots.binary_search_by_key(&lsn, |s| s.lsn).is_ok(),
            RecordKind::Tombstone | RecordKind::Prune | RecordKind::Base => false,
        }
    }
}

/// The state of a stream after an operation, as both the writer's guards
/// and recovery's checks follow it: its next sequence and snapshot floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamCursor {
    /// The sequence the next entry gets.
    pub next: u64,
    /// The last sequence the latest live snapshot covers.
    pub snapshot_floor: Option<StreamSeq>,
    /// The LSN of the latest live snapshot.
    pub latest_snapshot: Option<Lsn>,
    /// Whether the stream has any state (a base needs none).
    pub exists: bool,
    /// The LSN of the stream's first record since its last clear: which
    /// incarnation of the stream this is.
    pub since: Lsn,
}

impl StreamCursor {
    /// A stream with no state.
    pub const EMPTY: StreamCursor =
        StreamCursor { next: 0, snapshot_floor: None, latest_snapshot: None, exists: false, since: Lsn(0) };

    /// The state after one operation at `lsn`, or what is wrong with it.
    /// `snapshots_before` is a prune's payload (ignored for other kinds).
    pub fn apply(
        self,
        kind: RecordKind,
        seq: StreamSeq,
        lsn: Lsn,
        snapshots_before: Lsn,
    ) -> Result<StreamCursor, String> {
        let next = self.next;
        match kind {
            RecordKind::Entry if seq.0 != next => Err(format!("entry at sequence {seq} where {next} was next")),
            RecordKind::Entry if !self.exists => Ok(StreamCursor { next: next + 1, exists: true, since: lsn, ..self }),
            RecordKind::Entry => Ok(StreamCursor { next: next + 1, ..self }),
            RecordKind::Snapshot if seq.0 >= next || self.snapshot_floor.is_some_and(|s| s > seq) => {
                Err(format!("snapshot through sequence {seq} out of range"))
            }
            RecordKind::Snapshot => {
                Ok(StreamCursor { snapshot_floor: Some(seq), latest_snapshot: Some(lsn), exists: true, ..self })
            }
            RecordKind::Tombstone if seq.0 != next => {
                Err(format!("tombstone after sequence {seq} where {next} was next"))
            }
            RecordKind::Tombstone => Ok(StreamCursor::EMPTY),
            RecordKind::Prune if seq.0 > next => Err(format!("prune before sequence {seq} where {next} was next")),
            // A prune that drops the latest snapshot drops every one.
            RecordKind::Prune if self.latest_snapshot.is_some_and(|latest| latest < snapshots_before) => {
                Ok(StreamCursor { snapshot_floor: None, latest_snapshot: None, ..self })
            }
            RecordKind::Prune => Ok(self),
            RecordKind::Base if self.exists => Err(format!("a stream base at sequence {seq} in a stream with history")),
            RecordKind::Base => Ok(StreamCursor { next: seq.0, exists: true, since: lsn, ..StreamCursor::EMPTY }),
        }
    }
}

/// A segment and what the index knows of it.
#[derive(Debug)]
pub struct SegmentEntry {
    /// The segment.
    pub segment: Segment,
    /// End of the acknowledged frames in it.
    pub end_offset: usize,
    /// `(lsn, offset)` of every [`CHECKPOINT_FRAMES`]th frame, from the first.
    pub(crate) checkpoints: Vec<(Lsn, u32)>,
    pub(crate) frames: u32,
    pub(crate) last_frame_offset: Option<usize>,
    /// `(start, end)` offsets of every batch frame, so that a batch
    /// operation's frame header (and timestamp) can be found.
    pub(crate) batch_frames: Vec<(u32, u32)>,
    /// Bytes of live entries and snapshots (operation headers, stream ids
    /// and payloads) in the segment.
    pub(crate) live_bytes: u64,
    /// The highest frame timestamp in the segment.
    pub(crate) max_timestamp_ms: u64,
    /// Whether every frame of the segment had its checksum checked by this
    /// process (scanned at open, or written here). A segment whose entry
    /// came from the persisted index image (`image.rs`) was not: a read of
    /// one of its records checks the checksum of the record's frame, once
    /// ([`CheckedFrames`]).
    pub(crate) frames_checked: bool,
    /// Of a segment whose frames were not checked: those a read checked since.
    pub(crate) checked_frames: CheckedFrames,
}

/// The frames of an image-covered segment whose checksum a read has
/// checked, `start → end`: each is checked once, as a scan at open would
/// have, and not again by every read of a record in it (a group frame
/// holds up to hundreds, and a run's rows sit in as many frames). At most
/// one entry per frame of the segment.
#[derive(Debug, Default)]
pub(crate) struct CheckedFrames(parking_lot::Mutex<HashMap<u32, u32, foldhash::fast::RandomState>>);

impl SegmentEntry {
    /// Where the segment's last frame starts, if it has any.
    pub fn last_frame_offset(&self) -> Option<usize> {
        self.last_frame_offset
    }

    /// Frames in the segment.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Bytes of live entries and snapshots in the segment.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Bytes of frames in the segment (its written length after the header).
    pub fn written_bytes(&self) -> u64 {
        self.end_offset.saturating_sub(crate::segment::SEGMENT_HEADER_BYTES) as u64
    }

    /// The highest frame timestamp in the segment, ms since the Unix epoch.
    pub fn max_timestamp_ms(&self) -> u64 {
        self.max_timestamp_ms
    }

    /// Where the frame holding the operation at `op_offset` starts.
    fn frame_start_of(&self, op_offset: usize) -> usize {
        let i = self.batch_frames.partition_point(|&(start, _)| (start as usize) < op_offset);
        match i.checked_sub(1).map(|i| self.batch_frames[i]) {
            Some((start, end)) if op_offset < end as usize => start as usize,
            _ => op_offset - FRAME_HEADER_BYTES,
        }
    }
}

/// One frame of a compacted segment, as compaction wrote it: enough to
/// index the segment without reading it back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WrittenFrame {
    /// Where the frame starts in the file.
    pub offset: usize,
    /// Its LSN.
    pub lsn: Lsn,
    /// Its time.
    pub timestamp_ms: u64,
    /// Its length.
    pub total_bytes: usize,
    /// Bytes of its operation, if it is an entry or a snapshot (else 0).
    pub live_bytes: u64,
}

impl SegmentEntry {
    /// A segment with no frame indexed yet, whose written data ends at `end_offset`.
    fn empty(segment: Segment, end_offset: usize) -> SegmentEntry {
        SegmentEntry {
            segment,
            end_offset,
            checkpoints: Vec::new(),
            frames: 0,
            last_frame_offset: None,
            batch_frames: Vec::new(),
            live_bytes: 0,
            max_timestamp_ms: 0,
            frames_checked: true,
            checked_frames: CheckedFrames::default(),
        }
    }

    /// The entry of a compacted segment compaction just wrote.
    pub(crate) fn compacted(segment: Segment, frames: &[WrittenFrame]) -> SegmentEntry {
        let mut entry = SegmentEntry::empty(segment, crate::segment::SEGMENT_HEADER_BYTES);
        for frame in frames {
            if entry.frames.is_multiple_of(CHECKPOINT_FRAMES) {
                entry.checkpoints.push((frame.lsn, u32::try_from(frame.offset).expect("segments are at most 4 GiB")));
            }
            entry.frames += 1;
            entry.last_frame_offset = Some(frame.offset);
            entry.end_offset = frame.offset + frame.total_bytes;
            entry.live_bytes += frame.live_bytes;
            entry.max_timestamp_ms = entry.max_timestamp_ms.max(frame.timestamp_ms);
        }
        entry
    }
}

/// One record as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its position in the log.
    pub lsn: Lsn,
    /// Its stream.
    pub stream: Bytes,
    /// Entry: its sequence. Snapshot: the last sequence it covers.
    /// Tombstone: the stream's next sequence before the clear.
    pub seq: StreamSeq,
    /// What it is.
    pub kind: RecordKind,
    /// When its frame was written, ms since the Unix epoch, by the log's
    /// clock (never earlier than the record before it).
    pub timestamp_ms: u64,
    /// The caller's bytes.
    pub payload: Bytes,
}

/// One record borrowed from the log's memory map, for
/// [`Log::visit_stream`](crate::Log::visit_stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Its position in the log.
    pub lsn: Lsn,
    /// Its stream.
    pub stream: &'a [u8],
    /// As [`Record::seq`].
    pub seq: StreamSeq,
    /// What it is.
    pub kind: RecordKind,
    /// As [`Record::timestamp_ms`].
    pub timestamp_ms: u64,
    /// The caller's bytes.
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    /// An owned copy.
    pub fn to_record(&self) -> Record {
        Record {
            lsn: self.lsn,
            stream: Bytes::copy_from_slice(self.stream),
            seq: self.seq,
            kind: self.kind,
            timestamp_ms: self.timestamp_ms,
            payload: Bytes::copy_from_slice(self.payload),
        }
    }
}

/// A stream as read: its latest snapshot and the entries after it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamRead {
    /// The latest snapshot, if any.
    pub snapshot: Option<Record>,
    /// Entries after the snapshot (all live entries if there is none), in order.
    pub entries: Vec<Record>,
    /// The sequence the stream's next entry gets, as of the same read.
    pub next_seq: StreamSeq,
}

/// The operation at `offset` of `bytes` (a segment, or its part from some
/// base), if it ends by `end` and has the stream and sequence the index
/// expects: its LSN, stream and payload.
#[inline]
fn op_at<'a>(
    bytes: &'a [u8],
    offset: usize,
    end: usize,
    stream: &[u8],
    seq: StreamSeq,
) -> Result<(Lsn, &'a [u8], &'a [u8]), &'static str> {
    let Some(head) = bytes.get(offset..offset + OP_HEADER_BYTES).filter(|_| offset + OP_HEADER_BYTES <= end) else {
        return Err("operation header past the end of the segment");
    };
    let header = decode_op_header(head.try_into().expect("sliced to the header length"));
    let stream_start = offset + OP_HEADER_BYTES;
    let payload_start = stream_start + header.stream_bytes;
    let payload_end = payload_start + header.payload_bytes;
    if payload_end > end || payload_end > bytes.len() {
        return Err("operation past the end of the segment");
    }
    let found = &bytes[stream_start..payload_start];
    if found != stream || header.seq != seq {
        return Err("stream or sequence differs from the index");
    }
    Ok((header.lsn, found, &bytes[payload_start..payload_end]))
}

/// Sizes of the index, for the memory figures in the docs and the benches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IndexStats {
    /// Streams with live entries or a snapshot.
    pub streams: usize,
    /// Live entries indexed.
    pub entries: u64,
    /// Bytes of entry positions allocated (capacity, not length).
    pub entry_bytes: usize,
    /// Bytes of stream ids stored.
    pub stream_id_bytes: usize,
    /// Bytes of per-stream state and map overhead, estimated.
    pub stream_overhead_bytes: usize,
    /// Bytes of LSN checkpoints.
    pub checkpoint_bytes: usize,
}

/// The index's streams by id. Every append looks its stream up here twice
/// (its guard, then its publication), so the hash is foldhash rather than
/// SipHash: about a fifth of the instructions on short ids. Its seed is
/// random per map, so colliding ids cannot be computed offline; one who
/// could recover the seed by timing lookups could slow them down, never
/// change what they find.
pub(crate) type StreamMap = HashMap<Box<[u8]>, StreamState, foldhash::fast::RandomState>;

/// Segments, streams and the visible end of the log.
#[derive(Debug, Default)]
pub struct Index {
    pub(crate) segments: Vec<SegmentEntry>,
    pub(crate) streams: StreamMap,
    pub(crate) next_lsn: Lsn,
    /// The `durable_lsn` of the last frame applied.
    pub(crate) last_durable_lsn: Lsn,
    /// Whether the last frame applied was a clean-close marker.
    pub(crate) ends_with_marker: bool,
    pub(crate) records: u64,
    /// Prunes and bases applied: the log uses retention records.
    pub(crate) retention_records: u64,
    /// The highest frame timestamp applied.
    pub(crate) last_timestamp_ms: u64,
    /// Log-wide retention dropped every record below this LSN.
    pub(crate) trimmed_before: Lsn,
}

/// Bytes a live record takes in a compacted segment: a frame of its own
/// (header and operation). The measure of live bytes: what compaction
/// would write for it.
pub(crate) fn op_bytes(stream: usize, payload: usize) -> u64 {
    (FRAME_HEADER_BYTES + OP_HEADER_BYTES + stream + payload) as u64
}

impl Index {
    /// An empty index whose first record will be at `first_lsn`.
    pub fn new(first_lsn: Lsn) -> Index {
        Index { next_lsn: first_lsn, last_durable_lsn: first_lsn, ..Index::default() }
    }

    /// The LSN the next record gets; everything below it is acknowledged.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// The oldest LSN the log still holds: below it, everything was
    /// reclaimed, or dropped by log-wide retention.
    pub fn oldest_lsn(&self) -> Lsn {
        let first = self.segments.first().map_or(self.next_lsn, |entry| entry.segment.header.first_lsn);
        first.max(self.trimmed_before)
    }

    /// Log-wide retention dropped every record below this LSN (0: none).
    pub fn trimmed_before(&self) -> Lsn {
        self.trimmed_before
    }

    /// The `durable_lsn` of the last frame applied: every LSN below it was
    /// durable when that frame was written.
    pub fn last_durable_lsn(&self) -> Lsn {
        self.last_durable_lsn
    }

    /// Records that log-wide retention dropped every record below `lsn`.
    pub(crate) fn trim(&mut self, lsn: Lsn) {
        self.trimmed_before = self.trimmed_before.max(lsn);
    }

    /// The highest frame timestamp in the log, ms since the Unix epoch.
    pub fn last_timestamp_ms(&self) -> u64 {
        self.last_timestamp_ms
    }

    /// Offset in the last segment from which frames may not be durable: the
    /// frames written after the last fdatasync the log recorded, and always
    /// the last frame itself, whose `durable_lsn` vouches only for what came
    /// before it (a clean-close marker whose fsync failed is visible but not
    /// durable). `None` if the last segment has no frames. Starts at an LSN
    /// checkpoint, so it may include a few frames that were durable.
    pub fn tail_since_last_sync(&self) -> Option<usize> {
        let entry = self.segments.last()?;
        let last_frame = entry.last_frame_offset?;
        let checkpoint = entry.checkpoints.partition_point(|&(lsn, _)| lsn <= self.last_durable_lsn);
        let from_checkpoint =
            checkpoint.checked_sub(1).map_or(crate::segment::SEGMENT_HEADER_BYTES, |i| entry.checkpoints[i].1 as usize);
        Some(from_checkpoint.min(last_frame))
    }

    /// Whether the log's last frame is a clean-close marker.
    pub fn ends_with_marker(&self) -> bool {
        self.ends_with_marker
    }

    /// Records (operations) in the log, live or not.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Prunes and bases in the log: if any, its state file must say that
    /// it uses retention records.
    pub fn retention_records(&self) -> u64 {
        self.retention_records
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> &[SegmentEntry] {
        &self.segments
    }

    /// The stream's state, if it has any.
    pub fn stream(&self, stream: &[u8]) -> Option<&StreamState> {
        self.streams.get(stream)
    }

    /// The stream's state as the guards and checks follow it.
    pub fn cursor(&self, stream: &[u8]) -> StreamCursor {
        self.streams.get(stream).map_or(StreamCursor::EMPTY, |state| StreamCursor {
            next: state.next_seq().0,
            snapshot_floor: state.snapshots.last().map(|s| s.seq),
            latest_snapshot: state.snapshots.last().map(|s| s.lsn),
            exists: true,
            since: state.since,
        })
    }

    /// Number of streams the index holds.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Every stream with its state, in no particular order.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))] // only outside the crate
    pub fn stream_states(&self) -> impl Iterator<Item = (&[u8], &StreamState)> {
        self.streams.iter().map(|(id, state)| (id.as_ref(), state))
    }

    /// The streams whose id starts with `prefix`, with their next sequence,
    /// in id order.
    pub fn streams_with_prefix(&self, prefix: &[u8]) -> Vec<(Bytes, StreamSeq)> {
        let mut streams: Vec<(Bytes, StreamSeq)> = self
            .streams
            .iter()
            .filter(|(id, _)| id.starts_with(prefix))
            .map(|(id, state)| (Bytes::copy_from_slice(id), state.next_seq()))
            .collect();
        streams.sort();
        streams
    }

    /// The segment holding the record at `loc`, checked to hold the
    /// position: a position read from the persisted image is checked here,
    /// where it is used, rather than all of them at open.
    fn entry(&self, loc: RecordLoc) -> Result<&SegmentEntry> {
        let first_op = crate::segment::SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES;
        match self.segments.get(loc.segment()) {
            Some(entry) if (first_op..entry.end_offset).contains(&loc.offset()) => Ok(entry),
            found => Err(Error::corruption(
                found.map_or(std::path::Path::new(crate::image::IMAGE_FILE_NAME), |entry| &entry.segment.path),
                loc.offset() as u64,
                CorruptionKind::IndexMismatch(format!("no record can be at position {:#x}", loc.0)),
            )),
        }
    }

    /// Adds a segment at the end; its frames follow with [`Index::apply_frame`].
    /// A segment that starts where the last one does replaces it: the last
    /// took no LSN (it holds no record, at most a clean-close marker), and
    /// the new file was renamed over it.
    pub fn push_segment(&mut self, segment: Segment, end_offset: usize) {
        if let Some(last) = self.segments.last()
            && last.segment.header.first_lsn == segment.header.first_lsn
            && !last.segment.compacted()
        {
            assert_eq!(self.next_lsn, segment.header.first_lsn, "only a segment that took no lsn is replaced");
            self.segments.pop();
        }
        if self.segments.is_empty() && !segment.compacted() {
            self.next_lsn = self.next_lsn.max(segment.header.first_lsn);
        }
        self.segments.push(SegmentEntry::empty(segment, end_offset));
    }

    /// Where the record at `loc` is: its segment's position and its offset.
    pub(crate) fn position_of(&self, loc: RecordLoc) -> (usize, usize) {
        (loc.segment(), loc.offset())
    }

    /// Where each live record is, by segment position and offset, for the
    /// segments before `end` (compaction's check that it keeps them all).
    pub(crate) fn live_locations_before(&self, end: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for state in self.streams.values() {
            let locs = state.entries.iter().chain(state.snapshots.iter().map(|s| s.loc));
            out.extend(locs.map(|loc| self.position_of(loc)).filter(|(segment, _)| *segment < end));
        }
        out
    }

    /// Replaces the oldest `inputs` segments with `outputs` (the commit of a
    /// compaction), moving every record that was in an input to where
    /// `moved` says it now is: `(input position, offset)` to `(output
    /// position, offset)`. The segments after the inputs keep their records.
    ///
    /// # Panics
    /// If a live record in an input has nowhere to go: compaction checks
    /// that before it commits.
    pub(crate) fn replace_prefix(
        &mut self,
        inputs: usize,
        outputs: Vec<SegmentEntry>,
        moved: impl Fn((usize, usize)) -> Option<(usize, usize)>,
    ) {
        let kept = outputs.len();
        // Where a record goes: `None` if it was in an input and is not in
        // the output (dropped by log-wide retention, below the trim).
        let relocate = |loc: RecordLoc| -> Option<RecordLoc> {
            let (segment, offset) = (loc.segment(), loc.offset());
            if segment < inputs {
                moved((segment, offset)).map(|(to, at)| RecordLoc::new(to, at))
            } else {
                Some(RecordLoc::new(segment - inputs + kept, offset))
            }
        };
        for state in self.streams.values_mut() {
            // Trimmed entries are the oldest: the stream now starts after them.
            let entries = state.entries.to_mut();
            let trimmed = entries.iter().take_while(|loc| relocate(**loc).is_none()).count();
            entries.drain(..trimmed);
            state.start += trimmed as u64;
            for loc in entries {
                *loc = relocate(*loc).expect("compaction keeps every live record after the trim");
            }
            state.snapshots.retain_mut(|s| match relocate(s.loc) {
                Some(loc) => {
                    s.loc = loc;
                    true
                }
                None => false,
            });
        }
        self.segments.splice(..inputs, outputs);
    }

    /// Ends a compacted segment: the next segment starts at `end`, the LSN
    /// after the range the compacted one covers.
    pub fn end_compacted(&mut self, end: Lsn) {
        assert!(end >= self.next_lsn, "a compacted segment ends after its frames");
        self.next_lsn = end;
    }

    /// Checks that a frame fits the streams it touches, without changing anything.
    /// Recovery reports a failure as corruption; the writer never builds such a frame.
    pub fn check_frame(&self, frame: &FrameView<'_>) -> Result<(), CorruptionKind> {
        // A batch may touch one stream several times, so follow its effects
        // in order; a frame of one operation needs no list (nothing allocated).
        let batch = frame.kind == FrameKind::Batch;
        let mut touched: Vec<(&[u8], StreamCursor)> = Vec::new();
        for op in frame.ops() {
            let position = touched.iter().position(|(stream, _)| *stream == op.stream);
            let cursor = match position {
                Some(i) => touched[i].1,
                None => self.cursor(op.stream),
            };
            let after = cursor
                .apply(op.kind, op.seq, op.lsn, prune_reach(&op))
                .map_err(|what| CorruptionKind::StreamInconsistent { stream: display_stream(op.stream), what })?;
            match position {
                Some(i) => touched[i].1 = after,
                None if batch => touched.push((op.stream, after)),
                None => {}
            }
        }
        Ok(())
    }

    /// Records a checked frame at `frame_offset` of the last segment, and
    /// moves the visible end past it. The frame must have passed
    /// [`Index::check_frame`] and follow the visible end.
    pub fn apply_frame(&mut self, frame_offset: usize, frame: &FrameView<'_>) {
        self.place_frame(frame_offset, frame);
        let position = self.segments.len() - 1;
        let segment_id = position;
        let body_offset = frame_offset + FRAME_HEADER_BYTES;
        for op in frame.ops() {
            let loc = RecordLoc::new(segment_id, body_offset + op.offset_in_body);
            let size = op_bytes(op.stream.len(), op.payload.len());
            match op.kind {
                RecordKind::Tombstone => {
                    if let Some(state) = self.streams.remove(op.stream) {
                        self.forget(state.entries.iter().chain(state.snapshots.iter().map(|s| s.loc)));
                    }
                }
                RecordKind::Prune => {
                    self.retention_records += 1;
                    let Some(state) = self.streams.get_mut(op.stream) else { continue };
                    let before = op.seq.0.min(state.start + state.entries.len() as u64);
                    let mut dead = Vec::new();
                    if before > state.start {
                        dead.extend(state.entries.to_mut().drain(..(before - state.start) as usize));
                        state.start = before;
                    }
                    let snapshots_before = crate::frame::prune_snapshots_before(op.payload);
                    if snapshots_before > state.snapshots_before {
                        state.snapshots_before = snapshots_before;
                        let keep = state.snapshots.partition_point(|s| s.lsn < snapshots_before);
                        dead.extend(state.snapshots.drain(..keep).map(|s| s.loc));
                    }
                    self.forget(dead.into_iter());
                }
                RecordKind::Base => {
                    self.retention_records += 1;
                    // Counted live, as compaction counts it when it writes one.
                    self.segments[position].live_bytes += size;
                    self.streams.insert(Box::from(op.stream), StreamState::new(op.lsn, op.seq.0));
                }
                RecordKind::Entry | RecordKind::Snapshot => {
                    self.segments[position].live_bytes += size;
                    let state = match self.streams.get_mut(op.stream) {
                        Some(state) => state,
                        None => self.streams.entry(Box::from(op.stream)).or_insert_with(|| StreamState::new(op.lsn, 0)),
                    };
                    if op.kind == RecordKind::Snapshot {
                        state.snapshots.push(SnapshotLoc { seq: op.seq, loc, lsn: op.lsn });
                    } else {
                        debug_assert_eq!(op.seq, state.next_seq());
                        state.entries.to_mut().push(loc);
                    }
                }
            }
        }
    }

    /// Takes records that stopped being live off their segments' live bytes.
    fn forget(&mut self, locs: impl Iterator<Item = RecordLoc>) {
        for loc in locs {
            // A position that names no segment (from a damaged image whose
            // checksum still held) counts nothing: reads report it.
            let Some(entry) = self.segments.get_mut(loc.segment()) else { continue };
            if loc.offset().saturating_add(OP_HEADER_BYTES) > entry.end_offset {
                continue;
            }
            let size = op_size_at(entry, loc.offset());
            entry.live_bytes = entry.live_bytes.saturating_sub(size);
        }
    }

    /// Records where a frame is and moves the visible end past it, leaving
    /// the streams alone: [`Index::apply_frame`] without the stream updates.
    /// The read-only verifier uses it alone after corruption, when the
    /// streams' history before the damage is unknown.
    pub fn place_frame(&mut self, frame_offset: usize, frame: &FrameView<'_>) {
        let entry = self.segments.last_mut().expect("a segment to apply into");
        if entry.segment.compacted() {
            assert!(frame.meta.lsn >= self.next_lsn, "frames are applied in lsn order");
        } else {
            assert_eq!(frame.meta.lsn, self.next_lsn, "frames are applied in lsn order");
        }
        assert_eq!(frame_offset, entry.end_offset, "frames are applied in file order");
        let offset = u32::try_from(frame_offset).expect("segments are at most 4 GiB");
        if entry.frames.is_multiple_of(CHECKPOINT_FRAMES) {
            entry.checkpoints.push((frame.meta.lsn, offset));
        }
        if frame.kind == FrameKind::Batch {
            let end = u32::try_from(frame_offset + frame.total_bytes()).expect("segments are at most 4 GiB");
            entry.batch_frames.push((offset, end));
        }
        entry.frames += 1;
        entry.last_frame_offset = Some(frame_offset);
        entry.end_offset = frame_offset + frame.total_bytes();
        entry.max_timestamp_ms = entry.max_timestamp_ms.max(frame.meta.timestamp_ms);
        if frame.kind == FrameKind::Gap && entry.segment.compacted() {
            // A compacted segment's closing gap: as lasting as the segment.
            entry.live_bytes += frame.total_bytes() as u64;
        }
        self.records += u64::from(frame.lsn_count);
        self.next_lsn = frame.next_lsn();
        self.last_durable_lsn = frame.meta.durable_lsn;
        self.ends_with_marker = frame.kind == FrameKind::Marker;
        self.last_timestamp_ms = self.last_timestamp_ms.max(frame.meta.timestamp_ms);
    }

    /// Moves the end of the last segment over the zero padding before a
    /// clean-close marker at `to` (see `frame::marker_offset`).
    pub fn skip_padding(&mut self, to: usize) {
        let entry = self.segments.last_mut().expect("a segment to pad");
        assert!(to >= entry.end_offset && to - entry.end_offset < crate::frame::MARKER_ALIGN_BYTES);
        entry.end_offset = to;
    }

    /// Shrinks allocations after a rebuild, so memory matches what is held.
    pub fn shrink_to_fit(&mut self) {
        for state in self.streams.values_mut() {
            state.entries.shrink_to_fit();
            state.snapshots.shrink_to_fit();
        }
        self.streams.shrink_to_fit();
    }

    /// Sizes of the index.
    pub fn stats(&self) -> IndexStats {
        let mut stats = IndexStats { streams: self.streams.len(), ..IndexStats::default() };
        for (stream, state) in &self.streams {
            stats.entries += state.entries.len() as u64;
            stats.entry_bytes +=
                state.entries.capacity_bytes() + state.snapshots.capacity() * std::mem::size_of::<SnapshotLoc>();
            stats.stream_id_bytes += stream.len();
        }
        let per_stream = std::mem::size_of::<(Box<[u8]>, StreamState)>() + 1;
        stats.stream_overhead_bytes = self.streams.capacity() * per_stream;
        stats.checkpoint_bytes = self
            .segments
            .iter()
            .map(|s| {
                s.checkpoints.capacity() * std::mem::size_of::<(Lsn, u32)>()
                    + s.batch_frames.capacity() * std::mem::size_of::<(u32, u32)>()
            })
            .sum();
        stats
    }

    /// How this index differs from `other`, one line per difference (empty
    /// when they are the same): every field but the open files and whether
    /// a segment's frames were checked. The crash simulator's oracle that an
    /// open from the persisted image and the tail equals a full scan.
    pub fn differences(&self, other: &Index) -> Vec<String> {
        let mut out = Vec::new();
        let scalars = |index: &Index| {
            (
                index.next_lsn,
                index.last_durable_lsn,
                index.ends_with_marker,
                index.records,
                index.retention_records,
                index.last_timestamp_ms,
                index.trimmed_before,
            )
        };
        if scalars(self) != scalars(other) {
            out.push(format!("(next lsn, last durable lsn, ends with marker, records, retention records, last time, trimmed) {:?} and {:?}", scalars(self), scalars(other)));
        }
        if self.segments.len() != other.segments.len() {
            out.push(format!("{} segments and {}", self.segments.len(), other.segments.len()));
        }
        for (position, (a, b)) in self.segments.iter().zip(&other.segments).enumerate() {
            let fields = |e: &SegmentEntry| {
                (
                    e.segment.header,
                    e.segment.compacted,
                    e.end_offset,
                    e.frames,
                    e.last_frame_offset,
                    e.live_bytes,
                    e.max_timestamp_ms,
                )
            };
            if fields(a) != fields(b) || a.checkpoints != b.checkpoints || a.batch_frames != b.batch_frames {
                out.push(format!("segment {position}: {:?} and {:?}", fields(a), fields(b)));
            }
        }
        if self.streams.len() != other.streams.len() {
            out.push(format!("{} streams and {}", self.streams.len(), other.streams.len()));
        }
        for (stream, state) in &self.streams {
            if other.streams.get(stream) != Some(state) {
                out.push(format!("stream {}: {state:?} and {:?}", display_stream(stream), other.streams.get(stream)));
            }
        }
        out
    }

    /// The latest live snapshot of a stream and the live entries after it.
    pub fn read_stream(&self, stream: &[u8]) -> Result<StreamRead> {
        let Some(state) = self.streams.get(stream) else {
            return Ok(StreamRead::default());
        };
        let snapshot = match state.snapshots.last() {
            Some(s) => Some(self.read_op(s.loc, RecordKind::Snapshot, stream, s.seq)?),
            None => None,
        };
        let from = snapshot.as_ref().map_or(state.start, |s| (s.seq.0 + 1).max(state.start));
        let entries = self.read_entries(stream, state, StreamSeq(from))?;
        Ok(StreamRead { snapshot, entries, next_seq: state.next_seq() })
    }

    /// Live entries of a stream from `from` on, snapshots aside.
    ///
    /// # Errors
    /// [`Error::Pruned`] if `from` is below the stream's first live sequence.
    pub fn read_stream_from(&self, stream: &[u8], from: StreamSeq) -> Result<Vec<Record>> {
        match self.streams.get(stream) {
            Some(state) if from.0 < state.start => {
                Err(Error::Pruned { stream: display_stream(stream), from, start: StreamSeq(state.start) })
            }
            Some(state) => self.read_entries(stream, state, from),
            None => Ok(Vec::new()),
        }
    }

    /// Up to `limit` live entries of a stream from `from` on, snapshots
    /// aside: [`Index::read_stream_from`] with a limit.
    ///
    /// # Errors
    /// As [`Index::read_stream_from`].
    pub fn read_stream_range(&self, stream: &[u8], from: StreamSeq, limit: usize) -> Result<Vec<Record>> {
        match self.streams.get(stream) {
            Some(state) if from.0 < state.start => {
                Err(Error::Pruned { stream: display_stream(stream), from, start: StreamSeq(state.start) })
            }
            Some(state) => self.read_entries_limited(stream, state, from, limit),
            None => Ok(Vec::new()),
        }
    }

    /// Up to `limit` live entries of a stream written after `after`, in
    /// order, snapshots aside. A stream's live entries have increasing
    /// LSNs, so the first one is found by a binary search that reads one
    /// operation header per step.
    ///
    /// # Errors
    /// [`Error::Corruption`] if a record no longer matches the index.
    pub fn read_stream_after(&self, stream: &[u8], after: Lsn, limit: usize) -> Result<Vec<Record>> {
        let Some(state) = self.streams.get(stream) else {
            return Ok(Vec::new());
        };
        let (mut low, mut high) = (0, state.entries.len());
        while low < high {
            let mid = low + (high - low) / 2;
            let seq = StreamSeq(state.start + mid as u64);
            let loc = state.entries.get(mid).expect("mid is below the length");
            if self.with_op(loc, RecordKind::Entry, stream, seq, |op| op.lsn)? <= after {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        self.read_entries_limited(stream, state, StreamSeq(state.start + low as u64), limit)
    }

    fn read_entries(&self, stream: &[u8], state: &StreamState, from: StreamSeq) -> Result<Vec<Record>> {
        self.read_entries_limited(stream, state, from, usize::MAX)
    }

    fn read_entries_limited(
        &self,
        stream: &[u8],
        state: &StreamState,
        from: StreamSeq,
        limit: usize,
    ) -> Result<Vec<Record>> {
        let skip = usize::try_from(from.0.saturating_sub(state.start)).unwrap_or(usize::MAX).min(state.entries.len());
        let take = (state.entries.len() - skip).min(limit);
        let mut records = Vec::with_capacity(take);
        for (i, loc) in state.entries.iter_from(skip).take(take).enumerate() {
            let seq = StreamSeq(state.start + (skip + i) as u64);
            records.push(self.read_op(loc, RecordKind::Entry, stream, seq)?);
        }
        Ok(records)
    }

    /// Reads the operation at `loc` and checks that it is the one the index
    /// expects there (paired with the checks made before it was written).
    fn read_op(&self, loc: RecordLoc, kind: RecordKind, stream: &[u8], seq: StreamSeq) -> Result<Record> {
        let entry = self.entry(loc)?;
        self.with_op(loc, kind, stream, seq, |op| {
            let stream_start = loc.offset() + OP_HEADER_BYTES;
            Record {
                lsn: op.lsn,
                stream: entry.segment.map.slice(stream_start, op.stream.len()),
                seq,
                kind,
                timestamp_ms: op.timestamp_ms,
                payload: entry.segment.map.slice(stream_start + op.stream.len(), op.payload.len()),
            }
        })
    }

    /// Calls `f` on the operation at `loc`, borrowed from the segment's map
    /// where it can lend its bytes, after checking that it is the one the
    /// index expects there.
    fn with_op<R>(
        &self,
        loc: RecordLoc,
        kind: RecordKind,
        stream: &[u8],
        seq: StreamSeq,
        f: impl FnOnce(RecordRef<'_>) -> R,
    ) -> Result<R> {
        let entry = self.entry(loc)?;
        let frame_start = entry.frame_start_of(loc.offset());
        let (offset, end) = (frame_start, entry.end_offset);
        let owned;
        let (bytes, base) = match entry.segment.map.as_slice() {
            Some(map) => (map, 0),
            None => {
                owned = entry.segment.map.slice(offset, end.saturating_sub(offset));
                (owned.as_ref(), offset)
            }
        };
        if !entry.frames_checked {
            check_frame_holding(entry, bytes, base, frame_start, loc.offset())?;
        }
        let timestamp_ms = bytes
            .get(frame_start - base + 24..frame_start - base + 32)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("eight bytes")));
        match op_at(bytes, loc.offset() - base, end - base, stream, seq) {
            Ok((lsn, stream, payload)) => Ok(f(RecordRef { lsn, stream, seq, kind, timestamp_ms, payload })),
            Err(what) => Err(Error::corruption(
                &entry.segment.path,
                loc.offset() as u64,
                CorruptionKind::IndexMismatch(what.to_owned()),
            )),
        }
    }

    /// Calls `f` on the stream's latest live snapshot, if any, then on each
    /// live entry after it, in order. Returns how many records `f` saw.
    pub fn visit_stream(&self, stream: &[u8], mut f: impl FnMut(RecordRef<'_>)) -> Result<usize> {
        let Some(state) = self.streams.get(stream) else {
            return Ok(0);
        };
        let mut seen = 0;
        let mut from = state.start;
        if let Some(s) = state.snapshots.last() {
            self.with_op(s.loc, RecordKind::Snapshot, stream, s.seq, &mut f)?;
            seen += 1;
            from = from.max(s.seq.0 + 1);
        }
        let skip = usize::try_from(from - state.start).unwrap_or(usize::MAX).min(state.entries.len());
        for (i, loc) in state.entries.iter_from(skip).enumerate() {
            let seq = StreamSeq(state.start + (skip + i) as u64);
            self.with_op(loc, RecordKind::Entry, stream, seq, &mut f)?;
            seen += 1;
        }
        Ok(seen)
    }

    /// The first live entry of `stream`, from its start, whose frame was
    /// written at or after `timestamp_ms`, or the stream's next sequence if
    /// there is none: every entry before it is older. A scan, not a binary
    /// search: a log written before the writer's clock was made
    /// non-decreasing may hold a newer entry before an older one, and an
    /// entry written at or after the time must never be pruned. It reads
    /// one frame header per entry it passes, which are the ones pruned.
    ///
    /// # Errors
    /// [`Error::Corruption`] if a record no longer matches the index.
    pub fn first_entry_at_or_after(&self, stream: &[u8], timestamp_ms: u64) -> Result<Option<StreamSeq>> {
        let Some(state) = self.streams.get(stream) else {
            return Ok(None);
        };
        for (i, loc) in state.entries.iter().enumerate() {
            let seq = StreamSeq(state.start + i as u64);
            if self.with_op(loc, RecordKind::Entry, stream, seq, |op| op.timestamp_ms)? >= timestamp_ms {
                return Ok(Some(seq));
            }
        }
        Ok(Some(state.next_seq()))
    }

    /// Whether an operation of the log is live: an entry or a snapshot that
    /// no clear, prune or compaction has removed. Retention records and
    /// tombstones are not: they say what is live, and compaction folds them.
    pub fn is_live(&self, kind: RecordKind, stream: &[u8], seq: StreamSeq, lsn: Lsn) -> bool {
        self.streams.get(stream).is_some_and(|state| state.is_live(kind, seq, lsn))
    }

    /// What the index knows of `stream`, if it has any state.
    pub(crate) fn stream_state(&self, stream: &[u8]) -> Option<&StreamState> {
        self.streams.get(stream)
    }

    /// The live record at `lsn`, if there is one.
    ///
    /// # Errors
    /// [`Error::Trimmed`] if `lsn` is below the oldest LSN the log holds.
    pub fn read_lsn(&self, lsn: Lsn) -> Result<Option<Record>> {
        let mut out = Vec::new();
        self.read_all(Lsn(lsn.0.saturating_sub(1)), 1, &mut out)?;
        Ok(out.pop().filter(|record| record.lsn == lsn))
    }

    /// Appends to `out` up to `limit` live records after `after`, in LSN order.
    ///
    /// # Errors
    /// [`Error::Trimmed`] if records after `after` were reclaimed: the log
    /// now starts past `after + 1`. `after` 0 means from the oldest record
    /// there is, and is never trimmed.
    pub fn read_all(&self, after: Lsn, limit: usize, out: &mut Vec<Record>) -> Result<()> {
        self.read_all_filtered(after, limit, true, out)
    }

    /// [`Index::read_all`] with retention records, tombstones and records
    /// that are no longer live too: every operation on disk. For the crash
    /// simulator and the inspection tools.
    pub fn read_all_on_disk(&self, after: Lsn, limit: usize, out: &mut Vec<Record>) -> Result<()> {
        self.read_all_filtered(after, limit, false, out)
    }

    fn read_all_filtered(&self, after: Lsn, limit: usize, live_only: bool, out: &mut Vec<Record>) -> Result<()> {
        let want = Lsn(after.0.saturating_add(1));
        let oldest = self.oldest_lsn();
        if after.0 > 0 && want < oldest {
            return Err(Error::Trimmed { after, oldest });
        }
        if limit == 0 || want >= self.next_lsn || self.segments.is_empty() {
            return Ok(());
        }
        let first = self.segments.partition_point(|s| s.segment.header.first_lsn <= want).saturating_sub(1);
        for entry in &self.segments[first..] {
            let checkpoint = entry.checkpoints.partition_point(|&(lsn, _)| lsn <= want).saturating_sub(1);
            let Some(&(lsn, offset)) = entry.checkpoints.get(checkpoint) else {
                continue;
            };
            let wanted = Wanted { from: want, limit, live_only };
            self.read_frames(entry, (lsn, offset as usize), &wanted, out)?;
            if out.len() >= limit {
                break;
            }
        }
        Ok(())
    }

    /// Reads `wanted` records of one segment into `out`, walking frames
    /// from `start`, an LSN checkpoint: `(lsn, offset)`.
    fn read_frames(
        &self,
        entry: &SegmentEntry,
        start: (Lsn, usize),
        wanted: &Wanted,
        out: &mut Vec<Record>,
    ) -> Result<()> {
        let Wanted { from: want, limit, live_only } = *wanted;
        let (mut lsn, mut offset) = start;
        // From the segment's start, so that offsets (and marker alignment) are absolute.
        let region = entry.segment.map.slice(0, entry.end_offset);
        let log_id = entry.segment.header.log_id;
        let compacted = entry.segment.compacted();
        while offset < entry.end_offset && out.len() < limit {
            let decoded = if compacted {
                crate::frame::decode_frame_anywhere(&region[offset..], &log_id)
                    .and_then(|frame| {
                        if frame.meta.lsn < lsn {
                            Err(crate::frame::FrameDefect::UnexpectedLsn { expected: lsn, found: frame.meta.lsn })
                        } else {
                            Ok(frame)
                        }
                    })
                    .map(|frame| (offset, frame))
            } else {
                decode_frame_at(&region, offset, &log_id, lsn)
            };
            let (at, frame) = decoded.map_err(|defect| {
                Error::corruption(&entry.segment.path, offset as u64, CorruptionKind::BadRecord(defect.describe()))
            })?;
            offset = at;
            let body_start = at + FRAME_HEADER_BYTES;
            for op in frame.ops().filter(|op| op.lsn >= want) {
                if out.len() >= limit {
                    break;
                }
                // The live view leaves out the log's own streams (named cursors).
                if live_only
                    && (!self.is_live(op.kind, op.stream, op.seq, op.lsn) || crate::cursors::is_reserved(op.stream))
                {
                    continue;
                }
                let stream_start = body_start + op.offset_in_body + OP_HEADER_BYTES;
                let payload_start = body_start + op.payload_offset_in_body;
                out.push(Record {
                    lsn: op.lsn,
                    stream: region.slice(stream_start..stream_start + op.stream.len()),
                    seq: op.seq,
                    kind: op.kind,
                    timestamp_ms: frame.meta.timestamp_ms,
                    payload: region.slice(payload_start..payload_start + op.payload.len()),
                });
            }
            lsn = frame.next_lsn();
            offset += frame.total_bytes();
        }
        Ok(())
    }

    /// Live entries and snapshots in each segment, in the order of
    /// [`Index::segments`]: what [`SegmentEntry::live_bytes`] counts the
    /// bytes of.
    pub fn live_records_per_segment(&self) -> Vec<u64> {
        let mut counts = vec![0u64; self.segments.len()];
        for state in self.streams.values() {
            for loc in state.entries.iter().chain(state.snapshots.iter().map(|s| s.loc)) {
                if let Some(count) = counts.get_mut(loc.segment()) {
                    *count += 1;
                }
            }
        }
        counts
    }
}

/// The LSN before which a prune drops snapshots; 0 for any other operation.
pub(crate) fn prune_reach(op: &crate::frame::OpView<'_>) -> Lsn {
    if op.kind == RecordKind::Prune { crate::frame::prune_snapshots_before(op.payload) } else { Lsn(0) }
}

/// What a read by LSN asks for.
#[derive(Clone, Copy)]
struct Wanted {
    /// The first LSN wanted.
    from: Lsn,
    /// How many records, at most.
    limit: usize,
    /// Live records only, or every operation on disk.
    live_only: bool,
}

/// Checks the checksum of the frame at `frame_start` of a segment whose
/// frames recovery did not read (its index came from the persisted image),
/// and that the frame holds the operation at `op_offset`: a flipped bit in
/// a record is reported as corruption, never returned. `bytes` is the
/// segment from offset `base`.
fn check_frame_holding(
    entry: &SegmentEntry,
    bytes: &[u8],
    base: usize,
    frame_start: usize,
    op_offset: usize,
) -> Result<()> {
    let end = entry.end_offset.min(bytes.len() + base);
    let known = u32::try_from(frame_start).ok().and_then(|start| entry.checked_frames.0.lock().get(&start).copied());
    let frame_end = match known {
        Some(frame_end) => frame_end as usize,
        None => {
            let checked = bytes
                .get(frame_start - base..end - base)
                .ok_or(crate::frame::FrameDefect::Truncated)
                .and_then(|frame| crate::frame::decode_frame_anywhere(frame, &entry.segment.header.log_id));
            let frame_end = match checked {
                Ok(frame) => frame_start + frame.total_bytes(),
                Err(defect) => {
                    return Err(Error::corruption(
                        &entry.segment.path,
                        frame_start as u64,
                        CorruptionKind::BadRecord(defect.describe()),
                    ));
                }
            };
            if let (Ok(start), Ok(end)) = (u32::try_from(frame_start), u32::try_from(frame_end)) {
                entry.checked_frames.0.lock().insert(start, end);
            }
            frame_end
        }
    };
    if op_offset < frame_end {
        Ok(())
    } else {
        Err(Error::corruption(
            &entry.segment.path,
            op_offset as u64,
            CorruptionKind::IndexMismatch("operation outside the frame the index names".to_owned()),
        ))
    }
}

/// Bytes of the operation whose header is at `offset` of the segment, as
/// counted in its live bytes; 0 if the map cannot say.
fn op_size_at(entry: &SegmentEntry, offset: usize) -> u64 {
    let head = entry.segment.map.slice(offset, OP_HEADER_BYTES);
    match <&[u8; OP_HEADER_BYTES]>::try_from(head.as_ref()) {
        Ok(head) => {
            let header = decode_op_header(head);
            op_bytes(header.stream_bytes, header.payload_bytes)
        }
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(fs: &crate::sim::fs::SimFs, first_lsn: u64, name: &str) -> Segment {
        use crate::fs::FileSystem;
        let path = std::path::PathBuf::from(format!("/index/{name}"));
        let file = fs.create(&path).unwrap();
        file.write_at(&[0; 4096], 0).unwrap();
        let header = crate::segment::SegmentHeader {
            version: crate::segment::FORMAT_VERSION,
            log_id: [1; 16],
            first_lsn: Lsn(first_lsn),
            segment_bytes: 4096,
            created_ms: 0,
        };
        Segment { header, path, map: file.map().unwrap(), file, compacted: false }
    }

    /// A segment that holds only a clean-close marker took no LSN, so the
    /// next segment starts at the same LSN and is renamed over it. The index
    /// asserted that the replaced segment held no frame at all, and the
    /// marker made the writer panic. Found by the fuzz corpus (`operations`)
    /// once segments began to grow from a small first one.
    #[test]
    fn a_segment_holding_only_a_marker_is_replaced_by_the_next_one() {
        let fs = crate::sim::fs::SimFs::new();
        let mut index = Index::new(Lsn(7));
        index.push_segment(segment(&fs, 7, "a"), crate::segment::SEGMENT_HEADER_BYTES);
        let mut marker = Vec::new();
        let meta = crate::frame::FrameMeta { lsn: Lsn(7), durable_lsn: Lsn(7), timestamp_ms: 0 };
        crate::frame::encode_frame(&mut marker, &[1; 16], FrameKind::Marker, meta, &[]);
        let frame = crate::frame::decode_frame(&marker, &[1; 16], Lsn(7)).unwrap();
        index.apply_frame(crate::segment::SEGMENT_HEADER_BYTES, &frame);
        index.push_segment(segment(&fs, 7, "b"), crate::segment::SEGMENT_HEADER_BYTES);
        assert_eq!(index.segments().len(), 1);
        assert_eq!(index.segments()[0].segment.path, std::path::PathBuf::from("/index/b"));
    }

    /// `check_frame` follows a batch's own effects on a stream in a list and
    /// skips the list for a frame of one operation: both must still refuse
    /// a frame whose checksum holds but whose sequence does not follow.
    #[test]
    fn check_frame_refuses_a_sequence_that_does_not_follow_in_one_operation_or_a_batch() {
        use crate::frame::{OpRef, decode_frame, encode_frame};
        let check = |kind: FrameKind, seqs: &[u64]| {
            let ops: Vec<OpRef<'_>> = (0..seqs.len())
                .map(|i| OpRef {
                    kind: RecordKind::Entry,
                    stream: b"s",
                    seq: StreamSeq(seqs[i]),
                    lsn: Lsn(1 + i as u64),
                    payload: b"",
                })
                .collect();
            let mut buf = Vec::new();
            let meta = crate::frame::FrameMeta { lsn: Lsn(1), durable_lsn: Lsn(1), timestamp_ms: 0 };
            encode_frame(&mut buf, &[1; 16], kind, meta, &ops);
            Index::new(Lsn(1)).check_frame(&decode_frame(&buf, &[1; 16], Lsn(1)).unwrap())
        };
        assert_eq!(check(FrameKind::Entry, &[0]), Ok(()));
        assert!(matches!(check(FrameKind::Entry, &[1]), Err(CorruptionKind::StreamInconsistent { .. })));
        assert_eq!(check(FrameKind::Batch, &[0]), Ok(()));
        assert_eq!(check(FrameKind::Batch, &[0, 1, 2]), Ok(()));
        assert!(matches!(check(FrameKind::Batch, &[0, 1, 1]), Err(CorruptionKind::StreamInconsistent { .. })));
        assert!(matches!(check(FrameKind::Batch, &[0, 0]), Err(CorruptionKind::StreamInconsistent { .. })));
    }

    #[test]
    fn record_loc_packs_segment_and_offset() {
        let loc = RecordLoc::new(70_000, 4_000_000_000);
        assert_eq!((loc.segment(), loc.offset()), (70_000, 4_000_000_000));
    }
}
