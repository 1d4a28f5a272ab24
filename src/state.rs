//! The state file, `annals.state`: what a log knows about itself that no
//! single damaged sector, and no deleted segment, may erase.
//!
//! Segments cannot say what is missing after them: a deleted newest segment,
//! or damage over the last records and the clean-close marker, leaves a log
//! that looks complete. The state file records, at every segment rollover
//! and at every clean close, which segment is the newest and the LSN below
//! which everything was durable. Recovery holds the segments to it.
//!
//! ```text
//! // Slot: { magic | format_version | slot_bytes | log_id | generation | features | oldest_segment_lsn
//! //         | newest_segment_lsn | durable_end_lsn | written_ms | flags | lsn_lease_end | reserved | crc }
//! ```
//!
//! The file is two 512-byte slots, each a whole sector with its own
//! checksum. A write goes to the slot the new generation names
//! (`generation % 2`) and is synced; the other slot keeps the previous
//! state, so a torn write loses at most the newest update. A clean close
//! writes both slots, so that afterwards one damaged sector still leaves a
//! copy of what the close recorded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Corruption, CorruptionKind, Error, Result};
use crate::fs::{File, FileSystem};
use crate::types::Lsn;

/// The state file's name inside a log directory.
pub const STATE_FILE_NAME: &str = "annals.state";
/// The name a new state file is written under before it is renamed into place.
pub const STATE_TEMP_FILE_NAME: &str = "annals.state.tmp";
/// Bytes in one slot: one sector.
pub const STATE_SLOT_BYTES: usize = 512;
/// Bytes in the state file: two slots.
pub const STATE_FILE_BYTES: usize = 2 * STATE_SLOT_BYTES;
/// The first eight bytes of every slot.
pub const STATE_MAGIC: [u8; 8] = *b"ANNALSST";
/// Feature bit: the log may hold retention records (prunes and stream
/// bases, frame kinds 7 and 8). Set before the first one is written.
pub const FEATURE_RETENTION: u64 = 1;
/// Feature bit: the log may hold compacted segments, and the slot's
/// `compaction_generation` and `compacted_end_lsn` say which.
pub const FEATURE_COMPACTION: u64 = 2;
/// Feature bit: every writer of the log clears the clean-close flag in a
/// synced slot before it writes anything past a clean-close marker. A
/// clean close recorded in both slots then vouches that nothing follows
/// its marker, and open does not read the rest of the segment to find out
/// (segments-format.md, section 5). Set in every slot this build writes;
/// a build that does not know it refuses the log, so it can never write
/// past a marker and leave the flag standing.
pub const FEATURE_CLEAN_CLOSE_CLEARED_FIRST: u64 = 4;
/// Feature bits this build understands; a slot with any other bit set is refused.
pub const STATE_FEATURES_KNOWN: u64 = FEATURE_RETENTION | FEATURE_COMPACTION | FEATURE_CLEAN_CLOSE_CLEARED_FIRST;

// Named offsets of the slot's fields (segments-format.md, "The state file").
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = 8;
const SLOT_BYTES_AT: usize = 12;
const LOG_ID_AT: usize = 16;
const GENERATION_AT: usize = 32;
const FEATURES_AT: usize = 40;
const OLDEST_SEGMENT_AT: usize = 48;
const NEWEST_SEGMENT_AT: usize = 56;
const DURABLE_END_AT: usize = 64;
const WRITTEN_MS_AT: usize = 72;
const FLAGS_AT: usize = 80;
const LSN_LEASE_END_AT: usize = 84;
const COMPACTION_GENERATION_AT: usize = 92;
const COMPACTED_END_AT: usize = 100;
const TRIMMED_AT: usize = 108;
const CRC_AT: usize = STATE_SLOT_BYTES - 4;
const FLAG_CLEAN_CLOSE: u32 = 1;

const _: () = assert!(TRIMMED_AT + 8 <= CRC_AT);

/// What the state file records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogState {
    /// The log's id, as in every segment header.
    pub log_id: [u8; 16],
    /// Increases by one with every slot written; the valid slot with the
    /// higher generation is the current state.
    pub generation: u64,
    /// First LSN of the oldest segment.
    pub oldest_segment_lsn: Lsn,
    /// First LSN of the newest segment published when this was written:
    /// the log has at least this segment.
    pub newest_segment_lsn: Lsn,
    /// Every LSN below this one had been made durable when this was written:
    /// the log ends at or after it.
    pub durable_end_lsn: Lsn,
    /// When the slot was written, ms since the Unix epoch (informational).
    pub written_ms: u64,
    /// Written by a clean close. With the feature bit
    /// `FEATURE_CLEAN_CLOSE_CLEARED_FIRST`, and in both slots, it vouches
    /// that nothing was written past the close's marker (a clean-close
    /// pair, segments-format.md 5); without it, informational.
    pub clean_close: bool,
    /// Every LSN handed out so far is below this one (≥ `durable_end_lsn`).
    /// Appends acknowledged before they are synced (`Flush`, `Periodic`)
    /// may be lost in a power cut; their LSNs were acknowledged all the
    /// same, so the log resumes past them, never at them.
    pub lsn_lease_end: Lsn,
    /// Bits of the features the log uses (bit 0: retention records, bit 1:
    /// compacted segments; segments-format.md, section 5).
    pub features: u64,
    /// The generation of the compacted segments that are part of the log
    /// (0: none). Compacted segments of any other generation are leftovers
    /// of a compaction that did not commit, or was superseded.
    pub compaction_generation: u64,
    /// Where the compacted segments end and the first ordinary segment
    /// starts (0 when `compaction_generation` is 0): ordinary segments
    /// below it were compacted.
    pub compacted_end_lsn: Lsn,
    /// Log-wide retention dropped every record below this LSN, live or not
    /// (0: never): a cursor below it is told the log was trimmed.
    pub trimmed_lsn: Lsn,
}

impl LogState {
    /// The slot's bytes.
    pub fn encode(&self) -> [u8; STATE_SLOT_BYTES] {
        let mut bytes = [0u8; STATE_SLOT_BYTES];
        bytes[MAGIC_AT..MAGIC_AT + 8].copy_from_slice(&STATE_MAGIC);
        bytes[VERSION_AT..VERSION_AT + 4].copy_from_slice(&crate::segment::FORMAT_VERSION.to_le_bytes());
        bytes[SLOT_BYTES_AT..SLOT_BYTES_AT + 4].copy_from_slice(&(STATE_SLOT_BYTES as u32).to_le_bytes());
        bytes[LOG_ID_AT..LOG_ID_AT + 16].copy_from_slice(&self.log_id);
        bytes[GENERATION_AT..GENERATION_AT + 8].copy_from_slice(&self.generation.to_le_bytes());
        bytes[FEATURES_AT..FEATURES_AT + 8].copy_from_slice(&self.features.to_le_bytes());
        bytes[OLDEST_SEGMENT_AT..OLDEST_SEGMENT_AT + 8].copy_from_slice(&self.oldest_segment_lsn.0.to_le_bytes());
        bytes[NEWEST_SEGMENT_AT..NEWEST_SEGMENT_AT + 8].copy_from_slice(&self.newest_segment_lsn.0.to_le_bytes());
        bytes[DURABLE_END_AT..DURABLE_END_AT + 8].copy_from_slice(&self.durable_end_lsn.0.to_le_bytes());
        bytes[WRITTEN_MS_AT..WRITTEN_MS_AT + 8].copy_from_slice(&self.written_ms.to_le_bytes());
        let flags = if self.clean_close { FLAG_CLEAN_CLOSE } else { 0 };
        bytes[FLAGS_AT..FLAGS_AT + 4].copy_from_slice(&flags.to_le_bytes());
        bytes[LSN_LEASE_END_AT..LSN_LEASE_END_AT + 8].copy_from_slice(&self.lsn_lease_end.0.to_le_bytes());
        bytes[COMPACTION_GENERATION_AT..COMPACTION_GENERATION_AT + 8]
            .copy_from_slice(&self.compaction_generation.to_le_bytes());
        bytes[COMPACTED_END_AT..COMPACTED_END_AT + 8].copy_from_slice(&self.compacted_end_lsn.0.to_le_bytes());
        bytes[TRIMMED_AT..TRIMMED_AT + 8].copy_from_slice(&self.trimmed_lsn.0.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..CRC_AT]);
        bytes[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Checks and decodes one slot.
    pub fn decode(bytes: &[u8]) -> Result<LogState, CorruptionKind> {
        let bad = CorruptionKind::BadStateFile;
        if bytes.len() != STATE_SLOT_BYTES {
            return Err(bad("slot is not 512 bytes"));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
        if bytes[MAGIC_AT..MAGIC_AT + 8] != STATE_MAGIC {
            return Err(bad("bad magic"));
        }
        if crc32fast::hash(&bytes[..CRC_AT]) != u32_at(CRC_AT) {
            return Err(bad("checksum mismatch"));
        }
        let version = u32_at(VERSION_AT);
        if version != crate::segment::FORMAT_VERSION {
            return Err(CorruptionKind::UnsupportedVersion(version));
        }
        if u32_at(SLOT_BYTES_AT) as usize != STATE_SLOT_BYTES {
            return Err(bad("slot length field"));
        }
        let features = u64_at(FEATURES_AT);
        if features & !STATE_FEATURES_KNOWN != 0 {
            return Err(CorruptionKind::UnsupportedFeatures(features & !STATE_FEATURES_KNOWN));
        }
        let flags = u32_at(FLAGS_AT);
        if flags & !FLAG_CLEAN_CLOSE != 0 || bytes[TRIMMED_AT + 8..CRC_AT].iter().any(|&b| b != 0) {
            return Err(bad("flags or reserved bytes are not zero"));
        }
        let state = LogState {
            log_id: bytes[LOG_ID_AT..LOG_ID_AT + 16].try_into().expect("sixteen bytes"),
            generation: u64_at(GENERATION_AT),
            oldest_segment_lsn: Lsn(u64_at(OLDEST_SEGMENT_AT)),
            newest_segment_lsn: Lsn(u64_at(NEWEST_SEGMENT_AT)),
            durable_end_lsn: Lsn(u64_at(DURABLE_END_AT)),
            written_ms: u64_at(WRITTEN_MS_AT),
            clean_close: flags & FLAG_CLEAN_CLOSE != 0,
            lsn_lease_end: Lsn(u64_at(LSN_LEASE_END_AT)),
            features,
            compaction_generation: u64_at(COMPACTION_GENERATION_AT),
            compacted_end_lsn: Lsn(u64_at(COMPACTED_END_AT)),
            trimmed_lsn: Lsn(u64_at(TRIMMED_AT)),
        };
        let compaction_consistent = if state.compaction_generation == 0 {
            state.compacted_end_lsn.0 == 0 && state.trimmed_lsn.0 == 0
        } else {
            state.trimmed_lsn <= state.compacted_end_lsn
                && features & FEATURE_COMPACTION != 0
                && state.compacted_end_lsn >= state.oldest_segment_lsn
                && state.compacted_end_lsn <= state.newest_segment_lsn
        };
        if !compaction_consistent {
            return Err(bad("compaction fields out of order"));
        }
        if state.generation == 0
            || state.oldest_segment_lsn.0 == 0
            || state.newest_segment_lsn < state.oldest_segment_lsn
            || state.durable_end_lsn < state.newest_segment_lsn
            || state.lsn_lease_end < state.durable_end_lsn
        {
            return Err(bad("fields out of order"));
        }
        Ok(state)
    }
}

/// What reading the state file found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateRead {
    /// There is no state file.
    Missing,
    /// The current state, from the valid slot with the higher generation;
    /// `damaged_slot` names a slot that did not decode (a torn update, or damage).
    Found {
        /// The state.
        state: LogState,
        /// A slot that failed its checks, with why.
        damaged_slot: Option<(usize, CorruptionKind)>,
        /// The other slot, when it is valid: the state written before.
        other_slot: Option<LogState>,
    },
    /// The file exists but no slot is valid.
    Damaged(Corruption),
}

/// Reads the state file of `dir`, changing nothing.
///
/// # Errors
/// [`Error::Io`] if the file exists but cannot be read.
pub fn read_state(fs: &dyn FileSystem, dir: &Path) -> Result<StateRead> {
    let path = dir.join(STATE_FILE_NAME);
    let file = match fs.open(&path, false) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(StateRead::Missing),
        Err(error) => return Err(Error::io("open", &path, error)),
    };
    let len = file.len().map_err(|error| Error::io("stat", &path, error))?;
    if len != STATE_FILE_BYTES as u64 {
        let kind = CorruptionKind::BadStateFile("file is not two 512-byte slots");
        return Ok(StateRead::Damaged(Corruption { file: path, offset: 0, kind }));
    }
    let mut bytes = [0u8; STATE_FILE_BYTES];
    file.read_at(&mut bytes, 0).map_err(|error| Error::io("read", &path, error))?;
    let slots = [LogState::decode(&bytes[..STATE_SLOT_BYTES]), LogState::decode(&bytes[STATE_SLOT_BYTES..])];
    Ok(choose(path, slots))
}

fn choose(path: PathBuf, slots: [Result<LogState, CorruptionKind>; 2]) -> StateRead {
    match slots {
        [Ok(a), Ok(b)] if a.log_id != b.log_id => {
            let kind = CorruptionKind::BadStateFile("slots name different logs");
            StateRead::Damaged(Corruption { file: path, offset: STATE_SLOT_BYTES as u64, kind })
        }
        [Ok(a), Ok(b)] => {
            let (state, other) = if b.generation > a.generation { (b, a) } else { (a, b) };
            StateRead::Found { state, damaged_slot: None, other_slot: Some(other) }
        }
        [Ok(state), Err(why)] => StateRead::Found { state, damaged_slot: Some((1, why)), other_slot: None },
        [Err(why), Ok(state)] => StateRead::Found { state, damaged_slot: Some((0, why)), other_slot: None },
        [Err(why), Err(_)] => StateRead::Damaged(Corruption { file: path, offset: 0, kind: why }),
    }
}

impl StateRead {
    /// The state a clean close recorded, when the file holds it as only a
    /// clean close under [`FEATURE_CLEAN_CLOSE_CLEARED_FIRST`] leaves it:
    /// both slots valid, with the feature, saying clean, and the same but
    /// for their generations (one apart) and times. It then vouches that
    /// nothing was written past the close's marker (segments-format.md,
    /// section 5):
    ///
    /// - a writer of this build writes and syncs a slot that is not clean
    ///   before its first frame past the marker: that slot replaces one of
    ///   the pair (or, torn, leaves it invalid);
    /// - a build that does not know the feature refuses a slot with it, so
    ///   it can only have opened the log while some slot lacked it, and
    ///   every slot it writes lacks it: no pair can form again without a
    ///   newer slot of this build;
    /// - the close wrote the second slot only after the first was synced:
    ///   the record is durable, whatever became of the second's fsync.
    pub fn clean_close_pair(&self) -> Option<LogState> {
        let StateRead::Found { state, other_slot: Some(other), .. } = self else { return None };
        let same = LogState { generation: state.generation, written_ms: state.written_ms, ..*other };
        let pair = state.clean_close
            && state.features & FEATURE_CLEAN_CLOSE_CLEARED_FIRST != 0
            && other.generation.checked_add(1) == Some(state.generation)
            && same == *state;
        pair.then_some(*state)
    }
}

/// How many slots a state update writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateCopies {
    /// The slot the next generation names: one synced sector (a rollover).
    One,
    /// Both slots, each synced: a clean close, so one damaged sector cannot
    /// erase what it recorded.
    Both,
}

/// The state file of a log open for writing.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    file: Arc<dyn File>,
    current: LogState,
    /// `current` was written and synced by this handle. A state read at
    /// open may sit in the page cache after a failed fsync of the process
    /// before: it is never taken as durable, unless it is a clean close's
    /// pair (`pair_read`).
    synced_here: bool,
    /// `current` is what the file held at open, as a clean close's pair
    /// ([`StateRead::clean_close_pair`]): durable, and vouching that
    /// nothing follows its marker. Cleared by any write.
    pair_read: bool,
}

impl StateFile {
    /// Writes a new state file (both slots, under a temporary name, synced,
    /// renamed into place, the directory synced), replacing any old one.
    ///
    /// # Errors
    /// [`Error::Io`]; the temporary file is removed if it was created.
    pub fn create(fs: &dyn FileSystem, dir: &Path, state: LogState) -> Result<StateFile> {
        let temp = dir.join(STATE_TEMP_FILE_NAME);
        let path = dir.join(STATE_FILE_NAME);
        let _ = fs.remove(&temp);
        let file = fs.create(&temp).map_err(|error| Error::io_or_full("create", &temp, error))?;
        let features = state.features | FEATURE_CLEAN_CLOSE_CLEARED_FIRST;
        let first = LogState { generation: state.generation, features, ..state };
        let second = LogState { generation: state.generation + 1, features, ..state };
        let mut bytes = [0u8; STATE_FILE_BYTES];
        bytes[slot_of(first.generation)..][..STATE_SLOT_BYTES].copy_from_slice(&first.encode());
        bytes[slot_of(second.generation)..][..STATE_SLOT_BYTES].copy_from_slice(&second.encode());
        let written = file
            .write_at(&bytes, 0)
            .map_err(|error| Error::io_or_full("write", &temp, error))
            .and_then(|()| file.sync_data().map_err(|error| Error::io_or_full("fdatasync", &temp, error)))
            .and_then(|()| fs.rename(&temp, &path).map_err(|error| Error::io_or_full("rename", &path, error)));
        if let Err(error) = written {
            let _ = fs.remove(&temp);
            return Err(error);
        }
        fs.sync_dir(dir).map_err(|error| Error::io("fsync directory", dir, error))?;
        Ok(StateFile { path, file, current: second, synced_here: true, pair_read: false })
    }

    /// Opens the state file of a log whose state was just read as `current`.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn open(fs: &dyn FileSystem, dir: &Path, current: LogState) -> Result<StateFile> {
        let path = dir.join(STATE_FILE_NAME);
        let file = fs.open(&path, true).map_err(|error| Error::io("open", &path, error))?;
        // Read again (the directory is locked: it is what recovery read,
        // or what it wrote since) to learn whether it is a clean close's pair.
        let pair_read = read_state(fs, dir)?.clean_close_pair() == Some(current);
        Ok(StateFile { path, file, current, synced_here: false, pair_read })
    }

    /// The state last written.
    pub fn current(&self) -> LogState {
        self.current
    }

    /// Whether [`StateFile::current`] was written and synced by this handle
    /// (not only read at open, when it may not have been durable).
    pub fn synced_here(&self) -> bool {
        self.synced_here
    }

    /// Whether [`StateFile::current`] is the clean close's pair the file
    /// held at open ([`StateRead::clean_close_pair`]), nothing written since:
    /// durable, and vouching for the end it records.
    pub fn clean_close_pair_read(&self) -> bool {
        self.pair_read
    }

    /// Records that the log is no longer cleanly closed (one synced slot),
    /// if the current state says it is: a writer calls it before it writes
    /// anything past the end a clean close recorded, so that a clean close
    /// in the state file always means that nothing follows its marker
    /// ([`FEATURE_CLEAN_CLOSE_CLEARED_FIRST`]). Writes nothing otherwise.
    ///
    /// # Errors
    /// As [`StateFile::update`]. Nothing was written past the marker yet:
    /// the caller fails what it was about to write, and may try again (the
    /// whole slot is written again before the next sync).
    pub fn record_not_clean(&mut self) -> Result<()> {
        if !self.current.clean_close {
            return Ok(());
        }
        self.write(LogState { clean_close: false, ..self.current })
    }

    /// Records that the newest segment starts at `newest_segment_lsn` and
    /// that everything below `durable_end_lsn` is durable. A clean close
    /// (`clean_close`) also ends the LSN lease there: every LSN handed out
    /// is durable. Each slot written is synced before this returns.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::DiskFull`]: the state may be the old one or
    /// the new one.
    pub fn update(
        &mut self,
        newest_segment_lsn: Lsn,
        durable_end_lsn: Lsn,
        clean_close: bool,
        copies: StateCopies,
    ) -> Result<()> {
        let durable_end_lsn = durable_end_lsn.max(self.current.durable_end_lsn);
        let lsn_lease_end = if clean_close { durable_end_lsn } else { self.current.lsn_lease_end.max(durable_end_lsn) };
        let next = LogState { newest_segment_lsn, durable_end_lsn, lsn_lease_end, clean_close, ..self.current };
        let writes = if copies == StateCopies::Both { 2 } else { 1 };
        for _ in 0..writes {
            self.write(next)?;
        }
        Ok(())
    }

    /// Records that LSNs below `lsn_lease_end` may be handed out before they
    /// are durable (one synced slot).
    ///
    /// # Errors
    /// As [`StateFile::update`].
    pub fn extend_lease(&mut self, lsn_lease_end: Lsn) -> Result<()> {
        let next = LogState {
            lsn_lease_end: lsn_lease_end.max(self.current.lsn_lease_end),
            clean_close: false,
            ..self.current
        };
        self.write(next)
    }

    /// Records that the log uses `features` (both slots, each synced, so
    /// that a torn write of the newer cannot bring back a slot without
    /// them), before the first record that needs them is written.
    ///
    /// # Errors
    /// As [`StateFile::update`].
    pub fn add_features(&mut self, features: u64) -> Result<()> {
        if self.current.features & features == features {
            return Ok(());
        }
        let next = LogState { features: self.current.features | features, clean_close: false, ..self.current };
        self.write(next)?;
        self.write(next)
    }

    /// Records a committed compaction: the log's oldest segment starts at
    /// `oldest_segment_lsn`, its compacted segments are those of
    /// `generation` and end at `compacted_end_lsn`. Both slots are written
    /// and synced, so one damaged sector still leaves a copy: from here on
    /// the compaction's inputs are not part of the log.
    ///
    /// # Errors
    /// As [`StateFile::update`].
    pub fn record_compaction(
        &mut self,
        oldest_segment_lsn: Lsn,
        generation: u64,
        compacted_end_lsn: Lsn,
        trimmed_lsn: Lsn,
    ) -> Result<()> {
        let next = LogState {
            oldest_segment_lsn,
            compaction_generation: generation,
            compacted_end_lsn,
            trimmed_lsn: trimmed_lsn.max(self.current.trimmed_lsn),
            features: self.current.features | FEATURE_COMPACTION,
            clean_close: false,
            ..self.current
        };
        self.write(next)?;
        self.write(next)
    }

    /// Writes `state` as the next generation into its slot and syncs it.
    /// Every slot this build writes says it clears the clean-close flag
    /// before writing past a marker ([`FEATURE_CLEAN_CLOSE_CLEARED_FIRST`]).
    fn write(&mut self, state: LogState) -> Result<()> {
        let next = LogState {
            generation: self.current.generation + 1,
            written_ms: crate::commit::now_ms(),
            features: state.features | FEATURE_CLEAN_CLOSE_CLEARED_FIRST,
            ..state
        };
        let offset = slot_of(next.generation) as u64;
        self.pair_read = false;
        self.file.write_at(&next.encode(), offset).map_err(|error| Error::io_or_full("write", &self.path, error))?;
        self.synced_here = false;
        self.file.sync_data().map_err(|error| Error::io_or_full("fdatasync", &self.path, error))?;
        self.current = next;
        self.synced_here = true;
        Ok(())
    }
}

/// Makes the state `current` (as just read) durable before recovery acts on
/// it: what was read may be a slot whose fsync failed, still only in the
/// page cache. It is written again as the next generation, into the other
/// slot, and synced: the slot it was read from is never rewritten, so a
/// power cut in the middle leaves it as it was, and the other slot's older
/// state is only ever replaced by the same state as the current one.
///
/// Returns the state as written: the same but for its generation (and
/// time), which whoever writes the file next must go on from, so that its
/// next write goes to the other slot and never over this one (a write torn
/// there would leave only the slot that may not be durable). It is written
/// not clean: a copy of a clean close's slot beside it would look like the
/// close's own pair ([`StateRead::clean_close_pair`]), whether or not
/// anything was written past its marker since.
///
/// # Errors
/// [`Error::Io`] or [`Error::DiskFull`].
pub fn resync_state_file(fs: &dyn FileSystem, dir: &Path, current: LogState) -> Result<LogState> {
    let mut file = StateFile::open(fs, dir, current)?;
    file.write(LogState { clean_close: false, ..current })?;
    Ok(file.current())
}

/// Where the slot of a generation starts.
fn slot_of(generation: u64) -> usize {
    (generation % 2) as usize * STATE_SLOT_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(generation: u64) -> LogState {
        LogState {
            log_id: [5; 16],
            generation,
            oldest_segment_lsn: Lsn(1),
            newest_segment_lsn: Lsn(40),
            durable_end_lsn: Lsn(77),
            written_ms: 1_700_000_000_000,
            clean_close: true,
            lsn_lease_end: Lsn(1 << 20),
            features: FEATURE_RETENTION | FEATURE_COMPACTION,
            compaction_generation: 2,
            compacted_end_lsn: Lsn(10),
            trimmed_lsn: Lsn(7),
        }
    }

    /// A slot written before the lifecycle fields existed (zeros there)
    /// still decodes, and compaction fields that contradict each other do not.
    #[test]
    fn compaction_fields_are_checked_against_each_other() {
        let plain = LogState {
            features: 0,
            compaction_generation: 0,
            compacted_end_lsn: Lsn::ZERO,
            trimmed_lsn: Lsn::ZERO,
            ..state(3)
        };
        assert_eq!(LogState::decode(&plain.encode()), Ok(plain));
        let without_feature = LogState { features: FEATURE_RETENTION, ..state(3) };
        assert!(LogState::decode(&without_feature.encode()).is_err());
        let end_without_generation = LogState { compaction_generation: 0, ..state(3) };
        assert!(LogState::decode(&end_without_generation.encode()).is_err());
        let end_past_newest = LogState { compacted_end_lsn: Lsn(1000), ..state(3) };
        assert!(LogState::decode(&end_past_newest.encode()).is_err());
        let unknown = LogState { features: 8 | FEATURE_COMPACTION, ..state(3) };
        assert!(matches!(LogState::decode(&unknown.encode()), Err(CorruptionKind::UnsupportedFeatures(8))));
    }

    #[test]
    fn a_slot_round_trips() {
        assert_eq!(LogState::decode(&state(3).encode()), Ok(state(3)));
    }

    #[test]
    fn every_slot_bit_flip_is_detected() {
        let bytes = state(3).encode();
        for bit in 0..STATE_SLOT_BYTES * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(LogState::decode(&damaged).is_err(), "bit {bit} went unnoticed");
        }
    }

    #[test]
    fn the_higher_generation_wins_and_a_damaged_slot_falls_back() {
        let path = PathBuf::from("annals.state");
        let found = choose(path.clone(), [Ok(state(4)), Ok(state(5))]);
        assert!(matches!(found, StateRead::Found { state, damaged_slot: None, .. } if state.generation == 5));
        let torn = choose(path.clone(), [Ok(state(4)), Err(CorruptionKind::BadStateFile("checksum mismatch"))]);
        assert!(matches!(torn, StateRead::Found { state, damaged_slot: Some((1, _)), .. } if state.generation == 4));
        let both = choose(path, [Err(CorruptionKind::BadStateFile("x")), Err(CorruptionKind::BadStateFile("y"))]);
        assert!(matches!(both, StateRead::Damaged(_)));
    }

    /// Only both slots of one clean close under the protocol vouch that
    /// nothing follows its marker: not one slot (a torn update, or the
    /// first of the close's two writes), not a slot without the feature (an
    /// older build's close, which may since have been written past), not two
    /// clean slots of different ends or generations further apart.
    #[test]
    fn only_a_clean_close_in_both_slots_under_the_protocol_is_a_pair() {
        let path = PathBuf::from("annals.state");
        let closed = |generation| LogState {
            features: FEATURE_RETENTION | FEATURE_COMPACTION | FEATURE_CLEAN_CLOSE_CLEARED_FIRST,
            written_ms: 1_700_000_000_000 + generation % 1000,
            ..state(generation)
        };
        assert_eq!(LogState::decode(&closed(4).encode()), Ok(closed(4)));
        let pair = choose(path.clone(), [Ok(closed(4)), Ok(closed(5))]);
        assert_eq!(pair.clean_close_pair(), Some(closed(5)));
        let torn = choose(path.clone(), [Ok(closed(4)), Err(CorruptionKind::BadStateFile("checksum mismatch"))]);
        assert_eq!(torn.clean_close_pair(), None);
        let older_build = |generation| LogState { features: FEATURE_RETENTION | FEATURE_COMPACTION, ..state(generation) };
        assert_eq!(choose(path.clone(), [Ok(older_build(4)), Ok(older_build(5))]).clean_close_pair(), None);
        assert_eq!(choose(path.clone(), [Ok(older_build(4)), Ok(closed(5))]).clean_close_pair(), None);
        let not_clean = LogState { clean_close: false, ..closed(6) };
        assert_eq!(choose(path.clone(), [Ok(not_clean), Ok(closed(5))]).clean_close_pair(), None);
        let other_end = LogState { durable_end_lsn: Lsn(76), lsn_lease_end: Lsn(76), ..closed(4) };
        assert_eq!(choose(path.clone(), [Ok(other_end), Ok(closed(5))]).clean_close_pair(), None);
        assert_eq!(choose(path.clone(), [Ok(closed(4)), Ok(closed(7))]).clean_close_pair(), None);
        // A generation read from disk never overflows the check.
        assert_eq!(choose(path, [Ok(closed(u64::MAX)), Ok(closed(1))]).clean_close_pair(), None);
    }
}
