//! Opening a log: validate every segment, rebuild the index, and decide what
//! damage is a torn tail to cut and what is corruption to report.
//!
//! The decision table lives in `segments-format.md` ("Recovery"); each row is
//! named in a comment where this module implements it. In short: a record may
//! be cut only in the last segment, and only if no valid frame after it says
//! (through its `durable_lsn`) that the record had been made durable. Anything
//! else is corruption: open fails naming the file and offset, unless the
//! caller asked for [`RecoveryMode::Salvage`].

use std::path::{Path, PathBuf};

use crate::error::{Corruption, CorruptionKind, Error, Result};
use crate::frame::{FRAME_HEADER_BYTES, FrameDefect, decode_frame_anywhere, decode_frame_at};
use crate::fs::{File, FileSystem};
use crate::index::Index;
use crate::segment::{
    SEGMENT_HEADER_BYTES, SPARE_PREFIX, SPARE_SUFFIX, Segment, SegmentHeader, parse_segment_file_name,
};
use crate::types::{Lsn, RecoveryMode};

/// Whether recovery may change files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Cut torn tails, delete spares, make the recovered tail durable.
    ReadWrite,
    /// Change nothing; report what a read-write open would do, and keep
    /// going past corruption to find every problem.
    ReadOnly,
}

/// What recovery found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecoveryReport {
    /// Segments opened.
    pub segments: usize,
    /// Records (operations) found.
    pub records: u64,
    /// Bytes of valid frames, headers included.
    pub bytes: u64,
    /// The torn tail cut from the last segment (or, read-only, that would be).
    pub torn_tail: Option<DroppedRange>,
    /// What salvage mode dropped, in file order.
    pub salvaged: Vec<DroppedRange>,
    /// Unpublished spare segments removed.
    pub spares_removed: usize,
    /// Bytes of the last segment's tail rewritten and synced because they
    /// were written after the last fdatasync recorded in the log.
    pub tail_bytes_resynced: u64,
}

/// A range of a file that recovery cut or deleted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DroppedRange {
    /// The segment file.
    pub file: PathBuf,
    /// First byte dropped.
    pub offset: u64,
    /// Bytes dropped (zeroed, or the file's length when `file_deleted`).
    pub bytes: u64,
    /// The file was deleted.
    pub file_deleted: bool,
    /// The LSN of the first record dropped, or that would have come next.
    pub from_lsn: Lsn,
    /// Why.
    pub reason: String,
}

/// The result of recovery.
#[derive(Debug)]
pub struct Recovered {
    /// The rebuilt index; its last segment is where writing resumes.
    pub index: Index,
    /// The log's id, if it has any segment.
    pub log_id: Option<[u8; 16]>,
    /// What was found and done.
    pub report: RecoveryReport,
    /// Read-only: every corruption found. Read-write: empty (the first one fails the open).
    pub problems: Vec<Corruption>,
}

/// How one segment's frames ended.
enum ScanEnd {
    /// Zeros from `offset` to the end of the file.
    Clean,
    /// A frame that is not valid here.
    Defect { offset: usize, why: String, stream_inconsistent: bool },
}

struct Recovery<'a> {
    fs: &'a dyn FileSystem,
    dir: &'a Path,
    access: Access,
    mode: RecoveryMode,
    index: Index,
    log_id: Option<[u8; 16]>,
    report: RecoveryReport,
    problems: Vec<Corruption>,
    body_bytes_max: usize,
    /// Read-only: an earlier corruption broke the chain, and scanning went on
    /// from a later segment's first LSN.
    resynced: bool,
}

/// Opens every segment in `dir`, checks it and rebuilds the index.
pub fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    access: Access,
    mode: RecoveryMode,
    body_bytes_max: usize,
) -> Result<Recovered> {
    let mut recovery = Recovery {
        fs,
        dir,
        access,
        mode,
        index: Index::new(body_bytes_max),
        log_id: None,
        report: RecoveryReport::default(),
        problems: Vec::new(),
        body_bytes_max,
        resynced: false,
    };
    recovery.run()?;
    recovery.index.shrink_to_fit();
    Ok(Recovered {
        index: recovery.index,
        log_id: recovery.log_id,
        report: recovery.report,
        problems: recovery.problems,
    })
}

impl Recovery<'_> {
    fn run(&mut self) -> Result<()> {
        let names = self.fs.list(self.dir).map_err(|error| Error::io("list", self.dir, error))?;
        let mut segments: Vec<(Lsn, String)> =
            names.iter().filter_map(|name| parse_segment_file_name(name).map(|lsn| (lsn, name.clone()))).collect();
        segments.sort();
        self.remove_spares(&names)?;
        let mut expected = Lsn::FIRST;
        for (position, (name_lsn, name)) in segments.iter().enumerate() {
            let is_last = position + 1 == segments.len();
            let path = self.dir.join(name);
            match self.open_segment(&path, *name_lsn, expected)? {
                Ok(segment) => {
                    self.index.push_segment(segment.clone(), SEGMENT_HEADER_BYTES);
                    self.report.segments += 1;
                    let end = self.scan_segment(&segment);
                    match self.settle_end(&segment, end, is_last)? {
                        Settled::Continue => expected = self.index.next_lsn(),
                        Settled::Stop => break,
                        Settled::Resync => expected = Lsn(u64::MAX),
                    }
                }
                Err(problem) => {
                    if self.corruption_at(&segments[position..], problem, 0)? {
                        break;
                    }
                    expected = Lsn(u64::MAX);
                }
            }
        }
        if self.access == Access::ReadWrite {
            self.resync_tail()?;
        }
        Ok(())
    }

    /// Spares were never published: nothing in them was acknowledged.
    fn remove_spares(&mut self, names: &[String]) -> Result<()> {
        let spares: Vec<&String> =
            names.iter().filter(|name| name.starts_with(SPARE_PREFIX) && name.ends_with(SPARE_SUFFIX)).collect();
        self.report.spares_removed = spares.len();
        if self.access == Access::ReadOnly || spares.is_empty() {
            return Ok(());
        }
        for name in spares {
            let path = self.dir.join(name);
            self.fs.remove(&path).map_err(|error| Error::io("remove", &path, error))?;
        }
        self.fs.sync_dir(self.dir).map_err(|error| Error::io("fsync directory", self.dir, error))
    }

    /// Opens a segment and checks its header against its name, the log and
    /// the LSN the previous segment ended at. `Ok(Err(_))` is corruption.
    fn open_segment(&mut self, path: &Path, name_lsn: Lsn, expected: Lsn) -> Result<Result<Segment, Corruption>> {
        let corrupt = |offset: u64, kind| Ok(Err(Corruption { file: path.to_owned(), offset, kind }));
        let writable = self.access == Access::ReadWrite;
        let file = self.fs.open(path, writable).map_err(|error| Error::io("open", path, error))?;
        let len = file.len().map_err(|error| Error::io("stat", path, error))?;
        if len < SEGMENT_HEADER_BYTES as u64 {
            return corrupt(0, CorruptionKind::BadHeader("file is shorter than a segment header"));
        }
        let map = file.map().map_err(|error| Error::io("mmap", path, error))?;
        let header = match SegmentHeader::decode(&map.slice(0, SEGMENT_HEADER_BYTES)) {
            Ok(header) => header,
            Err(kind) => return corrupt(0, kind),
        };
        if header.first_lsn != name_lsn {
            return corrupt(32, CorruptionKind::BadHeader("first lsn differs from the file name"));
        }
        match self.log_id {
            Some(log_id) if log_id != header.log_id => {
                return corrupt(16, CorruptionKind::ForeignSegment);
            }
            _ => self.log_id = Some(header.log_id),
        }
        if len != header.segment_bytes {
            return corrupt(
                len.min(header.segment_bytes),
                CorruptionKind::SegmentLength { expected: header.segment_bytes, found: len },
            );
        }
        // `u64::MAX` means an earlier problem broke the chain: read-only goes on from here.
        if expected != Lsn(u64::MAX) && header.first_lsn != expected {
            let kind = if header.first_lsn > expected {
                CorruptionKind::MissingSegment { end: expected, next_first: header.first_lsn }
            } else {
                CorruptionKind::BadHeader("segment overlaps the one before it")
            };
            return corrupt(0, kind);
        }
        if expected == Lsn(u64::MAX) {
            self.index = Index::new(self.body_bytes_max);
            self.index.set_next_lsn(header.first_lsn);
            self.resynced = true;
        }
        Ok(Ok(Segment { header, path: path.to_owned(), file, map }))
    }

    /// Applies every valid frame of a segment to the index; returns where and why they stop.
    fn scan_segment(&mut self, segment: &Segment) -> ScanEnd {
        let bytes = segment.map.slice(0, segment.map.len());
        let mut offset = SEGMENT_HEADER_BYTES;
        loop {
            let expected = self.index.next_lsn();
            let log_id = &segment.header.log_id;
            let frame = match decode_frame_at(&bytes, offset, log_id, expected, self.body_bytes_max) {
                Ok((at, frame)) => {
                    // Row 1b: zero padding, then the clean-close marker at the next boundary.
                    if at != offset {
                        self.index.skip_padding(at);
                        offset = at;
                    }
                    frame
                }
                Err(FrameDefect::Zeroed) if is_zero(&bytes[offset..]) => return ScanEnd::Clean,
                Err(defect) => {
                    return ScanEnd::Defect { offset, why: defect.describe(), stream_inconsistent: false };
                }
            };
            if self.resynced {
                // Past an earlier corruption (read-only): the streams' history is
                // unknown, so check the frames alone.
                self.index.place_frame(offset, &frame);
            } else {
                if let Err(kind) = self.index.check_frame(&frame) {
                    return ScanEnd::Defect { offset, why: kind.to_string(), stream_inconsistent: true };
                }
                self.index.apply_frame(offset, &frame);
            }
            self.report.records += u64::from(frame.lsn_count);
            self.report.bytes += frame.total_bytes() as u64;
            offset += frame.total_bytes();
        }
    }

    /// Decides what the end of a segment's frames means (the decision table).
    fn settle_end(&mut self, segment: &Segment, end: ScanEnd, is_last: bool) -> Result<Settled> {
        let ScanEnd::Defect { offset, why, stream_inconsistent } = end else {
            // Row 1: zeros to the end of the file: a clean end.
            return Ok(Settled::Continue);
        };
        let expected = self.index.next_lsn();
        let bytes = segment.map.slice(0, segment.map.len());
        let damaged_end = last_nonzero_end(&bytes, offset);
        let confirmed = later_durable_frame(&bytes, offset, expected, &segment.header.log_id, self.body_bytes_max);
        if is_last && !stream_inconsistent && confirmed.is_none() {
            // Row 2: damage in the last segment that no later frame confirms as durable: a torn tail.
            let range = DroppedRange {
                file: segment.path.clone(),
                offset: offset as u64,
                bytes: (damaged_end - offset) as u64,
                file_deleted: false,
                from_lsn: expected,
                reason: why,
            };
            if self.access == Access::ReadWrite {
                zero_range(&*segment.file, &segment.path, offset, damaged_end)?;
            }
            self.report.torn_tail = Some(range);
            return Ok(Settled::Continue);
        }
        // Rows 3 to 5: damage in a sealed segment, damage followed by a frame that
        // says it was durable, or a valid frame that does not fit its stream.
        let why = match confirmed {
            Some(later) if is_last => {
                format!("{why}; a valid frame at offset {later} was written after it was durable")
            }
            _ => why,
        };
        let problem =
            Corruption { file: segment.path.clone(), offset: offset as u64, kind: CorruptionKind::BadRecord(why) };
        let segments = self.segments_from(segment)?;
        if self.corruption_at(&segments, problem, damaged_end)? { Ok(Settled::Stop) } else { Ok(Settled::Resync) }
    }

    /// The segment files from `segment` on, as `(first lsn, name)`.
    fn segments_from(&self, segment: &Segment) -> Result<Vec<(Lsn, String)>> {
        let names = self.fs.list(self.dir).map_err(|error| Error::io("list", self.dir, error))?;
        let mut segments: Vec<(Lsn, String)> = names
            .iter()
            .filter_map(|name| parse_segment_file_name(name).map(|lsn| (lsn, name.clone())))
            .filter(|(lsn, _)| *lsn >= segment.header.first_lsn)
            .collect();
        segments.sort();
        Ok(segments)
    }

    /// Handles corruption found at `problem`, in the first of `segments`.
    /// Returns whether recovery stops here. Strict read-write fails; salvage
    /// cuts the log there; read-only notes it and goes on.
    fn corruption_at(&mut self, segments: &[(Lsn, String)], problem: Corruption, damaged_end: usize) -> Result<bool> {
        if self.access == Access::ReadOnly {
            self.problems.push(problem);
            return Ok(false);
        }
        if self.mode == RecoveryMode::Strict {
            return Err(Error::Corruption(Box::new(problem)));
        }
        let from_lsn = self.index.next_lsn();
        let reason = problem.kind.to_string();
        let mut later = segments;
        if problem.offset > 0 && damaged_end > 0 {
            // The damaged segment keeps what comes before the damage.
            let segment = &self.index.segments().last().expect("the damaged segment is open").segment;
            let offset = usize::try_from(problem.offset).expect("offsets inside a mapped segment fit");
            zero_range(&*segment.file, &segment.path, offset, damaged_end)?;
            let bytes = (damaged_end.saturating_sub(offset)) as u64;
            self.report.salvaged.push(DroppedRange {
                file: problem.file.clone(),
                offset: problem.offset,
                bytes,
                file_deleted: false,
                from_lsn,
                reason: reason.clone(),
            });
            later = &segments[1..];
        }
        for (_, name) in later {
            let path = self.dir.join(name);
            let len = self.fs.open(&path, false).and_then(|file| file.len()).unwrap_or(0);
            self.fs.remove(&path).map_err(|error| Error::io("remove", &path, error))?;
            self.report.salvaged.push(DroppedRange {
                file: path,
                offset: 0,
                bytes: len,
                file_deleted: true,
                from_lsn,
                reason: reason.clone(),
            });
        }
        self.fs.sync_dir(self.dir).map_err(|error| Error::io("fsync directory", self.dir, error))?;
        Ok(true)
    }

    /// Rewrites and syncs the frames of the last segment that were written
    /// after the last fdatasync the log recorded: after a failed fsync or a
    /// process crash they may sit in the page cache without being durable,
    /// and nothing may be served, or written after them, until they are.
    fn resync_tail(&mut self) -> Result<()> {
        let Some(entry) = self.index.segments().last() else {
            return Ok(());
        };
        let Some(from) = self.index.tail_since_last_sync() else {
            return Ok(());
        };
        let segment = &entry.segment;
        let end = entry.end_offset;
        if from < end {
            let bytes = segment.map.slice(from, end - from);
            segment.file.write_at(&bytes, from as u64).map_err(|error| Error::io("write", &segment.path, error))?;
            self.report.tail_bytes_resynced = (end - from) as u64;
        }
        segment.file.sync_data().map_err(|error| Error::io("fdatasync", &segment.path, error))
    }
}

enum Settled {
    Continue,
    Stop,
    Resync,
}

/// Whether every byte is zero, eight at a time.
fn is_zero(bytes: &[u8]) -> bool {
    let words = bytes.chunks_exact(8);
    let rest = words.remainder();
    rest.iter().all(|&b| b == 0) && words.into_iter().all(|w| w == [0; 8])
}

/// The end of the last non-zero byte at or after `from` (at least `from`).
fn last_nonzero_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..].iter().rposition(|&b| b != 0).map_or(from, |i| from + i + 1)
}

/// The offset of a valid frame after `from` whose `durable_lsn` is past
/// `expected`: proof that the record at `expected` had been made durable.
fn later_durable_frame(
    bytes: &[u8],
    from: usize,
    expected: Lsn,
    log_id: &[u8; 16],
    body_bytes_max: usize,
) -> Option<usize> {
    let mut offset = from + 1;
    while offset + FRAME_HEADER_BYTES <= bytes.len() {
        let header = &bytes[offset..offset + FRAME_HEADER_BYTES];
        if is_zero(header) {
            // Skip a run of zeros quickly: no frame header is all zeros.
            let next = bytes[offset..].iter().position(|&b| b != 0).map_or(bytes.len(), |i| offset + i);
            offset = next.saturating_sub(FRAME_HEADER_BYTES - 1).max(offset + 1);
            continue;
        }
        let durable = u64::from_le_bytes(header[16..24].try_into().expect("eight bytes"));
        if durable > expected.0
            && let Ok(frame) = decode_frame_anywhere(&bytes[offset..], log_id, body_bytes_max)
            && frame.meta.durable_lsn > expected
        {
            return Some(offset);
        }
        offset += 1;
    }
    None
}

/// Writes zeros over `from..to` of a file and syncs it.
fn zero_range(file: &dyn File, path: &Path, from: usize, to: usize) -> Result<()> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK.min(to.saturating_sub(from))];
    let mut offset = from;
    while offset < to {
        let len = (to - offset).min(CHUNK);
        file.write_at(&zeros[..len], offset as u64).map_err(|error| Error::io("write", path, error))?;
        offset += len;
    }
    file.sync_data().map_err(|error| Error::io("fdatasync", path, error))
}
