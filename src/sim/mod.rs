//! Deterministic crash simulation: the real engine on a simulated file
//! system, random workloads, crashes at every kind of point, injected
//! faults, damage after clean closes, and an oracle checked after every
//! recovery.
//!
//! One `u64` seed drives a run ([`run_seed`]); a fuzzer's bytes can drive
//! the same run instead ([`run_script`]). A failure says which oracle
//! property broke and is reproduced exactly by its seed. The oracle is the
//! one in `CRASH-MODEL.md`:
//!
//! 1. no loss, 2. prefix, 3. no corrupt reads, 4. stability, 5. index,
//! 6. guards (and limits), 7. compaction (no compaction yet), 8. robust open,
//! 9. fail-stop, 10. no false alarms, 11. no LSN reuse,
//! 12. faults beyond a crash (13 to 15: compaction, no leftovers, space),
//! 16. index image.
//!
//! Property 16: an open from the persisted index image and the frames after
//! it builds the index a full scan does, whatever became of the image (a
//! crash while it was written, damage, an older one put back); and after a
//! clean close that no fault or crash hit, and whose image the simulator
//! left alone, the next open loads that image and scans nothing before the
//! close's end (an image refused there costs every open a full scan, which
//! no read would show).
//!
//! Property 11: no LSN once acknowledged is handed out again for different
//! content. Property 12: damage after a clean close is reported (a strict
//! open fails, `LogReader` names it) and salvage keeps everything before it;
//! an append refused on a full or failing disk writes nothing and poisons
//! nothing.
//!
//! Every reopen draws new options (`segment_bytes`, `record_bytes_max`),
//! each valid on its own: what is on disk must be read as the format says,
//! whatever today's limits are.
//!
//! The machine's clock is the simulated file system's ([`fs::SimFs`]), not
//! the wall clock: it stands still for most steps (so that frames of
//! different histories can share a millisecond, and their bytes match), moves
//! on, and is sometimes set back. Frames, segment headers and images then
//! hold the same bytes on every replay of a seed.

pub mod fs;
pub mod fuzz;
pub mod rng;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::commit::PruneSnapshots;
use crate::error::Error;
use crate::frame::{BATCH_OP_KIND_BYTES, OP_HEADER_BYTES, RecordKind, decode_frame_anywhere};
use crate::fs::FileSystem;
use crate::log::{Batch, Log, LogReader};
use crate::options::{Options, SegmentPreparation};
use crate::segment::{SEGMENT_HEADER_BYTES, SPARE_PREFIX, SPARE_SUFFIX, SegmentHeader, parse_segment_file_name};
use crate::state::{LogState, STATE_FILE_BYTES, STATE_FILE_NAME, STATE_SLOT_BYTES};
use crate::types::{Expectation, Lsn, RecoveryMode, StreamSeq};
use fs::{CrashMode, FaultKind, SimFs};
use rng::SimRng;

/// The kinds of damage done to a cleanly closed log, in the order of
/// [`SimStats::damage_by_kind`].
pub const DAMAGE_KINDS: [&str; 4] = ["tail", "segment deleted", "state deleted", "state slot"];

/// Figures of one or more simulation runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Seeds (or scripts) run.
    pub seeds: u64,
    /// Operations issued to the engine.
    pub operations: u64,
    /// Crashes (points at which the disk froze).
    pub crash_points: u64,
    /// Of those, crashes of a cleanly closed log.
    pub crashes_after_clean_close: u64,
    /// Crash images recovered and checked, by mode (in [`CrashMode::ALL`] order).
    pub images_by_mode: [u64; 7],
    /// Faults injected: EIO, ENOSPC, and of those, failed fsyncs.
    pub faults_eio: u64,
    /// Faults that returned ENOSPC.
    pub faults_enospc: u64,
    /// Injected faults that hit an fsync.
    pub faults_fsync: u64,
    /// Appends refused with `DiskFull` or `Io` (a spare or a rollover
    /// failed) without poisoning the log.
    pub appends_refused_by_faults: u64,
    /// Appends refused as too large for the options of the moment.
    pub appends_too_large: u64,
    /// Cleanly closed logs damaged, by kind (in [`DAMAGE_KINDS`] order).
    pub damage_by_kind: [u64; 4],
    /// Damaged logs that a strict open refused as corrupt.
    pub damage_refused: u64,
    /// Damaged logs that a strict open read exactly (the damage hit nothing
    /// acknowledged: only the close marker, or one state slot).
    pub damage_harmless: u64,
    /// Records compared against the model after a recovery.
    pub records_verified: u64,
    /// Of those, records over the `record_bytes_max` of the open that read them.
    pub records_over_limit_read: u64,
    /// Acknowledged records that salvage dropped after simulated damage
    /// (the damage destroyed them; not a loss by the engine).
    pub records_dropped_by_damage: u64,
    /// Acknowledged records missing after a recovery (must be 0).
    pub acknowledged_lost: u64,
    /// Records returned that differ from what was written (must be 0).
    pub corrupt_returned: u64,
    /// Opens that reported corruption after a plain crash (must be 0).
    pub false_alarms: u64,
    /// LSNs once acknowledged that were handed out again for other content (must be 0).
    pub lsns_reused: u64,
    /// Compactions committed.
    pub compactions: u64,
    /// Compactions that failed before their commit (a fault), leaving the log as it was.
    pub compactions_failed: u64,
    /// Bytes compactions gave back.
    pub compaction_reclaimed_bytes: u64,
    /// Prunes acknowledged.
    pub prunes: u64,
    /// Compactions that dropped the oldest segments for `max_bytes`.
    pub trims: u64,
    /// Index images written (at a clean close, or of the sealed segments).
    pub index_images_written: u64,
    /// Opens that loaded an index image and scanned only after it.
    pub index_images_loaded: u64,
    /// Of those, opens after a clean close that nothing hit, which must
    /// load the close's image (property 16).
    pub index_images_loaded_after_clean_close: u64,
    /// Crashes after a clean close nothing hit that kept an image a fault
    /// had hit earlier (possibly visible and not durable): not held to
    /// property 16's load after a clean close.
    pub index_images_in_doubt_at_crash: u64,
    /// Opens that found an index image damaged, stale or missing a
    /// segment, and scanned everything.
    pub index_images_rejected: u64,
    /// Index images the simulator damaged, truncated, deleted or replaced
    /// with an older one before an open.
    pub index_images_damaged: u64,
    /// Crashes that froze the disk with the slot a writer writes before its
    /// first frame past a clean close (segments-format.md, 5) written but
    /// not synced: the crash images lose it, keep it, or tear it.
    pub crashes_in_not_clean_slot: u64,
    /// Crashes that froze the disk after that slot was synced and before
    /// anything was written past the marker.
    pub crashes_after_not_clean_slot: u64,
}

impl SimStats {
    /// Adds another run's figures.
    pub fn add(&mut self, other: &SimStats) {
        self.seeds += other.seeds;
        self.operations += other.operations;
        self.crash_points += other.crash_points;
        self.crashes_after_clean_close += other.crashes_after_clean_close;
        for (mine, theirs) in self.images_by_mode.iter_mut().zip(other.images_by_mode) {
            *mine += theirs;
        }
        self.faults_eio += other.faults_eio;
        self.faults_enospc += other.faults_enospc;
        self.faults_fsync += other.faults_fsync;
        self.appends_refused_by_faults += other.appends_refused_by_faults;
        self.appends_too_large += other.appends_too_large;
        for (mine, theirs) in self.damage_by_kind.iter_mut().zip(other.damage_by_kind) {
            *mine += theirs;
        }
        self.damage_refused += other.damage_refused;
        self.damage_harmless += other.damage_harmless;
        self.records_verified += other.records_verified;
        self.records_over_limit_read += other.records_over_limit_read;
        self.records_dropped_by_damage += other.records_dropped_by_damage;
        self.acknowledged_lost += other.acknowledged_lost;
        self.corrupt_returned += other.corrupt_returned;
        self.false_alarms += other.false_alarms;
        self.lsns_reused += other.lsns_reused;
        self.compactions += other.compactions;
        self.compactions_failed += other.compactions_failed;
        self.compaction_reclaimed_bytes += other.compaction_reclaimed_bytes;
        self.prunes += other.prunes;
        self.trims += other.trims;
        self.index_images_written += other.index_images_written;
        self.index_images_loaded += other.index_images_loaded;
        self.index_images_loaded_after_clean_close += other.index_images_loaded_after_clean_close;
        self.index_images_in_doubt_at_crash += other.index_images_in_doubt_at_crash;
        self.index_images_rejected += other.index_images_rejected;
        self.index_images_damaged += other.index_images_damaged;
        self.crashes_in_not_clean_slot += other.crashes_in_not_clean_slot;
        self.crashes_after_not_clean_slot += other.crashes_after_not_clean_slot;
    }

    /// Crash images checked in all modes.
    pub fn images(&self) -> u64 {
        self.images_by_mode.iter().sum()
    }
}

impl fmt::Display for SimStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seeds {}  operations {}  crash points {} (after a clean close {})",
            self.seeds, self.operations, self.crash_points, self.crashes_after_clean_close
        )?;
        write!(f, "crash images {}:", self.images())?;
        for (mode, count) in CrashMode::ALL.iter().zip(self.images_by_mode) {
            write!(f, " {} {}", mode.name(), count)?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "faults injected: eio {}  enospc {}  (fsyncs among them {}); appends refused without poisoning {}",
            self.faults_eio, self.faults_enospc, self.faults_fsync, self.appends_refused_by_faults
        )?;
        write!(f, "damage after a clean close:")?;
        for (kind, count) in DAMAGE_KINDS.iter().zip(self.damage_by_kind) {
            write!(f, " {kind} {count}")?;
        }
        writeln!(
            f,
            "  (refused by a strict open {}, harmless {}); records dropped by damage {}",
            self.damage_refused, self.damage_harmless, self.records_dropped_by_damage
        )?;
        writeln!(
            f,
            "records verified {}  (over the limit of the open that read them {}); appends refused as too large {}",
            self.records_verified, self.records_over_limit_read, self.appends_too_large
        )?;
        writeln!(
            f,
            "prunes {}  compactions {} (failed before their commit {}; trimming for max_bytes {}), {} bytes reclaimed",
            self.prunes, self.compactions, self.compactions_failed, self.trims, self.compaction_reclaimed_bytes
        )?;
        writeln!(
            f,
            "index images written {}  loaded by an open {} (after a clean close nothing hit {}; in doubt at a crash after one {})  rejected (full scan) {}  damaged or replaced by the simulator {}",
            self.index_images_written,
            self.index_images_loaded,
            self.index_images_loaded_after_clean_close,
            self.index_images_in_doubt_at_crash,
            self.index_images_rejected,
            self.index_images_damaged
        )?;
        writeln!(
            f,
            "crashes around the slot that clears a clean close: before its fsync {}  after it, before any frame {}",
            self.crashes_in_not_clean_slot, self.crashes_after_not_clean_slot
        )?;
        write!(
            f,
            "acknowledged records lost {}  corrupt records returned {}  false corruption reports {}  lsns reused {}",
            self.acknowledged_lost, self.corrupt_returned, self.false_alarms, self.lsns_reused
        )
    }
}

/// An oracle property that did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimFailure {
    /// Which property (1 to 12), as named in the module docs.
    pub property: &'static str,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.property, self.detail)
    }
}

fn fail<T>(property: &'static str, detail: impl Into<String>) -> Result<T, SimFailure> {
    Err(SimFailure { property, detail: detail.into() })
}

/// A simulated file-system call that the simulator itself made failed: a
/// bug in the simulator, not in the engine.
/// The faults `fs` has injected so far (EIO and ENOSPC).
fn faults_injected(fs: &SimFs) -> u64 {
    let counts = fs.counts();
    counts.eio + counts.enospc
}

/// The LSN an open log hands out next.
fn next_lsn_of(log: &Log) -> Result<u64, SimFailure> {
    log.last_lsn()
        .map(|last| last.0 + 1)
        .map_err(|e| SimFailure { property: "simulator", detail: format!("last lsn: {e}") })
}

/// The valid slots of a state file's bytes, newest first.
fn state_slots(bytes: &[u8]) -> Vec<LogState> {
    if bytes.len() != STATE_FILE_BYTES {
        return Vec::new();
    }
    let mut slots: Vec<LogState> = [&bytes[..STATE_SLOT_BYTES], &bytes[STATE_SLOT_BYTES..]]
        .into_iter()
        .filter_map(|slot| LogState::decode(slot).ok())
        .collect();
    slots.sort_by_key(|slot| std::cmp::Reverse(slot.generation));
    slots
}

/// Whether `slot` is what a writer writes over a clean close's `pair`
/// before its first frame past the marker: the same, not clean, next.
fn clears(pair: &LogState, slot: &LogState) -> bool {
    let as_pair = LogState { clean_close: true, generation: pair.generation, written_ms: pair.written_ms, ..*slot };
    pair.clean_close && !slot.clean_close && pair.generation.checked_add(1) == Some(slot.generation) && as_pair == *pair
}

/// Where a crash froze the disk around the slot that clears a clean close:
/// written and not synced (the durable state is the close, the visible one
/// the slot), or synced with nothing written past the marker yet (the
/// newest segment still ends with the marker at the close's end).
fn not_clean_slot_crash(fs: &SimFs, dir: &Path) -> (bool, bool) {
    let path = dir.join(STATE_FILE_NAME);
    let Some(durable) = fs.durable_files().remove(&path) else { return (false, false) };
    let mut visible = vec![0u8; STATE_FILE_BYTES];
    if fs.open(&path, false).and_then(|file| file.read_at(&mut visible, 0)).is_err() {
        return (false, false);
    }
    let (durable, visible) = (state_slots(&durable), state_slots(&visible));
    let (Some(seen), Some(kept)) = (visible.first(), durable.first()) else { return (false, false) };
    if clears(kept, seen) {
        return (true, false);
    }
    let synced = seen == kept && durable.get(1).is_some_and(|pair| clears(pair, kept));
    (false, synced && ends_with_marker_at(fs, dir, kept))
}

/// Whether the newest segment `state` records ends with a clean-close
/// marker at its `durable_end_lsn`: its last non-zero sector holds it.
fn ends_with_marker_at(fs: &SimFs, dir: &Path, state: &LogState) -> bool {
    let path = dir.join(crate::segment::segment_file_name(state.newest_segment_lsn));
    let Ok(file) = fs.open(&path, false) else { return false };
    let Ok(map) = file.map() else { return false };
    let bytes = map.slice(0, map.len());
    let Some(last) = bytes.iter().rposition(|&b| b != 0) else { return false };
    let at = last / 512 * 512;
    decode_frame_anywhere(&bytes[at..], &state.log_id)
        .is_ok_and(|frame| frame.kind == crate::frame::FrameKind::Marker && frame.meta.lsn == state.durable_end_lsn)
}

fn sim_error(what: &str, error: std::io::Error) -> SimFailure {
    SimFailure { property: "simulator", detail: format!("{what}: {error}") }
}

/// One record as the model knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ModelRecord {
    pub(crate) lsn: u64,
    pub(crate) stream: Vec<u8>,
    pub(crate) seq: u64,
    pub(crate) kind: RecordKind,
    pub(crate) payload: Vec<u8>,
}

impl ModelRecord {
    /// Bytes of the record's body as a single operation (the limit's measure).
    fn body_bytes(&self) -> usize {
        OP_HEADER_BYTES + self.stream.len() + self.payload.len()
    }

    /// A short description for failure reports (payloads can be large).
    pub(crate) fn describe(&self) -> String {
        format!(
            "lsn {} {:?} stream {:?} seq {} payload {} bytes",
            self.lsn,
            self.kind,
            String::from_utf8_lossy(&self.stream[..self.stream.len().min(16)]),
            self.seq,
            self.payload.len()
        )
    }
}

/// What a stream looks like to a reader.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ModelStream {
    /// The sequence of `entries[0]`: entries before it were pruned.
    pub(crate) start: u64,
    /// Live entries: `(lsn, payload)`, sequence `start + i`.
    pub(crate) entries: Vec<(u64, Vec<u8>)>,
    /// Live snapshots, oldest first: `(seq, lsn, payload)`.
    pub(crate) snapshots: Vec<(u64, u64, Vec<u8>)>,
    /// LSN of the stream's first record since its last clear.
    pub(crate) since: u64,
}

impl ModelStream {
    pub(crate) fn next(&self) -> u64 {
        self.start + self.entries.len() as u64
    }

    /// The latest live snapshot, as a reader gets it.
    pub(crate) fn snapshot(&self) -> Option<(u64, Vec<u8>)> {
        self.snapshots.last().map(|(seq, _, payload)| (*seq, payload.clone()))
    }

    /// The live entries a stream read returns after the latest snapshot.
    pub(crate) fn entries_after_snapshot(&self) -> Vec<(u64, Vec<u8>)> {
        let from = self.snapshots.last().map_or(self.start, |(seq, _, _)| (seq + 1).max(self.start));
        self.entries.get((from - self.start) as usize..).unwrap_or(&[]).to_vec()
    }
}

/// The acknowledged log and the one operation whose outcome is unknown.
#[derive(Clone, Debug, Default)]
pub(crate) struct Model {
    records: Vec<ModelRecord>,
    in_doubt: Option<Vec<ModelRecord>>,
    /// A write failed: nothing more may be acknowledged until a reopen.
    poisoned: bool,
    /// The LSN the log resumed at when it was last opened (past a gap that
    /// salvage left, say); 0 before the first open.
    resume: u64,
    /// Log-wide retention dropped every record below this LSN.
    trimmed_before: u64,
    /// Whether the state file's record of log-wide retention is known.
    trim_in_doubt: TrimDoubt,
}

/// Why the model does not know how far log-wide retention went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum TrimDoubt {
    /// It knows.
    #[default]
    None,
    /// A compaction that may have trimmed failed or was cut by a crash:
    /// whether its trim took is known at the next open, and it only grows.
    Compaction,
    /// The state file was damaged or deleted: what it recorded is lost (the
    /// records retention dropped stay gone; the live views still decide).
    StateLost,
}

/// One operation of the workload, as given to the engine and to the model.
#[derive(Clone, Debug)]
enum Op {
    Entry(Expectation),
    Snapshot(u64),
    Clear(Expectation),
    /// Entries before the sequence; snapshots before the LSN.
    Prune(u64, u64),
}

impl Model {
    /// Applies one record to the streams, as the log's rules say.
    pub(crate) fn apply(streams: &mut BTreeMap<Vec<u8>, ModelStream>, record: &ModelRecord) {
        let fresh = |start| ModelStream { start, since: record.lsn, ..ModelStream::default() };
        match record.kind {
            RecordKind::Entry => {
                let stream = streams.entry(record.stream.clone()).or_insert_with(|| fresh(0));
                stream.entries.push((record.lsn, record.payload.clone()));
            }
            RecordKind::Snapshot => {
                let stream = streams.entry(record.stream.clone()).or_insert_with(|| fresh(0));
                stream.snapshots.push((record.seq, record.lsn, record.payload.clone()));
            }
            RecordKind::Tombstone => {
                streams.remove(&record.stream);
            }
            RecordKind::Prune => {
                let Some(stream) = streams.get_mut(&record.stream) else { return };
                let before = record.seq.min(stream.next());
                if before > stream.start {
                    stream.entries.drain(..(before - stream.start) as usize);
                    stream.start = before;
                }
                let snapshots_before = u64::from_le_bytes(record.payload[..8].try_into().expect("eight bytes"));
                stream.snapshots.retain(|(_, lsn, _)| *lsn >= snapshots_before);
            }
            RecordKind::Base => {
                streams.insert(record.stream.clone(), fresh(record.seq));
            }
        }
    }

    /// The streams after `records`, no log-wide retention applied.
    pub(crate) fn streams(records: &[ModelRecord]) -> BTreeMap<Vec<u8>, ModelStream> {
        Model::streams_trimmed(records, 0)
    }

    /// The live records of `records`, in LSN order (what `read_all`
    /// returns), no log-wide retention applied.
    pub(crate) fn live(records: &[ModelRecord]) -> Vec<ModelRecord> {
        Model::live_trimmed(records, 0)
    }

    /// The streams after `records`, with every record below `trimmed_before`
    /// dropped by log-wide retention: the oldest entries of a stream, so
    /// its start moves past them.
    pub(crate) fn streams_trimmed(records: &[ModelRecord], trimmed_before: u64) -> BTreeMap<Vec<u8>, ModelStream> {
        let mut streams: BTreeMap<Vec<u8>, ModelStream> = BTreeMap::new();
        for record in records {
            Model::apply(&mut streams, record);
        }
        for stream in streams.values_mut() {
            let trimmed = stream.entries.iter().take_while(|(lsn, _)| *lsn < trimmed_before).count();
            stream.entries.drain(..trimmed);
            stream.start += trimmed as u64;
            stream.snapshots.retain(|(_, lsn, _)| *lsn >= trimmed_before);
        }
        streams
    }

    /// The live records of `records`, in LSN order (what `read_all` returns),
    /// after log-wide retention below `trimmed_before`.
    pub(crate) fn live_trimmed(records: &[ModelRecord], trimmed_before: u64) -> Vec<ModelRecord> {
        let streams = Model::streams_trimmed(records, trimmed_before);
        let mut live: Vec<ModelRecord> = Vec::new();
        for (name, stream) in &streams {
            for (i, (lsn, payload)) in stream.entries.iter().enumerate() {
                let seq = stream.start + i as u64;
                live.push(ModelRecord {
                    lsn: *lsn,
                    stream: name.clone(),
                    seq,
                    kind: RecordKind::Entry,
                    payload: payload.clone(),
                });
            }
            for (seq, lsn, payload) in &stream.snapshots {
                live.push(ModelRecord {
                    lsn: *lsn,
                    stream: name.clone(),
                    seq: *seq,
                    kind: RecordKind::Snapshot,
                    payload: payload.clone(),
                });
            }
        }
        live.sort_by_key(|record| record.lsn);
        live
    }

    fn next_lsn(&self) -> u64 {
        self.records.last().map_or(1, |r| r.lsn + 1).max(self.resume)
    }

    /// The records `ops` would produce, or `None` if a guard fails.
    fn predict(&self, ops: &[(Vec<u8>, Op, Vec<u8>)]) -> Option<Vec<ModelRecord>> {
        let mut streams = Model::streams_trimmed(&self.records, self.trimmed_before);
        let mut out = Vec::new();
        for (lsn, (name, op, payload)) in (self.next_lsn()..).zip(ops) {
            let stream = streams.get(name);
            let next = stream.map_or(0, ModelStream::next);
            let floor = stream.and_then(|s| s.snapshots.last().map(|(seq, _, _)| *seq));
            let (kind, seq, payload) = match op {
                Op::Entry(expected) if expected.holds(StreamSeq(next)) => (RecordKind::Entry, next, payload.clone()),
                Op::Clear(expected) if expected.holds(StreamSeq(next)) => (RecordKind::Tombstone, next, Vec::new()),
                Op::Snapshot(seq) if *seq < next && floor.is_none_or(|s| s <= *seq) => {
                    (RecordKind::Snapshot, *seq, payload.clone())
                }
                Op::Prune(seq, snapshots_before) if *seq <= next => {
                    (RecordKind::Prune, *seq, snapshots_before.to_le_bytes().to_vec())
                }
                _ => return None,
            };
            let record = ModelRecord { lsn, stream: name.clone(), seq, kind, payload };
            Model::apply(&mut streams, &record);
            out.push(record);
        }
        Some(out)
    }
}

/// Segment sizes the options are drawn from.
const SEGMENT_SIZES: [u64; 3] = [4096, 8192, 16384];

/// The largest `record_bytes_max` any drawn options allow. Payloads are
/// drawn up to it, so that records written under one reopen's options are
/// over a later reopen's limit.
fn record_bytes_max_ever() -> usize {
    Options::record_bytes_max_for(SEGMENT_SIZES[SEGMENT_SIZES.len() - 1])
}

/// The options of the moment: drawn again at every open, each set valid on
/// its own.
struct Setup {
    dir: PathBuf,
    segment_bytes: u64,
    record_bytes_max: usize,
    /// Log-wide retention by size, for some opens: compactions then drop
    /// the oldest segments, live records and all.
    max_bytes: Option<u64>,
}

impl Setup {
    fn draw(rng: &mut SimRng, dir: PathBuf) -> Setup {
        let segment_bytes = *rng.pick(&SEGMENT_SIZES);
        let max = Options::record_bytes_max_for(segment_bytes);
        let record_bytes_max = match rng.below(5) {
            0 | 1 => max,
            2 => rng.range(600, max as u64) as usize,
            _ => *rng.pick(&[600, 1024, 2048, 4000]),
        };
        let max_bytes = rng.chance(1, 4).then(|| segment_bytes * rng.range(3, 8));
        Setup { dir, segment_bytes, record_bytes_max: record_bytes_max.min(max), max_bytes }
    }

    fn options(&self, fs: &SimFs, mode: RecoveryMode) -> Options {
        Options {
            segment_bytes: self.segment_bytes,
            record_bytes_max: self.record_bytes_max,
            recovery_mode: mode,
            segment_preparation: SegmentPreparation::Inline,
            file_system: Arc::new(fs.clone()),
            max_bytes: self.max_bytes,
            // Deterministic: the workload compacts when it chooses to.
            compaction: crate::options::CompactionOptions { background: false, ..Default::default() },
            // Images at a clean close; of the sealed segments when the workload asks.
            index_image: crate::options::IndexImageWrites::AtClose,
            ..Options::default()
        }
    }
}

/// Damage done to a cleanly closed log, and what it allows.
struct Damage {
    /// Index into [`DAMAGE_KINDS`].
    kind: usize,
    /// What was done, for reports.
    what: String,
    /// Every acknowledged record below this LSN lies before the damage:
    /// salvage must keep it.
    intact_below: u64,
    /// The damage destroys nothing the log needs: a strict open must read
    /// the exact model data.
    harmless: bool,
}

/// Runs one seed. Returns its figures, or the first oracle failure.
pub fn run_seed(seed: u64, steps: usize) -> Result<SimStats, SimFailure> {
    Simulation::new(SimRng::new(seed), SimRng::new(seed ^ CLOCK_SALT), steps).run()
}

/// Seeds the clock's own generator, apart from the workload's, so that
/// moving the clock draws nothing from the workload's sequence (the seeds
/// of the regression tests replay the runs that found their bugs).
const CLOCK_SALT: u64 = 0xc10c_c10c_c10c_c10c;

/// Runs a simulation whose every decision comes from `script` (a fuzzer's input).
pub fn run_script(script: &[u8]) -> Result<SimStats, SimFailure> {
    let steps = 4 + script.len() / 16;
    Simulation::new(SimRng::from_bytes(script), SimRng::new(CLOCK_SALT), steps.min(64)).run()
}

struct Simulation {
    rng: SimRng,
    /// Moves the machine's clock between steps.
    clock: SimRng,
    steps: usize,
    setup: Setup,
    fs: SimFs,
    log: Option<Log>,
    model: Model,
    /// Every record ever acknowledged (or served after a recovery), by LSN,
    /// including those later dropped by simulated damage: property 11.
    acknowledged: BTreeMap<u64, ModelRecord>,
    /// LSNs added to `acknowledged` since the last mark, so that a crash
    /// image that is not the one the run goes on with can be forgotten.
    journal: Vec<u64>,
    stats: SimStats,
    streams: Vec<Vec<u8>>,
    /// The simulator damaged a state slot in this run.
    state_slot_damaged: bool,
    /// The fault injected last fails every operation after it.
    fault_persistent: bool,
    /// Print every step (`ANNALS_SIM_TRACE=1`), to debug a failing seed.
    trace: bool,
    /// An index image the log had earlier, put back before some opens: a
    /// stale image must be refused, or still describe a prefix.
    older_index_image: Option<Vec<u8>>,
    /// The end (`durable_end_lsn`) of the clean close the next opens follow,
    /// when no fault and no crash hit that close: unless the simulator
    /// damages the image first, they must load the close's image and scan
    /// nothing before this LSN (property 16).
    clean_close_end: Option<Lsn>,
    /// A fault hit an index image's write (at a close, or of the sealed
    /// segments) since the disk last crashed: the image may be visible and
    /// not durable (the directory sync after its rename failed). A later
    /// close that finds it reaching far enough keeps it (a session that
    /// wrote nothing syncs nothing, segments-format.md 7), so after a power
    /// cut the open may find an older image, or none, and scan more.
    image_in_doubt: bool,
}

macro_rules! trace {
    ($sim:expr, $($arg:tt)*) => {
        if $sim.trace {
            eprintln!($($arg)*);
        }
    };
}

impl Simulation {
    /// The live records of `records`, after the log-wide retention the
    /// model knows of.
    fn live(&self, records: &[ModelRecord]) -> Vec<ModelRecord> {
        Model::live_trimmed(records, self.model.trimmed_before)
    }

    /// The streams after `records`, after the model's log-wide retention.
    fn streams_of(&self, records: &[ModelRecord]) -> BTreeMap<Vec<u8>, ModelStream> {
        Model::streams_trimmed(records, self.model.trimmed_before)
    }

    fn new(mut rng: SimRng, clock: SimRng, steps: usize) -> Simulation {
        let setup = Setup::draw(&mut rng, PathBuf::from("/sim/log"));
        let streams = vec![b"a".to_vec(), b"b".to_vec(), b"workflow-7".to_vec(), vec![b'L'; 1024]];
        Simulation {
            rng,
            clock,
            steps,
            setup,
            fs: SimFs::new(),
            log: None,
            model: Model::default(),
            acknowledged: BTreeMap::new(),
            journal: Vec::new(),
            fault_persistent: false,
            state_slot_damaged: false,
            stats: SimStats { seeds: 1, ..SimStats::default() },
            streams,
            trace: std::env::var_os("ANNALS_SIM_TRACE").is_some(),
            older_index_image: None,
            clean_close_end: None,
            image_in_doubt: false,
        }
    }

    fn run(mut self) -> Result<SimStats, SimFailure> {
        self.open_checked(&self.fs.clone(), false)?;
        for _ in 0..self.steps {
            self.move_clock();
            match self.rng.below(100) {
                0..=40 => self.single_append()?,
                41..=50 => self.batch()?,
                51..=57 => self.snapshot()?,
                58..=59 => self.clear()?,
                60..=61 => self.prune()?,
                62..=63 => self.check_reads()?,
                64..=66 => self.compact()?,
                67..=70 => self.clean_reopen()?,
                71..=82 => self.crash()?,
                83..=86 => self.crash_after_clean_close()?,
                87..=91 => self.damage_after_clean_close()?,
                _ => self.fault()?,
            }
        }
        self.crash()?;
        self.count_faults(&self.fs.clone());
        Ok(self.stats)
    }

    /// Between steps the clock mostly stands still (frames of different
    /// histories in the same millisecond: their bytes can then match),
    /// sometimes moves on, and sometimes is set back (the log's own clock
    /// must not go back with it).
    fn move_clock(&mut self) {
        let delta = match self.clock.below(10) {
            0..=5 => 0,
            6..=8 => self.clock.range(1, 2_000) as i64,
            _ => -(self.clock.range(1, 5_000) as i64),
        };
        if delta != 0 {
            self.fs.move_clock(delta);
            trace!(self, "clock moved by {delta} ms");
        }
    }

    /// Adds the faults a disk injected to the figures, when the run leaves it.
    fn count_faults(&mut self, fs: &SimFs) {
        let counts = fs.counts();
        self.stats.faults_eio += counts.eio;
        self.stats.faults_enospc += counts.enospc;
        self.stats.faults_fsync += counts.failed_fsyncs;
    }

    /// A payload for one operation on a stream of `stream_len` bytes: small
    /// ones mostly, then sizes at sector and segment boundaries, exactly at
    /// and just over the limit of the moment, and up to the largest limit
    /// any options allow (over a later reopen's limit, or over this one's).
    fn payload(&mut self, stream_len: usize) -> Vec<u8> {
        let max = self.setup.record_bytes_max;
        let segment = self.setup.segment_bytes as usize;
        let exact = max.saturating_sub(OP_HEADER_BYTES + stream_len);
        let ever = record_bytes_max_ever().saturating_sub(OP_HEADER_BYTES + stream_len);
        let sizes = [
            0,
            1,
            511,
            512,
            513,
            1000,
            2000,
            4095,
            4096,
            4097,
            exact,
            exact + 1,
            max.saturating_sub(60),
            ever,
            ever / 2,
            segment - 1,
            segment + 1,
        ];
        let len = if self.rng.chance(1, 3) { *self.rng.pick(&sizes) } else { self.rng.below(300) as usize };
        self.rng.bytes(len)
    }

    fn stream(&mut self) -> Vec<u8> {
        let index = if self.rng.chance(1, 12) { 3 } else { self.rng.below(3) as usize };
        self.streams[index].clone()
    }

    fn expectation(&mut self, stream: &[u8]) -> Expectation {
        let next = self.streams_of(&self.model.records).get(stream).map_or(0, ModelStream::next);
        match self.rng.below(6) {
            0 => Expectation::Any,
            1 => Expectation::NoStream,
            2 => Expectation::Exact(StreamSeq(next + 1 + self.rng.below(2))),
            _ => Expectation::Exact(StreamSeq(next)),
        }
    }

    fn single_append(&mut self) -> Result<(), SimFailure> {
        let stream = self.stream();
        let expected = self.expectation(&stream);
        let payload = self.payload(stream.len());
        self.submit(vec![(stream, Op::Entry(expected), payload)])
    }

    /// An append large enough that a few of them fill a segment: rollovers
    /// come quickly.
    fn large_append(&mut self) -> Result<(), SimFailure> {
        let stream = self.stream();
        let expected = self.expectation(&stream);
        let limit = self.setup.record_bytes_max.saturating_sub(OP_HEADER_BYTES + stream.len());
        let target = (self.setup.segment_bytes as usize / 2).min(limit);
        let len = self.rng.range(target as u64 / 2, target as u64) as usize;
        let payload = self.rng.bytes(len);
        self.submit(vec![(stream, Op::Entry(expected), payload)])
    }

    fn batch(&mut self) -> Result<(), SimFailure> {
        let count = self.rng.range(2, 4);
        let mut ops = Vec::new();
        for _ in 0..count {
            let stream = self.stream();
            let op = match self.rng.below(6) {
                0 => Op::Clear(Expectation::Any),
                5 => self.prune_op(&stream),
                1 => Op::Snapshot(self.rng.below(3)),
                _ => Op::Entry(self.expectation(&stream)),
            };
            let len = self.rng.below(200) as usize;
            let payload = if matches!(op, Op::Clear(_) | Op::Prune(..)) { Vec::new() } else { self.rng.bytes(len) };
            ops.push((stream, op, payload));
        }
        self.submit(ops)
    }

    fn snapshot(&mut self) -> Result<(), SimFailure> {
        let stream = self.stream();
        let next = self.streams_of(&self.model.records).get(&stream).map_or(0, ModelStream::next);
        let seq = if self.rng.chance(1, 5) { next } else { next.saturating_sub(1 + self.rng.below(2)) };
        let payload = self.payload(stream.len());
        self.submit(vec![(stream, Op::Snapshot(seq), payload)])
    }

    /// A prune of a stream: mostly within range, sometimes past its next
    /// sequence (refused); snapshots kept, all dropped, or dropped before
    /// one of them.
    fn prune_op(&mut self, stream: &[u8]) -> Op {
        let streams = self.streams_of(&self.model.records);
        let state = streams.get(stream).cloned().unwrap_or_default();
        let before = if self.rng.chance(1, 8) { state.next() + 1 } else { self.rng.range(state.start, state.next()) };
        let snapshots_before = match self.rng.below(4) {
            0 => 0,
            1 => self.model.next_lsn(),
            _ => state.snapshots.get(self.rng.below(state.snapshots.len() as u64 + 1) as usize).map_or(0, |s| s.1),
        };
        Op::Prune(before, snapshots_before)
    }

    fn prune(&mut self) -> Result<(), SimFailure> {
        let stream = self.stream();
        let op = self.prune_op(&stream);
        self.submit(vec![(stream, op, Vec::new())])
    }

    fn clear(&mut self) -> Result<(), SimFailure> {
        let stream = self.stream();
        let expected = self.expectation(&stream);
        self.submit(vec![(stream, Op::Clear(expected), Vec::new())])
    }

    /// Property 11: `record` (acknowledged now, or served after a recovery)
    /// either is the record acknowledged at its LSN before, or has an LSN
    /// never acknowledged.
    fn check_lsn(&mut self, record: &ModelRecord, what: &str) -> Result<(), SimFailure> {
        match self.acknowledged.get(&record.lsn) {
            Some(known) if known != record => {
                self.stats.lsns_reused += 1;
                fail(
                    "11 no lsn reuse",
                    format!(
                        "{what} at an lsn acknowledged before: had {}, now {}",
                        known.describe(),
                        record.describe()
                    ),
                )
            }
            _ => Ok(()),
        }
    }

    /// Remembers `record` as acknowledged, for property 11.
    fn remember(&mut self, record: &ModelRecord) {
        if let std::collections::btree_map::Entry::Vacant(entry) = self.acknowledged.entry(record.lsn) {
            entry.insert(record.clone());
            self.journal.push(record.lsn);
        }
    }

    /// Forgets what was remembered since the journal was cleared: the crash
    /// image that showed it is not the one the run goes on with.
    fn forget_journal(&mut self) {
        for lsn in self.journal.drain(..) {
            self.acknowledged.remove(&lsn);
        }
    }

    /// Property 11 after an open: the log goes on past every LSN ever
    /// acknowledged, so none of them can be handed out again.
    fn check_resume(&mut self, log: &Log, what: &str) -> Result<u64, SimFailure> {
        let resume = next_lsn_of(log)?;
        if let Some((&highest, record)) = self.acknowledged.last_key_value()
            && resume <= highest
        {
            self.stats.lsns_reused += 1;
            return fail(
                "11 no lsn reuse",
                format!(
                    "{what}: the log resumes at lsn {resume}, but lsn {highest} was acknowledged ({})",
                    record.describe()
                ),
            );
        }
        Ok(resume)
    }

    /// Gives operations to the engine and checks its answer against the model.
    fn submit(&mut self, ops: Vec<(Vec<u8>, Op, Vec<u8>)>) -> Result<(), SimFailure> {
        let Some(log) = self.log.clone() else { return Ok(()) };
        self.stats.operations += 1;
        let mut batch = Batch::new();
        for (stream, op, payload) in &ops {
            batch = match op {
                Op::Entry(expected) => batch.append(stream, *expected, payload.clone()),
                Op::Snapshot(seq) => batch.snapshot(stream, StreamSeq(*seq), payload.clone()),
                Op::Clear(expected) => batch.clear(stream, *expected),
                Op::Prune(seq, snapshots_before) => {
                    batch.prune(stream, StreamSeq(*seq), PruneSnapshots::Before(Lsn(*snapshots_before)))
                }
            };
        }
        let per_op = if ops.len() > 1 { BATCH_OP_KIND_BYTES } else { 0 };
        let body: usize = ops.iter().map(|(s, _, p)| per_op + OP_HEADER_BYTES + s.len() + p.len()).sum();
        let limit = self.setup.record_bytes_max;
        let predicted = self.model.predict(&ops);
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| log.commit(batch).wait())).map_err(|panic| {
                SimFailure { property: "9 fail-stop", detail: format!("an append panicked: {}", panic_message(&panic)) }
            })?;
        trace!(
            self,
            "submit {:?} -> {:?}",
            ops.iter().map(|(s, o, p)| (s.len(), o, p.len())).collect::<Vec<_>>(),
            result.as_ref().map(|a| a.iter().map(|a| a.lsn.0).collect::<Vec<_>>())
        );
        if body > limit && !matches!(result, Err(Error::TooLarge { .. })) {
            return fail(
                "6 guards",
                format!(
                    "a record of {body} bytes, over the limit of {limit}, was not refused as too large: {result:?}"
                ),
            );
        }
        match result {
            Ok(appended) => {
                if let Some(records) = &predicted {
                    for (ack, record) in appended.iter().zip(records) {
                        let got = ModelRecord { lsn: ack.lsn.0, seq: ack.seq.0, ..record.clone() };
                        self.check_lsn(&got, "an append was acknowledged")?;
                    }
                }
                if self.model.poisoned {
                    return fail("9 fail-stop", "an append was acknowledged after a failure, before a reopen");
                }
                let Some(records) = predicted else {
                    return fail("6 guards", format!("acknowledged although a guard fails: {ops:?}"));
                };
                let got: Vec<(u64, u64)> = appended.iter().map(|a| (a.lsn.0, a.seq.0)).collect();
                let want: Vec<(u64, u64)> = records.iter().map(|r| (r.lsn, r.seq)).collect();
                if got != want {
                    return fail("6 guards", format!("acknowledged at {got:?}, the model expects {want:?}"));
                }
                for record in &records {
                    self.remember(record);
                }
                self.stats.prunes += records.iter().filter(|r| r.kind == RecordKind::Prune).count() as u64;
                self.model.records.extend(records);
            }
            Err(Error::Conflict { .. } | Error::SnapshotOutOfRange { .. } | Error::PruneOutOfRange { .. }) => {
                if predicted.is_some() && !self.model.poisoned {
                    return fail("6 guards", format!("rejected although every guard holds: {ops:?}"));
                }
            }
            Err(Error::TooLarge { .. }) => {
                if body <= limit {
                    return fail(
                        "6 guards",
                        format!("a record of {body} bytes was refused as too large (limit {limit})"),
                    );
                }
                self.stats.appends_too_large += 1;
            }
            Err(Error::Poisoned { .. }) => {
                if !self.model.poisoned {
                    self.model.poisoned = true;
                    self.model.in_doubt = predicted;
                }
            }
            // A segment the append needed could not be prepared or published
            // (a fault on the spare): the append was refused before anything
            // was written, and the log goes on.
            Err(error @ (Error::Io { .. } | Error::DiskFull { .. })) => {
                if let Err(status) = log.check_open() {
                    return fail(
                        "12 resource faults",
                        format!("an append was refused with \"{error}\", and the log is no longer open: {status}"),
                    );
                }
                self.stats.appends_refused_by_faults += 1;
                if !self.fault_persistent && !self.fs.has_crashed() {
                    // A one-off fault: the half-made spare was removed.
                    let names = self.fs.list(&self.setup.dir).map_err(|e| sim_error("list", e))?;
                    if let Some(spare) = names.iter().find(|n| n.starts_with(SPARE_PREFIX) && n.ends_with(SPARE_SUFFIX))
                    {
                        return fail(
                            "12 resource faults",
                            format!("an append refused with \"{error}\" left the spare {spare} behind"),
                        );
                    }
                }
                if !self.model.poisoned {
                    let records = read_everything(&log)?;
                    if records != self.live(&self.model.records) {
                        return fail(
                            "12 resource faults",
                            format!(
                                "an append refused with \"{error}\" left a trace: {} records readable, {} acknowledged",
                                records.len(),
                                self.model.records.len()
                            ),
                        );
                    }
                }
            }
            Err(other) => return fail("9 fail-stop", format!("unexpected error from an append: {other}")),
        }
        Ok(())
    }

    /// Compacts the log on demand, then checks that it reads as the model
    /// says. A fault before the commit leaves the log as it was; one at the
    /// commit poisons it.
    fn compact(&mut self) -> Result<(), SimFailure> {
        let Some(log) = self.log.clone() else { return Ok(()) };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| log.compact())).map_err(|panic| {
            SimFailure { property: "9 fail-stop", detail: format!("a compaction panicked: {}", panic_message(&panic)) }
        })?;
        trace!(self, "compact -> {result:?}");
        if result.is_err() && self.setup.max_bytes.is_some() {
            // It may have dropped the oldest segments before it failed.
            self.model.trim_in_doubt = TrimDoubt::Compaction;
        }
        // Inputs whose removal failed after the commit: no longer the log,
        // removed by the next open (property 14), not counted by property 15.
        let leftovers = result.as_ref().map(|report| report.leftovers.clone()).unwrap_or_default();
        // A failed compaction may leave its outputs behind when removing
        // them fails too (a crash point): the next open removes them
        // (property 14); the space bound is for one that committed (soak
        // seed 144958).
        let committed = result.is_ok();
        match result {
            Ok(report) => {
                if report.generation > 0 {
                    self.stats.compactions += 1;
                    self.stats.compaction_reclaimed_bytes += report.reclaimed_bytes;
                }
                if report.trimmed_before.0 > self.model.trimmed_before {
                    self.stats.trims += 1;
                    self.model.trimmed_before = report.trimmed_before.0;
                }
            }
            Err(Error::Poisoned { .. }) => {
                self.model.poisoned = true;
                return Ok(());
            }
            Err(Error::Io { .. } | Error::DiskFull { .. }) => self.stats.compactions_failed += 1,
            Err(Error::Closed) => return Ok(()),
            Err(other) => return fail("13 compaction", format!("compaction failed on an undamaged log: {other}")),
        }
        if self.model.poisoned {
            return Ok(());
        }
        let records = self.model.records.clone();
        let live = self.live(&records);
        if read_everything(&log)? != live {
            return fail("13 compaction", "after a compaction the log reads differently from the model");
        }
        if committed {
            self.check_space(&live, &leftovers)?;
        }
        self.check_log(&log, &records)
    }

    /// Property 15: right after a compaction the log's files take at most
    /// twice its live bytes, plus a few segments (the active one, a spare,
    /// the padding of compacted segments), the stream bases, the state file
    /// and the persisted index image (a copy of the index: a position per
    /// live entry, far smaller than the entries; counted at its size, not
    /// against the live bytes: soak seed 120696). Inputs the compaction
    /// reported as leftovers (their removal failed after its commit) are not
    /// the log's: the next open removes them, which property 14 checks
    /// (soak seed 125599).
    fn check_space(&mut self, live: &[ModelRecord], leftovers: &[PathBuf]) -> Result<(), SimFailure> {
        let live_bytes: u64 = live.iter().map(|r| crate::index::op_bytes(r.stream.len(), r.payload.len())).sum();
        let largest_segment = *SEGMENT_SIZES.iter().max().expect("segment sizes");
        let bases = self.streams.iter().map(|s| crate::index::op_bytes(s.len(), 0)).sum::<u64>();
        let allowed = 2 * live_bytes + 4 * largest_segment + bases + STATE_FILE_BYTES as u64;
        let names = self.fs.list(&self.setup.dir).map_err(|e| sim_error("list", e))?;
        let mut disk = 0;
        let mut image = 0;
        for name in names {
            if leftovers.iter().any(|path| path.file_name().is_some_and(|leftover| leftover == name.as_str())) {
                continue;
            }
            let file = self.fs.open(&self.setup.dir.join(&name), false).map_err(|e| sim_error("open", e))?;
            let len = file.len().map_err(|e| sim_error("stat", e))?;
            disk += len;
            if name == crate::image::IMAGE_FILE_NAME {
                image = len;
            }
        }
        let allowed = allowed + image;
        if disk > allowed {
            return fail(
                "15 space",
                format!("after a compaction the log takes {disk} bytes, {live_bytes} of them live (allowed {allowed})"),
            );
        }
        Ok(())
    }

    /// Property 14: no file a compaction left (its inputs after its
    /// commit, its outputs before it, one being written) survives a
    /// read-write open.
    fn check_no_leftovers(&mut self, fs: &SimFs) -> Result<(), SimFailure> {
        let dir = &self.setup.dir;
        let names = fs.list(dir).map_err(|e| sim_error("list", e))?;
        let state = match crate::state::read_state(fs, dir) {
            Ok(crate::state::StateRead::Found { state, .. }) => state,
            _ => return Ok(()),
        };
        for name in &names {
            let leftover = name.ends_with(crate::segment::COMPACTING_SUFFIX)
                || name == crate::image::IMAGE_TEMP_FILE_NAME
                || crate::segment::parse_compacted_file_name(name)
                    .is_some_and(|(_, generation)| generation != state.compaction_generation)
                || (state.compaction_generation > 0
                    && parse_segment_file_name(name).is_some_and(|lsn| lsn < state.compacted_end_lsn));
            if leftover {
                return fail("14 no leftovers", format!("{name} survived an open (state {state:?})"));
            }
        }
        Ok(())
    }

    /// Takes the log-wide retention the log's state file records: the
    /// model's own, or, after a compaction whose outcome is unknown, at
    /// least that and at most the newest segment's start.
    fn settle_trim(&mut self, fs: &SimFs) -> Result<(), SimFailure> {
        let recorded = match crate::state::read_state(fs, &self.setup.dir) {
            Ok(crate::state::StateRead::Found { state, .. }) => state.trimmed_lsn.0,
            _ => return Ok(()),
        };
        let doubt = std::mem::take(&mut self.model.trim_in_doubt);
        if doubt != TrimDoubt::None {
            let backwards = doubt == TrimDoubt::Compaction && recorded < self.model.trimmed_before;
            if backwards || recorded > self.model.next_lsn() {
                return fail(
                    "13 compaction",
                    format!(
                        "the log is trimmed before lsn {recorded}, the model at {} ({doubt:?})",
                        self.model.trimmed_before
                    ),
                );
            }
            self.model.trimmed_before = recorded;
        } else if recorded != self.model.trimmed_before {
            return fail(
                "13 compaction",
                format!("the log is trimmed before lsn {recorded}, the model at {}", self.model.trimmed_before),
            );
        }
        Ok(())
    }

    /// Reads back everything without a crash and compares with the model.
    fn check_reads(&mut self) -> Result<(), SimFailure> {
        let Some(log) = self.log.clone() else { return Ok(()) };
        if self.model.poisoned {
            return Ok(());
        }
        if self.rng.chance(1, 2) {
            self.write_index_image(&log)?;
        }
        let records = self.model.records.clone();
        self.check_log(&log, &records)
    }

    /// Writes an index image of the sealed segments, as the background
    /// image writer does after a rollover. A failure (a fault, a crash) is
    /// not the log's: it must not poison it.
    fn write_index_image(&mut self, log: &Log) -> Result<(), SimFailure> {
        let before = faults_injected(&self.fs);
        let written =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| log.write_index_image())).map_err(|panic| {
                SimFailure {
                    property: "9 fail-stop",
                    detail: format!("writing an index image panicked: {}", panic_message(&panic)),
                }
            })?;
        trace!(self, "index image of the sealed segments -> {written:?}");
        if let Ok(Some(_)) = written {
            self.stats.index_images_written += 1;
        }
        if faults_injected(&self.fs) != before {
            self.image_in_doubt = true;
        } else if matches!(written, Ok(Some(_))) && !self.fs.has_crashed() {
            self.image_in_doubt = false;
        }
        if written.is_err() && !self.fs.has_crashed() && !self.model.poisoned && log.check_open().is_err() {
            return fail("9 fail-stop", "a failed index image write changed whether the log is poisoned");
        }
        Ok(())
    }

    /// Damages the index image on `fs` before an open, sometimes: a flipped
    /// bit, a truncation, a deletion, or an older image put back. The open
    /// must fall back to a full scan or load what is still a valid prefix;
    /// the oracle compares its index with a full scan either way.
    /// Returns whether it did.
    fn damage_index_image(&mut self, fs: &SimFs) -> Result<bool, SimFailure> {
        let path = self.setup.dir.join(crate::image::IMAGE_FILE_NAME);
        let current = self.image_bytes(fs);
        if let Some(bytes) = &current
            && self.rng.chance(1, 3)
        {
            self.older_index_image = Some(bytes.clone());
        }
        if !self.rng.chance(1, 4) {
            return Ok(false);
        }
        let replace = |bytes: &[u8]| -> Result<(), SimFailure> {
            let _ = fs.remove(&path);
            let file = fs.create(&path).map_err(|e| sim_error("create", e))?;
            file.write_at(bytes, 0).map_err(|e| sim_error("write", e))?;
            file.sync_data().map_err(|e| sim_error("fdatasync", e))?;
            fs.sync_dir(&self.setup.dir).map_err(|e| sim_error("fsync directory", e))
        };
        let what = match (self.rng.below(4), &current) {
            (0, Some(bytes)) if !bytes.is_empty() => {
                let mut bytes = bytes.clone();
                let at = self.rng.below(bytes.len() as u64) as usize;
                bytes[at] ^= 1 << self.rng.below(8);
                replace(&bytes)?;
                format!("bit flipped at byte {at}")
            }
            (1, Some(bytes)) => {
                let len = self.rng.below(bytes.len() as u64) as usize;
                replace(&bytes[..len])?;
                format!("truncated to {len} bytes")
            }
            (2, Some(_)) => {
                fs.remove(&path).map_err(|e| sim_error("remove", e))?;
                fs.sync_dir(&self.setup.dir).map_err(|e| sim_error("fsync directory", e))?;
                "deleted".to_owned()
            }
            _ => match self.older_index_image.clone() {
                Some(older) => {
                    replace(&older)?;
                    "replaced with an older one".to_owned()
                }
                None => return Ok(false),
            },
        };
        trace!(self, "index image {what}");
        self.stats.index_images_damaged += 1;
        Ok(true)
    }

    /// Property 16: the index an open built from the image and the frames
    /// after it equals the index of a full scan of the same files.
    fn check_index_against_scan(&mut self, log: &Log, fs: &SimFs) -> Result<(), SimFailure> {
        match &log.recovery_report().index_image {
            crate::image::ImageUse::Loaded { .. } => self.stats.index_images_loaded += 1,
            crate::image::ImageUse::Rejected { .. } => self.stats.index_images_rejected += 1,
            // The open scanned every frame itself (the oracle's other
            // properties check what it built).
            crate::image::ImageUse::None => return Ok(()),
        }
        let scanned = crate::recovery::recover_with(
            fs,
            &self.setup.dir,
            crate::recovery::Access::ReadOnly,
            RecoveryMode::Strict,
            crate::recovery::ImagePolicy::Ignore,
        )
        .map_err(|e| SimFailure { property: "16 index image", detail: format!("a full scan failed: {e}") })?;
        let differences = log.index_differences(&scanned.index);
        if !differences.is_empty() {
            return fail(
                "16 index image",
                format!(
                    "the index after an open ({:?}) differs from a full scan: {}",
                    log.recovery_report().index_image,
                    differences.join("; ")
                ),
            );
        }
        Ok(())
    }

    fn clean_reopen(&mut self) -> Result<(), SimFailure> {
        if let Some(log) = self.log.take() {
            let (closed, end) = self.close_watched(&log)?;
            trace!(self, "clean reopen (close: {closed:?}, nothing hit it: {end:?})");
            self.clean_close_end = end;
        }
        self.fs.clear_fault();
        let fs = self.fs.clone();
        let opened = self.open_checked(&fs, false);
        self.clean_close_end = None;
        opened
    }

    /// Closes `log` and, when the close succeeded with no fault injected
    /// into it and no crash, returns the end its clean-close pair recorded:
    /// the close wrote an image reaching it (or kept one that did).
    fn close_watched(&mut self, log: &Log) -> Result<(crate::error::Result<()>, Option<Lsn>), SimFailure> {
        let image_before = self.image_bytes(&self.fs);
        let before = faults_injected(&self.fs);
        let closed = close(log)?;
        if faults_injected(&self.fs) != before {
            self.image_in_doubt = true;
        }
        if closed.is_err() || faults_injected(&self.fs) != before || self.fs.has_crashed() {
            return Ok((closed, None));
        }
        if self.image_bytes(&self.fs) != image_before {
            // Written, synced, renamed and the directory synced: durable.
            self.image_in_doubt = false;
        }
        let end = match crate::state::read_state(&self.fs, &self.setup.dir) {
            Ok(crate::state::StateRead::Found { state, .. }) if state.clean_close => state.durable_end_lsn,
            // A persistent fault that the close never met fails this read.
            Err(_) => return Ok((closed, None)),
            other => {
                return fail("16 index image", format!("after a clean close the state file records none: {other:?}"));
            }
        };
        Ok((closed, Some(end)))
    }

    /// The bytes of the index image on `fs`, if there is one.
    fn image_bytes(&self, fs: &SimFs) -> Option<Vec<u8>> {
        let file = fs.open(&self.setup.dir.join(crate::image::IMAGE_FILE_NAME), false).ok()?;
        let mut bytes = vec![0u8; file.len().ok()? as usize];
        file.read_at(&mut bytes, 0).ok()?;
        Some(bytes)
    }

    /// Property 16 after a clean close that nothing hit (`clean_close_end`)
    /// and whose image the simulator did not touch before this open: the
    /// open loaded the close's image, which reaches the close's end, so it
    /// scanned nothing the image covers and nothing else was left to scan.
    fn check_image_after_clean_close(&mut self, log: &Log, image_damaged: bool) -> Result<(), SimFailure> {
        let Some(end) = self.clean_close_end.filter(|_| !image_damaged) else { return Ok(()) };
        match &log.recovery_report().index_image {
            crate::image::ImageUse::Loaded { covered_lsn, .. } if *covered_lsn == end => {
                self.stats.index_images_loaded_after_clean_close += 1;
                Ok(())
            }
            other => fail(
                "16 index image",
                format!(
                    "the open after a clean close ending at lsn {end} (nothing hit it) did not load its image: {other:?}"
                ),
            ),
        }
    }

    /// Injects ENOSPC or EIO after a random number of operations, reaching
    /// every step of a rollover: the seal's sync, the spare (create, zeros,
    /// sync, directory sync), its publication (header, sync, rename,
    /// directory sync), the state file (write, sync), then the append's own
    /// write and sync, and the clean close after it (sync, marker, both
    /// state slots). Large appends make rollovers come every append or two.
    fn fault(&mut self) -> Result<(), SimFailure> {
        let kind = if self.rng.chance(1, 2) { FaultKind::Enospc } else { FaultKind::Eio };
        let persistent = self.rng.chance(1, 3);
        let after = self.rng.range(1, 20);
        let large = self.rng.chance(1, 2);
        trace!(self, "fault {kind:?} after {after} ops, persistent {persistent}, large appends {large}");
        self.fs.inject_fault_after(after, kind, persistent);
        self.fault_persistent = persistent;
        for _ in 0..self.rng.range(1, 5) {
            if large { self.large_append()? } else { self.single_append()? }
        }
        if self.rng.chance(1, 3) {
            // Faults on both sides of a compaction's commit.
            self.compact()?;
        }
        // Reopen on the same disk: the page cache survived, the fault is over.
        self.clean_reopen()
    }

    /// Freezes the disk at a random point of the next few operations (some
    /// appends, or a clean close), then recovers several crash images of it
    /// and checks each.
    fn crash(&mut self) -> Result<(), SimFailure> {
        self.fs.crash_after(self.rng.range(1, 12));
        if self.rng.chance(1, 8) {
            // A crash inside an index image's write: the temporary created,
            // written, synced, renamed, the directory synced.
            if let Some(log) = self.log.clone() {
                self.write_index_image(&log)?;
            }
        } else if self.rng.chance(1, 6) {
            // A crash inside a clean close: the marker, the state file's
            // slots, the index image.
            if let Some(log) = self.log.clone() {
                let _ = close(&log)?;
            }
        } else if self.rng.chance(1, 4) {
            // A crash inside a compaction: its reads, its sync, each output
            // written, synced and renamed, the directory, the commit's two
            // slots, each unlink.
            self.fs.crash_after(self.rng.range(1, 30));
            self.prune()?;
            if !self.fs.has_crashed() {
                self.compact()?;
            }
        } else {
            for _ in 0..self.rng.range(1, 4) {
                if self.fs.has_crashed() {
                    break;
                }
                self.single_append()?;
            }
        }
        self.fs.crash_now();
        trace!(self, "crash after {} ops", self.fs.counts().ops);
        self.stats.crash_points += 1;
        let (in_slot, after_slot) = not_clean_slot_crash(&self.fs, &self.setup.dir);
        self.stats.crashes_in_not_clean_slot += u64::from(in_slot);
        self.stats.crashes_after_not_clean_slot += u64::from(after_slot);
        if let Some(log) = self.log.take() {
            drop(log); // the process is gone; its writes fail from here on
        }
        let crashed = self.fs.clone();
        self.count_faults(&crashed);
        self.recover_images(&crashed)
    }

    /// Closes the log cleanly, then recovers crash images of the closed disk.
    fn crash_after_clean_close(&mut self) -> Result<(), SimFailure> {
        let Some(log) = self.log.take() else { return Ok(()) };
        let (closed, end) = self.close_watched(&log)?;
        drop(log);
        trace!(self, "crash after a clean close ({closed:?}, nothing hit it: {end:?})");
        self.stats.crash_points += 1;
        let fs = self.fs.clone();
        if closed.is_ok() {
            self.stats.crashes_after_clean_close += 1;
            self.check_clean(&fs)?;
        }
        self.count_faults(&fs);
        // Everything the close wrote is durable: every crash image holds
        // the close's image, unless it kept one a fault left in doubt.
        if end.is_some() && self.image_in_doubt {
            trace!(self, "the close kept an index image a fault hit earlier");
            self.stats.index_images_in_doubt_at_crash += 1;
        }
        self.clean_close_end = end.filter(|_| !self.image_in_doubt);
        let recovered = self.recover_images(&fs);
        self.clean_close_end = None;
        recovered
    }

    /// A cleanly closed log inspects as clean: no torn tail, no problem.
    fn check_clean(&mut self, fs: &SimFs) -> Result<(), SimFailure> {
        let options = self.setup.options(fs, RecoveryMode::Strict);
        let dir = self.setup.dir.clone();
        let reader =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| LogReader::open_with(&dir, &options))) {
                Ok(Ok(reader)) => reader,
                Ok(Err(error)) => {
                    return fail("8 robust open", format!("on a cleanly closed log, LogReader failed: {error}"));
                }
                Err(_) => return fail("8 robust open", "on a cleanly closed log, LogReader panicked"),
            };
        // A state slot the simulator damaged earlier may still be damaged
        // (nothing has to rewrite it while the other slot holds): reporting
        // it is no false alarm.
        let state_file = dir.join(STATE_FILE_NAME);
        let problems: Vec<_> =
            reader.problems().iter().filter(|p| !(self.state_slot_damaged && p.file == state_file)).collect();
        if reader.report().torn_tail.is_some() || !problems.is_empty() {
            self.stats.false_alarms += 1;
            return fail(
                "10 no false alarms",
                format!(
                    "LogReader finds a cleanly closed log damaged: torn tail {:?}, problems {:?}",
                    reader.report().torn_tail,
                    problems
                ),
            );
        }
        Ok(())
    }

    /// Recovers several crash images of `crashed` and checks each against
    /// the same model. The last one recovered is the one the workload goes
    /// on with (`open_checked` records it, or the image of its stability check).
    fn recover_images(&mut self, crashed: &SimFs) -> Result<(), SimFailure> {
        let images = if self.rng.scripted() { 2 } else { 2 + self.rng.below(6) as usize };
        for i in 0..images {
            let mode = *self.rng.pick(&CrashMode::ALL);
            let image = crashed.crash_image(mode, &mut self.rng);
            trace!(self, "image {i}: {}", mode.name());
            self.stats.images_by_mode[CrashMode::ALL.iter().position(|m| *m == mode).expect("a mode")] += 1;
            let model = self.model.clone();
            self.journal.clear();
            self.open_checked(&image, true)?;
            if i + 1 < images {
                // Check the next image against the same pre-crash model.
                if let Some(log) = self.log.take() {
                    drop(log);
                }
                self.model = model;
                self.forget_journal();
            }
        }
        Ok(())
    }

    /// Closes the log cleanly, damages it as an operator, a backup tool or a
    /// bad sector would (the last records and the close marker, a segment
    /// file, the state file), then checks that a strict open refuses it (or
    /// reads it exactly, if the damage hit nothing acknowledged), that
    /// `LogReader` reports it, and that salvage keeps a prefix of the
    /// acknowledged records with everything before the damage, and resumes
    /// past every LSN that was acknowledged. The run goes on from what
    /// salvage kept.
    fn damage_after_clean_close(&mut self) -> Result<(), SimFailure> {
        let Some(log) = self.log.take() else { return Ok(()) };
        let closed = close(&log)?;
        drop(log);
        let fs = self.fs.clone();
        self.count_faults(&fs);
        if closed.is_err() || self.model.poisoned {
            // Not a clean close: there is no end to hold the damage to. Go on
            // as after a crash.
            trace!(self, "damage: the close failed ({closed:?}), recovering as after a crash");
            self.stats.crash_points += 1;
            return self.recover_images(&fs);
        }
        // Everything is durable after a clean close: every crash image is the same.
        let mode = *self.rng.pick(&CrashMode::ALL);
        let damaged = fs.crash_image(mode, &mut self.rng);
        let damage = self.inflict(&damaged)?;
        trace!(self, "damage: {}", damage.what);
        self.stats.damage_by_kind[damage.kind] += 1;
        if damage.kind >= 2 {
            // What the state file recorded of log-wide retention may be lost
            // with it; the records it dropped stay gone.
            self.model.trim_in_doubt = TrimDoubt::StateLost;
        }
        let acknowledged = self.model.records.clone();

        // A strict open, on a copy: it must refuse the damage as corruption,
        // or read exactly what was acknowledged.
        let copy = damaged.crash_image(CrashMode::Drop, &mut self.rng);
        let refused = match self.try_open(&copy, RecoveryMode::Strict)? {
            Err(Error::Corruption(corruption)) => {
                if damage.harmless {
                    self.stats.false_alarms += 1;
                    return fail(
                        "10 no false alarms",
                        format!(
                            "after {}, which leaves the log whole, open reported corruption: {corruption}",
                            damage.what
                        ),
                    );
                }
                trace!(self, "strict open refused: {corruption}");
                if self.trace {
                    dump(&damaged, &corruption.file, corruption.offset as usize);
                }
                self.stats.damage_refused += 1;
                Some(corruption)
            }
            Ok(log) => {
                let recovered = read_everything(&log)?;
                trace!(self, "strict open read {} records, report {:?}", recovered.len(), log.recovery_report());
                if recovered != self.live(&acknowledged) {
                    let mut failure = self.classify_mismatch(&recovered);
                    failure.detail = format!("a strict open after {} succeeded: {}", damage.what, failure.detail);
                    return Err(failure);
                }
                self.check_log(&log, &acknowledged)?;
                self.check_resume(&log, &format!("after a strict open of {}", damage.what))?;
                self.stats.damage_harmless += 1;
                None
            }
            Err(other) => return fail("8 robust open", format!("after {}, open failed: {other}", damage.what)),
        };

        // Read-only inspection must report the same damage, and read nothing
        // that was not acknowledged.
        let options = self.setup.options(&damaged, RecoveryMode::Strict);
        let dir = self.setup.dir.clone();
        let reader = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            LogReader::open_with(&dir, &options)
        })) {
            Ok(Ok(reader)) => reader,
            Ok(Err(error)) => {
                return fail("8 robust open", format!("after {}, LogReader::open_with failed: {error}", damage.what));
            }
            Err(_) => return fail("8 robust open", format!("after {}, LogReader::open_with panicked", damage.what)),
        };
        if let Some(corruption) = &refused
            && reader.problems().is_empty()
        {
            return fail(
                "12 damage reported",
                format!(
                    "after {}, open refused the log ({corruption}) but LogReader reports no problem (report {:?})",
                    damage.what,
                    reader.report()
                ),
            );
        }
        let read = match reader.read_all(Lsn::ZERO, usize::MAX) {
            Ok(read) => read,
            // Past damage it read past, a reader answers the damage for
            // what it cannot know (the records it hid, which records are
            // live): no record at all, never a short answer.
            Err(Error::Corruption(corruption)) if reader.problems().contains(&corruption) => Vec::new(),
            Err(e) => return fail("3 no corrupt reads", format!("LogReader::read_all: {e}")),
        };
        for record in read.iter().map(model_record) {
            let want = acknowledged.binary_search_by_key(&record.lsn, |r| r.lsn).ok().map(|i| &acknowledged[i]);
            if want != Some(&record) {
                self.stats.corrupt_returned += 1;
                return fail(
                    "3 no corrupt reads",
                    format!(
                        "after {}, LogReader read {} where {} was acknowledged",
                        damage.what,
                        record.describe(),
                        want.map_or("nothing".to_owned(), ModelRecord::describe)
                    ),
                );
            }
        }
        drop(reader);

        // Salvage: a prefix of the acknowledged records, with every one
        // before the damage.
        let log = match self.try_open(&damaged, RecoveryMode::Salvage)? {
            Ok(log) => log,
            Err(error) => {
                return fail("8 robust open", format!("after {}, a salvage open failed: {error}", damage.what));
            }
        };
        let salvaged = read_everything(&log)?;
        trace!(
            self,
            "salvage kept {} of {} records, report {:?}",
            salvaged.len(),
            acknowledged.len(),
            log.recovery_report()
        );
        // Salvage keeps a prefix of what was acknowledged: up to the last
        // operation it kept on disk. Compaction may already have dropped
        // records of that prefix that a later acknowledged record (one
        // salvage now cut) removed: those stay removed.
        let on_disk = log
            .read_all_on_disk(Lsn::ZERO, usize::MAX)
            .map_err(|e| SimFailure { property: "3 no corrupt reads", detail: e.to_string() })?;
        let cut = on_disk.last().map_or(0, |r| r.lsn.0 + 1);
        let kept = acknowledged.iter().take_while(|r| r.lsn < cut).count();
        let prefix_live = self.live(&acknowledged[..kept]);
        let all_live = self.live(&acknowledged);
        let explained = salvaged.iter().all(|r| prefix_live.contains(r))
            && prefix_live.iter().all(|r| salvaged.contains(r) || !all_live.contains(r));
        if !explained {
            // A record that differs (3), or one past the acknowledged ones (2).
            let mut failure = self.classify_mismatch(&salvaged);
            failure.detail = format!("salvage after {} (cut at lsn {cut}): {}", damage.what, failure.detail);
            return Err(failure);
        }
        // Every live record before the damage is kept.
        if let Some(missing) = all_live.iter().find(|r| r.lsn < damage.intact_below && !salvaged.contains(r)) {
            return fail(
                "12 salvage keeps what is intact",
                format!(
                    "after {}, salvage dropped {}, which lies before the damage (report {:?})",
                    damage.what,
                    missing.describe(),
                    log.recovery_report()
                ),
            );
        }
        if refused.is_none() && salvaged != self.live(&acknowledged) {
            return fail(
                "12 salvage keeps what is intact",
                format!(
                    "after {}, a strict open read all {} records, salvage kept {}",
                    damage.what,
                    acknowledged.len(),
                    salvaged.len()
                ),
            );
        }
        let resume = self.check_resume(&log, &format!("after salvage of {}", damage.what))?;
        self.stats.records_dropped_by_damage += all_live.len().saturating_sub(salvaged.len()) as u64;
        self.stats.records_verified += salvaged.len() as u64;
        // The log now is what salvage left on disk.
        let records: Vec<ModelRecord> = on_disk.iter().map(model_record).collect();
        let (trimmed_before, trim_in_doubt) = (self.model.trimmed_before, self.model.trim_in_doubt);
        self.model =
            Model { records: records.clone(), in_doubt: None, poisoned: false, resume, trimmed_before, trim_in_doubt };
        self.check_log(&log, &records)?;
        drop(log);

        // What salvage left is a sound log: a crash now, and a strict open,
        // read it exactly, and resume at the same LSN or later.
        let mode = *self.rng.pick(&CrashMode::ALL);
        let image = damaged.crash_image(mode, &mut self.rng);
        self.open_checked(&image, true)?;
        if self.model.next_lsn() < resume {
            return fail(
                "4 stability",
                format!(
                    "after salvage the log resumed at lsn {resume}; after a crash ({}) at {}",
                    mode.name(),
                    self.model.next_lsn()
                ),
            );
        }
        Ok(())
    }

    /// Damages the cleanly closed log on `fs` (durably: the writes are synced,
    /// the deletions and the directory too).
    fn inflict(&mut self, fs: &SimFs) -> Result<Damage, SimFailure> {
        let dir = self.setup.dir.clone();
        let names = fs.list(&dir).map_err(|e| sim_error("list", e))?;
        let mut segments: Vec<(u64, String)> =
            names.iter().filter_map(|name| parse_segment_file_name(name).map(|lsn| (lsn.0, name.clone()))).collect();
        segments.sort();
        let choice = self.rng.below(10);
        let Some((newest_lsn, newest)) = segments.last().cloned() else {
            return fail("simulator", "a cleanly closed log without a segment");
        };
        match choice {
            0..=4 => {
                // Zeros or garbage over a random number of sectors ending
                // with the one that holds the clean-close marker.
                let path = dir.join(&newest);
                let file = fs.open(&path, true).map_err(|e| sim_error("open", e))?;
                let len = file.len().map_err(|e| sim_error("stat", e))? as usize;
                let mut bytes = vec![0u8; len];
                file.read_at(&mut bytes, 0).map_err(|e| sim_error("read", e))?;
                let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                let marker_sector = end.saturating_sub(1) / 512 * 512;
                let sectors = if self.rng.chance(1, 2) { self.rng.range(1, 3) } else { self.rng.range(1, 24) } as usize;
                let to = (marker_sector + 512).min(len);
                let from = to.saturating_sub(sectors * 512);
                let garbage = self.rng.chance(1, 2);
                let fill = if garbage { self.rng.bytes(to - from) } else { vec![0; to - from] };
                file.write_at(&fill, from as u64).map_err(|e| sim_error("write", e))?;
                file.sync_data().map_err(|e| sim_error("fdatasync", e))?;
                let intact_below = first_lsn_reaching(&bytes, from, newest_lsn);
                Ok(Damage {
                    kind: 0,
                    what: format!(
                        "{} over bytes {from}..{to} of {newest} (marker sector at {marker_sector}, records from lsn {intact_below} hit)",
                        if garbage { "garbage" } else { "zeros" }
                    ),
                    intact_below,
                    harmless: false,
                })
            }
            5..=6 => {
                let index = if self.rng.chance(1, 2) {
                    segments.len() - 1
                } else {
                    self.rng.below(segments.len() as u64) as usize
                };
                let (first_lsn, name) = segments[index].clone();
                fs.remove(&dir.join(&name)).map_err(|e| sim_error("remove", e))?;
                fs.sync_dir(&dir).map_err(|e| sim_error("fsync directory", e))?;
                Ok(Damage {
                    kind: 1,
                    what: format!("deleting segment {name} ({} of {})", index + 1, segments.len()),
                    intact_below: first_lsn,
                    harmless: false,
                })
            }
            7 => {
                fs.remove(&dir.join(STATE_FILE_NAME)).map_err(|e| sim_error("remove", e))?;
                fs.sync_dir(&dir).map_err(|e| sim_error("fsync directory", e))?;
                Ok(Damage {
                    kind: 2,
                    what: "deleting the state file".to_owned(),
                    intact_below: u64::MAX,
                    harmless: false,
                })
            }
            _ => {
                // One slot. The other one still holds a valid state (unless
                // earlier damage hit it, which nothing had to repair): the
                // previous one, or the same, since a clean close writes both.
                let slot = self.rng.below(2) as usize;
                let garbage = self.rng.chance(1, 2);
                let fill = if garbage { self.rng.bytes(STATE_SLOT_BYTES) } else { vec![0; STATE_SLOT_BYTES] };
                let file = fs.open(&dir.join(STATE_FILE_NAME), true).map_err(|e| sim_error("open", e))?;
                let mut other = vec![0u8; STATE_SLOT_BYTES];
                let other_valid = file.len().is_ok_and(|len| len == STATE_FILE_BYTES as u64)
                    && file.read_at(&mut other, ((1 - slot) * STATE_SLOT_BYTES) as u64).is_ok()
                    && LogState::decode(&other).is_ok();
                file.write_at(&fill, (slot * STATE_SLOT_BYTES) as u64).map_err(|e| sim_error("write", e))?;
                file.sync_data().map_err(|e| sim_error("fdatasync", e))?;
                self.state_slot_damaged = true;
                Ok(Damage {
                    kind: 3,
                    what: format!(
                        "{} over state slot {slot} (the other one {})",
                        if garbage { "garbage" } else { "zeros" },
                        if other_valid { "valid" } else { "damaged before" }
                    ),
                    intact_below: u64::MAX,
                    harmless: other_valid,
                })
            }
        }
    }

    /// Opens the log on `fs` (strict), checks it against the model
    /// (acknowledged plus maybe the one in doubt), adopts what was
    /// recovered, and on a crash image also checks that a second crash with
    /// no writes changes nothing.
    fn open_checked(&mut self, fs: &SimFs, after_crash: bool) -> Result<(), SimFailure> {
        let image_damaged = self.damage_index_image(fs)?;
        let log = self.open(fs)?;
        self.check_no_leftovers(fs)?;
        self.check_index_against_scan(&log, fs)?;
        self.check_image_after_clean_close(&log, image_damaged)?;
        self.settle_trim(fs)?;
        let recovered = read_everything(&log)?;
        trace!(
            self,
            "recovered {} records, acknowledged {}, last lsn {}, report {:?}",
            recovered.len(),
            self.model.records.len(),
            log.last_lsn().map_or(0, |lsn| lsn.0),
            log.recovery_report()
        );
        let acknowledged = &self.model.records;
        let in_doubt = self.model.in_doubt.as_deref().unwrap_or(&[]);
        let with_in_doubt: Vec<ModelRecord> = acknowledged.iter().chain(in_doubt).cloned().collect();
        let extra = if recovered == self.live(acknowledged) {
            Vec::new()
        } else if !in_doubt.is_empty() && recovered == self.live(&with_in_doubt) {
            in_doubt.to_vec()
        } else {
            let live = self.live(acknowledged);
            if recovered.len() > live.len() && recovered.starts_with(&live) {
                let extra = &recovered[live.len()..];
                return fail(
                    "2 prefix",
                    format!(
                        "recovered {} records beyond the acknowledged ones that were never in flight: {:?}",
                        extra.len(),
                        extra.iter().map(ModelRecord::describe).collect::<Vec<_>>()
                    ),
                );
            }
            return Err(self.classify_mismatch(&recovered));
        };
        for record in &extra {
            self.check_lsn(record, "recovery returned a record in flight")?;
        }
        for record in &extra {
            self.remember(record);
        }
        let resume = self.check_resume(&log, "after recovery")?;
        let limit = self.setup.record_bytes_max;
        self.stats.records_over_limit_read += recovered.iter().filter(|r| r.body_bytes() > limit).count() as u64;
        self.stats.records_verified += recovered.len() as u64;
        self.model.records.extend(extra);
        self.model.in_doubt = None;
        self.model.poisoned = false;
        self.model.resume = resume;
        let records = self.model.records.clone();
        self.check_log(&log, &records)?;
        if after_crash && self.rng.chance(1, 3) {
            drop(log);
            let mode = *self.rng.pick(&CrashMode::ALL);
            let again = fs.crash_image(mode, &mut self.rng);
            let log = self.open(&again)?;
            if read_everything(&log)? != self.live(&records) {
                return fail("4 stability", format!("a second crash ({}) with no writes changed the log", mode.name()));
            }
            let next = next_lsn_of(&log)?;
            if next < resume {
                return fail(
                    "4 stability",
                    format!(
                        "a second crash ({}) with no writes moved the next lsn back from {resume} to {}",
                        mode.name(),
                        next
                    ),
                );
            }
            self.model.resume = next;
            self.log = Some(log);
            self.fs = again;
            self.image_in_doubt = false;
            return Ok(());
        }
        self.log = Some(log);
        self.fs = fs.clone();
        if after_crash {
            // What a crash image holds is durable.
            self.image_in_doubt = false;
        }
        Ok(())
    }

    /// Opens the log on `fs` with newly drawn options; `Err` only for a panic.
    fn try_open(&mut self, fs: &SimFs, mode: RecoveryMode) -> Result<Result<Log, Error>, SimFailure> {
        self.setup = Setup::draw(&mut self.rng, self.setup.dir.clone());
        trace!(
            self,
            "open ({mode:?}) with segment_bytes {} record_bytes_max {}",
            self.setup.segment_bytes,
            self.setup.record_bytes_max
        );
        let options = self.setup.options(fs, mode);
        let dir = self.setup.dir.clone();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Log::open(&dir, options)))
            .map_err(|_| SimFailure { property: "8 robust open", detail: format!("open ({mode:?}) panicked") })
    }

    /// Opens the log strictly where nothing but crashes happened.
    fn open(&mut self, fs: &SimFs) -> Result<Log, SimFailure> {
        match self.try_open(fs, RecoveryMode::Strict)? {
            Ok(log) => Ok(log),
            Err(Error::Corruption(corruption)) => {
                if self.trace {
                    dump(fs, &corruption.file, corruption.offset as usize);
                }
                self.stats.false_alarms += 1;
                fail("10 no false alarms", format!("open reported corruption after a plain crash: {corruption}"))
            }
            Err(other) => fail("8 robust open", format!("open failed: {other}")),
        }
    }

    fn classify_mismatch(&mut self, recovered: &[ModelRecord]) -> SimFailure {
        let acknowledged = &self.live(&self.model.records);
        for (i, want) in acknowledged.iter().enumerate() {
            match recovered.get(i) {
                None => {
                    self.stats.acknowledged_lost += (acknowledged.len() - i) as u64;
                    return SimFailure {
                        property: "1 no loss",
                        detail: format!("{} acknowledged records lost, from lsn {}", acknowledged.len() - i, want.lsn),
                    };
                }
                Some(got) if got != want => {
                    self.stats.corrupt_returned += 1;
                    return SimFailure {
                        property: "3 no corrupt reads",
                        detail: format!("at lsn {}: read {}, wrote {}", want.lsn, got.describe(), want.describe()),
                    };
                }
                Some(_) => {}
            }
        }
        SimFailure { property: "2 prefix", detail: "recovered log does not extend the acknowledged one".to_owned() }
    }

    /// Checks per-stream reads, the index and reads by LSN against `records`.
    fn check_log(&mut self, log: &Log, records: &[ModelRecord]) -> Result<(), SimFailure> {
        let streams = self.streams_of(records);
        for name in &self.streams {
            let want = streams.get(name).cloned().unwrap_or_default();
            let read = log.read_stream(name).map_err(|e| SimFailure { property: "5 index", detail: e.to_string() })?;
            let snapshot = read.snapshot.map(|s| (s.seq.0, s.payload.to_vec()));
            let want_entries = want.entries_after_snapshot();
            let entries: Vec<(u64, Vec<u8>)> = read.entries.iter().map(|r| (r.lsn.0, r.payload.to_vec())).collect();
            if snapshot != want.snapshot() || entries != want_entries {
                return fail(
                    "5 index",
                    format!(
                        "stream {:?} reads differently from the model",
                        String::from_utf8_lossy(&name[..name.len().min(16)])
                    ),
                );
            }
            if log.next_seq(name).ok() != Some(StreamSeq(want.next())) {
                return fail("5 index", "a stream's next sequence differs from the model");
            }
            if want.start > 0
                && !matches!(log.read_stream_from(name, StreamSeq(want.start - 1)), Err(Error::Pruned { .. }))
            {
                return fail("5 index", "a read below a pruned stream's start was not answered Pruned");
            }
        }
        if let Some(record) = self.live(records).last() {
            let by_lsn = log
                .read_lsn(Lsn(record.lsn))
                .map_err(|e| SimFailure { property: "3 no corrupt reads", detail: e.to_string() })?;
            if by_lsn.map(|r| r.payload.to_vec()) != Some(record.payload.clone()) {
                return fail("5 index", "read by lsn differs from the model");
            }
        }
        Ok(())
    }
}

pub(crate) fn model_record(record: &crate::index::Record) -> ModelRecord {
    ModelRecord {
        lsn: record.lsn.0,
        stream: record.stream.to_vec(),
        seq: record.seq.0,
        kind: record.kind,
        payload: record.payload.to_vec(),
    }
}

fn read_everything(log: &Log) -> Result<Vec<ModelRecord>, SimFailure> {
    let records = log
        .read_all(Lsn::ZERO, usize::MAX)
        .map_err(|e| SimFailure { property: "3 no corrupt reads", detail: format!("reading the log failed: {e}") })?;
    Ok(records.iter().map(model_record).collect())
}

/// The LSN of the first frame of the segment `bytes` (whose first LSN is
/// `first_lsn`) that reaches `damage_from` or past it: every record below it
/// lies before the damage. Walks the frames as they were before the damage,
/// over the zeros that pad a clean-close marker to its sector.
fn first_lsn_reaching(bytes: &[u8], damage_from: usize, first_lsn: u64) -> u64 {
    let Ok(header) = SegmentHeader::decode(bytes.get(..SEGMENT_HEADER_BYTES).unwrap_or(&[])) else {
        return first_lsn;
    };
    if damage_from < SEGMENT_HEADER_BYTES {
        return first_lsn;
    }
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut next = first_lsn;
    while offset < bytes.len() {
        match decode_frame_anywhere(&bytes[offset..], &header.log_id) {
            Ok(frame) => {
                if offset + frame.total_bytes() > damage_from {
                    return frame.meta.lsn.0;
                }
                next = frame.next_lsn().0;
                offset += frame.total_bytes();
            }
            Err(_) => {
                // Padding before a marker, or the end of the data.
                let boundary = (offset / 512 + 1) * 512;
                if boundary >= bytes.len() || bytes[offset..boundary].iter().any(|&b| b != 0) {
                    break;
                }
                offset = boundary;
            }
        }
    }
    next
}

/// Closes `log`; `Err` only if the close panicked.
fn close(log: &Log) -> Result<crate::error::Result<()>, SimFailure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| log.close().wait())).map_err(|panic| SimFailure {
        property: "9 fail-stop",
        detail: format!("a close panicked: {}", panic_message(&panic)),
    })
}

/// The message of a caught panic.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Prints the directory and the bytes around `offset` of `file` (tracing a failing seed).
fn dump(fs: &SimFs, file: &Path, offset: usize) {
    let dir = sim_dir();
    for name in fs.list(dir).unwrap_or_default() {
        let len = fs.open(&dir.join(&name), false).and_then(|f| f.len()).unwrap_or(0);
        eprintln!("  {name}: {len} bytes");
    }
    if let Ok(handle) = fs.open(file, false) {
        let len = handle.len().unwrap_or(0) as usize;
        let from = offset.saturating_sub(96).min(len);
        let to = (offset + 160).min(len);
        let mut bytes = vec![0u8; to - from];
        if handle.read_at(&mut bytes, from as u64).is_ok() {
            for (i, chunk) in bytes.chunks(32).enumerate() {
                eprintln!("  {:6}: {:02x?}", from + 32 * i, chunk);
            }
        }
    }
}

/// The seed to replay, from `ANNALS_SIM_SEED`, if set.
pub fn seed_from_env() -> Option<u64> {
    std::env::var("ANNALS_SIM_SEED").ok()?.parse().ok()
}

/// A path inside the simulated log directory (for tests).
pub fn sim_dir() -> &'static Path {
    Path::new("/sim/log")
}
