//! Deterministic crash simulation: the real engine on a simulated file
//! system, random workloads, crashes at every kind of point, injected
//! faults, and an oracle checked after every recovery.
//!
//! One `u64` seed drives a run ([`run_seed`]); a fuzzer's bytes can drive
//! the same run instead ([`run_script`]). A failure says which oracle
//! property broke and is reproduced exactly by its seed. The oracle is the
//! one in `CRASH-MODEL.md`:
//!
//! 1. no loss, 2. prefix, 3. no corrupt reads, 4. stability, 5. index,
//! 6. guards, 7. compaction (no compaction yet), 8. robust open,
//! 9. fail-stop, 10. no false alarms.

pub mod fs;
pub mod fuzz;
pub mod rng;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Error;
use crate::frame::RecordKind;
use crate::log::{Batch, Log};
use crate::options::{Options, SegmentPreparation};
use crate::types::{Expectation, Lsn, StreamSeq};
use fs::{CrashMode, FaultKind, SimFs};
use rng::SimRng;

/// Figures of one or more simulation runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Seeds (or scripts) run.
    pub seeds: u64,
    /// Operations issued to the engine.
    pub operations: u64,
    /// Crashes (points at which the disk froze).
    pub crash_points: u64,
    /// Crash images recovered and checked, by mode (in [`CrashMode::ALL`] order).
    pub images_by_mode: [u64; 7],
    /// Faults injected: EIO, ENOSPC, and of those, failed fsyncs.
    pub faults_eio: u64,
    /// Faults that returned ENOSPC.
    pub faults_enospc: u64,
    /// Injected faults that hit an fsync.
    pub faults_fsync: u64,
    /// Records compared against the model after a recovery.
    pub records_verified: u64,
    /// Acknowledged records missing after a recovery (must be 0).
    pub acknowledged_lost: u64,
    /// Records returned that differ from what was written (must be 0).
    pub corrupt_returned: u64,
    /// Opens that reported corruption after a plain crash (must be 0).
    pub false_alarms: u64,
}

impl SimStats {
    /// Adds another run's figures.
    pub fn add(&mut self, other: &SimStats) {
        self.seeds += other.seeds;
        self.operations += other.operations;
        self.crash_points += other.crash_points;
        for (mine, theirs) in self.images_by_mode.iter_mut().zip(other.images_by_mode) {
            *mine += theirs;
        }
        self.faults_eio += other.faults_eio;
        self.faults_enospc += other.faults_enospc;
        self.faults_fsync += other.faults_fsync;
        self.records_verified += other.records_verified;
        self.acknowledged_lost += other.acknowledged_lost;
        self.corrupt_returned += other.corrupt_returned;
        self.false_alarms += other.false_alarms;
    }

    /// Crash images checked in all modes.
    pub fn images(&self) -> u64 {
        self.images_by_mode.iter().sum()
    }
}

impl fmt::Display for SimStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seeds {}  operations {}  crash points {}", self.seeds, self.operations, self.crash_points)?;
        write!(f, "crash images {}:", self.images())?;
        for (mode, count) in CrashMode::ALL.iter().zip(self.images_by_mode) {
            write!(f, " {} {}", mode.name(), count)?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "faults injected: eio {}  enospc {}  (fsyncs among them {})",
            self.faults_eio, self.faults_enospc, self.faults_fsync
        )?;
        writeln!(f, "records verified {}", self.records_verified)?;
        write!(
            f,
            "acknowledged records lost {}  corrupt records returned {}  false corruption reports {}",
            self.acknowledged_lost, self.corrupt_returned, self.false_alarms
        )
    }
}

/// An oracle property that did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimFailure {
    /// Which property (1 to 10), as named in the module docs.
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

/// One record as the model knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelRecord {
    lsn: u64,
    stream: Vec<u8>,
    seq: u64,
    kind: RecordKind,
    payload: Vec<u8>,
}

/// What a stream looks like to a reader.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ModelStream {
    entries: Vec<(u64, Vec<u8>)>,
    snapshot: Option<(u64, Vec<u8>)>,
}

/// The acknowledged log and the one operation whose outcome is unknown.
#[derive(Clone, Debug, Default)]
struct Model {
    records: Vec<ModelRecord>,
    in_doubt: Option<Vec<ModelRecord>>,
    /// A write failed: nothing more may be acknowledged until a reopen.
    poisoned: bool,
}

/// One operation of the workload, as given to the engine and to the model.
#[derive(Clone, Debug)]
enum Op {
    Entry(Expectation),
    Snapshot(u64),
    Clear(Expectation),
}

impl Model {
    fn streams(records: &[ModelRecord]) -> BTreeMap<Vec<u8>, ModelStream> {
        let mut streams: BTreeMap<Vec<u8>, ModelStream> = BTreeMap::new();
        for record in records {
            let stream = streams.entry(record.stream.clone()).or_default();
            match record.kind {
                RecordKind::Entry => stream.entries.push((record.lsn, record.payload.clone())),
                RecordKind::Snapshot => stream.snapshot = Some((record.seq, record.payload.clone())),
                RecordKind::Tombstone => *stream = ModelStream::default(),
            }
        }
        streams.retain(|_, s| !s.entries.is_empty() || s.snapshot.is_some());
        streams
    }

    fn next_lsn(&self) -> u64 {
        self.records.last().map_or(1, |r| r.lsn + 1)
    }

    /// The records `ops` would produce, or `None` if a guard fails.
    fn predict(&self, ops: &[(Vec<u8>, Op, Vec<u8>)]) -> Option<Vec<ModelRecord>> {
        let mut streams = Model::streams(&self.records);
        let mut out = Vec::new();
        for (lsn, (name, op, payload)) in (self.next_lsn()..).zip(ops) {
            let stream = streams.entry(name.clone()).or_default();
            let next = stream.entries.len() as u64;
            let (kind, seq) = match op {
                Op::Entry(expected) if expected.holds(StreamSeq(next)) => (RecordKind::Entry, next),
                Op::Clear(expected) if expected.holds(StreamSeq(next)) => (RecordKind::Tombstone, next),
                Op::Snapshot(seq) if *seq < next && stream.snapshot.as_ref().is_none_or(|(s, _)| s <= seq) => {
                    (RecordKind::Snapshot, *seq)
                }
                _ => return None,
            };
            match kind {
                RecordKind::Entry => stream.entries.push((lsn, payload.clone())),
                RecordKind::Snapshot => stream.snapshot = Some((seq, payload.clone())),
                RecordKind::Tombstone => *stream = ModelStream::default(),
            }
            let payload = if kind == RecordKind::Tombstone { Vec::new() } else { payload.clone() };
            out.push(ModelRecord { lsn, stream: name.clone(), seq, kind, payload });
        }
        Some(out)
    }
}

/// The simulation's settings, drawn from the seed.
struct Setup {
    dir: PathBuf,
    segment_bytes: u64,
    record_bytes_max: usize,
}

impl Setup {
    fn options(&self, fs: &SimFs) -> Options {
        Options {
            segment_bytes: self.segment_bytes,
            record_bytes_max: self.record_bytes_max,
            segment_preparation: SegmentPreparation::Inline,
            file_system: Arc::new(fs.clone()),
            ..Options::default()
        }
    }
}

/// Runs one seed. Returns its figures, or the first oracle failure.
pub fn run_seed(seed: u64, steps: usize) -> Result<SimStats, SimFailure> {
    Simulation::new(SimRng::new(seed), steps).run()
}

/// Runs a simulation whose every decision comes from `script` (a fuzzer's input).
pub fn run_script(script: &[u8]) -> Result<SimStats, SimFailure> {
    let steps = 4 + script.len() / 16;
    Simulation::new(SimRng::from_bytes(script), steps.min(64)).run()
}

struct Simulation {
    rng: SimRng,
    steps: usize,
    setup: Setup,
    fs: SimFs,
    log: Option<Log>,
    model: Model,
    stats: SimStats,
    streams: Vec<Vec<u8>>,
    /// Print every step (`ANNALS_SIM_TRACE=1`), to debug a failing seed.
    trace: bool,
}

macro_rules! trace {
    ($sim:expr, $($arg:tt)*) => {
        if $sim.trace {
            eprintln!($($arg)*);
        }
    };
}

impl Simulation {
    fn new(mut rng: SimRng, steps: usize) -> Simulation {
        let segment_bytes = *rng.pick(&[4096u64, 8192, 16384]);
        let record_bytes_max = Options::record_bytes_max_for(segment_bytes);
        let streams = vec![b"a".to_vec(), b"b".to_vec(), b"workflow-7".to_vec(), vec![b'L'; 1024]];
        Simulation {
            rng,
            steps,
            setup: Setup { dir: PathBuf::from("/sim/log"), segment_bytes, record_bytes_max },
            fs: SimFs::new(),
            log: None,
            model: Model::default(),
            stats: SimStats { seeds: 1, ..SimStats::default() },
            streams,
            trace: std::env::var_os("ANNALS_SIM_TRACE").is_some(),
        }
    }

    fn run(mut self) -> Result<SimStats, SimFailure> {
        self.open_checked(&self.fs.clone(), false)?;
        for _ in 0..self.steps {
            match self.rng.below(100) {
                0..=44 => self.single_append()?,
                45..=54 => self.batch()?,
                55..=61 => self.snapshot()?,
                62..=65 => self.clear()?,
                66..=71 => self.check_reads()?,
                72..=75 => self.clean_reopen()?,
                76..=91 => self.crash()?,
                _ => self.fault()?,
            }
        }
        self.crash()?;
        self.count_faults(&self.fs.clone());
        Ok(self.stats)
    }

    /// Adds the faults a disk injected to the figures, when the run leaves it.
    fn count_faults(&mut self, fs: &SimFs) {
        let counts = fs.counts();
        self.stats.faults_eio += counts.eio;
        self.stats.faults_enospc += counts.enospc;
        self.stats.faults_fsync += counts.failed_fsyncs;
    }

    fn payload(&mut self) -> Vec<u8> {
        let max = self.setup.record_bytes_max;
        let segment = self.setup.segment_bytes as usize;
        let sizes = [0, 1, 511, 512, 513, 4095, 4096, 4097, max - 60, segment - 1, segment + 1];
        let len = if self.rng.chance(1, 3) { *self.rng.pick(&sizes) } else { self.rng.below(300) as usize };
        self.rng.bytes(len)
    }

    fn stream(&mut self) -> Vec<u8> {
        let index = if self.rng.chance(1, 12) { 3 } else { self.rng.below(3) as usize };
        self.streams[index].clone()
    }

    fn expectation(&mut self, stream: &[u8]) -> Expectation {
        let next = Model::streams(&self.model.records).get(stream).map_or(0, |s| s.entries.len() as u64);
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
        let payload = self.payload();
        self.submit(vec![(stream, Op::Entry(expected), payload)])
    }

    fn batch(&mut self) -> Result<(), SimFailure> {
        let count = self.rng.range(2, 4);
        let mut ops = Vec::new();
        for _ in 0..count {
            let stream = self.stream();
            let op = match self.rng.below(5) {
                0 => Op::Clear(Expectation::Any),
                1 => Op::Snapshot(self.rng.below(3)),
                _ => Op::Entry(self.expectation(&stream)),
            };
            let len = self.rng.below(200) as usize;
            let payload = if matches!(op, Op::Clear(_)) { Vec::new() } else { self.rng.bytes(len) };
            ops.push((stream, op, payload));
        }
        self.submit(ops)
    }

    fn snapshot(&mut self) -> Result<(), SimFailure> {
        let stream = self.stream();
        let next = Model::streams(&self.model.records).get(&stream).map_or(0, |s| s.entries.len() as u64);
        let seq = if self.rng.chance(1, 5) { next } else { next.saturating_sub(1 + self.rng.below(2)) };
        let payload = self.payload();
        self.submit(vec![(stream, Op::Snapshot(seq), payload)])
    }

    fn clear(&mut self) -> Result<(), SimFailure> {
        let stream = self.stream();
        let expected = self.expectation(&stream);
        self.submit(vec![(stream, Op::Clear(expected), Vec::new())])
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
            };
        }
        let predicted = self.model.predict(&ops);
        let result = log.commit(batch).wait();
        trace!(
            self,
            "submit {:?} -> {:?}",
            ops.iter().map(|(s, o, p)| (s.len(), o, p.len())).collect::<Vec<_>>(),
            result.as_ref().map(|a| a.iter().map(|a| a.lsn.0).collect::<Vec<_>>())
        );
        match result {
            Ok(appended) => {
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
                self.model.records.extend(records);
            }
            Err(Error::Conflict { .. } | Error::SnapshotOutOfRange { .. }) => {
                if predicted.is_some() && !self.model.poisoned {
                    return fail("6 guards", format!("rejected although every guard holds: {ops:?}"));
                }
            }
            Err(Error::TooLarge { .. }) => {
                let per_op = if ops.len() > 1 { 1 } else { 0 };
                let body: usize = ops.iter().map(|(s, _, p)| per_op + 22 + s.len() + p.len()).sum();
                if body <= self.setup.record_bytes_max {
                    return fail("6 guards", format!("a record of {body} bytes was refused as too large"));
                }
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
            Err(Error::Io { .. } | Error::DiskFull { .. }) => {}
            Err(other) => return fail("9 fail-stop", format!("unexpected error from an append: {other}")),
        }
        Ok(())
    }

    /// Reads back everything without a crash and compares with the model.
    fn check_reads(&mut self) -> Result<(), SimFailure> {
        let Some(log) = self.log.clone() else { return Ok(()) };
        if self.model.poisoned {
            return Ok(());
        }
        let records = self.model.records.clone();
        self.check_log(&log, &records)
    }

    fn clean_reopen(&mut self) -> Result<(), SimFailure> {
        trace!(self, "clean reopen");
        if let Some(log) = self.log.take() {
            let _ = log.close().wait();
        }
        self.fs.clear_fault();
        let fs = self.fs.clone();
        self.open_checked(&fs, false)
    }

    fn fault(&mut self) -> Result<(), SimFailure> {
        let kind = if self.rng.chance(1, 3) { FaultKind::Enospc } else { FaultKind::Eio };
        let persistent = self.rng.chance(1, 3);
        let after = self.rng.range(1, 6);
        trace!(self, "fault {kind:?} after {after} ops, persistent {persistent}");
        self.fs.inject_fault_after(after, kind, persistent);
        for _ in 0..self.rng.range(1, 4) {
            self.single_append()?;
        }
        // Reopen on the same disk: the page cache survived, the fault is over.
        self.clean_reopen()
    }

    /// Freezes the disk at a random point of the next few operations, then
    /// recovers several crash images of it and checks each.
    fn crash(&mut self) -> Result<(), SimFailure> {
        self.fs.crash_after(self.rng.range(1, 12));
        for _ in 0..self.rng.range(1, 4) {
            if self.fs.has_crashed() {
                break;
            }
            self.single_append()?;
        }
        self.fs.crash_now();
        trace!(self, "crash after {} ops", self.fs.counts().ops);
        self.stats.crash_points += 1;
        if let Some(log) = self.log.take() {
            drop(log); // the process is gone; its writes fail from here on
        }
        let images = if self.rng.scripted() { 2 } else { 2 + self.rng.below(6) as usize };
        // The last image recovered is the one the workload goes on with
        // (`open_checked` records it, or the image of its stability check).
        let crashed = self.fs.clone();
        self.count_faults(&crashed);
        for i in 0..images {
            let mode = *self.rng.pick(&CrashMode::ALL);
            let image = crashed.crash_image(mode, &mut self.rng);
            trace!(self, "image {i}: {}", mode.name());
            self.stats.images_by_mode[CrashMode::ALL.iter().position(|m| *m == mode).expect("a mode")] += 1;
            let model = self.model.clone();
            self.open_checked(&image, true)?;
            if i + 1 < images {
                // Check the next image against the same pre-crash model.
                if let Some(log) = self.log.take() {
                    drop(log);
                }
                self.model = model;
            }
        }
        Ok(())
    }

    /// Opens the log on `fs`, checks it against the model (acknowledged plus
    /// maybe the one in doubt), adopts what was recovered, and on a crash
    /// image also checks that a second crash with no writes changes nothing.
    fn open_checked(&mut self, fs: &SimFs, after_crash: bool) -> Result<(), SimFailure> {
        let log = self.open(fs)?;
        let recovered = read_everything(&log)?;
        trace!(
            self,
            "recovered {} records, acknowledged {}, report {:?}",
            recovered.len(),
            self.model.records.len(),
            log.recovery_report()
        );
        let acknowledged = &self.model.records;
        if recovered.len() < acknowledged.len() || !recovered.starts_with(acknowledged) {
            return Err(self.classify_mismatch(&recovered));
        }
        let extra = &recovered[acknowledged.len()..];
        let allowed = self.model.in_doubt.as_deref().unwrap_or(&[]);
        if !extra.is_empty() && extra != allowed {
            return fail(
                "2 prefix",
                format!(
                    "recovered {} records beyond the acknowledged ones that were never in flight: {extra:?}",
                    extra.len()
                ),
            );
        }
        self.stats.records_verified += recovered.len() as u64;
        self.model.records = recovered;
        self.model.in_doubt = None;
        self.model.poisoned = false;
        let records = self.model.records.clone();
        self.check_log(&log, &records)?;
        if after_crash && self.rng.chance(1, 3) {
            drop(log);
            let mode = *self.rng.pick(&CrashMode::ALL);
            let again = fs.crash_image(mode, &mut self.rng);
            let log = self.open(&again)?;
            if read_everything(&log)? != records {
                return fail("4 stability", format!("a second crash ({}) with no writes changed the log", mode.name()));
            }
            self.log = Some(log);
            self.fs = again;
            return Ok(());
        }
        self.log = Some(log);
        self.fs = fs.clone();
        Ok(())
    }

    fn open(&mut self, fs: &SimFs) -> Result<Log, SimFailure> {
        let options = self.setup.options(fs);
        let dir = self.setup.dir.clone();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Log::open(&dir, options))) {
            Ok(Ok(log)) => Ok(log),
            Ok(Err(Error::Corruption(corruption))) => {
                self.stats.false_alarms += 1;
                fail("10 no false alarms", format!("open reported corruption after a plain crash: {corruption}"))
            }
            Ok(Err(other)) => fail("8 robust open", format!("open failed: {other}")),
            Err(_) => fail("8 robust open", "open panicked"),
        }
    }

    fn classify_mismatch(&mut self, recovered: &[ModelRecord]) -> SimFailure {
        let acknowledged = &self.model.records;
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
                        detail: format!("at lsn {}: read {got:?}, wrote {want:?}", want.lsn),
                    };
                }
                Some(_) => {}
            }
        }
        SimFailure { property: "2 prefix", detail: "recovered log does not extend the acknowledged one".to_owned() }
    }

    /// Checks per-stream reads, the index and reads by LSN against `records`.
    fn check_log(&mut self, log: &Log, records: &[ModelRecord]) -> Result<(), SimFailure> {
        let streams = Model::streams(records);
        for name in &self.streams {
            let want = streams.get(name).cloned().unwrap_or_default();
            let read = log.read_stream(name).map_err(|e| SimFailure { property: "5 index", detail: e.to_string() })?;
            let snapshot = read.snapshot.map(|s| (s.seq.0, s.payload.to_vec()));
            let from = snapshot.as_ref().map_or(0, |(seq, _)| seq + 1) as usize;
            let want_entries: Vec<(u64, Vec<u8>)> = want.entries.get(from..).unwrap_or(&[]).to_vec();
            let entries: Vec<(u64, Vec<u8>)> = read.entries.iter().map(|r| (r.lsn.0, r.payload.to_vec())).collect();
            if snapshot != want.snapshot || entries != want_entries {
                return fail(
                    "5 index",
                    format!(
                        "stream {:?} reads differently from the model",
                        String::from_utf8_lossy(&name[..name.len().min(16)])
                    ),
                );
            }
            if log.next_seq(name) != StreamSeq(want.entries.len() as u64) {
                return fail("5 index", "a stream's next sequence differs from the model");
            }
        }
        if let Some(record) = records.last() {
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

fn read_everything(log: &Log) -> Result<Vec<ModelRecord>, SimFailure> {
    let records = log
        .read_all(Lsn::ZERO, usize::MAX)
        .map_err(|e| SimFailure { property: "3 no corrupt reads", detail: format!("reading the log failed: {e}") })?;
    Ok(records
        .into_iter()
        .map(|r| ModelRecord {
            lsn: r.lsn.0,
            stream: r.stream.to_vec(),
            seq: r.seq.0,
            kind: r.kind,
            payload: r.payload.to_vec(),
        })
        .collect())
}

/// The seed to replay, from `ANNALS_SIM_SEED`, if set.
pub fn seed_from_env() -> Option<u64> {
    std::env::var("ANNALS_SIM_SEED").ok()?.parse().ok()
}

/// A path inside the simulated log directory (for tests).
pub fn sim_dir() -> &'static Path {
    Path::new("/sim/log")
}
