//! Adversarial tests of retention records (commit 0132284): prunes, bases,
//! snapshot-and-prune, keep-N-snapshots, prune-by-time and delete, attacked
//! through crashes, injected faults, races between clients, batches that
//! touch one stream several times, every read path (stream reads, reads by
//! LSN, cursors, the read-only reader, the stores' backend), `annals
//! repair` / `dump` / `verify`, and the writer's clock.
//!
//! Each test is named after the behaviour it proves. A test that fails on
//! the code it was written against is named after the bug it shows, and
//! says in its doc comment what happens and what should.

mod common;

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use annals::frame::{FrameKind, FrameMeta, OpRef, decode_frame_anywhere, encode_frame};
use annals::fs::{DirLock, File, FileSystem, LockMode, MappedFile, RealFs};
use annals::segment::SegmentHeader;
use annals::stores::{Backend, Cursor, EntryKind, Expect, StoreError, StoreOp};
use annals::{
    Appended, Batch, Error, Expectation, Log, LogReader, Lsn, Options, PruneSnapshots, Record, RecordKind,
    RecoveryMode, SegmentPreparation, StreamSeq,
};

// ===========================================================================
// Helpers.

/// `common::open`, retried while the directory's lock is still held: a
/// child process (`annals ...`, spawned by another test of this binary)
/// forked at the moment a log was dropped holds a copy of the lock's file
/// descriptor until it execs, so a reopen right after a drop can see the
/// lock taken for a moment. Not what these tests are about.
fn open(dir: &Path) -> Log {
    // A guard against a hang, not a measure of speed.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match Log::open(dir, common::small_options()) {
            Err(Error::Locked { .. }) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            other => return other.expect("open"),
        }
    }
}

fn append_n(log: &Log, stream: &str, n: u64) -> Vec<Appended> {
    (0..n).map(|i| log.append(stream, Expectation::Any, format!("{stream}-{i}").into_bytes()).wait().unwrap()).collect()
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.seq.0).collect()
}

fn all_live(log: &Log) -> Vec<Record> {
    log.read_all(Lsn::ZERO, usize::MAX).unwrap()
}

/// `(kind, seq)` of the live records of `stream`, in LSN order.
fn live_of(log: &Log, stream: &str) -> Vec<(RecordKind, u64)> {
    all_live(log).iter().filter(|r| r.stream == stream.as_bytes()).map(|r| (r.kind, r.seq.0)).collect()
}

fn live_snapshots_of(log: &Log, stream: &str) -> Vec<u64> {
    live_of(log, stream).into_iter().filter(|(k, _)| *k == RecordKind::Snapshot).map(|(_, s)| s).collect()
}

/// The retention feature bits of the current state slot (higher generation).
fn state_features(dir: &Path) -> u64 {
    let bytes = std::fs::read(dir.join("annals.state")).unwrap();
    let slot = |i: usize| {
        let slot = &bytes[i * 512..(i + 1) * 512];
        let generation = u64::from_le_bytes(slot[32..40].try_into().unwrap());
        (generation, u64::from_le_bytes(slot[40..48].try_into().unwrap()))
    };
    slot(0).max(slot(1)).1
}

/// One stream as observed: id, next sequence, start, live entries'
/// sequences, latest snapshot's sequence.
type StreamObserved = (Vec<u8>, u64, Option<u64>, Vec<u64>, Option<u64>);

/// Everything a reader can observe about the log, for comparing two logs
/// (a source and its repaired copy, a log before and after reopen): the live
/// records with their timestamps, and per stream its read, its start, its
/// next sequence.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    live: Vec<Record>,
    streams: Vec<StreamObserved>,
}

/// The first live sequence of `stream`, found through `read_stream_from`
/// (0 if it was never pruned).
fn start_of(log: &Log, stream: &[u8]) -> u64 {
    match log.read_stream_from(stream, StreamSeq(0)) {
        Ok(_) => 0,
        Err(Error::Pruned { start, .. }) => start.0,
        Err(other) => panic!("read_stream_from: {other}"),
    }
}

fn observe(log: &Log, names: &[&str]) -> Observed {
    let streams = names
        .iter()
        .map(|name| {
            let read = log.read_stream(name).unwrap();
            (
                name.as_bytes().to_vec(),
                log.next_seq(name).unwrap().0,
                read.snapshot.as_ref().map(|s| s.seq.0),
                seqs(&read.entries),
                Some(start_of(log, name.as_bytes())),
            )
        })
        .collect();
    Observed { live: all_live(log), streams }
}

/// Runs a future to completion on a small runtime.
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

/// Polls a write once so that it is queued (a `Pending` does nothing until
/// first polled), without waiting for it.
fn queue<T>(pending: &mut annals::Pending<T>) {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Pin::new(pending).poll(&mut cx).is_pending(), "the writer is held: nothing can finish yet");
}

/// The log id and the offset of every frame in `segment`.
fn frames_of(segment: &Path) -> ([u8; 16], Vec<usize>) {
    let bytes = std::fs::read(segment).unwrap();
    let header = SegmentHeader::decode(&bytes).unwrap();
    (header.log_id, common::frame_offsets(segment))
}

/// Sets the timestamp of the frame at `offset` of `segment`, and its checksum.
fn retime_frame(segment: &Path, offset: usize, timestamp_ms: u64) {
    let mut bytes = std::fs::read(segment).unwrap();
    let header = SegmentHeader::decode(&bytes).unwrap();
    let body = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().unwrap()) as usize;
    let end = offset + annals::frame::FRAME_HEADER_BYTES + body;
    bytes[offset + 24..offset + 32].copy_from_slice(&timestamp_ms.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header.log_id);
    hasher.update(&bytes[offset + 4..end]);
    bytes[offset..offset + 4].copy_from_slice(&hasher.finalize().to_le_bytes());
    std::fs::write(segment, bytes).unwrap();
    assert!(decode_frame_anywhere(&std::fs::read(segment).unwrap()[offset..], &header.log_id).is_ok());
}

/// Appends a base frame (kind 8: `stream` continues at `seq`) after the last
/// frame of the newest segment of a crashed log image (one with no
/// clean-close marker), as compaction or `annals repair` would write one.
fn append_base_frame(dir: &Path, stream: &[u8], seq: u64) -> Lsn {
    let segment = common::segment_files(dir).pop().unwrap();
    let (log_id, offsets) = frames_of(&segment);
    let mut bytes = std::fs::read(&segment).unwrap();
    let last = *offsets.last().expect("the image holds frames");
    let frame = decode_frame_anywhere(&bytes[last..], &log_id).unwrap();
    assert_ne!(frame.kind, FrameKind::Marker, "the image must end without a clean-close marker");
    let end = last + frame.total_bytes();
    let lsn = frame.next_lsn();
    let meta = FrameMeta { lsn, durable_lsn: lsn, timestamp_ms: frame.meta.timestamp_ms };
    let op = OpRef { kind: RecordKind::Base, stream, seq: StreamSeq(seq), lsn, payload: &[] };
    let mut buf = Vec::new();
    encode_frame(&mut buf, &log_id, FrameKind::Base, meta, &[op]);
    bytes[end..end + buf.len()].copy_from_slice(&buf);
    std::fs::write(&segment, bytes).unwrap();
    lsn
}

// ---------------------------------------------------------------------------
// A file system whose next segment write can be held, so that a test can
// line up requests in the writer's queue deterministically.

#[derive(Debug, Default)]
struct Gate {
    armed: AtomicBool,
    entered: AtomicBool,
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn arm(&self) {
        *self.open.lock().unwrap() = false;
        self.entered.store(false, Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
    }

    fn hold(&self) {
        self.entered.store(true, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }

    fn wait_entered(&self) {
        // No deadline: a writer that never reaches the gate hangs the
        // test, which the test run's own limit reports.
        while !self.entered.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

#[derive(Debug, Clone, Default)]
struct GateFs {
    gate: Arc<Gate>,
}

#[derive(Debug)]
struct GateFile {
    inner: Arc<dyn File>,
    segment: bool,
    gate: Arc<Gate>,
}

impl GateFs {
    fn wrap(&self, path: &Path, inner: Arc<dyn File>) -> Arc<dyn File> {
        // A spare is renamed into a segment and written through the same handle.
        let segment = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            annals::segment::parse_segment_file_name(n).is_some() || n.starts_with(annals::segment::SPARE_PREFIX)
        });
        Arc::new(GateFile { inner, segment, gate: self.gate.clone() })
    }

    fn options(&self) -> Options {
        Options {
            file_system: Arc::new(self.clone()),
            segment_preparation: SegmentPreparation::Inline,
            ..common::small_options()
        }
    }
}

impl FileSystem for GateFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        RealFs.list(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn File>> {
        Ok(self.wrap(path, RealFs.create(path)?))
    }
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn File>> {
        Ok(self.wrap(path, RealFs.open(path, writable)?))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        RealFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)
    }
    fn lock(&self, dir: &Path, mode: LockMode) -> io::Result<Option<DirLock>> {
        RealFs.lock(dir, mode)
    }
}

impl File for GateFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.segment && self.gate.armed.swap(false, Ordering::SeqCst) {
            self.gate.hold();
        }
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn map(&self) -> io::Result<Arc<dyn MappedFile>> {
        self.inner.map()
    }
}

/// Holds the writer inside the write of an unrelated append, runs `while_held`
/// (which queues requests), then lets the writer go on. Returns what
/// `while_held` returned.
fn with_writer_held<T>(log: &Log, gate: &Gate, while_held: impl FnOnce() -> T) -> T {
    gate.arm();
    let blocker = {
        let log = log.clone();
        std::thread::spawn(move || log.append("unrelated", Expectation::Any, &b"x"[..]).wait())
    };
    gate.wait_entered();
    let out = while_held();
    gate.release();
    blocker.join().unwrap().unwrap();
    out
}

// ===========================================================================
// Stale decisions: keep_snapshots and prune_older_than work out a prune from
// the stream's state, then commit it guarded by the stream's next sequence.
// segments-format.md 9.1: "a stream that moved in between is never pruned by
// a stale decision".

/// BUG. `keep_snapshots` reads the stream (next 6, snapshots through 1, 3
/// and 5), decides "prune before 4", and commits that guarded only by
/// `Exact(6)`. If the stream is deleted and refilled with six new entries in
/// between, the guard still holds (next is 6 again) and the stale prune
/// destroys entries 0 to 3 of the *new* stream, which has no snapshot at
/// all. It should conflict (and, retried, find nothing to do). Cause: the
/// guard in `Log::prune_resolved` (src/log.rs) is the next sequence alone,
/// which a clear and a refill bring back (ABA); it needs the stream's
/// incarnation (its `since` LSN) or the snapshot LSN it decided on.
#[test]
fn keep_snapshots_with_a_stale_decision_prunes_the_entries_of_a_stream_deleted_and_refilled_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let fs = GateFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    append_n(&log, "wf", 6);
    for through in [1, 3, 5] {
        log.snapshot("wf", StreamSeq(through), format!("old through {through}").into_bytes()).wait().unwrap();
    }
    let (refill, keeper) = with_writer_held(&log, &fs.gate, || {
        // Queued first: the stream is deleted and refilled to the same next sequence.
        let mut batch = Batch::new().clear("wf", Expectation::Any);
        for i in 0..6 {
            batch = batch.append("wf", Expectation::Any, format!("new-{i}").into_bytes());
        }
        let mut refill = log.commit(batch);
        queue(&mut refill);
        // Then keep_snapshots decides from the old stream, which the index still shows.
        let keeper = {
            let log = log.clone();
            std::thread::spawn(move || log.keep_snapshots("wf", 2))
        };
        std::thread::sleep(Duration::from_millis(500));
        (refill, keeper)
    });
    refill.wait().unwrap();
    let kept = keeper.join().unwrap();
    let read = log.read_stream("wf").unwrap();
    assert_eq!(
        seqs(&read.entries),
        (0..6).collect::<Vec<_>>(),
        "the new stream lost entries to a decision taken on the deleted one (keep_snapshots returned {kept:?})"
    );
    assert!(read.entries.iter().all(|r| r.payload.starts_with(b"new-")));
}

/// BUG. As above for `prune_older_than`: it decides "entries 0 to 2 are
/// older than T" on the old stream, and the stale prune then removes entries
/// 0 to 2 of the refilled stream, all written after T. Same cause
/// (`Log::prune_resolved`, src/log.rs).
#[test]
fn prune_older_than_with_a_stale_decision_prunes_new_entries_of_a_stream_deleted_and_refilled_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let fs = GateFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    for i in 0..6 {
        log.append("wf", Expectation::Any, format!("old-{i}").into_bytes()).wait().unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
    let cut = log.read_stream("wf").unwrap().entries[3].timestamp_ms;
    std::thread::sleep(Duration::from_millis(3));
    let (refill, pruner) = with_writer_held(&log, &fs.gate, || {
        let mut batch = Batch::new().clear("wf", Expectation::Any);
        for i in 0..6 {
            batch = batch.append("wf", Expectation::Any, format!("new-{i}").into_bytes());
        }
        let mut refill = log.commit(batch);
        queue(&mut refill);
        let pruner = {
            let log = log.clone();
            std::thread::spawn(move || log.prune_older_than("wf", cut))
        };
        std::thread::sleep(Duration::from_millis(500));
        (refill, pruner)
    });
    refill.wait().unwrap();
    let pruned = pruner.join().unwrap();
    let entries = log.read_stream("wf").unwrap().entries;
    assert!(entries.iter().all(|r| r.timestamp_ms >= cut), "every new entry was written after the cut");
    assert_eq!(
        seqs(&entries),
        (0..6).collect::<Vec<_>>(),
        "entries written after {cut} were pruned by a decision taken on the deleted stream \
         (prune_older_than returned {pruned:?})"
    );
}

/// Without a clear, a stale decision is caught: the stream moved (an append
/// in between), so the guard fails, `keep_snapshots` retries on the fresh
/// state, and exactly the newest two snapshots survive.
#[test]
fn keep_snapshots_retries_when_an_append_moves_the_stream_between_decision_and_commit() {
    let dir = tempfile::tempdir().unwrap();
    let fs = GateFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    append_n(&log, "wf", 6);
    for through in [1, 3, 5] {
        log.snapshot("wf", StreamSeq(through), &b"s"[..]).wait().unwrap();
    }
    let (moved, keeper) = with_writer_held(&log, &fs.gate, || {
        let mut moved = log.commit(Batch::new().append("wf", Expectation::Any, &b"6"[..]).snapshot(
            "wf",
            StreamSeq(6),
            &b"through 6"[..],
        ));
        queue(&mut moved);
        let keeper = {
            let log = log.clone();
            std::thread::spawn(move || log.keep_snapshots("wf", 2))
        };
        std::thread::sleep(Duration::from_millis(300));
        (moved, keeper)
    });
    moved.wait().unwrap();
    keeper.join().unwrap().unwrap().expect("a prune was written on the fresh state");
    assert_eq!(live_snapshots_of(&log, "wf"), vec![5, 6]);
    assert_eq!(start_of(&log, b"wf"), 6, "the entries the oldest kept snapshot covers are pruned");
}

// ===========================================================================
// The snapshots a prune names.

/// BUG. A prune `Before(Lsn(u64::MAX))` ("drop every snapshot there is")
/// leaves the stream's `snapshots_before` at u64::MAX. Snapshots written
/// afterwards are live (correctly), but no later prune can ever drop them:
/// `Index::apply_frame` (src/index.rs) drops snapshots only when a prune's
/// `snapshots_before` is above the stream's previous one, so
/// `keep_snapshots(1)` returns `Some` yet leaves all three snapshots live.
/// segments-format.md 3.2: a prune makes "snapshots at an LSN below
/// `snapshots_before`" stop being live; the crash simulator's model
/// (src/sim/mod.rs, `retain(lsn >= snapshots_before)`) also disagrees with
/// the index here. Either the writer must refuse (or clamp) a
/// `snapshots_before` past the prune's own LSN, or apply must not compare
/// against the old value.
#[test]
fn a_prune_before_a_future_lsn_stops_every_later_prune_from_dropping_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, "wf", 6);
    log.prune("wf", StreamSeq(0), PruneSnapshots::Before(Lsn(u64::MAX))).wait().unwrap();
    let mut snapshot_lsns = Vec::new();
    for through in [1, 3, 5] {
        snapshot_lsns.push(log.snapshot("wf", StreamSeq(through), &b"s"[..]).wait().unwrap().lsn);
    }
    assert_eq!(live_snapshots_of(&log, "wf"), vec![1, 3, 5], "snapshots written after the prune are live");
    log.keep_snapshots("wf", 1).unwrap().expect("three snapshots, one kept: a prune is written");
    assert_eq!(live_snapshots_of(&log, "wf"), vec![5], "keep_snapshots(1) keeps one snapshot");
    assert_eq!(log.read_lsn(snapshot_lsns[0]).unwrap(), None, "a dropped snapshot is not read by lsn");
}

/// The same through a plain prune naming an LSN: after the far-future
/// prune, `Before(lsn of the last snapshot)` must drop the two before it.
#[test]
fn a_prune_before_a_future_lsn_stops_a_later_prune_before_a_past_lsn_from_dropping_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, "wf", 6);
    log.prune("wf", StreamSeq(0), PruneSnapshots::Before(Lsn(u64::MAX))).wait().unwrap();
    let mut lsns = Vec::new();
    for through in [1, 3, 5] {
        lsns.push(log.snapshot("wf", StreamSeq(through), &b"s"[..]).wait().unwrap().lsn);
    }
    log.prune("wf", StreamSeq(0), PruneSnapshots::Before(lsns[2])).wait().unwrap();
    assert_eq!(live_snapshots_of(&log, "wf"), vec![5]);
}

/// `snapshot_and_prune` keeps only the snapshot it writes, inside one batch
/// and across groups, and a later `AllButLatest` prune keeps the latest
/// even after earlier prunes dropped older ones.
#[test]
fn all_but_latest_keeps_exactly_the_latest_snapshot_after_repeated_snapshot_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for round in 0..5u64 {
        append_n(&log, "wf", 3);
        log.snapshot_and_prune("wf", StreamSeq(round * 3 + 2), format!("r{round}").into_bytes()).wait().unwrap();
        assert_eq!(live_snapshots_of(&log, "wf"), vec![round * 3 + 2]);
        assert_eq!(start_of(&log, b"wf"), round * 3 + 3);
    }
    append_n(&log, "wf", 2);
    log.snapshot("wf", StreamSeq(15), &b"plain"[..]).wait().unwrap();
    log.prune("wf", StreamSeq(15), PruneSnapshots::AllButLatest).wait().unwrap();
    assert_eq!(live_snapshots_of(&log, "wf"), vec![15]);
    assert_eq!(live_of(&log, "wf"), vec![(RecordKind::Entry, 15), (RecordKind::Entry, 16), (RecordKind::Snapshot, 15)]);
    drop(log);
    let log = open(dir.path());
    assert_eq!(live_snapshots_of(&log, "wf"), vec![15]);
    assert_eq!(log.read_stream("wf").unwrap().snapshot.unwrap().payload, &b"plain"[..]);
}

// ===========================================================================
// Batches that touch one stream several times.

/// append, prune, append, snapshot, prune-all-but-latest, append of one
/// stream in one batch: the writer's guards, the index, a reopen and a crash
/// image all agree on the outcome.
#[test]
fn a_batch_that_appends_prunes_appends_and_snapshots_one_stream_reads_the_same_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, "wf", 3);
    log.snapshot("wf", StreamSeq(0), &b"old"[..]).wait().unwrap();
    let batch = Batch::new()
        .append("wf", Expectation::Exact(StreamSeq(3)), &b"3"[..])
        .prune("wf", StreamSeq(4), PruneSnapshots::Before(Lsn::ZERO))
        .append("wf", Expectation::Exact(StreamSeq(4)), &b"4"[..])
        .snapshot("wf", StreamSeq(4), &b"through 4"[..])
        .prune("wf", StreamSeq(4), PruneSnapshots::AllButLatest)
        .append("wf", Expectation::Exact(StreamSeq(5)), &b"5"[..]);
    let acks = log.commit(batch).wait().unwrap();
    assert_eq!(acks.iter().map(|a| a.seq.0).collect::<Vec<_>>(), vec![3, 4, 4, 4, 4, 5]);
    let check = |log: &Log, what: &str| {
        let read = log.read_stream("wf").unwrap();
        assert_eq!(read.snapshot.as_ref().map(|s| s.payload.as_ref()), Some(&b"through 4"[..]), "{what}");
        assert_eq!(seqs(&read.entries), vec![5], "{what}");
        assert_eq!(
            live_of(log, "wf"),
            vec![(RecordKind::Entry, 4), (RecordKind::Snapshot, 4), (RecordKind::Entry, 5)],
            "{what}"
        );
        assert_eq!(start_of(log, b"wf"), 4, "{what}");
        assert_eq!(log.next_seq("wf").unwrap(), StreamSeq(6), "{what}");
        let on_disk = log.read_all_on_disk(Lsn::ZERO, usize::MAX).unwrap();
        let batch_times: Vec<u64> =
            on_disk.iter().filter(|r| acks.iter().any(|a| a.lsn == r.lsn)).map(|r| r.timestamp_ms).collect();
        assert_eq!(batch_times.len(), 6, "{what}");
        assert!(batch_times.windows(2).all(|w| w[0] == w[1]), "one frame, one time: {batch_times:?} ({what})");
    };
    check(&log, "live");
    let image = tempfile::tempdir().unwrap();
    common::crash_image(dir.path(), image.path());
    drop(log);
    check(&open(dir.path()), "after a clean reopen");
    check(&open(image.path()), "after a crash");
}

/// A batch whose later operation fails (a prune past next, after an append
/// and a prune of the same stream) writes nothing at all, not even the
/// feature bit's effects on reads.
#[test]
fn a_batch_refused_by_its_last_prune_leaves_the_stream_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, "wf", 3);
    let before = log.last_lsn().unwrap();
    let batch = Batch::new()
        .append("wf", Expectation::Any, &b"3"[..])
        .prune("wf", StreamSeq(4), PruneSnapshots::AllButLatest)
        .clear("wf", Expectation::Any)
        .prune("wf", StreamSeq(1), PruneSnapshots::AllButLatest);
    let refused = log.commit(batch).wait();
    assert!(matches!(refused, Err(Error::PruneOutOfRange { next_seq: StreamSeq(0), .. })), "{refused:?}");
    assert_eq!(log.last_lsn().unwrap(), before);
    assert_eq!(seqs(&log.read_stream("wf").unwrap().entries), vec![0, 1, 2]);
}

// ===========================================================================
// Odd streams and sequences.

/// A prune of a stream that has no state: before 0 is accepted and does
/// nothing (the stream is not created), before 1 is refused; an append
/// expecting no stream still succeeds, before and after reopen.
#[test]
fn a_prune_of_a_stream_that_does_not_exist_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.prune("ghost", StreamSeq(0), PruneSnapshots::AllButLatest).wait().unwrap();
    assert!(matches!(
        log.prune("ghost", StreamSeq(1), PruneSnapshots::AllButLatest).wait(),
        Err(Error::PruneOutOfRange { next_seq: StreamSeq(0), .. })
    ));
    let check = |log: &Log| {
        assert!(log.streams("").unwrap().is_empty());
        assert_eq!(log.next_seq("ghost").unwrap(), StreamSeq(0));
        assert!(log.read_stream_from("ghost", StreamSeq(0)).unwrap().is_empty());
        assert!(all_live(log).is_empty());
    };
    check(&log);
    assert_eq!(log.keep_snapshots("ghost", 1).unwrap(), None);
    assert_eq!(log.prune_older_than("ghost", u64::MAX).unwrap(), None);
    drop(log);
    let log = open(dir.path());
    check(&log);
    assert_eq!(log.append("ghost", Expectation::NoStream, &b"first"[..]).wait().unwrap().seq, StreamSeq(0));
}

/// Prune to exactly the next sequence, clear guarded by that sequence, and
/// append again from 0: the new stream is whole and readable from 0, in the
/// running log and after reopen.
#[test]
fn prune_to_next_then_clear_then_reappend_starts_a_whole_new_stream() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let old = append_n(&log, "wf", 5);
    log.snapshot("wf", StreamSeq(4), &b"s"[..]).wait().unwrap();
    log.prune("wf", StreamSeq(5), PruneSnapshots::Before(Lsn::ZERO)).wait().unwrap();
    assert!(matches!(log.read_stream_from("wf", StreamSeq(4)), Err(Error::Pruned { start: StreamSeq(5), .. })));
    assert!(log.read_stream_from("wf", StreamSeq(5)).unwrap().is_empty());
    assert!(matches!(log.append("wf", Expectation::NoStream, &b"x"[..]).wait(), Err(Error::Conflict { .. })));
    log.clear("wf", Expectation::Exact(StreamSeq(5))).wait().unwrap();
    append_n(&log, "wf", 2);
    let check = |log: &Log| {
        let read = log.read_stream("wf").unwrap();
        assert_eq!(read.snapshot, None, "the old snapshot went with the clear");
        assert_eq!(seqs(&read.entries), vec![0, 1]);
        assert_eq!(seqs(&log.read_stream_from("wf", StreamSeq(0)).unwrap()), vec![0, 1]);
        assert!(old.iter().all(|a| log.read_lsn(a.lsn).unwrap().is_none()));
        assert_eq!(live_of(log, "wf"), vec![(RecordKind::Entry, 0), (RecordKind::Entry, 1)]);
    };
    check(&log);
    drop(log);
    check(&open(dir.path()));
}

/// read_stream_from at exactly the start, at start - 1, at next and past it.
#[test]
fn read_stream_from_answers_pruned_exactly_below_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, "wf", 10);
    log.prune("wf", StreamSeq(4), PruneSnapshots::AllButLatest).wait().unwrap();
    assert_eq!(seqs(&log.read_stream_from("wf", StreamSeq(4)).unwrap()), (4..10).collect::<Vec<_>>());
    match log.read_stream_from("wf", StreamSeq(3)) {
        Err(Error::Pruned { from, start, .. }) => assert_eq!((from, start), (StreamSeq(3), StreamSeq(4))),
        other => panic!("a read from start - 1: {other:?}"),
    }
    assert!(log.read_stream_from("wf", StreamSeq(10)).unwrap().is_empty());
    assert!(log.read_stream_from("wf", StreamSeq(u64::MAX)).unwrap().is_empty());
    // A prune below the start changes nothing; the start never goes back.
    log.prune("wf", StreamSeq(2), PruneSnapshots::AllButLatest).wait().unwrap();
    assert_eq!(start_of(&log, b"wf"), 4);
    assert_eq!(log.latest("wf").unwrap().unwrap().seq, StreamSeq(9));
}

/// read_lsn of a pruned entry, a cleared entry, a dropped snapshot, a
/// tombstone and a prune record is `None`; of every live record it is the
/// record itself; the same after reopen and through a read-only reader.
#[test]
fn read_lsn_returns_only_live_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let a = append_n(&log, "a", 5);
    let b = append_n(&log, "b", 3);
    let snap = log.snapshot("a", StreamSeq(1), &b"s1"[..]).wait().unwrap();
    let prune = log.prune("a", StreamSeq(2), PruneSnapshots::AllButLatest).wait().unwrap();
    let snap2 = log.snapshot_and_prune("a", StreamSeq(3), &b"s3"[..]).wait().unwrap();
    let clear = log.delete_stream("b").wait().unwrap();
    let check = |read: &dyn Fn(Lsn) -> Option<Record>, what: &str| {
        for (i, ack) in a.iter().enumerate() {
            assert_eq!(read(ack.lsn).is_some(), i >= 4, "a{i} ({what})");
        }
        for ack in &b {
            assert_eq!(read(ack.lsn), None, "a cleared entry ({what})");
        }
        assert_eq!(read(snap.lsn), None, "a dropped snapshot ({what})");
        assert_eq!(read(prune.lsn), None, "a prune record ({what})");
        assert_eq!(read(clear.lsn), None, "a tombstone ({what})");
        assert_eq!(read(snap2.lsn).map(|r| r.payload), Some(bytes::Bytes::from_static(b"s3")), "{what}");
        assert_eq!(read(Lsn::ZERO), None, "{what}");
        assert_eq!(read(Lsn(u64::MAX)), None, "{what}");
    };
    check(&|lsn| log.read_lsn(lsn).unwrap(), "live");
    log.close().wait().unwrap();
    let log = open(dir.path());
    check(&|lsn| log.read_lsn(lsn).unwrap(), "after reopen");
    drop(log);
    let reader = LogReader::open(dir.path()).unwrap();
    check(&|lsn| reader.read_lsn(lsn).unwrap(), "read-only");
}

// ===========================================================================
// Cursors over dead records.

/// A log with many dead records: pruned entries, dropped snapshots,
/// cleared streams, tombstones, prunes, batches. Returns the streams it used.
fn churned_log(log: &Log) -> Vec<&'static str> {
    let streams = ["a", "b", "c", "d"];
    for round in 0..12u64 {
        for (i, stream) in streams.iter().enumerate() {
            append_n(log, stream, 3 + (round + i as u64) % 3);
        }
        let next = log.next_seq("a").unwrap().0;
        log.snapshot_and_prune("a", StreamSeq(next - 1), format!("a{round}").into_bytes()).wait().unwrap();
        let next = log.next_seq("b").unwrap().0;
        log.prune("b", StreamSeq(next - 1), PruneSnapshots::AllButLatest).wait().unwrap();
        if round % 4 == 3 {
            log.delete_stream("c").wait().unwrap();
        }
        let next = log.next_seq("d").unwrap().0;
        log.snapshot("d", StreamSeq(next - 1), format!("d{round}").into_bytes()).wait().unwrap();
        log.keep_snapshots("d", 2).unwrap();
        let batch = Batch::new()
            .append("e", Expectation::Any, &b"e"[..])
            .prune("e", StreamSeq(log.next_seq("e").unwrap().0), PruneSnapshots::AllButLatest)
            .append("e", Expectation::Any, &b"e"[..]);
        log.commit(batch).wait().unwrap();
    }
    vec!["a", "b", "c", "d", "e"]
}

/// A cursor loop with limit 1 (and other limits) sees every live record
/// once, in LSN order, exactly what one unlimited read returns; entries per
/// stream are exactly what `read_stream_from(start)` returns; and no
/// tombstone or prune ever appears.
#[test]
fn cursor_loops_of_any_limit_see_every_live_record_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let streams = churned_log(&log);
    let check = |read: &dyn Fn(Lsn, usize) -> Vec<Record>, what: &str| {
        let everything = read(Lsn::ZERO, usize::MAX);
        assert!(everything.iter().all(|r| r.kind.holds_data()), "only entries and snapshots ({what})");
        assert!(everything.windows(2).all(|w| w[0].lsn < w[1].lsn), "{what}");
        for limit in [1, 2, 3, 7, 64] {
            let mut after = Lsn::ZERO;
            let mut seen = Vec::new();
            loop {
                let page = read(after, limit);
                assert!(page.len() <= limit);
                let Some(last) = page.last() else { break };
                after = last.lsn;
                seen.extend(page);
            }
            assert_eq!(seen, everything, "limit {limit} ({what})");
        }
        everything
    };
    let everything = check(&|after, limit| log.read_all(after, limit).unwrap(), "live");
    for stream in &streams {
        let start = start_of(&log, stream.as_bytes());
        let entries = log.read_stream_from(stream, StreamSeq(start)).unwrap();
        let from_cursor: Vec<Record> = everything
            .iter()
            .filter(|r| r.stream == stream.as_bytes() && r.kind == RecordKind::Entry)
            .cloned()
            .collect();
        assert_eq!(from_cursor, entries, "stream {stream}");
    }
    let last = log.last_lsn().unwrap().0;
    let by_lsn: Vec<Record> = (1..=last).filter_map(|l| log.read_lsn(Lsn(l)).unwrap()).collect();
    assert_eq!(by_lsn, everything, "read_lsn over every lsn finds exactly the live records");
    log.close().wait().unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    let again = check(&|after, limit| reader.read_all(after, limit).unwrap(), "read-only");
    assert_eq!(again, everything);
}

// ===========================================================================
// Races.

/// Four threads append to one stream while a fifth prunes it, by sequence
/// and with snapshot-and-prune: every acknowledged entry at or after the
/// final start is readable with its payload, none before it is, the start
/// never goes back, and a reopen and a crash image agree.
#[test]
fn prunes_racing_appends_from_many_threads_keep_every_entry_from_the_start_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let done = Arc::new(AtomicBool::new(false));
    let appenders: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..150)
                    .map(|i| {
                        let payload = format!("t{t}-{i}").into_bytes();
                        (log.append("hot", Expectation::Any, payload.clone()).wait().unwrap(), payload)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let pruner = {
        let (log, done) = (log.clone(), done.clone());
        std::thread::spawn(move || {
            let mut starts = Vec::new();
            let mut round = 0u64;
            while !done.load(Ordering::SeqCst) {
                round += 1;
                let next = log.next_seq("hot").unwrap().0;
                if next == 0 {
                    std::thread::yield_now();
                    continue;
                }
                if round.is_multiple_of(3) {
                    log.snapshot_and_prune("hot", StreamSeq(next - 1), format!("s{round}").into_bytes())
                        .wait()
                        .unwrap();
                } else {
                    log.prune("hot", StreamSeq(next / 2 + next / 4), PruneSnapshots::AllButLatest).wait().unwrap();
                }
                let start = start_of(&log, b"hot");
                if let Some(previous) = starts.last() {
                    assert!(start >= *previous, "the start went back from {previous} to {start}");
                }
                starts.push(start);
            }
            starts
        })
    };
    let mut acked: Vec<(Appended, Vec<u8>)> = appenders.into_iter().flat_map(|h| h.join().unwrap()).collect();
    done.store(true, Ordering::SeqCst);
    let starts = pruner.join().unwrap();
    assert!(starts.len() > 3, "the pruner ran while the appends did");
    acked.sort_by_key(|(a, _)| a.seq);
    assert_eq!(acked.iter().map(|(a, _)| a.seq.0).collect::<Vec<_>>(), (0..600).collect::<Vec<_>>());
    let check = |log: &Log, what: &str| {
        let start = start_of(log, b"hot");
        assert!(start >= *starts.last().unwrap(), "{what}");
        let entries = log.read_stream_from("hot", StreamSeq(start)).unwrap();
        let want: Vec<(u64, u64, Vec<u8>)> =
            acked.iter().filter(|(a, _)| a.seq.0 >= start).map(|(a, p)| (a.seq.0, a.lsn.0, p.clone())).collect();
        let got: Vec<(u64, u64, Vec<u8>)> = entries.iter().map(|r| (r.seq.0, r.lsn.0, r.payload.to_vec())).collect();
        assert_eq!(got, want, "{what}");
        for (a, _) in acked.iter().filter(|(a, _)| a.seq.0 < start) {
            assert_eq!(log.read_lsn(a.lsn).unwrap(), None, "pruned seq {} read by lsn ({what})", a.seq);
        }
        assert_eq!(log.next_seq("hot").unwrap(), StreamSeq(600), "{what}");
    };
    check(&log, "live");
    let image = tempfile::tempdir().unwrap();
    common::crash_image(dir.path(), image.path());
    drop(log);
    check(&open(dir.path()), "reopened");
    check(&open(image.path()), "crash image");
}

/// Tasks on a multi-threaded runtime append to several streams while others
/// prune them with `prune_older_than` and `keep_snapshots`: the log's own
/// invariants hold at the end (starts and next sequences consistent with
/// what reads return), and a reopen reads exactly the same.
#[test]
fn async_tasks_pruning_by_time_and_keeping_snapshots_beside_appends_leave_a_consistent_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..6u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let stream = format!("s{}", t % 3);
                for i in 0..60u64 {
                    let appended =
                        log.append(&stream, Expectation::Any, format!("{t}-{i}").into_bytes()).await.unwrap();
                    if i % 10 == 9 {
                        // Another task may have snapshotted further already.
                        let _ = log.snapshot(&stream, appended.seq, format!("snap {t}-{i}").into_bytes()).await;
                    }
                }
            }));
        }
        for t in 0..3u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let stream = format!("s{t}");
                for _ in 0..40 {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
                    let log2 = log.clone();
                    let stream2 = stream.clone();
                    tokio::task::spawn_blocking(move || {
                        match log2.prune_older_than(&stream2, now.as_millis() as u64 - 2) {
                            Ok(_) | Err(Error::Conflict { .. }) => {}
                            Err(other) => panic!("prune_older_than: {other}"),
                        }
                        match log2.keep_snapshots(&stream2, 2) {
                            Ok(_) | Err(Error::Conflict { .. }) => {}
                            Err(other) => panic!("keep_snapshots: {other}"),
                        }
                    })
                    .await
                    .unwrap();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    let names = ["s0", "s1", "s2"];
    for name in names {
        assert_eq!(log.next_seq(name).unwrap(), StreamSeq(120));
        let start = start_of(&log, name.as_bytes());
        let entries = log.read_stream_from(name, StreamSeq(start)).unwrap();
        assert_eq!(seqs(&entries), (start..120).collect::<Vec<_>>());
    }
    let before = observe(&log, &names);
    log.close().wait().unwrap();
    assert_eq!(observe(&open(dir.path()), &names), before);
}

// ===========================================================================
// Crashes, faults, reopen with other options.

/// Prunes, clears and snapshot-and-prunes over several segments, then a
/// crash image: reopened with other segment sizes and limits, with Flush
/// durability or through a read-only reader, the log reads exactly as it
/// did; nothing pruned or cleared comes back.
#[test]
fn prunes_survive_a_crash_and_a_reopen_with_other_options() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for round in 0..20u64 {
        append_n(&log, "a", 5);
        append_n(&log, "b", 3);
        let next = log.next_seq("a").unwrap().0;
        log.snapshot_and_prune("a", StreamSeq(next - 2), vec![b'x'; 500]).wait().unwrap();
        log.prune("b", StreamSeq(log.next_seq("b").unwrap().0 - 1), PruneSnapshots::AllButLatest).wait().unwrap();
        if round % 7 == 6 {
            log.delete_stream("b").wait().unwrap();
        }
    }
    assert!(common::segment_files(dir.path()).len() > 2, "the test spans segments");
    let names = ["a", "b"];
    let before = observe(&log, &names);
    let image = tempfile::tempdir().unwrap();
    common::crash_image(dir.path(), image.path());
    drop(log);
    for options in [
        Options { segment_bytes: 1 << 20, record_bytes_max: 600, ..Options::default() },
        Options { segment_bytes: 4096, record_bytes_max: 1024, ..Options::default() },
        Options { durability: annals::Durability::Flush, ..common::small_options() },
    ] {
        let copy = tempfile::tempdir().unwrap();
        common::crash_image(image.path(), copy.path());
        let log = Log::open(copy.path(), options.clone()).unwrap();
        assert_eq!(observe(&log, &names), before, "{options:?}");
        append_n(&log, "a", 1);
        drop(log);
        let log = Log::open(copy.path(), options.clone()).unwrap();
        assert_eq!(observe(&log, &names).live[..before.live.len()], before.live[..], "{options:?}");
    }
    let reader = LogReader::open(image.path()).unwrap();
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), before.live);
}

/// The retention feature bit is written to the state file before the first
/// prune. When that write fails (an fsync error), the prune fails, nothing
/// is written, and the log is not poisoned: the next prune succeeds.
#[test]
fn a_prune_whose_feature_bit_cannot_be_recorded_writes_nothing_and_poisons_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    append_n(&log, "wf", 4);
    let before = log.last_lsn().unwrap();
    fs.faults.fail_syncs.store(true, Ordering::SeqCst);
    let failed = log.prune("wf", StreamSeq(2), PruneSnapshots::AllButLatest).wait();
    fs.faults.fail_syncs.store(false, Ordering::SeqCst);
    assert!(matches!(failed, Err(Error::Io { .. } | Error::DiskFull { .. })), "{failed:?}");
    log.check_open().expect("a failed state write does not poison the log");
    assert_eq!(log.last_lsn().unwrap(), before, "nothing was written");
    assert_eq!(seqs(&log.read_stream("wf").unwrap().entries), vec![0, 1, 2, 3]);
    log.prune("wf", StreamSeq(2), PruneSnapshots::AllButLatest).wait().unwrap();
    assert_eq!(state_features(dir.path()) & 1, 1);
    assert_eq!(seqs(&log.read_stream("wf").unwrap().entries), vec![2, 3]);
}

/// A prune whose fdatasync fails poisons the log; a reopen shows it wholly
/// applied or not at all, and the stream's next sequence is unchanged.
#[test]
fn a_prune_whose_fsync_fails_is_whole_or_absent_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    append_n(&log, "wf", 6);
    log.prune("wf", StreamSeq(1), PruneSnapshots::AllButLatest).wait().unwrap();
    fs.faults.fail_syncs.store(true, Ordering::SeqCst);
    let failed = log.commit(Batch::new().prune("wf", StreamSeq(4), PruneSnapshots::AllButLatest).append(
        "wf",
        Expectation::Any,
        &b"6"[..],
    ));
    assert!(matches!(failed.wait(), Err(Error::Poisoned { .. })));
    assert!(matches!(log.prune("wf", StreamSeq(5), PruneSnapshots::AllButLatest).wait(), Err(Error::Poisoned { .. })));
    drop(log);
    let log = open(dir.path());
    let got = seqs(&log.read_stream("wf").unwrap().entries);
    assert!(got == vec![1, 2, 3, 4, 5] || got == vec![4, 5, 6], "a partial batch: {got:?}");
    assert_eq!(log.next_seq("wf").unwrap().0, if got.len() == 3 { 7 } else { 6 });
}

/// BUG. A log holding prunes whose state file is lost, opened in salvage
/// mode: recovery writes a new state file with `features` 0
/// (`open_state_file`, `StateAction::Create`, src/log.rs; the same in
/// `Recovery::persist_salvage_resume`, src/recovery.rs, which copies the
/// features of a state it no longer has). The log then holds prune records
/// while its state file says it has none, so a reader from before retention
/// would take the prunes for a torn tail and bring back what they removed
/// (segments-format.md 5 and 9: bit 0 is set before any retention record
/// exists). Recovery saw the prunes; it should set the bit.
#[test]
fn salvage_of_a_log_holding_prunes_whose_state_file_was_lost_clears_the_retention_feature_bit() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, "wf", 5);
    log.prune("wf", StreamSeq(3), PruneSnapshots::AllButLatest).wait().unwrap();
    log.close().wait().unwrap();
    assert_eq!(state_features(dir.path()) & 1, 1);
    std::fs::remove_file(dir.path().join("annals.state")).unwrap();
    assert!(Log::open(dir.path(), common::small_options()).is_err(), "a strict open refuses a lost state file");
    let log =
        Log::open(dir.path(), Options { recovery_mode: RecoveryMode::Salvage, ..common::small_options() }).unwrap();
    assert_eq!(seqs(&log.read_stream("wf").unwrap().entries), vec![3, 4], "the prune is still honoured");
    log.close().wait().unwrap();
    assert_eq!(
        state_features(dir.path()) & 1,
        1,
        "the rebuilt state file says the log holds no retention record, but it holds a prune"
    );
}

/// BUG. Same cause as above, without salvage: the feature bit is written
/// to one state slot before the first prune; the other slot keeps the old
/// features until the next state write. A torn write of the newer slot is
/// "not corruption" (the older slot is used, segments-format.md 5), so a
/// strict open of a crashed log whose newer slot is damaged takes the
/// older state, without the bit, and every later state write (the clean
/// close writes both slots) keeps it clear although the log holds a prune.
/// Recovery scanned the prune; it should set bit 0 again
/// (src/recovery.rs `settle_state`, src/log.rs `open_state_file`).
#[test]
fn a_torn_state_slot_after_the_first_prune_loses_the_retention_feature_bit_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, "wf", 5);
    log.prune("wf", StreamSeq(3), PruneSnapshots::AllButLatest).wait().unwrap();
    append_n(&log, "wf", 1);
    let image = tempfile::tempdir().unwrap();
    common::crash_image(dir.path(), image.path());
    drop(log);
    let state = image.path().join("annals.state");
    let bytes = std::fs::read(&state).unwrap();
    let generation = |i: usize| u64::from_le_bytes(bytes[i * 512 + 32..i * 512 + 40].try_into().unwrap());
    let newer = if generation(0) > generation(1) { 0 } else { 1 };
    assert_eq!(state_features(image.path()) & 1, 1, "the bit is in the newer slot");
    common::flip_bit(&state, newer * 512 + 100, 3); // its checksum now fails: a torn update
    let log = open(image.path());
    assert_eq!(seqs(&log.read_stream("wf").unwrap().entries), vec![3, 4, 5], "the prune is honoured");
    log.close().wait().unwrap();
    assert_eq!(state_features(image.path()) & 1, 1, "the log holds a prune, its state file says it holds none");
}

/// The snapshot guard ("a snapshot may not cover less than the latest
/// one") follows the live snapshots: once a prune dropped them all, a
/// snapshot covering less is accepted, and the writer, recovery and a
/// compacted log agree on it.
#[test]
fn the_snapshot_guard_follows_the_live_snapshots_in_the_writer_in_recovery_and_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, "wf", 10);
    log.snapshot("wf", StreamSeq(7), &b"7"[..]).wait().unwrap();
    log.snapshot("wf", StreamSeq(8), &b"8"[..]).wait().unwrap();
    let refused =
        |log: &Log| matches!(log.snapshot("wf", StreamSeq(5), &b"5"[..]).wait(), Err(Error::SnapshotOutOfRange { .. }));
    assert!(refused(&log), "a snapshot covering less than the live latest one");
    log.prune("wf", StreamSeq(8), PruneSnapshots::Before(Lsn(log.last_lsn().unwrap().0 + 1))).wait().unwrap();
    assert!(live_snapshots_of(&log, "wf").is_empty());
    drop(log);
    let log = open(dir.path());
    log.compact().unwrap();
    drop(log);
    let log = open(dir.path());
    assert!(!refused(&log), "no live snapshot: any sequence below next is accepted");
    let below = log.snapshot("wf", StreamSeq(4), &b"4"[..]).wait();
    assert!(matches!(below, Err(Error::SnapshotOutOfRange { .. })), "and then the new one is the latest: {below:?}");
    log.clear("wf", Expectation::Any).wait().unwrap();
    append_n(&log, "wf", 3);
    log.snapshot("wf", StreamSeq(1), &b"new"[..]).wait().unwrap();
    drop(log);
    assert_eq!(open(dir.path()).read_stream("wf").unwrap().snapshot.unwrap().payload, &b"new"[..]);
}

// ===========================================================================
// The writer's clock.

/// Frame times never decrease in LSN order, across clean reopens and
/// crashes, and a record's time reads the same from every read path.
#[test]
fn record_times_never_decrease_across_reopen_and_read_the_same_everywhere() {
    let mut dirs = vec![tempfile::tempdir().unwrap()];
    for round in 0..4 {
        let dir = dirs.last().unwrap().path().to_owned();
        let log = open(&dir);
        append_n(&log, "wf", 20);
        log.commit(Batch::new().append("wf", Expectation::Any, &b"b"[..]).append("other", Expectation::Any, &b"o"[..]))
            .wait()
            .unwrap();
        log.snapshot_and_prune("wf", StreamSeq(log.next_seq("wf").unwrap().0 - 3), &b"s"[..]).wait().unwrap();
        if round % 2 == 0 {
            log.close().wait().unwrap();
        } else {
            // Go on from a crash image of the live log.
            let image = tempfile::tempdir().unwrap();
            common::crash_image(&dir, image.path());
            drop(log);
            dirs.push(image);
        }
    }
    let dir = dirs.last().unwrap();
    let log = open(dir.path());
    let on_disk = log.read_all_on_disk(Lsn::ZERO, usize::MAX).unwrap();
    let times: Vec<u64> = on_disk.iter().map(|r| r.timestamp_ms).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    for record in all_live(&log) {
        assert_eq!(log.read_lsn(record.lsn).unwrap().unwrap().timestamp_ms, record.timestamp_ms);
        if record.kind == RecordKind::Entry {
            let by_stream = log.read_stream_from(&record.stream, record.seq).unwrap();
            assert_eq!(by_stream[0].timestamp_ms, record.timestamp_ms);
        }
    }
}

/// A log whose last frame carries a time an hour ahead (written under a
/// clock that has since gone back): after a crash and a reopen, new records
/// are stamped no earlier than it, so `prune_older_than` stays a correct
/// binary search.
#[test]
fn the_clock_resumes_past_a_future_frame_time_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, "wf", 5);
    let image = tempfile::tempdir().unwrap();
    common::crash_image(dir.path(), image.path());
    drop(log);
    let segment = common::segment_files(image.path()).pop().unwrap();
    let (_, offsets) = frames_of(&segment);
    let ahead =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64 + 3_600_000;
    retime_frame(&segment, *offsets.last().unwrap(), ahead);
    let log = open(image.path());
    assert_eq!(log.read_stream("wf").unwrap().entries[4].timestamp_ms, ahead);
    let fresh = log.append("wf", Expectation::Any, &b"after"[..]).wait().unwrap();
    let time = log.read_lsn(fresh.lsn).unwrap().unwrap().timestamp_ms;
    assert!(time >= ahead, "a record written after the future frame has an earlier time: {time} < {ahead}");
    assert_eq!(log.prune_older_than("wf", ahead).unwrap().map(|a| a.seq), Some(StreamSeq(4)));
    assert_eq!(seqs(&log.read_stream("wf").unwrap().entries), vec![4, 5]);
}

/// BUG (legacy logs). Logs written before this commit were stamped with the
/// raw wall clock (`now_ms()`), which can step back (NTP); the new build
/// opens them with no mark that their times may decrease. `prune_older_than`
/// binary-searches the entries' times (`Index::first_entry_at_or_after`,
/// src/index.rs) and then prunes an entry written *after* the cut. Frame
/// times 1000, 3000, 2000, 4000, cut 2500: the search lands on sequence 3
/// and prunes the entry at 3000. It should never prune an entry whose time
/// is at or after the cut (stop at the first one, or check the result).
#[test]
fn prune_older_than_prunes_an_entry_newer_than_the_cut_in_a_log_whose_clock_went_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, "wf", 4);
    let image = tempfile::tempdir().unwrap();
    common::crash_image(dir.path(), image.path());
    drop(log);
    let segment = common::segment_files(image.path()).pop().unwrap();
    let (_, offsets) = frames_of(&segment);
    assert_eq!(offsets.len(), 4);
    for (offset, time) in offsets.iter().zip([1000, 3000, 2000, 4000]) {
        retime_frame(&segment, *offset, time);
    }
    let log = open(image.path());
    let times: Vec<u64> = log.read_stream("wf").unwrap().entries.iter().map(|r| r.timestamp_ms).collect();
    assert_eq!(times, vec![1000, 3000, 2000, 4000]);
    log.prune_older_than("wf", 2500).unwrap();
    let kept = log.read_stream("wf").unwrap().entries;
    assert!(
        kept.iter().any(|r| r.timestamp_ms == 3000),
        "the entry written at 3000 was pruned as older than 2500; kept {:?}",
        kept.iter().map(|r| (r.seq.0, r.timestamp_ms)).collect::<Vec<_>>()
    );
}

/// `prune_older_than` at 0 prunes nothing; at u64::MAX everything, keeping
/// the next sequence; `keep_snapshots` with a huge `keep` writes nothing.
#[test]
fn prune_older_than_and_keep_snapshots_at_the_extremes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, "wf", 5);
    log.snapshot("wf", StreamSeq(2), &b"s"[..]).wait().unwrap();
    let last = log.last_lsn().unwrap();
    assert_eq!(log.prune_older_than("wf", 0).unwrap(), None);
    assert_eq!(log.keep_snapshots("wf", usize::MAX).unwrap(), None);
    assert_eq!(log.keep_snapshots("wf", 2).unwrap(), None);
    assert_eq!(log.last_lsn().unwrap(), last, "nothing was written");
    assert_eq!(log.prune_older_than("wf", u64::MAX).unwrap().map(|a| a.seq), Some(StreamSeq(5)));
    assert!(log.read_stream("wf").unwrap().entries.is_empty());
    assert_eq!(live_snapshots_of(&log, "wf"), vec![2], "prune_older_than keeps snapshots");
    assert_eq!(log.next_seq("wf").unwrap(), StreamSeq(5));
    assert_eq!(log.prune_older_than("wf", u64::MAX).unwrap(), None, "nothing is left to prune");
}

/// BUG. `Log::keep_snapshots` is documented to write nothing (and return
/// `None`) "if the stream has `keep` snapshots or fewer". With exactly
/// `keep` snapshots it writes a prune of the entries the oldest one covers,
/// and it does so again on every later call although nothing is left to
/// prune: each call of a periodic retention job appends one more prune
/// record, forever. The resolver in `Log::keep_snapshots` (src/log.rs)
/// returns a prune whenever the `keep`th newest snapshot exists, without
/// checking that there is an older snapshot to drop or an entry to prune
/// (compare `prune_older_than`, which checks `before > start`).
#[test]
fn keep_snapshots_writes_a_prune_on_every_call_when_the_stream_has_exactly_keep_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, "wf", 5);
    log.snapshot("wf", StreamSeq(2), &b"s"[..]).wait().unwrap();
    let last = log.last_lsn().unwrap();
    let mut written = Vec::new();
    for _ in 0..3 {
        written.push(log.keep_snapshots("wf", 1).unwrap());
    }
    assert_eq!(
        (written.clone(), log.last_lsn().unwrap()),
        (vec![None, None, None], last),
        "one snapshot, keep one: documented to write nothing"
    );
}

// ===========================================================================
// annals repair, dump, verify.

fn repair(source: &Path, into: &Path) -> annals::Result<annals::inspect::RepairReport> {
    annals::inspect::repair(source, into, Options::default())
}

/// A log of prunes, snapshot-and-prunes, keep-snapshots, clears and
/// batches, repaired: the copy reads exactly like the source (live records
/// with their LSNs and times, streams, starts, next sequences, and every
/// operation on disk), and goes on the same way.
#[test]
fn repair_of_a_log_holding_prunes_reads_exactly_like_the_source() {
    let source = tempfile::tempdir().unwrap();
    let log = open(source.path());
    let names = churned_log(&log);
    log.close().wait().unwrap();
    let log = open(source.path());
    append_n(&log, "a", 2);
    log.close().wait().unwrap();
    let into = tempfile::tempdir().unwrap();
    let copy = into.path().join("copy");
    repair(source.path(), &copy).expect("repair");
    let source_log = open(source.path());
    let copy_log = open(&copy);
    assert_eq!(observe(&copy_log, &names), observe(&source_log, &names));
    assert_eq!(
        copy_log.read_all_on_disk(Lsn::ZERO, usize::MAX).unwrap(),
        source_log.read_all_on_disk(Lsn::ZERO, usize::MAX).unwrap(),
        "every operation on disk is copied with its lsn, sequence and time"
    );
    for name in &names {
        let a = source_log.append(name, Expectation::Any, &b"more"[..]).wait().unwrap();
        let b = copy_log.append(name, Expectation::Any, &b"more"[..]).wait().unwrap();
        assert_eq!(a.seq, b.seq, "stream {name} goes on at the same sequence");
    }
}

/// BUG. `annals repair` of a log in which damage took an entry of a stream
/// that was later pruned: the entries after the damaged one are dropped
/// (they no longer follow the stream), and then the prune, which names a
/// sequence past the copy's next one, is refused with `PruneOutOfRange`,
/// which `inspect::repair` (src/inspect.rs) does not count among the
/// records it drops, so the whole repair fails ("prune ... out of range")
/// and leaves a half-written copy. It should drop the prune like the other
/// records that no longer fit (or prune what there is), list it, and copy
/// every intact record of the other streams.
#[test]
fn repair_aborts_when_damage_took_an_entry_before_a_prune_of_the_same_stream() {
    let source = tempfile::tempdir().unwrap();
    let log = open(source.path());
    let mut payloads = Vec::new();
    for i in 0..10u64 {
        let payload = common::unique_payload(i, 40);
        log.append("a", Expectation::Any, payload.clone()).wait().unwrap();
        log.append("b", Expectation::Any, common::unique_payload(100 + i, 40)).wait().unwrap();
        payloads.push(payload);
    }
    log.prune("a", StreamSeq(8), PruneSnapshots::AllButLatest).wait().unwrap();
    append_n(&log, "c", 3);
    log.close().wait().unwrap();
    let (file, end) = common::payload_end(source.path(), &payloads[3]).unwrap();
    common::flip_bit(&file, end - 1, 0);
    let into = tempfile::tempdir().unwrap();
    let copy = into.path().join("copy");
    let report = repair(source.path(), &copy).expect("repair");
    assert!(!report.records_dropped.is_empty(), "the records that no longer fit are listed");
    let log = open(&copy);
    assert_eq!(seqs(&log.read_stream("b").unwrap().entries), (0..10).collect::<Vec<_>>());
    assert_eq!(seqs(&log.read_stream("c").unwrap().entries), vec![0, 1, 2]);
}

/// BUG. `annals repair` keeps each record's time (commit message, and
/// `Batch::at_time`), but where damage took a record the copy skips its LSN
/// with a gap frame stamped with the repair's own clock (`Writer::write_gap`
/// uses `timestamp_ms()`, src/commit.rs). The writer's clock never goes
/// back, so every record copied after the gap gets the time of the repair,
/// not its own: here stream b's records after the damaged one of stream a.
/// `prune_older_than` on the copy then keeps records it should prune. The
/// gap should take the time of the record before it (or of the next one).
#[test]
fn repair_stamps_every_record_after_a_damaged_one_with_the_time_of_the_repair() {
    let source = tempfile::tempdir().unwrap();
    let log = open(source.path());
    let mut payloads = Vec::new();
    for i in 0..6u64 {
        let payload = common::unique_payload(i, 40);
        log.append("a", Expectation::Any, payload.clone()).wait().unwrap();
        log.append("b", Expectation::Any, common::unique_payload(100 + i, 40)).wait().unwrap();
        payloads.push(payload);
    }
    let b_before = log.read_stream("b").unwrap().entries;
    log.close().wait().unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let (file, end) = common::payload_end(source.path(), &payloads[2]).unwrap();
    common::flip_bit(&file, end - 1, 0);
    let into = tempfile::tempdir().unwrap();
    let copy = into.path().join("copy");
    repair(source.path(), &copy).expect("repair");
    let log = open(&copy);
    let b_after = log.read_stream("b").unwrap().entries;
    let times = |records: &[Record]| records.iter().map(|r| (r.seq.0, r.timestamp_ms)).collect::<Vec<_>>();
    assert_eq!(times(&b_after), times(&b_before), "repair changed the times of records it copied");
}

/// A log holding a base record (kind 8: a stream that continues at
/// sequence 100, as compaction writes): recovery, a read-only reader,
/// `verify`, `dump` and `repair` all accept it; the stream continues at 100
/// in the source and in the copy, and a base for a stream that has history
/// is refused as corruption.
#[test]
fn a_base_record_is_read_verified_dumped_and_repaired_like_any_other() {
    let live = tempfile::tempdir().unwrap();
    let log = open(live.path());
    append_n(&log, "a", 3);
    log.prune("a", StreamSeq(1), PruneSnapshots::AllButLatest).wait().unwrap();
    let image = tempfile::tempdir().unwrap();
    common::crash_image(live.path(), image.path());
    drop(log);
    let base_lsn = append_base_frame(image.path(), b"based", 100);

    let reader = LogReader::open(image.path()).unwrap();
    assert!(reader.problems().is_empty(), "{:?}", reader.problems());
    assert_eq!(reader.streams("based"), vec![(bytes::Bytes::from_static(b"based"), StreamSeq(100))]);
    assert!(matches!(reader.read_stream_from("based", StreamSeq(99)), Err(Error::Pruned { .. })));
    assert_eq!(reader.read_lsn(base_lsn).unwrap(), None, "a base is not a live record");
    drop(reader);

    let reader = LogReader::open(image.path()).unwrap();
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap().len(), 2, "the live records: a1 and a2");
    let kinds: Vec<&str> =
        reader.read_all_on_disk(Lsn::ZERO, usize::MAX).unwrap().iter().map(|r| r.kind.name()).collect();
    assert_eq!(kinds, vec!["entry", "entry", "entry", "prune", "base"]);
    let mut intact = Vec::new();
    annals::inspect::scan_intact(&annals::fs::RealFs, image.path(), |_, _, frame| {
        intact.extend(frame.ops().map(|op| op.kind.name()));
    })
    .unwrap();
    assert_eq!(intact, vec!["entry", "entry", "entry", "prune", "base"]);
    drop(reader);

    let into = tempfile::tempdir().unwrap();
    let copy = into.path().join("copy");
    repair(image.path(), &copy).expect("repair");
    for dir in [image.path(), copy.as_path()] {
        let log = open(dir);
        assert_eq!(log.next_seq("based").unwrap(), StreamSeq(100), "{}", dir.display());
        assert!(matches!(log.read_stream_from("based", StreamSeq(0)), Err(Error::Pruned { .. })));
        assert!(matches!(log.append("based", Expectation::NoStream, &b"x"[..]).wait(), Err(Error::Conflict { .. })));
        assert_eq!(
            log.append("based", Expectation::Exact(StreamSeq(100)), &b"x"[..]).wait().unwrap().seq,
            StreamSeq(100)
        );
        assert_eq!(seqs(&log.read_stream("based").unwrap().entries), vec![100]);
        assert_eq!(state_features(dir) & 1, 1, "{}", dir.display());
    }

    // A base for a stream with history breaks the stream's rules: corruption.
    let bad = tempfile::tempdir().unwrap();
    let live = tempfile::tempdir().unwrap();
    let log = open(live.path());
    append_n(&log, "a", 3);
    common::crash_image(live.path(), bad.path());
    drop(log);
    append_base_frame(bad.path(), b"a", 100);
    assert!(matches!(Log::open(bad.path(), common::small_options()), Err(Error::Corruption(_))));
}

/// A reader calls a log holding prunes, snapshot-and-prunes and clears
/// clean and reads exactly the live records, in order, paging over them as
/// `read_all` does (what `annals verify` and `annals dump` report).
#[test]
fn verify_and_dump_of_a_log_holding_prunes_show_exactly_the_live_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    churned_log(&log);
    let live = all_live(&log);
    log.close().wait().unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    assert!(reader.problems().is_empty(), "{:?}", reader.problems());
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), live);
    let after = live[live.len() / 2].lsn;
    let want: Vec<Record> = live.iter().filter(|r| r.lsn > after).take(3).cloned().collect();
    assert_eq!(reader.read_all(after, 3).unwrap(), want);
}

// ===========================================================================
// Beside a live writer.

/// A read-only reader opened beside a live writer, after prunes, sees what
/// the writer served when it opened: the same live records, the same
/// starts; and it changes nothing on disk.
#[test]
fn a_read_only_reader_beside_a_live_writer_honours_its_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_preparation: SegmentPreparation::Inline, ..common::small_options() };
    let log = Log::open(dir.path(), options).unwrap();
    let names = churned_log(&log);
    let live = all_live(&log);
    let before = common::dir_snapshot(dir.path());
    let reader = LogReader::open(dir.path()).unwrap();
    common::assert_dir_unchanged(dir.path(), &before, "LogReader::open");
    assert!(reader.problems().is_empty(), "{:?}", reader.problems());
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), live);
    for name in &names {
        assert_eq!(reader.read_stream(name).unwrap(), log.read_stream(name).unwrap(), "{name}");
        let start = start_of(&log, name.as_bytes());
        if start > 0 {
            assert!(matches!(reader.read_stream_from(name, StreamSeq(start - 1)), Err(Error::Pruned { .. })));
        }
    }
    // The writer goes on pruning; the reader keeps its view.
    log.prune("a", log.next_seq("a").unwrap(), PruneSnapshots::Before(Lsn(log.last_lsn().unwrap().0 + 1)))
        .wait()
        .unwrap();
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), live);
}

// ===========================================================================
// Streams listed, and the stores' backend.

/// A stream whose every entry and snapshot was pruned is still listed,
/// with its next sequence: it has state (appends go on there), unlike a
/// deleted stream.
#[test]
fn streams_lists_a_pruned_empty_stream_with_its_next_sequence_and_not_a_deleted_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, "emptied", 3);
    log.snapshot("emptied", StreamSeq(1), &b"s"[..]).wait().unwrap();
    append_n(&log, "kept", 1);
    append_n(&log, "deleted", 2);
    log.prune("emptied", StreamSeq(3), PruneSnapshots::Before(Lsn(log.last_lsn().unwrap().0 + 1))).wait().unwrap();
    log.delete_stream("deleted").wait().unwrap();
    assert!(live_of(&log, "emptied").is_empty(), "nothing of the stream is live");
    let listed: Vec<(Vec<u8>, u64)> =
        log.streams("").unwrap().into_iter().map(|(id, next)| (id.to_vec(), next.0)).collect();
    assert_eq!(listed, vec![(b"emptied".to_vec(), 3), (b"kept".to_vec(), 1)]);
}

/// BUG. The stores' backend works out a stream's next sequence from what a
/// read returns (the last entry's sequence + 1, else the snapshot's + 1,
/// else 0: `Backend::read` in src/stores/log_backend.rs). After a prune that
/// removed the trailing entries (or all of them), that is wrong: a stream
/// pruned to its next sequence 3 reads as next 0, and a stream whose
/// snapshot through 1 survives a prune to 5 reads as next 2. A store that
/// appends with `Expect::Next(next_seq)` then conflicts forever
/// (`CheckpointRows::append` ends in `Contention`), and
/// `CheckpointRows::clear` takes `next_seq == 0` for "nothing to clear".
/// `next_seq` should be the log's next sequence for the stream.
#[test]
fn the_store_backend_reads_the_wrong_next_sequence_for_a_pruned_stream() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, "emptied", 3);
    log.prune("emptied", StreamSeq(3), PruneSnapshots::AllButLatest).wait().unwrap();
    append_n(&log, "snapped", 5);
    log.snapshot("snapped", StreamSeq(1), &b"s"[..]).wait().unwrap();
    log.prune("snapped", StreamSeq(5), PruneSnapshots::Before(Lsn::ZERO)).wait().unwrap();
    for (stream, next) in [("emptied", 3u64), ("snapped", 5)] {
        let contents = block_on(Backend::read(&log, stream)).unwrap();
        let appended =
            block_on(Backend::commit(&log, vec![StoreOp::append(stream, Expect::Next(contents.next_seq), &b"x"[..])]));
        assert!(
            contents.next_seq == next && appended.is_ok(),
            "stream {stream}: the log's next sequence is {next}, the backend read {} and an append expecting it \
             got {appended:?}",
            contents.next_seq
        );
    }
}

/// A tailing store reads only live entries: after a clear it sees the new
/// stream's entries and never the cleared ones again (the backend's
/// contract; a cursor is never handed a record that retention removed).
#[test]
fn read_after_delivers_only_live_entries_after_a_clear() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_n(&log, "wf", 3);
    let seen = block_on(Backend::read_after(&log, Cursor::START, usize::MAX)).unwrap();
    assert_eq!(seen.len(), 3);
    let cursor = seen.last().unwrap().cursor;
    log.delete_stream("wf").wait().unwrap();
    append_n(&log, "wf", 1);
    let tail = block_on(Backend::read_after(&log, cursor, usize::MAX)).unwrap();
    let kinds: Vec<(EntryKind, u64)> = tail.iter().map(|e| (e.kind, e.seq)).collect();
    assert_eq!(kinds, vec![(EntryKind::Entry, 0)]);
    assert!(block_on(Backend::read_after(&log, Cursor::START, usize::MAX)).unwrap().len() == 1);
}

/// `read_after` cursors step over pruned entries and dropped snapshots of
/// the stores' streams: a loop with limit 1 sees exactly the live records.
#[test]
fn read_after_cursors_step_over_pruned_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    churned_log(&log);
    let everything: Vec<(u64, String, u64)> =
        all_live(&log).iter().map(|r| (r.lsn.0, String::from_utf8_lossy(&r.stream).into_owned(), r.seq.0)).collect();
    let mut cursor = Cursor::START;
    let mut seen = Vec::new();
    loop {
        let page: Result<Vec<_>, StoreError> = block_on(Backend::read_after(&log, cursor, 1));
        let page = page.unwrap();
        let Some(entry) = page.last() else { break };
        cursor = entry.cursor;
        assert!(matches!(entry.kind, EntryKind::Entry | EntryKind::Snapshot));
        seen.push((entry.cursor.0, entry.stream.clone(), entry.seq));
    }
    assert_eq!(seen, everything);
}
