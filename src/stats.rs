//! Storage statistics: where a log's disk goes, per segment and in total,
//! worked out from the index recovery builds; the segments are read only
//! from the start of the log to the oldest live record, to find its time.
//!
//! The words, as every figure here uses them:
//!
//! - **file bytes**: a segment file's length. Segments are written full of
//!   zeros before they take a record (compacted ones are sized to what they
//!   hold), so this is the disk they hold.
//! - **written bytes**: the frames of a segment, from the end of its
//!   64-byte header to the end of its last frame.
//! - **live bytes**: what the live entries and snapshots would take in a
//!   compacted segment, a frame each: the frame header
//!   (`frame::FRAME_HEADER_BYTES`), the operation header
//!   (`frame::OP_HEADER_BYTES`), the stream id and the payload; and in a
//!   compacted segment its stream bases and closing gap, which compaction
//!   keeps. A record is live while [`LogReader::read_all`] returns it.
//! - **dead bytes**: written bytes that are not live, which compaction
//!   gives back: records pruned, cleared or superseded that it has not
//!   reclaimed yet; tombstones, prunes, gaps and close markers in ordinary
//!   segments; and what batches save in framing over a frame per record
//!   (counted here against them, so it can be negative: then 0).
//! - **unused bytes**: the rest of the file: zeros not yet written.
//! - **space amplification**: file bytes over live bytes; `None` when
//!   nothing is live.
//!
//! ```
//! use annals::{Expectation, Log, LogReader, Options};
//!
//! # fn main() -> annals::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(dir.path(), Options::default())?;
//! log.append("run-1", Expectation::Any, &b"step 0"[..]).wait()?;
//! log.close().wait()?;
//! let stats = LogReader::open(dir.path())?.stats()?;
//! assert_eq!((stats.total.live_records, stats.streams), (1, 1));
//! // A frame header, an operation header, 5 bytes of stream id, 6 of payload.
//! let one_record = annals::frame::FRAME_HEADER_BYTES + annals::frame::OP_HEADER_BYTES + 5 + 6;
//! assert_eq!(stats.total.live_bytes, one_record as u64);
//! # Ok(())
//! # }
//! ```

use serde::Serialize;

use crate::error::{Error, Result};
use crate::index::{Index, SegmentEntry};
use crate::segment::SEGMENT_HEADER_BYTES;
use crate::types::Lsn;

#[cfg(doc)]
use crate::LogReader;

/// Bytes and records of one segment, or of every segment together (see the
/// module docs for what each word means).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SpaceStats {
    /// The files' lengths.
    pub file_bytes: u64,
    /// Bytes of frames.
    pub written_bytes: u64,
    /// Bytes of live entries and snapshots.
    pub live_bytes: u64,
    /// Written bytes that are not live.
    pub dead_bytes: u64,
    /// File bytes neither header nor written: zeros not yet written.
    pub unused_bytes: u64,
    /// File bytes over live bytes; `None` when nothing is live.
    pub space_amplification: Option<f64>,
    /// Live entries and snapshots.
    pub live_records: u64,
}

impl SpaceStats {
    fn of_segment(entry: &SegmentEntry, live_records: u64) -> SpaceStats {
        let file_bytes = entry.segment.map.len() as u64;
        let written_bytes = entry.written_bytes();
        let live_bytes = entry.live_bytes();
        SpaceStats {
            file_bytes,
            written_bytes,
            live_bytes,
            dead_bytes: written_bytes.saturating_sub(live_bytes),
            unused_bytes: file_bytes.saturating_sub(SEGMENT_HEADER_BYTES as u64).saturating_sub(written_bytes),
            space_amplification: amplification(file_bytes, live_bytes),
            live_records,
        }
    }

    fn add(&mut self, other: &SpaceStats) {
        self.file_bytes += other.file_bytes;
        self.written_bytes += other.written_bytes;
        self.live_bytes += other.live_bytes;
        self.dead_bytes += other.dead_bytes;
        self.unused_bytes += other.unused_bytes;
        self.live_records += other.live_records;
        self.space_amplification = amplification(self.file_bytes, self.live_bytes);
    }
}

fn amplification(file_bytes: u64, live_bytes: u64) -> Option<f64> {
    (live_bytes > 0).then(|| file_bytes as f64 / live_bytes as f64)
}

/// One segment file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SegmentStats {
    /// Its file name in the log's directory.
    pub file: String,
    /// Whether compaction wrote it.
    pub compacted: bool,
    /// The LSN it starts at (its first record's, or above it in a compacted
    /// segment whose first records were dropped).
    pub first_lsn: Lsn,
    /// Frames in it.
    pub frames: u32,
    /// Its newest frame's time, ms since the Unix epoch; `None` if it has
    /// no frame.
    pub newest_frame_ms: Option<u64>,
    /// Its bytes and records.
    #[serde(flatten)]
    pub space: SpaceStats,
}

/// The oldest live record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OldestRecord {
    /// Its LSN.
    pub lsn: Lsn,
    /// Its frame's time, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// [`LogStats::taken_ms`] less its time (0 if its time is later: a
    /// clock set back).
    pub age_ms: u64,
}

/// Where a log's disk goes: per segment, oldest first, and in total.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogStats {
    /// Every segment, oldest first.
    pub segments: Vec<SegmentStats>,
    /// The segments together; space amplification is of the totals.
    pub total: SpaceStats,
    /// Streams the index holds: those with live records, and those pruned
    /// empty that keep their next sequence.
    pub streams: usize,
    /// Operations in the segments, live or not (tombstones, prunes and
    /// bases included).
    pub operations: u64,
    /// The oldest LSN the log holds: below it, everything was reclaimed.
    pub oldest_lsn: Lsn,
    /// The LSN the next record gets.
    pub next_lsn: Lsn,
    /// The oldest live record; `None` if nothing is live, or if a
    /// [`crate::LogReader`] read past damage (its `problems` name it):
    /// which record is live is then unknown.
    pub oldest_record: Option<OldestRecord>,
    /// When these figures were taken, ms since the Unix epoch.
    pub taken_ms: u64,
    /// The age of the persisted index image (`annals.index`) the open
    /// loaded; `None` if it loaded none (there was none, or it was damaged
    /// or stale, and the open scanned every segment).
    pub index_image_age_ms: Option<u64>,
}

/// The statistics of what `index` holds, taken now.
///
/// # Errors
/// [`crate::Error::Corruption`] if the oldest live record fails its checks.
pub(crate) fn of_index(index: &Index) -> Result<LogStats> {
    let taken_ms = crate::commit::now_ms();
    let live_records = index.live_records_per_segment();
    let mut total = SpaceStats::default();
    let mut segments = Vec::with_capacity(index.segments().len());
    for (entry, &records) in index.segments().iter().zip(&live_records) {
        let space = SpaceStats::of_segment(entry, records);
        total.add(&space);
        segments.push(SegmentStats {
            file: entry.segment.path.file_name().map_or_else(String::new, |name| name.to_string_lossy().into_owned()),
            compacted: entry.segment.compacted(),
            first_lsn: entry.segment.header.first_lsn,
            frames: entry.frames(),
            newest_frame_ms: (entry.frames() > 0).then(|| entry.max_timestamp_ms()),
            space,
        });
    }
    let mut first = Vec::with_capacity(1);
    match index.read_all(Lsn::ZERO, 1, &mut first) {
        // A reader past damage cannot know which record is live (the
        // damage may hide a prune or a tombstone): no oldest live record.
        Err(Error::Corruption(_)) if index.damage_read_past().is_some() => first.clear(),
        read => read?,
    }
    let oldest_record = first.first().map(|record| OldestRecord {
        lsn: record.lsn,
        timestamp_ms: record.timestamp_ms,
        age_ms: taken_ms.saturating_sub(record.timestamp_ms),
    });
    Ok(LogStats {
        segments,
        total,
        streams: index.stream_count(),
        operations: index.records(),
        oldest_lsn: index.oldest_lsn(),
        next_lsn: index.next_lsn(),
        oldest_record,
        taken_ms,
        index_image_age_ms: None,
    })
}
