//! The public handle: opens a log, coordinates the writer, the spare
//! preparer and the index, and serves reads.
//!
//! [`Log`] is `Clone + Send + Sync`; every clone shares one writer. Async
//! appends are committed by the writer thread; a blocking appender that finds
//! no one writing commits its group itself, and so does an awaited durable
//! append on a worker of tokio's multi-threaded runtime when appenders come
//! one at a time, inside `block_in_place` (`Options::awaited_commits_in_place`).
//! Each write returns a [`Pending`] future: `.await` it on any async runtime
//! (no I/O runs on a thread the runtime still schedules tasks on), or call
//! [`Pending::wait`] to block a thread that has no runtime.
//!
//! # Dropped appends
//!
//! Like any Rust future, a [`Pending`] does nothing until it is first polled
//! (or [`Pending::wait`] is called): dropped before that, the write never
//! happens. Once polled it is queued (unless the queue is full: then it
//! waits for room, and dropped while it waits it never happens), and
//! dropping it then does not withdraw it: it may still commit, and the
//! caller will not learn whether it did.
//! A caller that retries after dropping one must use a guard
//! ([`Expectation::Exact`]) to avoid a duplicate: the retry then either
//! succeeds (the first never committed) or fails with [`Error::Conflict`]
//! whose `actual` shows that the stream moved; [`Log::read_stream_from`]
//! tells whether it moved by the first attempt.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::commit::{
    Acks, Appended, Command, OneOrMany, Op, OpKind, OwnedRequest, PruneSnapshots, Queue, Shared, Spares, Status,
    StreamId, WriteRequest, Writer, now_ms,
};
use crate::error::{Error, Result};
use crate::frame::{BATCH_OP_KIND_BYTES, BATCH_OPS_MAX, OP_HEADER_BYTES, STREAM_ID_BYTES_MAX};
use crate::fs::{DirLock, FileSystem, LockMode};
use crate::index::{Index, IndexStats, Record, RecordRef, StreamRead};
use crate::options::{Options, SegmentPreparation};
use crate::recovery::{Access, Recovered, RecoveryReport, StateAction, recover};
use crate::segment::{
    FIRST_SEGMENT_BYTES, FORMAT_VERSION, SEGMENT_HEADER_BYTES, Segment, SegmentHeader, prepare_spare, publish_spare,
};
use crate::state::{LogState, StateCopies, StateFile};
use crate::subscribe::Subscription;
use crate::sync::thread::{self, JoinHandle};
use crate::sync::{Condvar, Mutex, RwLock};
use crate::types::{Durability, Expectation, Lsn, RecoveryMode, StreamSeq};

/// An open log. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct Log {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    /// The writer's state; whoever holds it writes (the writer thread, or a
    /// blocking appender leading a group).
    writer: Arc<Mutex<Writer>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    /// The spare preparer, compactor and image writer, as the writer thread
    /// started them: all of them once it has exited.
    background_threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    report: RecoveryReport,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The last handle is gone: close as `close()` would, then join the threads.
        let (reply, _ignored) = oneshot::channel();
        let _ = self.shared.push(Command::Close(reply), true);
        // The writer first: the others are all started once it has exited.
        if let Some(thread) = self.writer_thread.lock().take() {
            let _ = thread.join();
        }
        for thread in self.background_threads.lock().drain(..) {
            let _ = thread.join();
        }
    }
}

/// A write that was queued; await it, or [`wait`](Pending::wait) for it.
#[must_use = "a dropped Pending does not withdraw the write; await it to learn the outcome"]
pub struct Pending<T> {
    state: State<T>,
}

enum State<T> {
    /// Decided without queueing anything (a rejected batch); taken when polled.
    Ready(Option<Result<T>>),
    /// A write of a batch, then `output` of its acknowledgements.
    Write(Write, fn(Acks) -> T),
    /// Anything else (a close).
    Other(Pin<Box<dyn Future<Output = Result<T>> + Send>>),
}

/// A batch on its way through the queue. Nothing is allocated for it beyond
/// its request (and, for several operations, their list), full queue or not.
struct Write {
    handle: Arc<Handle>,
    /// The batch and where the writer answers it; queued when first polled.
    request: OwnedRequest,
    /// Where the request is.
    stage: WriteStage,
    /// The caller blocks in `wait`: its push does not wake the writer
    /// thread, since the caller will lead.
    blocking: bool,
}

/// Where a [`Write`]'s request is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteStage {
    /// Not queued yet (never polled, or the queue was full).
    Unqueued,
    /// In the queue, or taken from it by the writer: its slot answers.
    Queued,
    /// Refused by the queue (the log is closed or poisoned), and told so.
    Refused,
}

// No field is ever pinned in place: the futures inside are boxed.
impl<T> Unpin for Pending<T> {}

impl<T> Pending<T> {
    fn ready(result: Result<T>) -> Pending<T> {
        Pending { state: State::Ready(Some(result)) }
    }

    fn other(future: impl Future<Output = Result<T>> + Send + 'static) -> Pending<T> {
        Pending { state: State::Other(Box::pin(future)) }
    }

    /// Blocks the calling thread until the write is acknowledged or fails.
    ///
    /// If no one else is writing, the calling thread commits the group its
    /// request is in: it may run the write and the fdatasync itself. So call
    /// it from threads that may block, never from async code; there, `.await`
    /// the `Pending` instead, and the writer thread does the I/O (or, on a
    /// worker of tokio's multi-threaded runtime, the worker's thread inside
    /// `block_in_place`: see `Options::awaited_commits_in_place`).
    ///
    /// # Errors
    /// Whatever the write failed with.
    pub fn wait(mut self) -> Result<T> {
        let handle = match &mut self.state {
            State::Write(write, _) => {
                write.blocking = true;
                Some(write.handle.clone())
            }
            _ => None,
        };
        let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(output) = Pin::new(&mut self).poll(&mut cx) {
                return output;
            }
            // The request is queued, or waits for room in a full queue and
            // will be queued after a later poll: after every poll, commit
            // what is queued here if no one else is writing (the request's
            // push does not wake the writer thread).
            if let Some(handle) = &handle {
                Writer::lead(&handle.shared, &handle.writer);
            }
            thread::park();
        }
    }
}

impl Write {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Acks>> {
        match self.stage {
            WriteStage::Queued => return self.request.reply.poll(cx),
            WriteStage::Refused => panic!("a Pending is not polled after it finished"),
            WriteStage::Unqueued => {}
        }
        if !self.blocking
            && let Some(outcome) = self.commit_in_place(cx)
        {
            return outcome;
        }
        // The slot holds the waker before the writer can see it: an answer
        // that comes before this returns wakes the task, which polls again.
        // Nothing else holds the request yet (a full queue handed it back).
        Arc::get_mut(&mut self.request).expect("a request not queued is not shared").reply.set_waker(cx.waker());
        let command = Command::Write(Arc::clone(&self.request));
        match self.handle.shared.push_or_wait(command, !self.blocking, Some(cx.waker())) {
            Ok(None) => {
                self.stage = WriteStage::Queued;
                Poll::Pending
            }
            // The queue is full: this is polled again once it has room.
            // (Each arm takes what it matched: the result is never dropped
            // whole, which costs the queued case a call of its drop glue.)
            Ok(Some(Command::Write(handed_back))) => {
                drop(handed_back);
                Poll::Pending
            }
            Ok(Some(Command::Close(_reply))) => unreachable!("a write was pushed"),
            Err(error) => {
                self.stage = WriteStage::Refused;
                Poll::Ready(Err(error))
            }
        }
    }
}

impl Write {
    /// Commits an awaited durable append on the polling thread, if it may:
    /// the thread is a worker of tokio's multi-threaded runtime (see
    /// [`in_place`]), no one else is writing or queued, appenders have come
    /// one at a time, and the log's options allow it
    /// (`Options::awaited_commits_in_place`). The commit runs inside
    /// `block_in_place`, which hands the worker's queued tasks to another
    /// thread first: the runtime goes on, and this task, the one waiting
    /// for the fdatasync anyway, is answered without the two thread
    /// hand-offs (to the writer thread and back) an append otherwise pays.
    /// `None` where it may not: the request is then queued for the writer
    /// thread as usual.
    fn commit_in_place(&mut self, cx: &mut Context<'_>) -> Option<Poll<Result<Acks>>> {
        let shared = &self.handle.shared;
        if self.request.durability != Durability::Sync
            || !shared.options.awaited_commits_in_place
            || shared.queued.load(Ordering::Acquire) != 0
            || !shared.lone_appenders()
            || !in_place::allowed()
        {
            return None;
        }
        let mut writer = self.handle.writer.try_lock()?;
        // This thread's own round answers the request before it returns,
        // so the answer need wake no one (a wake of this very task would
        // cost it a spurious poll later).
        let request = Arc::get_mut(&mut self.request).expect("a request not queued is not shared");
        request.reply.set_waker(Waker::noop());
        // Not the writer thread's: this thread leads. A full queue (filled
        // since the look above) hands the request back to the usual path.
        match self.handle.shared.push_or_wait(Command::Write(Arc::clone(&self.request)), false, None) {
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => return None,
        }
        self.stage = WriteStage::Queued;
        in_place::block(|| writer.round_in_place());
        drop(writer);
        self.handle.shared.wake_for_leftovers();
        // Answered by the round (else whoever answers it wakes this task).
        Some(self.request.reply.poll(cx))
    }
}

/// Where an awaited append may commit on the thread that polls it.
#[cfg(not(annals_shuttle))]
mod in_place {
    use tokio::runtime::{Handle, RuntimeFlavor};

    /// Whether the calling thread is a worker of tokio's multi-threaded
    /// runtime, where `block_in_place` moves the worker's other tasks to
    /// another thread before it blocks (a worker in a `LocalSet` too). Not
    /// a current-thread runtime, whose one thread would stall, nor the
    /// thread in a multi-threaded runtime's `block_on` (where `block_in_place`
    /// panics inside a `LocalSet`), nor any other executor.
    pub fn allowed() -> bool {
        tokio::runtime::worker_index().is_some()
            && Handle::try_current().is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread)
    }

    /// Runs `f`, which blocks, with the worker's tasks handed to another thread.
    pub fn block<R>(f: impl FnOnce() -> R) -> R {
        tokio::task::block_in_place(f)
    }
}

/// Under the shuttle model there is no runtime: every awaited append may
/// lead (as the log's options say), and leads on the model's thread.
#[cfg(annals_shuttle)]
mod in_place {
    pub fn allowed() -> bool {
        true
    }

    pub fn block<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        match &mut self.get_mut().state {
            State::Ready(result) => Poll::Ready(result.take().expect("a Pending is not polled after it finished")),
            State::Write(write, output) => write.poll(cx).map(|result| result.map(*output)),
            State::Other(future) => future.as_mut().poll(cx),
        }
    }
}

/// The bytes an operation on `stream` with `payload_bytes` of payload
/// takes in a frame's body (a batch's kind byte aside), if its stream id
/// is one a frame can hold.
#[inline]
fn op_bytes(stream: &[u8], payload_bytes: usize) -> Result<usize> {
    if stream.is_empty() {
        return Err(Error::InvalidArgument("empty stream id".to_owned()));
    }
    if stream.len() > STREAM_ID_BYTES_MAX {
        return Err(Error::TooLarge { what: "stream id", len: stream.len(), max: STREAM_ID_BYTES_MAX });
    }
    Ok((OP_HEADER_BYTES + stream.len()).saturating_add(payload_bytes))
}

/// The refusal of a write to `stream`, one of the log's reserved streams.
#[cold]
fn reserved_stream(stream: &[u8]) -> Error {
    Error::InvalidArgument(format!(
        "stream {} is in the namespace the log reserves for itself (ids starting with 0xff 'annals/')",
        crate::types::display_stream(stream)
    ))
}

struct ThreadWaker(thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Several operations committed atomically: all or none.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds an entry, guarded by `expected`.
    pub fn append(mut self, stream: impl AsRef<[u8]>, expected: Expectation, payload: impl Into<Bytes>) -> Batch {
        self.ops.push(Op {
            kind: OpKind::Entry(expected),
            stream: StreamId::copy_from_slice(stream.as_ref()),
            payload: payload.into(),
            timestamp_ms: None,
        });
        self
    }

    /// Adds a snapshot of a stream through sequence `through`.
    pub fn snapshot(mut self, stream: impl AsRef<[u8]>, through: StreamSeq, payload: impl Into<Bytes>) -> Batch {
        self.ops.push(Op {
            kind: OpKind::Snapshot(through),
            stream: StreamId::copy_from_slice(stream.as_ref()),
            payload: payload.into(),
            timestamp_ms: None,
        });
        self
    }

    /// Adds a clear of a stream, guarded by `expected`.
    pub fn clear(mut self, stream: impl AsRef<[u8]>, expected: Expectation) -> Batch {
        self.ops.push(Op {
            kind: OpKind::Clear(expected),
            stream: StreamId::copy_from_slice(stream.as_ref()),
            payload: Bytes::new(),
            timestamp_ms: None,
        });
        self
    }

    /// Adds a prune of a stream: its entries before `before` (at most its
    /// next sequence) and the snapshots `snapshots` names stop being live.
    /// Reads never return them again, a read from below `before` says
    /// [`Error::Pruned`], and compaction reclaims their bytes.
    pub fn prune(mut self, stream: impl AsRef<[u8]>, before: StreamSeq, snapshots: PruneSnapshots) -> Batch {
        self.ops.push(Op {
            kind: OpKind::Prune(before, snapshots, Expectation::Any, None),
            stream: StreamId::copy_from_slice(stream.as_ref()),
            payload: Bytes::new(),
            timestamp_ms: None,
        });
        self
    }

    /// Adds a snapshot of a stream through sequence `through` and a prune of
    /// everything it covers: the entries through `through` and every older
    /// snapshot. Compaction to snapshot checkpoints, in one atomic step.
    pub fn snapshot_and_prune(self, stream: impl AsRef<[u8]>, through: StreamSeq, payload: impl Into<Bytes>) -> Batch {
        let stream = stream.as_ref();
        self.snapshot(stream, through, payload).prune(
            stream,
            StreamSeq(through.0.saturating_add(1)),
            PruneSnapshots::AllButLatest,
        )
    }

    /// Adds a check that `stream` meets `expected`: it writes nothing and
    /// takes no LSN, but the batch commits only if it holds, checked at the
    /// same point as the batch's other guards (and seeing the effects of
    /// the operations before it).
    pub fn check(mut self, stream: impl AsRef<[u8]>, expected: Expectation) -> Batch {
        self.ops.push(Op {
            kind: OpKind::Check(expected),
            stream: StreamId::copy_from_slice(stream.as_ref()),
            payload: Bytes::new(),
            timestamp_ms: None,
        });
        self
    }

    /// Adds an operation of any kind.
    pub(crate) fn with(mut self, kind: OpKind, stream: &[u8], payload: &[u8]) -> Batch {
        self.ops.push(Op {
            kind,
            stream: StreamId::copy_from_slice(stream),
            payload: Bytes::copy_from_slice(payload),
            timestamp_ms: None,
        });
        self
    }

    /// Records `timestamp_ms` as the batch's time instead of the clock's
    /// (never earlier than the log's last frame): `annals repair` keeps
    /// each record's time.
    pub(crate) fn at_time(mut self, timestamp_ms: u64) -> Batch {
        if let Some(first) = self.ops.first_mut() {
            first.timestamp_ms = Some(timestamp_ms);
        }
        self
    }

    /// The batch's operations, with nothing allocated for a single one.
    fn into_ops(mut self) -> OneOrMany<Op> {
        match self.ops.len() {
            1 => OneOrMany::One(self.ops.pop().expect("one operation")),
            _ => OneOrMany::Many(self.ops),
        }
    }

    /// Operations in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

static LOG_ID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh random log id, from the standard library's per-process random
/// hasher keys mixed with the time and a counter.
fn new_log_id() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut id = [0u8; 16];
    for half in id.chunks_mut(8) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(now_ms());
        hasher.write_u64(LOG_ID_COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u32(std::process::id());
        half.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    id
}

/// How long an open waits for a lock that is held: a lock released by a
/// closed log stays held while a process forked at that moment (by any
/// thread of the program) has not yet run its new program, since the child
/// shares the lock until then.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

fn lock_dir(fs: &dyn FileSystem, dir: &Path, mode: LockMode) -> Result<DirLock> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match fs.lock(dir, mode) {
            Ok(Some(lock)) => return Ok(lock),
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(5)),
            Ok(None) => return Err(Error::Locked { dir: dir.to_owned() }),
            Err(error) => return Err(Error::io("lock", dir, error)),
        }
    }
}

impl Log {
    /// Opens the log in `dir`, creating it if needed, and recovers it.
    ///
    /// # Errors
    /// [`Error::Locked`] if another handle or process has it open;
    /// [`Error::Corruption`] naming the file and offset of damage that is not
    /// a torn tail (unless `options.recovery_mode` is `Salvage`);
    /// [`Error::Io`]; [`Error::InvalidArgument`] for bad options. The
    /// background threads (spare preparer, compactor, image writer) start
    /// after open returns, once the writer thread first wakes (a write, or
    /// 50 ms after open): one that cannot be started poisons the log, so
    /// writes fail with its error while reads go on.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Log> {
        options.validate()?;
        let dir = dir.as_ref().to_owned();
        let _span =
            tracing::info_span!(target: "annals::open", "open", dir = %dir.display(), access = "read-write").entered();
        let started = std::time::Instant::now();
        crate::telemetry::describe();
        let fs = options.file_system.clone();
        fs.create_dir_all(&dir).map_err(|error| Error::io("create directory", &dir, error))?;
        let lock = lock_dir(&*fs, &dir, LockMode::Exclusive)?;
        // Recovery syncs the directory before it reads it, unless the state
        // file holds a clean-close pair (segments-format.md, 7).
        let Recovered { mut index, log_id, state, report, .. } =
            recover(&*fs, &dir, Access::ReadWrite, options.recovery_mode)?;
        crate::telemetry::recovered("read-write", &report, started.elapsed());
        // Appends go into an ordinary segment: a log whose last segment is
        // compacted (salvage dropped the ordinary ones) gets a new one.
        let appendable = index.segments().last().is_some_and(|entry| !entry.segment.compacted());
        let log_id = match log_id.filter(|_| appendable) {
            Some(log_id) => log_id,
            None => create_first_segment(&*fs, &dir, &options, &mut index, log_id.unwrap_or_else(new_log_id))?,
        };
        let mut state_file = open_state_file(&*fs, &dir, &index, log_id, state)?;
        if index.retention_records() > 0 {
            // A state file rebuilt, or fallen back to an older slot, that
            // does not say what the log holds says it again.
            state_file.add_features(crate::state::FEATURE_RETENTION)?;
        }
        let background = options.segment_preparation == SegmentPreparation::Background;
        // Recovery made everything it kept durable.
        let durable = crate::subscribe::DurableEnd::new(index.next_lsn());
        let shared = Arc::new(Shared {
            dir,
            fs,
            options,
            index: RwLock::new(index),
            queue: Mutex::new(Queue {
                commands: Default::default(),
                waiting_for_room: Vec::new(),
                status: Status::Open,
                periodic_deadline: None,
            }),
            wake: Condvar::new(),
            lock: Mutex::new(Some(lock)),
            spares: Spares::new(),
            queued: Default::default(),
            gather_wake_at: Default::default(),
            poisoned: Default::default(),
            closed: Default::default(),
            compaction: Mutex::new(()),
            compactor: crate::compact::Compactor::new(),
            durable,
            image: crate::image::ImageWriter::new(),
            disk_bytes: Default::default(),
            helpers_wanted: Default::default(),
            last_burst: Default::default(),
        });
        let resume = report.resumes_at;
        let writer = Writer::new(shared.clone(), log_id, state_file);
        let completions = writer.completions();
        let writer = Arc::new(Mutex::new(writer));
        let mut helpers: Vec<(&'static str, ThreadBody)> = Vec::new();
        if background {
            let preparer = shared.clone();
            helpers.push(("annals-spare", Box::new(move || Spares::run_preparer(&preparer))));
        }
        if shared.options.compaction.background {
            let (compactor, compactor_writer) = (shared.clone(), writer.clone());
            helpers.push((
                "annals-compactor",
                Box::new(move || crate::compact::Compactor::run(&compactor, &compactor_writer)),
            ));
        }
        if shared.options.index_image == crate::options::IndexImageWrites::Background {
            let imager = shared.clone();
            helpers.push(("annals-image", Box::new(move || imager.image.run(&*imager.fs, &imager.dir))));
        }
        let background_threads = Arc::new(Mutex::new(Vec::new()));
        let (thread_shared, thread_writer, started) = (shared.clone(), writer.clone(), background_threads.clone());
        let writer_thread = spawn(&*shared.fs, "annals-writer", move || {
            // The other threads start beside the opener rather than on its
            // path, once the writer thread first wakes (see
            // `Writer::run_thread`), and before it takes its first command:
            // a rollover may wait for the preparer; a close stops them all.
            let start_shared = thread_shared.clone();
            let start_helpers = Box::new(move || {
                for (name, body) in helpers {
                    match spawn(&*start_shared.fs, name, body) {
                        Ok(thread) => started.lock().push(thread),
                        Err(error) => {
                            start_shared.poison(error);
                            // No spare will come: a leader waiting for one at a
                            // rollover (holding the writer) gets the poison.
                            start_shared.spares.shut_down(&start_shared);
                        }
                    }
                }
            });
            Writer::run_thread(&thread_shared, &thread_writer, completions, start_helpers);
        })?;
        let handle =
            Handle { shared, writer, writer_thread: Mutex::new(Some(writer_thread)), background_threads, report };
        let log = Log { handle: Arc::new(handle) };
        // With the threads running (a gap that does not fit rolls over, and
        // may wait for the preparer), and before anything else is written.
        // On failure, dropping `log` closes it and joins its threads.
        if let Some(resume) = resume {
            log.skip_to(resume)?;
        }
        // No spare is made at open, even past the middle of the active
        // segment: the writer asks for one after its first group (as after
        // every group), so that a reopen that only reads writes nothing.
        log.shared().disk_bytes.set(|| crate::telemetry::log_file_bytes(&log.shared().index.read()));
        Ok(log)
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// The index, for a read; [`Error::Closed`] once the log is closed (a
    /// clone's reads then fail rather than serve what another process may
    /// have changed since).
    fn index_for_read(&self) -> Result<crate::sync::RwLockReadGuard<'_, Index>> {
        if self.shared().closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(self.shared().index.read())
    }

    /// What open found and did.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.handle.report
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.shared().dir
    }

    /// Appends an entry to `stream` if it meets `expected`, with the log's durability.
    ///
    /// # Errors
    /// [`Error::Conflict`] if the guard fails (nothing written);
    /// [`Error::TooLarge`] for an oversized stream id or record;
    /// [`Error::Poisoned`], [`Error::Closed`].
    pub fn append(
        &self,
        stream: impl AsRef<[u8]>,
        expected: Expectation,
        payload: impl Into<Bytes>,
    ) -> Pending<Appended> {
        self.append_with(stream, expected, payload, self.shared().options.durability)
    }

    /// [`Log::append`] with its own durability.
    pub fn append_with(
        &self,
        stream: impl AsRef<[u8]>,
        expected: Expectation,
        payload: impl Into<Bytes>,
        durability: Durability,
    ) -> Pending<Appended> {
        // One operation, no batch: built in its request (nothing allocated
        // but a long stream id's copy), checked as a batch of one is.
        let (stream, payload) = (stream.as_ref(), payload.into());
        if crate::cursors::is_reserved(stream) {
            return Pending::ready(Err(reserved_stream(stream)));
        }
        if let Err(error) = op_bytes(stream, payload.len()).and_then(|body| self.check_record_bytes(body)) {
            return Pending::ready(Err(error));
        }
        let request = WriteRequest::one(OpKind::Entry(expected), stream, payload, durability);
        self.queue_write(request, OneOrMany::into_first)
    }

    /// Records that the state of `stream` through sequence `through` is
    /// `payload`. Reads then return the latest snapshot and the entries after it.
    ///
    /// # Errors
    /// [`Error::SnapshotOutOfRange`] if the stream has no entry `through` or
    /// already has a later snapshot; as [`Log::append`] otherwise.
    pub fn snapshot(
        &self,
        stream: impl AsRef<[u8]>,
        through: StreamSeq,
        payload: impl Into<Bytes>,
    ) -> Pending<Appended> {
        self.single(Batch::new().snapshot(stream, through, payload), self.shared().options.durability)
    }

    /// Clears `stream` if it meets `expected`: it reads empty afterwards and
    /// its sequence restarts at 0. Other streams are untouched.
    ///
    /// # Errors
    /// As [`Log::append`].
    pub fn clear(&self, stream: impl AsRef<[u8]>, expected: Expectation) -> Pending<Appended> {
        self.single(Batch::new().clear(stream, expected), self.shared().options.durability)
    }

    /// Replaces the latest value of `stream` if its latest entry is `current`
    /// (`None`: the stream is empty). Built on a guarded append.
    ///
    /// # Errors
    /// [`Error::Conflict`] when someone else moved the stream first.
    pub fn compare_and_swap(
        &self,
        stream: impl AsRef<[u8]>,
        current: Option<StreamSeq>,
        payload: impl Into<Bytes>,
    ) -> Pending<Appended> {
        let expected = match current {
            None => Expectation::NoStream,
            Some(seq) => Expectation::Exact(StreamSeq(seq.0.saturating_add(1))),
        };
        self.append(stream, expected, payload)
    }

    /// Prunes `stream`: its entries before `before` and the snapshots
    /// `snapshots` names stop being live (see [`Batch::prune`]).
    ///
    /// # Errors
    /// [`Error::PruneOutOfRange`] if `before` is past the stream's next
    /// sequence; as [`Log::append`] otherwise.
    pub fn prune(&self, stream: impl AsRef<[u8]>, before: StreamSeq, snapshots: PruneSnapshots) -> Pending<Appended> {
        self.single(Batch::new().prune(stream, before, snapshots), self.shared().options.durability)
    }

    /// Records that the state of `stream` through `through` is `payload` and
    /// prunes what it covers, atomically (see [`Batch::snapshot_and_prune`]).
    /// Returns the snapshot's acknowledgement.
    ///
    /// # Errors
    /// As [`Log::snapshot`].
    pub fn snapshot_and_prune(
        &self,
        stream: impl AsRef<[u8]>,
        through: StreamSeq,
        payload: impl Into<Bytes>,
    ) -> Pending<Appended> {
        let batch = Batch::new().snapshot_and_prune(stream, through, payload);
        self.write(batch, self.shared().options.durability, OneOrMany::into_first)
    }

    /// Keeps the newest `keep` live snapshots of `stream` and prunes the
    /// older ones with the entries the oldest kept one covers. Writes
    /// nothing (and returns `None`) if the stream has `keep` snapshots or
    /// fewer.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `keep` 0 (use [`Log::delete_stream`]);
    /// [`Error::Conflict`] if the stream kept changing under it; as
    /// [`Log::append`] otherwise.
    pub fn keep_snapshots(&self, stream: impl AsRef<[u8]>, keep: usize) -> Result<Option<Appended>> {
        if keep == 0 {
            return Err(Error::InvalidArgument("keep_snapshots keeps at least one snapshot".to_owned()));
        }
        let stream = stream.as_ref();
        self.prune_resolved(stream, |_, state| {
            // With `keep` snapshots or fewer there is nothing to prune.
            let newest_first: Vec<(StreamSeq, Lsn)> = state.snapshots().rev().take(keep.saturating_add(1)).collect();
            if newest_first.len() <= keep {
                return None;
            }
            let oldest_kept = newest_first[keep - 1];
            Some((StreamSeq(oldest_kept.0.0 + 1).max(state.start_seq()), PruneSnapshots::Before(oldest_kept.1)))
        })
    }

    /// Prunes the entries of `stream` written before `timestamp_ms` (ms
    /// since the Unix epoch, by the log's clock, as [`Record::timestamp_ms`]
    /// reports). Snapshots are kept. Returns `None` if nothing is older.
    ///
    /// # Errors
    /// As [`Log::keep_snapshots`].
    pub fn prune_older_than(&self, stream: impl AsRef<[u8]>, timestamp_ms: u64) -> Result<Option<Appended>> {
        let stream = stream.as_ref();
        let mut failure = None;
        let result =
            self.prune_resolved(stream, |index, state| match index.first_entry_at_or_after(stream, timestamp_ms) {
                Ok(Some(before)) if before > state.start_seq() => Some((before, PruneSnapshots::Before(Lsn(0)))),
                Ok(_) => None,
                Err(error) => {
                    failure = Some(error);
                    None
                }
            });
        match failure {
            Some(error) => Err(error),
            None => result,
        }
    }

    /// Deletes `stream`: a clear that does not check where the stream is.
    /// Its records stop being live at once and compaction reclaims them.
    ///
    /// # Errors
    /// As [`Log::append`].
    pub fn delete_stream(&self, stream: impl AsRef<[u8]>) -> Pending<Appended> {
        self.clear(stream, Expectation::Any)
    }

    /// Writes a prune that `resolve` works out from the stream's state,
    /// guarded by the stream's next sequence, retrying a few times if the
    /// stream moves in between.
    fn prune_resolved(
        &self,
        stream: &[u8],
        mut resolve: impl FnMut(&Index, &crate::index::StreamState) -> Option<(StreamSeq, PruneSnapshots)>,
    ) -> Result<Option<Appended>> {
        const ATTEMPTS: usize = 8;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let (before, snapshots, next, since) = {
                let index = self.index_for_read()?;
                let Some(state) = index.stream(stream) else { return Ok(None) };
                let Some((before, snapshots)) = resolve(&index, state) else { return Ok(None) };
                (before, snapshots, state.next_seq(), state.since())
            };
            // Guarded by where the stream was and by which incarnation of
            // it this was: a stream cleared and refilled to the same next
            // sequence in between is another stream.
            let kind = OpKind::Prune(before, snapshots, Expectation::Exact(next), Some(since));
            let batch = Batch::new().with(kind, stream, &[]);
            match self.single(batch, self.shared().options.durability).wait() {
                Ok(appended) => return Ok(Some(appended)),
                Err(error @ Error::Conflict { .. }) => last = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last.expect("every attempt conflicted"))
    }

    fn single(&self, batch: Batch, durability: Durability) -> Pending<Appended> {
        self.write(batch, durability, OneOrMany::into_first)
    }

    /// Commits a batch: every guard holds and every operation becomes durable
    /// and visible together, or nothing is written.
    ///
    /// # Errors
    /// The first guard that fails; [`Error::InvalidArgument`] for an empty
    /// batch; [`Error::TooLarge`] over `BATCH_OPS_MAX` operations or
    /// `record_bytes_max` bytes; as [`Log::append`] otherwise.
    pub fn commit(&self, batch: Batch) -> Pending<Vec<Appended>> {
        self.commit_with(batch, self.shared().options.durability)
    }

    /// [`Log::commit`] with its own durability.
    pub fn commit_with(&self, batch: Batch, durability: Durability) -> Pending<Vec<Appended>> {
        self.write(batch, durability, OneOrMany::into_vec)
    }

    /// Queues `batch` when first polled; the caller gets `output` of its
    /// acknowledgements.
    fn write<T>(&self, batch: Batch, durability: Durability, output: fn(Acks) -> T) -> Pending<T> {
        self.write_ops(batch.into_ops(), durability, output)
    }

    /// Queues `ops` when first polled, as [`Log::write`]; refuses the
    /// log's reserved streams (see [`crate::cursors`]).
    // Inlined, as `write_ops_any` and `WriteRequest::shared`: each call on
    // the way otherwise copies the operations (a memcpy per call).
    #[inline]
    fn write_ops<T>(&self, ops: OneOrMany<Op>, durability: Durability, output: fn(Acks) -> T) -> Pending<T> {
        if let Some(op) = ops.as_slice().iter().find(|op| crate::cursors::is_reserved(&op.stream)) {
            return Pending::ready(Err(reserved_stream(&op.stream)));
        }
        self.write_ops_any(ops, durability, output)
    }

    /// Commits a batch that may touch the log's reserved streams: named
    /// cursors, and `annals repair` copying them.
    pub(crate) fn commit_any(&self, batch: Batch, durability: Durability) -> Pending<Vec<Appended>> {
        self.write_ops_any(batch.into_ops(), durability, OneOrMany::into_vec)
    }

    /// Queues `ops` when first polled, whatever their streams.
    #[inline]
    fn write_ops_any<T>(&self, ops: OneOrMany<Op>, durability: Durability, output: fn(Acks) -> T) -> Pending<T> {
        if let Err(error) = self.check_batch(ops.as_slice()) {
            return Pending::ready(Err(error));
        }
        self.queue_write(WriteRequest::shared(ops, durability), output)
    }

    /// The `Pending` of `request`, queued when first polled.
    #[inline]
    fn queue_write<T>(&self, request: OwnedRequest, output: fn(Acks) -> T) -> Pending<T> {
        let write = Write { handle: self.handle.clone(), request, stage: WriteStage::Unqueued, blocking: false };
        Pending { state: State::Write(write, output) }
    }

    #[inline]
    fn check_batch(&self, ops: &[Op]) -> Result<()> {
        if ops.is_empty() {
            return Err(Error::InvalidArgument("empty batch".to_owned()));
        }
        if ops.len() > BATCH_OPS_MAX {
            return Err(Error::TooLarge { what: "batch operation count", len: ops.len(), max: BATCH_OPS_MAX });
        }
        let per_op = if ops.len() > 1 { BATCH_OP_KIND_BYTES } else { 0 };
        let mut body = 0usize;
        for op in ops {
            body = body.saturating_add(per_op).saturating_add(op_bytes(&op.stream, op.payload.len())?);
        }
        self.check_record_bytes(body)
    }

    /// `Ok` if a frame body of `body` bytes is within `record_bytes_max`.
    #[inline]
    fn check_record_bytes(&self, body: usize) -> Result<()> {
        let max = self.shared().options.record_bytes_max;
        if body > max {
            return Err(Error::TooLarge { what: "record", len: body, max });
        }
        Ok(())
    }

    /// Flushes, syncs and writes a clean-close marker, then releases the
    /// directory lock, even while clones of this handle live: they get
    /// [`Error::Closed`] from then on.
    ///
    /// # Errors
    /// [`Error::Poisoned`] if an earlier failure poisoned the log (the lock is
    /// released all the same); [`Error::Io`] if the final sync fails.
    pub fn close(&self) -> Pending<()> {
        let handle = self.handle.clone();
        Pending::other(async move {
            let (reply, receiver) = oneshot::channel();
            match handle.shared.push(Command::Close(reply), true) {
                Ok(()) => receiver.await.map_err(|_| Error::Closed)?,
                Err(_) => Ok(()),
            }
        })
    }

    /// Moves the log's next LSN forward to `lsn` with a gap frame (`repair`
    /// keeps the LSNs of the records it copies).
    pub(crate) fn skip_to(&self, lsn: Lsn) -> Result<()> {
        self.check_open()?;
        self.handle.writer.lock().write_gap(lsn)
    }

    /// The streams with live entries or a snapshot whose id starts with
    /// `prefix` (all of them for an empty prefix), with their next
    /// sequence, in id order.
    /// The log's own streams (named cursors) are left out.
    ///
    /// # Errors
    /// [`Error::Closed`] once the log is closed: a clone of a closed handle
    /// lists nothing stale.
    pub fn streams(&self, prefix: impl AsRef<[u8]>) -> Result<Vec<(Bytes, StreamSeq)>> {
        Ok(user_streams(self.index_for_read()?.streams_with_prefix(prefix.as_ref())))
    }

    /// The streams whose id starts with `prefix` (all for an empty one),
    /// in id order, each with its next sequence and the time of its latest
    /// live record: what [`Log::streams`] lists, and when each last moved.
    /// The log's own streams (named cursors) are left out.
    ///
    /// # Errors
    /// [`Error::Closed`] once the log is closed (a clone of a closed
    /// handle lists nothing stale); [`Error::Corruption`] if a stream's
    /// latest record no longer matches the index.
    pub fn list_streams(&self, prefix: impl AsRef<[u8]>) -> Result<Vec<StreamInfo>> {
        stream_infos(&*self.index_for_read()?, prefix.as_ref())
    }

    /// Every durable, live record after `after`, in LSN order, then each
    /// new one as it becomes durable: a blocking iterator and an async
    /// stream (see [`crate::subscribe`]). `Lsn::ZERO` starts at the oldest
    /// record. It ends with [`Error::Trimmed`] if log-wide retention drops
    /// records before it delivered them, and with [`Error::Closed`] or
    /// [`Error::Poisoned`] when the log stops.
    ///
    /// # Errors
    /// [`Error::Closed`] or [`Error::Poisoned`] if the log is already.
    pub fn subscribe(&self, after: Lsn) -> Result<Subscription> {
        self.check_open()?;
        Ok(Subscription::new(self.handle.shared.clone(), after))
    }

    /// The last durable LSN: every record at or below it survives a power
    /// cut (`Lsn::ZERO` if none). Subscriptions deliver up to here.
    pub fn durable_lsn(&self) -> Lsn {
        Lsn(self.shared().durable.get().0.saturating_sub(1))
    }

    /// Records, durably (always synced, whatever the log's durability),
    /// that the consumer `name` has processed every record up to `lsn`,
    /// replacing its previous position. The position is kept in the log
    /// itself (see [`crate::cursors`]); while registered it holds back
    /// log-wide retention.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty name or an `lsn` past the
    /// log's last one; [`Error::TooLarge`] for a name over
    /// [`crate::cursors::CURSOR_NAME_BYTES_MAX`] bytes; [`Error::Trimmed`]
    /// if log-wide retention already dropped records after `lsn`; as
    /// [`Log::append`] otherwise.
    pub fn commit_cursor(&self, name: &str, lsn: Lsn) -> Pending<()> {
        let checked = self.index_for_read().and_then(|index| {
            let stream = crate::cursors::stream_of(name)?;
            if lsn >= index.next_lsn() {
                let last = index.next_lsn().0 - 1;
                return Err(Error::InvalidArgument(format!(
                    "cursor {name} at lsn {lsn} is past the log's last lsn {last}"
                )));
            }
            if lsn.0.saturating_add(1) < index.trimmed_before().0 {
                return Err(Error::Trimmed { after: lsn, oldest: index.oldest_lsn() });
            }
            Ok(stream)
        });
        let stream = match checked {
            Ok(stream) => stream,
            Err(error) => return Pending::ready(Err(error)),
        };
        let batch = Batch::new().clear(&stream, Expectation::Any).with(
            OpKind::Entry(Expectation::Any),
            &stream,
            &crate::cursors::encode(lsn),
        );
        let written = self.commit_any(batch, Durability::Sync);
        // The writer checks the position against the trim again when it
        // commits the write (a compaction may trim in between), and then
        // writes nothing.
        Pending::other(async move { written.await.map(|_| ()) })
    }

    /// Where the consumer `name` committed its position, if it did (see
    /// [`Log::commit_cursor`]).
    ///
    /// # Errors
    /// [`Error::CursorTrimmed`] if the cursor was released and log-wide
    /// retention dropped it; [`Error::InvalidArgument`] for an empty name;
    /// [`Error::Closed`].
    pub fn cursor(&self, name: &str) -> Result<Option<Lsn>> {
        crate::cursors::read(&*self.index_for_read()?, name)
    }

    /// Every named cursor with its position, in name order.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub fn cursors(&self) -> Result<Vec<(String, Lsn)>> {
        Ok(crate::cursors::list(&*self.index_for_read()?))
    }

    /// Forgets the cursor `name`: it no longer holds back retention.
    ///
    /// # Errors
    /// As [`Log::commit_cursor`].
    pub fn delete_cursor(&self, name: &str) -> Pending<()> {
        let stream = match crate::cursors::stream_of(name) {
            Ok(stream) => stream,
            Err(error) => return Pending::ready(Err(error)),
        };
        let written = self.commit_any(Batch::new().clear(&stream, Expectation::Any), Durability::Sync);
        Pending::other(async move { written.await.map(|_| ()) })
    }

    /// The next sequence of `stream` (0 if it has no live entries).
    ///
    /// # Errors
    /// [`Error::Closed`] once the log is closed.
    pub fn next_seq(&self, stream: impl AsRef<[u8]>) -> Result<StreamSeq> {
        Ok(self.index_for_read()?.stream(stream.as_ref()).map_or(StreamSeq(0), |s| s.next_seq()))
    }

    /// The last LSN taken (`Lsn::ZERO` if none): by the last acknowledged
    /// record, or by a gap that salvage wrote past LSNs it could not keep.
    ///
    /// # Errors
    /// [`Error::Closed`] once the log is closed.
    pub fn last_lsn(&self) -> Result<Lsn> {
        Ok(Lsn(self.index_for_read()?.next_lsn().0 - 1))
    }

    /// The latest snapshot of `stream` and the live entries after it.
    ///
    /// # Errors
    /// [`Error::Corruption`] if a record no longer matches the index;
    /// [`Error::Closed`] once the log is closed.
    pub fn read_stream(&self, stream: impl AsRef<[u8]>) -> Result<StreamRead> {
        self.index_for_read()?.read_stream(stream.as_ref())
    }

    /// Calls `f` on the latest snapshot of `stream`, if any, then on each
    /// live entry after it, in order: what [`Log::read_stream`] returns, but
    /// borrowed from the log's memory map, with nothing copied, allocated or
    /// reference-counted per record. The fastest way to rebuild state from a
    /// stream. Returns how many records `f` saw.
    ///
    /// `f` runs while the index is read-locked: appends are acknowledged
    /// only after it returns, so keep it short (decode or copy, no I/O, and
    /// never wait on an append from inside it).
    ///
    /// # Errors
    /// [`Error::Corruption`] if a record no longer matches the index; `f`
    /// has then seen the records before it.
    pub fn visit_stream(&self, stream: impl AsRef<[u8]>, f: impl FnMut(RecordRef<'_>)) -> Result<usize> {
        self.index_for_read()?.visit_stream(stream.as_ref(), f)
    }

    /// The live entries of `stream` from sequence `from` on, ignoring snapshots.
    ///
    /// # Errors
    /// As [`Log::read_stream`].
    pub fn read_stream_from(&self, stream: impl AsRef<[u8]>, from: StreamSeq) -> Result<Vec<Record>> {
        self.index_for_read()?.read_stream_from(stream.as_ref(), from)
    }

    /// Up to `limit` live entries of `stream` from sequence `from` on,
    /// ignoring snapshots.
    ///
    /// # Errors
    /// As [`Log::read_stream_from`].
    pub fn read_stream_range(&self, stream: impl AsRef<[u8]>, from: StreamSeq, limit: usize) -> Result<Vec<Record>> {
        self.index_for_read()?.read_stream_range(stream.as_ref(), from, limit)
    }

    /// Up to `limit` live entries of `stream` written after `after`, in
    /// order, ignoring snapshots: a cursor for tailing one stream.
    ///
    /// # Errors
    /// As [`Log::read_stream`].
    pub fn read_stream_after(&self, stream: impl AsRef<[u8]>, after: Lsn, limit: usize) -> Result<Vec<Record>> {
        self.index_for_read()?.read_stream_after(stream.as_ref(), after, limit)
    }

    /// The latest entry of `stream`, if any.
    ///
    /// # Errors
    /// As [`Log::read_stream`].
    pub fn latest(&self, stream: impl AsRef<[u8]>) -> Result<Option<Record>> {
        let index = self.index_for_read()?;
        let Some(next) = index.stream(stream.as_ref()).filter(|s| s.live_entries() > 0).map(|s| s.next_seq()) else {
            return Ok(None);
        };
        Ok(index.read_stream_from(stream.as_ref(), StreamSeq(next.0 - 1))?.pop())
    }

    /// The record at `lsn`, if the log holds one there.
    ///
    /// # Errors
    /// [`Error::Corruption`] if the frame there fails its checks.
    pub fn read_lsn(&self, lsn: Lsn) -> Result<Option<Record>> {
        self.index_for_read()?.read_lsn(lsn)
    }

    /// Up to `limit` records after `after`, across all streams, in LSN order:
    /// a cursor for tailing the log.
    ///
    /// # Errors
    /// As [`Log::read_lsn`].
    pub fn read_all(&self, after: Lsn, limit: usize) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        self.index_for_read()?.read_all(after, limit, &mut out)?;
        Ok(out)
    }

    /// Sizes of the in-memory index.
    pub fn index_stats(&self) -> IndexStats {
        self.shared().index.read().stats()
    }

    /// Compacts the log now: every sealed segment (all but the one being
    /// appended to) is rewritten with only its live records, keeping their
    /// LSNs, and the disk its dead records took is given back. Appends and
    /// reads go on meanwhile; a record read before keeps its bytes.
    ///
    /// It checks every input frame's checksum before copying it, makes its
    /// output durable, commits the switch in the state file, and only then
    /// removes the inputs (segments-format.md, section 9.2). If a named
    /// cursor is committed below its log-wide trim while it writes its
    /// output, it gives up and reports nothing compacted (generation 0):
    /// the next compaction holds back for the cursor.
    ///
    /// # Errors
    /// [`Error::Corruption`] if an input frame is damaged (the log is left
    /// as it was); [`Error::Io`] or [`Error::DiskFull`] writing the output
    /// (left as it was); [`Error::Poisoned`] if the commit itself failed
    /// (reopen the log: it is then either compacted or as it was);
    /// [`Error::Closed`].
    pub fn compact(&self) -> Result<crate::compact::CompactionReport> {
        self.check_open()?;
        match crate::compact::plan(self.shared(), false) {
            Some(plan) => crate::compact::compact(self.shared(), &self.handle.writer, plan),
            None => Ok(crate::compact::CompactionReport::default()),
        }
    }

    /// Up to `limit` operations still on disk after `after`, in LSN order,
    /// live or not: what [`Log::read_all`] returns, and also tombstones,
    /// prunes, and the records they made dead that compaction has not yet
    /// reclaimed. For inspection.
    ///
    /// # Errors
    /// As [`Log::read_all`].
    pub fn read_all_on_disk(&self, after: Lsn, limit: usize) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        self.index_for_read()?.read_all_on_disk(after, limit, &mut out)?;
        Ok(out)
    }

    /// Writes the persisted index image of the sealed segments now, as the
    /// background image writer does after compactions and rollovers
    /// ([`IndexImageWrites`](crate::IndexImageWrites)); the next open loads
    /// it and scans only what came after. Returns the LSN it reaches, or
    /// `None` if it wrote none (there is no sealed segment, the current
    /// image reaches as far, or the log is closing). Never poisons the log.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::Poisoned`]; [`Error::Io`] or
    /// [`Error::DiskFull`] writing the image (the previous one stays).
    pub fn write_index_image(&self) -> Result<Option<Lsn>> {
        self.check_open()?;
        let shared = self.shared();
        shared.image.write_now(
            &*shared.fs,
            &shared.dir,
            crate::image::Coverage::Sealed,
            crate::image::SectionsKnown::CheckAll,
        )
    }

    /// How the index differs from one rebuilt by scanning every frame (see
    /// `Index::differences`); empty
    /// when they are the same. For the crash simulator and tests.
    pub fn index_differences(&self, scanned: &Index) -> Vec<String> {
        self.shared().index.read().differences(scanned)
    }

    /// Whether the log has been poisoned or closed, as an error; `Ok` if open.
    ///
    /// # Errors
    /// [`Error::Poisoned`] or [`Error::Closed`].
    pub fn check_open(&self) -> Result<()> {
        match self.shared().status() {
            Status::Open => Ok(()),
            Status::Poisoned(cause) => Err(Error::Poisoned { cause }),
            Status::Closed => Err(Error::Closed),
        }
    }
}

/// Every LSN below the returned one is known durable from the log's files
/// alone: the `durable_lsn` of the last frame, and every segment before the
/// newest (sealed segments are wholly durable).
fn reader_durable_end(index: &Index) -> Lsn {
    let sealed_end = index.segments().last().map_or(Lsn::FIRST, |entry| entry.segment.header.first_lsn);
    index.last_durable_lsn().max(sealed_end).min(index.next_lsn())
}

/// How often a read-only open reads the log again when a segment file it
/// listed was gone when it opened it (a writer removed it meanwhile).
const READ_ONLY_OPEN_ATTEMPTS_MAX: usize = 16;

/// A read-only recovery, made again while it fails on a segment file it
/// listed and then did not find: beside a live writer, one its compaction
/// or retention removed meanwhile, a change to read again (a file missing
/// for good fails every attempt).
fn recover_read_only(recover: impl Fn() -> Result<Recovered>) -> Result<Recovered> {
    let mut attempts = 1;
    loop {
        match recover() {
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && attempts < READ_ONLY_OPEN_ATTEMPTS_MAX =>
            {
                attempts += 1;
            }
            recovered => return recovered,
        }
    }
}

/// A stream as [`Log::list_streams`] lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StreamInfo {
    /// The stream's id.
    #[serde(serialize_with = "serialize_stream_id")]
    pub stream: Bytes,
    /// The sequence its next entry gets.
    pub next_seq: StreamSeq,
    /// When its latest live record (entry, or snapshot if it has no live
    /// entry) was written, ms since the Unix epoch, by the log's clock.
    pub last_timestamp_ms: u64,
}

fn serialize_stream_id<S: serde::Serializer>(stream: &Bytes, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::types::display_stream(stream))
}

/// Each listed stream's latest live record's time: one record read per stream.
fn stream_infos(index: &Index, prefix: &[u8]) -> Result<Vec<StreamInfo>> {
    let mut infos = Vec::new();
    for (stream, next_seq) in user_streams(index.streams_with_prefix(prefix)) {
        let latest = match index.stream(&stream) {
            Some(state) if state.live_entries() > 0 => {
                index.read_stream_from(&stream, StreamSeq(next_seq.0 - 1))?.pop()
            }
            _ => index.read_stream(&stream)?.snapshot,
        };
        let last_timestamp_ms = latest.map_or(0, |record| record.timestamp_ms);
        infos.push(StreamInfo { stream, next_seq, last_timestamp_ms });
    }
    Ok(infos)
}

/// Listed streams less the log's own.
fn user_streams(mut streams: Vec<(Bytes, StreamSeq)>) -> Vec<(Bytes, StreamSeq)> {
    streams.retain(|(stream, _)| !crate::cursors::is_reserved(stream));
    streams
}

/// What a background thread runs.
type ThreadBody = Box<dyn FnOnce() + Send>;

fn spawn(fs: &dyn FileSystem, name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    fs.before_spawn(name).map_err(|error| Error::io("spawn thread", PathBuf::new(), error))?;
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map_err(|error| Error::io("spawn thread", PathBuf::new(), error))
}

/// The state file of a log open for writing, brought up to date with what
/// recovery found (segments-format.md, "The state file").
fn open_state_file(
    fs: &dyn FileSystem,
    dir: &Path,
    index: &Index,
    log_id: [u8; 16],
    action: StateAction,
) -> Result<StateFile> {
    let segments = index.segments();
    let oldest = segments.first().expect("open creates a segment").segment.header.first_lsn;
    let newest = segments.last().expect("open creates a segment").segment.header.first_lsn;
    // Recovery made everything it kept durable.
    let durable_end = index.next_lsn();
    match action {
        StateAction::Keep(state) => StateFile::open(fs, dir, state),
        StateAction::Update(state) => {
            let mut file = StateFile::open(fs, dir, state)?;
            file.update(newest, durable_end, false, StateCopies::One)?;
            Ok(file)
        }
        StateAction::Create { compaction_generation, compacted_end_lsn } => {
            let state = LogState {
                log_id,
                generation: 1,
                oldest_segment_lsn: oldest,
                newest_segment_lsn: newest,
                durable_end_lsn: durable_end,
                written_ms: fs.now_ms(),
                clean_close: false,
                lsn_lease_end: durable_end,
                features: crate::recovery::inferred_features(compaction_generation),
                compaction_generation,
                compacted_end_lsn,
                // Without a state file, what log-wide retention dropped is
                // gone: the log starts at the oldest record left.
                trimmed_lsn: if compaction_generation > 0 { oldest } else { Lsn::ZERO },
            };
            StateFile::create(fs, dir, state)
        }
    }
}

fn create_first_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    options: &Options,
    index: &mut Index,
    log_id: [u8; 16],
) -> Result<[u8; 16]> {
    let segment_bytes = options.segment_bytes.min(FIRST_SEGMENT_BYTES);
    let spare = prepare_spare(fs, dir, segment_bytes, 0)?;
    let header = SegmentHeader {
        version: FORMAT_VERSION,
        log_id,
        first_lsn: index.next_lsn(),
        segment_bytes,
        created_ms: fs.now_ms(),
    };
    let segment = publish_spare(fs, dir, spare, header)?;
    index.push_segment(segment, SEGMENT_HEADER_BYTES);
    Ok(log_id)
}

/// A log opened read-only, for inspection: nothing is changed on disk and
/// no lock is taken, so it works on read-only media, for a user who may
/// only read, and beside a live writer. Beside a writer it sees what was
/// written when it opened; the last records of an in-flight group may show
/// as a torn tail, which is not corruption.
///
/// # Following a live writer
///
/// [`LogReader::refresh`] reads what the writer appended since (new frames
/// at the end of the newest segment; after a rollover or a compaction, the
/// log again from the start), and [`LogReader::read_durable`] returns only
/// records that a power cut cannot take. A reader in another process
/// cannot see the writer's fdatasync, so it goes by what the frames say:
/// every frame records the writer's durable end when it was written
/// (`durable_lsn`), a sealed segment is wholly durable, and a clean-close
/// marker vouches for everything before it. So a record is known durable
/// once a later frame (the next group, the close) says so: while the
/// writer is idle, its last group waits for its next write or its close.
/// `annals tail --follow` works this way.
pub struct LogReader {
    index: Index,
    report: RecoveryReport,
    problems: Vec<crate::error::Corruption>,
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
}

impl LogReader {
    /// Opens `dir` read-only with the operating system's file system.
    ///
    /// # Errors
    /// [`Error::NotALog`] if the directory holds no segment and no state
    /// file; [`Error::Io`] if it cannot be read.
    pub fn open(dir: impl AsRef<Path>) -> Result<LogReader> {
        LogReader::open_with(dir, &Options::default())
    }

    /// Opens `dir` read-only without the persisted index image: every frame
    /// of every segment is read and its checksum checked, as `annals verify`
    /// does. [`LogReader::open_with`] loads a valid image instead and reads
    /// only the frames after it (a record's checksum is then checked when
    /// it is read).
    ///
    /// # Errors
    /// As [`LogReader::open`].
    pub fn open_scanning(dir: impl AsRef<Path>, options: &Options) -> Result<LogReader> {
        let dir = dir.as_ref();
        let fs = &*options.file_system;
        let Recovered { index, report, problems, .. } = recover_read_only(|| {
            crate::recovery::recover_with(
                fs,
                dir,
                Access::ReadOnly,
                RecoveryMode::Strict,
                crate::recovery::ImagePolicy::Ignore,
            )
        })?;
        Ok(LogReader { index, report, problems, dir: dir.to_owned(), fs: options.file_system.clone() })
    }

    /// Opens `dir` read-only with the file system of `options` (its other
    /// fields play no part in reading: what is on disk is read as the
    /// format says).
    ///
    /// # Errors
    /// As [`LogReader::open`].
    pub fn open_with(dir: impl AsRef<Path>, options: &Options) -> Result<LogReader> {
        let dir = dir.as_ref();
        let _span =
            tracing::info_span!(target: "annals::open", "open", dir = %dir.display(), access = "read-only").entered();
        let started = std::time::Instant::now();
        let fs = &*options.file_system;
        let Recovered { index, report, problems, .. } =
            recover_read_only(|| recover(fs, dir, Access::ReadOnly, RecoveryMode::Strict))?;
        crate::telemetry::recovered("read-only", &report, started.elapsed());
        Ok(LogReader { index, report, problems, dir: dir.to_owned(), fs: options.file_system.clone() })
    }

    /// Catches up with a writer that has the log open (in this process or
    /// another): applies the frames appended at the end of the newest
    /// segment since the reader opened or last refreshed, and, if the
    /// log's segment files changed (a rollover, a compaction), reads the
    /// log again from the start. A frame still being written (a torn tail)
    /// is left for the next refresh. Returns whether the reader now sees
    /// more of the log.
    ///
    /// # Errors
    /// As [`LogReader::open`] when the log is read again.
    pub fn refresh(&mut self) -> Result<bool> {
        let before = (self.index.next_lsn(), self.index.last_durable_lsn());
        self.apply_new_frames();
        // A rollover adds segments after the newest: those are read alone.
        // Anything else (a compaction, a file removed) reads the log again.
        while let Some(newer) = self.segment_files_changed()? {
            if !newer.is_empty() && self.open_newer_segments(&newer)? {
                continue;
            }
            let options = Options { file_system: self.fs.clone(), ..Options::default() };
            *self = LogReader::open_with(&self.dir, &options)?;
            break;
        }
        Ok((self.index.next_lsn(), self.index.last_durable_lsn()) != before)
    }

    /// Adds the segments a rollover published after the newest one the
    /// reader knows, with their frames. `false` (nothing added) if they do
    /// not follow on from it exactly: the caller reads the log again.
    fn open_newer_segments(&mut self, newer: &[String]) -> Result<bool> {
        for name in newer {
            // The segment before was sealed (wholly written and synced)
            // before this one was published: every frame of it is there now.
            self.apply_new_frames();
            let path = self.dir.join(name);
            let file = match self.fs.open(&path, false) {
                Ok(file) => file,
                // Removed since it was listed: the log is read again.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(error) => return Err(Error::io("open", &path, error)),
            };
            let map = file.map().map_err(|error| Error::io("mmap", &path, error))?;
            let Ok(header) = SegmentHeader::decode(&map.slice(0, SEGMENT_HEADER_BYTES.min(map.len()))) else {
                return Ok(false);
            };
            let follows = self.index.segments().last().is_some_and(|last| last.segment.header.log_id == header.log_id);
            if !follows || header.first_lsn != self.index.next_lsn() || map.len() as u64 != header.segment_bytes {
                return Ok(false);
            }
            self.index.push_segment(Segment { header, path, file, map, compacted: false }, SEGMENT_HEADER_BYTES);
        }
        self.apply_new_frames();
        Ok(true)
    }

    /// Applies every valid frame past the end of the newest segment, as
    /// recovery does; stops quietly at the first one that is not (yet) whole.
    fn apply_new_frames(&mut self) {
        let Some(entry) = self.index.segments().last() else { return };
        if entry.segment.compacted() {
            return;
        }
        let segment = entry.segment.clone();
        let bytes = segment.map.slice(0, segment.map.len());
        let mut offset = entry.end_offset;
        while offset < bytes.len() {
            let expected = self.index.next_lsn();
            let Ok((at, frame)) = crate::frame::decode_frame_at(&bytes, offset, &segment.header.log_id, expected)
            else {
                return;
            };
            let past_damage = self.index.damage_read_past().is_some();
            if !past_damage && self.index.check_frame(&frame).is_err() {
                // Open again to see it as corruption; here it only stops.
                return;
            }
            if at != offset {
                self.index.skip_padding(at);
            }
            if past_damage {
                // The streams end at the damage, as the open left them.
                self.index.place_frame(at, &frame);
            } else {
                self.index.apply_frame(at, &frame);
            }
            self.report.records += u64::from(frame.lsn_count);
            self.report.bytes += frame.total_bytes() as u64;
            offset = at + frame.total_bytes();
        }
    }

    /// `None` if the directory's segment files are the reader's; else the
    /// ordinary segments named after the newest one it knows, in order,
    /// if the others are all the reader's (else none).
    fn segment_files_changed(&self) -> Result<Option<Vec<String>>> {
        let names = self.fs.list(&self.dir).map_err(|error| Error::io("list", &self.dir, error))?;
        // The names recovery takes for segments: another `.seg` file (a
        // backup, a copy) is not the log's, and would otherwise read as a
        // change at every refresh.
        let mut known: Vec<&str> = self
            .index
            .segments()
            .iter()
            .filter_map(|entry| entry.segment.path.file_name().and_then(|name| name.to_str()))
            .collect();
        known.sort_unstable();
        // Nor are the files a compaction left behind, which recovery skips
        // too (the writer's next open removes them): ordinary segments
        // below the oldest one read (its inputs; a writer only adds
        // segments after the newest) and compacted segments of an older
        // generation than the one read. Else each would read as a change
        // at every refresh.
        let oldest_ordinary = known.iter().filter_map(|name| crate::segment::parse_segment_file_name(name)).min();
        let generation =
            known.iter().filter_map(|name| crate::segment::parse_compacted_file_name(name)).map(|(_, g)| g).max();
        let is_segment = |name: &&str| match (
            crate::segment::parse_segment_file_name(name),
            crate::segment::parse_compacted_file_name(name),
        ) {
            (Some(lsn), _) => oldest_ordinary.is_none_or(|oldest| lsn >= oldest),
            (None, Some((_, g))) => generation.is_none_or(|known| g >= known),
            (None, None) => false,
        };
        let mut on_disk: Vec<&str> = names.iter().map(String::as_str).filter(is_segment).collect();
        on_disk.sort_unstable();
        if on_disk == known {
            return Ok(None);
        }
        let newest = self.index.segments().last().map_or(Lsn::ZERO, |entry| entry.segment.header.first_lsn);
        let mut newer: Vec<(Lsn, &str)> = Vec::new();
        let mut others: Vec<&str> = Vec::new();
        for name in on_disk {
            match crate::segment::parse_segment_file_name(name) {
                Some(lsn) if lsn > newest => newer.push((lsn, name)),
                _ => others.push(name),
            }
        }
        if others != known {
            return Ok(Some(Vec::new()));
        }
        newer.sort_unstable();
        Ok(Some(newer.into_iter().map(|(_, name)| name.to_owned()).collect()))
    }

    /// The last LSN known durable (`Lsn::ZERO` if none), by what the log's
    /// frames say (see [Following a live writer](LogReader#following-a-live-writer)).
    pub fn durable_lsn(&self) -> Lsn {
        Lsn(reader_durable_end(&self.index).0 - 1)
    }

    /// Reads into `out` at most [`crate::subscribe::BATCH_RECORDS_MAX`]
    /// live records after `after` that are known durable, in LSN order, and
    /// returns the position to read after next time (past records that are
    /// not live, too). With [`LogReader::refresh`] in between, a loop of
    /// these delivers every durable live record once, as
    /// [`Log::subscribe`] does.
    ///
    /// # Errors
    /// [`Error::Trimmed`] if log-wide retention dropped records after
    /// `after`; [`Error::Corruption`] if a frame fails its checks.
    pub fn read_durable(&self, after: Lsn, out: &mut Vec<Record>) -> Result<Lsn> {
        let durable_end = reader_durable_end(&self.index);
        if durable_end.0 <= after.0.saturating_add(1) {
            return Ok(after);
        }
        let mut batch = std::collections::VecDeque::new();
        let read_to = crate::subscribe::read_durable(&self.index, after, durable_end, &mut batch)?;
        out.extend(batch);
        Ok(read_to)
    }

    /// What a read-write open would find and do (nothing was done).
    pub fn report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Every corruption found.
    pub fn problems(&self) -> &[crate::error::Corruption] {
        &self.problems
    }

    /// Streams with live entries or a snapshot (named cursors included).
    pub fn stream_count(&self) -> usize {
        self.index.stream_count()
    }

    /// The LSN of the last valid record (`Lsn::ZERO` if none).
    pub fn last_lsn(&self) -> Lsn {
        Lsn(self.index.next_lsn().0 - 1)
    }

    /// Up to `limit` records after `after`, in LSN order.
    ///
    /// # Errors
    /// [`Error::Corruption`] if a frame fails its checks, or if the read
    /// reaches damage the reader read past (see [`LogReader::read_lsn`])
    /// before it has `limit` records.
    pub fn read_all(&self, after: Lsn, limit: usize) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        self.index.read_all(after, limit, &mut out)?;
        Ok(out)
    }

    /// As [`Log::read_all_on_disk`].
    ///
    /// # Errors
    /// As [`Log::read_all`].
    pub fn read_all_on_disk(&self, after: Lsn, limit: usize) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        self.index.read_all_on_disk(after, limit, &mut out)?;
        Ok(out)
    }

    /// The latest snapshot of `stream` and the live entries after it, as
    /// [`Log::read_stream`].
    ///
    /// # Errors
    /// [`Error::Corruption`] if a record no longer matches the index, or
    /// the reader read past damage (see [`LogReader::read_lsn`]): its
    /// streams end at the damage, so the answer would be short.
    pub fn read_stream(&self, stream: impl AsRef<[u8]>) -> Result<StreamRead> {
        self.check_streams_whole()?;
        self.index.read_stream(stream.as_ref())
    }

    /// The live entries of `stream` from sequence `from` on.
    ///
    /// # Errors
    /// As [`LogReader::read_stream`].
    pub fn read_stream_from(&self, stream: impl AsRef<[u8]>, from: StreamSeq) -> Result<Vec<Record>> {
        self.check_streams_whole()?;
        self.index.read_stream_from(stream.as_ref(), from)
    }

    /// The damage the reader read past, as the error a stream read answers.
    fn check_streams_whole(&self) -> Result<()> {
        self.index.damage_read_past().map_or(Ok(()), Err)
    }

    /// The record at `lsn`, if the log held one there when the reader opened.
    ///
    /// Past damage in a sealed segment ([`LogReader::problems`]), the
    /// records before the damage and those from the next readable segment
    /// on are read as ever; the LSNs between them are unknown.
    ///
    /// # Errors
    /// As [`LogReader::read_all`]; [`Error::Corruption`] naming the damage
    /// for an LSN between it and the next readable segment.
    pub fn read_lsn(&self, lsn: Lsn) -> Result<Option<Record>> {
        self.index.read_lsn(lsn)
    }

    /// The streams whose id starts with `prefix`, with their next sequence,
    /// as [`Log::streams`].
    pub fn streams(&self, prefix: impl AsRef<[u8]>) -> Vec<(Bytes, StreamSeq)> {
        user_streams(self.index.streams_with_prefix(prefix.as_ref()))
    }

    /// The streams with their next sequence and the time of their latest
    /// live record, as [`Log::list_streams`], as the reader last saw them.
    ///
    /// # Errors
    /// As [`Log::list_streams`]; as [`LogReader::read_stream`] past damage.
    pub fn list_streams(&self, prefix: impl AsRef<[u8]>) -> Result<Vec<StreamInfo>> {
        self.check_streams_whole()?;
        stream_infos(&self.index, prefix.as_ref())
    }

    /// The named cursors and their positions, as [`Log::cursors`].
    pub fn cursors(&self) -> Vec<(String, Lsn)> {
        crate::cursors::list(&self.index)
    }

    /// Sizes of the index.
    pub fn index_stats(&self) -> IndexStats {
        self.index.stats()
    }

    /// Where the log's disk goes, per segment and in total, as the reader
    /// found it when it opened (see [`crate::stats`]). Worked out from the
    /// index; the segments are read only from the start of the log to the
    /// oldest live record, to find its time.
    ///
    /// # Errors
    /// [`Error::Corruption`] if the oldest live record fails its checks.
    pub fn stats(&self) -> Result<crate::stats::LogStats> {
        let mut stats = crate::stats::of_index(&self.index)?;
        if let crate::image::ImageUse::Loaded { written_ms, .. } = self.report.index_image {
            stats.index_image_age_ms = Some(stats.taken_ms.saturating_sub(written_ms));
        }
        Ok(stats)
    }
}
