//! Annals: an embedded, crash-safe, append-only log engine for workflow
//! checkpoints and events.
//!
//! A log is a directory of segment files holding CRC-framed records. Each
//! record belongs to a *stream* (one per workflow, run or mob id) with dense
//! sequence numbers from 0, and has a global LSN that serves as a cursor.
//! Appends can be guarded by the sequence a stream must be at, batches
//! across streams commit atomically, and concurrent appenders share one
//! write and one fdatasync.
//!
//! ```
//! use annals::{Expectation, Log, Options, StreamSeq};
//!
//! # fn main() -> annals::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(dir.path(), Options { segment_bytes: 1 << 20, record_bytes_max: 4096, ..Options::default() })?;
//! // Blocking callers wait; async callers `.await` the same value.
//! let first = log.append("workflow-7", Expectation::NoStream, &b"step 0 done"[..]).wait()?;
//! assert_eq!(first.seq, StreamSeq(0));
//! let conflict = log.append("workflow-7", Expectation::NoStream, &b"again"[..]).wait();
//! assert!(matches!(conflict, Err(annals::Error::Conflict { .. })));
//! let run = log.read_stream("workflow-7")?;
//! assert_eq!(run.entries[0].payload, &b"step 0 done"[..]);
//! log.close().wait()?;
//! # Ok(())
//! # }
//! ```
//!
//! # The durability contract
//!
//! - **An acknowledged write is never lost.** An `Ok` from a write with
//!   [`Durability::Sync`] (the default) means its bytes survived an
//!   fdatasync: a process crash or a power cut keeps it. [`Durability::Flush`]
//!   acknowledges once the write reached the operating system (it survives a
//!   process crash, not a power cut); [`Durability::Periodic`] also syncs in
//!   the background every [`Options::fsync_interval_ms`], which bounds what a
//!   power cut can take.
//! - **Nothing corrupt is ever returned, nothing vanishes silently.** An
//!   open checks the checksum of every frame it reads: all of them when it
//!   scans the log, those after the persisted index image when it loads one
//!   (a record the image covers is checked against the checksum the image
//!   recorded for it when it is read). Recovery cuts only a torn tail
//!   (damage past what was recorded as durable that no later frame
//!   confirms), reports it in [`Log::recovery_report`] and emits a `tracing`
//!   warning; any other damage it reads fails the open with
//!   [`Error::Corruption`] naming the file and offset (damage in frames the
//!   image covers fails the read of that record instead), unless
//!   [`RecoveryMode::Salvage`] is asked for, which reports exactly what it
//!   drops.
//! - **No LSN is handed out twice**, across crashes and salvage: a cursor
//!   saved at an LSN never silently points at another record.
//! - **Atomic batches:** every guard of a [`Batch`] holds and all of it
//!   becomes durable and visible together, or none of it is written.
//! - **Fail-stop:** after a failed write or fsync of records the log is
//!   poisoned: every later write fails with [`Error::Poisoned`] until it is
//!   reopened, and an fsync is never retried.
//! - **Reads never see an unacknowledged write**, and never wait behind an
//!   fsync.
//! - **Dropping a [`Pending`] does not withdraw its write**: once polled (or
//!   waited on) it may still commit. Retry with an [`Expectation::Exact`]
//!   guard, which either commits or fails with a conflict showing the
//!   stream moved.
//!
//! `segments-format.md` specifies the on-disk format and the recovery
//! decision table; `ARCHITECTURE.md` maps the modules.
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `metrics` | off | counters, gauges and histograms through the [`metrics`](https://docs.rs/metrics) facade, named in the `telemetry` module's table |
//! | `internals` | off | the internal modules `frame`, `fs`, `segment`, `state` and `recovery` made public, for this workspace's command, benches and tests: no stable API |
//! | `sim` | off | `internals` and the crash simulator (`sim`), for this workspace's tests and fuzz targets: no stable API |
//!
//! The group-commit hand-off's model-checking test runs on shuttle's
//! primitives under `RUSTFLAGS="--cfg annals_shuttle"`: a cfg, not a
//! feature, so that `--all-features` builds the ordinary library.
//!
//! # Telemetry
//!
//! The engine emits `tracing` events (targets `annals::open`,
//! `annals::recovery`, `annals::commit`, `annals::compact`, `annals::index`):
//! a warning when recovery cuts a torn tail or salvage drops data, or a read
//! finds the loaded index image wrong, an error when the log is
//! poisoned, one trace event per group commit and per fsync. None carries a
//! payload or a stream id. The `telemetry` module's documentation (built
//! with the `metrics` feature) tables every event and metric.

#![warn(missing_docs)]

mod commit;
mod compact;
pub mod cursors;
mod error;
pub mod image;
mod index;
pub mod inspect;
mod log;
mod options;
pub mod stats;
pub mod stores;
pub mod subscribe;
mod sync;
#[cfg(feature = "metrics")]
pub mod telemetry;
#[cfg(not(feature = "metrics"))]
mod telemetry;
mod types;

/// The internal modules: public only with the `internals` feature (for this
/// workspace's command, benches and tests), never a stable API.
macro_rules! internal_modules {
    ($($name:ident;)*) => {$(
        #[cfg(feature = "internals")]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        mod $name;
    )*};
}

internal_modules! {
    frame;
    fs;
    recovery;
    segment;
    state;
}

/// The crash simulator, with the `sim` feature: the real engine on a
/// simulated file system, its workloads and oracle, and the fuzz targets'
/// bodies. For this workspace's tests and fuzz targets; not a stable API.
#[cfg(feature = "sim")]
pub mod sim;

pub use commit::{Appended, PruneSnapshots};
pub use compact::CompactionReport;
pub use error::{Corruption, CorruptionKind, Error, Result};
pub use frame::RecordKind;
pub use image::ImageUse;
pub use index::{IndexStats, Record, RecordRef, StreamRead};
pub use log::{Batch, Log, LogReader, Pending, StreamInfo};
pub use options::{CompactionOptions, IndexImageWrites, Options, SegmentPreparation};
pub use recovery::{DroppedRange, RecoveryReport};
pub use state::LogState;
pub use subscribe::Subscription;
pub use types::{Durability, Expectation, Lsn, RecoveryMode, SegmentId, StreamSeq, display_stream};

/// The README's example runs as a doctest, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
