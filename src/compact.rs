//! Compaction: the sealed segments at the head of the log are rewritten with
//! only their live records, and their disk is reclaimed.
//!
//! ```text
//! inputs: [compacted segments of generation G] [sealed segments ...]   active
//!            │ 1. read every frame, checksum checked (nothing unlocked)
//!            │ 2. decide what is live (index read lock), add stream bases
//!            │ 3. write NNN-(G+1).seg.compacting, sync, rename, sync dir
//!            │ 4. commit: both slots of the state file name generation G+1
//!            │ 5. swap the index (write lock), 6. unlink the inputs, sync dir
//! outputs: [compacted segments of generation G+1]                      active
//! ```
//!
//! Only a prefix is compacted, so every record older than a tombstone or a
//! prune that is dropped is an input too, and is dropped with it: nothing it
//! hid can come back. Records keep their LSNs; a stream whose first records
//! were dropped gets a base (frame kind 8) at the LSN of the first one, so
//! recovery's stream checks hold on what remains. The commit point is the
//! state file (segments-format.md, section 9.2): a crash before it leaves the
//! inputs as the log and the outputs as leftovers; after it, the reverse.
//! Open deletes whichever set is not the log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::commit::{Shared, Writer};
use crate::error::{CorruptionKind, Error, Result};
use crate::frame::{
    FRAME_HEADER_BYTES, FrameMeta, OP_HEADER_BYTES, OpRef, RecordKind, decode_frame_anywhere, decode_frame_at,
    encode_frame,
};
use crate::fs::File;
use crate::index::{SegmentEntry, StreamCursor, WrittenFrame};
use crate::segment::{
    COMPACTING_SUFFIX, FORMAT_VERSION, SEGMENT_BYTES_MIN, SEGMENT_HEADER_BYTES, Segment, SegmentHeader,
    compacted_file_name,
};
use crate::sync::{Mutex, MutexGuard};
use crate::types::{Lsn, StreamSeq};

/// What one compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CompactionReport {
    /// The compaction generation committed (0: nothing was compacted).
    pub generation: u64,
    /// Segments read (compacted and sealed).
    pub inputs: usize,
    /// Bytes of those files.
    pub input_bytes: u64,
    /// Compacted segments written.
    pub outputs: usize,
    /// Bytes of those files.
    pub output_bytes: u64,
    /// Live entries and snapshots copied.
    pub records_kept: u64,
    /// Operations dropped: records no longer live, tombstones, prunes and
    /// old bases.
    pub operations_dropped: u64,
    /// Stream bases written, for streams whose first records were dropped.
    pub bases_written: u64,
    /// Bytes of disk given back: input files less output files.
    pub reclaimed_bytes: u64,
    /// Input files whose removal failed after the commit: they are no
    /// longer part of the log, and the next open removes them.
    pub leftovers: Vec<PathBuf>,
    /// Log-wide retention (`max_age_ms`, `max_bytes`): every record below
    /// this LSN was dropped, live or not (0: none).
    pub trimmed_before: Lsn,
}

/// What a compaction is asked to do.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Plan {
    /// Drop every record below this LSN, live or not: log-wide retention.
    /// Always the first LSN of a segment, at most the active one's.
    pub trim_before: Lsn,
    /// Bytes per second to read and write, at most (0: no limit).
    pub bytes_per_second: u64,
}

/// Keeps a compaction to a rate of bytes per second, by sleeping; ends it
/// once the log closes.
struct Throttle<'a> {
    started: Instant,
    bytes: u64,
    rate: u64,
    compactor: &'a Compactor,
}

impl Throttle<'_> {
    fn new(rate: u64, compactor: &Compactor) -> Throttle<'_> {
        Throttle { started: Instant::now(), bytes: 0, rate, compactor }
    }

    /// Counts `bytes` more, and waits until they are within the rate.
    ///
    /// # Errors
    /// [`Error::Closed`] once the log closes: the close waits for the
    /// compaction to end, so it ends at the next pass, asleep or not.
    fn pass(&mut self, bytes: u64) -> Result<()> {
        let compactor = self.compactor;
        if self.rate == 0 {
            return if compactor.stopped() { Err(Error::Closed) } else { Ok(()) };
        }
        self.bytes += bytes;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        let wait = due.saturating_sub(self.started.elapsed());
        compactor.pause(wait)
    }
}

/// The compaction the log's options call for now, if any: log-wide
/// retention to apply, or enough dead bytes in the sealed segments.
pub(crate) fn plan(shared: &Shared, background: bool) -> Option<Plan> {
    let options = &shared.options;
    let index = shared.index.read();
    let segments = index.segments();
    let sealed = segments.len().checked_sub(1)?;
    let now = shared.fs.now_ms();
    // Log-wide retention: whole sealed segments from the oldest on.
    let mut cut = 0;
    if let Some(max_age_ms) = options.max_age_ms {
        let cutoff = now.saturating_sub(max_age_ms);
        cut = cut.max(segments[..sealed].iter().take_while(|entry| entry.max_timestamp_ms() < cutoff).count());
    }
    if let Some(max_bytes) = options.max_bytes {
        let mut total: u64 = segments.iter().map(|entry| entry.segment.header.segment_bytes).sum();
        let mut by_size = 0;
        while total > max_bytes && by_size < sealed {
            total -= segments[by_size].segment.header.segment_bytes;
            by_size += 1;
        }
        cut = cut.max(by_size);
    }
    // Registered cursors hold back what they have not read (unless released).
    cut = cut.min(crate::cursors::trim_limit(&index, options.cursor_lag_bytes_max));
    let trim_before = if cut > 0 { segments[cut].segment.header.first_lsn } else { Lsn(0) };
    let written: u64 = segments[..sealed].iter().map(|entry| entry.written_bytes()).sum();
    let live: u64 = segments[..sealed].iter().map(|entry| entry.live_bytes()).sum();
    let dead = written.saturating_sub(live);
    let enough_dead = dead as f64 >= options.compaction.dead_ratio * written as f64
        && dead >= options.segment_bytes.min(crate::segment::FIRST_SEGMENT_BYTES);
    // On demand, anything dead is worth reclaiming; but a prefix with
    // nothing dead would be rewritten as it is, for nothing.
    if cut == 0 && (dead == 0 || (background && !enough_dead)) {
        return None;
    }
    let bytes_per_second = if background { options.compaction.bytes_per_second } else { 0 };
    Some(Plan { trim_before, bytes_per_second })
}

/// Wakes the background compactor (after a rollover) and stops it (at close).
pub(crate) struct Compactor {
    state: Mutex<CompactorState>,
    wake: crate::sync::Condvar,
}

#[derive(Default)]
struct CompactorState {
    poked: bool,
    stopped: bool,
}

impl Compactor {
    pub(crate) fn new() -> Compactor {
        Compactor { state: Mutex::new(CompactorState::default()), wake: crate::sync::Condvar::new() }
    }

    /// Asks the compactor to look now: a segment was sealed.
    pub(crate) fn poke(&self) {
        self.state.lock().poked = true;
        self.wake.notify_all();
    }

    /// Stops the compactor, and returns once no compaction touches the
    /// directory: a compaction under way ends at its next step (a pass of
    /// its throttle, or the writer it waits for at its decision or its
    /// commit), removes what it wrote and leaves the log as it was; one
    /// that committed has removed its inputs. Called by the close, holding
    /// the writer, before it releases the directory's lock: a compaction
    /// left running would remove its outputs by name after a new opener
    /// had compacted into the same generation's files.
    pub(crate) fn stop(&self, shared: &Shared) {
        self.state.lock().stopped = true;
        self.wake.notify_all();
        drop(shared.compaction.lock());
    }

    /// Whether the log has closed (or is closing).
    fn stopped(&self) -> bool {
        self.state.lock().stopped
    }

    /// Waits `wait`, or until the log closes: then [`Error::Closed`].
    fn pause(&self, wait: Duration) -> Result<()> {
        let deadline = Instant::now() + wait;
        let mut state = self.state.lock();
        while !state.stopped && Instant::now() < deadline {
            let _ = self.wake.wait_until(&mut state, deadline);
        }
        if state.stopped { Err(Error::Closed) } else { Ok(()) }
    }

    /// The background compactor's thread: looks after every rollover and
    /// every `interval_ms`, and compacts when [`plan`] says so, within the
    /// I/O budget. A failure waits for the next look (a damaged input, for
    /// one, fails every try until the log is repaired).
    pub(crate) fn run(shared: &Shared, writer: &Mutex<Writer>) {
        let interval = Duration::from_millis(shared.options.compaction.interval_ms);
        loop {
            {
                let mut state = shared.compactor.state.lock();
                if !state.stopped && !state.poked {
                    let _ = shared.compactor.wake.wait_until(&mut state, Instant::now() + interval);
                }
                if state.stopped {
                    return;
                }
                state.poked = false;
            }
            if let Some(plan) = plan(shared, true)
                && let Err(error) = compact(shared, writer, plan)
            {
                crate::telemetry::background_compaction_failed(&error);
            }
        }
    }
}

/// Compacts every sealed segment of the log: the whole prefix before the
/// active one. Runs beside appends; only the commit takes the writer.
pub(crate) fn compact(shared: &Shared, writer: &Mutex<Writer>, plan: Plan) -> Result<CompactionReport> {
    let _one_at_a_time = shared.compaction.lock();
    let started = Instant::now();
    let inputs: Vec<Segment> = {
        let index = shared.index.read();
        let segments = index.segments();
        segments[..segments.len().saturating_sub(1)].iter().map(|entry| entry.segment.clone()).collect()
    };
    let Some(next_segment) = shared.index.read().segments().get(inputs.len()).map(|e| e.segment.header.first_lsn)
    else {
        return Ok(CompactionReport::default());
    };
    if inputs.is_empty() {
        return Ok(CompactionReport::default());
    }
    let bytes: Vec<Bytes> = {
        let index = shared.index.read();
        let ends = index.segments()[..inputs.len()].iter().map(|entry| entry.end_offset);
        inputs.iter().zip(ends).map(|(segment, end)| segment.map.slice(0, end)).collect()
    };
    let mut throttle = Throttle::new(plan.bytes_per_second, &shared.compactor);
    let read = read_inputs(&inputs, &bytes, &mut throttle)?;
    // What is live is decided with the writer held, after a sync: a record
    // is dropped only for a tombstone or prune that is durable (one a power
    // cut can take would otherwise take the record it removed along with
    // it), and nothing changes while the decision is made.
    // The trim too: a cursor committed since the plan holds it back.
    let (output, dropped, bases, generation, trim_before) = {
        let mut writer = writer_unless_closed(shared, writer)?;
        writer.check_open()?;
        writer.sync_for_compaction()?;
        let trim_before = held_back(shared, plan.trim_before);
        let (output, dropped, bases) = decide(shared, &read, trim_before)?;
        (output, dropped, bases, writer.compaction_generation() + 1, trim_before)
    };
    // Nothing is written yet: a failure here leaves the log as it was.
    clear_generation(shared, generation)?;
    let cap = shared.options.segment_bytes.max(inputs.iter().map(|s| s.header.segment_bytes).max().unwrap_or(0));
    let log_id = &inputs[0].header.log_id;
    let written = write_outputs(shared, log_id, (generation, next_segment), (&read, &output), cap, &mut throttle);
    let (segments, moved) = match written {
        Ok(written) => written,
        Err(error) => {
            remove_outputs(shared, generation);
            return Err(error);
        }
    };
    let oldest = segments.first().map_or(next_segment, |(segment, _)| segment.header.first_lsn);
    let mut report = CompactionReport {
        generation,
        inputs: inputs.len(),
        input_bytes: inputs.iter().map(|s| s.header.segment_bytes).sum(),
        outputs: segments.len(),
        output_bytes: segments.iter().map(|(s, _)| s.header.segment_bytes).sum(),
        records_kept: (output.len() as u64) - bases,
        operations_dropped: dropped,
        bases_written: bases,
        trimmed_before: trim_before,
        ..CompactionReport::default()
    };
    report.reclaimed_bytes = report.input_bytes.saturating_sub(report.output_bytes);
    {
        let mut writer = match writer_unless_closed(shared, writer) {
            Ok(writer) => writer,
            Err(error) => {
                remove_outputs(shared, generation);
                return Err(error);
            }
        };
        // A cursor committed below the trim while the output was written
        // (the writer free) holds back records the output left out: give
        // this compaction up; the next one plans with the cursor.
        if held_back(shared, trim_before) < trim_before {
            remove_outputs(shared, generation);
            return Ok(CompactionReport::default());
        }
        // Every record live now was live when the output was decided (no
        // record comes back to life), so each is in the output.
        // Log-wide retention drops the segments below the trim, live records and all.
        let trimmed = inputs.iter().take_while(|input| input.header.first_lsn < trim_before).count();
        let live = match shared.index.read().live_locations_before(inputs.len()) {
            Ok(live) => live,
            Err(error) => {
                remove_outputs(shared, generation);
                return Err(error);
            }
        };
        if let Some(missing) = live.iter().find(|at| at.0 >= trimmed && moved.get(**at).is_none()) {
            remove_outputs(shared, generation);
            return Err(Error::corruption(
                &inputs[missing.0].path,
                missing.1 as u64,
                CorruptionKind::IndexMismatch("compaction would drop a live record".to_owned()),
            ));
        }
        if let Err(error) = writer.check_open() {
            remove_outputs(shared, generation);
            return Err(error);
        }
        // Whether a failed commit reached the disk is unknown: the log is
        // poisoned, and the next open keeps whichever set the state file
        // names. Nothing is removed here.
        writer.commit_compaction(oldest, generation, next_segment, trim_before)?;
        let entries: Vec<SegmentEntry> =
            segments.into_iter().map(|(segment, frames)| SegmentEntry::compacted(segment, &frames)).collect();
        let mut index = shared.index.write();
        index.replace_prefix(inputs.len(), entries, |from| moved.get(from));
        index.trim(trim_before);
    }
    for input in &inputs {
        if shared.fs.remove(&input.path).is_err() {
            report.leftovers.push(input.path.clone());
        }
    }
    let _ = shared.fs.sync_dir(&shared.dir);
    // An image of the inputs is stale now: the next one covers the outputs.
    shared.image.poke();
    crate::telemetry::compacted(&report, started.elapsed());
    shared.disk_bytes.set(|| crate::telemetry::log_file_bytes(&shared.index.read()));
    Ok(report)
}

/// One operation of an input, as the first pass found it: where it is and
/// what the decision needs, without a copy of its bytes (compaction reads
/// hundreds of megabytes of mostly dead records; each costs this much).
#[derive(Clone, Copy)]
struct InputOp {
    lsn: Lsn,
    seq: StreamSeq,
    timestamp_ms: u64,
    /// The stream, as a number given in the order streams were first seen.
    stream: u32,
    /// The input it is in, by position.
    position: u32,
    /// Offset of its operation header in that input (after a batch's kind byte).
    offset: u32,
    kind: RecordKind,
}

const _: () = assert!(std::mem::size_of::<InputOp>() <= 40);

/// What the first pass read: every operation of the inputs in LSN order,
/// their streams, and how the inputs leave each stream.
struct Inputs<'a> {
    /// Each input's frames, from its header to its end.
    bytes: &'a [Bytes],
    ops: Vec<InputOp>,
    /// Stream ids, by number.
    streams: Vec<&'a [u8]>,
    /// Each stream as every input operation left it, by number.
    cursors: Vec<StreamCursor>,
}

impl<'a> Inputs<'a> {
    /// The payload of an operation the first pass checked.
    fn payload(&self, op: &InputOp) -> &'a [u8] {
        let bytes: &'a [u8] = &self.bytes[op.position as usize];
        let at = op.offset as usize;
        let stream_bytes = usize::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]));
        let payload_bytes = u32::from_le_bytes(bytes[at + 2..at + 6].try_into().expect("four bytes")) as usize;
        let start = at + OP_HEADER_BYTES + stream_bytes;
        &bytes[start..start + payload_bytes]
    }
}

/// Reads every frame of the inputs, checking each checksum: a flipped bit
/// fails the compaction with the file and offset, and changes nothing.
fn read_inputs<'a>(inputs: &[Segment], bytes: &'a [Bytes], throttle: &mut Throttle<'_>) -> Result<Inputs<'a>> {
    let mut read = Inputs { bytes, ops: Vec::new(), streams: Vec::new(), cursors: Vec::new() };
    let mut numbers: HashMap<&'a [u8], u32, foldhash::fast::RandomState> = HashMap::default();
    for (position, (segment, frames)) in inputs.iter().zip(bytes).enumerate() {
        let frames: &'a [u8] = frames;
        let end = frames.len();
        let log_id = segment.header.log_id;
        let mut offset = SEGMENT_HEADER_BYTES;
        let mut lsn = segment.header.first_lsn;
        while offset < end {
            let decoded = if segment.compacted() {
                decode_frame_anywhere(&frames[offset..], &log_id).map(|frame| (offset, frame))
            } else {
                decode_frame_at(frames, offset, &log_id, lsn)
            };
            let (at, frame) = decoded.map_err(|defect| {
                Error::corruption(&segment.path, offset as u64, CorruptionKind::BadRecord(defect.describe()))
            })?;
            let body = at + FRAME_HEADER_BYTES;
            for op in frame.ops() {
                let next = read.streams.len() as u32;
                let stream = *numbers.entry(op.stream).or_insert(next);
                if stream == next {
                    read.streams.push(op.stream);
                    read.cursors.push(StreamCursor::EMPTY);
                }
                let reach = if op.kind == RecordKind::Prune {
                    crate::frame::prune_snapshots_before(op.payload)
                } else {
                    Lsn(0)
                };
                let cursor = &mut read.cursors[stream as usize];
                *cursor = cursor.apply(op.kind, op.seq, op.lsn, reach).unwrap_or(*cursor);
                read.ops.push(InputOp {
                    lsn: op.lsn,
                    seq: op.seq,
                    timestamp_ms: frame.meta.timestamp_ms,
                    stream,
                    position: position as u32,
                    offset: (body + op.offset_in_body) as u32,
                    kind: op.kind,
                });
            }
            lsn = frame.next_lsn();
            offset = at + frame.total_bytes();
        }
        throttle.pass(end as u64)?;
    }
    Ok(read)
}

/// One operation of the output, in LSN order: an input's, or a base
/// compaction adds.
#[derive(Clone, Copy)]
enum OutputOp {
    /// The input operation with this number.
    Kept(u32),
    /// A stream base.
    Base { stream: u32, lsn: Lsn, seq: StreamSeq, timestamp_ms: u64 },
}

impl OutputOp {
    /// Its stream's number.
    fn stream(&self, inputs: &Inputs<'_>) -> u32 {
        match *self {
            OutputOp::Kept(at) => inputs.ops[at as usize].stream,
            OutputOp::Base { stream, .. } => stream,
        }
    }

    fn lsn(&self, inputs: &Inputs<'_>) -> Lsn {
        match *self {
            OutputOp::Kept(at) => inputs.ops[at as usize].lsn,
            OutputOp::Base { lsn, .. } => lsn,
        }
    }

    /// The operation to encode, its timestamp, and where it was in the
    /// inputs (none for a base).
    fn op<'a>(&self, inputs: &Inputs<'a>) -> (OpRef<'a>, u64, Option<(usize, usize)>) {
        match *self {
            OutputOp::Kept(at) => {
                let op = &inputs.ops[at as usize];
                let stream = inputs.streams[op.stream as usize];
                let payload = inputs.payload(op);
                let refs = OpRef { kind: op.kind, stream, seq: op.seq, lsn: op.lsn, payload };
                (refs, op.timestamp_ms, Some((op.position as usize, op.offset as usize)))
            }
            OutputOp::Base { stream, lsn, seq, timestamp_ms } => {
                let stream = inputs.streams[stream as usize];
                (OpRef { kind: RecordKind::Base, stream, seq, lsn, payload: &[] }, timestamp_ms, None)
            }
        }
    }
}

/// What each stream looked like in the inputs, and what the output has of it.
#[derive(Clone, Copy, Default)]
struct StreamPass {
    /// The LSN of the first operation dropped since the stream's last
    /// tombstone, while nothing of it was kept yet.
    first_dropped: Option<(Lsn, u64)>,
    /// Something of the stream since its last tombstone is kept.
    kept: bool,
    /// The sequence of the first entry kept since its last tombstone.
    first_kept_entry: Option<u64>,
    /// Where the output's base for it is, to fill in its sequence.
    base: Option<usize>,
}

/// Decides, under the index's read lock, which operations are kept and
/// which streams need a base. Returns the output in LSN order, how many
/// operations were dropped and how many bases were added.
fn decide(shared: &Shared, inputs: &Inputs<'_>, trim_before: Lsn) -> Result<(Vec<OutputOp>, u64, u64)> {
    let index = shared.index.read();
    // Each stream is looked up once; then every operation's liveness is a
    // comparison or two.
    let states: Vec<_> = inputs.streams.iter().map(|stream| index.stream_state(stream)).collect();
    let mut passes = vec![StreamPass::default(); inputs.streams.len()];
    let mut output: Vec<OutputOp> = Vec::new();
    let mut dropped = 0u64;
    for (number, op) in inputs.ops.iter().enumerate() {
        let pass = &mut passes[op.stream as usize];
        if op.kind == RecordKind::Tombstone {
            dropped += 1;
            *pass = StreamPass::default();
            continue;
        }
        let live = op.lsn >= trim_before
            && op.kind.holds_data()
            && states[op.stream as usize].is_some_and(|state| state.is_live(op.kind, op.seq, op.lsn));
        if !live {
            dropped += 1;
            if !pass.kept && pass.first_dropped.is_none() {
                pass.first_dropped = Some((op.lsn, op.timestamp_ms));
            }
            continue;
        }
        if op.kind == RecordKind::Entry && pass.first_kept_entry.is_none() {
            pass.first_kept_entry = Some(op.seq.0);
        }
        if !pass.kept {
            pass.kept = true;
            if let Some((lsn, timestamp_ms)) = pass.first_dropped {
                pass.base = Some(output.len());
                output.push(OutputOp::Base { stream: op.stream, lsn, seq: StreamSeq(0), timestamp_ms });
            }
        }
        output.push(OutputOp::Kept(number as u32));
    }
    drop(index);
    let mut bases = 0u64;
    for (stream, pass) in passes.iter().enumerate() {
        // The stream goes on from its first kept entry, or else from where
        // the inputs left it (its later records, if any, follow there).
        let next = pass.first_kept_entry.unwrap_or(inputs.cursors[stream].next);
        if let Some(at) = pass.base {
            if let OutputOp::Base { seq, .. } = &mut output[at] {
                *seq = StreamSeq(next);
            }
            bases += 1;
        } else if let Some((lsn, timestamp_ms)) = pass.first_dropped
            && !pass.kept
            && next > 0
        {
            output.push(OutputOp::Base { stream: stream as u32, lsn, seq: StreamSeq(next), timestamp_ms });
            bases += 1;
        }
    }
    output.sort_by_key(|op| op.lsn(inputs));
    check_output(shared, inputs, &output)?;
    Ok((output, dropped, bases))
}

/// Replays the output by the rules recovery checks, so that a compaction
/// that would leave a log recovery refuses fails here instead, changing
/// nothing.
fn check_output(shared: &Shared, inputs: &Inputs<'_>, output: &[OutputOp]) -> Result<()> {
    let mut cursors = vec![StreamCursor::EMPTY; inputs.streams.len()];
    for op in output {
        let (stream, (op, _, _)) = (op.stream(inputs), op.op(inputs));
        let cursor = &mut cursors[stream as usize];
        *cursor = cursor.apply(op.kind, op.seq, op.lsn, Lsn(0)).map_err(|what| {
            Error::corruption(
                &shared.dir,
                0,
                CorruptionKind::StreamInconsistent { stream: crate::types::display_stream(op.stream), what },
            )
        })?;
    }
    Ok(())
}

/// Bytes of a gap frame.
const GAP_FRAME_BYTES: usize = FRAME_HEADER_BYTES + crate::frame::GAP_BODY_BYTES;

/// Where each record of the inputs that the output keeps went: `(input
/// position, offset)` to `(output position, offset)`, sorted by where it was.
struct Moved(Vec<((usize, usize), (usize, usize))>);

impl Moved {
    fn get(&self, from: (usize, usize)) -> Option<(usize, usize)> {
        self.0.binary_search_by_key(&from, |(at, _)| *at).ok().map(|found| self.0[found].1)
    }
}

type Written = (Vec<(Segment, Vec<WrittenFrame>)>, Moved);

/// Writes the output as compacted segments of `generation`, each at most
/// `cap` bytes (or one frame), synced, renamed into place, the directory
/// synced. Each ends with a gap up to where the next one starts (the last:
/// up to `end`, where the ordinary segments start), so that the segments
/// alone say what range they cover. Returns the segments with their
/// frames, and where each input record went.
fn write_outputs(
    shared: &Shared,
    log_id: &[u8; 16],
    (generation, end_lsn): (u64, Lsn),
    (inputs, output): (&Inputs<'_>, &[OutputOp]),
    cap: u64,
    throttle: &mut Throttle<'_>,
) -> Result<Written> {
    let mut segments = Vec::new();
    let mut moved = Vec::with_capacity(output.len());
    let mut start = 0;
    while start < output.len() {
        let mut buf = Vec::new();
        let mut frames = Vec::new();
        let mut end = start;
        let mut last = (Lsn(0), 0);
        while end < output.len() {
            let (op, timestamp_ms, from) = output[end].op(inputs);
            let len = crate::frame::frame_bytes(op.kind.frame_kind(), &[op]);
            if !frames.is_empty() && (SEGMENT_HEADER_BYTES + buf.len() + len + GAP_FRAME_BYTES) as u64 > cap {
                break;
            }
            let offset = SEGMENT_HEADER_BYTES + buf.len();
            let meta = FrameMeta { lsn: op.lsn, durable_lsn: op.lsn, timestamp_ms };
            encode_frame(&mut buf, log_id, op.kind.frame_kind(), meta, &[op]);
            // A base is as lasting as the records it stands for: counted
            // live, so that a log of bases never looks worth compacting.
            let live_bytes = crate::index::op_bytes(op.stream.len(), op.payload.len());
            frames.push(WrittenFrame { offset, lsn: op.lsn, timestamp_ms, total_bytes: len, live_bytes });
            if let Some(from) = from {
                moved.push((from, (segments.len(), offset + FRAME_HEADER_BYTES)));
            }
            last = (op.lsn, timestamp_ms);
            end += 1;
        }
        let (last_lsn, last_timestamp_ms) = last;
        let covers_to = output.get(end).map_or(end_lsn, |next| next.lsn(inputs));
        if Lsn(last_lsn.0 + 1) < covers_to {
            let offset = SEGMENT_HEADER_BYTES + buf.len();
            let after = Lsn(last_lsn.0 + 1);
            let meta = FrameMeta { lsn: after, durable_lsn: after, timestamp_ms: last_timestamp_ms };
            crate::frame::encode_gap_frame(&mut buf, log_id, meta, covers_to);
            frames.push(WrittenFrame {
                offset,
                lsn: after,
                timestamp_ms: last_timestamp_ms,
                total_bytes: GAP_FRAME_BYTES,
                live_bytes: GAP_FRAME_BYTES as u64,
            });
        }
        let first_lsn = output[start].lsn(inputs);
        let segment = write_compacted(shared, log_id, generation, first_lsn, &buf)?;
        throttle.pass(segment.header.segment_bytes)?;
        segments.push((segment, frames));
        start = end;
    }
    for (segment, _) in &segments {
        let temp = temp_path(&segment.path);
        shared.fs.rename(&temp, &segment.path).map_err(|error| Error::io_or_full("rename", &segment.path, error))?;
    }
    shared.fs.sync_dir(&shared.dir).map_err(|error| Error::io_or_full("fsync directory", &shared.dir, error))?;
    // The output is in LSN order, and so were the inputs: already sorted
    // but for what a sort of sorted data costs.
    moved.sort_unstable_by_key(|(from, _)| *from);
    Ok((segments, Moved(moved)))
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().expect("a segment file name").to_os_string();
    name.push(COMPACTING_SUFFIX);
    path.with_file_name(name)
}

/// Writes one compacted segment under its temporary name and syncs it.
fn write_compacted(
    shared: &Shared,
    log_id: &[u8; 16],
    generation: u64,
    first_lsn: Lsn,
    frames: &[u8],
) -> Result<Segment> {
    let path = shared.dir.join(compacted_file_name(first_lsn, generation));
    let temp = temp_path(&path);
    let len = ((SEGMENT_HEADER_BYTES + frames.len()) as u64).max(SEGMENT_BYTES_MIN);
    let header = SegmentHeader {
        version: FORMAT_VERSION,
        log_id: *log_id,
        first_lsn,
        segment_bytes: len,
        created_ms: shared.fs.now_ms(),
    };
    let file: Arc<dyn File> = shared.fs.create(&temp).map_err(|error| Error::io_or_full("create", &temp, error))?;
    let mut bytes = Vec::with_capacity(len as usize);
    bytes.extend_from_slice(&header.encode());
    bytes.extend_from_slice(frames);
    bytes.resize(len as usize, 0);
    file.write_at(&bytes, 0).map_err(|error| Error::io_or_full("write", &temp, error))?;
    file.sync_data().map_err(|error| Error::io_or_full("fdatasync", &temp, error))?;
    let map = file.map().map_err(|error| Error::io("mmap", &temp, error))?;
    Ok(Segment { header, path, file, map, compacted: true })
}

/// The writer, for a compaction's decision or its commit; [`Error::Closed`]
/// once the log closes. The close holds the writer while it waits for the
/// compaction to end ([`Compactor::stop`]): a compaction waiting for the
/// writer gives up instead.
fn writer_unless_closed<'a>(shared: &Shared, writer: &'a Mutex<Writer>) -> Result<MutexGuard<'a, Writer>> {
    loop {
        if shared.compactor.stopped() {
            return Err(Error::Closed);
        }
        if let Some(writer) = writer.try_lock_for(Duration::from_millis(1)) {
            return Ok(writer);
        }
    }
}

/// `trim_before` lowered to what the registered cursors hold back now
/// (`cursors::trim_limit`): the plan's was worked out before the inputs
/// were read, and a cursor committed since holds back as much.
fn held_back(shared: &Shared, trim_before: Lsn) -> Lsn {
    let index = shared.index.read();
    let limit = crate::cursors::trim_limit(&index, shared.options.cursor_lag_bytes_max);
    match index.segments().get(limit) {
        _ if limit == 0 => Lsn(0),
        Some(entry) => trim_before.min(entry.segment.header.first_lsn),
        None => trim_before,
    }
}

/// Whether `name` is a compacted segment of `generation`, or one being written.
fn of_generation(name: &str, generation: u64) -> bool {
    crate::segment::parse_compacted_file_name(name.trim_end_matches(COMPACTING_SUFFIX))
        .is_some_and(|(_, g)| g == generation)
}

/// Makes sure no file of `generation` is in the directory before a
/// compaction writes that generation's outputs. An earlier compaction in
/// this session that gave up after renaming its outputs into place, and
/// could not remove them ([`remove_outputs`] is best effort), left such
/// files; committed with other outputs, the generation would take them for
/// part of the log, and the log would no longer open. They are removed
/// here (made durable by the directory sync that publishes the new
/// outputs, before the commit), or the compaction fails.
///
/// # Errors
/// [`Error::Io`] if the directory cannot be listed or such a file removed.
fn clear_generation(shared: &Shared, generation: u64) -> Result<()> {
    let names = shared.fs.list(&shared.dir).map_err(|error| Error::io("list", &shared.dir, error))?;
    for name in names.iter().filter(|name| of_generation(name, generation)) {
        let path = shared.dir.join(name);
        match shared.fs.remove(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(Error::io("remove", &path, error)),
        }
    }
    Ok(())
}

/// Removes what an uncommitted compaction of `generation` wrote; best
/// effort, since open removes any such file, and the next compaction in
/// this session removes it first ([`clear_generation`]).
fn remove_outputs(shared: &Shared, generation: u64) {
    let Ok(names) = shared.fs.list(&shared.dir) else { return };
    let mut removed = false;
    for name in names {
        if of_generation(&name, generation) && shared.fs.remove(&shared.dir.join(&name)).is_ok() {
            removed = true;
        }
    }
    if removed {
        let _ = shared.fs.sync_dir(&shared.dir);
    }
}
