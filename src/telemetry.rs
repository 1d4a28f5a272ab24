//! Telemetry: the log's `tracing` events and, with the `metrics` feature,
//! its metrics through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! Every event and metric of the engine is emitted here, from one call at
//! the place where the engine decides, so the other modules each carry one
//! line per event and the names live in one table. Nothing here records a
//! payload or a stream id: events carry counts, LSNs, byte counts, file
//! paths and errors.
//!
//! # Tracing
//!
//! The application installs a subscriber (`tracing-subscriber`, say); with
//! none, or with a level filtered out, an event costs a check of its
//! callsite's cached interest.
//!
//! | target | level | when | fields |
//! |---|---|---|---|
//! | `annals::open` | `info` span `open` | around `Log::open` and `LogReader::open` | `dir`, `access` |
//! | `annals::open` | `info` | a log recovered, in the `open` span (`micros`: from the open's start) | `segments`, `compacted_segments`, `records`, `bytes`, `format_version`, `spares_removed`, `superseded_removed`, `tail_bytes_resynced`, `resumes_at`, `micros` |
//! | `annals::recovery` | `warn` | a torn tail cut (read-only: that a writer would cut) | `file`, `offset`, `bytes`, `from_lsn`, `reason`, `access` |
//! | `annals::recovery` | `warn` | salvage dropped a range or a file | `file`, `offset`, `bytes`, `from_lsn`, `file_deleted`, `reason` |
//! | `annals::commit` | `trace` | each group written (and synced) | `requests`, `records`, `conflicts`, `bytes`, `synced`, `write_micros` |
//! | `annals::commit` | `trace` | each fdatasync of a segment | `micros` |
//! | `annals::commit` | `trace` | a write request queued | `queued` (commands queued since the writer last took the queue) |
//! | `annals::commit` | `trace` | the writer thread's gathering ended, before it takes the queue | `wanted`, `queued`, `waited_micros` |
//! | `annals::commit` | `trace` | the writer took the queue | `depth` |
//! | `annals::commit` | `trace` | a group's waiters woken (by the writer or the completer thread) | `requests` |
//! | `annals::commit` | `debug` | a rollover to a new segment | `file`, `first_lsn`, `segment_bytes` |
//! | `annals::commit` | `error` | the log poisoned: every later write fails until it is reopened | `cause` |
//! | `annals::index` | `warn` | a read found a seek point of the loaded index image at no frame of its LSN, and walked its segment from the first frame (the next close replaces the image) | `file`, `lsn`, `offset` |
//! | `annals::index` | `warn` | a read found the loaded index image's record checksum (or batch frames) wrong for a record whose frame is intact, and read it from the frame (the next close replaces the image) | `file`, `offset` |
//! | `annals::compact` | `info` | a compaction committed | `generation`, `inputs`, `input_bytes`, `outputs`, `output_bytes`, `records_kept`, `operations_dropped`, `reclaimed_bytes`, `trimmed_before`, `leftovers`, `micros` |
//! | `annals::compact` | `warn` | a background compaction failed (it tries again at its next look) | `error` |
//!
//! # Metrics
//!
//! With the `metrics` feature (off by default) the engine records these
//! through the `metrics` facade; the application installs a recorder
//! (`metrics-exporter-prometheus`, say). They carry no labels: with several
//! logs open in one process each is the sum over them (`annals_disk_bytes`
//! rises when a log opens and falls when it closes).
//!
//! | name | kind | unit | what |
//! |---|---|---|---|
//! | `annals_appends_total` | counter | records | records (operations) committed, each batch's counted one by one |
//! | `annals_conflicts_total` | counter | requests | appends and batches refused because a guard failed (`Error::Conflict`) |
//! | `annals_group_records` | histogram | records | records per group commit |
//! | `annals_group_bytes` | histogram | bytes | bytes per group write |
//! | `annals_fsync_seconds` | histogram | seconds | each fdatasync of a segment |
//! | `annals_queue_depth` | gauge | requests | requests the writer found queued when it last took the queue |
//! | `annals_disk_bytes` | gauge | bytes | segment files (preallocated, so their full size) and state files of the open logs |
//! | `annals_rollovers_total` | counter | segments | rollovers to a new segment |
//! | `annals_poisoned_total` | counter | logs | logs poisoned by a failed write or sync |
//! | `annals_compaction_runs_total` | counter | runs | compactions committed (background and `Log::compact`) |
//! | `annals_compaction_reclaimed_bytes_total` | counter | bytes | disk given back by compactions: input files less output files |
//! | `annals_compaction_seconds` | histogram | seconds | each committed compaction, from start to the inputs' removal |
//! | `annals_subscriber_lag_records` | histogram | records | how far behind the durable end a subscriber was when it took a batch, in LSNs (one per record) |
#![cfg_attr(not(feature = "metrics"), allow(dead_code))]

use std::path::Path;
use std::time::Duration;

use tracing::{debug, error, info, trace, warn};

use crate::compact::CompactionReport;
use crate::error::Error;
use crate::recovery::RecoveryReport;

/// Declares each metric's name as a constant, documented with its help
/// text, and [`describe`], which gives the recorder the same help and unit.
macro_rules! metrics_table {
    ($($name:ident = $text:literal, $describe:ident, $unit:ident, $help:literal;)*) => {
        $(
            #[doc = concat!("`", $text, "`: ", $help, ".")]
            pub const $name: &str = $text;
        )*

        /// Describes every metric (unit and help text) to the installed
        /// recorder. Called at each open, so that a recorder installed after
        /// the first one gets them too.
        pub(crate) fn describe() {
            #[cfg(feature = "metrics")]
            {
                $(metrics::$describe!($name, metrics::Unit::$unit, $help);)*
            }
        }
    };
}

metrics_table! {
    APPENDS_TOTAL = "annals_appends_total", describe_counter, Count, "records (operations) committed";
    CONFLICTS_TOTAL = "annals_conflicts_total", describe_counter, Count, "appends and batches refused because a guard failed";
    GROUP_RECORDS = "annals_group_records", describe_histogram, Count, "records per group commit";
    GROUP_BYTES = "annals_group_bytes", describe_histogram, Bytes, "bytes per group write";
    FSYNC_SECONDS = "annals_fsync_seconds", describe_histogram, Seconds, "each fdatasync of a segment";
    QUEUE_DEPTH = "annals_queue_depth", describe_gauge, Count, "requests the writer found queued when it last took the queue";
    DISK_BYTES = "annals_disk_bytes", describe_gauge, Bytes, "segment and state files of the open logs";
    ROLLOVERS_TOTAL = "annals_rollovers_total", describe_counter, Count, "rollovers to a new segment";
    POISONED_TOTAL = "annals_poisoned_total", describe_counter, Count, "logs poisoned by a failed write or sync";
    COMPACTION_RUNS_TOTAL = "annals_compaction_runs_total", describe_counter, Count, "compactions committed";
    COMPACTION_RECLAIMED_BYTES_TOTAL = "annals_compaction_reclaimed_bytes_total", describe_counter, Bytes, "disk given back by compactions";
    COMPACTION_SECONDS = "annals_compaction_seconds", describe_histogram, Seconds, "each committed compaction";
    SUBSCRIBER_LAG_RECORDS = "annals_subscriber_lag_records", describe_histogram, Count, "records a subscriber was behind the durable end when it took a batch";
}

/// Whether [`group_committed`] would record anything: the writer counts a
/// group's records only then.
#[inline]
pub(crate) fn group_wanted() -> bool {
    cfg!(feature = "metrics") || tracing::enabled!(target: "annals::commit", tracing::Level::TRACE)
}

/// What one group commit did, for [`group_committed`].
pub(crate) struct GroupFigures {
    /// Requests answered (committed, refused by a guard, or failed).
    pub requests: usize,
    /// Records committed.
    pub records: u64,
    /// Requests refused because a guard failed.
    pub conflicts: u64,
    /// Bytes written.
    pub bytes: usize,
    /// Whether the group was synced.
    pub synced: bool,
    /// The write and, if any, the sync.
    pub write: Duration,
}

/// A group was written (and synced if asked) and published.
pub(crate) fn group_committed(group: &GroupFigures) {
    trace!(
        target: "annals::commit",
        requests = group.requests,
        records = group.records,
        conflicts = group.conflicts,
        bytes = group.bytes,
        synced = group.synced,
        write_micros = group.write.as_micros() as u64,
        "group committed"
    );
    #[cfg(feature = "metrics")]
    {
        metrics::counter!(APPENDS_TOTAL).increment(group.records);
        if group.conflicts > 0 {
            metrics::counter!(CONFLICTS_TOTAL).increment(group.conflicts);
        }
        if group.records > 0 {
            metrics::histogram!(GROUP_RECORDS).record(group.records as f64);
            metrics::histogram!(GROUP_BYTES).record(group.bytes as f64);
        }
    }
}

/// A segment was fdatasynced in `took`.
#[inline]
pub(crate) fn fsynced(took: Duration) {
    trace!(target: "annals::commit", micros = took.as_micros() as u64, "fdatasync");
    #[cfg(feature = "metrics")]
    metrics::histogram!(FSYNC_SECONDS).record(took.as_secs_f64());
}

/// The writer took `depth` queued requests.
#[inline]
pub(crate) fn queue_taken(depth: usize) {
    trace!(target: "annals::commit", depth, "queue taken");
    #[cfg(feature = "metrics")]
    metrics::gauge!(QUEUE_DEPTH).set(depth as f64);
}

/// A write request was queued, the `queued`th since the writer last took
/// the queue. With these, a group's events say when each of its requests
/// came: what splits a burst of appenders into two groups.
#[inline]
pub(crate) fn request_queued(queued: usize) {
    trace!(target: "annals::commit", queued, "request queued");
}

/// The writer thread's gathering ended after `waited`, with `queued` of
/// the `wanted` requests queued.
#[inline]
pub(crate) fn gathered(wanted: usize, queued: usize, waited: Duration) {
    trace!(target: "annals::commit", wanted, queued, waited_micros = waited.as_micros() as u64, "gathered");
}

/// A group's `requests` waiters were woken.
#[inline]
pub(crate) fn group_answered(requests: usize) {
    trace!(target: "annals::commit", requests, "group answered");
}

/// The writer moved to a new segment.
pub(crate) fn rolled_over(file: &Path, first_lsn: u64, segment_bytes: u64) {
    debug!(target: "annals::commit", file = %file.display(), first_lsn, segment_bytes, "rolled over to a new segment");
    #[cfg(feature = "metrics")]
    metrics::counter!(ROLLOVERS_TOTAL).increment(1);
}

/// The log was poisoned by `cause` (called once per log, with the first cause).
pub(crate) fn poisoned(dir: &Path, cause: &Error) {
    error!(
        target: "annals::commit",
        dir = %dir.display(),
        cause = %cause,
        "log poisoned: every later write fails until it is reopened"
    );
    #[cfg(feature = "metrics")]
    metrics::counter!(POISONED_TOTAL).increment(1);
}

/// Recovery of a log being opened (`access` says how) produced `report`.
pub(crate) fn recovered(access: &'static str, report: &RecoveryReport, took: Duration) {
    if let Some(cut) = &report.torn_tail {
        warn!(
            target: "annals::recovery",
            file = %cut.file.display(),
            offset = cut.offset,
            bytes = cut.bytes,
            from_lsn = cut.from_lsn.0,
            reason = %cut.reason,
            access,
            "torn tail cut: bytes written after the last sync that no later frame confirms"
        );
    }
    for dropped in &report.salvaged {
        warn!(
            target: "annals::recovery",
            file = %dropped.file.display(),
            offset = dropped.offset,
            bytes = dropped.bytes,
            from_lsn = dropped.from_lsn.0,
            file_deleted = dropped.file_deleted,
            reason = %dropped.reason,
            "salvage dropped damaged data"
        );
    }
    info!(
        target: "annals::open",
        segments = report.segments,
        compacted_segments = report.compacted_segments,
        records = report.records,
        bytes = report.bytes,
        format_version = report.format_version,
        spares_removed = report.spares_removed,
        superseded_removed = report.superseded_removed,
        tail_bytes_resynced = report.tail_bytes_resynced,
        resumes_at = report.resumes_at.map(|lsn| lsn.0),
        micros = took.as_micros() as u64,
        "log recovered"
    );
}

/// A compaction committed `report` in `took`.
pub(crate) fn compacted(report: &CompactionReport, took: Duration) {
    info!(
        target: "annals::compact",
        generation = report.generation,
        inputs = report.inputs,
        input_bytes = report.input_bytes,
        outputs = report.outputs,
        output_bytes = report.output_bytes,
        records_kept = report.records_kept,
        operations_dropped = report.operations_dropped,
        reclaimed_bytes = report.reclaimed_bytes,
        trimmed_before = report.trimmed_before.0,
        leftovers = report.leftovers.len(),
        micros = took.as_micros() as u64,
        "compaction committed"
    );
    #[cfg(feature = "metrics")]
    {
        metrics::counter!(COMPACTION_RUNS_TOTAL).increment(1);
        metrics::counter!(COMPACTION_RECLAIMED_BYTES_TOTAL).increment(report.reclaimed_bytes);
        metrics::histogram!(COMPACTION_SECONDS).record(took.as_secs_f64());
    }
}

/// A read found the loaded image's seek point `(lsn, offset)` in `file`
/// at no frame of that LSN: an image written wrong under valid checksums.
pub(crate) fn image_seek_point_wrong(file: &Path, lsn: crate::types::Lsn, offset: u32) {
    warn!(
        target: "annals::index",
        file = %file.display(),
        lsn = lsn.0,
        offset,
        "the index image's seek point names no frame of its lsn: walked the segment from its first frame"
    );
}

/// A read found the loaded image's record checksum (or its batch frames)
/// wrong for the record at `offset` in `file`, whose frame is intact.
pub(crate) fn image_record_wrong(file: &Path, offset: usize) {
    warn!(
        target: "annals::index",
        file = %file.display(),
        offset,
        "the index image's record checksum disagrees with an intact frame: read from the frame"
    );
}

/// A background compaction failed; it tries again at its next look. A log
/// closed meanwhile is no failure, and a poisoning was reported already.
pub(crate) fn background_compaction_failed(error: &Error) {
    if matches!(error, Error::Closed | Error::Poisoned { .. }) {
        return;
    }
    warn!(target: "annals::compact", error = %error, "background compaction failed");
}

/// A subscriber took a batch `records` behind the durable end. The hook for
/// subscriptions (issue 12, point 1), which call it once they land.
#[inline]
#[allow(dead_code)]
pub(crate) fn subscriber_lag(records: u64) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(SUBSCRIBER_LAG_RECORDS).record(records as f64);
    let _ = records;
}

/// The `annals_disk_bytes` share of one open log: set from its segments at
/// open, after each rollover and compaction, and taken back when the log's
/// shared state is dropped (the log closed and every handle gone).
#[derive(Default)]
pub(crate) struct DiskBytes {
    #[cfg(feature = "metrics")]
    reported: std::sync::atomic::AtomicU64,
}

impl DiskBytes {
    /// The log's files now take `bytes`.
    #[inline]
    pub(crate) fn set(&self, bytes: impl FnOnce() -> u64) {
        #[cfg(feature = "metrics")]
        {
            let bytes = bytes();
            let before = self.reported.swap(bytes, std::sync::atomic::Ordering::Relaxed);
            metrics::gauge!(DISK_BYTES).increment(bytes as f64 - before as f64);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = bytes;
    }
}

#[cfg(feature = "metrics")]
impl Drop for DiskBytes {
    fn drop(&mut self) {
        let reported = *self.reported.get_mut();
        if reported > 0 {
            metrics::gauge!(DISK_BYTES).decrement(reported as f64);
        }
    }
}

/// Bytes of a log's segment files and state file, as its index knows them.
pub(crate) fn log_file_bytes(index: &crate::index::Index) -> u64 {
    let segments: u64 = index.segments().iter().map(|entry| entry.segment.header.segment_bytes).sum();
    segments + crate::state::STATE_FILE_BYTES as u64
}
