//! Record framing and checksums: the bytes of one record, with no I/O.
//!
//! Everything here is pure: [`encode_frame`] appends a frame to a buffer and
//! [`decode_frame`] checks one in a byte slice. `segments-format.md` is the
//! contract these functions implement; the constants below are its tables.
//!
//! ```text
//! // Format: { crc | body_bytes | lsn | durable_lsn | timestamp_ms | kind | flags | reserved | lsn_count } body
//! // Op:     { stream_bytes | payload_bytes | seq | lsn } stream payload
//! ```

use std::cell::Cell;

use crate::types::{Lsn, StreamSeq};

/// Bytes in a frame header.
pub const FRAME_HEADER_BYTES: usize = 40;
/// Where a frame header's `timestamp_ms` (u64) is.
pub const FRAME_TIMESTAMP_AT: usize = 4 + 4 + 8 + 8;
/// Bytes in the fixed part of an operation inside a frame body.
pub const OP_HEADER_BYTES: usize = 22;
/// Bytes an operation takes in a batch body beyond [`OP_HEADER_BYTES`]: its kind.
pub const BATCH_OP_KIND_BYTES: usize = 1;
/// Longest stream id the format allows, in bytes.
pub const STREAM_ID_BYTES_MAX: usize = 1024;
/// Largest frame body the format allows, in bytes (a log may set a lower limit).
pub const FRAME_BODY_BYTES_MAX: usize = 1 << 30;
/// Most operations one batch frame may carry.
pub const BATCH_OPS_MAX: usize = 65_536;
/// A clean-close marker starts at a multiple of this offset, so that one
/// damaged sector cannot destroy both the last record and the marker that
/// proves it was durable.
pub const MARKER_ALIGN_BYTES: usize = 512;
/// Space every segment keeps free after its data frames for a marker.
pub const MARKER_RESERVE_BYTES: usize = MARKER_ALIGN_BYTES - 1 + FRAME_HEADER_BYTES;

/// Where a marker goes when the frames end at `end`: the next multiple of
/// [`MARKER_ALIGN_BYTES`]; the bytes between stay zero.
pub fn marker_offset(end: usize) -> usize {
    end.next_multiple_of(MARKER_ALIGN_BYTES)
}

const _: () = assert!(FRAME_HEADER_BYTES == 4 + 4 + 8 + 8 + 8 + 1 + 1 + 2 + 4);
const _: () = assert!(OP_HEADER_BYTES == 2 + 4 + 8 + 8);
const _: () = assert!(STREAM_ID_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(FRAME_BODY_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(BATCH_OPS_MAX <= u32::MAX as usize);

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// One stream entry.
    Entry = 1,
    /// One snapshot of a stream.
    Snapshot = 2,
    /// One stream tombstone (the stream was cleared).
    Tombstone = 3,
    /// Several operations, committed together.
    Batch = 4,
    /// A marker with no operations, written at a clean close: it proves that
    /// everything before it was durable.
    Marker = 5,
    /// A range of LSNs that holds no records: written when salvage cut
    /// records whose LSNs may have been acknowledged, so that no LSN is ever
    /// handed out twice. Its body is the LSN after the range.
    Gap = 6,
    /// One prune of a stream: its entries before a sequence, and its
    /// snapshots before an LSN, stop being live.
    Prune = 7,
    /// One stream base, written only by compaction into a compacted
    /// segment: the stream's history before it was reclaimed, and it
    /// continues at a sequence.
    Base = 8,
}

impl FrameKind {
    fn from_byte(byte: u8) -> Option<FrameKind> {
        match byte {
            1 => Some(FrameKind::Entry),
            2 => Some(FrameKind::Snapshot),
            3 => Some(FrameKind::Tombstone),
            4 => Some(FrameKind::Batch),
            5 => Some(FrameKind::Marker),
            6 => Some(FrameKind::Gap),
            7 => Some(FrameKind::Prune),
            8 => Some(FrameKind::Base),
            _ => None,
        }
    }
}

/// The kind of one operation: what a record means for its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// The next entry of a stream, at its next sequence.
    Entry,
    /// The state of a stream up to and including a sequence.
    Snapshot,
    /// The stream was cleared: it reads empty and its sequence restarts at 0.
    Tombstone,
    /// The stream's entries before a sequence (its `seq`) and its snapshots
    /// before an LSN (its payload, an 8-byte LSN) stopped being live.
    Prune,
    /// Written by compaction only: what came before in the stream was
    /// reclaimed, and the stream continues at its `seq`.
    Base,
}

/// Bytes in a prune's payload: the LSN before which the stream's snapshots
/// stop being live.
pub const PRUNE_PAYLOAD_BYTES: usize = 8;

/// The payload of a prune that drops the stream's snapshots before `lsn`.
pub fn prune_payload(snapshots_before: Lsn) -> [u8; PRUNE_PAYLOAD_BYTES] {
    snapshots_before.0.to_le_bytes()
}

/// The LSN before which a prune drops snapshots, from its checked payload.
pub fn prune_snapshots_before(payload: &[u8]) -> Lsn {
    Lsn(read_u64(payload, 0))
}

impl RecordKind {
    /// The frame kind that holds this operation alone.
    pub fn frame_kind(self) -> FrameKind {
        match self {
            RecordKind::Entry => FrameKind::Entry,
            RecordKind::Snapshot => FrameKind::Snapshot,
            RecordKind::Tombstone => FrameKind::Tombstone,
            RecordKind::Prune => FrameKind::Prune,
            RecordKind::Base => FrameKind::Base,
        }
    }

    /// Whether the operation carries caller data (an entry or a snapshot),
    /// rather than saying what is live.
    pub fn holds_data(self) -> bool {
        matches!(self, RecordKind::Entry | RecordKind::Snapshot)
    }

    fn from_byte(byte: u8) -> Option<RecordKind> {
        RecordKind::alone_in(FrameKind::from_byte(byte)?)
    }

    /// The operation a frame of this kind holds alone; `None` for a batch,
    /// a marker and a gap.
    fn alone_in(kind: FrameKind) -> Option<RecordKind> {
        match kind {
            FrameKind::Entry => Some(RecordKind::Entry),
            FrameKind::Snapshot => Some(RecordKind::Snapshot),
            FrameKind::Tombstone => Some(RecordKind::Tombstone),
            FrameKind::Prune => Some(RecordKind::Prune),
            FrameKind::Base => Some(RecordKind::Base),
            FrameKind::Batch | FrameKind::Marker | FrameKind::Gap => None,
        }
    }

    /// The name used by the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Entry => "entry",
            RecordKind::Snapshot => "snapshot",
            RecordKind::Tombstone => "tombstone",
            RecordKind::Prune => "prune",
            RecordKind::Base => "base",
        }
    }
}

/// One operation to encode.
#[derive(Clone, Copy, Debug)]
pub struct OpRef<'a> {
    /// What the operation does.
    pub kind: RecordKind,
    /// The stream it belongs to.
    pub stream: &'a [u8],
    /// Entry: its sequence. Snapshot: the last sequence it covers.
    /// Tombstone: the stream's next sequence before the clear.
    pub seq: StreamSeq,
    /// Its position in the log.
    pub lsn: Lsn,
    /// The caller's bytes (empty for a tombstone).
    pub payload: &'a [u8],
}

/// The fields of a frame header other than the checksum and the body length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameMeta {
    /// LSN of the frame's first operation (or, for a marker, the next LSN).
    pub lsn: Lsn,
    /// Every LSN below this one was durable when the frame was written.
    pub durable_lsn: Lsn,
    /// Wall-clock time of the write, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

/// Bytes in the body of a gap frame: the LSN after the gap.
pub const GAP_BODY_BYTES: usize = 8;

/// Appends a gap frame to `buf`: LSNs `meta.lsn .. end` hold no records.
pub fn encode_gap_frame(buf: &mut Vec<u8>, log_id: &[u8; 16], meta: FrameMeta, end: Lsn) {
    assert!(end > meta.lsn, "a gap covers at least one lsn");
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]); // checksum, filled in below
    buf.extend_from_slice(&(GAP_BODY_BYTES as u32).to_le_bytes());
    buf.extend_from_slice(&meta.lsn.0.to_le_bytes());
    buf.extend_from_slice(&meta.durable_lsn.0.to_le_bytes());
    buf.extend_from_slice(&meta.timestamp_ms.to_le_bytes());
    buf.push(FrameKind::Gap as u8);
    buf.push(0); // flags
    buf.extend_from_slice(&[0; 2]); // reserved
    buf.extend_from_slice(&0u32.to_le_bytes()); // lsn_count
    buf.extend_from_slice(&end.0.to_le_bytes());
    let crc = frame_checksum(log_id, &buf[start + 4..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Bytes a frame with these operations takes on disk.
pub fn frame_bytes(kind: FrameKind, ops: &[OpRef<'_>]) -> usize {
    FRAME_HEADER_BYTES + body_bytes(kind, ops)
}

fn body_bytes(kind: FrameKind, ops: &[OpRef<'_>]) -> usize {
    let per_op = if kind == FrameKind::Batch { BATCH_OP_KIND_BYTES } else { 0 };
    ops.iter().map(|op| per_op + OP_HEADER_BYTES + op.stream.len() + op.payload.len()).sum()
}

/// Appends one frame to `buf`.
///
/// A frame of kind `Entry`, `Snapshot` or `Tombstone` holds exactly one
/// operation of that kind; a `Batch` holds one or more; a `Marker` none. The
/// caller has checked the limits: this asserts them, because breaking one here
/// is a bug in Annals, not bad input.
pub fn encode_frame(buf: &mut Vec<u8>, log_id: &[u8; 16], kind: FrameKind, meta: FrameMeta, ops: &[OpRef<'_>]) {
    encode_frame_from(buf, &LogIdChecksum::of(log_id), kind, meta, ops);
}

/// [`encode_frame`] with the log id's checksum computed once (the writer's).
pub fn encode_frame_from(
    buf: &mut Vec<u8>,
    log_id: &LogIdChecksum,
    kind: FrameKind,
    meta: FrameMeta,
    ops: &[OpRef<'_>],
) {
    match kind {
        FrameKind::Batch => assert!(!ops.is_empty() && ops.len() <= BATCH_OPS_MAX),
        FrameKind::Marker => assert!(ops.is_empty()),
        FrameKind::Gap => panic!("gaps are encoded by encode_gap_frame"),
        _ => assert!(ops.len() == 1 && ops[0].kind.frame_kind() == kind),
    }
    let body = body_bytes(kind, ops);
    assert!(body <= FRAME_BODY_BYTES_MAX);
    let start = buf.len();
    buf.reserve(FRAME_HEADER_BYTES + body);
    // Each header is laid out in an array and appended whole: one copy
    // rather than one capacity check and copy per field.
    let mut header = [0u8; FRAME_HEADER_BYTES];
    // header[0..4]: the checksum, filled in below.
    header[4..8].copy_from_slice(&u32::try_from(body).expect("asserted above").to_le_bytes());
    header[8..16].copy_from_slice(&meta.lsn.0.to_le_bytes());
    header[16..24].copy_from_slice(&meta.durable_lsn.0.to_le_bytes());
    header[FRAME_TIMESTAMP_AT..FRAME_TIMESTAMP_AT + 8].copy_from_slice(&meta.timestamp_ms.to_le_bytes());
    header[32] = kind as u8;
    // header[33]: flags; header[34..36]: reserved.
    header[36..40].copy_from_slice(&u32::try_from(ops.len()).expect("asserted above").to_le_bytes());
    if let [op] = ops
        && kind != FrameKind::Batch
    {
        // A frame of one operation (nearly every append): the frame's and
        // the operation's headers are laid out together and appended whole.
        let mut head = [0u8; FRAME_HEADER_BYTES + OP_HEADER_BYTES];
        head[..FRAME_HEADER_BYTES].copy_from_slice(&header);
        head[FRAME_HEADER_BYTES..].copy_from_slice(&op_header(op, meta.lsn));
        buf.extend_from_slice(&head);
        buf.extend_from_slice(op.stream);
        buf.extend_from_slice(op.payload);
    } else {
        buf.extend_from_slice(&header);
        for (index, op) in ops.iter().enumerate() {
            if kind == FrameKind::Batch {
                buf.push(op.kind.frame_kind() as u8);
            }
            buf.extend_from_slice(&op_header(op, Lsn(meta.lsn.0 + index as u64)));
            buf.extend_from_slice(op.stream);
            buf.extend_from_slice(op.payload);
        }
    }
    debug_assert_eq!(buf.len() - start, FRAME_HEADER_BYTES + body);
    let crc = log_id.frame_checksum(&buf[start + 4..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The fixed part of `op`, which must be at `lsn`; asserts the stream id's
/// length (the caller checked it: a bad one is a bug in Annals).
#[inline(always)]
fn op_header(op: &OpRef<'_>, lsn: Lsn) -> [u8; OP_HEADER_BYTES] {
    assert!(!op.stream.is_empty() && op.stream.len() <= STREAM_ID_BYTES_MAX);
    assert_eq!(op.lsn, lsn);
    let mut op_header = [0u8; OP_HEADER_BYTES];
    op_header[0..2].copy_from_slice(&u16::try_from(op.stream.len()).expect("asserted above").to_le_bytes());
    op_header[2..6].copy_from_slice(&u32::try_from(op.payload.len()).expect("body bounded").to_le_bytes());
    op_header[6..14].copy_from_slice(&op.seq.0.to_le_bytes());
    op_header[14..22].copy_from_slice(&op.lsn.0.to_le_bytes());
    op_header
}

/// The CRC-32 of a log's id, where every frame's checksum starts (it covers
/// the log id first): a writer computes it once, not for every frame. It is
/// held as a hasher ready to continue, so that a frame's checksum does not
/// also ask the CPU's features again (crc32fast's `Hasher::new*` does).
#[derive(Clone)]
pub struct LogIdChecksum(crc32fast::Hasher);

impl LogIdChecksum {
    /// The checksum of `log_id`.
    pub fn of(log_id: &[u8; 16]) -> LogIdChecksum {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(log_id);
        LogIdChecksum(hasher)
    }

    /// [`frame_checksum`] of this log id: the CRC continued over the rest.
    fn frame_checksum(&self, header_and_body: &[u8]) -> u32 {
        let mut hasher = self.0.clone();
        hasher.update(header_and_body);
        hasher.finalize()
    }
}

impl std::fmt::Debug for LogIdChecksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogIdChecksum({:#010x})", self.0.clone().finalize())
    }
}

thread_local! {
    /// The checksum of the log id whose frame this thread checked last: a
    /// reader checks frame after frame of one log (recovery's scan, the
    /// close's image), and continuing from it saves, per frame, the CRC of
    /// the id and crc32fast's look-up of the CPU's features (about a
    /// third of a 300-byte frame's checksum).
    static LAST_LOG_ID_CHECKSUM: Cell<Option<([u8; 16], LogIdChecksum)>> = const { Cell::new(None) };
}

/// CRC-32 (IEEE) over the log id, the header after the checksum field, and the body.
fn frame_checksum(log_id: &[u8; 16], header_and_body: &[u8]) -> u32 {
    let seed = LAST_LOG_ID_CHECKSUM.try_with(|last| {
        let seed = match last.take() {
            Some((id, seed)) if id == *log_id => seed,
            _ => LogIdChecksum::of(log_id),
        };
        last.set(Some((*log_id, seed.clone())));
        seed
    });
    // A thread that is exiting has no cache left: the id is hashed here.
    seed.unwrap_or_else(|_| LogIdChecksum::of(log_id)).frame_checksum(header_and_body)
}

/// Why bytes are not a valid frame at a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameDefect {
    /// The header is all zeros: written data ends here.
    Zeroed,
    /// Fewer bytes remain than the header or the body needs.
    Truncated,
    /// The checksum does not match.
    Checksum,
    /// The header or body is malformed although the checksum matched, or
    /// a header field is out of range.
    Malformed(&'static str),
    /// A valid frame, but not at the LSN expected here.
    UnexpectedLsn {
        /// The LSN the log needs next.
        expected: Lsn,
        /// The LSN the frame holds.
        found: Lsn,
    },
}

impl FrameDefect {
    /// A sentence fragment for reports.
    pub fn describe(&self) -> String {
        match self {
            FrameDefect::Zeroed => "zeroed frame header".to_owned(),
            FrameDefect::Truncated => "frame runs past the end of the file".to_owned(),
            FrameDefect::Checksum => "frame checksum mismatch".to_owned(),
            FrameDefect::Malformed(what) => format!("malformed frame: {what}"),
            FrameDefect::UnexpectedLsn { expected, found } => {
                format!("frame has lsn {found}, expected {expected}")
            }
        }
    }
}

/// A frame that passed every check, borrowed from the bytes it was read from.
#[derive(Clone, Copy, Debug)]
pub struct FrameView<'a> {
    /// The frame's kind.
    pub kind: FrameKind,
    /// Its header fields.
    pub meta: FrameMeta,
    /// How many LSNs it occupies (its operation count).
    pub lsn_count: u32,
    /// Its body.
    pub body: &'a [u8],
}

impl<'a> FrameView<'a> {
    /// Bytes the frame takes on disk.
    pub fn total_bytes(&self) -> usize {
        FRAME_HEADER_BYTES + self.body.len()
    }

    /// The LSN after the frame's last operation (for a gap, after the range it covers).
    pub fn next_lsn(&self) -> Lsn {
        if self.kind == FrameKind::Gap {
            // Checked at decode: the body is eight bytes holding an LSN past `lsn`.
            return Lsn(read_u64(self.body, 0));
        }
        Lsn(self.meta.lsn.0 + u64::from(self.lsn_count))
    }

    /// The frame's operations, in LSN order. The body was fully checked by
    /// [`decode_frame`], so this cannot fail.
    pub fn ops(&self) -> OpIter<'a> {
        OpIter { kind: self.kind, body: self.body, offset: 0, remaining: self.lsn_count }
    }
}

/// One operation inside a checked frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpView<'a> {
    /// What it does.
    pub kind: RecordKind,
    /// The stream.
    pub stream: &'a [u8],
    /// Its sequence (see [`OpRef::seq`]).
    pub seq: StreamSeq,
    /// Its LSN.
    pub lsn: Lsn,
    /// The caller's bytes.
    pub payload: &'a [u8],
    /// Offset of the operation's header (after any batch kind byte) from the
    /// start of the frame body.
    pub offset_in_body: usize,
    /// Offset of the payload from the start of the frame body.
    pub payload_offset_in_body: usize,
}

/// Iterator over the operations of a checked frame.
#[derive(Clone, Debug)]
pub struct OpIter<'a> {
    kind: FrameKind,
    body: &'a [u8],
    offset: usize,
    remaining: u32,
}

impl<'a> Iterator for OpIter<'a> {
    type Item = OpView<'a>;

    // Inlined into the loops of the index's publication and of recovery,
    // which take every operation of a frame: a call per operation that
    // passes the whole view through memory cost as much as parsing it.
    #[inline]
    fn next(&mut self) -> Option<OpView<'a>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let (op, next) = parse_op(self.kind, self.body, self.offset).expect("frame body was checked at decode");
        self.offset = next;
        Some(op)
    }
}

fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().expect("two bytes"))
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

/// Parses the operation at `offset` of a frame body; returns it and the offset after it.
fn parse_op(kind: FrameKind, body: &[u8], offset: usize) -> Result<(OpView<'_>, usize), &'static str> {
    parse_op_inline(kind, body, offset)
}

/// [`parse_op`], inlined into [`check_frame_ops`] and so into recovery's
/// scan, where the operation it parses is handed to the index in
/// registers. (Inlined into the index's publication too, through
/// [`OpIter`], it made that dearer.)
#[inline(always)]
fn parse_op_inline(kind: FrameKind, body: &[u8], offset: usize) -> Result<(OpView<'_>, usize), &'static str> {
    let mut at = offset;
    let op_kind = if kind == FrameKind::Batch {
        let byte = *body.get(at).ok_or("batch operation runs past the body")?;
        at += BATCH_OP_KIND_BYTES;
        RecordKind::from_byte(byte).ok_or("unknown operation kind in batch")?
    } else {
        RecordKind::alone_in(kind).ok_or("frame kind holds no operation")?
    };
    // The fixed part taken as one array: its fields are then read without a
    // bounds check each (this runs for every operation recovery scans and
    // the writer publishes).
    let header: &[u8; OP_HEADER_BYTES] = body
        .get(at..at + OP_HEADER_BYTES)
        .and_then(|header| header.try_into().ok())
        .ok_or("operation header runs past the body")?;
    let OpHeader { stream_bytes, payload_bytes, seq, lsn } = decode_op_header(header);
    let stream_start = at + OP_HEADER_BYTES;
    if stream_bytes == 0 || stream_bytes > STREAM_ID_BYTES_MAX {
        return Err("stream id length out of range");
    }
    let payload_start = stream_start + stream_bytes;
    let end = payload_start.checked_add(payload_bytes).ok_or("payload length overflows")?;
    if end > body.len() {
        return Err("operation runs past the body");
    }
    match op_kind {
        RecordKind::Tombstone | RecordKind::Base if payload_bytes != 0 => {
            return Err("tombstone or base with a payload");
        }
        RecordKind::Prune if payload_bytes != PRUNE_PAYLOAD_BYTES => {
            return Err("prune whose payload is not one lsn");
        }
        RecordKind::Base if kind == FrameKind::Batch => return Err("base inside a batch"),
        _ => {}
    }
    let op = OpView {
        kind: op_kind,
        stream: &body[stream_start..payload_start],
        seq,
        lsn,
        payload: &body[payload_start..end],
        offset_in_body: at,
        payload_offset_in_body: payload_start,
    };
    Ok((op, end))
}

/// Checks the frame at the start of `bytes`.
///
/// `expected_lsn` is the LSN the log needs next. The body length read from
/// the header is bounded by what the format allows ([`FRAME_BODY_BYTES_MAX`])
/// and by the bytes given (the rest of the file) before anything is sliced
/// by it; never by a log's `record_bytes_max`, which is a policy for what is
/// written next, not a property of what is on disk.
///
/// The engine itself checks frames where they lie in a segment
/// ([`decode_frame_at`]); this is the frame format's own entry point, for
/// the command, tests and fuzz targets through the `internals` feature.
#[cfg_attr(not(any(test, feature = "internals")), allow(dead_code))]
pub fn decode_frame<'a>(bytes: &'a [u8], log_id: &[u8; 16], expected_lsn: Lsn) -> Result<FrameView<'a>, FrameDefect> {
    at_lsn(decode_frame_anywhere(bytes, log_id)?, expected_lsn)
}

/// `frame`, if it starts at `expected` LSN.
#[inline]
fn at_lsn(frame: FrameView<'_>, expected: Lsn) -> Result<FrameView<'_>, FrameDefect> {
    if frame.meta.lsn != expected {
        return Err(FrameDefect::UnexpectedLsn { expected, found: frame.meta.lsn });
    }
    Ok(frame)
}

/// Checks the frame at `offset` of `bytes` (a segment) like [`decode_frame`],
/// and also accepts zero padding up to the next marker boundary followed by
/// a clean-close marker at the expected LSN. Returns where the frame starts.
pub fn decode_frame_at<'a>(
    bytes: &'a [u8],
    offset: usize,
    log_id: &[u8; 16],
    expected_lsn: Lsn,
) -> Result<(usize, FrameView<'a>), FrameDefect> {
    frame_at(bytes, offset, FrameChecks::Whole(Seed::Id(log_id)), expected_lsn)
}

/// [`decode_frame_at`] with the log id's checksum computed once by a caller
/// that checks frame after frame of one segment (recovery's scan): each
/// frame's checksum goes on from it.
///
/// The operations' layout is left to the caller, which must check it with
/// [`check_frame_ops`] before it takes anything from the body: that check
/// returns the first operation it parsed, which the scan then indexes
/// without parsing it a second time. A frame that passes its checksum
/// starts with a header that is not all zeros, so no clean-close marker
/// can be found after padding where it is: leaving its operations to the
/// caller changes no outcome of this call but the defect's.
pub fn decode_frame_at_from<'a>(
    bytes: &'a [u8],
    offset: usize,
    log_id: &LogIdChecksum,
    expected_lsn: Lsn,
) -> Result<(usize, FrameView<'a>), FrameDefect> {
    frame_at(bytes, offset, FrameChecks::Header(Seed::Checksum(log_id)), expected_lsn)
}

// Inlined into both callers, so that the frame is built where they take it
// rather than moved out of a result at each level (a tenth of a scanned
// frame's work besides its checksum).
#[inline(always)]
fn frame_at<'a>(
    bytes: &'a [u8],
    offset: usize,
    checks: FrameChecks<'_>,
    expected_lsn: Lsn,
) -> Result<(usize, FrameView<'a>), FrameDefect> {
    let seed = match checks {
        FrameChecks::Whole(seed) | FrameChecks::Header(seed) => seed,
        FrameChecks::OwnHeader => unreachable!("a frame read from a file has its checksum checked"),
    };
    match parse_frame(&bytes[offset..], checks).and_then(|frame| at_lsn(frame, expected_lsn)) {
        Ok(frame) => Ok((offset, frame)),
        // The padding may be shorter than a frame header: then the 40 bytes
        // read here run into the marker and are not all zeros.
        Err(defect) => match marker_after_padding(bytes, offset, seed) {
            Some((at, frame)) if frame.meta.lsn == expected_lsn => Ok((at, frame)),
            _ => Err(defect),
        },
    }
}

/// A clean-close marker at the next multiple of [`MARKER_ALIGN_BYTES`]
/// after `offset`, with zeros from `offset` up to it, and where it starts.
pub fn padded_marker_at<'a>(bytes: &'a [u8], offset: usize, log_id: &[u8; 16]) -> Option<(usize, FrameView<'a>)> {
    marker_after_padding(bytes, offset, Seed::Id(log_id))
}

#[inline(never)]
fn marker_after_padding<'a>(bytes: &'a [u8], offset: usize, seed: Seed<'_>) -> Option<(usize, FrameView<'a>)> {
    let at = marker_offset(offset);
    if at <= offset || at >= bytes.len() || bytes[offset..at].iter().any(|&b| b != 0) {
        return None;
    }
    let frame = parse_frame(&bytes[at..], FrameChecks::Whole(seed)).ok()?;
    (frame.kind == FrameKind::Marker).then_some((at, frame))
}

/// Checks the frame at the start of `bytes` without knowing which LSN belongs
/// there: recovery uses it to look for valid frames past a damaged one.
pub fn decode_frame_anywhere<'a>(bytes: &'a [u8], log_id: &[u8; 16]) -> Result<FrameView<'a>, FrameDefect> {
    parse_frame(bytes, FrameChecks::Whole(Seed::Id(log_id)))
}

/// [`decode_frame`] for a frame the writer itself encoded into `bytes` and
/// has not let out of its hands: the header's fields are checked; the
/// checksum and the operations' layout only in debug builds. Never for
/// bytes read back from a file.
///
/// In release builds the operations are not walked here because the one
/// caller walks them next ([`FrameView::ops`], to publish them), and that
/// walk checks each operation's bounds and kind again and panics on a
/// malformed one; their LSNs the encoder asserts as it writes them. A
/// second walk here cost about a tenth of the writer's work per append.
pub fn decode_own_frame<'a>(
    bytes: &'a [u8],
    log_id: &[u8; 16],
    expected_lsn: Lsn,
) -> Result<FrameView<'a>, FrameDefect> {
    let checks = if cfg!(debug_assertions) { FrameChecks::Whole(Seed::Id(log_id)) } else { FrameChecks::OwnHeader };
    at_lsn(parse_frame(bytes, checks)?, expected_lsn)
}

/// The log id a frame's checksum starts from.
#[derive(Clone, Copy)]
enum Seed<'a> {
    /// Its bytes: the checksum's start is this thread's cached one, or computed.
    Id(&'a [u8; 16]),
    /// Its checksum, computed once by the caller.
    Checksum(&'a LogIdChecksum),
}

impl Seed<'_> {
    fn frame_checksum(self, header_and_body: &[u8]) -> u32 {
        match self {
            Seed::Id(log_id) => frame_checksum(log_id, header_and_body),
            Seed::Checksum(checksum) => checksum.frame_checksum(header_and_body),
        }
    }
}

/// What [`parse_frame`] checks of a frame.
#[derive(Clone, Copy)]
enum FrameChecks<'a> {
    /// Everything: the checksum against this log id, the header's fields
    /// and the layout of every operation in the body.
    Whole(Seed<'a>),
    /// The checksum and the header's fields: the caller checks the
    /// operations' layout with [`check_frame_ops`] (see [`decode_frame_at_from`]).
    Header(Seed<'a>),
    /// The header's fields only: a frame the writer encoded moments ago
    /// (see [`decode_own_frame`]).
    OwnHeader,
}

/// The frame at the start of `bytes`, checked as `checks` says.
fn parse_frame<'a>(bytes: &'a [u8], checks: FrameChecks<'_>) -> Result<FrameView<'a>, FrameDefect> {
    if bytes.len() < FRAME_HEADER_BYTES {
        if bytes.iter().all(|&b| b == 0) {
            return Err(FrameDefect::Zeroed);
        }
        return Err(FrameDefect::Truncated);
    }
    let header = &bytes[..FRAME_HEADER_BYTES];
    if header.iter().all(|&b| b == 0) {
        return Err(FrameDefect::Zeroed);
    }
    // Cheap field checks first: recovery calls this at every offset of a
    // damaged tail, and they reject almost every wrong offset without a checksum.
    let kind = FrameKind::from_byte(header[32]).ok_or(FrameDefect::Malformed("unknown frame kind"))?;
    if header[33] != 0 || read_u16(header, 34) != 0 {
        return Err(FrameDefect::Malformed("flags or reserved bytes are not zero"));
    }
    let body_len = read_u32(header, 4) as usize;
    if body_len > FRAME_BODY_BYTES_MAX {
        return Err(FrameDefect::Malformed("body length over the limit"));
    }
    let total = FRAME_HEADER_BYTES + body_len;
    if bytes.len() < total {
        return Err(FrameDefect::Truncated);
    }
    if let FrameChecks::Whole(seed) | FrameChecks::Header(seed) = checks
        && seed.frame_checksum(&bytes[4..total]) != read_u32(header, 0)
    {
        return Err(FrameDefect::Checksum);
    }
    let meta = FrameMeta {
        lsn: Lsn(read_u64(header, 8)),
        durable_lsn: Lsn(read_u64(header, 16)),
        timestamp_ms: read_u64(header, 24),
    };
    let lsn_count = read_u32(header, 36);
    let frame = FrameView { kind, meta, lsn_count, body: &bytes[FRAME_HEADER_BYTES..total] };
    check_frame_header(&frame)?;
    if let FrameChecks::Whole(_) = checks {
        check_frame_ops(&frame)?;
    }
    Ok(frame)
}

/// The checks of the header's fields against each other: the LSNs, and the
/// operation count against the kind (a gap's body too, which is one LSN).
fn check_frame_header(frame: &FrameView<'_>) -> Result<(), FrameDefect> {
    let malformed = FrameDefect::Malformed;
    if frame.meta.lsn.0 == 0 {
        return Err(malformed("lsn 0 is never written"));
    }
    if frame.meta.durable_lsn > frame.meta.lsn {
        return Err(malformed("durable lsn is past the frame's lsn"));
    }
    let count = frame.lsn_count as usize;
    match frame.kind {
        FrameKind::Marker if count != 0 || !frame.body.is_empty() => {
            return Err(malformed("marker with a body"));
        }
        FrameKind::Gap => {
            if count != 0 || frame.body.len() != GAP_BODY_BYTES {
                return Err(malformed("gap with operations or a body other than one lsn"));
            }
            if read_u64(frame.body, 0) <= frame.meta.lsn.0 {
                return Err(malformed("gap that does not move the lsn forward"));
            }
            return Ok(());
        }
        FrameKind::Batch if count == 0 || count > BATCH_OPS_MAX => {
            return Err(malformed("batch count out of range"));
        }
        FrameKind::Entry | FrameKind::Snapshot | FrameKind::Tombstone | FrameKind::Prune | FrameKind::Base
            if count != 1 =>
        {
            return Err(malformed("single operation frame with a count other than one"));
        }
        _ => {}
    }
    if frame.meta.lsn.0.checked_add(count as u64).is_none() {
        return Err(malformed("lsn overflows"));
    }
    Ok(())
}

/// The checks of the body's layout: every operation within the body, at
/// the LSN after the one before, and no bytes after the last. A gap's body
/// holds none, and `check_frame_header` checked it. Returns the first
/// operation (none for a marker or a gap).
///
/// Inlined into recovery's scan, so that the operation is handed to the
/// index where it was parsed rather than through memory.
#[inline]
pub fn check_frame_ops<'a>(frame: &FrameView<'a>) -> Result<Option<OpView<'a>>, FrameDefect> {
    let malformed = FrameDefect::Malformed;
    if frame.kind == FrameKind::Gap {
        return Ok(None);
    }
    let count = frame.lsn_count as usize;
    let mut offset = 0;
    let mut first = None;
    for index in 0..count {
        let (op, next) = parse_op_inline(frame.kind, frame.body, offset).map_err(malformed)?;
        if op.lsn.0 != frame.meta.lsn.0 + index as u64 {
            return Err(malformed("operation lsn does not follow the frame's"));
        }
        if index == 0 {
            first = Some(op);
        }
        offset = next;
    }
    if offset != frame.body.len() {
        return Err(malformed("bytes left over after the last operation"));
    }
    Ok(first)
}

/// The fixed part of an operation, as the index reads it back from a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpHeader {
    /// Length of the stream id that follows.
    pub stream_bytes: usize,
    /// Length of the payload after the stream id.
    pub payload_bytes: usize,
    /// The operation's sequence.
    pub seq: StreamSeq,
    /// The operation's LSN.
    pub lsn: Lsn,
}

/// Decodes the fixed part of an operation from its first [`OP_HEADER_BYTES`] bytes.
pub fn decode_op_header(bytes: &[u8; OP_HEADER_BYTES]) -> OpHeader {
    OpHeader {
        stream_bytes: usize::from(read_u16(bytes, 0)),
        payload_bytes: read_u32(bytes, 2) as usize,
        seq: StreamSeq(read_u64(bytes, 6)),
        lsn: Lsn(read_u64(bytes, 14)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG_ID: [u8; 16] = [7; 16];

    fn meta(lsn: u64) -> FrameMeta {
        FrameMeta { lsn: Lsn(lsn), durable_lsn: Lsn(lsn), timestamp_ms: 1_700_000_000_000 }
    }

    /// Recovery's scan checks frames from the log id's checksum computed
    /// once: the same frames pass and fail as from the id itself, the
    /// padded clean-close marker included, and another log's id fails.
    #[test]
    fn a_frame_checked_from_the_log_id_s_checksum_decodes_as_from_the_id() {
        let op = OpRef { kind: RecordKind::Entry, stream: b"wf-1", seq: StreamSeq(0), lsn: Lsn(9), payload: b"state" };
        let mut buf = Vec::new();
        encode_frame(&mut buf, &LOG_ID, FrameKind::Entry, meta(9), &[op]);
        let entry_end = buf.len();
        buf.resize(marker_offset(entry_end), 0);
        let marker_at = buf.len();
        encode_frame(&mut buf, &LOG_ID, FrameKind::Marker, meta(10), &[]);
        let seed = LogIdChecksum::of(&LOG_ID);
        for (offset, lsn, at) in [(0, 9, 0), (entry_end, 10, marker_at)] {
            let (from_id, frame) = decode_frame_at(&buf, offset, &LOG_ID, Lsn(lsn)).expect("valid frame");
            let (from_seed, same) = decode_frame_at_from(&buf, offset, &seed, Lsn(lsn)).expect("valid frame");
            assert_eq!((from_id, from_seed), (at, at));
            assert_eq!((frame.kind, frame.meta, frame.body), (same.kind, same.meta, same.body));
            // Its operations' check hands over the first one the frame holds.
            assert_eq!(check_frame_ops(&same), Ok(frame.ops().next()));
        }
        let other = LogIdChecksum::of(&[8; 16]);
        assert_eq!(decode_frame_at_from(&buf, 0, &other, Lsn(9)).err(), Some(FrameDefect::Checksum));
        let mut damaged = buf.clone();
        damaged[FRAME_HEADER_BYTES + 3] ^= 1;
        assert_eq!(decode_frame_at_from(&damaged, 0, &seed, Lsn(9)).err(), Some(FrameDefect::Checksum));
        assert!(matches!(
            decode_frame_at_from(&buf, 0, &seed, Lsn(8)),
            Err(FrameDefect::UnexpectedLsn { expected: Lsn(8), found: Lsn(9) })
        ));
    }

    #[test]
    fn single_entry_round_trips() {
        let op = OpRef { kind: RecordKind::Entry, stream: b"wf-1", seq: StreamSeq(3), lsn: Lsn(9), payload: b"state" };
        let mut buf = Vec::new();
        encode_frame(&mut buf, &LOG_ID, FrameKind::Entry, meta(9), &[op]);
        assert_eq!(buf.len(), frame_bytes(FrameKind::Entry, &[op]));
        let frame = decode_frame(&buf, &LOG_ID, Lsn(9)).expect("valid frame");
        let ops: Vec<_> = frame.ops().collect();
        assert_eq!(ops.len(), 1);
        assert_eq!((ops[0].stream, ops[0].seq, ops[0].payload), (&b"wf-1"[..], StreamSeq(3), &b"state"[..]));
        assert_eq!(frame.next_lsn(), Lsn(10));
    }

    /// The writer's checksum continues from the log id's CRC, and so do
    /// the readers' (from the id of the frame they checked last): both
    /// must equal the CRC over the log id and the frame together, at every
    /// length (crc32fast takes other paths below 64 and 128 bytes), and
    /// the readers' whichever log's frame they checked before.
    #[test]
    fn a_checksum_continued_from_the_log_ids_equals_the_one_over_both() {
        let log_ids = [[0u8; 16], LOG_ID, std::array::from_fn(|i| (i * 37 + 11) as u8)];
        let bytes: Vec<u8> = (0..600u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for (n, log_id) in log_ids.iter().enumerate() {
            let seed = LogIdChecksum::of(log_id);
            let other_log = &log_ids[(n + 1) % log_ids.len()];
            for len in 0..bytes.len() {
                let over_both = crc32fast::hash(&[&log_id[..], &bytes[..len]].concat());
                assert_eq!(seed.frame_checksum(&bytes[..len]), over_both, "{len} bytes");
                assert_eq!(frame_checksum(log_id, &bytes[..len]), over_both, "{len} bytes");
                if len % 7 == 0 {
                    // The next frame the reader checks is another log's.
                    let other_over_both = crc32fast::hash(&[&other_log[..], &bytes[..len]].concat());
                    assert_eq!(frame_checksum(other_log, &bytes[..len]), other_over_both, "{len} bytes");
                }
            }
        }
    }

    #[test]
    fn batch_round_trips_with_every_kind() {
        let ops = [
            OpRef { kind: RecordKind::Entry, stream: b"a", seq: StreamSeq(0), lsn: Lsn(5), payload: b"x" },
            OpRef { kind: RecordKind::Snapshot, stream: b"b", seq: StreamSeq(4), lsn: Lsn(6), payload: b"" },
            OpRef { kind: RecordKind::Tombstone, stream: b"c", seq: StreamSeq(2), lsn: Lsn(7), payload: b"" },
        ];
        let mut buf = Vec::new();
        encode_frame(&mut buf, &LOG_ID, FrameKind::Batch, meta(5), &ops);
        let frame = decode_frame(&buf, &LOG_ID, Lsn(5)).expect("valid frame");
        let kinds: Vec<_> = frame.ops().map(|op| (op.kind, op.lsn)).collect();
        assert_eq!(
            kinds,
            vec![(RecordKind::Entry, Lsn(5)), (RecordKind::Snapshot, Lsn(6)), (RecordKind::Tombstone, Lsn(7))]
        );
    }

    /// A frame whose checksum holds but whose body is malformed is refused
    /// by the decoders of bytes read from a file, whatever the header says:
    /// the walk of the operations is left out only for the writer's own
    /// frames in release builds (`decode_own_frame`), never for these.
    #[test]
    fn a_checksummed_frame_with_a_malformed_body_is_refused() {
        let ops = [
            OpRef { kind: RecordKind::Entry, stream: b"a", seq: StreamSeq(0), lsn: Lsn(5), payload: b"x" },
            OpRef { kind: RecordKind::Entry, stream: b"b", seq: StreamSeq(0), lsn: Lsn(6), payload: b"y" },
        ];
        let mut good = Vec::new();
        encode_frame(&mut good, &LOG_ID, FrameKind::Batch, meta(5), &ops);
        // The first operation takes its kind byte, its header and two bytes.
        let first_op_at = FRAME_HEADER_BYTES + BATCH_OP_KIND_BYTES;
        let second_op_lsn_at = first_op_at + OP_HEADER_BYTES + 2 + BATCH_OP_KIND_BYTES + 14;
        let resealed = |mut bytes: Vec<u8>| {
            let crc = frame_checksum(&LOG_ID, &bytes[4..]);
            bytes[..4].copy_from_slice(&crc.to_le_bytes());
            bytes
        };
        let mut wrong_lsn = good.clone();
        wrong_lsn[second_op_lsn_at..second_op_lsn_at + 8].copy_from_slice(&9u64.to_le_bytes());
        let mut unknown_kind = good.clone();
        unknown_kind[FRAME_HEADER_BYTES] = 0x7f;
        let mut payload_past_the_body = good.clone();
        payload_past_the_body[first_op_at + 2..][..4].copy_from_slice(&1000u32.to_le_bytes());
        for (bytes, why) in [
            (wrong_lsn, "operation lsn does not follow the frame's"),
            (unknown_kind, "unknown operation kind in batch"),
            (payload_past_the_body, "operation runs past the body"),
        ] {
            let bytes = resealed(bytes);
            assert_eq!(decode_frame(&bytes, &LOG_ID, Lsn(5)).unwrap_err(), FrameDefect::Malformed(why));
            assert_eq!(decode_frame_anywhere(&bytes, &LOG_ID).unwrap_err(), FrameDefect::Malformed(why));
        }
        assert!(decode_frame(&good, &LOG_ID, Lsn(5)).is_ok(), "the frame they were made from is valid");
    }

    #[test]
    fn a_zeroed_header_marks_the_end_of_data() {
        assert_eq!(decode_frame(&[0; 64], &LOG_ID, Lsn(1)).unwrap_err(), FrameDefect::Zeroed);
    }

    #[test]
    fn a_frame_from_another_log_fails_its_checksum() {
        let op = OpRef { kind: RecordKind::Entry, stream: b"s", seq: StreamSeq(0), lsn: Lsn(1), payload: b"p" };
        let mut buf = Vec::new();
        encode_frame(&mut buf, &LOG_ID, FrameKind::Entry, meta(1), &[op]);
        assert_eq!(decode_frame(&buf, &[8; 16], Lsn(1)).unwrap_err(), FrameDefect::Checksum);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let op = OpRef { kind: RecordKind::Entry, stream: b"s", seq: StreamSeq(0), lsn: Lsn(1), payload: b"payload" };
        let mut buf = Vec::new();
        encode_frame(&mut buf, &LOG_ID, FrameKind::Entry, meta(1), &[op]);
        for bit in 0..buf.len() * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_frame(&damaged, &LOG_ID, Lsn(1)).is_err(), "bit {bit} went unnoticed");
        }
    }

    #[test]
    fn an_oversized_length_is_rejected_before_slicing() {
        let mut header = [0u8; FRAME_HEADER_BYTES];
        header[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        header[32] = FrameKind::Entry as u8;
        assert!(matches!(
            decode_frame_anywhere(&header, &LOG_ID),
            Err(FrameDefect::Malformed("body length over the limit"))
        ));
    }

    #[test]
    fn a_gap_frame_round_trips_and_moves_the_lsn() {
        let mut buf = Vec::new();
        encode_gap_frame(&mut buf, &LOG_ID, meta(7), Lsn(1_000));
        let frame = decode_frame(&buf, &LOG_ID, Lsn(7)).unwrap();
        assert_eq!((frame.kind, frame.lsn_count, frame.next_lsn()), (FrameKind::Gap, 0, Lsn(1_000)));
        assert_eq!(frame.ops().count(), 0);
        for bit in 0..buf.len() * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_frame(&damaged, &LOG_ID, Lsn(7)).is_err(), "bit {bit} went unnoticed");
        }
    }

    /// A log written with a large `record_bytes_max` was read back with the
    /// default one, and its large records looked like damage (issue 9, case 1):
    /// decoding is bounded by the format and the bytes, not by an option.
    #[test]
    fn a_frame_larger_than_any_option_decodes() {
        let payload = vec![9u8; 20 << 20];
        let op = OpRef { kind: RecordKind::Entry, stream: b"s", seq: StreamSeq(0), lsn: Lsn(1), payload: &payload };
        let mut buf = Vec::new();
        encode_frame(&mut buf, &LOG_ID, FrameKind::Entry, meta(1), &[op]);
        assert_eq!(decode_frame(&buf, &LOG_ID, Lsn(1)).unwrap().body.len(), buf.len() - FRAME_HEADER_BYTES);
    }

    /// The test vectors of segments-format.md (3): an independent reader
    /// written from the spec alone checks itself against these bytes.
    #[test]
    fn the_format_documents_test_vectors_are_what_the_encoder_writes() {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let log_id = [0x11; 16];
        let meta = |lsn| FrameMeta { lsn: Lsn(lsn), durable_lsn: Lsn(lsn), timestamp_ms: 0 };
        let op = OpRef { kind: RecordKind::Entry, stream: b"s", seq: StreamSeq(0), lsn: Lsn(1), payload: b"hi" };
        let mut entry = Vec::new();
        encode_frame(&mut entry, &log_id, FrameKind::Entry, meta(1), &[op]);
        assert_eq!(
            hex(&entry),
            "0c3488bf190000000100000000000000010000000000000000000000000000000100000001000000\
             01000200000000000000000000000100000000000000736869"
        );
        let mut gap = Vec::new();
        encode_gap_frame(&mut gap, &log_id, meta(7), Lsn(9));
        assert_eq!(
            hex(&gap),
            "cb5c55b608000000070000000000000007000000000000000000000000000000060000000000000009000000\
             00000000"
        );
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    /// A frame that ends fewer than 40 bytes before a 512-byte boundary has
    /// a clean-close marker right after a padding shorter than a frame
    /// header: reading a header at the padding runs into the marker. Reads
    /// of the closed handle called that corruption (found by an adversarial
    /// test: `reading_a_closed_log_whose_marker_padding_is_short_fails_with_corruption`).
    #[test]
    fn a_marker_after_padding_shorter_than_a_frame_header_is_found() {
        let mut segment = vec![0u8; 1024];
        let mut marker = Vec::new();
        encode_frame(&mut marker, &LOG_ID, FrameKind::Marker, meta(5), &[]);
        segment[512..512 + marker.len()].copy_from_slice(&marker);
        let (at, frame) = decode_frame_at(&segment, 500, &LOG_ID, Lsn(5)).unwrap();
        assert_eq!((at, frame.kind), (512, FrameKind::Marker));
        assert!(decode_frame_at(&segment, 500, &LOG_ID, Lsn(6)).is_err(), "a marker at another lsn is no padding");
    }
}
