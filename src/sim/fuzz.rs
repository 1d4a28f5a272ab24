//! The bodies of the fuzz targets under `fuzz/`. They live in the library
//! so that a stable `cargo test` replays the committed corpus through the
//! same code (`tests/fuzz_corpus.rs`). Each panics on a violated property.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use super::fs::{CrashMode, SimFs};
use super::rng::SimRng;
use super::{Model, ModelRecord, ModelStream};
use crate::commit::{Appended, PruneSnapshots};
use crate::error::Error;
use crate::frame::{
    FRAME_HEADER_BYTES, FrameKind, FrameMeta, OpRef, RecordKind, decode_frame, decode_frame_anywhere, encode_frame,
};
use crate::fs::FileSystem;
use crate::log::{Batch, Log, LogReader, Pending};
use crate::options::{Options, SegmentPreparation};
use crate::segment::{SEGMENT_HEADER_BYTES, SegmentHeader, segment_file_name};
use crate::state::{
    FEATURE_CLEAN_CLOSE_CLEARED_FIRST, LogState, STATE_FILE_BYTES, STATE_FILE_NAME, STATE_SLOT_BYTES, StateRead,
    read_state,
};
use crate::types::{Expectation, Lsn, RecoveryMode, StreamSeq};

const LOG_ID: [u8; 16] = *b"annals-fuzz-log!";

/// Decodes arbitrary bytes as a segment: the header, then frames at every
/// offset. Nothing may panic; every frame that decodes must re-encode to
/// the same bytes; and the whole thing, as a file in a log directory, must
/// open or fail with an error.
pub fn decode_segment(data: &[u8]) {
    let _ = SegmentHeader::decode(data);
    for offset in 0..data.len().min(4096) {
        if let Ok(frame) = decode_frame_anywhere(&data[offset..], &LOG_ID) {
            let ops: Vec<OpRef<'_>> = frame
                .ops()
                .map(|op| OpRef { kind: op.kind, stream: op.stream, seq: op.seq, lsn: op.lsn, payload: op.payload })
                .collect();
            let mut again = Vec::new();
            encode_frame(&mut again, &LOG_ID, frame.kind, frame.meta, &ops);
            assert_eq!(again, &data[offset..offset + frame.total_bytes()], "a decoded frame re-encodes identically");
        }
    }
    let name = segment_file_name(Lsn::FIRST);
    open_directory_of(&[(name, data.to_vec())]);
}

/// Encodes operations drawn from the bytes and decodes them back.
pub fn round_trip(data: &[u8]) {
    let mut rng = SimRng::from_bytes(data);
    let count = rng.range(1, 6) as usize;
    let mut owned = Vec::new();
    for i in 0..count {
        let kind = *rng.pick(&[RecordKind::Entry, RecordKind::Snapshot, RecordKind::Tombstone]);
        let stream_len = rng.range(1, 40) as usize;
        let payload_len = if kind == RecordKind::Tombstone { 0 } else { rng.below(600) as usize };
        owned.push((kind, rng.bytes(stream_len), rng.next_u64(), 1000 + i as u64, rng.bytes(payload_len)));
    }
    let ops: Vec<OpRef<'_>> = owned
        .iter()
        .map(|(kind, stream, seq, lsn, payload)| OpRef {
            kind: *kind,
            stream,
            seq: StreamSeq(*seq),
            lsn: Lsn(*lsn),
            payload,
        })
        .collect();
    let kind = if ops.len() == 1 && rng.chance(1, 2) { ops[0].kind.frame_kind() } else { FrameKind::Batch };
    let meta = FrameMeta { lsn: Lsn(1000), durable_lsn: Lsn(rng.range(0, 1000)), timestamp_ms: rng.next_u64() };
    let mut buf = Vec::new();
    encode_frame(&mut buf, &LOG_ID, kind, meta, &ops);
    let frame = decode_frame(&buf, &LOG_ID, Lsn(1000)).expect("an encoded frame decodes");
    assert_eq!((frame.kind, frame.meta, frame.total_bytes()), (kind, meta, buf.len()));
    let decoded: Vec<_> = frame.ops().map(|op| (op.kind, op.stream, op.seq, op.lsn, op.payload)).collect();
    let original: Vec<_> = ops.iter().map(|op| (op.kind, op.stream, op.seq, op.lsn, op.payload)).collect();
    assert_eq!(decoded, original);
    assert!(decode_frame(&buf[..buf.len() - 1], &LOG_ID, Lsn(1000)).is_err());
    assert!(buf.len() >= FRAME_HEADER_BYTES);
}

/// Runs the crash simulation with every decision taken from the bytes;
/// panics with the oracle property that broke.
pub fn operations(data: &[u8]) {
    if let Err(failure) = super::run_script(data) {
        panic!("oracle: {failure}");
    }
}

/// Splits the bytes into files of a log directory (segments, spares, junk,
/// the state file; some with valid headers or slots) and opens it every way:
/// strict, salvage and read-only. Nothing may panic; whatever opens must
/// read back and take an append.
pub fn open_directory(data: &[u8]) {
    let mut rng = SimRng::from_bytes(data);
    let mut files = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && files.len() < 4 {
        let len = (rng.range(0, 3 * 4096) as usize).min(rest.len());
        let name = match rng.below(6) {
            0 => "spare-1.seg.tmp".to_owned(),
            1 => "junk".to_owned(),
            2 => STATE_FILE_NAME.to_owned(),
            _ => segment_file_name(Lsn(*rng.pick(&[1, 2, 5, 17, u64::MAX]))),
        };
        let mut bytes = rest[..len].to_vec();
        if name == STATE_FILE_NAME {
            if rng.chance(1, 2) {
                // A state file with valid slots (or one of them), so that
                // recovery holds the segments to what it records.
                bytes.resize(STATE_FILE_BYTES, 0);
                // Bit 2 of `features` in some: with it, two slots alike but
                // for their generation (one apart) are a clean close's pair
                // (segments-format.md, section 5), whose zeros recovery
                // trusts without reading them (row 1c).
                let features = if rng.chance(1, 2) { FEATURE_CLEAN_CLOSE_CLEARED_FIRST } else { 0 };
                let mut written = None;
                for slot in 0..2 {
                    if let Some(state) = written.filter(|_: &LogState| rng.chance(1, 2)) {
                        let pair = LogState { generation: state.generation + 1, ..state };
                        bytes[slot * STATE_SLOT_BYTES..][..STATE_SLOT_BYTES].copy_from_slice(&pair.encode());
                    } else if rng.chance(3, 4) {
                        let oldest = *rng.pick(&[1, 2, 5]);
                        let newest = oldest + rng.below(20);
                        let durable_end = newest + rng.below(40);
                        let state = LogState {
                            log_id: LOG_ID,
                            generation: 1 + rng.below(4),
                            oldest_segment_lsn: Lsn(oldest),
                            newest_segment_lsn: Lsn(newest),
                            durable_end_lsn: Lsn(durable_end),
                            written_ms: 0,
                            clean_close: rng.chance(1, 2),
                            lsn_lease_end: Lsn(durable_end + *rng.pick(&[0, 1, 1000])),
                            features,
                            compaction_generation: 0,
                            compacted_end_lsn: Lsn::ZERO,
                            trimmed_lsn: Lsn::ZERO,
                        };
                        bytes[slot * STATE_SLOT_BYTES..][..STATE_SLOT_BYTES].copy_from_slice(&state.encode());
                        written = Some(state);
                    }
                }
            }
        } else if rng.chance(1, 2) && bytes.len() >= SEGMENT_HEADER_BYTES {
            // Give some files a valid header, so frames behind it are reached.
            let header = SegmentHeader {
                version: crate::segment::FORMAT_VERSION,
                log_id: LOG_ID,
                first_lsn: Lsn(1),
                segment_bytes: 4096,
                created_ms: 0,
            };
            bytes[..SEGMENT_HEADER_BYTES].copy_from_slice(&header.encode());
            bytes.resize(4096, 0);
        }
        files.push((name, bytes));
        rest = &rest[len..];
    }
    open_directory_of(&files);
}

fn open_directory_of(files: &[(String, Vec<u8>)]) {
    let dir = Path::new("/fuzz/log");
    for mode in [RecoveryMode::Strict, RecoveryMode::Salvage] {
        let fs = SimFs::with_files(dir, files);
        let options = Options {
            segment_bytes: 4096,
            record_bytes_max: 1024,
            recovery_mode: mode,
            segment_preparation: SegmentPreparation::Inline,
            file_system: Arc::new(fs.clone()),
            compaction: crate::options::CompactionOptions { background: false, ..Default::default() },
            ..Options::default()
        };
        if let Ok(reader) = LogReader::open_with(dir, &options) {
            let _ = reader.read_all(Lsn::ZERO, usize::MAX);
        }
        if let Ok(log) = Log::open(dir, options.clone()) {
            let records = log.read_all(Lsn::ZERO, usize::MAX).expect("an opened log reads back");
            let appended = log.append("fuzz", Expectation::Any, &b"after"[..]).wait();
            drop(log);
            let again = Log::open(dir, options).expect("a log that opened once opens again");
            let reread = again.read_all(Lsn::ZERO, usize::MAX).expect("and reads back");
            assert_eq!(&reread[..records.len()], &records[..], "reopening keeps what was read");
            if let Ok(appended) = appended {
                assert!(again.read_lsn(appended.lsn).expect("readable").is_some(), "an acknowledged append survives");
            }
        }
    }
}

/// The streams a lifecycle run writes to.
const LIFECYCLE_STREAMS: [&[u8]; 3] = [b"a", b"b", b"orders-7"];

/// Segment sizes a lifecycle run opens its log with; every open draws one,
/// so a log is reopened with segments smaller or larger than it was made with.
const LIFECYCLE_SEGMENT_BYTES: [u64; 3] = [4096, 8192, 16384];

/// Steps a lifecycle run takes at most, whatever the input's length.
const LIFECYCLE_STEPS_MAX: usize = 96;

/// The largest payload a lifecycle run writes in one operation: with the
/// operation's header and stream id, under the record limit of the smallest
/// segment size, so that no write is ever refused as too large.
const LIFECYCLE_PAYLOAD_BYTES_MAX: usize = 3000;

/// The largest payload of one operation in a batch (at most four carry
/// one, under the record limit together).
const LIFECYCLE_BATCH_PAYLOAD_BYTES_MAX: usize = 600;

const LIFECYCLE_DIR: &str = "/fuzz/lifecycle";

/// Drives a log through its storage lifecycle on the simulated file system,
/// every decision taken from the bytes: appends, snapshots, batches, clears
/// and deletes on a few streams; prunes (before an LSN, all but the latest
/// snapshot), `snapshot_and_prune`, `keep_snapshots`, `prune_older_than` by
/// the log's own timestamps; compactions; clean reopens and crashes (in
/// every crash mode, in the middle of a write, a compaction, a close or the
/// open after it), each reopen with another segment size. After every step
/// it checks the log against the simulator's model:
///
/// - every live record, byte for byte at its LSN (`read_all`, whole and by
///   pages), and with the same time whenever it is read again;
/// - every stream's `read_stream`, `next_seq`, `latest`, its entries from
///   its start, and `Pruned` below its start;
/// - no LSN handed out twice: acknowledgements land where the model says,
///   and an open resumes past every acknowledged LSN;
/// - nothing pruned or cleared ever reads again, across crashes and
///   compactions;
/// - after an open, no file a compaction left: no `*.compacting`, no
///   compacted segment of a generation other than the state file's or
///   outside its range, no ordinary segment below `compacted_end_lsn`;
/// - a `LogReader` of the directory reads exactly what the `Log` reads, and
///   one opened on a crash image before the `Log` reads what the `Log` reads
///   after its recovery.
///
/// Appends are `Durability::Sync`: acknowledged means durable, so after a
/// crash the log holds every acknowledged record, and at most the one
/// operation the crash interrupted. Panics naming the property that broke.
pub fn lifecycle(data: &[u8]) {
    let steps = (data.len() / 6).clamp(4, LIFECYCLE_STEPS_MAX);
    let mut run = Lifecycle::new(SimRng::from_bytes(data));
    run.open_checked("at the first open");
    for _ in 0..steps {
        run.step();
    }
    run.clean_reopen();
    if let Some(log) = run.log.take() {
        let _ = log.close().wait();
    }
}

/// One operation as the lifecycle run asks for it.
#[derive(Clone, Debug)]
enum LifeOp {
    Entry(Expectation),
    Snapshot(u64),
    Clear(Expectation),
    Prune(u64, PruneSnapshots),
}

/// Why the model expects the writer to refuse a request (nothing written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Conflict,
    SnapshotOutOfRange,
    PruneOutOfRange,
}

/// Which public call carries a request to the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Commit,
    Append,
    Snapshot,
    Clear,
    DeleteStream,
    Prune,
    SnapshotAndPrune,
}

/// The model's side of a lifecycle run; cloned to check a crash image that
/// the run does not go on with.
#[derive(Clone, Debug, Default)]
struct LifeModel {
    /// Every record acknowledged (or found after a crash), in LSN order:
    /// entries, snapshots, tombstones and prunes as written.
    records: Vec<ModelRecord>,
    /// The records of the one operation a crash interrupted: on disk or not.
    in_doubt: Option<Vec<ModelRecord>>,
    /// An operation failed (the disk froze): nothing more is acknowledged
    /// or checked until the log is reopened on a crash image.
    stopped: bool,
    /// The LSN the next record gets.
    next_lsn: u64,
    /// LSNs of acknowledged entries and snapshots that stopped being live.
    dead: BTreeSet<u64>,
    /// The time of every record ever read, by LSN.
    times: BTreeMap<u64, u64>,
}

/// The lifecycle fuzz run: the log, the disk under it and the model.
struct Lifecycle {
    rng: SimRng,
    fs: SimFs,
    log: Option<Log>,
    segment_bytes: u64,
    model: LifeModel,
    /// Payloads written so far: each payload starts with its number.
    payloads: u64,
    /// Print every step (`ANNALS_LIFECYCLE_TRACE=1`), to debug a failing input.
    trace: bool,
    /// The run damaged the zeros after a clean close's marker: bytes the
    /// open that trusts the pair leaves unread may come to lie right after
    /// a later marker, where a reader reports them as a torn tail (row 2),
    /// never as corruption.
    damaged_after_marker: bool,
}

/// What a log shows of its state: its live records, and each stream's next
/// sequence and start.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    live: Vec<ModelRecord>,
    streams: Vec<(u64, u64)>,
}

/// Prints each file of `fs` (its length and where its bytes end), to debug.
fn trace_files(what: &str, fs: &SimFs) {
    for (path, bytes) in fs.durable_files() {
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        eprintln!(
            "  {what}: {} {} bytes, data to {end}, from 64: {:02x?}",
            path.display(),
            bytes.len(),
            &bytes[64.min(bytes.len())..80.min(bytes.len())]
        );
    }
}

fn stream_name(stream: &[u8]) -> String {
    String::from_utf8_lossy(stream).into_owned()
}

/// The records `ops` write if every guard holds, or the first refusal:
/// the writer's rules (segments-format.md 3.2, 9.1) on the model's streams.
fn predict(
    records: &[ModelRecord],
    next_lsn: u64,
    ops: &[(Vec<u8>, LifeOp, Vec<u8>)],
) -> Result<Vec<ModelRecord>, Refusal> {
    let mut streams = Model::streams(records);
    let mut out = Vec::new();
    for (lsn, (name, op, payload)) in (next_lsn..).zip(ops) {
        let state = streams.get(name);
        let next = state.map_or(0, ModelStream::next);
        let floor = state.and_then(|s| s.snapshots.last().map(|(seq, _, _)| *seq));
        let latest = state.and_then(|s| s.snapshots.last().map(|(_, lsn, _)| *lsn));
        let (kind, seq, payload) = match op {
            LifeOp::Entry(expected) | LifeOp::Clear(expected) if !expected.holds(StreamSeq(next)) => {
                return Err(Refusal::Conflict);
            }
            LifeOp::Entry(_) => (RecordKind::Entry, next, payload.clone()),
            LifeOp::Clear(_) => (RecordKind::Tombstone, next, Vec::new()),
            LifeOp::Snapshot(seq) if *seq >= next || floor.is_some_and(|floor| floor > *seq) => {
                return Err(Refusal::SnapshotOutOfRange);
            }
            LifeOp::Snapshot(seq) => (RecordKind::Snapshot, *seq, payload.clone()),
            LifeOp::Prune(seq, _) if *seq > next => return Err(Refusal::PruneOutOfRange),
            LifeOp::Prune(seq, snapshots) => {
                let before = match snapshots {
                    PruneSnapshots::Before(before) => before.0.min(lsn),
                    PruneSnapshots::AllButLatest => latest.unwrap_or(0),
                };
                (RecordKind::Prune, *seq, before.to_le_bytes().to_vec())
            }
        };
        let record = ModelRecord { lsn, stream: name.clone(), seq, kind, payload };
        Model::apply(&mut streams, &record);
        out.push(record);
    }
    Ok(out)
}

impl Lifecycle {
    fn new(mut rng: SimRng) -> Lifecycle {
        let segment_bytes = *rng.pick(&LIFECYCLE_SEGMENT_BYTES);
        Lifecycle {
            rng,
            fs: SimFs::new(),
            log: None,
            segment_bytes,
            model: LifeModel { next_lsn: 1, ..LifeModel::default() },
            payloads: 0,
            trace: std::env::var_os("ANNALS_LIFECYCLE_TRACE").is_some(),
            damaged_after_marker: false,
        }
    }

    fn dir() -> &'static Path {
        Path::new(LIFECYCLE_DIR)
    }

    fn options(&self) -> Options {
        Options {
            segment_bytes: self.segment_bytes,
            record_bytes_max: Options::record_bytes_max_for(LIFECYCLE_SEGMENT_BYTES[0]),
            segment_preparation: SegmentPreparation::Inline,
            file_system: Arc::new(self.fs.clone()),
            // Deterministic: the target compacts when its input says so.
            compaction: crate::options::CompactionOptions { background: false, ..Default::default() },
            ..Options::default()
        }
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=65 => self.write_op(),
            66..=74 => self.compact(),
            75..=80 => self.clean_reopen(),
            81..=93 => self.crash(),
            _ => self.fill(),
        }
    }

    /// One operation that writes (or is refused, or finds nothing to write).
    fn write_op(&mut self) {
        match self.rng.below(100) {
            0..=27 => self.append(),
            28..=42 => self.snapshot(),
            43..=53 => self.batch(),
            54..=58 => self.clear(),
            59..=68 => self.prune(),
            69..=75 => self.snapshot_and_prune(),
            76..=87 => self.keep_snapshots(),
            _ => self.prune_older_than(),
        }
    }

    fn stream(&mut self) -> Vec<u8> {
        self.rng.pick(&LIFECYCLE_STREAMS).to_vec()
    }

    fn model_stream(&self, stream: &[u8]) -> ModelStream {
        Model::streams(&self.model.records).get(stream).cloned().unwrap_or_default()
    }

    /// A payload of up to `max` bytes: mostly small, sometimes large enough
    /// that a few fill a segment. It starts with its own number, so no two
    /// payloads are alike.
    fn payload(&mut self, max: usize) -> Vec<u8> {
        let len = match self.rng.below(8) {
            0 => 0,
            1..=4 => self.rng.below(64) as usize,
            5 | 6 => self.rng.below(max as u64 + 1) as usize,
            _ => *self.rng.pick(&[511, 512, 1000, 2000, max]),
        }
        .min(max);
        self.payloads += 1;
        let tag = self.payloads.to_le_bytes();
        (0..len).map(|i| if i < tag.len() { tag[i] } else { (i as u8).wrapping_mul(31) ^ tag[0] }).collect()
    }

    fn expectation(&mut self, stream: &[u8]) -> Expectation {
        let next = self.model_stream(stream).next();
        match self.rng.below(8) {
            0 => Expectation::NoStream,
            1 => Expectation::Exact(StreamSeq(next + 1)),
            2 | 3 => Expectation::Exact(StreamSeq(next)),
            _ => Expectation::Any,
        }
    }

    /// A sequence to snapshot through: mostly the stream's last one or just
    /// before it, sometimes its next one (refused) or below its start.
    fn snapshot_seq(&mut self, stream: &ModelStream) -> u64 {
        match self.rng.below(8) {
            0 => stream.next(),
            1 => self.rng.below(stream.next() + 1),
            2 => stream.next().saturating_sub(2),
            _ => stream.next().saturating_sub(1),
        }
    }

    /// A prune: mostly within the stream, sometimes past its next sequence
    /// (refused) or below its start; snapshots kept, dropped before one of
    /// them, all dropped, or all but the latest.
    fn prune_op(&mut self, stream: &ModelStream) -> LifeOp {
        let before = match self.rng.below(8) {
            0 => stream.next() + 1,
            1 => self.rng.below(stream.start + 1),
            _ => self.rng.range(stream.start, stream.next()),
        };
        let snapshots = match self.rng.below(7) {
            0 | 1 => PruneSnapshots::Before(Lsn::ZERO),
            2 => PruneSnapshots::Before(Lsn(u64::MAX)),
            3 => PruneSnapshots::AllButLatest,
            _ => {
                let lsns: Vec<u64> = stream.snapshots.iter().map(|(_, lsn, _)| *lsn).collect();
                let lsn = if lsns.is_empty() { self.model.next_lsn } else { *self.rng.pick(&lsns) };
                PruneSnapshots::Before(Lsn(lsn))
            }
        };
        LifeOp::Prune(before, snapshots)
    }

    fn append(&mut self) {
        let stream = self.stream();
        let expected = self.expectation(&stream);
        let payload = self.payload(LIFECYCLE_PAYLOAD_BYTES_MAX);
        self.submit(Call::Append, vec![(stream, LifeOp::Entry(expected), payload)]);
    }

    /// Several large appends to one stream: segments fill and are sealed,
    /// so that compaction has inputs.
    fn fill(&mut self) {
        let stream = self.stream();
        for _ in 0..self.rng.range(2, 6) {
            let len = self.rng.range(1000, LIFECYCLE_PAYLOAD_BYTES_MAX as u64) as usize;
            let mut payload = self.payload(0);
            payload.resize(len, 0xA5);
            payload[..8].copy_from_slice(&self.payloads.to_le_bytes());
            self.submit(Call::Append, vec![(stream.clone(), LifeOp::Entry(Expectation::Any), payload)]);
        }
    }

    fn snapshot(&mut self) {
        let stream = self.stream();
        let state = self.model_stream(&stream);
        let seq = self.snapshot_seq(&state);
        let payload = self.payload(LIFECYCLE_PAYLOAD_BYTES_MAX);
        self.submit(Call::Snapshot, vec![(stream, LifeOp::Snapshot(seq), payload)]);
    }

    fn clear(&mut self) {
        let stream = self.stream();
        if self.rng.chance(1, 2) {
            self.submit(Call::DeleteStream, vec![(stream, LifeOp::Clear(Expectation::Any), Vec::new())]);
        } else {
            let expected = self.expectation(&stream);
            self.submit(Call::Clear, vec![(stream, LifeOp::Clear(expected), Vec::new())]);
        }
    }

    fn prune(&mut self) {
        let stream = self.stream();
        let state = self.model_stream(&stream);
        let op = self.prune_op(&state);
        self.submit(Call::Prune, vec![(stream, op, Vec::new())]);
    }

    fn snapshot_and_prune(&mut self) {
        let stream = self.stream();
        let state = self.model_stream(&stream);
        let through = self.snapshot_seq(&state);
        let payload = self.payload(LIFECYCLE_PAYLOAD_BYTES_MAX);
        let ops = vec![
            (stream.clone(), LifeOp::Snapshot(through), payload),
            (stream, LifeOp::Prune(through + 1, PruneSnapshots::AllButLatest), Vec::new()),
        ];
        self.submit(Call::SnapshotAndPrune, ops);
    }

    /// Two to four operations in one atomic batch, on the same stream or
    /// several: entries, snapshots, clears, prunes, snapshot-and-prune pairs.
    fn batch(&mut self) {
        let mut ops = Vec::new();
        for _ in 0..self.rng.range(2, 4) {
            let stream = self.stream();
            let state = self.model_stream(&stream);
            let op = match self.rng.below(10) {
                0 => LifeOp::Clear(Expectation::Any),
                1 | 2 => self.prune_op(&state),
                3 => LifeOp::Snapshot(self.snapshot_seq(&state)),
                4 => {
                    let through = self.snapshot_seq(&state);
                    let payload = self.payload(LIFECYCLE_BATCH_PAYLOAD_BYTES_MAX);
                    ops.push((stream.clone(), LifeOp::Snapshot(through), payload));
                    LifeOp::Prune(through + 1, PruneSnapshots::AllButLatest)
                }
                _ => LifeOp::Entry(if self.rng.chance(1, 4) { self.expectation(&stream) } else { Expectation::Any }),
            };
            let payload = match op {
                LifeOp::Entry(_) | LifeOp::Snapshot(_) => self.payload(LIFECYCLE_BATCH_PAYLOAD_BYTES_MAX),
                LifeOp::Clear(_) | LifeOp::Prune(..) => Vec::new(),
            };
            ops.push((stream, op, payload));
        }
        self.submit(Call::Commit, ops);
    }

    /// Gives a request to the log by `call` and checks the answer against
    /// the model.
    fn submit(&mut self, call: Call, ops: Vec<(Vec<u8>, LifeOp, Vec<u8>)>) {
        let Some(log) = self.log.clone() else { return };
        let predicted = predict(&self.model.records, self.model.next_lsn, &ops);
        let crashed_before = self.fs.has_crashed();
        let one = |pending: Pending<Appended>| pending.wait().map(|appended| vec![appended]);
        let (stream, op, payload) = ops[0].clone();
        let result = match (call, op) {
            (Call::Append, LifeOp::Entry(expected)) => one(log.append(&stream, expected, payload)),
            (Call::Snapshot, LifeOp::Snapshot(seq)) => one(log.snapshot(&stream, StreamSeq(seq), payload)),
            (Call::Clear, LifeOp::Clear(expected)) => one(log.clear(&stream, expected)),
            (Call::DeleteStream, LifeOp::Clear(_)) => one(log.delete_stream(&stream)),
            (Call::Prune, LifeOp::Prune(seq, snapshots)) => one(log.prune(&stream, StreamSeq(seq), snapshots)),
            (Call::SnapshotAndPrune, LifeOp::Snapshot(seq)) => {
                one(log.snapshot_and_prune(&stream, StreamSeq(seq), payload))
            }
            _ => {
                let mut batch = Batch::new();
                for (stream, op, payload) in &ops {
                    batch = match op {
                        LifeOp::Entry(expected) => batch.append(stream, *expected, payload.clone()),
                        LifeOp::Snapshot(seq) => batch.snapshot(stream, StreamSeq(*seq), payload.clone()),
                        LifeOp::Clear(expected) => batch.clear(stream, *expected),
                        LifeOp::Prune(seq, snapshots) => batch.prune(stream, StreamSeq(*seq), *snapshots),
                    };
                }
                log.commit(batch).wait()
            }
        };
        let what =
            format!("{call:?} {:?}", ops.iter().map(|(s, o, p)| (stream_name(s), o, p.len())).collect::<Vec<_>>());
        self.settle(&what, predicted, result, crashed_before);
    }

    /// Checks an answer to a request against the model's prediction and
    /// takes what was acknowledged into the model.
    fn settle(
        &mut self,
        what: &str,
        predicted: Result<Vec<ModelRecord>, Refusal>,
        result: crate::error::Result<Vec<Appended>>,
        crashed_before: bool,
    ) {
        if self.trace {
            let answer = result.as_ref().map(|a| a.iter().map(|a| (a.lsn.0, a.seq.0)).collect::<Vec<_>>());
            eprintln!("{what} -> {answer:?} (crashed before: {crashed_before}, after: {})", self.fs.has_crashed());
        }
        match result {
            Ok(appended) => {
                assert!(!self.model.stopped, "fail-stop: {what} was acknowledged after an earlier failure");
                let records = predicted
                    .unwrap_or_else(|refusal| panic!("guards: {what} was acknowledged, the model expects {refusal:?}"));
                let got: Vec<(u64, u64)> = appended.iter().map(|a| (a.lsn.0, a.seq.0)).collect();
                let want: Vec<(u64, u64)> = records.iter().take(got.len()).map(|r| (r.lsn, r.seq)).collect();
                assert_eq!(
                    got, want,
                    "no lsn reuse: {what} was acknowledged at (lsn, seq) {got:?}, the model expects {want:?}"
                );
                self.model.next_lsn = records.last().map_or(self.model.next_lsn, |r| r.lsn + 1);
                self.model.records.extend(records);
                self.check("after an acknowledged write");
            }
            Err(
                error @ (Error::Conflict { .. } | Error::SnapshotOutOfRange { .. } | Error::PruneOutOfRange { .. }),
            ) => {
                if self.model.stopped {
                    return;
                }
                let refusal = match error {
                    Error::Conflict { .. } => Refusal::Conflict,
                    Error::SnapshotOutOfRange { .. } => Refusal::SnapshotOutOfRange,
                    _ => Refusal::PruneOutOfRange,
                };
                assert_eq!(
                    predicted.err(),
                    Some(refusal),
                    "guards: {what} was refused ({error}), the model says otherwise"
                );
            }
            Err(error @ (Error::Poisoned { .. } | Error::Io { .. } | Error::DiskFull { .. } | Error::Closed)) => {
                assert!(self.fs.has_crashed(), "fail-stop: {what} failed with no crash and no fault: {error}");
                if !self.model.stopped
                    && !crashed_before
                    && let Ok(records) = predicted
                {
                    self.model.in_doubt = Some(records);
                }
                self.model.stopped = true;
            }
            Err(error) => panic!("fail-stop: {what} failed unexpectedly: {error}"),
        }
    }

    /// `keep_snapshots` with a `keep` of 1 to 3 (0 sometimes: refused).
    fn keep_snapshots(&mut self) {
        let Some(log) = self.log.clone() else { return };
        let stream = self.stream();
        let keep = *self.rng.pick(&[0, 1, 1, 1, 2, 2, 3, 3]);
        let state = Model::streams(&self.model.records).get(&stream).cloned();
        let crashed_before = self.fs.has_crashed();
        let result = log.keep_snapshots(&stream, keep);
        if keep == 0 {
            assert!(
                matches!(result, Err(Error::InvalidArgument(_))),
                "guards: keep_snapshots keeping 0 was not refused: {result:?}"
            );
            return;
        }
        // The engine's rule (segments-format.md 9.1): prune through the
        // `keep`th newest live snapshot, and the snapshots before it.
        let prune = state.and_then(|state| {
            let newest_first: Vec<&(u64, u64, Vec<u8>)> = state.snapshots.iter().rev().take(keep + 1).collect();
            let (seq, lsn, _) = newest_first.get(keep - 1).filter(|_| newest_first.len() > keep)?;
            Some(LifeOp::Prune((seq + 1).max(state.start), PruneSnapshots::Before(Lsn(*lsn))))
        });
        self.settle_resolved(
            &format!("keep_snapshots({}, {keep})", stream_name(&stream)),
            stream,
            prune,
            result,
            crashed_before,
        );
    }

    /// `prune_older_than` at a time taken from the stream's own entries
    /// (exactly, a millisecond after or before), or at 0 or the end of time.
    fn prune_older_than(&mut self) {
        let Some(log) = self.log.clone() else { return };
        let stream = self.stream();
        let state = Model::streams(&self.model.records).get(&stream).cloned();
        let times: Vec<u64> = state
            .iter()
            .flat_map(|s| s.entries.iter())
            .map(|(lsn, _)| *self.model.times.get(lsn).expect("the time of every live entry is known"))
            .collect();
        let at = match self.rng.below(8) {
            0 => 0,
            1 => u64::MAX,
            _ if times.is_empty() => crate::commit::now_ms(),
            pick => {
                let time = times[self.rng.below(times.len() as u64) as usize];
                match pick % 3 {
                    0 => time + 1,
                    1 => time.saturating_sub(1),
                    _ => time,
                }
            }
        };
        let crashed_before = self.fs.has_crashed();
        let result = log.prune_older_than(&stream, at);
        // The engine's rule (segments-format.md 9.1): prune up to the first
        // live entry written at or after `at`, all of them if none is.
        let prune = state.and_then(|state| {
            let before = times.iter().position(|&time| time >= at).map_or(state.next(), |i| state.start + i as u64);
            (before > state.start).then_some(LifeOp::Prune(before, PruneSnapshots::Before(Lsn::ZERO)))
        });
        self.settle_resolved(
            &format!("prune_older_than({}, {at})", stream_name(&stream)),
            stream,
            prune,
            result,
            crashed_before,
        );
    }

    /// Checks the answer of a prune the log works out itself against the
    /// prune the model works out (`None`: nothing to write).
    fn settle_resolved(
        &mut self,
        what: &str,
        stream: Vec<u8>,
        prune: Option<LifeOp>,
        result: crate::error::Result<Option<Appended>>,
        crashed_before: bool,
    ) {
        let what = format!("{what} (the model prunes {prune:?})");
        if self.trace {
            eprintln!("{what} -> {result:?}");
        }
        match (prune, result) {
            (None, Ok(None)) => {}
            (None, Ok(Some(appended))) => panic!("guards: {what} wrote a prune at {appended:?}"),
            (Some(_), Ok(None)) if !self.model.stopped => panic!("guards: {what} wrote nothing"),
            (Some(_), Ok(None)) => {}
            (None, Err(error)) => {
                assert!(self.fs.has_crashed(), "fail-stop: {what} failed with nothing to write: {error}");
            }
            (Some(op), result) => {
                let predicted = predict(&self.model.records, self.model.next_lsn, &[(stream, op, Vec::new())]);
                self.settle(&what, predicted, result.map(|appended| appended.into_iter().collect()), crashed_before);
            }
        }
    }

    /// Compacts the log; a crash may interrupt it at any step.
    fn compact(&mut self) {
        let Some(log) = self.log.clone() else { return };
        // Records read before: their bytes must outlive the inputs.
        let held =
            if self.model.stopped { Vec::new() } else { log.read_all(Lsn::ZERO, usize::MAX).unwrap_or_default() };
        let result = log.compact();
        if self.trace {
            eprintln!("compact -> {result:?} (crashed: {})", self.fs.has_crashed());
        }
        let live = Model::live(&self.model.records);
        assert!(
            held.iter().map(super::model_record).eq(live.iter().take(held.len()).cloned()),
            "a record read before a compaction keeps its bytes"
        );
        match result {
            Ok(_) => {
                if !self.model.stopped {
                    self.check("after a compaction");
                    if !self.fs.has_crashed() {
                        self.check_no_leftovers("after a compaction");
                    }
                }
            }
            Err(error @ (Error::Poisoned { .. } | Error::Io { .. } | Error::DiskFull { .. } | Error::Closed)) => {
                assert!(self.fs.has_crashed(), "fail-stop: a compaction failed with no crash and no fault: {error}");
                if matches!(error, Error::Poisoned { .. }) {
                    self.model.stopped = true;
                }
                if !self.model.stopped {
                    // Failed before its commit: the log is as it was.
                    self.check_log("after a compaction failed before its commit");
                }
            }
            Err(error) => panic!("compaction: failed on an undamaged log: {error}"),
        }
    }

    /// Closes the log cleanly (a log that failed: as after a crash), checks
    /// the closed directory with a `LogReader`, and reopens it with another
    /// segment size.
    fn clean_reopen(&mut self) {
        let Some(log) = self.log.take() else { return };
        let closed = log.close().wait();
        drop(log);
        if self.model.stopped || self.fs.has_crashed() {
            self.fs.crash_now();
            self.recover(&self.fs.clone());
            return;
        }
        if let Err(error) = closed {
            panic!("fail-stop: closing a healthy log failed: {error}");
        }
        let reader = LogReader::open_with(Lifecycle::dir(), &self.options())
            .unwrap_or_else(|error| panic!("robust open: a LogReader of a cleanly closed log failed: {error}"));
        assert!(
            (reader.report().torn_tail.is_none() || self.damaged_after_marker) && reader.problems().is_empty(),
            "no false alarms: a LogReader finds a cleanly closed log damaged: {:?} {:?}",
            reader.report().torn_tail,
            reader.problems()
        );
        drop(reader);
        if self.rng.chance(1, 3) {
            self.damage_what_the_pair_vouches_for();
        }
        if self.rng.chance(1, 6) {
            let image = self.crash_in_open(self.fs.clone(), CrashMode::Drop);
            self.fs = image;
        }
        self.segment_bytes = *self.rng.pick(&LIFECYCLE_SEGMENT_BYTES);
        self.open_checked("after a clean close");
    }

    /// Damages a cleanly closed log where no acknowledged byte is: a clean
    /// close's pair vouches for the zeros after its marker (row 1c), and a
    /// slot of it is one copy of two. Either non-zero bytes in those zeros,
    /// past the marker's sector of the newest segment (which the open that
    /// trusts the pair does not read, and the session after it may seal
    /// into the segment: row 1d), or one flipped bit in one state slot (the
    /// pair is gone; the other slot still says where the log ends). Every
    /// open after it must read exactly what the model says, as if nothing
    /// had happened.
    fn damage_what_the_pair_vouches_for(&mut self) {
        let dir = Lifecycle::dir();
        let Ok(read) = read_state(&self.fs, dir) else { return };
        let Some(pair) = read.clean_close_pair() else { return };
        let (path, from, to) = if self.rng.chance(1, 2) {
            let slot = self.rng.below(2) as usize;
            let bit = self.rng.below(STATE_SLOT_BYTES as u64 * 8) as usize;
            let at = slot * STATE_SLOT_BYTES + bit / 8;
            (dir.join(STATE_FILE_NAME), at, at + 1)
        } else {
            let path = dir.join(segment_file_name(pair.newest_segment_lsn));
            let Ok(file) = self.fs.open(&path, false) else { return };
            let Ok(map) = file.map() else { return };
            let bytes = map.slice(0, map.len());
            let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            let after_marker = end.div_ceil(512) * 512;
            if after_marker >= bytes.len() {
                return;
            }
            let len = self.rng.range(1, 64.min(bytes.len() - after_marker) as u64) as usize;
            let from = after_marker + self.rng.below((bytes.len() - after_marker - len) as u64 + 1) as usize;
            (path, from, from + len)
        };
        let Ok(file) = self.fs.open(&path, true) else { return };
        let mut bytes = vec![0u8; to - from];
        if file.read_at(&mut bytes, from as u64).is_err() {
            return;
        }
        if path.ends_with(STATE_FILE_NAME) {
            bytes[0] ^= 1 << self.rng.below(8);
        } else {
            self.damaged_after_marker = true;
            bytes.iter_mut().for_each(|byte| *byte = self.rng.below(255) as u8 + 1);
        }
        if self.trace {
            eprintln!("damage after the clean close: {} bytes at {from} of {}", to - from, path.display());
        }
        file.write_at(&bytes, from as u64).expect("the simulated disk takes a write");
        file.sync_data().expect("the simulated disk takes a sync");
        if let Ok(StateRead::Found { .. }) = read_state(&self.fs, dir) {
            return;
        }
        panic!("the simulator damaged both state slots");
    }

    /// Freezes the disk at a point in the next few operations (writes,
    /// retention, a compaction, a clean close, or none: a crash now), then
    /// recovers crash images of it.
    fn crash(&mut self) {
        let what = self.rng.below(8);
        // A compaction takes tens of operations (its reads are not
        // counted: each output's writes, syncs and rename, the directory,
        // both state slots, each unlink); a write takes two to a few (a
        // rollover: the seal, the spare, its publication, the state file).
        let after = if what <= 3 { self.rng.range(1, 40) } else { self.rng.range(1, 10) };
        if self.trace {
            eprintln!("crash after {after} operations");
        }
        self.fs.crash_after(after);
        match what {
            0 => {}
            1 | 2 => self.compact(),
            3 => {
                self.prune();
                self.compact();
            }
            4 => {
                if let Some(log) = self.log.clone() {
                    let _ = log.close().wait();
                }
            }
            _ => {
                for _ in 0..self.rng.range(1, 4) {
                    if self.rng.chance(1, 4) { self.compact() } else { self.write_op() }
                }
            }
        }
        self.fs.crash_now();
        drop(self.log.take());
        self.recover(&self.fs.clone());
    }

    /// Recovers one or two crash images of `crashed`, each checked against
    /// the same model; the run goes on with the last.
    fn recover(&mut self, crashed: &SimFs) {
        let images = 1 + self.rng.below(2);
        for i in 0..images {
            let mode = *self.rng.pick(&CrashMode::ALL);
            let mut image = crashed.crash_image(mode, &mut self.rng);
            if self.rng.chance(1, 4) {
                image = self.crash_in_open(image, mode);
            }
            self.fs = image;
            self.segment_bytes = *self.rng.pick(&LIFECYCLE_SEGMENT_BYTES);
            if i + 1 < images {
                let model = self.model.clone();
                self.open_checked(&format!("after a crash ({} image)", mode.name()));
                drop(self.log.take());
                self.model = model;
            } else {
                self.open_checked(&format!("after a crash ({} image)", mode.name()));
            }
        }
    }

    /// Opens the log on `image` with the disk freezing a few operations
    /// into the open (while it deletes what a compaction left, rewrites the
    /// state file or the tail, writes a gap), and returns an image of that
    /// crash, in any mode: unsynced sectors may read as zeros or garbage
    /// (recovery never rewrites acknowledged bytes without a synced copy
    /// first: `tests/fuzz_findings.rs`).
    fn crash_in_open(&mut self, image: SimFs, mode: CrashMode) -> SimFs {
        const MODES: [CrashMode; 7] = CrashMode::ALL;
        let after = self.rng.range(1, 12);
        if self.trace {
            trace_files("before the open", &image);
        }
        image.crash_after(after);
        self.fs = image.clone();
        self.segment_bytes = *self.rng.pick(&LIFECYCLE_SEGMENT_BYTES);
        let opened = Log::open(Lifecycle::dir(), self.options());
        image.crash_now(); // before a log that opened closes itself
        if self.trace {
            eprintln!(
                "a crash {after} operations into an open of a {} image: {:?}",
                mode.name(),
                opened.as_ref().map(|log| log.last_lsn())
            );
        }
        drop(opened);
        let again = *self.rng.pick(&MODES);
        let image = image.crash_image(again, &mut self.rng);
        if self.trace {
            trace_files(&format!("after a crash in the open ({} image)", again.name()), &image);
        }
        image
    }

    /// What `log` shows of the streams of the run.
    fn observe(log: &Log) -> Observed {
        let live = log
            .read_all(Lsn::ZERO, usize::MAX)
            .unwrap_or_else(|error| panic!("no corrupt reads: read_all failed: {error}"))
            .iter()
            .map(super::model_record)
            .collect();
        let streams = LIFECYCLE_STREAMS
            .iter()
            .map(|stream| {
                let start = match log.read_stream_from(stream, StreamSeq(0)) {
                    Ok(_) => 0,
                    Err(Error::Pruned { start, .. }) => start.0,
                    Err(error) => panic!("no corrupt reads: read_stream_from failed: {error}"),
                };
                (log.next_seq(stream).map_or(0, |seq| seq.0), start)
            })
            .collect();
        Observed { live, streams }
    }

    /// What the model says a log of `records` shows.
    fn expected(records: &[ModelRecord]) -> Observed {
        let streams = Model::streams(records);
        Observed {
            live: Model::live(records),
            streams: LIFECYCLE_STREAMS
                .iter()
                .map(|stream| streams.get(*stream).map_or((0, 0), |s| (s.next(), s.start)))
                .collect(),
        }
    }

    /// Opens the log (after a `LogReader` of the directory as it is), takes
    /// the operation a crash interrupted into the model if the log holds it,
    /// and checks everything.
    fn open_checked(&mut self, context: &str) {
        let dir = Lifecycle::dir();
        let first = !self.fs.list(dir).is_ok_and(|names| !names.is_empty());
        let before = (!first).then(|| {
            let ops = self.fs.counts().ops;
            let reader = LogReader::open_with(dir, &self.options())
                .unwrap_or_else(|error| panic!("robust open: a LogReader {context} failed: {error}"));
            let records = reader
                .read_all(Lsn::ZERO, usize::MAX)
                .unwrap_or_else(|error| panic!("no corrupt reads: a LogReader {context}: {error}"));
            assert_eq!(self.fs.counts().ops, ops, "a LogReader {context} wrote to the directory");
            records
        });
        let log = Log::open(dir, self.options()).unwrap_or_else(|error| panic!("robust open: {context}: {error}"));
        self.check_no_leftovers(context);
        let observed = Lifecycle::observe(&log);
        let resume = log.last_lsn().map_or(0, |lsn| lsn.0) + 1;
        if self.trace {
            let files = self.fs.list(dir).unwrap_or_default();
            eprintln!(
                "open {context}, segment_bytes {}: {} live records, resumes at {resume}, in doubt {:?}, files {files:?}",
                self.segment_bytes,
                observed.live.len(),
                self.model.in_doubt.as_ref().map(|r| r.iter().map(ModelRecord::describe).collect::<Vec<_>>())
            );
        }
        let without = Lifecycle::expected(&self.model.records);
        let in_doubt = self.model.in_doubt.take().unwrap_or_default();
        let mut with = self.model.records.clone();
        with.extend(in_doubt.iter().cloned());
        // The interrupted operation is in the log if the log shows it, or,
        // when it changed nothing a reader sees, if the log went on past
        // its LSNs.
        let shows_without = observed == without;
        let shows_with = !in_doubt.is_empty() && observed == Lifecycle::expected(&with);
        let adopted = if shows_without != shows_with {
            shows_with
        } else if shows_with {
            in_doubt.last().is_some_and(|r| r.lsn < resume)
        } else {
            let want = &without.live;
            let lost = want.iter().find(|r| !observed.live.contains(r));
            let extra = observed.live.iter().find(|r| !want.contains(r));
            let dead = observed.live.iter().find(|r| self.model.dead.contains(&r.lsn));
            if let Some(record) = dead {
                panic!("nothing pruned or cleared comes back: {context}: {} reads again", record.describe());
            }
            panic!(
                "acknowledged records, byte for byte: {context}: lost {:?}, extra {:?}; streams (next, start) {:?}, model {:?}",
                lost.map(ModelRecord::describe),
                extra.map(ModelRecord::describe),
                observed.streams,
                without.streams
            );
        };
        if adopted {
            self.model.records = with;
        }
        if let Some(last) = self.model.records.last() {
            assert!(
                resume > last.lsn,
                "no lsn reuse: {context} the log resumes at lsn {resume}, lsn {} was acknowledged",
                last.lsn
            );
        }
        if let Some(before) = before {
            let after = log.read_all(Lsn::ZERO, usize::MAX).expect("read_all worked a moment ago");
            assert!(
                before == after,
                "LogReader reads what Log reads: {context} a LogReader opened before the Log read {} records, the Log {}",
                before.len(),
                after.len()
            );
        }
        self.model.next_lsn = resume;
        self.model.stopped = false;
        self.log = Some(log);
        self.check(context);
    }

    /// Property: after an open no file a compaction (or a rollover) left
    /// is in the directory.
    fn check_no_leftovers(&self, context: &str) {
        let dir = Lifecycle::dir();
        let names = self.fs.list(dir).expect("the directory lists");
        let state = match crate::state::read_state(&self.fs, dir) {
            Ok(crate::state::StateRead::Found { state, .. }) => state,
            other => panic!("no leftovers: {context} the state file reads as {other:?}"),
        };
        for name in &names {
            let leftover = name.ends_with(crate::segment::COMPACTING_SUFFIX)
                || name == crate::state::STATE_TEMP_FILE_NAME
                || (name.starts_with(crate::segment::SPARE_PREFIX) && name.ends_with(crate::segment::SPARE_SUFFIX))
                || crate::segment::parse_compacted_file_name(name).is_some_and(|(first, generation)| {
                    generation != state.compaction_generation
                        || first < state.oldest_segment_lsn
                        || first >= state.compacted_end_lsn
                })
                || crate::segment::parse_segment_file_name(name).is_some_and(|first| {
                    first < state.oldest_segment_lsn
                        || (state.compaction_generation > 0 && first < state.compacted_end_lsn)
                });
            assert!(!leftover, "no leftovers: {context} {name} is in the directory (state {state:?}, files {names:?})");
        }
    }

    /// Checks the open log and a `LogReader` of its directory against the model.
    fn check(&mut self, context: &str) {
        if self.model.stopped {
            return;
        }
        self.check_log(context);
        self.check_reader(context);
    }

    /// Checks the open log against the model: live records, times, pages,
    /// reads by LSN, streams.
    fn check_log(&mut self, context: &str) {
        let Some(log) = self.log.clone() else { return };
        let read = log
            .read_all(Lsn::ZERO, usize::MAX)
            .unwrap_or_else(|error| panic!("no corrupt reads: {context} read_all failed: {error}"));
        let got: Vec<ModelRecord> = read.iter().map(super::model_record).collect();
        if let Some(record) = got.iter().find(|r| self.model.dead.contains(&r.lsn)) {
            panic!("nothing pruned or cleared comes back: {context}: {} reads again", record.describe());
        }
        let want = Model::live(&self.model.records);
        if got != want {
            let at = got.iter().zip(&want).position(|(g, w)| g != w).unwrap_or(got.len().min(want.len()));
            panic!(
                "live records, byte for byte: {context}: record {at} of {} reads as {:?}, the model has {:?} of {}",
                got.len(),
                got.get(at).map(ModelRecord::describe),
                want.get(at).map(ModelRecord::describe),
                want.len()
            );
        }
        // Times: kept from the first read on, never decreasing with the LSN.
        let mut previous = 0;
        for record in &read {
            let time = *self.model.times.entry(record.lsn.0).or_insert(record.timestamp_ms);
            assert_eq!(time, record.timestamp_ms, "times kept: {context}: lsn {} changed its time", record.lsn.0);
            assert!(
                time >= previous,
                "times never decrease: {context}: lsn {} is older than the one before",
                record.lsn.0
            );
            previous = time;
        }
        // What stopped being live stays dead.
        let live: BTreeSet<u64> = want.iter().map(|r| r.lsn).collect();
        for record in &self.model.records {
            if matches!(record.kind, RecordKind::Entry | RecordKind::Snapshot) && !live.contains(&record.lsn) {
                self.model.dead.insert(record.lsn);
            }
        }
        // By pages, as a cursor tails the log.
        let page = 1 + (want.len() / 3).max(1);
        let mut after = Lsn::ZERO;
        let mut paged = Vec::new();
        loop {
            let records = log
                .read_all(after, page)
                .unwrap_or_else(|error| panic!("live records by page: {context} read_all after {after:?}: {error}"));
            let Some(last) = records.last() else { break };
            after = last.lsn;
            paged.extend(records);
        }
        assert!(paged == read, "live records by page: {context}: read page by page, the log reads differently");
        // By LSN: the live ones read, the dead ones do not.
        for record in want.iter().take(3).chain(want.iter().rev().take(3)) {
            let by_lsn = log.read_lsn(Lsn(record.lsn)).map(|r| r.map(|r| super::model_record(&r)));
            assert!(
                matches!(&by_lsn, Ok(Some(r)) if r == record),
                "read by lsn: {context}: lsn {} reads as {by_lsn:?}",
                record.lsn
            );
        }
        for &lsn in self.model.dead.iter().rev().take(6) {
            match log.read_lsn(Lsn(lsn)) {
                Ok(None) | Err(Error::Trimmed { .. }) => {}
                other => panic!("nothing pruned or cleared comes back: {context}: read_lsn({lsn}) gives {other:?}"),
            }
        }
        self.check_streams(&log, context);
    }

    /// Each stream's reads, next sequence and start against the model.
    fn check_streams(&self, log: &Log, context: &str) {
        let streams = Model::streams(&self.model.records);
        for stream in LIFECYCLE_STREAMS {
            let name = stream_name(stream);
            let want = streams.get(stream).cloned().unwrap_or_default();
            let read =
                log.read_stream(stream).unwrap_or_else(|error| panic!("stream reads: {context} {name}: {error}"));
            let snapshot = read.snapshot.as_ref().map(|s| (s.seq.0, s.lsn.0, s.payload.to_vec()));
            assert_eq!(snapshot, want.snapshots.last().cloned(), "stream reads: {context} {name}: latest snapshot");
            let entries: Vec<(u64, Vec<u8>)> = read.entries.iter().map(|r| (r.lsn.0, r.payload.to_vec())).collect();
            assert!(
                entries == want.entries_after_snapshot(),
                "stream reads: {context} {name}: entries after the snapshot"
            );
            assert_eq!(read.next_seq.0, want.next(), "next_seq: {context} {name} (read_stream)");
            assert_eq!(log.next_seq(stream).map(|seq| seq.0).ok(), Some(want.next()), "next_seq: {context} {name}");
            let from_start = log.read_stream_from(stream, StreamSeq(want.start)).unwrap_or_else(|error| {
                panic!("stream reads: {context} {name} from its start {}: {error}", want.start)
            });
            let from_start: Vec<(u64, u64, Vec<u8>)> =
                from_start.iter().map(|r| (r.seq.0, r.lsn.0, r.payload.to_vec())).collect();
            let want_from_start: Vec<(u64, u64, Vec<u8>)> =
                (want.start..).zip(&want.entries).map(|(seq, (lsn, payload))| (seq, *lsn, payload.clone())).collect();
            assert!(from_start == want_from_start, "stream reads: {context} {name}: entries from its start");
            if want.start > 0 {
                for from in [0, want.start - 1] {
                    match log.read_stream_from(stream, StreamSeq(from)) {
                        Err(Error::Pruned { start, .. }) if start.0 == want.start => {}
                        other => panic!(
                            "Pruned below the start: {context} {name} starts at {}, a read from {from} gives {other:?}",
                            want.start
                        ),
                    }
                }
            }
            let mut visited = Vec::new();
            let count = log
                .visit_stream(stream, |record| visited.push(record.to_record()))
                .unwrap_or_else(|error| panic!("stream reads: {context} {name}: visit_stream: {error}"));
            assert!(
                count == visited.len() && read.snapshot.iter().chain(&read.entries).eq(visited.iter()),
                "stream reads: {context} {name}: visit_stream differs from read_stream"
            );
            let latest = log.latest(stream).unwrap_or_else(|error| panic!("stream reads: {context} {name}: {error}"));
            assert_eq!(
                latest.map(|r| (r.lsn.0, r.payload.to_vec())),
                want.entries.last().cloned(),
                "stream reads: {context} {name}: latest entry"
            );
        }
    }

    /// A `LogReader` of the directory reads exactly what the log reads.
    fn check_reader(&self, context: &str) {
        let Some(log) = &self.log else { return };
        let dir = Lifecycle::dir();
        let reader = LogReader::open_with(dir, &self.options())
            .unwrap_or_else(|error| panic!("robust open: {context} a LogReader of the open log failed: {error}"));
        let theirs = reader.read_all(Lsn::ZERO, usize::MAX).expect("a LogReader reads");
        let ours = log.read_all(Lsn::ZERO, usize::MAX).expect("the log reads");
        assert!(
            theirs == ours,
            "LogReader reads what Log reads: {context}: {} records against {}",
            theirs.len(),
            ours.len()
        );
        assert_eq!(
            Some(reader.streams("")),
            log.streams("").ok(),
            "LogReader reads what Log reads: {context}: streams"
        );
        for stream in LIFECYCLE_STREAMS {
            // A stream's `since` names its incarnation within one open: a
            // reader's, rebuilt from compacted segments, may name the same
            // incarnation by another record (its base), so it is left out.
            let unnamed = |read: crate::StreamRead| crate::StreamRead { since: None, ..read };
            let theirs = reader.read_stream(stream).map(unnamed).map_err(|e| e.to_string());
            let ours = log.read_stream(stream).map(unnamed).map_err(|e| e.to_string());
            assert!(theirs == ours, "LogReader reads what Log reads: {context}: stream {}", stream_name(stream));
            let start = ours.as_ref().map_or(0, |_| match log.read_stream_from(stream, StreamSeq(0)) {
                Err(Error::Pruned { start, .. }) => start.0,
                _ => 0,
            });
            if start > 0 {
                assert!(
                    matches!(reader.read_stream_from(stream, StreamSeq(start - 1)), Err(Error::Pruned { start: s, .. }) if s.0 == start),
                    "LogReader reads what Log reads: {context}: stream {} is not Pruned below {start}",
                    stream_name(stream)
                );
            }
        }
    }
}
