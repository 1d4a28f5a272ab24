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

use std::sync::atomic::{AtomicBool, Ordering};

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
#[derive(Clone, Copy, Debug)]
pub(crate) struct SnapshotLoc {
    pub(crate) seq: StreamSeq,
    pub(crate) loc: RecordLoc,
    pub(crate) lsn: Lsn,
    /// The record checksum the persisted image recorded for it
    /// (segments-format.md, 11.1): what a read checks it against while its
    /// frame was not checked by this process. 0 for a snapshot not from an
    /// image (scanned or written here): never used.
    pub(crate) image_crc: u32,
}

/// What the index says of a snapshot; the image's checksum of it is how a
/// read checks it, not part of what the index holds.
impl PartialEq for SnapshotLoc {
    fn eq(&self, other: &SnapshotLoc) -> bool {
        (self.seq, self.loc, self.lsn) == (other.seq, other.loc, other.lsn)
    }
}

impl Eq for SnapshotLoc {}

/// The positions of a stream's live entries, in sequence order: in memory,
/// or still in the stream's section of the persisted index image
/// (`image.rs`) that open loaded, as its array of little-endian `(u64
/// position, u32 record checksum)` items. Open leaves a stream's positions
/// where the image has them (the section's checksum is checked on the
/// stream's first use, [`crate::image::StreamSection`]), so that it costs
/// nothing per record; the first change to the stream copies them into
/// memory.
#[derive(Clone)]
pub(crate) enum Locs {
    /// In memory.
    Owned(Vec<RecordLoc>),
    /// In the image's bytes: [`IMAGE_ITEM_BYTES`] per position.
    Mapped(Bytes),
}

/// Bytes of one entry of a stream's image section: position and record checksum.
const IMAGE_ITEM_BYTES: usize = crate::image::ENTRY_BYTES;

impl Default for Locs {
    fn default() -> Locs {
        Locs::Owned(Vec::new())
    }
}

fn read_u64_le(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("eight bytes"))
}

fn mapped_loc(bytes: &[u8], i: usize) -> RecordLoc {
    RecordLoc(u64::from_le_bytes(bytes[i * IMAGE_ITEM_BYTES..][..8].try_into().expect("eight bytes")))
}

impl Locs {
    /// Positions held in `bytes`, [`IMAGE_ITEM_BYTES`] each (the image's layout).
    pub(crate) fn mapped(bytes: Bytes) -> Locs {
        debug_assert!(bytes.len().is_multiple_of(IMAGE_ITEM_BYTES));
        Locs::Mapped(bytes)
    }

    /// How many.
    pub(crate) fn len(&self) -> usize {
        match self {
            Locs::Owned(locs) => locs.len(),
            Locs::Mapped(bytes) => bytes.len() / IMAGE_ITEM_BYTES,
        }
    }

    /// The `i`th; `None` past the end.
    pub(crate) fn get(&self, i: usize) -> Option<RecordLoc> {
        match self {
            Locs::Owned(locs) => locs.get(i).copied(),
            Locs::Mapped(bytes) => (i < bytes.len() / IMAGE_ITEM_BYTES).then(|| mapped_loc(bytes, i)),
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
    /// still there ([`StreamState::entries_mut`] checks the section first).
    fn to_mut(&mut self) -> &mut Vec<RecordLoc> {
        if let Locs::Mapped(bytes) = self {
            // One pass over the items, sized up front: a stream's first
            // change after open copies all of them (4 M at 1 GiB when every
            // stream changes), on the writer and in the image's recovery.
            let locs = bytes.chunks_exact(IMAGE_ITEM_BYTES).map(|item| RecordLoc(read_u64_le(item))).collect();
            *self = Locs::Owned(locs);
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

/// A segment's LSN seek points, `(lsn, offset)` of every
/// [`CHECKPOINT_FRAMES`]th frame from its first, in order: in memory, or
/// still in the segment's table of the persisted index image that open
/// loaded, as its array of little-endian `(u64 lsn, u32 offset)` items.
/// Open checks them where they are, in one pass (`image::decode`), and
/// leaves them there, so that it allocates and copies nothing per 32
/// frames (129 k seek points at 1 GiB); the first frame a writer adds to
/// the segment copies them into memory.
#[derive(Clone)]
pub(crate) enum SeekPoints {
    /// In memory.
    Owned(Vec<(Lsn, u32)>),
    /// In the image's bytes: [`SEEK_POINT_BYTES`] per point.
    Mapped(Bytes),
}

/// Bytes of one seek point in the image: its LSN and its offset.
const SEEK_POINT_BYTES: usize = crate::image::SEEK_POINT_BYTES;

impl Default for SeekPoints {
    fn default() -> SeekPoints {
        SeekPoints::Owned(Vec::new())
    }
}

fn mapped_seek_point(bytes: &[u8], i: usize) -> (Lsn, u32) {
    let item = &bytes[i * SEEK_POINT_BYTES..][..SEEK_POINT_BYTES];
    let (lsn, offset) = item.split_at(8);
    (
        Lsn(u64::from_le_bytes(lsn.try_into().expect("eight bytes"))),
        u32::from_le_bytes(offset.try_into().expect("four bytes")),
    )
}

impl SeekPoints {
    /// Seek points held in `bytes`, [`SEEK_POINT_BYTES`] each (the image's layout).
    pub(crate) fn mapped(bytes: Bytes) -> SeekPoints {
        debug_assert!(bytes.len().is_multiple_of(SEEK_POINT_BYTES));
        SeekPoints::Mapped(bytes)
    }

    /// How many.
    pub(crate) fn len(&self) -> usize {
        match self {
            SeekPoints::Owned(points) => points.len(),
            SeekPoints::Mapped(bytes) => bytes.len() / SEEK_POINT_BYTES,
        }
    }

    /// The `i`th; `None` past the end.
    pub(crate) fn get(&self, i: usize) -> Option<(Lsn, u32)> {
        match self {
            SeekPoints::Owned(points) => points.get(i).copied(),
            SeekPoints::Mapped(bytes) => (i < bytes.len() / SEEK_POINT_BYTES).then(|| mapped_seek_point(bytes, i)),
        }
    }

    /// The first; `None` if there is none.
    pub(crate) fn first(&self) -> Option<(Lsn, u32)> {
        self.get(0)
    }

    /// How many of the first points satisfy `before` (which holds for a
    /// prefix of them, as for `slice::partition_point`).
    pub(crate) fn partition_point(&self, mut before: impl FnMut(&(Lsn, u32)) -> bool) -> usize {
        match self {
            SeekPoints::Owned(points) => points.partition_point(before),
            SeekPoints::Mapped(bytes) => {
                let (mut low, mut high) = (0, bytes.len() / SEEK_POINT_BYTES);
                while low < high {
                    let middle = low + (high - low) / 2;
                    if before(&mapped_seek_point(bytes, middle)) {
                        low = middle + 1;
                    } else {
                        high = middle;
                    }
                }
                low
            }
        }
    }

    /// Every point, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Lsn, u32)> + '_ {
        (0..self.len()).map(move |i| match self {
            SeekPoints::Owned(points) => points[i],
            SeekPoints::Mapped(bytes) => mapped_seek_point(bytes, i),
        })
    }

    /// Adds the point of a frame written after the last one, copying the
    /// points into memory first if they are still in the image.
    pub(crate) fn push(&mut self, point: (Lsn, u32)) {
        if let SeekPoints::Mapped(_) = self {
            *self = SeekPoints::Owned(self.iter().collect());
        }
        match self {
            SeekPoints::Owned(points) => points.push(point),
            SeekPoints::Mapped(_) => unreachable!("copied into memory above"),
        }
    }

    /// Bytes of memory held for the points (none while they are in the image).
    pub(crate) fn capacity_bytes(&self) -> usize {
        match self {
            SeekPoints::Owned(points) => points.capacity() * std::mem::size_of::<(Lsn, u32)>(),
            SeekPoints::Mapped(_) => 0,
        }
    }
}

impl PartialEq for SeekPoints {
    fn eq(&self, other: &SeekPoints) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for SeekPoints {}

impl std::fmt::Debug for SeekPoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
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
#[derive(Debug)]
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
    /// The stream's section of the persisted image open loaded, if it had
    /// entries there: their record checksums, by sequence, for as long as
    /// the stream lives (a clear or a base starts a state without one).
    pub(crate) image: Option<Box<crate::image::StreamSection>>,
}

/// What the index says of a stream: the image section it was loaded from
/// is how reads check its records, not part of it.
impl PartialEq for StreamState {
    fn eq(&self, other: &StreamState) -> bool {
        (self.start, &self.entries, &self.snapshots, self.since, self.snapshots_before)
            == (other.start, &other.entries, &other.snapshots, other.since, other.snapshots_before)
    }
}

impl Eq for StreamState {}

impl StreamState {
    fn new(since: Lsn, start: u64) -> StreamState {
        StreamState {
            start,
            entries: Locs::default(),
            snapshots: Vec::new(),
            since,
            snapshots_before: Lsn(0),
            image: None,
        }
    }

    /// Whether the stream's image section, if it came from one, passed its
    /// checksum: checked on the first call, an atomic flag after that.
    pub(crate) fn image_intact(&self) -> bool {
        self.image.as_ref().is_none_or(|image| image.check())
    }

    /// How a read checks the entry at `seq` of frames the image covered:
    /// against the checksum the image recorded for it, unless a read in
    /// this process did already.
    fn image_check(&self, seq: u64) -> RecordCheck<'_> {
        let Some(image) = self.image.as_deref() else { return RecordCheck::Unknown };
        match image.crc_of(seq) {
            Some(crc) if image.is_verified(seq) => RecordCheck::ImageVerified(crc),
            Some(crc) => RecordCheck::Image(crc, Some((image, seq))),
            None => RecordCheck::Unknown,
        }
    }

    /// The positions in memory, for a change: copied out of the image if
    /// they are still there, or, if the stream's image section is damaged,
    /// found again by walking the covered frames of `segments`
    /// ([`walk_stream_entries`]). The change is published whatever that
    /// finds (its frame is durable): if the walk failed, reads of the
    /// stream report why.
    ///
    /// Inlined into the writer's publication and recovery's application of
    /// every entry: once its positions are in memory, as a stream's are
    /// after its first change, this is a check of the variant.
    #[inline]
    pub(crate) fn entries_mut(&mut self, stream: &[u8], segments: &[SegmentEntry]) -> &mut Vec<RecordLoc> {
        if let Locs::Mapped(_) = self.entries {
            self.copy_entries_from_image(stream, segments);
        }
        match &mut self.entries {
            Locs::Owned(locs) => locs,
            Locs::Mapped(_) => unreachable!("copied into memory above"),
        }
    }

    /// Takes a stream's positions out of the loaded image into memory, from
    /// the covered frames if its section is damaged: once per stream.
    #[cold]
    #[inline(never)]
    fn copy_entries_from_image(&mut self, stream: &[u8], segments: &[SegmentEntry]) {
        if let (Locs::Mapped(_), Some(image)) = (&self.entries, self.image.as_deref())
            && !image.check()
            && let Ok(walked) = image.walked.get_or_init(|| walk_stream_entries(segments, stream, self))
        {
            self.entries = Locs::Owned(walked.clone());
        }
        self.entries.to_mut();
    }

    /// Whether the stream's entry positions are known: not from a damaged
    /// image section the covered frames could not stand in for.
    fn positions_known(&self) -> bool {
        self.image.as_ref().is_none_or(|image| image.check() || image.walked.get().is_some_and(|w| w.is_ok()))
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
    ///
    /// An entry at the next sequence (nearly every operation the writer
    /// checks and recovery applies) is decided inline; every other case,
    /// and every error, by [`StreamCursor::apply_any`].
    #[inline(always)]
    pub fn apply(
        self,
        kind: RecordKind,
        seq: StreamSeq,
        lsn: Lsn,
        snapshots_before: Lsn,
    ) -> Result<StreamCursor, String> {
        if kind == RecordKind::Entry && seq.0 == self.next && self.exists {
            return Ok(StreamCursor { next: self.next + 1, ..self });
        }
        self.apply_any(kind, seq, lsn, snapshots_before)
    }

    /// [`StreamCursor::apply`], for any operation.
    #[inline(never)]
    fn apply_any(
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
    pub(crate) checkpoints: SeekPoints,
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
    /// The frames before this offset were not checked by this process:
    /// open took them from the persisted index image (`image.rs`), so a
    /// read of a record there checks the record against the checksum the
    /// image recorded for it (segments-format.md, 11.2). 0 for a segment
    /// scanned at open or written here.
    pub(crate) image_covered_end: usize,
    /// First reads by read call ([`Fetch::ReadCall`]) taken so far in each
    /// [`MAP_FAULT_WINDOW_BYTES`] window of the segment, up to
    /// [`WINDOW_READ_CALLS_MAX`]: allocated on the first one.
    pub(crate) read_calls_per_window: std::sync::OnceLock<Box<[std::sync::atomic::AtomicU8]>>,
}

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

    /// Whether a first read of the record at `offset` may take a read call
    /// rather than the map's fault: the first [`WINDOW_READ_CALLS_MAX`] in
    /// its window may (counted here). Past them, the records of that window
    /// are being read by many reads (every workflow restored after open,
    /// say), and one fault that maps the window serves all that follow.
    fn take_read_call(&self, offset: usize) -> bool {
        let windows = self.read_calls_per_window.get_or_init(|| {
            let windows = self.segment.map.len().div_ceil(MAP_FAULT_WINDOW_BYTES);
            (0..windows).map(|_| std::sync::atomic::AtomicU8::new(0)).collect()
        });
        windows.get(offset / MAP_FAULT_WINDOW_BYTES).is_some_and(|taken| {
            taken
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < WINDOW_READ_CALLS_MAX).then_some(n + 1))
                .is_ok()
        })
    }

    /// Where the frame holding the operation at `op_offset` starts.
    #[inline]
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
            checkpoints: SeekPoints::default(),
            frames: 0,
            last_frame_offset: None,
            batch_frames: Vec::new(),
            live_bytes: 0,
            max_timestamp_ms: 0,
            image_covered_end: 0,
            read_calls_per_window: std::sync::OnceLock::new(),
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
    /// The LSN of the stream's first record since its last clear, as of the
    /// same read (`None`: the stream has no state): which incarnation of
    /// the stream was read. An [`crate::Expectation::ExactSince`] with it
    /// and `next_seq` holds until the stream is next written or cleared.
    /// Compare it only with one the same open returned: once compaction
    /// rewrote the stream, a [`crate::LogReader`] or the next open may name
    /// the same incarnation by another LSN (a base's).
    pub since: Option<Lsn>,
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
pub(crate) type StreamMap = hashbrown::HashMap<Box<[u8]>, StreamState, foldhash::fast::RandomState>;

/// A stream id as the appends' lookups in [`StreamMap`] take it: hashed as
/// the map's `Box<[u8]>` keys are (as a `[u8]`), and compared with them
/// inline, a word or two at a time for ids of 4 to 16 bytes, instead of
/// by a call of libc's `memcmp` (most of a lookup's comparison cost).
#[derive(Clone, Copy)]
pub(crate) struct StreamKey<'a>(pub &'a [u8]);

impl std::hash::Hash for StreamKey<'_> {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Exactly as `Box<[u8]>` hashes, or lookups would miss.
        self.0.hash(state);
    }
}

impl hashbrown::Equivalent<Box<[u8]>> for StreamKey<'_> {
    #[inline]
    fn equivalent(&self, key: &Box<[u8]>) -> bool {
        same_stream_id(self.0, key)
    }
}

/// `a == b`, inline for ids of 4 to 16 bytes: two (overlapping) loads of
/// each cover every byte.
#[inline]
fn same_stream_id(a: &[u8], b: &[u8]) -> bool {
    fn word(bytes: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
    }
    fn half(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
    }
    let len = a.len();
    if len != b.len() {
        return false;
    }
    match len {
        8..=16 => word(a, 0) == word(b, 0) && word(a, len - 8) == word(b, len - 8),
        4..=7 => half(a, 0) == half(b, 0) && half(a, len - 4) == half(b, len - 4),
        _ => a == b,
    }
}

/// How a read checks a record in frames the persisted image covered
/// (segments-format.md, 11.2).
#[derive(Clone, Copy, Debug)]
enum RecordCheck<'a> {
    /// Against the record checksum the image recorded for it; an entry's
    /// section and sequence, to record that it passed.
    Image(u32, Option<(&'a crate::image::StreamSection, u64)>),
    /// Not again: a read in this process checked it against this
    /// checksum, the image's for it.
    ImageVerified(u32),
    /// Not again: its frame's checksum was checked by the walk that found
    /// the positions of a stream whose image section is damaged.
    FrameChecked,
    /// No checksum is known: a record in covered frames is an error.
    Unknown,
}

/// A stream's live entry positions as reads use them, its image section
/// checked first ([`Index::positions`]).
struct Positions<'a> {
    state: &'a StreamState,
    /// Of a stream whose image section is damaged and whose positions are
    /// still the image's: the positions the covered frames say instead.
    walked: Option<&'a [RecordLoc]>,
    /// Whether the covered entries' frames were checked by such a walk.
    frames_checked: bool,
}

impl Positions<'_> {
    fn len(&self) -> usize {
        self.state.entries.len()
    }

    /// The `i`th live entry's position.
    #[inline]
    fn loc(&self, i: usize) -> Option<RecordLoc> {
        match self.walked {
            Some(walked) => walked.get(i).copied(),
            None => self.state.entries.get(i),
        }
    }

    /// The `i`th live entry's position and how a read checks it.
    #[inline]
    fn get(&self, i: usize) -> Option<(RecordLoc, RecordCheck<'_>)> {
        let loc = self.loc(i)?;
        let check = if self.frames_checked {
            RecordCheck::FrameChecked
        } else {
            self.state.image_check(self.state.start + i as u64)
        };
        Some((loc, check))
    }

    /// Every position from the `skip`th on, in order.
    fn iter_from(&self, skip: usize) -> impl Iterator<Item = (RecordLoc, RecordCheck<'_>)> + '_ {
        (skip.min(self.len())..self.len()).map(|i| self.get(i).expect("below the length"))
    }
}

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
    /// Whether a read in this process found the loaded image written wrong
    /// over intact frames: a seek point at no frame of its LSN (the read
    /// walked from the segment's first frame instead), or a record whose
    /// recorded checksum or frame the image got wrong (the read checked the
    /// record's frame whole instead).
    pub(crate) image_found_wrong: AtomicBool,
    /// Read-only, past damage: LSNs the index cannot read, each with the
    /// damage that hid them, in LSN order ([`Index::skip_damaged`]).
    pub(crate) holes: Vec<Hole>,
}

/// LSNs a read-only recovery could not read: from where damage broke the
/// chain to the first LSN of the segment it went on from.
#[derive(Debug)]
pub(crate) struct Hole {
    from: Lsn,
    to: Lsn,
    damage: Box<crate::error::Corruption>,
}

impl Hole {
    fn error(&self) -> Error {
        Error::Corruption(self.damage.clone())
    }
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

    /// Read-only recovery past `damage` goes on at a segment whose first
    /// LSN is `to`: the records before the damage stay readable (their
    /// streams too, as far as the damage), and the LSNs from the index's
    /// end to `to` become a hole, which a read that reaches it reports as
    /// `damage` (never as `Trimmed` or as no record). A segment that does
    /// not start past the index's end (an overlap) starts the index again
    /// at `to`, and everything below is the hole.
    pub(crate) fn skip_damaged(&mut self, to: Lsn, damage: crate::error::Corruption) {
        let damage = Box::new(damage);
        if to <= self.next_lsn {
            let holes = std::mem::take(&mut self.holes);
            *self = Index::new(to);
            self.holes = holes;
            self.holes.push(Hole { from: Lsn::ZERO, to, damage });
            return;
        }
        self.holes.push(Hole { from: self.next_lsn, to, damage });
        self.next_lsn = to;
    }

    /// The damage a read-only recovery read past, if any: stream reads
    /// then answer it, since the streams hold only what came before it.
    pub(crate) fn damage_read_past(&self) -> Option<Error> {
        self.holes.first().map(Hole::error)
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
        let from_checkpoint = checkpoint
            .checked_sub(1)
            .and_then(|i| entry.checkpoints.get(i))
            .map_or(crate::segment::SEGMENT_HEADER_BYTES, |(_, offset)| offset as usize);
        Some(from_checkpoint.min(last_frame))
    }

    /// Whether the log's last frame is a clean-close marker.
    pub fn ends_with_marker(&self) -> bool {
        self.ends_with_marker
    }

    /// Whether a read in this process found some stream's section of the
    /// loaded index image damaged (no section is checked here).
    pub(crate) fn image_sections_found_damaged(&self) -> bool {
        self.streams.values().any(|stream| stream.image.as_ref().is_some_and(|image| image.found_damaged()))
    }

    /// Whether a read in this process found the loaded index image written
    /// wrong over intact frames (see the field).
    pub(crate) fn image_found_wrong(&self) -> bool {
        self.image_found_wrong.load(Ordering::Relaxed)
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
    #[inline]
    pub fn cursor(&self, stream: &[u8]) -> StreamCursor {
        cursor_of(self.streams.get(&StreamKey(stream)))
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

    /// The stream's entry positions for a read: its image section's
    /// checksum checked on the stream's first use (an atomic flag after
    /// that); a damaged section is not used, and the covered frames are
    /// walked once instead (segments-format.md, 11.2).
    ///
    /// # Errors
    /// [`Error::Corruption`] if that walk found a damaged frame, or frames
    /// that disagree with the image's stream directory.
    fn positions<'a>(&'a self, stream: &[u8], state: &'a StreamState) -> Result<Positions<'a>> {
        let Some(image) = state.image.as_deref().filter(|image| !image.check()) else {
            return Ok(Positions { state, walked: None, frames_checked: false });
        };
        let walked = image
            .walked
            .get_or_init(|| walk_stream_entries(&self.segments, stream, state))
            .as_ref()
            .map_err(|corruption| Error::Corruption(Box::new(corruption.clone())))?;
        let mapped = matches!(state.entries, Locs::Mapped(_));
        Ok(Positions { state, walked: mapped.then_some(walked.as_slice()), frames_checked: true })
    }

    /// The segment holding the record at `loc`, checked to hold the
    /// position: a position read from the persisted image is checked here,
    /// where it is used, rather than all of them at open.
    #[inline]
    fn entry(&self, loc: RecordLoc) -> Result<&SegmentEntry> {
        let first_op = crate::segment::SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES;
        match self.segments.get(loc.segment()) {
            Some(entry) if (first_op..entry.end_offset).contains(&loc.offset()) => Ok(entry),
            found => Err(no_record_at(found, loc)),
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
    ///
    /// # Errors
    /// [`Error::Corruption`] if a stream's image section is damaged: its
    /// positions cannot say where its records are.
    pub(crate) fn live_locations_before(&self, end: usize) -> Result<Vec<(usize, usize)>> {
        let mut out = Vec::new();
        for (stream, state) in &self.streams {
            let positions = self.positions(stream, state)?;
            let locs = positions.iter_from(0).map(|(loc, _)| loc).chain(state.snapshots.iter().map(|s| s.loc));
            out.extend(locs.map(|loc| self.position_of(loc)).filter(|(segment, _)| *segment < end));
        }
        Ok(out)
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
        for (stream, state) in self.streams.iter_mut() {
            // Trimmed entries are the oldest: the stream now starts after them.
            let entries = state.entries_mut(stream, &self.segments);
            let trimmed = entries.iter().take_while(|loc| relocate(**loc).is_none()).count();
            entries.drain(..trimmed);
            for loc in entries {
                *loc = relocate(*loc).expect("compaction keeps every live record after the trim");
            }
            state.start += trimmed as u64;
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

    /// [`Index::check_frame`], then [`Index::apply_frame`] if it passes:
    /// recovery's scan. A frame of one entry (almost every frame) has its
    /// operation parsed, and its stream looked up, once for both: `first`
    /// is the frame's first operation, as the check of the frame's layout
    /// parsed it ([`crate::frame::check_frame_ops`]).
    ///
    /// # Errors
    /// As [`Index::check_frame`]; the index is then unchanged.
    pub fn check_and_apply_frame<'a>(
        &mut self,
        frame_offset: usize,
        frame: &FrameView<'a>,
        first: Option<crate::frame::OpView<'a>>,
    ) -> Result<(), CorruptionKind> {
        let (FrameKind::Entry, Some(op)) = (frame.kind, first) else {
            self.check_frame(frame)?;
            self.apply_frame(frame_offset, frame);
            return Ok(());
        };
        let inconsistent = |what| CorruptionKind::StreamInconsistent { stream: display_stream(op.stream), what };
        let position = self.segments.len() - 1;
        let loc = RecordLoc::new(position, frame_offset + FRAME_HEADER_BYTES + op.offset_in_body);
        // Apply_frame's entry case, the check first.
        match self.streams.get_mut(&StreamKey(op.stream)) {
            Some(state) => {
                cursor_of(Some(state)).apply(op.kind, op.seq, op.lsn, Lsn(0)).map_err(inconsistent)?;
                state.entries_mut(op.stream, &self.segments).push(loc);
            }
            None => {
                StreamCursor::EMPTY.apply(op.kind, op.seq, op.lsn, Lsn(0)).map_err(inconsistent)?;
                let state = StreamState { entries: Locs::Owned(vec![loc]), ..StreamState::new(op.lsn, 0) };
                self.streams.insert(Box::from(op.stream), state);
            }
        }
        self.segments[position].live_bytes += op_bytes(op.stream.len(), op.payload.len());
        self.place_frame(frame_offset, frame);
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
                        // A damaged image section's positions name nothing:
                        // the covered frames say where its entries are.
                        let entries = match (&state.entries, state.image.as_deref()) {
                            (Locs::Mapped(_), Some(image)) if !image.check() => image
                                .walked
                                .get_or_init(|| walk_stream_entries(&self.segments, op.stream, &state))
                                .clone()
                                .unwrap_or_default(),
                            _ if state.positions_known() => state.entries.iter().collect(),
                            _ => Vec::new(),
                        };
                        self.forget(entries.into_iter().chain(state.snapshots.iter().map(|s| s.loc)));
                    }
                }
                RecordKind::Prune => {
                    self.retention_records += 1;
                    let Some(state) = self.streams.get_mut(op.stream) else { continue };
                    let before = op.seq.0.min(state.start + state.entries.len() as u64);
                    let mut dead = Vec::new();
                    if before > state.start {
                        let start = state.start;
                        let drained = state.entries_mut(op.stream, &self.segments).drain(..(before - start) as usize);
                        dead.extend(drained);
                        state.start = before;
                        if !state.positions_known() {
                            dead.clear();
                        }
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
                    let state = match self.streams.get_mut(&StreamKey(op.stream)) {
                        Some(state) => state,
                        None => self.streams.entry(Box::from(op.stream)).or_insert_with(|| StreamState::new(op.lsn, 0)),
                    };
                    if op.kind == RecordKind::Snapshot {
                        state.snapshots.push(SnapshotLoc { seq: op.seq, loc, lsn: op.lsn, image_crc: 0 });
                    } else {
                        debug_assert_eq!(op.seq, state.next_seq());
                        state.entries_mut(op.stream, &self.segments).push(loc);
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
    ///
    /// Inlined into the writer's publication and recovery's application of
    /// every frame (a call cost a third of its work).
    #[inline(always)]
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
            .map(|s| s.checkpoints.capacity_bytes() + s.batch_frames.capacity() * std::mem::size_of::<(u32, u32)>())
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
        // Each stream as reads see it: a damaged image section's positions
        // are the ones the covered frames say.
        let view = |index: &Index, stream: &[u8], state: &StreamState| {
            let positions =
                index.positions(stream, state).map(|p| p.iter_from(0).map(|(loc, _)| loc).collect::<Vec<_>>());
            (
                state.start,
                positions.map_err(|e| e.to_string()),
                state.snapshots.clone(),
                state.since,
                state.snapshots_before,
            )
        };
        for (stream, state) in &self.streams {
            let theirs = other.streams.get(stream).map(|theirs| view(other, stream, theirs));
            if theirs.as_ref() != Some(&view(self, stream, state)) {
                out.push(format!("stream {}: {state:?} and {:?}", display_stream(stream), other.streams.get(stream)));
            }
        }
        out.extend(self.image_record_differences());
        out
    }

    /// Every live record of frames the image covered whose record checksum
    /// differs from its bytes, or whose stream's positions cannot be known:
    /// one line each (empty for an index that did not come from an image).
    fn image_record_differences(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (stream, state) in &self.streams {
            let positions = match self.positions(stream, state) {
                Ok(positions) => positions,
                Err(error) => {
                    out.push(format!("stream {}: {error}", display_stream(stream)));
                    continue;
                }
            };
            let entries = positions.iter_from(0).map(|(loc, check)| (loc, RecordKind::Entry, check));
            let snapshots =
                state.snapshots.iter().map(|s| (s.loc, RecordKind::Snapshot, RecordCheck::Image(s.image_crc, None)));
            for (loc, kind, check) in entries.chain(snapshots) {
                let Some(entry) = self.segments.get(loc.segment()).filter(|e| loc.offset() < e.image_covered_end)
                else {
                    continue;
                };
                let frame_start = entry.frame_start_of(loc.offset());
                let bytes = entry.segment.map.slice(frame_start, entry.end_offset - frame_start);
                if let Err(error) =
                    check_image_record(entry, &bytes, frame_start, frame_start, loc.offset(), kind, check)
                {
                    out.push(format!("stream {}: {error}", display_stream(stream)));
                }
            }
        }
        out
    }

    /// The record checksum a new image records for the live record of
    /// `kind` at `loc` (segments-format.md, 11.1): for a record in frames
    /// the loaded image covered, the one it recorded, copied as it is
    /// (never computed from bytes nobody checked, which would launder a
    /// flipped bit; a read checks the bytes against it); else computed from
    /// the record's frame, whose checksum this process checked (scanned,
    /// walked, or written here).
    ///
    /// # Errors
    /// [`Error::Corruption`] if a covered record has no checksum, or the
    /// record is not where the index says.
    // Inlined into the image's encoding, which asks it of every live entry.
    #[inline]
    fn record_crc(&self, loc: RecordLoc, kind: RecordKind, check: RecordCheck<'_>) -> Result<u32> {
        let entry = self.entry(loc)?;
        let corruption = |what: &str| {
            Error::corruption(&entry.segment.path, loc.offset() as u64, CorruptionKind::IndexMismatch(what.to_owned()))
        };
        if loc.offset() < entry.image_covered_end {
            match check {
                RecordCheck::Image(crc, _) | RecordCheck::ImageVerified(crc) => return Ok(crc),
                RecordCheck::Unknown => return Err(corruption("a record the image covers without its checksum")),
                RecordCheck::FrameChecked => {}
            }
        }
        let frame_start = entry.frame_start_of(loc.offset());
        if frame_start + FRAME_HEADER_BYTES == loc.offset() {
            // The operation is its frame's whole body: its record checksum
            // is the frame's, whose bytes this process checked.
            return stored_frame_crc(entry, frame_start).ok_or_else(|| corruption("frame header past the end"));
        }
        let bytes = entry.segment.map.slice(frame_start, entry.end_offset - frame_start);
        record_crc_in(entry, &bytes, frame_start, frame_start, loc.offset(), kind).map_err(corruption)
    }

    /// Appends to `section` what a new image records of `stream`'s live
    /// entries: each one's position (a damaged image section's replaced by
    /// what the covered frames say) and record checksum (see
    /// [`Index::record_crc`]). Returns how many of the bytes appended are
    /// the loaded image's section, and that section's checksum (none: the
    /// caller hashes them all), then the stream's live snapshots' record
    /// checksums.
    ///
    /// The loaded image's section of a stream is carried over when it is
    /// still the start of the stream's entries (appends since only added
    /// entries after it: no prune or clear): when it passes its checksum,
    /// and each of its positions is the stream's entry at that index and
    /// names covered frames, what those entries encode to is that section's
    /// bytes exactly (its positions, and the record checksums it recorded,
    /// which are copied for covered records). So they are copied as they
    /// are, and only the entries after them encoded.
    ///
    /// # Errors
    /// As [`Index::record_crc`] and [`Index::positions`].
    pub(crate) fn image_stream(
        &self,
        stream: &[u8],
        state: &StreamState,
        section: &mut Vec<u8>,
    ) -> Result<ImageStream> {
        let snapshots = state
            .snapshots
            .iter()
            .map(|s| self.record_crc(s.loc, RecordKind::Snapshot, RecordCheck::Image(s.image_crc, None)))
            .collect::<Result<Vec<u32>>>()?;
        let positions = self.positions(stream, state)?;
        section.reserve(positions.len() * IMAGE_ITEM_BYTES);
        let carried = self.carried_section(state);
        if let Some((items, _)) = carried {
            section.extend_from_slice(items);
        }
        let skip = carried.map_or(0, |(items, _)| items.len() / IMAGE_ITEM_BYTES);
        for (loc, check) in positions.iter_from(skip) {
            let record_crc = self.record_crc(loc, RecordKind::Entry, check)?;
            // The item laid out whole and appended with one copy.
            let mut item = [0u8; IMAGE_ITEM_BYTES];
            item[..8].copy_from_slice(&loc.0.to_le_bytes());
            item[8..].copy_from_slice(&record_crc.to_le_bytes());
            section.extend_from_slice(&item);
        }
        Ok(ImageStream { carried: carried.map(|(items, crc)| (items.len(), crc)), snapshot_crcs: snapshots })
    }

    /// The loaded image's section of a stream, if it passes its checksum
    /// and is still the start of the stream's entries, each of its
    /// positions naming a covered segment and an offset in the frames the
    /// image covered there: its bytes and its checksum.
    fn carried_section<'a>(&self, state: &'a StreamState) -> Option<(&'a [u8], u32)> {
        let image = state.image.as_deref()?;
        let (first_seq, count) = image.span();
        if state.start != first_seq || state.entries.len() < count {
            return None;
        }
        let (items, crc) = image.intact()?;
        let first_op = crate::segment::SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES;
        let covered = |loc: RecordLoc| {
            self.segments
                .get(loc.segment())
                .is_some_and(|entry| (first_op..entry.image_covered_end).contains(&loc.offset()))
        };
        let mut carried = items.chunks_exact(IMAGE_ITEM_BYTES).map(|item| RecordLoc(read_u64_le(item)));
        let still = match &state.entries {
            // Still the section itself: no write changed the stream.
            Locs::Mapped(mapped) => mapped.as_ptr() == items.as_ptr() && carried.all(covered),
            Locs::Owned(locs) => carried.zip(locs).all(|(loc, entry)| loc == *entry && covered(loc)),
        };
        still.then_some((items, crc))
    }

    /// The latest live snapshot of a stream and the live entries after it.
    pub fn read_stream(&self, stream: &[u8]) -> Result<StreamRead> {
        let Some(state) = self.streams.get(stream) else {
            return Ok(StreamRead::default());
        };
        let snapshot = match state.snapshots.last() {
            Some(s) => Some(self.read_op(
                s.loc,
                RecordKind::Snapshot,
                stream,
                s.seq,
                RecordCheck::Image(s.image_crc, None),
                FirstRead::Fetch(Fetch::Map),
                &mut None,
            )?),
            None => None,
        };
        let from = snapshot.as_ref().map_or(state.start, |s| (s.seq.0 + 1).max(state.start));
        let entries = self.read_entries(stream, state, StreamSeq(from))?;
        Ok(StreamRead { snapshot, entries, next_seq: state.next_seq(), since: Some(state.since) })
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
        let positions = self.positions(stream, state)?;
        let (mut low, mut high) = (0, positions.len());
        while low < high {
            let mid = low + (high - low) / 2;
            let seq = StreamSeq(state.start + mid as u64);
            let (loc, check) = positions.get(mid).expect("mid is below the length");
            if self.with_op(loc, RecordKind::Entry, stream, seq, check, Fetch::Map, |op, _| op.lsn)? <= after {
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
        let positions = self.positions(stream, state)?;
        let skip = usize::try_from(from.0.saturating_sub(state.start)).unwrap_or(usize::MAX).min(positions.len());
        let take = (positions.len() - skip).min(limit);
        let mut records = Vec::with_capacity(take);
        let wanted = (skip, skip + take);
        let mut copied_stream = None;
        let mut prefetch = Prefetch::default();
        for (i, (loc, check)) in positions.iter_from(skip).take(take).enumerate() {
            let seq = StreamSeq(state.start + (skip + i) as u64);
            let fetch = match prefetch.take(self, &positions, skip + i, wanted) {
                Some(fetched) => FirstRead::Done(fetched?),
                None => FirstRead::Fetch(fetch_for(&positions, skip + i, wanted, check)),
            };
            records.push(self.read_op(loc, RecordKind::Entry, stream, seq, check, fetch, &mut copied_stream)?);
        }
        Ok(records)
    }

    /// Reads the operation at `loc` and checks that it is the one the index
    /// expects there (paired with the checks made before it was written).
    /// `check` says how if it is in frames the image covered.
    /// `copied_stream` holds the stream id once a record of the read was
    /// copied (`BytesFrom::Copy`): every record the read returns has the
    /// same id (checked against `stream`), so the copies share one.
    #[allow(clippy::too_many_arguments)] // read_op's and with_op's, and the read's shared stream id
    fn read_op(
        &self,
        loc: RecordLoc,
        kind: RecordKind,
        stream: &[u8],
        seq: StreamSeq,
        check: RecordCheck<'_>,
        fetch: FirstRead,
        copied_stream: &mut Option<Bytes>,
    ) -> Result<Record> {
        let entry = self.entry(loc)?;
        self.with_op_first(loc, kind, stream, seq, check, fetch, |op, from| {
            let stream_start = loc.offset() + OP_HEADER_BYTES;
            let (stream, payload) = match from {
                BytesFrom::Map => (
                    entry.segment.map.slice(stream_start, op.stream.len()),
                    entry.segment.map.slice(stream_start + op.stream.len(), op.payload.len()),
                ),
                BytesFrom::Copy => (
                    copied_stream.get_or_insert_with(|| Bytes::copy_from_slice(op.stream)).clone(),
                    Bytes::copy_from_slice(op.payload),
                ),
            };
            Record { lsn: op.lsn, stream, seq, kind, timestamp_ms: op.timestamp_ms, payload }
        })
    }

    /// Calls `f` on the operation at `loc`, borrowed from the segment's map
    /// where it can lend its bytes, after checking that it is the one the
    /// index expects there. A record in frames this process did not check
    /// (the image covered them) is first checked as `check` says: against
    /// the checksum the image recorded for it, reading only its own bytes.
    /// `fetch` says how an entry's first read in this process gets them;
    /// `f` learns where its bytes are.
    #[allow(clippy::too_many_arguments)] // the record's identity, how to check it, how to fetch it
    fn with_op<R>(
        &self,
        loc: RecordLoc,
        kind: RecordKind,
        stream: &[u8],
        seq: StreamSeq,
        check: RecordCheck<'_>,
        fetch: Fetch,
        f: impl FnOnce(RecordRef<'_>, BytesFrom) -> R,
    ) -> Result<R> {
        self.with_op_first(loc, kind, stream, seq, check, FirstRead::Fetch(fetch), f)
    }

    /// [`Index::with_op`], whose record's first read may have been made
    /// already, by a read's helper thread ([`Index::prefetch`]).
    #[allow(clippy::too_many_arguments)] // as with_op's
    fn with_op_first<R>(
        &self,
        loc: RecordLoc,
        kind: RecordKind,
        stream: &[u8],
        seq: StreamSeq,
        check: RecordCheck<'_>,
        fetch: FirstRead<'_>,
        f: impl FnOnce(RecordRef<'_>, BytesFrom) -> R,
    ) -> Result<R> {
        let entry = self.entry(loc)?;
        let mut frame_start = entry.frame_start_of(loc.offset());
        let end = entry.end_offset;
        let fetched_here;
        let mut copied = None;
        if loc.offset() < entry.image_covered_end {
            match fetch {
                FirstRead::Fetch(Fetch::ReadCall)
                    if matches!(check, RecordCheck::Image(_, Some(_))) && entry.take_read_call(loc.offset()) =>
                {
                    fetched_here = read_checked_record(entry, frame_start, loc.offset(), kind, check)?;
                    copied = fetched_here.as_ref();
                }
                FirstRead::Fetch(_) => {}
                FirstRead::Done(fetched) => copied = fetched,
            }
            let checked = match (copied, entry.segment.map.as_slice()) {
                (Some(_), _) => Ok(()),
                (None, Some(map)) => check_image_record(entry, map, 0, frame_start, loc.offset(), kind, check),
                (None, None) => {
                    let owned = entry.segment.map.slice(frame_start, end.saturating_sub(frame_start));
                    check_image_record(entry, &owned, frame_start, frame_start, loc.offset(), kind, check)
                }
            };
            if let Err(error) = checked {
                // The record or the checksum the image recorded for it is
                // wrong, or the image's batch frames put it in the wrong
                // frame. Its frame, found by a walk that checks every frame
                // whole, tells which: intact, the image was written wrong
                // (read from the frame, and let the close replace the
                // image); else the error.
                frame_start = frame_holding(entry, loc.offset()).ok_or(error)?;
                self.image_found_wrong.store(true, Ordering::Relaxed);
                crate::telemetry::image_record_wrong(&entry.segment.path, loc.offset());
            }
        }
        let owned;
        let (bytes, base, from) = match (copied, entry.segment.map.as_slice()) {
            (Some(record), _) => (record.bytes(), frame_start, BytesFrom::Copy),
            (None, Some(map)) => (map, 0, BytesFrom::Map),
            (None, None) => {
                owned = entry.segment.map.slice(frame_start, end.saturating_sub(frame_start));
                (owned.as_ref(), frame_start, BytesFrom::Map)
            }
        };
        let timestamp_at = frame_start - base + crate::frame::FRAME_TIMESTAMP_AT;
        let timestamp_ms = bytes
            .get(timestamp_at..timestamp_at + 8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("eight bytes")));
        match op_at(bytes, loc.offset() - base, end - base, stream, seq) {
            Ok((lsn, stream, payload)) => Ok(f(RecordRef { lsn, stream, seq, kind, timestamp_ms, payload }, from)),
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
        let positions = self.positions(stream, state)?;
        let mut seen = 0;
        let mut from = state.start;
        if let Some(s) = state.snapshots.last() {
            let check = RecordCheck::Image(s.image_crc, None);
            self.with_op(s.loc, RecordKind::Snapshot, stream, s.seq, check, Fetch::Map, |op, _| f(op))?;
            seen += 1;
            from = from.max(s.seq.0 + 1);
        }
        let skip = usize::try_from(from - state.start).unwrap_or(usize::MAX).min(positions.len());
        let wanted = (skip, positions.len());
        let mut prefetch = Prefetch::default();
        for (i, (loc, check)) in positions.iter_from(skip).enumerate() {
            let seq = StreamSeq(state.start + (skip + i) as u64);
            let fetch = match prefetch.take(self, &positions, skip + i, wanted) {
                Some(fetched) => FirstRead::Done(fetched?),
                None => FirstRead::Fetch(fetch_for(&positions, skip + i, wanted, check)),
            };
            self.with_op_first(loc, RecordKind::Entry, stream, seq, check, fetch, |op, _| f(op))?;
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
        let positions = self.positions(stream, state)?;
        for (i, (loc, check)) in positions.iter_from(0).enumerate() {
            let seq = StreamSeq(state.start + i as u64);
            let timestamp =
                self.with_op(loc, RecordKind::Entry, stream, seq, check, Fetch::Map, |op, _| op.timestamp_ms)?;
            if timestamp >= timestamp_ms {
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
        if let Some(hole) = self.holes.iter().find(|hole| hole.from <= want && want < hole.to) {
            return Err(hole.error());
        }
        let oldest = self.oldest_lsn();
        if after.0 > 0 && want < oldest {
            return Err(Error::Trimmed { after, oldest });
        }
        if limit == 0 || want >= self.next_lsn || self.segments.is_empty() {
            return Ok(());
        }
        let first = self.segments.partition_point(|s| s.segment.header.first_lsn <= want).saturating_sub(1);
        for entry in &self.segments[first..] {
            // A read that gets past the records before a hole (not yet at
            // its limit) would go on through it.
            let first_lsn = entry.segment.header.first_lsn;
            if let Some(hole) = self.holes.iter().find(|hole| want < hole.to && hole.to <= first_lsn) {
                return Err(hole.error());
            }
            let checkpoint = entry.checkpoints.partition_point(|&(lsn, _)| lsn <= want).saturating_sub(1);
            let Some((lsn, offset)) = entry.checkpoints.get(checkpoint) else {
                continue;
            };
            let wanted = Wanted { from: want, limit, live_only };
            let before = out.len();
            match self.read_frames(entry, (lsn, offset as usize), &wanted, out) {
                // A seek point the image recorded (its checksums hold, so it
                // was written wrong) may name no frame of its LSN: walk from
                // the segment's first frame instead, which checks every
                // frame as any walk does, and let the close replace the
                // image. Damage there is found again, and reported.
                Err(Error::Corruption(_)) if (offset as usize) < entry.image_covered_end => {
                    out.truncate(before);
                    self.image_found_wrong.store(true, Ordering::Relaxed);
                    crate::telemetry::image_seek_point_wrong(&entry.segment.path, lsn, offset);
                    let first_frame = (entry.segment.header.first_lsn, crate::segment::SEGMENT_HEADER_BYTES);
                    self.read_frames(entry, first_frame, &wanted, out)?;
                }
                walked => walked?,
            }
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
        let mut unknown = None;
        walk_frames(entry, start, entry.end_offset, |region, at, frame| {
            let body_start = at + FRAME_HEADER_BYTES;
            for op in frame.ops().filter(|op| op.lsn >= want) {
                if out.len() >= limit {
                    break;
                }
                // The live view leaves out the log's own streams (named cursors).
                if live_only && crate::cursors::is_reserved(op.stream) {
                    continue;
                }
                if live_only {
                    let live = self.is_live(op.kind, op.stream, op.seq, op.lsn);
                    // Past damage (read-only), a record the streams before
                    // it call dead stays dead; any other may have been
                    // pruned or deleted by what the damage hid.
                    if let Some(hole) = self.holes.first()
                        && (live || op.lsn >= hole.from)
                    {
                        unknown = Some(hole.error());
                        return false;
                    }
                    if !live {
                        continue;
                    }
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
            out.len() < limit
        })?;
        unknown.map_or(Ok(()), Err)
    }

    /// Live entries and snapshots in each segment, in the order of
    /// [`Index::segments`]: what [`SegmentEntry::live_bytes`] counts the
    /// bytes of. A stream whose entry positions cannot be known (a damaged
    /// image section over damaged frames) counts its snapshots only.
    pub fn live_records_per_segment(&self) -> Vec<u64> {
        let mut counts = vec![0u64; self.segments.len()];
        for (stream, state) in &self.streams {
            let entries: Vec<RecordLoc> = match self.positions(stream, state) {
                Ok(positions) => positions.iter_from(0).map(|(loc, _)| loc).collect(),
                Err(_) => Vec::new(),
            };
            for loc in entries.into_iter().chain(state.snapshots.iter().map(|s| s.loc)) {
                if let Some(count) = counts.get_mut(loc.segment()) {
                    *count += 1;
                }
            }
        }
        counts
    }
}

/// Calls `f` on each frame of a segment from `start`, an LSN checkpoint
/// `(lsn, offset)`, to `end`, each checked whole (its checksum included),
/// with the segment's bytes from its start (so offsets and marker alignment
/// are absolute) and the frame's offset; stops when `f` returns `false`.
///
/// # Errors
/// [`Error::Corruption`] naming the segment and offset of a damaged frame.
fn walk_frames(
    entry: &SegmentEntry,
    start: (Lsn, usize),
    end: usize,
    mut f: impl FnMut(&Bytes, usize, &FrameView<'_>) -> bool,
) -> Result<()> {
    let (mut lsn, mut offset) = start;
    let region = entry.segment.map.slice(0, entry.end_offset);
    let log_id = entry.segment.header.log_id;
    let compacted = entry.segment.compacted();
    while offset < end.min(entry.end_offset) {
        let decoded = if compacted {
            crate::frame::decode_frame_anywhere(&region[offset..], &log_id)
                .and_then(|frame| {
                    // Compaction leaves gaps between frames, so only a walk
                    // from the segment's top takes the first frame's LSN as
                    // it comes; one from a seek point expects the point's.
                    let from_point = offset == start.1 && offset != crate::segment::SEGMENT_HEADER_BYTES;
                    if frame.meta.lsn < lsn || (from_point && frame.meta.lsn != lsn) {
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
        if !f(&region, at, &frame) {
            break;
        }
        lsn = frame.next_lsn();
        offset = at + frame.total_bytes();
    }
    Ok(())
}

/// Where the frame holding the operation at `op_offset` starts, found by a
/// walk of the segment's covered frames from its first, each checked whole
/// (its checksum included): `None` if the walk meets a damaged frame first,
/// or no frame holds an operation there.
fn frame_holding(entry: &SegmentEntry, op_offset: usize) -> Option<usize> {
    let top = (entry.segment.header.first_lsn, crate::segment::SEGMENT_HEADER_BYTES);
    let mut found = None;
    walk_frames(entry, top, entry.image_covered_end, |_, at, frame| {
        let body_start = at + FRAME_HEADER_BYTES;
        if frame.ops().any(|op| body_start + op.offset_in_body == op_offset) {
            found = Some(at);
        }
        found.is_none() && at < op_offset
    })
    .ok()?;
    found
}

/// The positions of the live entries `state`'s image section held, as the
/// frames the image covered say, each frame's checksum checked: what
/// stands in for a section that fails its checksum (segments-format.md,
/// 11.2). The section's first sequence and entry count and the stream's
/// `since` come from the image's directory, which open checked; those
/// entries are the stream's entries at those sequences since `since`, in
/// LSN (so sequence) order. One walk of the covered frames, once per
/// damaged stream.
fn walk_stream_entries(
    segments: &[SegmentEntry],
    stream: &[u8],
    state: &StreamState,
) -> Result<Vec<RecordLoc>, crate::error::Corruption> {
    let Some(image) = state.image.as_deref() else { return Ok(Vec::new()) };
    let (first_seq, count) = image.span();
    let wanted = first_seq..first_seq + count as u64;
    let mut out: Vec<RecordLoc> = Vec::new();
    let mut next = first_seq;
    let mut out_of_order = false;
    for (position, entry) in segments.iter().enumerate() {
        let Some((lsn, offset)) = entry.checkpoints.first().filter(|_| entry.image_covered_end > 0) else {
            continue;
        };
        let walked = walk_frames(entry, (lsn, offset as usize), entry.image_covered_end, |_, at, frame| {
            for op in frame.ops() {
                let live = op.kind == RecordKind::Entry && op.lsn >= state.since && wanted.contains(&op.seq.0);
                if live && op.stream == stream {
                    out_of_order |= op.seq.0 != next;
                    next = op.seq.0 + 1;
                    out.push(RecordLoc::new(position, at + FRAME_HEADER_BYTES + op.offset_in_body));
                }
            }
            true
        });
        if let Err(error) = walked {
            return Err(match error {
                Error::Corruption(corruption) => *corruption,
                other => crate::error::Corruption {
                    file: entry.segment.path.clone(),
                    offset: 0,
                    kind: CorruptionKind::BadRecord(other.to_string()),
                },
            });
        }
    }
    if out_of_order || out.len() != count {
        let (file, offset) = image.location();
        return Err(crate::error::Corruption {
            file,
            offset,
            kind: CorruptionKind::IndexMismatch(format!(
                "stream {}: the image's stream directory and the frames it covers disagree",
                display_stream(stream)
            )),
        });
    }
    Ok(out)
}

/// What [`Index::image_stream`] says of the section it appended.
pub(crate) struct ImageStream {
    /// How many of the bytes appended are the loaded image's section, and
    /// that section's checksum.
    pub(crate) carried: Option<(usize, u32)>,
    /// The stream's live snapshots' record checksums, oldest first.
    pub(crate) snapshot_crcs: Vec<u32>,
}

/// A stream's state as the guards and checks follow it ([`StreamCursor::EMPTY`]
/// for a stream with none).
fn cursor_of(state: Option<&StreamState>) -> StreamCursor {
    state.map_or(StreamCursor::EMPTY, |state| StreamCursor {
        next: state.next_seq().0,
        snapshot_floor: state.snapshots.last().map(|s| s.seq),
        latest_snapshot: state.snapshots.last().map(|s| s.lsn),
        exists: true,
        since: state.since,
    })
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

/// The `crc` field of the frame at `frame_start` of a segment, as stored:
/// the record checksum of an operation that is its frame's whole body, for
/// a frame whose checksum this process checked. `None` past the end.
fn stored_frame_crc(entry: &SegmentEntry, frame_start: usize) -> Option<u32> {
    if frame_start + FRAME_HEADER_BYTES > entry.end_offset {
        return None;
    }
    let field = |bytes: &[u8]| bytes.try_into().ok().map(u32::from_le_bytes);
    match entry.segment.map.as_slice() {
        Some(map) => map.get(frame_start..frame_start + 4).and_then(field),
        None => field(entry.segment.map.slice(frame_start, 4).as_ref()),
    }
}

/// The record checksum of the operation at `op_offset` of a segment (the
/// segment from offset `base` is `bytes`), in the frame at `frame_start`,
/// as the image records it (segments-format.md, 11.1). Of an operation that
/// is its frame's whole body (`op_offset` right after the frame header: not
/// in a batch), its frame's checksum, computed from the bytes; of one in a
/// batch, the CRC of the log id, the frame's `timestamp_ms`, the record
/// kind's byte and the operation's bytes (header, stream and payload).
/// Either covers every byte a [`Record`] is read from. `Err` says why it
/// cannot be computed (an operation past the end).
fn record_crc_in(
    entry: &SegmentEntry,
    bytes: &[u8],
    base: usize,
    frame_start: usize,
    op_offset: usize,
    kind: RecordKind,
) -> Result<u32, &'static str> {
    let end = entry.end_offset.min(bytes.len() + base);
    let timestamp = frame_start
        .checked_sub(base)
        .and_then(|at| bytes.get(at + crate::frame::FRAME_TIMESTAMP_AT..at + crate::frame::FRAME_TIMESTAMP_AT + 8))
        .ok_or("frame header past the end of the segment")?;
    let head = op_offset
        .checked_sub(base)
        .and_then(|at| bytes.get(at..at + OP_HEADER_BYTES))
        .filter(|_| op_offset + OP_HEADER_BYTES <= end)
        .ok_or("operation header past the end of the segment")?;
    let header = decode_op_header(head.try_into().expect("sliced to the header length"));
    let op_end = op_offset + OP_HEADER_BYTES + header.stream_bytes + header.payload_bytes;
    if op_end > end {
        return Err("operation past the end of the segment");
    }
    let log_id = &entry.segment.header.log_id;
    if frame_start + FRAME_HEADER_BYTES == op_offset {
        // The frame's bytes after its `crc` field, through the operation's
        // end (the frame's, if it is whole): its checksum.
        return Ok(crate::image::frame_record_crc(log_id, &bytes[frame_start + 4 - base..op_end - base]));
    }
    let op = &bytes[op_offset - base..op_end - base];
    Ok(crate::image::record_crc(log_id, timestamp, kind, op))
}

/// The error of a position no record can be at (in `found`, if it names a
/// segment at all). Out of line: [`Index::entry`] is on every read's path.
#[cold]
#[inline(never)]
fn no_record_at(found: Option<&SegmentEntry>, loc: RecordLoc) -> Error {
    Error::corruption(
        found.map_or(std::path::Path::new(crate::image::IMAGE_FILE_NAME), |entry| &entry.segment.path),
        loc.offset() as u64,
        CorruptionKind::IndexMismatch(format!("no record can be at position {:#x}", loc.0)),
    )
}

/// How an entry's first read in this process (the one that checks it
/// against the checksum the image recorded for it) gets its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fetch {
    /// Through the segment's map, whose first touch of a page costs a page
    /// fault that maps [`MAP_FAULT_WINDOW_BYTES`] around it.
    Map,
    /// With one read call (`pread`) into a buffer: cheaper than that fault
    /// for a record few other records the read wants share a window with
    /// (one workflow's rows scattered over a log of many), and it leaves
    /// the map untouched. Later reads, which the check need not repeat, go
    /// through the map; so do first reads in a window that already took
    /// [`WINDOW_READ_CALLS_MAX`] read calls.
    ReadCall,
}

/// Where the bytes a read hands on are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BytesFrom {
    /// In the segment's map.
    Map,
    /// Copied by a read call, for this read alone.
    Copy,
}

/// What Linux maps around the page a first touch of a file mapping faults
/// in (its default `fault_around_bytes`): records this close together share
/// one fault.
const MAP_FAULT_WINDOW_BYTES: usize = 64 << 10;

/// What a first touch of a segment's map costs, in read calls: the fault
/// maps every cached page of its [`MAP_FAULT_WINDOW_BYTES`] window, and the
/// unmap at the log's close takes them down again. On the project's 2-core
/// virtual machine, 4,000 first reads spread over the 1 GiB log of the
/// `lifecycle_open` bench took about 4 µs each by fault and about 1 µs each
/// by read call. So a window is faulted in only for at least this
/// many first reads in it: by one read ([`fetch_for`]), or by read calls
/// already taken in it by earlier reads ([`SegmentEntry::take_read_call`]),
/// which a window read this way by many reads (every workflow restored after
/// open, say) then bounds to about twice what faulting it in would cost.
const MAP_FAULT_READ_CALLS: u8 = 4;

/// First reads by read call a window of [`MAP_FAULT_WINDOW_BYTES`] of a
/// segment takes before the rest go through the map.
const WINDOW_READ_CALLS_MAX: u8 = MAP_FAULT_READ_CALLS;

/// Bytes a first read by read call fetches from the start of the record's
/// frame: a frame header and a record of a few hundred bytes. A longer
/// record is read through the map.
const FIRST_READ_BYTES: usize = 512;

/// How the read of the live entries `wanted` (indexes into `positions`,
/// `start..end`) fetches the `i`th: through the map if at least
/// [`MAP_FAULT_READ_CALLS`] entries the read wants (this one included) lie
/// in its [`MAP_FAULT_WINDOW_BYTES`] window of the same segment, whose one
/// fault then serves them all; else by read call. Only an entry's first
/// read (`check` against the image's checksum, which records that it
/// passed) asks: the others go through the map.
fn fetch_for(positions: &Positions<'_>, i: usize, wanted: (usize, usize), check: RecordCheck<'_>) -> Fetch {
    if !matches!(check, RecordCheck::Image(_, Some(_))) {
        return Fetch::Map;
    }
    let Some(loc) = positions.loc(i) else { return Fetch::Map };
    let window = loc.offset() / MAP_FAULT_WINDOW_BYTES;
    let shares = |j: usize| {
        (wanted.0..wanted.1).contains(&j)
            && positions.loc(j).is_some_and(|other| {
                other.segment() == loc.segment() && other.offset() / MAP_FAULT_WINDOW_BYTES == window
            })
    };
    // Entries are in log order, so those sharing the window are a run
    // around `i`: counted until there are enough.
    let needed = usize::from(MAP_FAULT_READ_CALLS);
    let before = (1..needed).take_while(|&back| i.checked_sub(back).is_some_and(shares)).count();
    let after = (1..needed - before).take_while(|&ahead| shares(i + ahead)).count();
    if 1 + before + after >= needed { Fetch::Map } else { Fetch::ReadCall }
}

/// How a read gets an entry's bytes the first time this process reads it.
enum FirstRead<'c> {
    /// As [`fetch_for`] said, now.
    Fetch(Fetch),
    /// Already fetched by read call and checked, by one of the read's
    /// helper threads ([`Index::prefetch`]): the copy, or `None` where the
    /// read goes through the map after all (the window took its read calls,
    /// or the copy could not stand in for the map).
    Done(Option<&'c CopiedRecord>),
}

/// A first read by read call a read's helper thread made: `None` if it
/// made none for that entry.
type Prefetched = Option<Result<Option<CopiedRecord>>>;

/// A read that would take at least this many first reads by read call
/// shares them with helper threads, this many or more to a thread. Each
/// costs about a microsecond of the kernel's time (a `pread` of a cached
/// page) and a thread's start about 30 of them: a long run's first read
/// after open (4,000 rows scattered over 1 GiB in the `lifecycle_open`
/// bench) then takes about half as long on two cores. On cold storage the
/// threads also keep several reads in flight where one would wait for
/// each in turn.
const PARALLEL_READ_CALLS_PER_THREAD: usize = 128;

/// The most threads, this one included, a read fetches with.
const PARALLEL_READ_THREADS_MAX: usize = 4;

/// Entries a read's helper threads fetch at a time: their copies, about
/// 520 bytes each, take at most about 2 MiB.
const PREFETCH_ENTRIES: usize = 4096;

/// The first reads a read's helper threads fetched, for the entries
/// `start..end` of its positions (none fetched: `slots` is empty).
#[derive(Default)]
struct Prefetch {
    start: usize,
    end: usize,
    slots: Vec<Prefetched>,
}

impl Prefetch {
    /// What the helper threads fetched for the `i`th entry of a read of
    /// `wanted`, fetching the next [`PREFETCH_ENTRIES`] first when `i` is
    /// past those fetched.
    fn take(
        &mut self,
        index: &Index,
        positions: &Positions<'_>,
        i: usize,
        wanted: (usize, usize),
    ) -> Option<Result<Option<&CopiedRecord>>> {
        if i >= self.end {
            let end = i.saturating_add(PREFETCH_ENTRIES).min(wanted.1).max(i + 1);
            *self = Prefetch { start: i, end, slots: index.prefetch(positions, (i, end), wanted) };
        }
        let slot = self.slots.get_mut(i - self.start)?;
        if let Some(Err(_)) = slot {
            return slot.take().and_then(Result::err).map(Err);
        }
        slot.as_ref().map(|fetched| Ok(fetched.as_ref().ok().and_then(Option::as_ref)))
    }
}

/// The threads the machine can run at once.
fn parallelism() -> usize {
    static PARALLELISM: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PARALLELISM.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
}

impl Index {
    /// The first reads by read call of the entries `range` of a read of
    /// `wanted`, made by helper threads beside this one and checked as
    /// [`Index::with_op`] would, one slot per entry of `range`. Empty when
    /// there are too few to be worth a thread, on a machine of one core, or
    /// in files that keep their reads on one thread (the simulator's). A
    /// thread that cannot be started leaves its share to this one.
    fn prefetch(&self, positions: &Positions<'_>, range: (usize, usize), wanted: (usize, usize)) -> Vec<Prefetched> {
        let threads = parallelism().min(PARALLEL_READ_THREADS_MAX);
        if threads < 2 || range.1 - range.0 < 2 * PARALLEL_READ_CALLS_PER_THREAD {
            return Vec::new();
        }
        // Exactly the entries `with_op` would fetch by read call.
        let calls: Vec<(usize, &SegmentEntry, RecordLoc, RecordCheck<'_>)> = (range.0..range.1)
            .filter_map(|i| {
                let (loc, check) = positions.get(i)?;
                let entry = self.entry(loc).ok()?;
                let call = fetch_for(positions, i, wanted, check) == Fetch::ReadCall
                    && matches!(check, RecordCheck::Image(_, Some(_)))
                    && loc.offset() < entry.image_covered_end
                    && entry.segment.file.parallel_reads();
                call.then_some((i - range.0, entry, loc, check))
            })
            .collect();
        let threads = threads.min(calls.len() / PARALLEL_READ_CALLS_PER_THREAD);
        if threads < 2 {
            return Vec::new();
        }
        // Each thread fills the slots of its own share of the calls, in
        // place: nothing is allocated on a helper thread, whose freed
        // memory its allocator would hand back to the system (and the next
        // read would fault in again). Each takes first the records whose
        // frames are in memory, asking the device at once for the others
        // (a log opened on a cold cache, or one the system reclaimed a part
        // of, has many such: their fetches then overlap, where reads
        // waiting in turn took about 165 µs each on this machine's disk);
        // then those.
        let fetch =
            |slots: &mut [Prefetched], base: usize, part: &[(usize, &SegmentEntry, RecordLoc, RecordCheck<'_>)]| {
                let mut waiting = false;
                for &(slot, entry, loc, check) in part {
                    slots[slot - base] = if entry.take_read_call(loc.offset()) {
                        let frame_start = entry.frame_start_of(loc.offset());
                        match read_record(entry, frame_start, loc.offset(), RecordKind::Entry, check, Wait::No) {
                            Ok(Some(fetched)) => Some(Ok(fetched)),
                            Ok(None) => {
                                waiting = true;
                                None
                            }
                            Err(error) => Some(Err(error)),
                        }
                    } else {
                        Some(Ok(None))
                    };
                }
                for &(slot, entry, loc, check) in part.iter().filter(|_| waiting) {
                    if slots[slot - base].is_none() {
                        let frame_start = entry.frame_start_of(loc.offset());
                        let fetched = read_checked_record(entry, frame_start, loc.offset(), RecordKind::Entry, check);
                        slots[slot - base] = Some(fetched);
                    }
                }
            };
        let mut slots: Vec<Prefetched> = (range.0..range.1).map(|_| None).collect();
        let parts: Vec<_> = calls.chunks(calls.len().div_ceil(threads)).collect();
        // Each share: the slots from its first call's to the next share's.
        let mut shares = Vec::with_capacity(parts.len());
        let (mut rest, mut base) = (slots.as_mut_slice(), 0);
        for part in &parts[1..] {
            let (share, after) = std::mem::take(&mut rest).split_at_mut(part[0].0 - base);
            shares.push((share, base));
            (rest, base) = (after, part[0].0);
        }
        shares.push((rest, base));
        std::thread::scope(|scope| {
            let mut shares = parts.iter().zip(shares);
            let (mine, (my_slots, my_base)) = shares.next().expect("two parts at least");
            let helpers: Vec<_> = shares
                .map(|(part, (slots, base))| {
                    std::thread::Builder::new()
                        .name("annals-read".to_owned())
                        .spawn_scoped(scope, move || fetch(slots, base, part))
                })
                .collect();
            fetch(my_slots, my_base, mine);
            // A helper that could not be started fetched nothing: its
            // entries' slots stay empty, and the read fetches them itself.
            for helper in helpers.into_iter().flatten() {
                helper.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            }
        });
        slots
    }
}

/// A record's frame as a first read by read call fetched it:
/// [`FIRST_READ_BYTES`] at most from the frame's start.
struct CopiedRecord {
    buffer: [u8; FIRST_READ_BYTES],
    len: usize,
}

impl CopiedRecord {
    fn bytes(&self) -> &[u8] {
        &self.buffer[..self.len]
    }
}

/// Reads the frame of the operation at `op_offset` (its frame's whole body,
/// in frames the image covered) with one read call, two if it is longer
/// than this thread's [`FIRST_READ_GUESS`], and checks it against the
/// record checksum the image recorded (`check`, which records that it
/// passed). `None` if it cannot stand in for the map: a batch's operation,
/// a record longer than [`FIRST_READ_BYTES`], or one that fails the check
/// (the read through the map checks it again, and finds out why).
///
/// # Errors
/// [`Error::Io`] if a read fails.
fn read_checked_record(
    entry: &SegmentEntry,
    frame_start: usize,
    op_offset: usize,
    kind: RecordKind,
    check: RecordCheck<'_>,
) -> Result<Option<CopiedRecord>> {
    Ok(read_record(entry, frame_start, op_offset, kind, check, Wait::Yes)?.flatten())
}

/// Whether a first read by read call waits for the device.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    Yes,
    /// Only if the frame's first bytes are in memory; else it asks the
    /// device for them ([`crate::fs::File::will_need`]) and answers `None`.
    No,
}

/// [`read_checked_record`], which with [`Wait::No`] answers `None` where
/// the frame's first bytes are not in memory.
fn read_record(
    entry: &SegmentEntry,
    frame_start: usize,
    op_offset: usize,
    kind: RecordKind,
    check: RecordCheck<'_>,
    wait: Wait,
) -> Result<Option<Option<CopiedRecord>>> {
    if frame_start + FRAME_HEADER_BYTES != op_offset {
        return Ok(Some(None));
    }
    let file = &entry.segment.file;
    // Fills `buffer` from `at`; `false` if it did not wait and the bytes
    // were not in memory (the device is asked for them).
    let read = |buffer: &mut [u8], at: usize| {
        let at = at as u64;
        let filled = match wait {
            Wait::Yes => file.read_at(buffer, at).map(|()| true),
            Wait::No => file.read_cached_at(buffer, at),
        };
        let filled = filled.map_err(|error| Error::io("read", &entry.segment.path, error))?;
        if !filled {
            file.will_need(at, buffer.len());
        }
        Ok::<bool, Error>(filled)
    };
    let available = entry.end_offset.saturating_sub(frame_start).min(FIRST_READ_BYTES);
    let guess = FIRST_READ_GUESS.get();
    let mut record = CopiedRecord { buffer: [0; FIRST_READ_BYTES], len: available.min(guess) };
    if !read(&mut record.buffer[..record.len], frame_start)? {
        return Ok(None);
    }
    // The length its operation header gives, not yet checked: a wrong one
    // reads too little or too much, and the check below fails either way.
    if let Some(head) = record.bytes().get(op_offset - frame_start..op_offset - frame_start + OP_HEADER_BYTES) {
        let header = decode_op_header(head.try_into().expect("sliced to the header length"));
        let needed = (FRAME_HEADER_BYTES + OP_HEADER_BYTES)
            .saturating_add(header.stream_bytes)
            .saturating_add(header.payload_bytes);
        if needed > record.len && needed <= available {
            let len = record.len;
            if !read(&mut record.buffer[len..needed], frame_start + len)? {
                return Ok(None);
            }
            record.len = needed;
        }
        FIRST_READ_GUESS.set(next_first_read_guess(guess, needed));
    }
    let checked = check_image_record(entry, record.bytes(), frame_start, frame_start, op_offset, kind, check);
    Ok(Some(checked.is_ok().then_some(record)))
}

thread_local! {
    /// Bytes this thread's next first read by read call fetches at once
    /// ([`read_checked_record`]): a little over the frames it read last,
    /// at most [`FIRST_READ_BYTES`]. The kernel's copy from the page cache
    /// is most of a read call's cost (about a quarter less time for the
    /// 4,000 rows of the `lifecycle_open` bench's first read, 302 bytes
    /// each, than when each read fetched 512), and a frame longer than the
    /// guess takes a second call for the rest.
    static FIRST_READ_GUESS: std::cell::Cell<usize> = const { std::cell::Cell::new(FIRST_READ_BYTES) };
}

/// [`FIRST_READ_GUESS`] after a read of a frame of `needed` bytes: the
/// frame and 32 bytes more, in whole 64-byte lines. It grows at once to a
/// longer frame and shrinks by a quarter of the difference a read, so that
/// a stream whose records vary in length rarely takes a second call.
fn next_first_read_guess(guess: usize, needed: usize) -> usize {
    let wanted = needed.min(FIRST_READ_BYTES).saturating_add(32).next_multiple_of(64).min(FIRST_READ_BYTES);
    if wanted >= guess { wanted } else { guess - (guess - wanted).div_ceil(4) }
}

/// Checks a record of frames the image covers against the checksum the
/// image recorded for it: a flipped bit in it (or in its frame's time) is
/// corruption naming the segment and the record's offset, never returned.
/// A covered record without a checksum cannot be: corruption too.
fn check_image_record(
    entry: &SegmentEntry,
    bytes: &[u8],
    base: usize,
    frame_start: usize,
    op_offset: usize,
    kind: RecordKind,
    check: RecordCheck<'_>,
) -> Result<()> {
    let corruption = |kind| Error::corruption(&entry.segment.path, op_offset as u64, kind);
    let expected = match check {
        RecordCheck::Image(expected, _) => expected,
        RecordCheck::ImageVerified(_) | RecordCheck::FrameChecked => return Ok(()),
        RecordCheck::Unknown => {
            return Err(corruption(CorruptionKind::IndexMismatch(
                "a record the image covers without its checksum".to_owned(),
            )));
        }
    };
    match record_crc_in(entry, bytes, base, frame_start, op_offset, kind) {
        Ok(found) if found == expected => {
            if let RecordCheck::Image(_, Some((section, seq))) = check {
                section.mark_verified(seq);
            }
            Ok(())
        }
        Ok(_) => Err(corruption(CorruptionKind::RecordChecksum)),
        Err(what) => Err(corruption(CorruptionKind::IndexMismatch(what.to_owned()))),
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

    /// The appends' lookups by `StreamKey` compare ids inline in words:
    /// for ids of every length up to past the inline ones, differing in any
    /// one byte or in length, they agree with `==`, and a map looked up by
    /// `StreamKey` finds exactly what a lookup by the id's bytes finds (the
    /// two hash alike).
    #[test]
    fn a_stream_key_finds_what_the_id_s_bytes_find_and_nothing_else() {
        let mut map = StreamMap::default();
        for len in 1..=24usize {
            let id: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            map.insert(Box::from(id.as_slice()), StreamState::new(Lsn(len as u64), 0));
        }
        for len in 1..=24usize {
            let id: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same_stream_id(&id, &id.clone()), "{len}");
            assert_eq!(map.get(&StreamKey(&id)).map(|s| s.since), map.get(id.as_slice()).map(|s| s.since));
            assert!(map.get(&StreamKey(&id)).is_some(), "{len}");
            for at in 0..len {
                let mut other = id.clone();
                other[at] ^= 0x40;
                assert!(!same_stream_id(&id, &other), "{len} at {at}");
                assert!(map.get(&StreamKey(&other)).is_none(), "{len} at {at}");
            }
            assert!(!same_stream_id(&id, &id[..len - 1]), "{len}");
            let mut longer = id.clone();
            longer.push(b'a');
            assert!(!same_stream_id(&id, &longer), "{len}");
        }
    }

    /// Recovery's scan checks and applies a frame of one entry with one
    /// lookup of its stream (`check_and_apply_frame`): it must refuse what
    /// `check_frame` refuses, leaving the index as it was, and build what
    /// `check_frame` then `apply_frame` build, for a new stream, a stream
    /// with entries, and around other frame kinds (a snapshot, a batch).
    #[test]
    fn check_and_apply_frame_agrees_with_check_frame_then_apply_frame() {
        use crate::frame::{OpRef, decode_frame, encode_frame};
        let fs = crate::sim::fs::SimFs::new();
        let (mut fused, mut apart) = (Index::new(Lsn(1)), Index::new(Lsn(1)));
        fused.push_segment(segment(&fs, 1, "fused"), crate::segment::SEGMENT_HEADER_BYTES);
        apart.push_segment(segment(&fs, 1, "apart"), crate::segment::SEGMENT_HEADER_BYTES);
        // Each frame: its kind and its operations' (kind, stream, sequence).
        type Ops = &'static [(RecordKind, &'static [u8], u64)];
        let frames: &[(FrameKind, Ops)] = &[
            (FrameKind::Entry, &[(RecordKind::Entry, b"a", 0)]),
            (FrameKind::Entry, &[(RecordKind::Entry, b"a", 1)]),
            (FrameKind::Entry, &[(RecordKind::Entry, b"a", 3)]),
            (FrameKind::Entry, &[(RecordKind::Entry, b"b", 1)]),
            (FrameKind::Entry, &[(RecordKind::Entry, b"b", 0)]),
            (FrameKind::Snapshot, &[(RecordKind::Snapshot, b"a", 1)]),
            (FrameKind::Batch, &[(RecordKind::Entry, b"a", 2), (RecordKind::Entry, b"b", 1)]),
            (FrameKind::Entry, &[(RecordKind::Entry, b"a", 2)]),
            (FrameKind::Entry, &[(RecordKind::Entry, b"a", 3)]),
        ];
        for (kind, ops) in frames {
            let lsn = fused.next_lsn();
            let ops: Vec<OpRef<'_>> = ops
                .iter()
                .enumerate()
                .map(|(i, &(kind, stream, seq))| OpRef {
                    kind,
                    stream,
                    seq: StreamSeq(seq),
                    lsn: Lsn(lsn.0 + i as u64),
                    payload: b"x",
                })
                .collect();
            let mut buf = Vec::new();
            let meta = crate::frame::FrameMeta { lsn, durable_lsn: lsn, timestamp_ms: 0 };
            encode_frame(&mut buf, &[1; 16], *kind, meta, &ops);
            let frame = decode_frame(&buf, &[1; 16], lsn).unwrap();
            let offset = fused.segments()[0].end_offset;
            let checked = apart.check_frame(&frame);
            if checked.is_ok() {
                apart.apply_frame(offset, &frame);
            }
            assert_eq!(
                fused.check_and_apply_frame(offset, &frame, frame.ops().next()),
                checked,
                "{kind:?} {:?}",
                ops[0].seq
            );
            assert_eq!(fused.differences(&apart), Vec::<String>::new(), "after {kind:?} {:?}", ops[0].seq);
        }
        assert_eq!(fused.stream(b"a").map(StreamState::next_seq), Some(StreamSeq(4)));
        assert_eq!(fused.stream(b"b").map(StreamState::next_seq), Some(StreamSeq(2)));
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

    /// The first read's guess grows at once to a longer frame, never past
    /// what one read call takes, shrinks back to a shorter run's frames,
    /// and over frames that cycle through lengths (266 to 506 bytes, as
    /// the parallel-read tests write) settles where each fits one call.
    #[test]
    fn the_first_read_guess_grows_at_once_shrinks_slowly_and_fits_cycling_lengths() {
        assert_eq!(next_first_read_guess(384, 467), 512);
        assert_eq!(next_first_read_guess(384, 5000), FIRST_READ_BYTES);
        assert_eq!(next_first_read_guess(512, usize::MAX), FIRST_READ_BYTES);
        let mut guess = FIRST_READ_BYTES;
        for _ in 0..40 {
            guess = next_first_read_guess(guess, 297);
        }
        assert_eq!(guess, 384, "a run of 297-byte frames");
        let mut second_calls = 0;
        for i in 0..700 {
            let needed = 266 + (i % 7) * 40;
            if i >= 7 && needed > guess {
                second_calls += 1;
            }
            guess = next_first_read_guess(guess, needed);
        }
        assert_eq!(second_calls, 0, "frames cycling through seven lengths");
    }

    #[test]
    fn record_loc_packs_segment_and_offset() {
        let loc = RecordLoc::new(70_000, 4_000_000_000);
        assert_eq!((loc.segment(), loc.offset()), (70_000, 4_000_000_000));
    }
}
