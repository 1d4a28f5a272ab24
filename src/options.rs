//! How a log is opened: sizes, limits, durability and the file system.
//!
//! Every option documents its default and what a crash does to it.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::frame::{FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES, MARKER_RESERVE_BYTES};
use crate::fs::{FileSystem, RealFs};
use crate::segment::{SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, SEGMENT_HEADER_BYTES};
use crate::types::{Durability, RecoveryMode};

/// Where the next segment is prepared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentPreparation {
    /// On a background thread, ahead of need, so appends never wait for it
    /// unless segments fill faster than it can zero them. The default.
    Background,
    /// On the writer thread when a segment fills. Deterministic: the crash
    /// simulator uses it.
    Inline,
}

/// When the log writes its persisted index image (`annals.index`), from
/// which the next open loads the index and scans only the frames after it
/// (segments-format.md, section 11). An image is never needed: without one,
/// or with a damaged or stale one, open scans every segment. A crash while
/// one is written leaves the previous one (or none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexImageWrites {
    /// At a clean close, and on a background thread after every compaction
    /// and after rollovers once a full segment's worth (`segment_bytes`)
    /// has sealed since the last one, never on the append path. The
    /// default.
    Background,
    /// At a clean close, and when [`Log::write_index_image`](crate::Log::write_index_image)
    /// asks: no thread. Deterministic: the crash simulator uses it.
    AtClose,
    /// Never (an image written before is still loaded while it is valid).
    Off,
}

/// When and how fast compaction runs in the background (see
/// [`Log::compact`](crate::Log::compact) for what it does).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompactionOptions {
    /// Compact in the background at all. Default true.
    pub background: bool,
    /// Compact once the dead bytes of the sealed segments (what compaction
    /// would give back) are at least this share of their written bytes,
    /// and at least a segment's worth. Default 0.5: at quiescence the log
    /// takes at most about twice its live bytes, plus a few segments.
    pub dead_ratio: f64,
    /// Bytes per second background compaction reads and writes, at most;
    /// 0 for no limit. Default 64 MiB/s, so appends keep the disk.
    pub bytes_per_second: u64,
    /// How often the background compactor looks, in milliseconds, besides
    /// after every rollover. Default 1,000.
    pub interval_ms: u64,
}

impl Default for CompactionOptions {
    fn default() -> CompactionOptions {
        CompactionOptions { background: true, dead_ratio: 0.5, bytes_per_second: 64 << 20, interval_ms: 1000 }
    }
}

/// Options for [`Log::open`](crate::Log::open).
#[derive(Clone)]
pub struct Options {
    /// Size of every segment file, preallocated with zeros. Default 64 MiB.
    /// A crash never changes it: a segment is published only once it is
    /// written to its full size and synced.
    pub segment_bytes: u64,
    /// Largest record (an entry, snapshot, or a whole atomic batch), in bytes
    /// of its frame body. Default 16 MiB; at most what fits in a segment.
    pub record_bytes_max: usize,
    /// Durability of appends that do not name one. Default [`Durability::Sync`].
    pub durability: Durability,
    /// How often written `Periodic` appends are synced, in milliseconds: the
    /// most a power cut can take from them. Default 100.
    pub fsync_interval_ms: u64,
    /// Requests that may wait in the queue before appenders are held back. Default 4,096.
    pub queue_requests_max: usize,
    /// The writer closes a group once it holds this many bytes. Default 4 MiB.
    pub group_bytes_max: usize,
    /// What open does with corruption. Default [`RecoveryMode::Strict`].
    pub recovery_mode: RecoveryMode,
    /// Where spare segments are prepared. Default [`SegmentPreparation::Background`].
    pub segment_preparation: SegmentPreparation,
    /// The file system. Default the operating system's; tests substitute a simulated one.
    pub file_system: Arc<dyn FileSystem>,
    /// Background compaction. Default on (see [`CompactionOptions`]).
    pub compaction: CompactionOptions,
    /// Log-wide retention by age: sealed segments whose every record is
    /// older than this many milliseconds (by the log's clock) are dropped
    /// by the next compaction, live records and all. Default none. A
    /// registered named cursor holds it back (see `cursor_lag_bytes_max`).
    pub max_age_ms: Option<u64>,
    /// Log-wide retention by size: while the log's files take more than
    /// this many bytes, its oldest sealed segments are dropped by the next
    /// compaction, live records and all. Default none. A registered named
    /// cursor holds it back (see `cursor_lag_bytes_max`).
    pub max_bytes: Option<u64>,
    /// How far a named cursor (see [`crate::cursors`]) may lag and still
    /// hold back log-wide retention (`max_age_ms`, `max_bytes`), in bytes
    /// of segment files from the one holding the first record it has not
    /// read to the end of the log. A cursor that lags more is released:
    /// retention drops what it has not read, and a subscription from it
    /// gets [`Error::Trimmed`]. Default 1 GiB; 0 releases every cursor
    /// (they never hold retention back). Cursors are records, so a crash
    /// changes nothing of this.
    pub cursor_lag_bytes_max: u64,
    /// When the index image is written. Default [`IndexImageWrites::Background`].
    pub index_image: IndexImageWrites,
    /// Whether an awaited `Sync` append on a worker of tokio's
    /// multi-threaded runtime that finds no one writing, with appenders
    /// coming one at a time, commits on that worker's thread, inside
    /// `tokio::task::block_in_place` (which first hands the worker's other
    /// tasks to another thread), instead of handing the write to the log's
    /// writer thread and waiting to be woken. Default on: it saves two
    /// thread hand-offs per append. Like any `block_in_place`, it suspends
    /// other futures of the same task (a `join!` or `select!` beside the
    /// append) until the commit is done; turn it off where they must go on.
    /// Never on a current-thread runtime or outside tokio.
    pub awaited_commits_in_place: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            segment_bytes: 64 << 20,
            record_bytes_max: 16 << 20,
            durability: Durability::Sync,
            fsync_interval_ms: 100,
            queue_requests_max: 4096,
            group_bytes_max: 4 << 20,
            recovery_mode: RecoveryMode::Strict,
            segment_preparation: SegmentPreparation::Background,
            file_system: Arc::new(RealFs),
            compaction: CompactionOptions::default(),
            max_age_ms: None,
            max_bytes: None,
            cursor_lag_bytes_max: 1 << 30,
            index_image: IndexImageWrites::Background,
            awaited_commits_in_place: true,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("segment_bytes", &self.segment_bytes)
            .field("record_bytes_max", &self.record_bytes_max)
            .field("durability", &self.durability)
            .field("fsync_interval_ms", &self.fsync_interval_ms)
            .field("queue_requests_max", &self.queue_requests_max)
            .field("group_bytes_max", &self.group_bytes_max)
            .field("recovery_mode", &self.recovery_mode)
            .field("segment_preparation", &self.segment_preparation)
            .field("file_system", &self.file_system)
            .field("compaction", &self.compaction)
            .field("max_age_ms", &self.max_age_ms)
            .field("max_bytes", &self.max_bytes)
            .field("cursor_lag_bytes_max", &self.cursor_lag_bytes_max)
            .field("index_image", &self.index_image)
            .field("awaited_commits_in_place", &self.awaited_commits_in_place)
            .finish()
    }
}

impl Options {
    /// The largest `record_bytes_max` a segment of `segment_bytes` allows: a
    /// record's frame plus the space kept for a clean-close marker must fit
    /// in an empty segment.
    pub fn record_bytes_max_for(segment_bytes: u64) -> usize {
        let segment = usize::try_from(segment_bytes).unwrap_or(usize::MAX);
        segment
            .saturating_sub(SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + MARKER_RESERVE_BYTES)
            .min(FRAME_BODY_BYTES_MAX)
    }

    /// Checks the options against each other and the format's limits.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the option that is out of range.
    pub fn validate(&self) -> Result<()> {
        let invalid = |what: String| Err(Error::InvalidArgument(what));
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return invalid(format!("segment_bytes must be {SEGMENT_BYTES_MIN} to {SEGMENT_BYTES_MAX}"));
        }
        let max = Options::record_bytes_max_for(self.segment_bytes);
        if self.record_bytes_max == 0 || self.record_bytes_max > max {
            return invalid(format!("record_bytes_max must be 1 to {max} for this segment size"));
        }
        if self.fsync_interval_ms == 0 {
            return invalid("fsync_interval_ms must be at least 1".to_owned());
        }
        if self.queue_requests_max == 0 || self.queue_requests_max > tokio::sync::Semaphore::MAX_PERMITS {
            return invalid("queue_requests_max must be at least 1".to_owned());
        }
        if self.group_bytes_max == 0 {
            return invalid("group_bytes_max must be at least 1".to_owned());
        }
        if !(self.compaction.dead_ratio > 0.0 && self.compaction.dead_ratio <= 1.0) {
            return invalid("compaction.dead_ratio must be above 0 and at most 1".to_owned());
        }
        if self.compaction.interval_ms == 0 {
            return invalid("compaction.interval_ms must be at least 1".to_owned());
        }
        if self.max_age_ms == Some(0) || self.max_bytes == Some(0) {
            return invalid("max_age_ms and max_bytes must be at least 1 when set".to_owned());
        }
        Ok(())
    }
}
