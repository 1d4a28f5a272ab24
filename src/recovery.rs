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
use crate::frame::{
    BATCH_OP_KIND_BYTES, FRAME_HEADER_BYTES, FrameDefect, LogIdChecksum, OP_HEADER_BYTES, decode_frame_anywhere, decode_frame_at,
    check_frame_ops, decode_frame_at_from,
};
use crate::fs::{File, FileSystem, MappedFile};
use crate::index::Index;
use crate::segment::{
    COMPACTING_SUFFIX, FORMAT_VERSION, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, SEGMENT_HEADER_BYTES, SPARE_PREFIX,
    SPARE_SUFFIX, Segment, SegmentHeader, parse_compacted_file_name, parse_segment_file_name,
};
use crate::state::{LogState, STATE_TEMP_FILE_NAME, StateRead, read_state};
use crate::types::{Lsn, RecoveryMode};

/// The most LSNs any segment can hold.
const LSNS_PER_SEGMENT_MAX: u64 = lsn_capacity(SEGMENT_BYTES_MAX);

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
    /// The format version of the newest segment (0 if none).
    pub format_version: u32,
    /// Salvage cut records whose LSNs may have been acknowledged: the next
    /// record gets this LSN, past every one of them, and a gap frame records
    /// the skip (segments-format.md, "Gap").
    pub resumes_at: Option<Lsn>,
    /// Compacted segments opened (those of the state file's compaction
    /// generation).
    pub compacted_segments: usize,
    /// Files a compaction left that are not part of the log (its inputs
    /// after it committed, its outputs if it did not): removed by a
    /// read-write open, ignored by a read-only one.
    pub superseded_removed: usize,
    /// What the open did with the persisted index image (`annals.index`).
    pub index_image: crate::image::ImageUse,
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

/// What a read-write open must write to the state file after recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateAction {
    /// The state file is current.
    Keep(LogState),
    /// Record the newest segment, which is newer than the state file says
    /// (a crash came between publishing it and recording it), or a gap.
    Update(LogState),
    /// Write a new state file: a version-1 log being upgraded, a log whose
    /// creation crashed before its state file was written, or a salvaged one.
    Create {
        /// The compacted segments found without a state file: their
        /// generation and end (0 and LSN 0 if none).
        compaction_generation: u64,
        /// Where they end.
        compacted_end_lsn: Lsn,
    },
}

/// The result of recovery.
#[derive(Debug)]
pub struct Recovered {
    /// The rebuilt index; its last segment is where writing resumes.
    pub index: Index,
    /// The log's id, if it has any segment.
    pub log_id: Option<[u8; 16]>,
    /// What the state file needs (read-write opens act on it).
    pub state: StateAction,
    /// What was found and done.
    pub report: RecoveryReport,
    /// Read-only: every corruption found. Read-write: empty (the first one fails the open).
    pub problems: Vec<Corruption>,
}

/// Removes a file the open listed and does not need: one that is gone
/// already is what the removal wanted. A close waits for its compaction to
/// end (segments-format.md, 9.2), but a process that died, or another
/// program, may remove such a file between the listing and the removal.
fn remove_listed(fs: &dyn FileSystem, path: &Path) -> Result<()> {
    match fs.remove(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", path, error)),
        _ => Ok(()),
    }
}

/// The file that holds a synced copy of a segment's tail while recovery
/// writes the tail again (segments-format.md, section 7).
pub const RESYNC_FILE_NAME: &str = "annals.resync";
const RESYNC_TEMP_FILE_NAME: &str = "annals.resync.tmp";
const RESYNC_MAGIC: [u8; 8] = *b"ANNALSRS";
/// Magic, version, log id, first LSN, offset, length, checksum.
const RESYNC_HEADER_BYTES: usize = 8 + 4 + 16 + 8 + 8 + 8 + 4;

/// A copy of the bytes recovery is about to write again over a segment's
/// tail: which segment, where, and what.
struct ResyncJournal {
    first_lsn: Lsn,
    offset: u64,
    bytes: bytes::Bytes,
}

impl ResyncJournal {
    fn checksum(log_id: &[u8; 16], header: &[u8], bytes: &[u8]) -> u32 {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(log_id);
        hasher.update(header);
        hasher.update(bytes);
        hasher.finalize()
    }

    /// Writes the copy under a temporary name, syncs it, renames it into
    /// place and syncs the directory.
    fn write(&self, fs: &dyn FileSystem, dir: &Path, log_id: &[u8; 16]) -> Result<()> {
        let mut out = Vec::with_capacity(RESYNC_HEADER_BYTES + self.bytes.len());
        out.extend_from_slice(&RESYNC_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(log_id);
        out.extend_from_slice(&self.first_lsn.0.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&(self.bytes.len() as u64).to_le_bytes());
        let crc = ResyncJournal::checksum(log_id, &out, &self.bytes);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&self.bytes);
        let temp = dir.join(RESYNC_TEMP_FILE_NAME);
        let path = dir.join(RESYNC_FILE_NAME);
        let _ = fs.remove(&temp);
        let file = fs.create(&temp).map_err(|error| Error::io_or_full("create", &temp, error))?;
        file.write_at(&out, 0).map_err(|error| Error::io_or_full("write", &temp, error))?;
        file.sync_data().map_err(|error| Error::io_or_full("fdatasync", &temp, error))?;
        fs.rename(&temp, &path).map_err(|error| Error::io_or_full("rename", &path, error))?;
        fs.sync_dir(dir).map_err(|error| Error::io_or_full("fsync directory", dir, error))
    }

    /// The copy in `dir`, if it is whole (else `None`: it was being written).
    fn read(fs: &dyn FileSystem, dir: &Path) -> Result<Option<ResyncJournal>> {
        let path = dir.join(RESYNC_FILE_NAME);
        let file = fs.open(&path, false).map_err(|error| Error::io("open", &path, error))?;
        let map = file.map().map_err(|error| Error::io("mmap", &path, error))?;
        let all = map.slice(0, map.len());
        if all.len() < RESYNC_HEADER_BYTES || all[..8] != RESYNC_MAGIC {
            return Ok(None);
        }
        let u64_at = |at: usize| u64::from_le_bytes(all[at..at + 8].try_into().expect("eight bytes"));
        let log_id: [u8; 16] = all[12..28].try_into().expect("sixteen bytes");
        let (first_lsn, offset, len) = (u64_at(28), u64_at(36), u64_at(44));
        let crc = u32::from_le_bytes(all[52..56].try_into().expect("four bytes"));
        let body = &all[RESYNC_HEADER_BYTES..];
        if len != body.len() as u64 || ResyncJournal::checksum(&log_id, &all[..52], body) != crc {
            return Ok(None);
        }
        Ok(Some(ResyncJournal { first_lsn: Lsn(first_lsn), offset, bytes: all.slice(RESYNC_HEADER_BYTES..) }))
    }

    /// Removes the copy (and any half-written one) and syncs the directory.
    fn remove(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
        for name in [RESYNC_FILE_NAME, RESYNC_TEMP_FILE_NAME] {
            let _ = fs.remove(&dir.join(name));
        }
        fs.sync_dir(dir).map_err(|error| Error::io("fsync directory", dir, error))
    }
}

/// The features a log whose compacted segments were found without a state
/// file uses: compaction, and the bases it writes.
pub(crate) fn inferred_features(compaction_generation: u64) -> u64 {
    if compaction_generation == 0 { 0 } else { crate::state::FEATURE_RETENTION | crate::state::FEATURE_COMPACTION }
}

/// The format version in a segment's header, or 0 if it cannot be read.
fn segment_version(fs: &dyn FileSystem, path: &Path) -> u32 {
    let Ok(file) = fs.open(path, false) else { return 0 };
    let Ok(map) = file.map() else { return 0 };
    SegmentHeader::decode(&map.slice(0, SEGMENT_HEADER_BYTES.min(map.len()))).map_or(0, |header| header.version)
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
    /// The state file's record, when it has a valid one.
    state: Option<LogState>,
    report: RecoveryReport,
    problems: Vec<Corruption>,
    /// Read-only: an earlier corruption broke the chain, and scanning went on
    /// from a later segment's first LSN.
    resynced: bool,
    /// Salvage cut the log: the highest LSN any frame past the cut claimed.
    cut_lsn_seen: Option<Lsn>,
    /// Salvage: every LSN the history it replaces can have mentioned is
    /// below this one (the state file's lease and durable end as found,
    /// before salvage wrote its own).
    replaced_history_end: Option<Lsn>,
    /// Without a state file: the generation of the newest compacted
    /// segments found, and where they end (their last frame says).
    inferred_compaction: Option<(u64, Lsn)>,
    /// Read-only: a tail rewrite a crash interrupted, whose synced copy the
    /// next read-write open writes into its segment; read through it.
    resync_overlay: Option<ResyncJournal>,
    /// Whether the persisted index image may stand in for the frames it covers.
    image: ImagePolicy,
    /// Building an image of the sealed segments: only the ordinary segments
    /// before this LSN are read, and each must end cleanly.
    prefix_end: Option<Lsn>,
    /// The loaded image's end: the position of the last segment it covers
    /// in the index, and where its covered frames end in that segment.
    image_end: Option<(usize, usize)>,
    /// The state file holds a clean close in both slots
    /// ([`crate::state::StateRead::clean_close_pair`]): nothing was written
    /// past its marker, so zeros there end the log without the rest of the
    /// segment being read.
    clean_close_pair: Option<LogState>,
    /// Read-write: the directory was synced before it was read.
    dir_synced: bool,
}

/// Whether an open may load the persisted index image (`annals.index`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImagePolicy {
    /// Load it when it is valid, and scan only the frames after it.
    Load,
    /// Scan every frame (`annals verify`); a read-write open still deletes
    /// an image it cannot use, and a salvage deletes any.
    Ignore,
}

/// Opens every segment in `dir`, checks it against the state file and
/// rebuilds the index.
///
/// # Errors
/// [`Error::Corruption`] (read-write, strict); [`Error::NotALog`] (read-only,
/// on a directory with no segment and no state file); [`Error::Io`].
pub fn recover(fs: &dyn FileSystem, dir: &Path, access: Access, mode: RecoveryMode) -> Result<Recovered> {
    recover_with(fs, dir, access, mode, ImagePolicy::Load)
}

/// [`recover`], loading the persisted index image or not.
///
/// # Errors
/// As [`recover`].
pub fn recover_with(
    fs: &dyn FileSystem,
    dir: &Path,
    access: Access,
    mode: RecoveryMode,
    image: ImagePolicy,
) -> Result<Recovered> {
    let recovered = recover_once(fs, dir, access, mode, image, None)?;
    if access == Access::ReadWrite || recovered.problems.is_empty() {
        return Ok(recovered);
    }
    // Beside a live writer, the group being written can show a damaged
    // frame ahead of a complete later one (stores of one write are not seen
    // in order by another core). Such damage moves on as the writer does;
    // damage on disk stays where it is. Read again until two reads agree.
    if !fs.writer_active(dir).unwrap_or(false) {
        return Ok(recovered);
    }
    let mut previous = recovered;
    for _ in 0..IN_FLIGHT_REREADS_MAX {
        std::thread::sleep(std::time::Duration::from_millis(5));
        let again = recover_once(fs, dir, access, mode, image, None)?;
        if again.problems.is_empty() || again.problems == previous.problems {
            return Ok(again);
        }
        previous = again;
    }
    Ok(previous)
}

/// Bytes of a covered segment's last frame that open reads with one read
/// call to check it (a clean-close marker, or a record of a few KiB); a
/// longer one is read through the map.
const LAST_FRAME_READ_BYTES: usize = 4096;

/// How often a reader beside a live writer reads a log again to tell damage
/// from a group being written.
pub(crate) const IN_FLIGHT_REREADS_MAX: usize = 20;

/// The index an image written now holds, and the state it was built
/// against: a read-only recovery (from the current image, if valid) of the
/// sealed segments or of the whole log. `None` if it found anything but
/// whole segments ending cleanly: then no image is written.
pub(crate) fn recover_for_image(
    fs: &dyn FileSystem,
    dir: &Path,
    coverage: crate::image::Coverage,
) -> Result<Option<(Index, LogState)>> {
    recover_for_image_with(fs, dir, coverage, ImagePolicy::Load)
}

/// [`recover_for_image`], from the current image or not (`Ignore`: a full
/// scan, when the current image's sections cannot be carried over).
pub(crate) fn recover_for_image_with(
    fs: &dyn FileSystem,
    dir: &Path,
    coverage: crate::image::Coverage,
    image: ImagePolicy,
) -> Result<Option<(Index, LogState)>> {
    let StateRead::Found { state, .. } = read_state(fs, dir)? else {
        return Ok(None);
    };
    let prefix_end = match coverage {
        crate::image::Coverage::Sealed => Some(state.newest_segment_lsn),
        crate::image::Coverage::Whole => None,
    };
    let recovered = recover_once(fs, dir, Access::ReadOnly, RecoveryMode::Strict, image, prefix_end)?;
    let clean = recovered.problems.is_empty() && recovered.report.torn_tail.is_none();
    let state = match recovered.state {
        StateAction::Keep(state) | StateAction::Update(state) => state,
        StateAction::Create { .. } => return Ok(None),
    };
    let whole = prefix_end.is_none_or(|end| recovered.index.next_lsn() == end);
    let has_segments = recovered.index.segments().iter().any(|entry| !entry.segment.compacted());
    Ok((clean && whole && has_segments).then_some((recovered.index, state)))
}

/// How often a read-only reader reads the state file and lists the
/// directory again when a compaction committed between the two (each is a
/// whole compaction of a live writer: more in a row means the writer
/// compacts without pause, and the reader goes on with the last pair).
const STATE_AND_LISTING_ATTEMPTS_MAX: usize = 16;

/// The state file, then the names in `dir`, for a reader that takes no
/// lock (a read-only open, the intact scan). The state file first: beside
/// a live writer, the state read is then no newer than the segments listed
/// after it. But a compaction that commits between the two (its outputs
/// renamed in, the state file naming them, its inputs unlinked) leaves a
/// listing of a newer generation than the state read, which would read as
/// missing segments: the state file is read again after the listing, and
/// both again if the compaction it records changed meanwhile. A compaction
/// that commits after that second read removes only files that were
/// listed, which the reader then fails to open ([`Error::Io`], `NotFound`).
///
/// # Errors
/// [`Error::Io`] if the state file or the directory cannot be read.
pub(crate) fn read_state_and_list(fs: &dyn FileSystem, dir: &Path) -> Result<(StateRead, Vec<String>)> {
    let compaction = |read: &StateRead| match read {
        StateRead::Found { state, .. } => Some((
            state.compaction_generation,
            state.compacted_end_lsn,
            state.oldest_segment_lsn,
            state.trimmed_lsn,
        )),
        _ => None,
    };
    let mut attempts = 1;
    loop {
        let state_read = read_state(fs, dir)?;
        let names = fs.list(dir).map_err(|error| Error::io("list", dir, error))?;
        if attempts >= STATE_AND_LISTING_ATTEMPTS_MAX || compaction(&read_state(fs, dir)?) == compaction(&state_read) {
            return Ok((state_read, names));
        }
        attempts += 1;
    }
}

fn recover_once(
    fs: &dyn FileSystem,
    dir: &Path,
    access: Access,
    mode: RecoveryMode,
    image: ImagePolicy,
    prefix_end: Option<Lsn>,
) -> Result<Recovered> {
    let mut recovery = Recovery {
        fs,
        dir,
        access,
        mode,
        index: Index::new(Lsn::FIRST),
        log_id: None,
        state: None,
        report: RecoveryReport::default(),
        problems: Vec::new(),
        resynced: false,
        cut_lsn_seen: None,
        replaced_history_end: None,
        inferred_compaction: None,
        resync_overlay: None,
        image_end: None,
        image,
        prefix_end,
        clean_close_pair: None,
        dir_synced: false,
    };
    let state = recovery.run()?;
    recovery.index.shrink_to_fit();
    Ok(Recovered {
        index: recovery.index,
        log_id: recovery.log_id,
        state,
        report: recovery.report,
        problems: recovery.problems,
    })
}

impl Recovery<'_> {
    fn run(&mut self) -> Result<StateAction> {
        let (mut state_read, names) = self.state_and_names()?;
        let mut segments: Vec<(Lsn, String)> =
            names.iter().filter_map(|name| parse_segment_file_name(name).map(|lsn| (lsn, name.clone()))).collect();
        segments.sort();
        let mut compacted: Vec<(Lsn, u64, String)> = names
            .iter()
            .filter_map(|name| parse_compacted_file_name(name).map(|(lsn, generation)| (lsn, generation, name.clone())))
            .collect();
        compacted.sort();
        if segments.is_empty()
            && compacted.is_empty()
            && state_read == StateRead::Missing
            && self.access == Access::ReadOnly
        {
            return Err(Error::NotALog { dir: self.dir.to_owned() });
        }
        self.remove_spares(&names)?;
        if self.access == Access::ReadWrite {
            // Salvage may cut or rewrite bytes an image covers: it goes
            // first (segments-format.md, 11). A temporary is never an image.
            if self.mode == RecoveryMode::Salvage {
                crate::image::remove(self.fs, self.dir, &names)?;
            } else if names.iter().any(|name| name == crate::image::IMAGE_TEMP_FILE_NAME) {
                let temp = [crate::image::IMAGE_TEMP_FILE_NAME.to_owned()];
                crate::image::remove(self.fs, self.dir, &temp)?;
            }
            self.finish_interrupted_resync(&names)?;
        } else if names.iter().any(|name| name == RESYNC_FILE_NAME) {
            // Read as the read-write open will leave it: through the copy.
            self.resync_overlay = ResyncJournal::read(self.fs, self.dir)?;
        }
        let compacted = self.set_superseded_aside(&mut state_read, &names, &mut segments, compacted)?;
        let state_read = self.check_state_belongs(state_read, &segments)?;
        self.clean_close_pair = state_read.clean_close_pair();
        let mut damaged_state = None;
        match state_read {
            // One slot failing is what a torn update leaves (row 11): not corruption.
            StateRead::Found { state, .. } => {
                self.state = Some(state);
                self.log_id = Some(state.log_id);
                self.index = Index::new(state.oldest_segment_lsn);
                self.index.trim(state.trimmed_lsn);
            }
            StateRead::Damaged(problem) => damaged_state = Some(problem),
            StateRead::Missing => {}
        }
        if self.state.is_none()
            && let Some((first, name)) = segments.first()
            && segment_version(self.fs, &self.dir.join(name)) >= 2
        {
            // Without a state file, a version-2 log starts at its oldest
            // segment: compaction may have reclaimed the ones before it.
            // (A version-1 log, which has no state file, starts at 1.)
            self.index = Index::new(*first);
        }
        if let Some(end) = self.prefix_end {
            segments.retain(|(lsn, _)| *lsn < end);
        } else if let Some(state) = self.state {
            let newest = segments.last().map_or(Lsn::ZERO, |(lsn, _)| *lsn);
            if newest < state.newest_segment_lsn {
                // Row 8: the newest segment the state file records is gone.
                let problem = Corruption {
                    file: self.dir.to_owned(),
                    offset: 0,
                    kind: CorruptionKind::NewestSegmentMissing { recorded: state.newest_segment_lsn, found: newest },
                };
                // Salvage: how many records the missing segment held is unknown,
                // so the log resumes past every LSN it could have held.
                let most = Lsn(state.newest_segment_lsn.0.saturating_add(LSNS_PER_SEGMENT_MAX));
                self.cut_lsn_seen = self.cut_lsn_seen.max(Some(most));
                self.corruption_at(&[], problem, 0)?;
            }
        }
        match self.load_image(&names, &compacted, &segments)? {
            Some(0) => self.scan_segments(&segments, false)?,
            // The last segment the image covers is in the index: the scan
            // goes on from where the image ends in it.
            Some(ordinary) => self.scan_segments(&segments[ordinary - 1..], true)?,
            None => {
                self.scan_compacted(&compacted)?;
                if let Some((_, end)) = self.inferred_compaction {
                    segments.retain(|(lsn, _)| *lsn >= end);
                }
                self.scan_segments(&segments, false)?;
            }
        }
        if self.access == Access::ReadWrite && !self.dir_synced && !self.tail_vouched_by_pair() {
            // A pair that does not end the log where it said (a newer
            // segment whose directory sync failed, say): this is not the
            // log it closed, so its promise about the directory is void too.
            self.sync_dir_read()?;
        }
        let state_temp = names.iter().any(|name| name == STATE_TEMP_FILE_NAME);
        self.settle_state(damaged_state, state_temp)
    }

    /// The state file, then the names in the directory: the state read is
    /// then no newer than the segments listed after it.
    fn state_and_names(&mut self) -> Result<(StateRead, Vec<String>)> {
        if self.access == Access::ReadOnly {
            return read_state_and_list(self.fs, self.dir);
        }
        // A read-write open holds the directory's lock: no writer beside it.
        let state_read = read_state(self.fs, self.dir)?;
        if state_read.clean_close_pair().is_none() {
            // What the open reads, and builds on, is made durable first: a
            // crash may have left entries that a power cut would still take
            // (segments-format.md, 7).
            self.sync_dir_read()?;
        }
        let names = self.fs.list(self.dir).map_err(|error| Error::io("list", self.dir, error))?;
        Ok((state_read, names))
    }

    /// Syncs the directory a read-write open reads.
    fn sync_dir_read(&mut self) -> Result<()> {
        self.fs.sync_dir(self.dir).map_err(|error| Error::io("fsync directory", self.dir, error))?;
        self.dir_synced = true;
        Ok(())
    }

    /// Loads the persisted index image when it is whole and describes this
    /// log (section 11 of the format): the state file's log, compaction and
    /// trim; every compacted segment and a prefix of the ordinary ones,
    /// present with the headers it recorded; and its last frame in each
    /// still there. Returns how many ordinary segments it covers (the index
    /// then holds them); `None` for a full scan, after deleting an image a
    /// read-write open cannot use.
    fn load_image(
        &mut self,
        names: &[String],
        compacted: &[(Lsn, String)],
        segments: &[(Lsn, String)],
    ) -> Result<Option<usize>> {
        if !names.iter().any(|name| name == crate::image::IMAGE_FILE_NAME) {
            return Ok(None);
        }
        let usable = self.image == ImagePolicy::Load
            && self.mode == RecoveryMode::Strict
            && self.resync_overlay.is_none()
            && self.inferred_compaction.is_none();
        let Some(state) = self.state.filter(|_| usable) else {
            return Ok(None);
        };
        let bytes = match crate::image::read(self.fs, self.dir) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            // Never needed: one that cannot be opened (a directory or a
            // looping link under its name, a file this user may not read)
            // is a full scan, as a damaged one is.
            Err(error) => return self.reject_image(error.to_string(), names),
        };
        let loaded = crate::image::decode(&bytes, self.dir)
            .and_then(|image| image.header.check_against(&state).map(|()| image))
            .and_then(|image| {
                let opened = self.open_covered(&image, compacted, segments)?;
                Ok((image, opened))
            });
        match loaded {
            Ok((image, opened)) => {
                let ordinary = image.segments.iter().filter(|s| !s.compacted).count();
                let (covered_lsn, written_ms) = (image.header.next_lsn, image.header.written_ms);
                self.index = image.into_index(opened);
                let covered = self.index.segments().len();
                self.image_end = self.index.segments().last().map(|entry| (covered - 1, entry.end_offset));
                self.report.index_image = crate::image::ImageUse::Loaded { covered_lsn, segments: covered, written_ms };
                self.report.compacted_segments = covered - ordinary;
                self.report.segments = ordinary.saturating_sub(1);
                self.report.records = self.index.records();
                self.report.bytes = self.index.segments().iter().map(|entry| entry.written_bytes()).sum();
                Ok(Some(ordinary))
            }
            Err(defect) => self.reject_image(defect.to_string(), names),
        }
    }

    /// An image found and not used: a full scan. A read-write open deletes it.
    fn reject_image(&mut self, reason: String, names: &[String]) -> Result<Option<usize>> {
        self.report.index_image = crate::image::ImageUse::Rejected { reason };
        if self.access == Access::ReadWrite {
            crate::image::remove(self.fs, self.dir, names)?;
        }
        Ok(None)
    }

    /// Opens the segments an image covers, checking each against the image:
    /// every compacted segment of the log, then a prefix of the ordinary
    /// ones, each with the header the image recorded, its length, and the
    /// last frame the image knows of still whole where it was.
    fn open_covered(
        &self,
        image: &crate::image::DecodedImage,
        compacted: &[(Lsn, String)],
        segments: &[(Lsn, String)],
    ) -> Result<Vec<Segment>, crate::image::ImageDefect> {
        use crate::image::ImageDefect::Stale;
        let covered_compacted = image.segments.iter().take_while(|s| s.compacted).count();
        let ordinary = &image.segments[covered_compacted..];
        if covered_compacted != compacted.len() || ordinary.iter().any(|s| s.compacted) {
            return Err(Stale("the compacted segments differ"));
        }
        if ordinary.len() > segments.len() {
            return Err(Stale("a segment it covers is missing"));
        }
        let files =
            compacted.iter().map(|(_, name)| (name, true)).chain(segments.iter().map(|(_, name)| (name, false)));
        let mut opened = Vec::with_capacity(image.segments.len());
        for (position, (covered, (name, compacted))) in image.segments.iter().zip(files).enumerate() {
            let path = self.dir.join(name);
            let writable = self.access == Access::ReadWrite && !compacted;
            let Ok(file) = self.fs.open(&path, writable) else { return Err(Stale("a segment it covers is missing")) };
            let header = SegmentHeader::decode(&covered.header).map_err(|_| Stale("a segment header"))?;
            let mut on_disk = [0u8; SEGMENT_HEADER_BYTES];
            if file.read_at(&mut on_disk, 0).is_err() || on_disk != covered.header {
                return Err(Stale("a segment it covers was replaced"));
            }
            // The map's length is the file's (mapping reads it): no
            // separate stat, one system call fewer per segment.
            let map = file.map().map_err(|_| Stale("a segment it covers cannot be mapped"))?;
            if map.len() as u64 != header.segment_bytes {
                return Err(Stale("a segment it covers was replaced"));
            }
            if let Some(last) = covered.last_frame_offset() {
                // The same frame (its checksum names it: LSN, time and
                // bytes), whole, ending where the image says, and reaching
                // the LSN the next covered segment, or the scan, starts at.
                let end = covered.end_offset();
                let reaches = image.segments.get(position + 1).map_or(Ok(image.header.next_lsn), |next| {
                    SegmentHeader::decode(&next.header).map(|h| h.first_lsn).map_err(|_| Stale("a segment header"))
                })?;
                let len = end.saturating_sub(last).min(map.len().saturating_sub(last));
                let same = |bytes: &[u8]| {
                    bytes.get(..4).is_some_and(|crc| crc == covered.last_frame_crc.to_le_bytes())
                        && decode_frame_anywhere(bytes, &header.log_id)
                            .is_ok_and(|frame| last + frame.total_bytes() == end && frame.next_lsn() == reaches)
                };
                // A frame that fits is read with one read call rather than
                // through the map, whose first touch would fault in 64 KiB
                // around it, in every covered segment.
                let mut buffer = [0u8; LAST_FRAME_READ_BYTES];
                let found = match buffer.get_mut(..len) {
                    Some(bytes) => file.read_at(bytes, last as u64).is_ok() && same(bytes),
                    None => same(&map.slice(last, len)),
                };
                if !found {
                    return Err(Stale("the log no longer holds the last frame it covers"));
                }
            }
            opened.push(Segment { header, path, file, map, compacted });
        }
        Ok(opened)
    }

    /// Takes out of `segments` and `compacted` the files that a compaction
    /// left and that are not part of the log (row 16): ordinary segments
    /// below the state file's `compacted_end_lsn`, compacted segments of
    /// another generation, and compacted segments still being written. A
    /// read-write open removes them; a read-only one leaves them. Returns
    /// the compacted segments that are part of the log, oldest first.
    fn set_superseded_aside(
        &mut self,
        state_read: &mut StateRead,
        names: &[String],
        segments: &mut Vec<(Lsn, String)>,
        compacted: Vec<(Lsn, u64, String)>,
    ) -> Result<Vec<(Lsn, String)>> {
        let (generation, end) = match &*state_read {
            StateRead::Found { state, .. } => (state.compaction_generation, state.compacted_end_lsn),
            // Without a state file, the newest compacted segments are taken
            // as the log's (read-only and salvage; a strict open refuses the
            // missing state file), and the ordinary segments they replaced
            // are set aside once their end is known.
            _ => {
                let newest = compacted.iter().map(|(_, generation, _)| *generation).max();
                return Ok(compacted
                    .into_iter()
                    .filter(|(_, generation, _)| Some(*generation) == newest)
                    .map(|(lsn, generation, name)| {
                        self.inferred_compaction = Some((generation, Lsn::ZERO));
                        (lsn, name)
                    })
                    .collect());
            }
        };
        let mut superseded: Vec<String> =
            names.iter().filter(|name| name.ends_with(COMPACTING_SUFFIX)).cloned().collect();
        if generation > 0 {
            superseded.extend(segments.iter().filter(|(lsn, _)| *lsn < end).map(|(_, name)| name.clone()));
            segments.retain(|(lsn, _)| *lsn >= end);
        }
        let (ours, others): (Vec<_>, Vec<_>) = compacted.into_iter().partition(|(_, g, _)| *g == generation);
        superseded.extend(others.into_iter().map(|(_, _, name)| name));
        if self.access == Access::ReadWrite && !superseded.is_empty() {
            // The state file read may be a slot whose fsync failed (a
            // compaction's commit that poisoned the log), in the page cache
            // only: written again and synced before anything it makes
            // obsolete is deleted.
            // The writer goes on from the generation written here: its next
            // write then goes to the other slot, the one that may not be
            // durable, never over this one (simulator seed 100376).
            if let StateRead::Found { state, damaged_slot, other_slot } = state_read {
                let read = *state;
                *state = crate::state::resync_state_file(self.fs, self.dir, read)?;
                (*damaged_slot, *other_slot) = (None, Some(read));
            }
            for name in &superseded {
                remove_listed(self.fs, &self.dir.join(name))?;
            }
            self.fs.sync_dir(self.dir).map_err(|error| Error::io("fsync directory", self.dir, error))?;
            self.report.superseded_removed = superseded.len();
        }
        Ok(ours.into_iter().map(|(lsn, _, name)| (lsn, name)).collect())
    }

    /// Reads the compacted segments (section 9.2 of the format): each
    /// sealed, checked in full, with sparse LSNs below the state file's
    /// `compacted_end_lsn`. Any damage in them is corruption, never a torn
    /// tail; salvage cannot cut them (`annals repair` copies what is intact).
    fn scan_compacted(&mut self, compacted: &[(Lsn, String)]) -> Result<()> {
        let (oldest, end) = match self.state {
            Some(state) if state.compaction_generation == 0 => return Ok(()),
            Some(state) => (state.oldest_segment_lsn, state.compacted_end_lsn),
            None => {
                let Some((first, _)) = compacted.first() else { return Ok(()) };
                // Row 10 (reported once the scan is done): the state file
                // is missing. What it recorded of the compaction is read
                // back from the compacted segments themselves: the newest
                // generation, ending where its last frame (a gap) says.
                self.index = Index::new(*first);
                (*first, Lsn(u64::MAX))
            }
        };
        let mut expected = oldest;
        // Read-only, past damage in a compacted segment's frames: the next
        // compacted segment is read as section 7 says (what came before the
        // damage stays readable, and the LSNs up to that segment are a hole).
        let mut damage = None;
        for (name_lsn, name) in compacted {
            let path = self.dir.join(name);
            match self.open_compacted(&path, *name_lsn, expected, end)? {
                Ok(segment) => {
                    // Each compacted segment ends (with a gap, if its last
                    // record does not) where the next one starts: one that
                    // starts later means one between was removed.
                    if damage.is_none() && segment.header.first_lsn != expected {
                        let kind = CorruptionKind::MissingSegment { end: expected, next_first: segment.header.first_lsn };
                        let problem = Corruption { file: path.clone(), offset: 0, kind };
                        self.hard_corruption(problem.clone())?;
                        damage = Some(problem);
                    }
                    if let Some(damage) = damage.take() {
                        self.index.skip_damaged(segment.header.first_lsn, damage);
                        self.resynced = true;
                    }
                    self.index.push_segment(segment.clone(), SEGMENT_HEADER_BYTES);
                    self.report.compacted_segments += 1;
                    if let Err(problem) = self.scan_compacted_segment(&segment, end) {
                        self.hard_corruption(problem.clone())?;
                        damage = Some(problem);
                    }
                    expected = self.index.next_lsn();
                }
                Err(problem) => {
                    self.hard_corruption(problem)?;
                    return Ok(());
                }
            }
        }
        if damage.is_some() {
            return Ok(());
        }
        if compacted.is_empty() && oldest < end {
            let kind = CorruptionKind::MissingSegment { end: oldest, next_first: end };
            self.hard_corruption(Corruption { file: self.dir.to_owned(), offset: 0, kind })?;
        }
        // The last compacted segment ends with a gap up to where the
        // ordinary segments start: ending before, the newest compacted
        // segments were removed.
        if let Some((_, name)) = compacted.last()
            && self.inferred_compaction.is_none()
            && self.index.next_lsn() < end
        {
            let kind = CorruptionKind::MissingSegment { end: self.index.next_lsn(), next_first: end };
            let problem = Corruption { file: self.dir.join(name), offset: 0, kind };
            self.hard_corruption(problem.clone())?;
            // Read-only: the LSNs up to the ordinary segments are a hole.
            self.index.skip_damaged(end, problem);
            self.resynced = true;
            return Ok(());
        }
        if let Some((generation, _)) = self.inferred_compaction {
            self.inferred_compaction = Some((generation, self.index.next_lsn()));
        } else if self.index.next_lsn() <= end {
            self.index.end_compacted(end);
        }
        Ok(())
    }

    /// Damage where no torn tail can be: reported by a read-only open,
    /// refused by any other (salvage included).
    fn hard_corruption(&mut self, problem: Corruption) -> Result<()> {
        if self.access == Access::ReadOnly {
            self.problems.push(problem);
            return Ok(());
        }
        Err(Error::Corruption(Box::new(problem)))
    }

    /// Opens a compacted segment and checks its header against its name,
    /// the log, and the LSN the compacted segments have reached.
    fn open_compacted(
        &mut self,
        path: &Path,
        name_lsn: Lsn,
        expected: Lsn,
        end: Lsn,
    ) -> Result<Result<Segment, Corruption>> {
        let corrupt = |offset: u64, kind| Ok(Err(Corruption { file: path.to_owned(), offset, kind }));
        let file = self.fs.open(path, false).map_err(|error| Error::io("open", path, error))?;
        let len = file.len().map_err(|error| Error::io("stat", path, error))?;
        let map = file.map().map_err(|error| Error::io("mmap", path, error))?;
        let header = match SegmentHeader::decode(&map.slice(0, SEGMENT_HEADER_BYTES.min(map.len()))) {
            Ok(header) => header,
            Err(kind) => return corrupt(0, kind),
        };
        if header.first_lsn != name_lsn {
            return corrupt(32, CorruptionKind::BadHeader("first lsn differs from the file name"));
        }
        match self.log_id {
            Some(log_id) if log_id != header.log_id => return corrupt(16, CorruptionKind::ForeignSegment),
            _ => self.log_id = Some(header.log_id),
        }
        if len != header.segment_bytes {
            let kind = CorruptionKind::SegmentLength { expected: header.segment_bytes, found: len };
            return corrupt(len.min(header.segment_bytes), kind);
        }
        let first_expected = expected == self.state.map_or(Lsn::ZERO, |state| state.oldest_segment_lsn)
            && self.index.segments().is_empty();
        if (first_expected && header.first_lsn != expected) || header.first_lsn < expected || header.first_lsn >= end {
            let kind = CorruptionKind::MissingSegment { end: expected, next_first: header.first_lsn };
            return corrupt(0, kind);
        }
        Ok(Ok(Segment { header, path: path.to_owned(), file, map, compacted: true }))
    }

    /// Reads every frame of a compacted segment: whole, checksummed, single
    /// entries, snapshots and bases at increasing LSNs below `end`, then
    /// zeros to the end of the file.
    fn scan_compacted_segment(&mut self, segment: &Segment, end: Lsn) -> Result<(), Corruption> {
        let bytes = segment.map.slice(0, segment.map.len());
        let log_id = segment.header.log_id;
        let mut offset = SEGMENT_HEADER_BYTES;
        let problem = |offset: usize, kind| Corruption { file: segment.path.clone(), offset: offset as u64, kind };
        while offset < bytes.len() {
            let frame = match decode_frame_anywhere(&bytes[offset..], &log_id) {
                Ok(frame) => frame,
                Err(FrameDefect::Zeroed) if bytes[offset..].iter().all(|&b| b == 0) => return Ok(()),
                Err(defect) => return Err(problem(offset, CorruptionKind::BadRecord(defect.describe()))),
            };
            let allowed = matches!(
                frame.kind,
                crate::frame::FrameKind::Entry
                    | crate::frame::FrameKind::Snapshot
                    | crate::frame::FrameKind::Base
                    | crate::frame::FrameKind::Gap
            );
            if !allowed || frame.meta.lsn < self.index.next_lsn() || frame.meta.lsn >= end || frame.next_lsn() > end {
                let what = "a compacted segment holds only entries, snapshots, bases and gaps, at increasing lsns below its end";
                return Err(problem(offset, CorruptionKind::BadRecord(what.to_owned())));
            }
            if self.resynced {
                // Past damage (read-only): the streams' history is unknown.
                self.index.place_frame(offset, &frame);
            } else {
                self.index.check_frame(&frame).map_err(|kind| problem(offset, kind))?;
                self.index.apply_frame(offset, &frame);
            }
            self.report.records += u64::from(frame.lsn_count);
            self.report.bytes += frame.total_bytes() as u64;
            offset += frame.total_bytes();
        }
        Ok(())
    }

    /// A state file whose log id no segment header shares belongs to another
    /// log (copied in by mistake): it is damage to report, not a reason to
    /// call every segment foreign.
    fn check_state_belongs(&self, state_read: StateRead, segments: &[(Lsn, String)]) -> Result<StateRead> {
        let StateRead::Found { state, .. } = &state_read else {
            return Ok(state_read);
        };
        if state_names_a_segment_log(self.fs, self.dir, segments, &state.log_id)? {
            return Ok(state_read);
        }
        let kind = CorruptionKind::BadStateFile("it names another log than every segment does");
        Ok(StateRead::Damaged(Corruption { file: self.dir.join(crate::state::STATE_FILE_NAME), offset: 16, kind }))
    }

    /// Decides what the state file needs once the segments are scanned
    /// (rows 9 and 10 of the decision table).
    /// `state_temp`: the directory held a temporary state file (a creation
    /// or rebuild a crash interrupted), which a read-write open deletes.
    fn settle_state(&mut self, damaged_state: Option<Corruption>, state_temp: bool) -> Result<StateAction> {
        let has_frames = self.index.segments().iter().any(|entry| entry.last_frame_offset().is_some());
        let newest_version = self.index.segments().last().map_or(0, |entry| entry.segment.header.version);
        self.report.format_version = newest_version;
        if self.access == Access::ReadWrite && state_temp {
            let _ = self.fs.remove(&self.dir.join(STATE_TEMP_FILE_NAME));
        }
        let Some(state) = self.state else {
            let all_legacy = self.index.segments().iter().all(|entry| entry.segment.header.version < FORMAT_VERSION);
            if let Some(problem) = damaged_state
                && has_frames
            {
                // Row 10: no valid slot, and records that it should vouch for.
                self.corruption_at(&[], problem, 0)?;
            } else if !all_legacy && has_frames {
                // Row 10: a version-2 log with records and no state file.
                let problem =
                    Corruption { file: self.dir.to_owned(), offset: 0, kind: CorruptionKind::StateFileMissing };
                self.corruption_at(&[], problem, 0)?;
            }
            // A version-1 log (upgraded now), or a creation that crashed
            // before its state file was written (nothing was acknowledged).
            let (compaction_generation, compacted_end_lsn) = self.inferred_compaction.unwrap_or((0, Lsn::ZERO));
            return Ok(StateAction::Create { compaction_generation, compacted_end_lsn });
        };
        if state.lsn_lease_end > self.index.next_lsn() && self.report.resumes_at.is_none() {
            // Row 12: records acknowledged before they were synced may be
            // lost (a power cut): the log resumes past every LSN handed out.
            self.report.resumes_at = Some(state.lsn_lease_end);
        }
        if self.report.salvaged.is_empty() && self.cut_lsn_seen.is_none() && self.report.resumes_at.is_none() {
            let newest = self.index.segments().last().map(|entry| entry.segment.header.first_lsn);
            return Ok(match newest {
                Some(newest) if newest > state.newest_segment_lsn => StateAction::Update(state),
                _ => StateAction::Keep(state),
            });
        }
        Ok(StateAction::Update(state))
    }

    /// Scans `segments` in order. With `resume_first`, the first is the last
    /// one the index image covers: it is in the index already, and its scan
    /// goes on from where the image ends.
    fn scan_segments(&mut self, segments: &[(Lsn, String)], resume_first: bool) -> Result<()> {
        let mut expected = self.index.next_lsn();
        for (position, (name_lsn, name)) in segments.iter().enumerate() {
            let is_last = position + 1 == segments.len() && self.prefix_end.is_none();
            let opened = if position == 0 && resume_first {
                let entry = self.index.segments().last().expect("the image covers this segment");
                Ok((entry.segment.clone(), entry.end_offset))
            } else {
                let path = self.dir.join(name);
                self.open_segment(&path, *name_lsn, expected, is_last)?.map(|segment| {
                    self.index.push_segment(segment.clone(), SEGMENT_HEADER_BYTES);
                    (segment, SEGMENT_HEADER_BYTES)
                })
            };
            match opened {
                Ok((segment, from)) => {
                    self.report.segments += 1;
                    // Where the next segment starts, by its name (its header
                    // is checked against the chain when it is opened).
                    let next_first = segments.get(position + 1).map(|(lsn, _)| *lsn).or(self.prefix_end);
                    let end = self.scan_segment(&segment, from, is_last, next_first);
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
        // A clean close recorded that everything before its end was durable.
        // A reopen that finds exactly that end makes only the last frame
        // durable again (the marker, 40 bytes): it may be a later marker at
        // the same LSN whose own fsync failed, which no record vouches for.
        let closed_cleanly_here =
            self.state.is_some_and(|state| state.clean_close && state.durable_end_lsn == self.index.next_lsn());
        if self.access == Access::ReadWrite && !self.tail_covered_by_image() && !self.tail_vouched_by_pair() {
            let from = if closed_cleanly_here {
                self.index.segments().last().and_then(|e| e.last_frame_offset())
            } else {
                None
            };
            self.resync_tail(from)?;
        }
        self.settle_salvage();
        Ok(())
    }

    /// Whether the loaded image covers the log's last frame, and so every
    /// frame the tail resync would write again: every frame an image covers
    /// was durable when it was written (it covers sealed segments, which a
    /// rollover syncs before it records the next one, or the whole log after
    /// a clean close synced its marker), and the image's checks found its
    /// last frame where it was. Nothing was scanned after it.
    fn tail_covered_by_image(&self) -> bool {
        let segments = self.index.segments();
        self.image_end.is_some_and(|(position, end)| {
            position + 1 == segments.len() && segments[position].end_offset == end
        })
    }

    /// Whether the state file's clean-close pair, as read at open, ends the
    /// log exactly where the scan ended it, in the segment it records as
    /// newest (the last): then every frame is durable, its marker included.
    /// The close synced the marker before it wrote the first slot of the
    /// pair, and synced that slot before the second; a later marker at the
    /// same LSN (the one whose fsync may have failed, which is why a clean
    /// close alone has its marker written again) is written only after a
    /// synced slot that is not clean replaced one of the pair. So a reopen
    /// after a clean close writes nothing, with or without an index image.
    fn tail_vouched_by_pair(&self) -> bool {
        let last = self.index.segments().last().map(|entry| entry.segment.header.first_lsn);
        self.clean_close_pair.is_some_and(|pair| {
            !self.resynced
                && self.report.salvaged.is_empty()
                && self.cut_lsn_seen.is_none()
                && pair.durable_end_lsn == self.index.next_lsn()
                && last == Some(pair.newest_segment_lsn)
        })
    }

    /// After salvage cut the log, the next record must get an LSN past every
    /// one that may have been acknowledged: past what the state file records
    /// as durable and past every frame found beyond the cut.
    fn settle_salvage(&mut self) {
        if self.report.salvaged.is_empty() {
            return;
        }
        let next = self.index.next_lsn();
        let lease_end = self.state.map_or(Lsn::ZERO, |state| state.lsn_lease_end);
        let resume = lease_end.max(self.salvage_resume(next));
        if resume > next {
            self.report.resumes_at = Some(resume);
        }
    }

    /// Where a log that salvage cut at `end` resumes: past every LSN the
    /// state file (as found) had handed out and past every frame found
    /// beyond the cut. When that leaves a gap, also **one past** every LSN
    /// value the replaced history can have mentioned, a clean-close
    /// marker's included (a marker takes no LSN: it names the next one, and
    /// that can equal the resume point). So no frame written from the cut
    /// on is byte for byte a frame of the history it replaces at the same
    /// offset, and a persisted index image of that history is told apart by
    /// its last covered frame (section 11.2). Found by the simulator, seed
    /// 113492: a marker of the new history, at the old marker's aligned
    /// offset with the same LSN and millisecond, made an old image load.
    fn salvage_resume(&mut self, end: Lsn) -> Lsn {
        let state = self.state;
        let replaced = *self
            .replaced_history_end
            .get_or_insert_with(|| state.map_or(Lsn::ZERO, |state| state.lsn_lease_end.max(state.durable_end_lsn)));
        let seen = self.cut_lsn_seen.map_or(Lsn::ZERO, |lsn| Lsn(lsn.0.saturating_add(1)));
        let resume = replaced.max(seen).max(end);
        if resume > end { resume.max(Lsn(replaced.0.saturating_add(1))) } else { resume }
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
            remove_listed(self.fs, &self.dir.join(name))?;
        }
        self.fs.sync_dir(self.dir).map_err(|error| Error::io("fsync directory", self.dir, error))
    }

    /// Opens a segment and checks its header against its name, the log and
    /// the LSN the previous segment ended at. `Ok(Err(_))` is corruption.
    /// Read-only and salvage opens read on past a damaged header or a
    /// shortened file where the log's id and the file name say what the
    /// header held, so that the records in the segment are not lost to them.
    fn open_segment(
        &mut self,
        path: &Path,
        name_lsn: Lsn,
        expected: Lsn,
        is_last: bool,
    ) -> Result<Result<Segment, Corruption>> {
        let corrupt = |offset: u64, kind| Ok(Err(Corruption { file: path.to_owned(), offset, kind }));
        let writable = self.access == Access::ReadWrite;
        let file = self.fs.open(path, writable).map_err(|error| Error::io("open", path, error))?;
        let len = file.len().map_err(|error| Error::io("stat", path, error))?;
        if len < SEGMENT_HEADER_BYTES as u64 {
            return corrupt(0, CorruptionKind::BadHeader("file is shorter than a segment header"));
        }
        let mut map = file.map().map_err(|error| Error::io("mmap", path, error))?;
        if let Some(journal) = self.resync_overlay.as_ref().filter(|j| j.first_lsn == name_lsn) {
            let end = journal.offset as usize + journal.bytes.len();
            if end <= map.len() {
                let mut bytes = map.slice(0, map.len()).to_vec();
                bytes[journal.offset as usize..end].copy_from_slice(&journal.bytes);
                map = std::sync::Arc::new(crate::fs::OwnedView(bytes::Bytes::from(bytes)));
            }
        }
        let header = match SegmentHeader::decode(&map.slice(0, SEGMENT_HEADER_BYTES)) {
            Ok(header) => header,
            Err(kind) => match self.rebuilt_header(&*map, name_lsn, expected, len) {
                Some(header) => {
                    if is_last {
                        self.newest_contents_unknown(name_lsn, len)?;
                    }
                    let problem = Corruption { file: path.to_owned(), offset: 0, kind };
                    self.note_repair(
                        problem,
                        expected,
                        SEGMENT_HEADER_BYTES as u64,
                        "header rewritten from the file name and the log id",
                    )?;
                    if writable {
                        file.write_at(&header.encode(), 0).map_err(|error| Error::io("write", path, error))?;
                        file.sync_data().map_err(|error| Error::io("fdatasync", path, error))?;
                    }
                    header
                }
                None => return corrupt(0, kind),
            },
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
            let kind = CorruptionKind::SegmentLength { expected: header.segment_bytes, found: len };
            let problem = Corruption { file: path.to_owned(), offset: len.min(header.segment_bytes), kind };
            if len > header.segment_bytes || !self.reads_past_damage() {
                return Ok(Err(problem));
            }
            // A shortened file: what remains is read as it is; salvage
            // restores the zeros, so that the segment has its length again.
            if is_last {
                self.newest_contents_unknown(name_lsn, header.segment_bytes)?;
            }
            self.note_repair(problem, expected, 0, "zeros restored to the segment's length")?;
            if writable {
                zero_range(&*file, path, len as usize, header.segment_bytes as usize)?;
                map = file.map().map_err(|error| Error::io("mmap", path, error))?;
            }
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
            // Past damage (read-only): what came before it stays readable.
            match self.problems.last().cloned() {
                Some(damage) => self.index.skip_damaged(header.first_lsn, damage),
                None => self.index = Index::new(header.first_lsn),
            }
            self.resynced = true;
        }
        Ok(Ok(Segment { header, path: path.to_owned(), file, map, compacted: false }))
    }

    /// Whether this recovery reads on past damage it has reported
    /// (read-only) or cut (salvage), rather than failing.
    fn reads_past_damage(&self) -> bool {
        self.access == Access::ReadOnly || self.mode == RecoveryMode::Salvage
    }

    /// The header a segment must have had, when its own is damaged: known
    /// from the log's id, the file name and the chain, and confirmed by a
    /// valid first frame (or an empty segment).
    fn rebuilt_header(&self, map: &dyn MappedFile, name_lsn: Lsn, expected: Lsn, len: u64) -> Option<SegmentHeader> {
        let log_id = self.log_id?;
        if !self.reads_past_damage() || name_lsn != expected || !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&len)
        {
            return None;
        }
        let bytes = map.slice(0, map.len());
        let confirmed = decode_frame_at(&bytes, SEGMENT_HEADER_BYTES, &log_id, expected).is_ok()
            || is_zero(&bytes[SEGMENT_HEADER_BYTES..]);
        confirmed.then(|| SegmentHeader {
            version: FORMAT_VERSION,
            log_id,
            first_lsn: name_lsn,
            segment_bytes: len,
            created_ms: crate::commit::now_ms(),
        })
    }

    /// How large a segment file was made: its header's length if the header
    /// is intact, else the larger of its length and the largest segment.
    fn segment_size_of(&self, file: &std::sync::Arc<dyn File>, len: u64) -> u64 {
        let mut header = [0u8; SEGMENT_HEADER_BYTES];
        match file.read_at(&mut header, 0).ok().and_then(|()| SegmentHeader::decode(&header).ok()) {
            Some(header) => header.segment_bytes.max(len),
            None => SEGMENT_BYTES_MAX,
        }
    }

    /// Reports damage that read-only recovery reads past, or that salvage
    /// repairs without dropping a record.
    fn note_repair(&mut self, problem: Corruption, from_lsn: Lsn, bytes: u64, repair: &str) -> Result<()> {
        if self.access == Access::ReadOnly {
            self.problems.push(problem);
            return Ok(());
        }
        self.report.salvaged.push(DroppedRange {
            file: problem.file,
            offset: problem.offset,
            bytes,
            file_deleted: false,
            from_lsn,
            reason: format!("{}; {repair}", problem.kind),
        });
        Ok(())
    }

    /// Applies every valid frame of a segment to the index; returns where and why they stop.
    fn scan_segment(&mut self, segment: &Segment, from: usize, is_last: bool, next_first: Option<Lsn>) -> ScanEnd {
        let bytes = segment.map.slice(0, segment.map.len());
        let mut offset = from;
        // Every frame's checksum starts with the log id's: computed once.
        let log_id = LogIdChecksum::of(&segment.header.log_id);
        loop {
            let expected = self.index.next_lsn();
            let frame = match decode_frame_at_from(&bytes, offset, &log_id, expected) {
                Ok((at, frame)) => {
                    // Row 1b: zero padding, then the clean-close marker at the next boundary.
                    if at != offset {
                        self.index.skip_padding(at);
                        offset = at;
                    }
                    frame
                }
                // Rows 1, 1c and 1d: zeros to the end of the file, zeros where
                // the state file vouches that nothing follows, or zeros in a
                // sealed segment where the next one takes over.
                Err(FrameDefect::Zeroed)
                    if self.nothing_follows(segment, expected, is_last)
                        || (!is_last && next_first == Some(expected))
                        || is_zero(&bytes[offset..]) =>
                {
                    return ScanEnd::Clean;
                }
                Err(defect) => {
                    return ScanEnd::Defect { offset, why: defect.describe(), stream_inconsistent: false };
                }
            };
            // The operations' layout, which the decode leaves to this scan:
            // their first one goes to the index as parsed here.
            let first = match check_frame_ops(&frame) {
                Ok(first) => first,
                Err(defect) => {
                    return ScanEnd::Defect { offset, why: defect.describe(), stream_inconsistent: false };
                }
            };
            if self.resynced {
                // Past an earlier corruption (read-only): the streams' history is
                // unknown, so check the frames alone.
                self.index.place_frame(offset, &frame);
            } else {
                if let Err(kind) = self.index.check_and_apply_frame(offset, &frame, first) {
                    return ScanEnd::Defect { offset, why: kind.to_string(), stream_inconsistent: true };
                }
            }
            self.report.records += u64::from(frame.lsn_count);
            self.report.bytes += frame.total_bytes() as u64;
            offset += frame.total_bytes();
        }
    }

    /// Row 1c: whether the frames found so far end where a clean close
    /// recorded in both slots of the state file ended the log, in the
    /// segment it recorded as newest and the last one present. Every writer
    /// of such a log records that it is no longer cleanly closed (one synced
    /// slot) before it writes past the marker, so nothing was written past
    /// it, and the zeros after it need not be read (up to the whole segment:
    /// most of open's time after a clean close). A read-only open reads the
    /// state file again first: a writer beside it may have written that
    /// slot, and frames after it, since the state was read. The slot was
    /// written before any such frame, so if the pair is still there, no
    /// frame had begun to be written when the zeros were seen. A scan that
    /// reads every frame (`annals verify`) reads the zeros too.
    fn nothing_follows(&self, segment: &Segment, expected: Lsn, is_last: bool) -> bool {
        let vouched = self.clean_close_pair.is_some_and(|pair| {
            pair.durable_end_lsn == expected && pair.newest_segment_lsn == segment.header.first_lsn
        });
        if !is_last || self.resynced || self.image == ImagePolicy::Ignore || !vouched {
            return false;
        }
        self.access == Access::ReadWrite
            || read_state(self.fs, self.dir).is_ok_and(|read| read.clean_close_pair() == self.clean_close_pair)
    }

    /// Decides what the end of a segment's frames means (the decision table).
    fn settle_end(&mut self, segment: &Segment, end: ScanEnd, is_last: bool) -> Result<Settled> {
        let expected = self.index.next_lsn();
        let durable_end = self.state.map_or(Lsn::ZERO, |state| state.durable_end_lsn);
        let ScanEnd::Defect { offset, why, stream_inconsistent } = end else {
            if is_last && !self.resynced && expected < durable_end {
                // Row 7: the data ends (zeros) before what the state file
                // recorded as durable: acknowledged records were erased.
                let offset = self.index.segments().last().map_or(0, |entry| entry.end_offset) as u64;
                let kind = CorruptionKind::EndBeforeDurable { end: expected, durable_end };
                let problem = Corruption { file: segment.path.clone(), offset, kind };
                self.cut_lsn_seen = self.cut_lsn_seen.max(Some(Lsn(durable_end.0 - 1)));
                self.corruption_at(&[], problem, 0)?;
            }
            // Row 1: zeros to the end of the file: a clean end.
            return Ok(Settled::Continue);
        };
        let bytes = segment.map.slice(0, segment.map.len());
        let damaged_end = last_nonzero_end(&bytes, offset);
        let confirmed = later_durable_frame(&bytes, offset, expected, &segment.header.log_id);
        let below_durable_end = expected < durable_end && !self.resynced;
        if is_last && !stream_inconsistent && confirmed.is_none() && !below_durable_end {
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
        let kind = match confirmed {
            Some(later) if is_last => CorruptionKind::BadRecord(format!(
                "{why}; a valid frame at offset {later} was written after it was durable"
            )),
            // Row 7: damage where the state file says everything was durable.
            _ if is_last && below_durable_end && !stream_inconsistent => {
                CorruptionKind::EndBeforeDurable { end: expected, durable_end }
            }
            _ => CorruptionKind::BadRecord(why),
        };
        if self.mode == RecoveryMode::Salvage {
            let seen = highest_lsn_after(&bytes, offset, &segment.header.log_id);
            self.cut_lsn_seen = self.cut_lsn_seen.max(seen).max(Some(Lsn(durable_end.0.saturating_sub(1))));
        }
        let problem = Corruption { file: segment.path.clone(), offset: offset as u64, kind };
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
        let cuts_segment = problem.offset > 0 && damaged_end > 0;
        let later = if cuts_segment { &segments[1..] } else { segments };
        let dropped_before = self.report.salvaged.len();
        // Every LSN a dropped file held may have been acknowledged: find the
        // highest, and record past it before anything is destroyed, so that
        // a crash in the middle of salvage cannot forget it.
        let mut dropped = Vec::new();
        for (_, name) in later {
            let path = self.dir.join(name);
            let file = self.fs.open(&path, false).map_err(|error| Error::io("open", &path, error))?;
            let len = file.len().map_err(|error| Error::io("stat", &path, error))?;
            let mut readable = false;
            if let (Some(log_id), Ok(map)) = (self.log_id, file.map()) {
                let bytes = map.slice(0, map.len());
                self.cut_lsn_seen = self.cut_lsn_seen.max(highest_lsn_after(&bytes, 0, &log_id));
                readable = wholly_readable(&bytes, &log_id);
            }
            if let Some(first) = parse_segment_file_name(name) {
                // Even an empty or unreadable file named for an LSN took it.
                // The newest, if it is not wholly readable, may have held as
                // many as its size allows: after a crash its end is recorded
                // nowhere else.
                let newest = segments.last().is_some_and(|(_, last)| last == name);
                let took = if newest && !readable { lsn_capacity(self.segment_size_of(&file, len)) } else { 0 };
                self.cut_lsn_seen = self.cut_lsn_seen.max(Some(last_lsn_taken(first, took)));
            }
            dropped.push((path, len));
        }
        if cuts_segment || !dropped.is_empty() {
            self.persist_salvage_resume()?;
        }
        if cuts_segment {
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
        }
        for (path, len) in dropped {
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
        if self.report.salvaged.len() == dropped_before {
            // Nothing to cut (the damage is a loss already): report it all the same.
            self.report.salvaged.push(DroppedRange {
                file: problem.file.clone(),
                offset: problem.offset,
                bytes: 0,
                file_deleted: false,
                from_lsn,
                reason,
            });
        }
        self.fs.sync_dir(self.dir).map_err(|error| Error::io("fsync directory", self.dir, error))?;
        Ok(true)
    }

    /// Salvage is about to repair the newest segment (its header, or its
    /// length) and read it as it then is. After a crash nothing else says
    /// how many records it held, and the damage may have taken some: the
    /// log resumes past every LSN a segment of `segment_bytes` can hold,
    /// recorded before the repair destroys the evidence.
    fn newest_contents_unknown(&mut self, first_lsn: Lsn, segment_bytes: u64) -> Result<()> {
        if self.access == Access::ReadOnly {
            return Ok(());
        }
        let most = Lsn(first_lsn.0.saturating_add(lsn_capacity(segment_bytes)));
        self.cut_lsn_seen = self.cut_lsn_seen.max(Some(most));
        self.persist_salvage_resume()
    }

    /// Salvage is about to cut the log at the index's end: records, in a
    /// state file written whole and atomically, that the log now ends there
    /// in its newest kept segment, and that LSNs up to every one that may
    /// have been acknowledged are taken (the lease). A crash in the middle
    /// of salvage then finds a log that ends where the state file says, and
    /// still resumes past every acknowledged LSN.
    fn persist_salvage_resume(&mut self) -> Result<()> {
        let Some(log_id) = self.log_id else {
            return Ok(()); // no readable segment: no record was acknowledged in one
        };
        let end = self.index.next_lsn();
        let oldest = self.state.map_or(self.index.oldest_lsn().min(end), |state| state.oldest_segment_lsn);
        let newest = self.index.segments().last().map_or(oldest, |entry| entry.segment.header.first_lsn);
        let (inferred_generation, inferred_end) = self.inferred_compaction.unwrap_or((0, Lsn::ZERO));
        let resume = self.salvage_resume(end);
        let state = LogState {
            log_id,
            generation: self.state.map_or(1, |state| state.generation + 1),
            oldest_segment_lsn: oldest,
            newest_segment_lsn: newest.min(end),
            durable_end_lsn: end,
            written_ms: self.fs.now_ms(),
            clean_close: false,
            lsn_lease_end: resume,
            features: self.state.map_or(inferred_features(inferred_generation), |state| state.features)
                | if self.index.retention_records() > 0 { crate::state::FEATURE_RETENTION } else { 0 },
            compaction_generation: self.state.map_or(inferred_generation, |state| state.compaction_generation),
            compacted_end_lsn: self.state.map_or(inferred_end, |state| state.compacted_end_lsn),
            // Without a state file, what log-wide retention dropped is gone
            // from the compacted segments: the log starts at the oldest left.
            trimmed_lsn: self
                .state
                .map_or(if inferred_generation > 0 { oldest } else { Lsn::ZERO }, |state| state.trimmed_lsn),
        };
        let file = crate::state::StateFile::create(self.fs, self.dir, state)?;
        self.state = Some(file.current());
        Ok(())
    }

    /// Rewrites and syncs the frames of the last segment that were written
    /// after the last fdatasync the log recorded: after a failed fsync or a
    /// process crash they may sit in the page cache without being durable,
    /// and nothing may be served, or written after them, until they are.
    fn resync_tail(&mut self, from: Option<usize>) -> Result<()> {
        let Some(entry) = self.index.segments().last() else {
            return Ok(());
        };
        let Some(from) = from.or_else(|| self.index.tail_since_last_sync()) else {
            return Ok(());
        };
        let segment = &entry.segment;
        let end = entry.end_offset;
        if from < end {
            let bytes = segment.map.slice(from, end - from);
            // The frames may be durable already, and a power cut in the
            // middle of writing them again could tear them: a synced copy
            // comes first, so the next open can finish the rewrite.
            let journal = ResyncJournal { first_lsn: segment.header.first_lsn, offset: from as u64, bytes };
            journal.write(self.fs, self.dir, &segment.header.log_id)?;
            segment
                .file
                .write_at(&journal.bytes, from as u64)
                .map_err(|error| Error::io("write", &segment.path, error))?;
            segment.file.sync_data().map_err(|error| Error::io("fdatasync", &segment.path, error))?;
            self.report.tail_bytes_resynced = (end - from) as u64;
            return ResyncJournal::remove(self.fs, self.dir);
        }
        segment.file.sync_data().map_err(|error| Error::io("fdatasync", &segment.path, error))
    }

    /// A rewrite of a segment's tail that a crash interrupted (row 19): its
    /// synced copy, if whole, is written into the segment again and synced;
    /// a copy that is not whole was never followed by the rewrite. Then the
    /// copy is removed.
    fn finish_interrupted_resync(&mut self, names: &[String]) -> Result<()> {
        if !names.iter().any(|name| name == RESYNC_FILE_NAME || name == RESYNC_TEMP_FILE_NAME) {
            return Ok(());
        }
        let whole = if names.iter().any(|name| name == RESYNC_FILE_NAME) {
            ResyncJournal::read(self.fs, self.dir)?
        } else {
            None
        };
        if let Some(journal) = whole {
            let path = self.dir.join(crate::segment::segment_file_name(journal.first_lsn));
            if let Ok(file) = self.fs.open(&path, true)
                && file.len().is_ok_and(|len| journal.offset + journal.bytes.len() as u64 <= len)
            {
                file.write_at(&journal.bytes, journal.offset).map_err(|error| Error::io("write", &path, error))?;
                file.sync_data().map_err(|error| Error::io("fdatasync", &path, error))?;
            }
        }
        ResyncJournal::remove(self.fs, self.dir)
    }
}

enum Settled {
    Continue,
    Stop,
    Resync,
}

/// Whether a segment file reads whole: an intact header of this log, the
/// length it records, and frames back to back (a clean-close marker after
/// its padding allowed) up to zeros that run to the end. Then the frames
/// found in it are all it held.
fn wholly_readable(bytes: &[u8], log_id: &[u8; 16]) -> bool {
    let Ok(header) = SegmentHeader::decode(bytes) else { return false };
    if header.log_id != *log_id || header.segment_bytes != bytes.len() as u64 {
        return false;
    }
    let mut offset = SEGMENT_HEADER_BYTES;
    while offset < bytes.len() {
        match decode_frame_anywhere(&bytes[offset..], log_id) {
            Ok(frame) => offset += frame.total_bytes(),
            Err(FrameDefect::Zeroed) if is_zero(&bytes[offset..]) => return true,
            Err(_) => match crate::frame::padded_marker_at(bytes, offset, log_id) {
                Some((at, frame)) => offset = at + frame.total_bytes(),
                None => return false,
            },
        }
    }
    true
}

/// The last LSN a file named for `first` took, holding `took` LSNs (0: it
/// took its own name's). Saturates: a name at the top of the LSN space
/// (a stray file, fuzzed input) takes the rest of it, never wraps.
fn last_lsn_taken(first: Lsn, took: u64) -> Lsn {
    Lsn(first.0.saturating_add(took).saturating_sub(1))
}

/// The most LSNs a segment of `segment_bytes` can hold: every operation
/// takes at least 24 bytes (a batch's kind byte, the operation header and a
/// one-byte stream id).
const fn lsn_capacity(segment_bytes: u64) -> u64 {
    segment_bytes.saturating_sub(SEGMENT_HEADER_BYTES as u64) / (BATCH_OP_KIND_BYTES + OP_HEADER_BYTES + 1) as u64
}

/// Whether the state file's `log_id` belongs with `segments`: some segment
/// header names it, or none is readable. Stops at the first header that
/// names it (the first segment, in a log that is whole): an open reads one
/// header here, not every segment's.
fn state_names_a_segment_log(
    fs: &dyn FileSystem,
    dir: &Path,
    segments: &[(Lsn, String)],
    log_id: &[u8; 16],
) -> Result<bool> {
    let mut any_readable = false;
    for (_, name) in segments {
        match segment_log_id(fs, dir, name)? {
            Some(id) if id == *log_id => return Ok(true),
            Some(_) => any_readable = true,
            None => {}
        }
    }
    Ok(!any_readable)
}

/// The log id of segment `name`'s header, if the header is intact.
fn segment_log_id(fs: &dyn FileSystem, dir: &Path, name: &str) -> Result<Option<[u8; 16]>> {
    let path = dir.join(name);
    let file = fs.open(&path, false).map_err(|error| Error::io("open", &path, error))?;
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    if file.read_at(&mut header, 0).is_err() {
        return Ok(None);
    }
    Ok(SegmentHeader::decode(&header).ok().map(|header| header.log_id))
}

/// Whether every byte is zero.
pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    // A page at a time, each folded without an early exit so that it
    // vectorizes: the rest of a preallocated active segment (up to 64 MiB)
    // is read at every open.
    bytes.chunks(4096).all(|page| page.iter().fold(0u8, |any, byte| any | byte) == 0)
}

/// The end of the last non-zero byte at or after `from` (at least `from`).
pub(crate) fn last_nonzero_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..].iter().rposition(|&b| b != 0).map_or(from, |i| from + i + 1)
}

/// The offset of a valid frame after `from` whose `durable_lsn` is past
/// `expected`: proof that the record at `expected` had been made durable.
fn later_durable_frame(bytes: &[u8], from: usize, expected: Lsn, log_id: &[u8; 16]) -> Option<usize> {
    let mut found = None;
    for_each_valid_frame_after(bytes, from + 1, log_id, |offset, header, frame| {
        let durable = u64::from_le_bytes(header[16..24].try_into().expect("eight bytes"));
        if durable <= expected.0 {
            return false;
        }
        match frame() {
            Some(frame) if frame.meta.durable_lsn > expected => {
                found = Some(offset);
                true
            }
            _ => false,
        }
    });
    found
}

/// The highest LSN any valid frame at or after `from` occupies: salvage
/// never hands out again an LSN that a dropped frame held.
fn highest_lsn_after(bytes: &[u8], from: usize, log_id: &[u8; 16]) -> Option<Lsn> {
    let mut highest = None;
    for_each_valid_frame_after(bytes, from, log_id, |_, _, frame| {
        if let Some(frame) = frame() {
            highest = highest.max(Some(Lsn(frame.next_lsn().0.saturating_sub(1))));
        }
        false
    });
    highest
}

/// Calls `visit(offset, header, decode)` at every offset from `from` whose 40
/// bytes could be a frame header (runs of zeros are skipped quickly: no
/// frame header is all zeros); `decode` checks the frame there. Stops when
/// `visit` returns true. The search does not trust any frame's length.
pub(crate) fn for_each_valid_frame_after<'a>(
    bytes: &'a [u8],
    from: usize,
    log_id: &[u8; 16],
    mut visit: impl FnMut(usize, &'a [u8], &dyn Fn() -> Option<crate::frame::FrameView<'a>>) -> bool,
) {
    let mut offset = from;
    while offset + FRAME_HEADER_BYTES <= bytes.len() {
        let header = &bytes[offset..offset + FRAME_HEADER_BYTES];
        if is_zero(header) {
            let next = bytes[offset..].iter().position(|&b| b != 0).map_or(bytes.len(), |i| offset + i);
            offset = next.saturating_sub(FRAME_HEADER_BYTES - 1).max(offset + 1);
            continue;
        }
        let decode = || decode_frame_anywhere(&bytes[offset..], log_id).ok();
        if visit(offset, header, &decode) {
            return;
        }
        offset += 1;
    }
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

#[cfg(test)]
mod tests {
    use super::{Lsn, is_zero, last_lsn_taken};

    /// Found by the `open_directory` fuzz target (nightly, overflow checks
    /// on): salvage of a directory holding an unreadable file named for LSN
    /// 2^64 − 1 added the LSNs that file could hold to its name and
    /// overflowed (a panic with overflow checks; without them, a resume
    /// point wrapped to far below the file's name).
    #[test]
    fn the_last_lsn_a_file_named_at_the_top_of_the_lsn_space_took_saturates() {
        assert_eq!(last_lsn_taken(Lsn(5), 0), Lsn(4));
        assert_eq!(last_lsn_taken(Lsn(5), 10), Lsn(14));
        assert_eq!(last_lsn_taken(Lsn(u64::MAX), 178_956_967), Lsn(u64::MAX - 1));
        assert_eq!(last_lsn_taken(Lsn(u64::MAX - 3), 10), Lsn(u64::MAX - 1));
    }

    /// `is_zero` folds a page at a time: one non-zero byte anywhere, in a
    /// whole page or in the short last one, is found.
    #[test]
    fn is_zero_finds_one_non_zero_byte_anywhere() {
        assert!(is_zero(&[]));
        for len in [1, 7, 4095, 4096, 4097, 3 * 4096 + 5] {
            let mut bytes = vec![0u8; len];
            assert!(is_zero(&bytes), "{len}");
            for at in [0, len / 2, len - 1] {
                bytes[at] = 0x80;
                assert!(!is_zero(&bytes), "{len}, {at}");
                bytes[at] = 0;
            }
        }
    }
}
