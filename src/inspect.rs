//! Getting the data out of a damaged log: every intact frame, wherever it
//! is, and exactly what is not intact.
//!
//! Recovery stops at the first damage it cannot explain (or, in salvage
//! mode, cuts there). Inspection reads past it: [`scan_intact`] walks every
//! segment file, checks every frame's checksum, steps over damage to the
//! next valid frame, and reports each damaged range by file and offset. It
//! changes nothing and takes no lock. `annals verify` counts what it finds,
//! `annals dump --salvage` prints it, and [`repair`] copies it into a new log.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::commit::{OpKind, PruneSnapshots};
use crate::error::{CorruptionKind, Error, Result};
use crate::frame::{
    FRAME_HEADER_BYTES, FrameDefect, FrameView, MARKER_RESERVE_BYTES, RecordKind, decode_frame_anywhere, marker_offset,
    padded_marker_at,
};
use crate::fs::{FileSystem, MappedFile};
use crate::log::{Batch, Log};
use crate::options::Options;
use crate::recovery::{for_each_valid_frame_after, is_zero, last_nonzero_end};
use crate::segment::{
    SEGMENT_BYTES_MAX, SEGMENT_HEADER_BYTES, SegmentHeader, parse_compacted_file_name, parse_segment_file_name,
};
use crate::state::{STATE_FILE_NAME, StateRead};
use crate::types::{Durability, Expectation, Lsn};

/// A range of a file that holds no intact frame.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// The file.
    pub file: PathBuf,
    /// First damaged byte.
    pub offset: u64,
    /// Damaged bytes (0 when what is wrong is the file as a whole).
    pub bytes: u64,
    /// What is wrong.
    pub what: String,
}

/// What [`scan_intact`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IntactScan {
    /// Segment files read.
    pub segments: usize,
    /// Intact frames.
    pub frames: u64,
    /// Records (operations) in intact frames.
    pub records: u64,
    /// Distinct streams among those records.
    pub streams: usize,
    /// The highest LSN of an intact record (0 if none).
    pub last_lsn: Lsn,
    /// The log had taken every LSN below this one, as far as can be known:
    /// past every intact frame (gaps included) and what the state file
    /// records. A copy of the log resumes here, so that no LSN the log may
    /// have acknowledged is handed out again.
    pub end_lsn: Lsn,
    /// Every damaged range, in file order.
    pub damage: Vec<Damage>,
}

/// Reads every segment file of `dir`, calls `visit(file, offset, frame)` on
/// each intact frame in file order (LSNs increasing), and reports the
/// damage between them. Changes nothing.
///
/// A frame is intact when its checksum (seeded with the log's id) holds and
/// its LSN follows the frames before it; the log's id comes from the state
/// file, else from the first segment header that is intact.
///
/// Beside a live writer, a compaction that commits while the scan reads
/// the state file and lists the directory, or that removes a listed file
/// before the scan opens it, is not damage: the scan opens every file
/// before it visits a frame, and reads the directory again for either.
/// Nor is the group it is writing: damage in the newest segment, while a
/// writer holds the log, is looked at again a few times (5 ms apart) and
/// reported only if it stays.
///
/// # Errors
/// [`Error::NotALog`] for a directory with no segment and no state file;
/// [`Error::Io`] if a file cannot be read.
pub fn scan_intact(
    fs: &dyn FileSystem,
    dir: &Path,
    mut visit: impl FnMut(&Path, usize, &FrameView<'_>),
) -> Result<IntactScan> {
    let (state, segments) = open_listed(fs, dir)?;
    let mut scan = IntactScan::default();
    // The log's id: the state file's, unless no segment header shares it.
    let header_ids: Vec<[u8; 16]> = segments
        .iter()
        .filter_map(|(_, _, map)| SegmentHeader::decode(&map.slice(0, map.len().min(SEGMENT_HEADER_BYTES))).ok())
        .map(|header| header.log_id)
        .collect();
    let mut log_id = match &state {
        StateRead::Found { state, .. } if header_ids.is_empty() || header_ids.contains(&state.log_id) => {
            Some(state.log_id)
        }
        StateRead::Found { .. } => {
            let what = "the state file names another log than every segment does".to_owned();
            scan.damage.push(Damage { file: dir.join(STATE_FILE_NAME), offset: 16, bytes: 0, what });
            header_ids.first().copied()
        }
        _ => header_ids.first().copied(),
    };
    if let StateRead::Found { state, .. } = &state
        && log_id == Some(state.log_id)
    {
        scan.end_lsn = state.lsn_lease_end.max(state.durable_end_lsn);
    }
    if let StateRead::Damaged(problem) = &state {
        scan.damage.push(Damage {
            file: problem.file.clone(),
            offset: problem.offset,
            bytes: 0,
            what: problem.kind.to_string(),
        });
    }
    let mut streams: HashSet<Vec<u8>> = HashSet::new();
    let mut next_lsn = Lsn::ZERO;
    // Where the next segment must start, while that is known: the oldest
    // at the state file's oldest segment, each later one where the one
    // before ended (compacted segments end with a gap up to the next).
    // A segment removed from the chain shows only here: every frame left
    // is intact.
    let mut chain_end = match &state {
        StateRead::Found { state, .. } if log_id == Some(state.log_id) => Some(state.oldest_segment_lsn),
        _ => None,
    };
    // Whether a writer holds the log, asked once there is damage to judge.
    let mut writer_active = None;
    for (position, (_, path, map)) in segments.iter().enumerate() {
        let newest = position + 1 == segments.len();
        let path = path.clone();
        scan.segments += 1;
        let file_bytes = map.len() as u64;
        let header = SegmentHeader::decode(&map.slice(0, map.len().min(SEGMENT_HEADER_BYTES)));
        // No segment is longer than its header says, nor than the format
        // allows: what lies past that is damage, and is not read (a sparse
        // file of many GiB named like a segment is read in no time).
        let segment_bytes = match &header {
            Ok(header) => header.segment_bytes,
            Err(_) if file_bytes > SEGMENT_BYTES_MAX => {
                let what = CorruptionKind::SegmentTooLong { found: file_bytes, max: SEGMENT_BYTES_MAX }.to_string();
                scan.damage.push(Damage { file: path, offset: 0, bytes: file_bytes, what });
                chain_end = None;
                continue;
            }
            Err(_) => file_bytes,
        };
        // Reported after the damage before it, in file order.
        let past_end = (file_bytes > segment_bytes).then(|| Damage {
            file: path.clone(),
            offset: segment_bytes,
            bytes: file_bytes - segment_bytes,
            what: CorruptionKind::SegmentLength { expected: segment_bytes, found: file_bytes }.to_string(),
        });
        let bytes = map.slice(0, file_bytes.min(segment_bytes) as usize);
        if let (Ok(header), Some(end)) = (&header, chain_end)
            && header.first_lsn > end
            && log_id == Some(header.log_id)
        {
            let what = format!(
                "no segment holds lsns {end} to {}: a segment before this one is missing",
                header.first_lsn.0 - 1
            );
            scan.damage.push(Damage { file: path.clone(), offset: 0, bytes: 0, what });
        }
        let damage_before = scan.damage.len();
        match (&header, log_id) {
            (Ok(header), Some(id)) if header.log_id != id => {
                let what = "segment belongs to another log".to_owned();
                scan.damage.push(Damage { file: path, offset: 0, bytes: file_bytes, what });
                continue;
            }
            (Ok(header), None) => log_id = Some(header.log_id),
            (Err(kind), _) => {
                let bytes = SEGMENT_HEADER_BYTES.min(bytes.len()) as u64;
                scan.damage.push(Damage { file: path.clone(), offset: 0, bytes, what: kind.to_string() });
            }
            _ => {}
        }
        let Some(id) = log_id else {
            scan.damage.extend(past_end);
            continue;
        };
        let mut offset = SEGMENT_HEADER_BYTES;
        let mut rereads = 0;
        while offset < bytes.len() {
            match decode_frame_anywhere(&bytes[offset..], &id) {
                Ok(frame) if frame.meta.lsn >= next_lsn => {
                    rereads = 0;
                    visit(&path, offset, &frame);
                    count(&mut scan, &mut streams, &frame);
                    next_lsn = frame.next_lsn();
                    scan.end_lsn = scan.end_lsn.max(next_lsn);
                    offset += frame.total_bytes();
                }
                Err(FrameDefect::Zeroed) if is_zero(&bytes[offset..]) => break,
                Err(_) if padded_marker_at(&bytes, offset, &id).is_some() => offset = marker_offset(offset),
                // Beside a live writer, the group being written can show a
                // damaged frame ahead of a complete later one (stores of one
                // write are not seen in order by another core); the map shows
                // the rest as it lands. Damage on disk stays where it is:
                // look again a few times before calling it damage.
                _ if newest
                    && rereads < crate::recovery::IN_FLIGHT_REREADS_MAX
                    && *writer_active.get_or_insert_with(|| fs.writer_active(dir).unwrap_or(false)) =>
                {
                    rereads += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => {
                    let what = match other {
                        Ok(frame) => format!("stale frame: lsn {} after lsn {}", frame.meta.lsn, next_lsn),
                        Err(defect) => defect.describe(),
                    };
                    let next = next_intact(&bytes, offset, &id, next_lsn);
                    let end = next.unwrap_or_else(|| last_nonzero_end(&bytes, offset));
                    let bytes_damaged = (end - offset) as u64;
                    scan.damage.push(Damage { file: path.clone(), offset: offset as u64, bytes: bytes_damaged, what });
                    match next {
                        Some(next) => offset = next,
                        None => break,
                    }
                }
            }
        }
        // Damage in this segment explains a later start of the next one.
        chain_end = (header.is_ok() && scan.damage.len() == damage_before)
            .then_some(next_lsn.max(header.as_ref().map_or(Lsn::ZERO, |header| header.first_lsn)));
        scan.damage.extend(past_end);
    }
    if let StateRead::Found { state, .. } = &state
        && log_id == Some(state.log_id)
        && segments.iter().all(|(lsn, _, _)| *lsn < state.newest_segment_lsn)
    {
        let what = format!("the newest segment, which starts at lsn {}, is missing", state.newest_segment_lsn);
        scan.damage.push(Damage { file: dir.to_owned(), offset: 0, bytes: 0, what });
    }
    scan.streams = streams.len();
    Ok(scan)
}

/// A segment file the intact scan reads: the LSN its name gives, its path
/// and its bytes.
type ListedSegment = (Lsn, PathBuf, Arc<dyn MappedFile>);

/// How often the intact scan reads the directory again when a segment file
/// it listed was gone when it opened it.
const LISTING_ATTEMPTS_MAX: usize = 16;

/// The state file, and every segment file of the log it names, in LSN
/// order, each opened and mapped before any frame is visited. Beside a live
/// writer, a compaction or retention may remove a file once it is listed:
/// then all is read again (a file missing for good fails every attempt). A
/// file mapped stays readable once removed.
fn open_listed(fs: &dyn FileSystem, dir: &Path) -> Result<(StateRead, Vec<ListedSegment>)> {
    let mut attempts = 1;
    loop {
        match open_listed_once(fs, dir) {
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && attempts < LISTING_ATTEMPTS_MAX =>
            {
                attempts += 1;
            }
            opened => return opened,
        }
    }
}

fn open_listed_once(fs: &dyn FileSystem, dir: &Path) -> Result<(StateRead, Vec<ListedSegment>)> {
    // Beside a live writer, a compaction may commit between the two reads.
    let (state, names) = crate::recovery::read_state_and_list(fs, dir)?;
    let mut segments: Vec<(Lsn, String)> =
        names.iter().filter_map(|name| parse_segment_file_name(name).map(|lsn| (lsn, name.clone()))).collect();
    // The compacted segments the state file names, instead of the ordinary
    // ones they replaced; files a compaction left behind are not the log.
    if let StateRead::Found { state, .. } = &state
        && state.compaction_generation > 0
    {
        segments.retain(|(lsn, _)| *lsn >= state.compacted_end_lsn);
        segments.extend(names.iter().filter_map(|name| {
            parse_compacted_file_name(name)
                .filter(|(_, generation)| *generation == state.compaction_generation)
                .map(|(lsn, _)| (lsn, name.clone()))
        }));
    }
    segments.sort();
    if segments.is_empty() && state == StateRead::Missing {
        return Err(Error::NotALog { dir: dir.to_owned() });
    }
    let mut opened = Vec::with_capacity(segments.len());
    for (lsn, name) in segments {
        let path = dir.join(name);
        let file = fs.open(&path, false).map_err(|error| Error::io("open", &path, error))?;
        let map = file.map().map_err(|error| Error::io("mmap", &path, error))?;
        opened.push((lsn, path, map));
    }
    Ok((state, opened))
}

fn count(scan: &mut IntactScan, streams: &mut HashSet<Vec<u8>>, frame: &FrameView<'_>) {
    scan.frames += 1;
    for op in frame.ops() {
        scan.records += 1;
        scan.last_lsn = op.lsn;
        if !streams.contains(op.stream) {
            streams.insert(op.stream.to_vec());
        }
    }
}

/// The offset of the next intact frame after damage at `from`: a valid
/// frame whose LSN does not go back.
fn next_intact(bytes: &[u8], from: usize, log_id: &[u8; 16], next_lsn: Lsn) -> Option<usize> {
    let mut found = None;
    for_each_valid_frame_after(bytes, from + 1, log_id, |offset, _, frame| match frame() {
        Some(frame) if frame.meta.lsn >= next_lsn => {
            found = Some(offset);
            true
        }
        _ => false,
    });
    found
}

/// What [`repair`] copied and dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepairReport {
    /// What the scan of the source found, damage included.
    pub scan: IntactScan,
    /// Records copied, with their original LSNs and sequences.
    pub records_copied: u64,
    /// Intact records not copied because damage took an earlier record of
    /// their stream, so they no longer follow it; each with why.
    pub records_dropped: Vec<DroppedRecord>,
}

/// An intact record that [`repair`] could not copy.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DroppedRecord {
    /// Where it was.
    pub file: PathBuf,
    /// Offset of its frame.
    pub offset: u64,
    /// Its LSN.
    pub lsn: Lsn,
    /// Why it was not copied.
    pub why: String,
}

/// Copies every intact record of the log in `from` into a new log in
/// `into`, keeping each record's LSN and sequence (a gap frame stands for
/// LSNs lost to damage). A record that no longer follows its stream because
/// damage took an earlier one of that stream is not copied, and is listed
/// with why; so is every other record of the same frame (a batch stays all
/// or nothing). `from` is only read; `into` must not hold a log. `options`
/// are the new log's, with its record limit and segment size raised where
/// the largest record copied needs more.
///
/// # Errors
/// [`Error::InvalidArgument`] if `into` is not empty; as [`scan_intact`]
/// and [`Log::open`] otherwise.
pub fn repair(from: &Path, into: &Path, options: Options) -> Result<RepairReport> {
    let fs = options.file_system.clone();
    if fs.list(into).is_ok_and(|names| !names.is_empty()) {
        return Err(Error::InvalidArgument(format!("{} is not empty: repair writes a new log", into.display())));
    }
    // A first pass reads the whole source and keeps only the size of its
    // largest record: a source that cannot be read leaves nothing behind,
    // and the copy, a second pass, holds one record at a time however
    // large the log is.
    let mut largest_body_bytes = 0;
    scan_intact(&*fs, from, |_, _, frame| {
        if frame.ops().next().is_some() {
            largest_body_bytes = largest_body_bytes.max(frame.body.len());
        }
    })?;
    let options = Options { durability: Durability::Flush, ..options_to_hold(options, largest_body_bytes) };
    let log = Log::open(into, options)?;
    let mut report = RepairReport::default();
    let mut failure = None;
    let scan = scan_intact(&*fs, from, |file, offset, frame| {
        if failure.is_none()
            && let Some(batch) = batch_of(frame)
            && let Err(error) = copy(&log, &mut report, (file, offset, frame.meta.lsn), batch)
        {
            failure = Some(error);
        }
    })?;
    if let Some(error) = failure {
        return Err(error);
    }
    report.scan = scan;
    // The source may have acknowledged LSNs past its last intact record
    // (lost to the damage, or a gap): the copy never hands them out again.
    if report.scan.end_lsn > Lsn(log.last_lsn()?.0 + 1) {
        log.skip_to(report.scan.end_lsn)?;
    }
    log.close().wait()?;
    Ok(report)
}

/// Copies one frame's records (`batch`, read from `file` at `offset`, its
/// first LSN `lsn`) into `log` with its LSN, or reports them dropped when
/// their streams no longer meet them there.
///
/// # Errors
/// Any other failure of the copy's log.
fn copy(log: &Log, report: &mut RepairReport, (file, offset, lsn): (&Path, usize, Lsn), batch: Batch) -> Result<()> {
    if lsn > Lsn(log.last_lsn()?.0 + 1) {
        log.skip_to(lsn)?;
    }
    let len = batch.len() as u64;
    match log.commit_any(batch, Durability::Flush).wait() {
        Ok(_) => report.records_copied += len,
        Err(error @ (Error::Conflict { .. } | Error::SnapshotOutOfRange { .. } | Error::PruneOutOfRange { .. })) => {
            let why = error.to_string();
            report.records_dropped.push(DroppedRecord { file: file.to_owned(), offset: offset as u64, lsn, why });
        }
        Err(error) => return Err(error),
    }
    Ok(())
}

/// `options`, with a record limit and a segment size large enough for a
/// frame body of `body_bytes`: the options the damaged log was written
/// with are not known (`annals repair` passes the defaults), and what it
/// holds must be copied whatever they were. A copy's frame body is never
/// larger than its source's.
fn options_to_hold(options: Options, body_bytes: usize) -> Options {
    if body_bytes <= options.record_bytes_max {
        return options;
    }
    // The source's frame fitted a segment of at most `SEGMENT_BYTES_MAX`
    // with the same headers and marker reserve, so this does too.
    let segment_bytes_needed = (SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + MARKER_RESERVE_BYTES + body_bytes) as u64;
    let segment_bytes = options.segment_bytes.max(segment_bytes_needed).min(SEGMENT_BYTES_MAX);
    Options { record_bytes_max: body_bytes, segment_bytes, ..options }
}

/// The operations of a frame as a batch whose guards hold only where the
/// stream is exactly where the frame found it.
fn batch_of(frame: &FrameView<'_>) -> Option<Batch> {
    let mut batch = Batch::new();
    for op in frame.ops() {
        let expected = Expectation::Exact(op.seq);
        batch = match op.kind {
            RecordKind::Entry => batch.with(OpKind::Entry(expected), op.stream, op.payload),
            RecordKind::Snapshot => batch.with(OpKind::Snapshot(op.seq), op.stream, op.payload),
            RecordKind::Tombstone => batch.with(OpKind::Clear(expected), op.stream, &[]),
            RecordKind::Prune => {
                let snapshots = PruneSnapshots::Before(crate::frame::prune_snapshots_before(op.payload));
                batch.with(OpKind::Prune(op.seq, snapshots, Expectation::Any, None), op.stream, &[])
            }
            RecordKind::Base => batch.with(OpKind::Base(op.seq), op.stream, &[]),
        };
    }
    (!batch.is_empty()).then(|| batch.at_time(frame.meta.timestamp_ms))
}
