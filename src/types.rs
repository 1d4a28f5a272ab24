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
    /// The stream's next sequence equals `next`, and it is still the
    /// incarnation whose first record since its last clear is at `since`
    /// (as a read returned it: [`crate::StreamRead::since`]). A clear
    /// followed by as many appends again leaves the next sequence where
    /// it was, but not the incarnation: a caller that remembers a stream's
    /// contents is told they changed.
    ExactSince {
        /// The stream's next sequence.
        next: StreamSeq,
        /// The LSN of the stream's first record since its last clear.
        since: Lsn,
    },
}

impl Expectation {
    /// Whether a stream whose next sequence is `next` meets the
    /// expectation's requirement on it. An [`Expectation::ExactSince`]
    /// also requires an incarnation, which this does not see:
    /// [`Expectation::holds_in`] checks both.
    pub fn holds(self, next: StreamSeq) -> bool {
        match self {
            Expectation::Any => true,
            Expectation::NoStream => next.0 == 0,
            Expectation::Exact(seq) | Expectation::ExactSince { next: seq, .. } => next == seq,
        }
    }

    /// Whether a stream whose next sequence is `next`, and whose first
    /// record since its last clear is at `since` (`None`: the stream has
    /// no state), meets the expectation.
    pub fn holds_in(self, next: StreamSeq, since: Option<Lsn>) -> bool {
        match self {
            Expectation::ExactSince { since: expected, .. } => self.holds(next) && since == Some(expected),
            _ => self.holds(next),
        }
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::Any => f.write_str("any"),
            Expectation::NoStream => f.write_str("no stream"),
            Expectation::Exact(seq) => write!(f, "next sequence {seq}"),
            Expectation::ExactSince { next, since } => {
                write!(f, "next sequence {next} of the incarnation since LSN {since}")
            }
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
