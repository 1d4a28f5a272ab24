//! The one error type of Annals.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::types::{Expectation, Lsn, StreamSeq};

/// Everything that can go wrong, kept apart by what the caller can do about it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed. During a write this also poisons the log.
    #[error("{op} {path}: {source}", path = path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: Arc<io::Error>,
    },
    /// Bytes on disk are damaged or inconsistent.
    #[error("{0}")]
    Corruption(Box<Corruption>),
    /// A guarded append found its stream elsewhere than expected; nothing was written.
    #[error("conflict on stream {stream}: expected {expected}, stream is at next sequence {actual}")]
    Conflict {
        /// The stream, rendered for display.
        stream: String,
        /// What the append required.
        expected: Expectation,
        /// The stream's next sequence when the append was checked.
        actual: StreamSeq,
    },
    /// A snapshot named a sequence the stream does not have, or one older than its latest snapshot.
    #[error("snapshot of stream {stream} through sequence {seq} is out of range (next sequence {next_seq})")]
    SnapshotOutOfRange {
        /// The stream, rendered for display.
        stream: String,
        /// The sequence the snapshot claimed to cover.
        seq: StreamSeq,
        /// The stream's next sequence.
        next_seq: StreamSeq,
    },
    /// A prune named a sequence past the stream's next one; nothing was written.
    #[error("prune of stream {stream} before sequence {seq} is out of range (next sequence {next_seq})")]
    PruneOutOfRange {
        /// The stream, rendered for display.
        stream: String,
        /// The sequence the prune named.
        seq: StreamSeq,
        /// The stream's next sequence.
        next_seq: StreamSeq,
    },
    /// A read asked for entries that retention removed: the stream now
    /// starts at `start`.
    #[error("stream {stream} was pruned: sequence {from} was asked for, the stream now starts at {start}")]
    Pruned {
        /// The stream, rendered for display.
        stream: String,
        /// The first sequence asked for.
        from: StreamSeq,
        /// The stream's first live sequence.
        start: StreamSeq,
    },
    /// A read after `after` asked for records that compaction reclaimed:
    /// the log now starts at `oldest`.
    #[error("the log was trimmed: records after lsn {after} were asked for, the log now starts at lsn {oldest}")]
    Trimmed {
        /// The position asked for.
        after: Lsn,
        /// The oldest LSN the log holds.
        oldest: Lsn,
    },
    /// A named cursor was released (it lagged more than
    /// `Options::cursor_lag_bytes_max`) and log-wide retention then dropped
    /// its own record: where it was is no longer known, and everything
    /// before `oldest` is gone.
    #[error("cursor {name} was released and trimmed: the log now starts at lsn {oldest}")]
    CursorTrimmed {
        /// The cursor's name.
        name: String,
        /// The oldest LSN the log holds.
        oldest: Lsn,
    },
    /// An input is over one of the log's limits; nothing was written.
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// Which limit.
        what: &'static str,
        /// The size given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The write would take an LSN past the last one there is (2^64 - 2):
    /// nothing was written and the log is not poisoned. Only a log resumed
    /// at the top of the LSN space gets here (salvage past a file named for
    /// such an LSN); copy its records to a new log (`annals repair`).
    #[error("the log's LSNs are exhausted: the next is {next}, and no LSN is ever reused (nothing was written)")]
    LsnSpaceExhausted {
        /// The LSN the write would have taken first.
        next: Lsn,
    },
    /// An argument or option is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An earlier write or fsync failed; the log accepts no writes until it is reopened.
    #[error("log is poisoned by an earlier failure ({cause}); {remedy}", remedy = cause.remedy())]
    Poisoned {
        /// The failure that poisoned the log.
        cause: Arc<Error>,
    },
    /// The log was closed.
    #[error("log is closed")]
    Closed,
    /// The disk is full: a segment the append needed could not be prepared.
    /// Nothing was written and the log is not poisoned; appends succeed
    /// again once space is freed.
    #[error("disk full: {op} {path} failed; free space on the device and retry (nothing was written, the log stays open)", path = path.display())]
    DiskFull {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The directory holds no Annals log: no segment and no state file.
    #[error("{dir} is not an Annals log (it holds no segment and no annals.state)", dir = dir.display())]
    NotALog {
        /// The directory.
        dir: PathBuf,
    },
    /// Another handle or process holds the log's directory.
    #[error("log directory {dir} is locked by another process or handle", dir = dir.display())]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io { op, path: path.into(), source: Arc::new(source) }
    }

    pub(crate) fn corruption(file: impl Into<PathBuf>, offset: u64, kind: CorruptionKind) -> Error {
        Error::Corruption(Box::new(Corruption { file: file.into(), offset, kind }))
    }

    /// An I/O error, or [`Error::DiskFull`] when the device is out of space.
    pub(crate) fn io_or_full(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        if source.kind() == io::ErrorKind::StorageFull || source.kind() == io::ErrorKind::QuotaExceeded {
            return Error::DiskFull { op, path: path.into() };
        }
        Error::io(op, path, source)
    }

    /// What to do about this error when it poisoned a log.
    pub fn remedy(&self) -> &'static str {
        let kind = match self {
            Error::Io { source, .. } => source.kind(),
            Error::DiskFull { .. } => io::ErrorKind::StorageFull,
            Error::Poisoned { cause } => return cause.remedy(),
            _ => io::ErrorKind::Other,
        };
        match kind {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                "the disk is full: free space on the device, then reopen the log (recovery keeps every acknowledged record)"
            }
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                "the log's directory or files are not writable: fix their permissions or remount the device read-write, then reopen the log (LogReader and annals verify read it meanwhile)"
            }
            _ => {
                "check the device and the system log for I/O errors, then reopen the log (recovery keeps every acknowledged record)"
            }
        }
    }

    /// The corruption this error reports, if it is one.
    pub fn as_corruption(&self) -> Option<&Corruption> {
        match self {
            Error::Corruption(corruption) => Some(corruption),
            _ => None,
        }
    }
}

/// Where damage is and what it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corruption in {file} at offset {offset}: {kind}", file = file.display())]
pub struct Corruption {
    /// The segment file (or directory, for a missing segment).
    pub file: PathBuf,
    /// Byte offset in that file.
    pub offset: u64,
    /// What is wrong.
    pub kind: CorruptionKind,
}

/// What kind of damage was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// The segment header's magic bytes are wrong.
    #[error("bad segment magic")]
    BadMagic,
    /// The segment was written by a format version this build cannot read.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u32),
    /// The segment header's checksum does not match.
    #[error("segment header checksum mismatch")]
    HeaderChecksum,
    /// The segment header is malformed.
    #[error("bad segment header: {0}")]
    BadHeader(&'static str),
    /// The segment belongs to another log.
    #[error("segment belongs to another log")]
    ForeignSegment,
    /// The file's length differs from the length its header records.
    #[error("segment is {found} bytes, its header says {expected}")]
    SegmentLength {
        /// Length the header records.
        expected: u64,
        /// Length found.
        found: u64,
    },
    /// The file is longer than any segment the format allows
    /// (`SEGMENT_BYTES_MAX`), and its header does not say how long it was
    /// made: nothing in it is read.
    #[error("file is {found} bytes, longer than the largest segment ({max} bytes)")]
    SegmentTooLong {
        /// Length found.
        found: u64,
        /// The largest segment the format allows.
        max: u64,
    },
    /// A record in the middle of the log is damaged (or valid records follow a damaged one).
    #[error("damaged record ({0})")]
    BadRecord(String),
    /// A segment ends before the LSN at which the next one starts.
    #[error("segment ends at lsn {end}, next segment starts at lsn {next_first}")]
    MissingSegment {
        /// The LSN after the segment's last record.
        end: Lsn,
        /// The first LSN of the next segment.
        next_first: Lsn,
    },
    /// A stream's sequences are not dense, or a snapshot or tombstone does not fit its stream.
    #[error("stream {stream}: {what}")]
    StreamInconsistent {
        /// The stream, rendered for display.
        stream: String,
        /// What is inconsistent.
        what: String,
    },
    /// The state file is damaged (both slots) or malformed.
    #[error("bad state file: {0}")]
    BadStateFile(&'static str),
    /// A version-2 log has segments but no state file.
    #[error("the state file annals.state is missing from a log that has records")]
    StateFileMissing,
    /// The state file or a segment uses features this build does not know.
    #[error("unsupported features 0x{0:x}: written by a newer version of Annals")]
    UnsupportedFeatures(u64),
    /// The log ends before an LSN the state file recorded as durable: records
    /// that had been acknowledged are damaged or missing.
    #[error("log ends at lsn {end}, but every lsn below {durable_end} was recorded durable")]
    EndBeforeDurable {
        /// The LSN after the last readable record.
        end: Lsn,
        /// The LSN below which the state file says everything was durable.
        durable_end: Lsn,
    },
    /// The newest segment the state file records is missing.
    #[error("the state file records a segment starting at lsn {recorded}, the newest present starts at lsn {found}")]
    NewestSegmentMissing {
        /// First LSN of the newest segment, as recorded.
        recorded: Lsn,
        /// First LSN of the newest segment present (0 if none).
        found: Lsn,
    },
    /// A record the index points at does not parse or is not the one expected.
    #[error("indexed record does not match: {0}")]
    IndexMismatch(String),
    /// A record the persisted index image covers differs from the checksum
    /// the image recorded for it (segments-format.md, 11.1): its bytes
    /// changed since they were verified.
    #[error("record checksum mismatch")]
    RecordChecksum,
}

/// The result type of Annals.
pub type Result<T, E = Error> = std::result::Result<T, E>;
