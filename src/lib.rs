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
//! See `ARCHITECTURE.md` for the module map and `segments-format.md` for the
//! on-disk format.

#![warn(missing_docs)]

mod commit;
mod compact;
mod error;
mod index;
pub mod inspect;
mod log;
mod options;
pub mod stats;
pub mod stores;
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
pub use index::{IndexStats, Record, RecordRef, StreamRead};
pub use log::{Batch, Log, LogReader, Pending};
pub use options::{CompactionOptions, Options, SegmentPreparation};
pub use recovery::{DroppedRange, RecoveryReport};
pub use state::LogState;
pub use types::{Durability, Expectation, Lsn, RecoveryMode, SegmentId, StreamSeq, display_stream};

/// The README's example runs as a doctest, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
