//! The segment file: its header, its name, and the spare prepared ahead of need.
//!
//! ```text
//! // Format: { magic | format_version | header_bytes | log_id | first_lsn | segment_bytes | created_ms | crc | reserved }
//! ```
//!
//! A segment is created under a temporary name, written with zeros to its full
//! size and synced, so that appending into it later never changes file
//! metadata. When the writer moves into it, the header (with the first LSN,
//! known only then) is written and synced, the file is renamed to its final
//! name and the directory is synced.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{CorruptionKind, Error, Result};
use crate::fs::{File, FileSystem, MappedFile};
use crate::types::Lsn;

/// Bytes in a segment header.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// The first eight bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"ANNALSEG";
/// The format version this build writes.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build reads: version-1 segments are read
/// as they are, and a read-write open upgrades the log (segments-format.md,
/// "Version history").
pub const FORMAT_VERSION_MIN: u32 = 1;
/// Suffix of a published segment's file name.
pub const SEGMENT_SUFFIX: &str = ".seg";
/// Prefix of a spare segment's file name; spares end in [`SPARE_SUFFIX`].
pub const SPARE_PREFIX: &str = "spare-";
/// Suffix of a spare segment's file name.
pub const SPARE_SUFFIX: &str = ".seg.tmp";
/// Smallest segment the format allows.
pub const SEGMENT_BYTES_MIN: u64 = 4096;
/// Largest segment the format allows (offsets inside a segment fit in a u32).
pub const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64;
/// The first segment of a new log: a log that holds a few records costs
/// this much disk, not `Options::segment_bytes`. Each later segment doubles,
/// up to `Options::segment_bytes`.
pub const FIRST_SEGMENT_BYTES: u64 = 1 << 20;

/// The size of the segment after one of `current_bytes`: twice as large, at
/// most `segment_bytes_max`, and at least `needed_bytes` (a record larger
/// than the doubled size gets a segment it fits in).
pub fn next_segment_bytes(current_bytes: u64, segment_bytes_max: u64, needed_bytes: u64) -> u64 {
    current_bytes.saturating_mul(2).min(segment_bytes_max).max(needed_bytes).max(SEGMENT_BYTES_MIN)
}

const _: () = assert!(SEGMENT_HEADER_BYTES == 8 + 4 + 4 + 16 + 8 + 8 + 8 + 4 + 4);
const CHUNK_BYTES: usize = 1 << 20;

/// The decoded header of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The format version the segment was written in.
    pub version: u32,
    /// Random id of the log; every segment and every frame checksum carry it.
    pub log_id: [u8; 16],
    /// LSN of the segment's first record.
    pub first_lsn: Lsn,
    /// The file's full (preallocated) length.
    pub segment_bytes: u64,
    /// When the segment was started, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
        bytes[0..8].copy_from_slice(&SEGMENT_MAGIC);
        bytes[8..12].copy_from_slice(&self.version.to_le_bytes());
        bytes[12..16].copy_from_slice(&(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
        bytes[16..32].copy_from_slice(&self.log_id);
        bytes[32..40].copy_from_slice(&self.first_lsn.0.to_le_bytes());
        bytes[40..48].copy_from_slice(&self.segment_bytes.to_le_bytes());
        bytes[48..56].copy_from_slice(&self.created_ms.to_le_bytes());
        let crc = crc32fast::hash(&bytes[0..56]);
        bytes[56..60].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Checks and decodes a header; the error says what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, CorruptionKind> {
        if bytes.len() < SEGMENT_HEADER_BYTES {
            return Err(CorruptionKind::BadHeader("file is shorter than a segment header"));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
        if bytes[0..8] != SEGMENT_MAGIC {
            return Err(CorruptionKind::BadMagic);
        }
        if crc32fast::hash(&bytes[0..56]) != u32_at(56) {
            return Err(CorruptionKind::HeaderChecksum);
        }
        let version = u32_at(8);
        if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version) {
            return Err(CorruptionKind::UnsupportedVersion(version));
        }
        if u32_at(12) as usize != SEGMENT_HEADER_BYTES || u32_at(60) != 0 {
            return Err(CorruptionKind::BadHeader("header length or reserved field"));
        }
        let header = SegmentHeader {
            version,
            log_id: bytes[16..32].try_into().expect("sixteen bytes"),
            first_lsn: Lsn(u64_at(32)),
            segment_bytes: u64_at(40),
            created_ms: u64_at(48),
        };
        if header.first_lsn.0 == 0 {
            return Err(CorruptionKind::BadHeader("first lsn is 0"));
        }
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&header.segment_bytes) {
            return Err(CorruptionKind::BadHeader("segment length out of range"));
        }
        Ok(header)
    }
}

/// The file name of the segment whose first record is at `first_lsn`.
pub fn segment_file_name(first_lsn: Lsn) -> String {
    format!("{:020}{SEGMENT_SUFFIX}", first_lsn.0)
}

/// The first LSN a segment file name stands for, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    parse_digits(digits, 20).map(Lsn)
}

fn parse_digits(digits: &str, len: usize) -> Option<u64> {
    if digits.len() != len || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The file name of a compacted segment of compaction generation
/// `generation` whose first record is at `first_lsn`.
pub fn compacted_file_name(first_lsn: Lsn, generation: u64) -> String {
    format!("{:020}-{generation:010}{SEGMENT_SUFFIX}", first_lsn.0)
}

/// The first LSN and compaction generation a compacted segment's file name
/// stands for, if it is one.
pub fn parse_compacted_file_name(name: &str) -> Option<(Lsn, u64)> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let (lsn, generation) = stem.split_once('-')?;
    Some((Lsn(parse_digits(lsn, 20)?), parse_digits(generation, 10)?))
}

/// Added to a compacted segment's [`compacted_file_name`] while it is being
/// written, before it is renamed into place; such files are deleted on open.
pub const COMPACTING_SUFFIX: &str = ".compacting";

/// An open segment: its file and a view of its bytes.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The header.
    pub header: SegmentHeader,
    /// Where the file is.
    pub path: PathBuf,
    /// The file, for writing (the active segment) and syncing.
    pub file: Arc<dyn File>,
    /// A view of the whole file.
    pub map: Arc<dyn MappedFile>,
    /// Written by compaction: it holds the live records of a range of LSNs,
    /// sparse, and takes no more frames.
    pub compacted: bool,
}

impl Segment {
    /// Whether compaction wrote it.
    pub fn compacted(&self) -> bool {
        self.compacted
    }
}

/// A spare segment: zeros, synced, not yet published.
#[derive(Debug)]
pub struct Spare {
    /// Its temporary path, unique among the spares of this open log.
    pub path: PathBuf,
    /// The file.
    pub file: Arc<dyn File>,
    /// Its length.
    pub bytes: u64,
}

/// Creates spare number `number`: a file of `segment_bytes` zeros, synced,
/// with its directory entry synced. Each spare has its own name, so no two
/// threads ever touch the same path.
///
/// A spare holds no user data, so a failure here never poisons a log: the
/// half-made file is removed (best effort: open removes any spare left) and
/// [`Error::DiskFull`] or [`Error::Io`] says why.
pub fn prepare_spare(fs: &dyn FileSystem, dir: &Path, segment_bytes: u64, number: u64) -> Result<Spare> {
    prepare_spare_unless(fs, dir, segment_bytes, number, &AtomicBool::new(false))
}

/// [`prepare_spare`], given up between two chunks of zeros once `stop` is
/// set (a log closing, which would only remove the spare): the half-made
/// file is removed, and [`Error::Closed`] says why. A spare of a full-size
/// segment is 64 MiB of writes and an fdatasync, tens of milliseconds that a
/// close of a session which asked for one early would otherwise wait out.
///
/// # Errors
/// As [`prepare_spare`], or [`Error::Closed`] if stopped.
pub fn prepare_spare_unless(
    fs: &dyn FileSystem,
    dir: &Path,
    segment_bytes: u64,
    number: u64,
    stop: &AtomicBool,
) -> Result<Spare> {
    let path = dir.join(format!("{SPARE_PREFIX}{number}{SPARE_SUFFIX}"));
    let file = fs.create(&path).map_err(|error| Error::io_or_full("create", &path, error))?;
    let fill = || -> Result<()> {
        // One static chunk of zeros, never written: a fresh buffer per spare
        // cost a 1 MiB `calloc` and, once the allocator kept such chunks on
        // its heap, a 1 MiB `memset` too (2.6 M instructions of a 20k-record
        // `annals load`).
        static ZEROS: [u8; CHUNK_BYTES] = [0; CHUNK_BYTES];
        let zeros = &ZEROS[..CHUNK_BYTES.min(usize::try_from(segment_bytes).unwrap_or(CHUNK_BYTES))];
        let mut offset = 0u64;
        while offset < segment_bytes {
            if stop.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            let len = (segment_bytes - offset).min(zeros.len() as u64) as usize;
            file.write_at(&zeros[..len], offset).map_err(|error| Error::io_or_full("write", &path, error))?;
            offset += len as u64;
        }
        if stop.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        file.sync_data().map_err(|error| Error::io_or_full("fdatasync", &path, error))?;
        fs.sync_dir(dir).map_err(|error| Error::io_or_full("fsync directory", dir, error))
    };
    match fill() {
        Ok(()) => Ok(Spare { path, file, bytes: segment_bytes }),
        Err(error) => {
            discard_spare(fs, dir, &path);
            Err(error)
        }
    }
}

/// Removes a spare that will not be used, and syncs the directory; best
/// effort, since open removes any spare left behind.
pub fn discard_spare(fs: &dyn FileSystem, dir: &Path, path: &Path) {
    if fs.remove(path).is_ok() {
        let _ = fs.sync_dir(dir);
    }
}

/// Turns the spare into the segment starting at `header.first_lsn`: writes
/// and syncs the header, renames the file and syncs the directory. Only then
/// may anything written into it be acknowledged.
///
/// # Errors
/// [`Error::DiskFull`] or [`Error::Io`]. Before the rename the spare is
/// removed. After it, the file stays under its published name, empty: the
/// segment before it is sealed (synced), so the empty one chains onto it,
/// and the next attempt renames a new spare over it. Nothing is written into
/// it: a failed directory fsync is never retried for the same file.
pub fn publish_spare(fs: &dyn FileSystem, dir: &Path, spare: Spare, header: SegmentHeader) -> Result<Segment> {
    let Spare { path: spare_path, file: spare, bytes } = spare;
    debug_assert_eq!(bytes, header.segment_bytes);
    let path = dir.join(segment_file_name(header.first_lsn));
    let prepared = spare
        .write_at(&header.encode(), 0)
        .map_err(|error| Error::io_or_full("write", &spare_path, error))
        .and_then(|()| spare.sync_data().map_err(|error| Error::io_or_full("fdatasync", &spare_path, error)))
        .and_then(|()| fs.rename(&spare_path, &path).map_err(|error| Error::io_or_full("rename", &path, error)));
    if let Err(error) = prepared {
        discard_spare(fs, dir, &spare_path);
        return Err(error);
    }
    fs.sync_dir(dir).map_err(|error| Error::io_or_full("fsync directory", dir, error))?;
    let map = spare.map().map_err(|error| Error::io("mmap", &path, error))?;
    Ok(Segment { header, path, file: spare, map, compacted: false })
}

/// Removes every spare file in `dir` but `keep`: spares whose preparation
/// failed and whose removal failed too (a full disk can fail an unlink on
/// some file systems). Best effort; returns how many it removed.
pub fn remove_stray_spares(fs: &dyn FileSystem, dir: &Path, keep: Option<&Path>) -> usize {
    let Ok(names) = fs.list(dir) else { return 0 };
    let mut removed = 0;
    for name in names.iter().filter(|name| name.starts_with(SPARE_PREFIX) && name.ends_with(SPARE_SUFFIX)) {
        let path = dir.join(name);
        if Some(path.as_path()) != keep && fs.remove(&path).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        let _ = fs.sync_dir(dir);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            log_id: [3; 16],
            first_lsn: Lsn(42),
            segment_bytes: 1 << 20,
            created_ms: 1_700_000_000_000,
        };
        assert_eq!(SegmentHeader::decode(&header.encode()), Ok(header));
    }

    #[test]
    fn every_header_bit_flip_is_detected() {
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            log_id: [3; 16],
            first_lsn: Lsn(42),
            segment_bytes: 1 << 20,
            created_ms: 9,
        };
        let bytes = header.encode();
        for bit in 0..SEGMENT_HEADER_BYTES * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&damaged).is_err(), "bit {bit} went unnoticed");
        }
    }

    #[test]
    fn file_names_round_trip_and_reject_strangers() {
        assert_eq!(parse_segment_file_name(&segment_file_name(Lsn(17))), Some(Lsn(17)));
        assert_eq!(parse_segment_file_name("00000000000000000017.seg.tmp"), None);
        assert_eq!(parse_segment_file_name("17.seg"), None);
        assert_eq!(parse_segment_file_name("LOCK"), None);
        assert_eq!(parse_compacted_file_name(&compacted_file_name(Lsn(17), 3)), Some((Lsn(17), 3)));
        assert_eq!(parse_segment_file_name(&compacted_file_name(Lsn(17), 3)), None);
        assert_eq!(parse_compacted_file_name(&segment_file_name(Lsn(17))), None);
        assert_eq!(parse_compacted_file_name("00000000000000000017-3.seg"), None);
    }
}
