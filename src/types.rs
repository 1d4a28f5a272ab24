//! Positions, ids and the small value types shared by every module.

use std::fmt;

/// A position in the log: every record has one, strictly increasing across
/// the whole log. The first record is at LSN 1, so `Lsn(0)` means "before
/// everything" when used as a cursor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The cursor before the first record.
    pub const ZERO: Lsn = Lsn(0);
    /// The LSN of the first record of a new log.
    pub const FIRST: Lsn = Lsn(1);
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A sequence number inside one stream: dense, from 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct StreamSeq(pub u64);

impl fmt::Display for StreamSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What an append requires of its stream, checked in commit order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expectation {
    /// No requirement.
    Any,
    /// The stream has no live entries: it was never written, or was cleared.
    NoStream,
    /// The stream's next sequence equals this one.
    Exact(StreamSeq),
}

impl Expectation {
    /// Whether a stream whose next sequence is `next` meets the expectation.
    pub fn holds(self, next: StreamSeq) -> bool {
        match self {
            Expectation::Any => true,
            Expectation::NoStream => next.0 == 0,
            Expectation::Exact(seq) => next == seq,
        }
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::Any => f.write_str("any"),
            Expectation::NoStream => f.write_str("no stream"),
            Expectation::Exact(seq) => write!(f, "next sequence {seq}"),
        }
    }
}

/// When an append is acknowledged, and what a crash can take from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Acknowledge after an fdatasync covering the record returned Ok.
    /// Survives a power cut. The default.
    Sync,
    /// Acknowledge once the write reached the operating system. Survives a
    /// crash of the process, not of the machine.
    Flush,
    /// Acknowledge after the write; a background fdatasync runs every
    /// `Options::fsync_interval_ms`, so at most that long of acknowledged
    /// appends is at risk from a power cut.
    Periodic,
}

/// How open treats corruption that is not a torn tail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RecoveryMode {
    /// Refuse to open; report the file and offset. The default.
    #[default]
    Strict,
    /// Cut the log at the first damaged record, delete what follows, and
    /// report exactly what was dropped.
    Salvage,
}

/// Identifies a segment inside one open log: its first LSN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u64);

/// Renders a stream id for messages: UTF-8 as is, anything else in hex.
pub fn display_stream(stream: &[u8]) -> String {
    match std::str::from_utf8(stream) {
        Ok(text) if !text.chars().any(char::is_control) => text.to_owned(),
        _ => {
            let mut out = String::from("0x");
            for byte in stream {
                out.push_str(&format!("{byte:02x}"));
            }
            out
        }
    }
}
