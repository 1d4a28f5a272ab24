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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLoc(u64);

const _: () = assert!(std::mem::size_of::<RecordLoc>() == 8);

impl RecordLoc {
    fn new(segment: usize, offset: usize) -> RecordLoc {
        let segment = u32::try_from(segment).expect("fewer than 2^32 segments");
        let offset = u32::try_from(offset).expect("segments are at most 4 GiB");
        RecordLoc((u64::from(segment) << 32) | u64::from(offset))
    }

    fn segment(self) -> usize {
        (self.0 >> 32) as usize
    }

    fn offset(self) -> usize {
        (self.0 & u64::from(u32::MAX)) as usize
    }
}

/// What the index knows of one stream.
#[derive(Debug, Default)]
pub struct StreamState {
    /// Live entries: `entries[i]` is sequence `i`.
    entries: Vec<RecordLoc>,
    /// The latest snapshot: the last sequence it covers, and where it is.
    snapshot: Option<(StreamSeq, RecordLoc)>,
}

impl StreamState {
    /// The sequence the next entry gets.
    pub fn next_seq(&self) -> StreamSeq {
        StreamSeq(self.entries.len() as u64)
    }

    /// The last sequence the latest snapshot covers.
    pub fn snapshot_seq(&self) -> Option<StreamSeq> {
        self.snapshot.map(|(seq, _)| seq)
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
    checkpoints: Vec<(Lsn, u32)>,
    frames: u32,
    last_frame_offset: Option<usize>,
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

/// Segments, streams and the visible end of the log.
#[derive(Debug, Default)]
pub struct Index {
    segments: Vec<SegmentEntry>,
    streams: HashMap<Box<[u8]>, StreamState>,
    next_lsn: Lsn,
    /// The `durable_lsn` of the last frame applied.
    last_durable_lsn: Lsn,
    /// Whether the last frame applied was a clean-close marker.
    ends_with_marker: bool,
    records: u64,
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

    /// The segments, oldest first.
    pub fn segments(&self) -> &[SegmentEntry] {
        &self.segments
    }

    /// The stream's state, if it has any.
    pub fn stream(&self, stream: &[u8]) -> Option<&StreamState> {
        self.streams.get(stream)
    }

    /// Number of streams the index holds.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
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

    /// Adds a segment at the end; its frames follow with [`Index::apply_frame`].
    /// A segment that starts where the last one does replaces it: the last
    /// took no LSN (it holds no record, at most a clean-close marker), and
    /// the new file was renamed over it.
    pub fn push_segment(&mut self, segment: Segment, end_offset: usize) {
        if let Some(last) = self.segments.last()
            && last.segment.header.first_lsn == segment.header.first_lsn
        {
            assert_eq!(self.next_lsn, segment.header.first_lsn, "only a segment that took no lsn is replaced");
            self.segments.pop();
        }
        self.segments.push(SegmentEntry {
            segment,
            end_offset,
            checkpoints: Vec::new(),
            frames: 0,
            last_frame_offset: None,
        });
    }

    /// Checks that a frame fits the streams it touches, without changing anything.
    /// Recovery reports a failure as corruption; the writer never builds such a frame.
    pub fn check_frame(&self, frame: &FrameView<'_>) -> Result<(), CorruptionKind> {
        // A batch may touch one stream several times, so follow its effects in order.
        let mut touched: Vec<(&[u8], u64, Option<StreamSeq>)> = Vec::new();
        for op in frame.ops() {
            let position = touched.iter().position(|(stream, _, _)| *stream == op.stream);
            let (next, snapshot) = match position {
                Some(i) => (touched[i].1, touched[i].2),
                None => self.streams.get(op.stream).map_or((0, None), |s| (s.next_seq().0, s.snapshot_seq())),
            };
            let inconsistent =
                |what: String| CorruptionKind::StreamInconsistent { stream: display_stream(op.stream), what };
            let (next, snapshot) = match op.kind {
                RecordKind::Entry if op.seq.0 != next => {
                    return Err(inconsistent(format!("entry at sequence {} where {next} was next", op.seq)));
                }
                RecordKind::Entry => (next + 1, snapshot),
                RecordKind::Snapshot if op.seq.0 >= next || snapshot.is_some_and(|s| s > op.seq) => {
                    return Err(inconsistent(format!("snapshot through sequence {} out of range", op.seq)));
                }
                RecordKind::Snapshot => (next, Some(op.seq)),
                RecordKind::Tombstone if op.seq.0 != next => {
                    return Err(inconsistent(format!("tombstone after sequence {} where {next} was next", op.seq)));
                }
                RecordKind::Tombstone => (0, None),
            };
            match position {
                Some(i) => touched[i] = (op.stream, next, snapshot),
                None => touched.push((op.stream, next, snapshot)),
            }
        }
        Ok(())
    }

    /// Records a checked frame at `frame_offset` of the last segment, and
    /// moves the visible end past it. The frame must have passed
    /// [`Index::check_frame`] and follow the visible end.
    pub fn apply_frame(&mut self, frame_offset: usize, frame: &FrameView<'_>) {
        self.place_frame(frame_offset, frame);
        let segment_number = self.segments.len() - 1;
        let body_offset = frame_offset + FRAME_HEADER_BYTES;
        for op in frame.ops() {
            let loc = RecordLoc::new(segment_number, body_offset + op.offset_in_body);
            if op.kind == RecordKind::Tombstone {
                self.streams.remove(op.stream);
                continue;
            }
            let state = match self.streams.get_mut(op.stream) {
                Some(state) => state,
                None => self.streams.entry(Box::from(op.stream)).or_default(),
            };
            if op.kind == RecordKind::Snapshot {
                state.snapshot = Some((op.seq, loc));
            } else {
                debug_assert_eq!(op.seq, state.next_seq());
                state.entries.push(loc);
            }
        }
    }

    /// Records where a frame is and moves the visible end past it, leaving
    /// the streams alone: [`Index::apply_frame`] without the stream updates.
    /// The read-only verifier uses it alone after corruption, when the
    /// streams' history before the damage is unknown.
    pub fn place_frame(&mut self, frame_offset: usize, frame: &FrameView<'_>) {
        assert_eq!(frame.meta.lsn, self.next_lsn, "frames are applied in lsn order");
        let entry = self.segments.last_mut().expect("a segment to apply into");
        assert_eq!(frame_offset, entry.end_offset, "frames are applied in file order");
        if entry.frames.is_multiple_of(CHECKPOINT_FRAMES) {
            let offset = u32::try_from(frame_offset).expect("segments are at most 4 GiB");
            entry.checkpoints.push((frame.meta.lsn, offset));
        }
        entry.frames += 1;
        entry.last_frame_offset = Some(frame_offset);
        entry.end_offset = frame_offset + frame.total_bytes();
        self.records += u64::from(frame.lsn_count);
        self.next_lsn = frame.next_lsn();
        self.last_durable_lsn = frame.meta.durable_lsn;
        self.ends_with_marker = frame.kind == FrameKind::Marker;
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
        }
        self.streams.shrink_to_fit();
    }

    /// Sizes of the index.
    pub fn stats(&self) -> IndexStats {
        let mut stats = IndexStats { streams: self.streams.len(), ..IndexStats::default() };
        for (stream, state) in &self.streams {
            stats.entries += state.entries.len() as u64;
            stats.entry_bytes += state.entries.capacity() * std::mem::size_of::<RecordLoc>();
            stats.stream_id_bytes += stream.len();
        }
        let per_stream = std::mem::size_of::<(Box<[u8]>, StreamState)>() + 1;
        stats.stream_overhead_bytes = self.streams.capacity() * per_stream;
        stats.checkpoint_bytes =
            self.segments.iter().map(|s| s.checkpoints.capacity() * std::mem::size_of::<(Lsn, u32)>()).sum();
        stats
    }

    /// The latest snapshot of a stream and the live entries after it.
    pub fn read_stream(&self, stream: &[u8]) -> Result<StreamRead> {
        let Some(state) = self.streams.get(stream) else {
            return Ok(StreamRead::default());
        };
        let snapshot = match state.snapshot {
            Some((seq, loc)) => Some(self.read_op(loc, RecordKind::Snapshot, stream, seq)?),
            None => None,
        };
        let from = snapshot.as_ref().map_or(0, |s| s.seq.0 + 1);
        let entries = self.read_entries(stream, state, StreamSeq(from))?;
        Ok(StreamRead { snapshot, entries })
    }

    /// Live entries of a stream from `from` on, snapshots aside.
    pub fn read_stream_from(&self, stream: &[u8], from: StreamSeq) -> Result<Vec<Record>> {
        match self.streams.get(stream) {
            Some(state) => self.read_entries(stream, state, from),
            None => Ok(Vec::new()),
        }
    }

    fn read_entries(&self, stream: &[u8], state: &StreamState, from: StreamSeq) -> Result<Vec<Record>> {
        let start = usize::try_from(from.0).unwrap_or(usize::MAX).min(state.entries.len());
        let mut records = Vec::with_capacity(state.entries.len() - start);
        for (i, loc) in state.entries[start..].iter().enumerate() {
            records.push(self.read_op(*loc, RecordKind::Entry, stream, StreamSeq((start + i) as u64))?);
        }
        Ok(records)
    }

    /// Reads the operation at `loc` and checks that it is the one the index
    /// expects there (paired with the checks made before it was written).
    fn read_op(&self, loc: RecordLoc, kind: RecordKind, stream: &[u8], seq: StreamSeq) -> Result<Record> {
        let entry = &self.segments[loc.segment()];
        self.with_op(loc, kind, stream, seq, |op| {
            let stream_start = loc.offset() + OP_HEADER_BYTES;
            Record {
                lsn: op.lsn,
                stream: entry.segment.map.slice(stream_start, op.stream.len()),
                seq,
                kind,
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
        let entry = &self.segments[loc.segment()];
        let (offset, end) = (loc.offset(), entry.end_offset);
        let owned;
        let (bytes, base) = match entry.segment.map.as_slice() {
            Some(map) => (map, 0),
            None => {
                owned = entry.segment.map.slice(offset, end.saturating_sub(offset));
                (owned.as_ref(), offset)
            }
        };
        match op_at(bytes, offset - base, end - base, stream, seq) {
            Ok((lsn, stream, payload)) => Ok(f(RecordRef { lsn, stream, seq, kind, payload })),
            Err(what) => Err(Error::corruption(
                &entry.segment.path,
                offset as u64,
                CorruptionKind::IndexMismatch(what.to_owned()),
            )),
        }
    }

    /// Calls `f` on the stream's latest snapshot, if any, then on each entry
    /// after it, in order. Returns how many records `f` saw.
    pub fn visit_stream(&self, stream: &[u8], mut f: impl FnMut(RecordRef<'_>)) -> Result<usize> {
        let Some(state) = self.streams.get(stream) else {
            return Ok(0);
        };
        let mut seen = 0;
        let mut from = 0;
        if let Some((seq, loc)) = state.snapshot {
            self.with_op(loc, RecordKind::Snapshot, stream, seq, &mut f)?;
            seen += 1;
            from = usize::try_from(seq.0 + 1).unwrap_or(usize::MAX).min(state.entries.len());
        }
        for (i, loc) in state.entries[from..].iter().enumerate() {
            self.with_op(*loc, RecordKind::Entry, stream, StreamSeq((from + i) as u64), &mut f)?;
            seen += 1;
        }
        Ok(seen)
    }

    /// The record at `lsn`, if it is in the log.
    pub fn read_lsn(&self, lsn: Lsn) -> Result<Option<Record>> {
        let mut out = Vec::new();
        self.read_all(Lsn(lsn.0.saturating_sub(1)), 1, &mut out)?;
        Ok(out.pop().filter(|record| record.lsn == lsn))
    }

    /// Appends to `out` up to `limit` records after `after`, in LSN order.
    pub fn read_all(&self, after: Lsn, limit: usize, out: &mut Vec<Record>) -> Result<()> {
        let want = Lsn(after.0.saturating_add(1));
        if limit == 0 || want >= self.next_lsn || self.segments.is_empty() {
            return Ok(());
        }
        let first = self.segments.partition_point(|s| s.segment.header.first_lsn <= want).saturating_sub(1);
        for entry in &self.segments[first..] {
            let checkpoint = entry.checkpoints.partition_point(|&(lsn, _)| lsn <= want).saturating_sub(1);
            let Some(&(lsn, offset)) = entry.checkpoints.get(checkpoint) else {
                continue;
            };
            self.read_frames(entry, lsn, offset as usize, want, limit, out)?;
            if out.len() >= limit {
                break;
            }
        }
        Ok(())
    }

    fn read_frames(
        &self,
        entry: &SegmentEntry,
        mut lsn: Lsn,
        mut offset: usize,
        want: Lsn,
        limit: usize,
        out: &mut Vec<Record>,
    ) -> Result<()> {
        // From the segment's start, so that offsets (and marker alignment) are absolute.
        let region = entry.segment.map.slice(0, entry.end_offset);
        let log_id = entry.segment.header.log_id;
        while offset < entry.end_offset && out.len() < limit {
            let (at, frame) = decode_frame_at(&region, offset, &log_id, lsn).map_err(|defect| {
                Error::corruption(&entry.segment.path, offset as u64, CorruptionKind::BadRecord(defect.describe()))
            })?;
            offset = at;
            let body_start = at + FRAME_HEADER_BYTES;
            for op in frame.ops().filter(|op| op.lsn >= want) {
                if out.len() >= limit {
                    break;
                }
                let stream_start = body_start + op.offset_in_body + OP_HEADER_BYTES;
                let payload_start = body_start + op.payload_offset_in_body;
                out.push(Record {
                    lsn: op.lsn,
                    stream: region.slice(stream_start..stream_start + op.stream.len()),
                    seq: op.seq,
                    kind: op.kind,
                    payload: region.slice(payload_start..payload_start + op.payload.len()),
                });
            }
            lsn = frame.next_lsn();
            offset += frame.total_bytes();
        }
        Ok(())
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
        Segment { header, path, map: file.map().unwrap(), file }
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

    #[test]
    fn record_loc_packs_segment_and_offset() {
        let loc = RecordLoc::new(70_000, 4_000_000_000);
        assert_eq!((loc.segment(), loc.offset()), (70_000, 4_000_000_000));
    }
}
