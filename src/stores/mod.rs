//! Typed stores in the shapes workflow engines persist their progress in,
//! over a narrow backend seam.
//!
//! [`backend::Backend`] is what a store needs from storage (guarded
//! appends, atomic multi-stream commits, snapshots, clears, reads by stream
//! and after a cursor); [`crate::Log`] implements it. Values are MessagePack
//! with field names behind a versioned envelope ([`codec`]).
//!
//! ```
//! use std::sync::Arc;
//! use annals::stores::checkpoint_rows::{CheckpointRows, SequencedRow};
//!
//! #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
//! struct Row { sequence: u64, state: String }
//! impl SequencedRow for Row {
//!     fn sequence(&self) -> u64 { self.sequence }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let log = Arc::new(annals::Log::open(dir.path(), annals::Options::default())?);
//! let rows: CheckpointRows<_, Row> = CheckpointRows::new(log);
//! rows.append("run-1", Row { sequence: 0, state: "Start".into() }).await?;
//! assert!(rows.append("run-1", Row { sequence: 0, state: "again".into() }).await.is_err());
//! assert_eq!(rows.load_run("run-1").await?.len(), 1);
//! # Ok(())
//! # }
//! ```

pub mod backend;
pub mod checkpoint_history;
pub mod checkpoint_rows;
pub mod codec;
mod documents;
mod log_backend;
pub mod mob_events;
pub mod mob_runs;
pub mod mob_specs;
pub mod whole_checkpoints;

pub use backend::{
    Action, Backend, Committed, Cursor, Entry, EntryKind, EntryRef, Expect, Incarnation, StoreError, StoreOp,
    StreamContents,
};
