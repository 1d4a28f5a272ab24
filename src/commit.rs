//! Group commit: queued requests become one write and one fdatasync per group.
//!
//! Appenders push a [`WriteRequest`] onto a bounded queue (back-pressure: a
//! full queue parks the appender until the writer takes what is queued) and
//! wait on the request's [`ReplySlot`], which the writer fills and whose
//! waiting task or thread it wakes. Whoever holds the writer (a mutex
//! around [`Writer`]) commits: the writer thread for async appenders, or an
//! appender that finds no one writing and leads the group on its own thread
//! ([`Writer::lead`], the leader/follower scheme of LevelDB and RocksDB),
//! which saves two thread hand-offs per append. A leader is a blocking
//! appender, or an awaited durable one of appenders coming one at a time on
//! a tokio multi-threaded runtime's worker, which leads inside
//! `block_in_place` ([`Writer::round_in_place`]): no fsync ever runs on a
//! thread an async runtime still schedules tasks on. The writer takes everything queued
//! (the writer thread first waits for the rest of a burst of many
//! appenders, at most about an fdatasync's time: [`gather`]), checks each request's guards in queue order
//! against the index plus the effects of the requests before it in the group,
//! encodes the accepted ones into one buffer, writes it, syncs it if any
//! request asked for `Sync`, applies the frames to the index and only then
//! replies. Readers therefore never see an unacknowledged record, and two
//! racing guarded appends are decided by their order in the queue. The
//! writer thread hands a mid-sized group's replies to a completer thread
//! ([`Completions`]), which wakes their waiters while the writer writes
//! and syncs the next group; groups are answered in the order committed.
//!
//! Any write or sync error poisons the log: the group's requests and every
//! later one fail with [`Error::Poisoned`]; the writer never retries a sync.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::frame::{
    FRAME_HEADER_BYTES, FrameKind, FrameMeta, GAP_BODY_BYTES, LogIdChecksum, MARKER_RESERVE_BYTES, OpRef, RecordKind,
    decode_own_frame, encode_frame, encode_frame_from, encode_gap_frame, frame_bytes, marker_offset,
};
use crate::fs::{DirLock, FileSystem};
use crate::index::{Index, StreamCursor};
use crate::options::{Options, SegmentPreparation};
use crate::segment::{
    FORMAT_VERSION, SEGMENT_HEADER_BYTES, Segment, SegmentHeader, Spare, discard_spare, next_segment_bytes,
    prepare_spare, prepare_spare_unless, publish_spare, remove_stray_spares,
};
use crate::state::{StateCopies, StateFile};
use crate::sync::{Condvar, Mutex, RwLock, thread};
use crate::types::{Durability, Expectation, Lsn, StreamSeq, display_stream};

/// What one operation of a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Append an entry if the stream meets the expectation.
    Entry(Expectation),
    /// Record a snapshot through this sequence.
    Snapshot(StreamSeq),
    /// Clear the stream if it meets the expectation.
    Clear(Expectation),
    /// Prune the stream's entries before this sequence (at most its next
    /// one) and the snapshots the [`PruneSnapshots`] names, if the stream
    /// meets the expectation and (when given) is still the incarnation
    /// whose first record since its last clear is at this LSN.
    Prune(StreamSeq, PruneSnapshots, Expectation, Option<Lsn>),
    /// Start a stream that has no state at this sequence: its history
    /// before it is gone (`annals repair` copying a compacted log).
    Base(StreamSeq),
    /// Only check that the stream meets the expectation: nothing is
    /// written and no LSN is taken, but the batch it is in commits only if
    /// it holds, checked at the same point as the batch's other guards.
    Check(Expectation),
}

/// Which snapshots a prune drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneSnapshots {
    /// Those written before this LSN.
    Before(Lsn),
    /// All but the stream's latest one (or none, if it has none).
    AllButLatest,
}

/// One operation of a request.
#[derive(Clone, Debug)]
pub struct Op {
    /// What it does.
    pub kind: OpKind,
    /// Its stream.
    pub stream: StreamId,
    /// Its payload (empty for a clear).
    pub payload: Bytes,
    /// The time to record for its frame instead of the clock's, if later
    /// than the last frame's: `annals repair` keeps each record's time.
    pub timestamp_ms: Option<u64>,
}

/// A request's stream id: inline when it is short (most are: a name, a
/// UUID), so that queueing an append allocates nothing for it; a longer one
/// is copied once into shared bytes.
#[derive(Clone)]
pub(crate) enum StreamId {
    Inline { len: u8, bytes: [u8; STREAM_ID_INLINE_BYTES] },
    Shared(Bytes),
}

/// The longest stream id held inline: the enum is then 48 bytes, as large
/// as the 32 of `Bytes` plus its own 16.
const STREAM_ID_INLINE_BYTES: usize = 46;

impl StreamId {
    /// A copy of `stream`.
    #[inline]
    pub fn copy_from_slice(stream: &[u8]) -> StreamId {
        match u8::try_from(stream.len()) {
            Ok(len) if stream.len() <= STREAM_ID_INLINE_BYTES => StreamId::Inline { len, bytes: inline_copy(stream) },
            _ => StreamId::Shared(Bytes::copy_from_slice(stream)),
        }
    }
}

/// `stream` (at most [`STREAM_ID_INLINE_BYTES`]) followed by zeros, copied
/// a word at a time: copying a slice of any length into zeros otherwise
/// compiles to a call of libc's `memcpy` and one of `memset` per append.
#[inline]
fn inline_copy(stream: &[u8]) -> [u8; STREAM_ID_INLINE_BYTES] {
    let mut bytes = [0; STREAM_ID_INLINE_BYTES];
    let len = stream.len();
    if len >= 8 {
        // Whole words, then the last word (overlapping the one before it).
        for at in (0..len - 8).step_by(8) {
            bytes[at..at + 8].copy_from_slice(&stream[at..at + 8]);
        }
        bytes[len - 8..len].copy_from_slice(&stream[len - 8..]);
    } else if len >= 4 {
        bytes[..4].copy_from_slice(&stream[..4]);
        bytes[len - 4..len].copy_from_slice(&stream[len - 4..]);
    } else {
        bytes[..len].copy_from_slice(stream);
    }
    bytes
}

impl std::ops::Deref for StreamId {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            StreamId::Inline { len, bytes } => &bytes[..usize::from(*len)],
            StreamId::Shared(bytes) => bytes,
        }
    }
}

impl AsRef<[u8]> for StreamId {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&display_stream(self))
    }
}

/// Where an acknowledged operation landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Appended {
    /// Its LSN.
    pub lsn: Lsn,
    /// Entry: its sequence. Snapshot: the last sequence it covers.
    /// Clear: the stream's next sequence before the clear. Check: the
    /// stream's next sequence it found.
    pub seq: StreamSeq,
    /// When its frame was written, ms since the Unix epoch, by the log's
    /// clock (as [`crate::index::Record::timestamp_ms`]); a check's is its batch's.
    pub timestamp_ms: u64,
    /// Prune: the stream's first live sequence before it; the prune removed
    /// the entries from there up to its own sequence, none if that is not
    /// below it (another prune got there first). `None` for the others.
    pub start_before: Option<StreamSeq>,
    /// The LSN of its stream's first record since its last clear, after
    /// it: the incarnation an [`Expectation::ExactSince`] names. `None` if
    /// the stream has no state after it (a clear, or a check of a stream
    /// with none).
    pub since: Option<Lsn>,
}

/// A stream's state as the writer follows it through a group: what the
/// guards check, and its first live sequence if an operation of the group
/// moved it (`None`: the index's).
type Followed = (StreamCursor, Option<u64>);

/// An operation whose guard held: its sequence, and its stream's next
/// sequence and latest snapshot after it.
#[derive(Clone, Copy, Debug)]
struct CheckedOp {
    seq: StreamSeq,
    /// Its LSN; a check, which takes none: the LSN before the next one
    /// taken (every record it saw is at or before it).
    lsn: Lsn,
    after: StreamCursor,
    /// A prune's payload: the LSN before which it drops snapshots.
    prune_payload: [u8; crate::frame::PRUNE_PAYLOAD_BYTES],
    /// A prune: its stream's first live sequence before it.
    start_before: Option<StreamSeq>,
    /// Its stream's first live sequence after it, if an operation of the
    /// group moved it (`None`: the index's).
    start_after: Option<u64>,
}

/// One value or several, with nothing allocated for one: most requests are
/// a single append, and their operations, guard results and
/// acknowledgements then live inline.
#[derive(Clone, Debug)]
pub(crate) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// Room for `len` values (allocated only for more than one).
    pub fn with_capacity(len: usize) -> OneOrMany<T> {
        OneOrMany::Many(if len > 1 { Vec::with_capacity(len) } else { Vec::new() })
    }

    /// Appends a value. An empty `Many` with nothing allocated (from
    /// `with_capacity(1)`) becomes `One`.
    pub fn push(&mut self, value: T) {
        match self {
            OneOrMany::Many(values) if values.capacity() == 0 => *self = OneOrMany::One(value),
            OneOrMany::Many(values) => values.push(value),
            OneOrMany::One(_) => {
                let OneOrMany::One(first) = std::mem::replace(self, OneOrMany::Many(Vec::with_capacity(2))) else {
                    unreachable!()
                };
                if let OneOrMany::Many(values) = self {
                    values.extend([first, value]);
                }
            }
        }
    }

    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(value) => std::slice::from_ref(value),
            OneOrMany::Many(values) => values,
        }
    }

    /// The first value; a request is never empty.
    pub fn into_first(self) -> T {
        match self {
            OneOrMany::One(value) => value,
            OneOrMany::Many(values) => values.into_iter().next().expect("a request has an operation"),
        }
    }

    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(value) => vec![value],
            OneOrMany::Many(values) => values,
        }
    }
}

/// A request's acknowledgements: one per operation, in order.
pub(crate) type Acks = OneOrMany<Appended>;

/// Where a request's outcome goes: filled once by the writer, read once by
/// the request's `Pending`. The writer wakes the waker the `Pending` left
/// (its async task, or its blocked thread) directly, with no channel between.
#[derive(Default)]
pub(crate) struct ReplySlot {
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    outcome: Option<Result<Acks>>,
    /// Set once the outcome was taken: a `Pending` is not polled again.
    taken: bool,
    waker: Option<Waker>,
}

impl ReplySlot {
    /// Leaves `waker` to be woken, without a lock: for a slot no one else
    /// can see yet (its request is not queued).
    pub fn set_waker(&mut self, waker: &Waker) {
        let state = self.state.get_mut();
        match &mut state.waker {
            Some(old) if old.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }

    /// Stores the outcome and wakes whoever waits for it.
    pub fn send(&self, outcome: Result<Acks>) {
        let waker = {
            let mut state = self.state.lock();
            debug_assert!(state.outcome.is_none() && !state.taken, "a request is answered once");
            state.outcome = Some(outcome);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The outcome, once sent; until then registers `cx`'s waker.
    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<Result<Acks>> {
        let mut state = self.state.lock();
        if let Some(outcome) = state.outcome.take() {
            state.taken = true;
            return Poll::Ready(outcome);
        }
        assert!(!state.taken, "a Pending is not polled after it finished");
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// A write request: its operations, and where its outcome goes. Built
/// once, when its `Pending` is made, and shared by that `Pending` and the
/// writer (one allocation per request): the queue and the writer's lists
/// move a pointer, not the operations. The operations stay until both are
/// done with it; if the `Pending` was dropped the outcome is dropped with it.
pub(crate) struct WriteRequest {
    pub ops: OneOrMany<Op>,
    pub durability: Durability,
    pub reply: ReplySlot,
}

impl WriteRequest {
    /// A request of `ops`, in an allocation this thread's earlier requests
    /// left when they were done (see [`OwnedRequest`]), or a new one.
    ///
    /// Inlined into the append calls, so that their operations are moved
    /// into the request once rather than copied at every call on the way.
    #[inline]
    pub fn shared(ops: OneOrMany<Op>, durability: Durability) -> OwnedRequest {
        WriteRequest::shared_with(move || ops, durability)
    }

    /// A request of one operation, built where the request is: an append
    /// moves no operation between calls, only its parts.
    #[inline]
    pub fn one(kind: OpKind, stream: &[u8], payload: Bytes, durability: Durability) -> OwnedRequest {
        WriteRequest::shared_with(
            move || OneOrMany::One(Op { kind, stream: StreamId::copy_from_slice(stream), payload, timestamp_ms: None }),
            durability,
        )
    }

    /// A request of the operations `ops` makes, in a spare allocation if
    /// this thread has one, else a new one: either way they are made once,
    /// where the request holds them.
    #[inline(always)]
    fn shared_with(ops: impl FnOnce() -> OneOrMany<Op>, durability: Durability) -> OwnedRequest {
        let spare = SPARE_REQUESTS.try_with(|spares| spares.try_borrow_mut().ok()?.pop()).ok().flatten();
        let mut request = spare.unwrap_or_else(|| {
            let emptied = OneOrMany::Many(Vec::new());
            Arc::new(WriteRequest { ops: emptied, durability, reply: ReplySlot::default() })
        });
        let unshared = Arc::get_mut(&mut request).expect("a spare or new request is not shared");
        // A spare's operations are an empty list with nothing allocated
        // (`OwnedRequest::drop` left them so), as a new one's: forgetting it
        // leaks nothing and saves a call of its drop glue.
        let emptied = std::mem::replace(&mut unshared.ops, ops());
        debug_assert!(matches!(&emptied, OneOrMany::Many(ops) if ops.capacity() == 0));
        std::mem::forget(emptied);
        unshared.durability = durability;
        OwnedRequest(Some(request))
    }

    /// Stores the request's outcome and wakes whoever waits for it.
    pub fn send(&self, outcome: Result<Acks>) {
        self.reply.send(outcome);
    }
}

thread_local! {
    /// Requests this thread's appenders were done with, emptied, for its
    /// next appends: an appender that awaits one append after another
    /// reuses one allocation instead of a `malloc` and a `free` each time.
    static SPARE_REQUESTS: std::cell::RefCell<Vec<Reply>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Requests kept for reuse per thread, at most. A thread that runs many
/// appending tasks at once (a runtime's worker, with 64 workflows each
/// awaiting its append) has as many requests out, and gets them back
/// together when their group commits: with room for 8, 57 of 64 were
/// freed and allocated afresh the next round (11,851 of 12,800 appends
/// of cano's W2). An emptied request is a few hundred bytes, so this
/// bounds a thread's spares to a few tens of KiB.
const SPARE_REQUESTS_MAX: usize = 64;

/// The appender's hold on its request. When the appender drops it and the
/// writer no longer holds the request either (it answered it, or never saw
/// it), the request is emptied (its payloads and stream ids dropped now)
/// and kept for this thread's next append; otherwise whichever of the two
/// lets go last frees it, as an `Arc` does.
pub(crate) struct OwnedRequest(Option<Reply>);

impl std::ops::Deref for OwnedRequest {
    type Target = Reply;

    fn deref(&self) -> &Reply {
        self.0.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for OwnedRequest {
    fn deref_mut(&mut self) -> &mut Reply {
        self.0.as_mut().expect("held until dropped")
    }
}

impl Drop for OwnedRequest {
    fn drop(&mut self) {
        let Some(mut request) = self.0.take() else { return };
        let Some(emptied) = Arc::get_mut(&mut request) else { return };
        emptied.ops = OneOrMany::Many(Vec::new());
        *emptied.reply.state.get_mut() = SlotState::default();
        // A thread that is exiting has no spares left: the request is freed.
        let _ = SPARE_REQUESTS.try_with(|spares| {
            if let Ok(mut spares) = spares.try_borrow_mut()
                && spares.len() < SPARE_REQUESTS_MAX
            {
                spares.push(request);
            }
        });
    }
}

/// A queued request, as the writer holds it until it is answered.
pub(crate) type Reply = Arc<WriteRequest>;

pub(crate) enum Command {
    Write(Reply),
    Close(oneshot::Sender<Result<()>>),
}

#[derive(Clone, Debug)]
pub(crate) enum Status {
    Open,
    Poisoned(Arc<Error>),
    Closed,
}

/// State shared by the handles, the writer and the spare preparer.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub fs: Arc<dyn FileSystem>,
    pub options: Options,
    pub index: RwLock<Index>,
    pub queue: Mutex<Queue>,
    pub wake: Condvar,
    pub lock: Mutex<Option<DirLock>>,
    pub spares: Spares,
    /// Commands pushed since the writer last drained the queue, readable
    /// without the queue's lock (the writer polls it between rounds).
    pub queued: AtomicUsize,
    /// While the writer thread gathers ([`gather`]): the count of
    /// `queued` whose push wakes it; 0 while it does not gather.
    pub gather_wake_at: AtomicUsize,
    /// Set once the log is poisoned, readable without the queue's lock.
    pub poisoned: AtomicBool,
    /// Set once the log is closed: reads of a closed handle fail with
    /// `Closed` rather than serve what may be stale.
    pub closed: AtomicBool,
    /// Held by a compaction: one at a time.
    pub compaction: Mutex<()>,
    /// The background compactor's wake-up and stop.
    pub compactor: crate::compact::Compactor,
    /// What is durable and in the index, for subscriptions.
    pub durable: crate::subscribe::DurableEnd,
    /// The persisted index image's writer: poked after a rollover and a
    /// compaction, stopped at close (which writes the last image).
    pub image: crate::image::ImageWriter,
    /// This log's share of the `annals_disk_bytes` gauge.
    pub disk_bytes: crate::telemetry::DiskBytes,
    /// Set once something needs the background threads (a spare asked
    /// for): the writer thread starts them if it has not yet
    /// ([`Writer::run_rounds`]).
    pub helpers_wanted: AtomicBool,
    /// Requests the last whole burst held (the writer thread's, or an
    /// awaited append's committed in place): while it is small, an awaited
    /// append that finds no one writing commits in place
    /// ([`Shared::lone_appenders`]).
    pub last_burst: AtomicUsize,
}

pub(crate) struct Queue {
    pub commands: VecDeque<Command>,
    /// Appenders that found the queue full (`queue_requests_max` write
    /// requests), woken when the writer takes what is queued.
    pub waiting_for_room: Vec<Waker>,
    pub status: Status,
    /// When written but unsynced `Periodic` appends must be synced by; the
    /// writer thread waits for it without holding the writer.
    pub periodic_deadline: Option<Instant>,
}

impl Shared {
    /// Asks the writer thread to start the background threads now, if it
    /// has not yet: a spare is wanted, and only the preparer makes one.
    pub fn want_helpers(&self) {
        if !self.helpers_wanted.swap(true, Ordering::AcqRel) {
            // Under the queue's lock, which the writer thread holds from its
            // look at the flag until it waits: the wake cannot fall between.
            drop(self.queue.lock());
            self.wake.notify_all();
        }
    }

    /// Whether appenders come one at a time: the last burst was too small
    /// for the writer thread to gather (see [`gather`]), so a group
    /// committed at once, in place, loses no one it would have waited for.
    pub fn lone_appenders(&self) -> bool {
        self.last_burst.load(Ordering::Relaxed) < GATHER_GROUP_MIN
    }

    /// After a leader's round: whatever was queued while it wrote is the
    /// writer thread's (whoever held the writer checked the queue only
    /// before it let go).
    pub fn wake_for_leftovers(&self) {
        if !self.queue.lock().commands.is_empty() {
            self.wake.notify_one();
        }
    }

    pub fn status(&self) -> Status {
        self.queue.lock().status.clone()
    }

    /// Fails the log for good (until reopened), keeping the first cause.
    pub fn poison(&self, cause: Error) -> Arc<Error> {
        let mut queue = self.queue.lock();
        match &queue.status {
            Status::Poisoned(first) => first.clone(),
            // A closed log stays closed: a background thread that failed to
            // start after a leader's close (review 17) would otherwise let a
            // later close queue up with nobody left to answer it.
            Status::Closed => Arc::new(cause),
            Status::Open => {
                let cause = Arc::new(cause);
                queue.status = Status::Poisoned(cause.clone());
                self.poisoned.store(true, Ordering::Release);
                crate::telemetry::poisoned(&self.dir, &cause);
                drop(queue);
                // Subscriptions end with the cause.
                self.durable.wake_all();
                cause
            }
        }
    }

    /// Queues a command unless the log is closed, or poisoned and the command is a write.
    pub fn push(&self, command: Command, wake_writer: bool) -> Result<()> {
        self.push_or_wait(command, wake_writer, None).map(|_| ())
    }

    /// Queues a command as [`Shared::push`] does, unless it is a write and
    /// the queue is full: then hands it back (`Ok(Some)`) and leaves `room`
    /// to be woken once the writer has taken what is queued.
    pub fn push_or_wait(&self, command: Command, wake_writer: bool, room: Option<&Waker>) -> Result<Option<Command>> {
        let mut queue = self.queue.lock();
        if let (Status::Open, Command::Write(_), Some(room)) = (&queue.status, &command, room)
            && queue.commands.len() >= self.options.queue_requests_max
        {
            // No search for a waker already there: with thousands waiting it
            // would be quadratic. A waiter polled twice while the queue stays
            // full is woken twice, harmlessly.
            queue.waiting_for_room.push(room.clone());
            drop(queue);
            // The queue is full, so it is not empty: make sure someone drains it.
            if wake_writer {
                self.wake.notify_one();
            }
            return Ok(Some(command));
        }
        // A poisoned log still takes a close: it releases the lock.
        match (&queue.status, &command) {
            (Status::Open, _) | (Status::Poisoned(_), Command::Close(_)) => {
                let write = matches!(command, Command::Write(_));
                queue.commands.push_back(command);
                let queued = self.queued.fetch_add(1, Ordering::Release) + 1;
                // The writer thread sleeps only on an empty queue, or while
                // it gathers for `gather_wake_at` requests: a write wakes it
                // only if it is the first queued or the one the gathering
                // waits for, so a burst of appenders costs one wake-up, not
                // one each. Both counts are read under the queue's lock.
                let wakes = !write || queued == 1 || queued == self.gather_wake_at.load(Ordering::Relaxed);
                drop(queue);
                if write {
                    crate::telemetry::request_queued(queued);
                }
                if wake_writer && wakes {
                    self.wake.notify_one();
                }
                Ok(None)
            }
            (Status::Poisoned(cause), _) => Err(Error::Poisoned { cause: cause.clone() }),
            (Status::Closed, _) => Err(Error::Closed),
        }
    }
}

/// Why the writer thread's wait ended.
enum Woken {
    /// Commands are queued.
    Commands,
    /// A periodic sync's deadline passed.
    SyncDue,
    /// The background threads are wanted, or their start is due.
    Start,
}

/// How long after open the writer thread starts the background threads if
/// nothing asked for them sooner: their start (five threads on a machine of
/// perhaps two cores) then does not compete with the first reads of an
/// open, and the compactor's first look waits a little longer.
const HELPERS_START_AFTER: Duration = Duration::from_millis(50);

/// The spare segment, prepared ahead of need.
pub(crate) struct Spares {
    state: Mutex<SpareState>,
    ready: Condvar,
    /// Set by [`Spares::shut_down`]: the preparer gives up the spare it is
    /// making between two chunks of zeros rather than finish one the close
    /// would remove.
    stop: AtomicBool,
}

#[derive(Default)]
struct SpareState {
    spare: Option<Spare>,
    /// Spares made so far: names the next one.
    made: u64,
    failed: Option<Error>,
    wanted: bool,
    shutdown: bool,
    /// The preparer is making a spare: it touches the log's directory.
    preparing: bool,
    /// The length of the spare wanted.
    bytes: u64,
}

impl Spares {
    pub fn new() -> Spares {
        Spares { state: Mutex::new(SpareState::default()), ready: Condvar::new(), stop: AtomicBool::new(false) }
    }

    /// Asks the preparer for a new spare of `bytes`.
    pub fn request(&self, bytes: u64) {
        let mut state = self.state.lock();
        state.wanted = true;
        state.bytes = bytes;
        drop(state);
        self.ready.notify_all();
    }

    /// Stops the preparer, and waits until it no longer touches the
    /// directory: a closed log releases its lock next, and a new opener's
    /// recovery must not race a spare still being made. A ready spare is
    /// removed: a closed log keeps no disk it does not use, and one being
    /// made is given up (its half-made file removed).
    pub fn shut_down(&self, shared: &Shared) {
        self.stop.store(true, Ordering::Release);
        let mut state = self.state.lock();
        state.shutdown = true;
        self.ready.notify_all();
        while state.preparing {
            self.ready.wait(&mut state);
        }
        if let Some(spare) = state.spare.take() {
            discard_spare(&*shared.fs, &shared.dir, &spare.path);
        }
    }

    /// Takes a spare of at least `needed_bytes` (`wanted_bytes` if one is
    /// made now), preparing it here if the options say so or waiting for
    /// the preparer. A ready spare too small for the record that needs it
    /// is removed.
    fn take(&self, shared: &Shared, needed_bytes: u64, wanted_bytes: u64) -> Result<Spare> {
        if shared.options.segment_preparation == SegmentPreparation::Inline {
            remove_stray_spares(&*shared.fs, &shared.dir, None);
            let number = {
                let mut state = self.state.lock();
                state.made += 1;
                state.made
            };
            return prepare_spare(&*shared.fs, &shared.dir, wanted_bytes, number);
        }
        // A leader may need the spare before the writer thread has started
        // the preparer.
        shared.want_helpers();
        // Ask for a spare only when none is ready: a request makes the
        // preparer reuse the spare's name, which the ready spare still has
        // until the writer renames it (the caller asks for the next one then).
        let mut state = self.state.lock();
        // A failure nobody waited for is stale (the disk may have room now):
        // this call waits for an attempt of its own.
        state.failed = None;
        loop {
            if let Some(spare) = state.spare.take() {
                if spare.bytes >= needed_bytes {
                    state.wanted = false;
                    return Ok(spare);
                }
                discard_spare(&*shared.fs, &shared.dir, &spare.path);
                continue;
            }
            if let Some(error) = state.failed.take() {
                return Err(error);
            }
            if state.shutdown {
                // Closed, or poisoned before the preparer could start.
                drop(state);
                return Err(match shared.status() {
                    Status::Poisoned(cause) => Error::Poisoned { cause },
                    _ => Error::Closed,
                });
            }
            if !state.wanted || state.bytes < needed_bytes {
                state.wanted = true;
                state.bytes = wanted_bytes;
            }
            self.ready.notify_all();
            self.ready.wait(&mut state);
        }
    }

    /// The preparer thread's loop.
    pub fn run_preparer(shared: &Shared) {
        let spares = &shared.spares;
        loop {
            let (number, bytes) = {
                let mut state = spares.state.lock();
                while !(state.shutdown || state.wanted && state.spare.is_none() && state.failed.is_none()) {
                    spares.ready.wait(&mut state);
                }
                if state.shutdown {
                    return;
                }
                state.wanted = false;
                state.preparing = true;
                state.made += 1;
                (state.made, state.bytes)
            };
            // No spare is ready (nor taken and unpublished: the writer asks
            // only once it has published the one it took), so any spare file
            // is a leftover of a failed attempt.
            remove_stray_spares(&*shared.fs, &shared.dir, None);
            let prepared = prepare_spare_unless(&*shared.fs, &shared.dir, bytes, number, &spares.stop);
            let mut state = spares.state.lock();
            state.preparing = false;
            // A spare holds no user data: its failure (a full disk, say) does
            // not poison the log; the append that needs it fails, and the
            // next one that needs it tries again.
            match prepared {
                Ok(spare) => state.spare = Some(spare),
                Err(error) => state.failed = Some(error),
            }
            spares.ready.notify_all();
        }
    }
}

/// The writer thread's state.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    log_id: [u8; 16],
    /// The CRC of `log_id`, where every frame's checksum starts.
    log_id_checksum: LogIdChecksum,
    /// The state file: the newest segment and the durable end, recorded at
    /// every rollover and at a clean close.
    state: StateFile,
    active: Segment,
    /// Offset in the active segment where the next frame goes.
    offset: usize,
    /// The LSN the next operation gets.
    next_lsn: Lsn,
    /// Every LSN below this one is durable.
    durable_lsn: Lsn,
    /// Commands taken from the queue and not yet committed (a group stops
    /// at `group_bytes_max`).
    pending: VecDeque<Command>,
    /// Streams touched by the group being gathered: next sequence and latest
    /// snapshot, and first live sequence if the group moved it. Emptied when the group is committed (the index then says
    /// the same); kept allocated from group to group.
    overlay: Overlay<Followed>,
    /// The last group's buffer, emptied, for the next one.
    spare_buf: Vec<u8>,
    /// The last group's list of replies, emptied, for the next one.
    spare_replies: Vec<(Reply, Result<Acks>)>,
    /// Where the writer thread hands a synced group's replies, for the
    /// completer thread to answer while the writer goes on.
    completions: Arc<Completions>,
    /// This round's replies go to the completer thread: set while the
    /// writer thread commits (a blocking leader answers its group itself).
    handing_off: bool,
    /// The log was closed: nothing more is written.
    closed: bool,
    /// A rollover began and failed: the active segment takes no more frames
    /// (the next append rolls over again).
    sealed: bool,
    /// The next spare was asked for.
    spare_requested: bool,
    /// The timestamp of the last frame written.
    last_timestamp_ms: u64,
    /// Requests the last [`Writer::round`] took from the queue.
    taken: usize,
    /// How long the last fdatasync took: the writer thread gathers for
    /// at most about as long ([`gather`]).
    last_sync: Duration,
}

/// Replies of synced, published groups on their way to their waiters: the
/// writer thread hands each group's list over and goes on to the next
/// group's write and fdatasync, while the completer thread wakes the
/// waiters (about half a microsecond each, most of a group's work for
/// the writer otherwise). Lists are answered in the order handed over;
/// at most [`COMPLETION_LISTS_MAX`] wait, past that the writer waits.
#[derive(Default)]
pub(crate) struct Completions {
    state: Mutex<CompletionState>,
    /// The completer waits here for a list.
    handed: Condvar,
    /// The writer waits here for room, or for every list to be answered.
    answered: Condvar,
}

type ReplyList = Vec<(Reply, Result<Acks>)>;

#[derive(Default)]
struct CompletionState {
    lists: VecDeque<ReplyList>,
    /// The completer is answering a list it took.
    answering: bool,
    /// Emptied lists, for the writer's next groups.
    free: Vec<ReplyList>,
    stop: bool,
}

/// The groups whose replies the writer thread hands off, by their number
/// of requests. A smaller group's waiters cost the writer less to wake
/// than the completer does (a futex wake-up, and a thread hop more for
/// one awaiting task). A bigger group means so many appenders that their
/// own work keeps every core busy: a third thread waking them slows them
/// down (measured at 256 writers on two cores), so the writer wakes them.
/// Under shuttle every group up to the maximum is handed off, so that the
/// model's small groups go through the hand-off.
const HAND_OFF_REPLIES: std::ops::RangeInclusive<usize> = if cfg!(annals_shuttle) { 1..=64 } else { 8..=64 };

/// Lists handed over and not yet taken by the completer, at most.
const COMPLETION_LISTS_MAX: usize = 4;

impl Completions {
    /// Hands a group's replies to the completer (waiting for room if
    /// [`COMPLETION_LISTS_MAX`] are waiting), and returns an empty list for
    /// the next group.
    fn hand_off(&self, replies: ReplyList) -> ReplyList {
        if replies.is_empty() {
            return replies;
        }
        let mut state = self.state.lock();
        while state.lists.len() >= COMPLETION_LISTS_MAX {
            self.answered.wait(&mut state);
        }
        state.lists.push_back(replies);
        let next = state.free.pop().unwrap_or_default();
        drop(state);
        self.handed.notify_one();
        next
    }

    /// Waits until every list handed over is answered.
    fn wait_answered(&self) {
        let mut state = self.state.lock();
        while !state.lists.is_empty() || state.answering {
            self.answered.wait(&mut state);
        }
    }

    /// Ends the completer once it has answered every list handed over.
    fn stop(&self) {
        self.state.lock().stop = true;
        self.handed.notify_one();
    }

    /// The completer thread: answers each list handed over, in order.
    fn run_completer(&self) {
        let mut state = self.state.lock();
        loop {
            let Some(mut list) = state.lists.pop_front() else {
                if state.stop {
                    return;
                }
                self.handed.wait(&mut state);
                continue;
            };
            state.answering = true;
            drop(state);
            // Room for one more list, for a writer that waits for it.
            self.answered.notify_all();
            let requests = list.len();
            for (reply, result) in list.drain(..) {
                reply.send(result);
            }
            crate::telemetry::group_answered(requests);
            state = self.state.lock();
            state.answering = false;
            if state.free.len() < COMPLETION_LISTS_MAX && list.capacity() <= SPARE_REPLIES_MAX {
                state.free.push(list);
            }
            if state.lists.is_empty() {
                self.answered.notify_all();
            }
        }
    }
}

/// Zero bytes between the index's end and the frames published next.
struct Padding(usize);

/// Requests being gathered into one write.
#[derive(Default)]
struct Group {
    buf: Vec<u8>,
    replies: Vec<(Reply, Result<Acks>)>,
    needs_sync: bool,
    needs_periodic: bool,
    /// The clock, read once for the group's first frame: every frame of a
    /// group is written by the same `write`.
    now_ms: Option<u64>,
}

/// LSNs one extension of the state file's LSN lease covers.
pub(crate) const LSN_LEASE_LSNS: u64 = 1 << 20;

/// The end of the LSN space: no record takes this LSN or one past it
/// (`Lsn(u64::MAX)` stands for "no end" where an end is asked for).
const LSN_END: u64 = u64::MAX - 1;

/// The largest group buffer kept for reuse; a larger one is freed.
const SPARE_BUF_BYTES_MAX: usize = 1 << 20;

/// The most replies a list kept for reuse has room for (a full queue's
/// worth, by default); a larger one is freed.
const SPARE_REPLIES_MAX: usize = 4096;

impl Writer {
    pub fn new(shared: Arc<Shared>, log_id: [u8; 16], state: StateFile) -> Writer {
        let (active, offset, next_lsn, last_timestamp_ms) = {
            let index = shared.index.read();
            let entry = index.segments().last().expect("open creates a segment");
            (entry.segment.clone(), entry.end_offset, index.next_lsn(), index.last_timestamp_ms())
        };
        Writer {
            shared,
            log_id,
            log_id_checksum: LogIdChecksum::of(&log_id),
            state,
            active,
            offset,
            next_lsn,
            durable_lsn: next_lsn,
            pending: VecDeque::new(),
            overlay: Overlay::default(),
            spare_buf: Vec::new(),
            spare_replies: Vec::new(),
            completions: Arc::new(Completions::default()),
            handing_off: false,
            closed: false,
            sealed: false,
            spare_requested: false,
            last_timestamp_ms,
            taken: 0,
            last_sync: Duration::ZERO,
        }
    }

    /// Where the completer answers the groups handed off to it.
    pub(crate) fn completions(&self) -> Arc<Completions> {
        self.completions.clone()
    }

    /// The writer thread: waits for commands (or a periodic sync's deadline)
    /// and commits them whenever no blocking appender is leading. Returns
    /// once the log is closed. `start_helpers` starts the other background
    /// threads (spare preparer, compactor, image writer); it runs, with
    /// the completer's start, at the thread's first wake-up for anything:
    /// a command, a spare asked for ([`Shared::want_helpers`]), or
    /// [`HELPERS_START_AFTER`] since it began. An open that only reads
    /// starts no thread but this one while its first reads run.
    ///
    /// `completions` is the writer's ([`Writer::completions`]), taken before
    /// the thread began: a blocking leader may hold the writer from the
    /// start, waiting for a spare that only this thread's wake-up brings.
    pub fn run_thread(
        shared: &Shared,
        writer: &Mutex<Writer>,
        completions: Arc<Completions>,
        start_helpers: Box<dyn FnOnce() + Send>,
    ) {
        let mut completer = None;
        let mut start = Some(|| {
            start_helpers();
            let answering = completions.clone();
            let name = "annals-completer";
            completer =
                Some(shared.fs.before_spawn(name).and_then(|()| {
                    thread::Builder::new().name(name.to_owned()).spawn(move || answering.run_completer())
                }));
            // Without a completer thread (none could be started) the writer
            // thread answers its groups itself, as a blocking leader does.
            completer.as_ref().is_some_and(Result::is_ok)
        });
        Writer::run_rounds(shared, writer, &mut start);
        // Closed before it woke: nothing was started.
        drop(start);
        completions.stop();
        if let Some(Ok(completer)) = completer {
            let _ = completer.join();
        }
    }

    /// The writer thread's loop, until the log is closed. `start` starts
    /// the other threads at the first wake-up, and says whether the
    /// completer is running (the writer then hands its groups off to it).
    fn run_rounds(shared: &Shared, writer: &Mutex<Writer>, start: &mut Option<impl FnOnce() -> bool>) {
        let (mut busy, mut burst, mut wait_max) = (false, Burst::default(), GATHER_MAX_MIN);
        let start_by = Instant::now() + HELPERS_START_AFTER;
        let mut handing_off = false;
        // Under the shuttle model, at once, as before this start was made
        // lazy: shuttle 0.8.1 cannot spawn a task from one whose vector clock
        // already counts more tasks than there are (`VectorClock::extend`
        // underflows), which a start after the first wake-up meets. The
        // model checks the hand-off of appends, not this start.
        if cfg!(annals_shuttle)
            && let Some(start) = start.take()
        {
            handing_off = start();
        }
        loop {
            if busy && burst.last < GATHER_GROUP_MIN {
                poll_for_work(shared);
            }
            let woken = {
                let mut queue = shared.queue.lock();
                loop {
                    if !queue.commands.is_empty() {
                        break Woken::Commands;
                    }
                    if matches!(queue.status, Status::Closed) {
                        return;
                    }
                    let starting = start.is_some();
                    if starting && shared.helpers_wanted.load(Ordering::Acquire) {
                        break Woken::Start;
                    }
                    let deadline = match (queue.periodic_deadline, starting) {
                        (Some(periodic), true) => Some(periodic.min(start_by)),
                        (periodic, true) => periodic.or(Some(start_by)),
                        (periodic, false) => periodic,
                    };
                    match deadline {
                        Some(deadline) => {
                            if shared.wake.wait_until(&mut queue, deadline).timed_out() {
                                let periodic_due = queue.periodic_deadline.is_some_and(|d| d <= deadline);
                                break if periodic_due || !starting { Woken::SyncDue } else { Woken::Start };
                            }
                        }
                        None => shared.wake.wait(&mut queue),
                    }
                }
            };
            if let Some(start) = start.take() {
                handing_off = start();
            }
            let sync_due = match woken {
                Woken::Commands => false,
                Woken::SyncDue => true,
                Woken::Start => continue,
            };
            if !sync_due {
                gather(shared, &burst, wait_max);
            }
            let mut writer = writer.lock();
            if writer.closed {
                return;
            }
            if sync_due {
                writer.sync_periodic();
            }
            writer.handing_off = handing_off;
            writer.taken = 0;
            busy = writer.round();
            writer.handing_off = false;
            burst.taken(writer.taken, shared.queued.load(Ordering::Acquire) == 0);
            shared.last_burst.store(burst.last, Ordering::Relaxed);
            wait_max = writer.last_sync.clamp(GATHER_MAX_MIN, GATHER_MAX_MAX);
        }
    }

    /// Leads for a blocking appender whose request is queued: if no one is
    /// writing, commits everything queued (its request among it) on the
    /// calling thread, saving two thread hand-offs per append. Otherwise the
    /// current writer will take the request. Whatever is queued afterwards
    /// is left to the writer thread.
    pub fn lead(shared: &Shared, writer: &Mutex<Writer>) {
        if let Some(mut writer) = writer.try_lock() {
            writer.round();
        }
        shared.wake_for_leftovers();
    }

    /// An awaited append's round in place (see `Log`'s `commit_in_place`):
    /// commits everything queued, as [`Writer::lead`] does, and records
    /// how many requests it took as the last burst.
    pub fn round_in_place(&mut self) {
        self.taken = 0;
        self.round();
        self.shared.last_burst.store(self.taken, Ordering::Relaxed);
    }

    /// Commits everything queued now, in groups of at most `group_bytes_max`.
    /// Returns whether there was anything to commit.
    fn round(&mut self) -> bool {
        if self.closed {
            return false;
        }
        if self.pending.is_empty() {
            let mut queue = self.shared.queue.lock();
            crate::telemetry::queue_taken(queue.commands.len());
            // Both are empty but for what is queued: swapping them moves no
            // command, and each keeps its room.
            std::mem::swap(&mut self.pending, &mut queue.commands);
            self.shared.queued.store(0, Ordering::Release);
            self.taken = self.pending.len();
            // The queue has room again for whoever found it full.
            let room = std::mem::take(&mut queue.waiting_for_room);
            drop(queue);
            room.into_iter().for_each(Waker::wake);
        }
        let worked = !self.pending.is_empty();
        while !self.pending.is_empty() {
            let mut group = Group {
                buf: std::mem::take(&mut self.spare_buf),
                replies: std::mem::take(&mut self.spare_replies),
                ..Group::default()
            };
            while let Some(command) = self.pending.pop_front() {
                match command {
                    Command::Write(request) => {
                        self.add(&mut group, request);
                        if group.buf.len() >= self.shared.options.group_bytes_max {
                            break;
                        }
                    }
                    Command::Close(reply) => {
                        self.commit(&mut group, false);
                        let result = self.close();
                        let _ = reply.send(result);
                        return true;
                    }
                }
            }
            self.commit(&mut group, false);
        }
        let due = self.shared.queue.lock().periodic_deadline.is_some_and(|deadline| Instant::now() >= deadline);
        if due {
            self.sync_periodic();
        }
        worked
    }

    /// Checks a request's guards and, if they hold, encodes it into the group.
    fn add(&mut self, group: &mut Group, reply: Reply) {
        let (ops, durability) = (&reply.ops, reply.durability);
        if self.shared.poisoned.load(Ordering::Acquire)
            && let Status::Poisoned(cause) = self.shared.status()
        {
            reply.send(Err(Error::Poisoned { cause }));
            return;
        }
        // A single operation's stream is hashed for the overlay's filter
        // once, for the guard's lookup and the insert after it.
        let single_bit = match ops {
            OneOrMany::One(op) => Some(StreamFilter::bit(&op.stream)),
            OneOrMany::Many(_) => None,
        };
        let checked = match self.check_guards(ops.as_slice(), single_bit) {
            Ok(checked) => checked,
            Err(error) => {
                group.replies.push((reply, Err(error)));
                return;
            }
        };
        // A reader that does not know retention records must refuse the
        // log, not take one for a torn tail: the state file says so first.
        if ops.as_slice().iter().any(|op| matches!(op.kind, OpKind::Prune(..) | OpKind::Base(_)))
            && let Err(error) = self.state.add_features(crate::state::FEATURE_RETENTION)
        {
            group.replies.push((reply, Err(error)));
            return;
        }
        fn op_ref<'a>(op: &'a Op, checked: &'a CheckedOp) -> Option<OpRef<'a>> {
            // A prune's payload is the one its guard check worked out.
            let payload =
                if matches!(op.kind, OpKind::Prune(..)) { &checked.prune_payload[..] } else { &op.payload[..] };
            let kind = record_kind(op.kind)?;
            Some(OpRef { kind, stream: &op.stream, seq: checked.seq, lsn: checked.lsn, payload })
        }
        // A single operation's reference lives on the stack: no allocation.
        let (one, many): ([OpRef<'_>; 1], Vec<OpRef<'_>>);
        let single = match (ops, &checked) {
            (OneOrMany::One(op), OneOrMany::One(checked)) => op_ref(op, checked),
            _ => None,
        };
        let refs: &[OpRef<'_>] = match single {
            Some(written) => {
                one = [written];
                &one
            }
            None => {
                let pairs = ops.as_slice().iter().zip(checked.as_slice());
                many = pairs.filter_map(|(op, checked)| op_ref(op, checked)).collect();
                &many
            }
        };
        // Only checks: nothing to write, and the reply waits for the group
        // (whose writes the checks may have seen) to be synced.
        let len = if refs.is_empty() { 0 } else { frame_bytes(frame_kind_of(refs), refs) };
        // The session's first frame (this one: any before it would have
        // done this) goes past the end a clean close recorded: the state
        // file stops saying so first, or it would vouch for zeros there.
        // Nothing is written yet, so a failure fails only this request.
        if len > 0
            && let Err(error) = self.state.record_not_clean()
        {
            group.replies.push((reply, Err(error)));
            return;
        }
        if len > 0 && !self.fits(group.buf.len() + len) {
            // Seal the active segment (its frames synced) and move to the spare.
            self.commit(group, true);
            if let Status::Poisoned(cause) = self.shared.status() {
                reply.send(Err(Error::Poisoned { cause }));
                return;
            }
            if let Err(error) = self.roll_over(len) {
                // A spare that could not be made or published leaves the log
                // as it was: only this append fails (a full disk, say).
                // Anything else has poisoned the log.
                reply.send(Err(error));
                return;
            }
        }
        let kept_time = ops.as_slice().first().and_then(|op| op.timestamp_ms);
        let acks = self.add_encoded(group, refs, checked.as_slice(), kept_time, durability);
        // The stream's whole state after each operation, as the guards
        // computed it from the index and the group: later requests in the
        // group are checked against it. An inline stream id is copied, a
        // longer one shared.
        for (op, checked) in ops.as_slice().iter().zip(checked.as_slice()) {
            let bit = single_bit.unwrap_or_else(|| StreamFilter::bit(&op.stream));
            self.overlay.insert_at(op.stream.clone(), bit, (checked.after, checked.start_after));
        }
        group.replies.push((reply, Ok(acks)));
    }

    /// The time for the next frame: the log's clock never goes back, so
    /// entries can be searched by time.
    fn timestamp_ms(&mut self) -> u64 {
        self.last_timestamp_ms = self.last_timestamp_ms.max(self.shared.fs.now_ms());
        self.last_timestamp_ms
    }

    /// The compaction generation the state file records.
    pub(crate) fn compaction_generation(&self) -> u64 {
        self.state.current().compaction_generation
    }

    /// `Ok` while the log takes writes.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        match self.shared.status() {
            Status::Poisoned(cause) => Err(Error::Poisoned { cause }),
            Status::Closed => Err(Error::Closed),
            Status::Open => Ok(()),
        }
    }

    /// Makes everything written durable before a compaction decides what
    /// is live. A failure poisons the log (a failed sync of records).
    pub(crate) fn sync_for_compaction(&mut self) -> Result<()> {
        if let Err(error) = self.write_and_sync(&[], true) {
            return Err(Error::Poisoned { cause: self.shared.poison(error) });
        }
        Ok(())
    }

    /// The commit point of a compaction: the state file records that the
    /// log's compacted segments are those of `generation`, ending at `end`,
    /// and that the log starts at `oldest`. A failure poisons the log:
    /// whether the commit reached the disk is unknown until it is reopened.
    pub(crate) fn commit_compaction(&mut self, oldest: Lsn, generation: u64, end: Lsn, trimmed: Lsn) -> Result<()> {
        if let Err(error) = self.state.record_compaction(oldest, generation, end, trimmed) {
            let cause = self.shared.poison(error);
            return Err(Error::Poisoned { cause });
        }
        Ok(())
    }

    /// Whether `bytes` more fit in the active segment, with the space every
    /// segment keeps for a clean-close marker. The segment's own length
    /// decides, not the options: a log may be reopened with another size.
    fn fits(&self, bytes: usize) -> bool {
        if self.sealed {
            return false;
        }
        let segment_bytes = usize::try_from(self.active.header.segment_bytes).unwrap_or(usize::MAX);
        self.offset + bytes + MARKER_RESERVE_BYTES <= segment_bytes
    }

    /// Encodes a checked request's frame into the group and returns its
    /// acknowledgements. `kept_time` is the time its first operation asks
    /// to keep (`annals repair`), if any.
    fn add_encoded(
        &mut self,
        group: &mut Group,
        refs: &[OpRef<'_>],
        checked: &[CheckedOp],
        kept_time: Option<u64>,
        durability: Durability,
    ) -> Acks {
        // The refs' LSNs were assigned before any roll-over; a roll-over keeps `next_lsn`.
        // The log's clock never goes back, so entries can be searched by time.
        let time = kept_time.unwrap_or_else(|| *group.now_ms.get_or_insert_with(|| self.shared.fs.now_ms()));
        self.last_timestamp_ms = self.last_timestamp_ms.max(time);
        let timestamp_ms = self.last_timestamp_ms;
        if !refs.is_empty() {
            let meta = FrameMeta { lsn: self.next_lsn, durable_lsn: self.durable_lsn, timestamp_ms };
            encode_frame_from(&mut group.buf, &self.log_id_checksum, frame_kind_of(refs), meta, refs);
            self.next_lsn = Lsn(self.next_lsn.0 + refs.len() as u64);
        }
        let appended = |c: &CheckedOp| Appended {
            lsn: c.lsn,
            seq: c.seq,
            timestamp_ms,
            start_before: c.start_before,
            since: c.after.exists.then_some(c.after.since),
        };
        let acks = match checked {
            [one] => Acks::One(appended(one)),
            many => Acks::Many(many.iter().map(appended).collect()),
        };
        match durability {
            Durability::Sync => group.needs_sync = true,
            Durability::Periodic => group.needs_periodic = true,
            Durability::Flush => {}
        }
        acks
    }

    /// The state of a stream the group touched, if it did, and its first
    /// live sequence if the group moved it.
    fn overlay_get(&self, stream: &[u8]) -> Option<&Followed> {
        self.overlay.get(stream)
    }

    /// The sequence each operation gets and its stream's state after it, or
    /// the first guard that fails. `single_bit` is the overlay filter's bit
    /// of a single operation's stream.
    fn check_guards(&self, ops: &[Op], single_bit: Option<FilterBit>) -> Result<OneOrMany<CheckedOp>> {
        // Every LSN the request takes stays at or below the last one there
        // is (u64::MAX stands for "no end" in places): never wrapped.
        let taken = ops.iter().filter(|op| record_kind(op.kind).is_some()).count() as u64;
        if self.next_lsn.0.checked_add(taken).is_none_or(|end| end > LSN_END) {
            return Err(Error::LsnSpaceExhausted { next: self.next_lsn });
        }
        let index = self.shared.index.read();
        let cursor = |stream: &[u8]| match self.overlay_get(stream) {
            Some(&followed) => followed,
            None => (index.cursor(stream), None),
        };
        // Looked up only for a prune, which reports it.
        let index_start = |stream: &[u8]| index.stream(stream).map_or(0, |state| state.start_seq().0);
        if let [op] = ops {
            let bit = single_bit.unwrap_or_else(|| StreamFilter::bit(&op.stream));
            let (before, start) = match self.overlay.get_at(&op.stream, bit) {
                Some(&followed) => followed,
                None => (index.cursor(&op.stream), None),
            };
            let checked = check_op(op, before, self.next_lsn)?;
            return Ok(OneOrMany::One(follow_start(op, checked, start, || index_start(&op.stream))));
        }
        // A cursor is checked against the log-wide trim here, with the
        // writer held, as a compaction commits its trim: one checked before
        // its write was queued could otherwise land under a trim committed
        // in between, and be refused after it was written. (A cursor is
        // always written by a batch: a clear, then its record.)
        let trimmed_before = index.trimmed_before();
        if let Some(lsn) = ops
            .iter()
            .filter_map(crate::cursors::position_written)
            .find(|lsn| lsn.0.saturating_add(1) < trimmed_before.0)
        {
            return Err(Error::Trimmed { after: lsn, oldest: index.oldest_lsn() });
        }
        // A batch may touch one stream several times: follow its own effects.
        let mut local: Vec<(&[u8], Followed)> = Vec::new();
        let mut checked = Vec::with_capacity(ops.len());
        // Operations written so far: a check takes no LSN.
        let mut written = 0u64;
        for op in ops {
            let position = local.iter().position(|(stream, _)| *stream == op.stream.as_ref());
            let (before, start) = match position {
                Some(i) => local[i].1,
                None => cursor(&op.stream),
            };
            let op_checked = check_op(op, before, Lsn(self.next_lsn.0 + written))?;
            let op_checked = follow_start(op, op_checked, start, || index_start(&op.stream));
            if record_kind(op.kind).is_some() {
                written += 1;
            }
            let after = (op_checked.after, op_checked.start_after);
            match position {
                Some(i) => local[i].1 = after,
                None => local.push((op.stream.as_ref(), after)),
            }
            checked.push(op_checked);
        }
        Ok(OneOrMany::Many(checked))
    }

    /// Writes the group, syncs it if asked (or `seal`), publishes it to the
    /// index and replies. On failure poisons the log and fails the group.
    fn commit(&mut self, group: &mut Group, seal: bool) {
        let mut group = std::mem::take(group);
        // Published or failed, the group's effects are the index's business now.
        self.overlay.clear();
        let mut write_took = Duration::ZERO;
        if !group.buf.is_empty() || seal {
            let started = Instant::now();
            let written =
                self.write_and_sync(&group.buf, group.needs_sync || seal).and_then(|()| self.cover_by_lease());
            if let Err(error) = written {
                let cause = self.shared.poison(error);
                for (_, result) in &mut group.replies {
                    *result = Err(Error::Poisoned { cause: cause.clone() });
                }
                self.answer(group);
                return;
            }
            write_took = started.elapsed();
            if group.needs_periodic && self.durable_lsn < self.next_lsn {
                let interval = Duration::from_millis(self.shared.options.fsync_interval_ms);
                let mut queue = self.shared.queue.lock();
                if queue.periodic_deadline.is_none() {
                    queue.periodic_deadline = Some(Instant::now() + interval);
                    drop(queue);
                    // The writer thread may be asleep without a deadline (a
                    // blocking caller led this group): wake it to wait for this one.
                    self.shared.wake.notify_one();
                }
            }
            self.publish(&group.buf);
            self.request_spare(false);
        }
        if crate::telemetry::group_wanted() && !group.replies.is_empty() {
            group_committed(&group, write_took, group.needs_sync || seal);
        }
        self.answer(group);
    }

    /// Answers a committed (or failed) group's requests, its frames synced
    /// as they asked and published: the writer thread hands the replies to
    /// the completer thread, which wakes their waiters while the writer
    /// starts the next group's write and fdatasync; a blocking leader
    /// answers them itself, once every reply handed off before is answered
    /// (the groups are answered in order). Keeps the group's buffer and an
    /// empty list of replies for the next group, unless they grew past
    /// what is worth keeping.
    fn answer(&mut self, mut group: Group) {
        let hand_off = HAND_OFF_REPLIES.contains(&group.replies.len());
        let mut replies = if self.handing_off && hand_off {
            self.completions.hand_off(group.replies)
        } else {
            self.completions.wait_answered();
            let requests = group.replies.len();
            for (reply, result) in group.replies.drain(..) {
                reply.send(result);
            }
            if requests > 0 {
                crate::telemetry::group_answered(requests);
            }
            group.replies
        };
        if group.buf.capacity() <= SPARE_BUF_BYTES_MAX {
            group.buf.clear();
            self.spare_buf = group.buf;
        }
        if replies.capacity() <= SPARE_REPLIES_MAX {
            replies.clear();
            self.spare_replies = replies;
        }
    }

    /// Makes sure the state file's LSN lease covers every LSN handed out
    /// before it is durable (`Flush` and `Periodic` acknowledge written,
    /// unsynced records): after a power cut the log resumes past the lease,
    /// so no acknowledged LSN is handed out again. One synced 512-byte write
    /// per [`LSN_LEASE_LSNS`] such LSNs.
    fn cover_by_lease(&mut self) -> Result<()> {
        if self.durable_lsn >= self.next_lsn || self.state.current().lsn_lease_end >= self.next_lsn {
            return Ok(());
        }
        self.state.extend_lease(Lsn(self.next_lsn.0.saturating_add(LSN_LEASE_LSNS)))
    }

    fn write_and_sync(&mut self, buf: &[u8], sync: bool) -> Result<()> {
        let path = &self.active.path;
        if !buf.is_empty() {
            self.active.file.write_at(buf, self.offset as u64).map_err(|error| Error::io("write", path, error))?;
        }
        if sync && self.durable_lsn < self.next_lsn {
            let started = Instant::now();
            self.active.file.sync_data().map_err(|error| Error::io("fdatasync", path, error))?;
            self.last_sync = started.elapsed();
            crate::telemetry::fsynced(self.last_sync);
            self.durable_lsn = self.next_lsn;
            self.shared.queue.lock().periodic_deadline = None;
            // What of it the index holds already (the rest: once published).
            let visible = self.shared.index.read().next_lsn();
            self.shared.durable.advance(self.durable_lsn.min(visible));
        }
        Ok(())
    }

    /// Applies written frames to the index, parsing them again from the
    /// buffer (their fields checked, their checksums only in debug builds:
    /// the writer encoded them moments ago).
    fn publish(&mut self, buf: &[u8]) {
        self.publish_after(Padding(0), buf);
    }

    /// [`Writer::publish`] of frames that start `padding` bytes of zeros
    /// after the index's end (a clean-close marker): the index moves over
    /// the padding and the frames in one step.
    fn publish_after(&mut self, Padding(padding): Padding, buf: &[u8]) {
        let mut index = self.shared.index.write();
        if padding > 0 {
            index.skip_padding(self.offset);
        }
        let mut at = 0;
        while at < buf.len() {
            let frame = decode_own_frame(&buf[at..], &self.log_id, index.next_lsn())
                .expect("a frame the writer encoded decodes");
            debug_assert!(index.check_frame(&frame).is_ok());
            index.apply_frame(self.offset + at, &frame);
            at += frame.total_bytes();
        }
        let visible = index.next_lsn();
        drop(index);
        self.offset += buf.len();
        // Subscriptions see what of it was synced before it was published.
        self.shared.durable.advance(self.durable_lsn.min(visible));
    }

    fn sync_periodic(&mut self) {
        self.shared.queue.lock().periodic_deadline = None;
        if matches!(self.shared.status(), Status::Open)
            && let Err(error) = self.write_and_sync(&[], true)
        {
            self.shared.poison(error);
        }
    }

    /// Moves writing into a new segment that starts at `next_lsn`. The active
    /// segment was synced by the caller.
    ///
    /// No step of it writes user data, so no failure poisons the log: the
    /// append that needed the segment fails with the error (a full disk is
    /// [`Error::DiskFull`]), nothing of it was written, and the next append
    /// that needs a segment tries again from the start.
    ///
    /// # Errors
    /// [`Error::DiskFull`] or [`Error::Io`].
    fn roll_over(&mut self, frame_bytes: usize) -> Result<()> {
        debug_assert_eq!(self.durable_lsn, self.next_lsn);
        let needed = (SEGMENT_HEADER_BYTES + frame_bytes + MARKER_RESERVE_BYTES) as u64;
        let wanted = self.next_segment_bytes(needed);
        let spare = self.shared.spares.take(&self.shared, needed, wanted)?;
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            log_id: self.log_id,
            first_lsn: self.next_lsn,
            segment_bytes: spare.bytes,
            created_ms: self.shared.fs.now_ms(),
        };
        // From here on the active segment takes no more frames, whatever
        // happens: a segment published under the next name may exist.
        self.sealed = true;
        let published = publish_spare(&*self.shared.fs, &self.shared.dir, spare, header);
        let segment = published?;
        let sealed_bytes = self.active.header.segment_bytes;
        // Recorded before anything in the new segment is acknowledged, so
        // that deleting it can never go unnoticed (one synced sector). If it
        // fails, the new segment stays empty and unused; the state file
        // holds the old record or the new one, each true.
        self.state.update(header.first_lsn, self.durable_lsn, false, StateCopies::One)?;
        self.shared.index.write().push_segment(segment.clone(), SEGMENT_HEADER_BYTES);
        crate::telemetry::rolled_over(&segment.path, header.first_lsn.0, header.segment_bytes);
        self.shared.disk_bytes.set(|| crate::telemetry::log_file_bytes(&self.shared.index.read()));
        self.active = segment;
        self.offset = SEGMENT_HEADER_BYTES;
        self.sealed = false;
        // A log that fills segments is busy: its next spare is made at once,
        // so that appends never wait for one.
        self.spare_requested = false;
        self.request_spare(true);
        // A segment was sealed: the background compactor looks, and the
        // index image covers it once a segment's worth has sealed.
        self.shared.compactor.poke();
        self.shared.image.sealed(sealed_bytes, self.shared.options.segment_bytes);
        Ok(())
    }

    /// The size of the segment after the active one, for a frame that
    /// needs `needed` bytes of it.
    fn next_segment_bytes(&self, needed: u64) -> u64 {
        next_segment_bytes(self.active.header.segment_bytes, self.shared.options.segment_bytes, needed)
    }

    /// Asks the preparer for the next spare: at once after a rollover, and
    /// otherwise once the active segment is half full, so that a log that
    /// holds a few records, or is reopened, writes no spare it does not need.
    pub fn request_spare(&mut self, now: bool) {
        let half_full = self.offset as u64 > self.active.header.segment_bytes / 2;
        if self.spare_requested
            || !(now || half_full)
            || self.shared.options.segment_preparation != SegmentPreparation::Background
        {
            return;
        }
        self.spare_requested = true;
        let bytes = self.next_segment_bytes(0);
        self.shared.spares.request(bytes);
        self.shared.want_helpers();
    }

    /// Writes a gap frame so that the next record gets LSN `to`, syncs it
    /// and records it in the state file: after salvage cut records whose
    /// LSNs may have been acknowledged, none of them is handed out again.
    /// Runs at open, before anything else is written, and for `repair`.
    ///
    /// # Errors
    /// As a write: the log is poisoned.
    pub fn write_gap(&mut self, to: Lsn) -> Result<()> {
        if let Status::Poisoned(cause) = self.shared.status() {
            return Err(Error::Poisoned { cause });
        }
        if let Err(error) = self.write_and_sync(&[], true) {
            return Err(Error::Poisoned { cause: self.shared.poison(error) });
        }
        // Before anything past a clean close's marker (nothing is written yet).
        self.state.record_not_clean()?;
        if !self.fits(FRAME_HEADER_BYTES + GAP_BODY_BYTES) {
            self.roll_over(FRAME_HEADER_BYTES + GAP_BODY_BYTES)?;
        }
        let mut buf = Vec::with_capacity(FRAME_HEADER_BYTES + GAP_BODY_BYTES);
        // A gap holds no record: it takes the last frame's time, so that a copy
        // (`annals repair`) that skips LSNs keeps its records' own times.
        let meta =
            FrameMeta { lsn: self.next_lsn, durable_lsn: self.durable_lsn, timestamp_ms: self.last_timestamp_ms };
        encode_gap_frame(&mut buf, &self.log_id, meta, to);
        self.next_lsn = to;
        let written = self.write_and_sync(&buf, true).and_then(|()| {
            self.publish(&buf);
            self.state.update(self.active.header.first_lsn, to, false, StateCopies::One)
        });
        written.map_err(|error| Error::Poisoned { cause: self.shared.poison(error) })
    }

    /// Syncs everything, writes and syncs the clean-close marker, fails
    /// whatever was queued behind the close, and releases the lock.
    fn close(&mut self) -> Result<()> {
        self.closed = true;
        let result = match self.shared.status() {
            Status::Poisoned(cause) => Err(Error::Poisoned { cause }),
            _ => self.write_marker(),
        };
        if let Err(error) = &result
            && !matches!(error, Error::Poisoned { .. })
        {
            self.shared.poison(error.clone());
        }
        let room;
        {
            let mut queue = self.shared.queue.lock();
            queue.status = Status::Closed;
            self.shared.closed.store(true, Ordering::Release);
            self.pending.extend(queue.commands.drain(..));
            // Appenders waiting for room find the log closed.
            room = std::mem::take(&mut queue.waiting_for_room);
        }
        room.into_iter().for_each(Waker::wake);
        self.shared.durable.wake_all();
        // The writer thread exits once it sees the log closed.
        self.shared.wake.notify_all();
        self.shared.spares.shut_down(&self.shared);
        self.shared.compactor.stop(&self.shared);
        self.shared.image.stop();
        if result.is_ok() && self.shared.options.index_image != crate::options::IndexImageWrites::Off {
            // Still holding the directory's lock. Not user data: a failure
            // leaves the previous image (or none), and the next open scans more.
            let shared = &self.shared;
            let index = shared.index.read();
            let sections = if index.image_found_wrong() {
                crate::image::SectionsKnown::ImageFoundWrong
            } else if index.image_sections_found_damaged() {
                crate::image::SectionsKnown::SomeFoundDamaged
            } else {
                crate::image::SectionsKnown::NoneFoundDamaged
            };
            drop(index);
            let _ = shared.image.write_now(&*shared.fs, &shared.dir, crate::image::Coverage::Whole, sections);
        }
        // Every group handed off is answered before the close is.
        self.completions.wait_answered();
        for command in self.pending.drain(..) {
            match command {
                Command::Write(request) => {
                    request.send(Err(Error::Closed));
                }
                Command::Close(reply) => {
                    let _ = reply.send(Ok(()));
                }
            }
        }
        self.shared.lock.lock().take();
        result
    }

    /// Writes the clean-close marker unless the log already ends with one
    /// (then it would prove nothing new, and markers must not pile up past
    /// the space each segment keeps for one).
    fn write_marker(&mut self) -> Result<()> {
        self.write_and_sync(&[], true)?;
        let ends_with_marker = self.shared.index.read().ends_with_marker();
        let at = marker_offset(self.offset);
        if ends_with_marker || at + FRAME_HEADER_BYTES > self.active.header.segment_bytes as usize {
            debug_assert!(ends_with_marker, "data frames always leave room for a marker");
            return self.record_clean_close();
        }
        // A state that says clean while the log does not end with a marker
        // was written by an older build, past whose marker frames follow:
        // it stops saying so before this marker goes past that end.
        self.state.record_not_clean()?;
        // The bytes between the last frame and the marker are zeros already:
        // nothing is ever written past the end of the frames. The index
        // skips them only with the marker, in one step: a reader that saw
        // the padding alone would take it for a zeroed frame.
        let padding = at - self.offset;
        self.offset = at;
        let mut buf = Vec::with_capacity(FRAME_HEADER_BYTES);
        let meta = FrameMeta { lsn: self.next_lsn, durable_lsn: self.durable_lsn, timestamp_ms: self.timestamp_ms() };
        encode_frame(&mut buf, &self.log_id, FrameKind::Marker, meta, &[]);
        let path = &self.active.path;
        self.active.file.write_at(&buf, self.offset as u64).map_err(|error| Error::io("write", path, error))?;
        self.active.file.sync_data().map_err(|error| Error::io("fdatasync", path, error))?;
        self.publish_after(Padding(padding), &buf);
        self.record_clean_close()
    }

    /// Records in both slots of the state file where the cleanly closed log
    /// ends: from now on, a log that ends before it is corrupt, not torn.
    fn record_clean_close(&mut self) -> Result<()> {
        let state = self.state.current();
        let recorded = state.clean_close
            && state.durable_end_lsn == self.durable_lsn
            && state.newest_segment_lsn == self.active.header.first_lsn;
        if recorded && (self.state.synced_here() || self.state.clean_close_pair_read()) {
            // This handle recorded this close already (a second close), or
            // the open found it recorded in both slots and nothing was
            // written since: the first of those slots was synced before the
            // second was written, so it is durable. A reopen that wrote
            // nothing closes without a write.
            return Ok(());
        }
        self.state.update(self.active.header.first_lsn, self.durable_lsn, true, StateCopies::Both)
    }
}

/// Streams touched by the group being gathered, each with its state after
/// the group's operations on it. Most groups touch each stream once: then
/// nothing is hashed with the keyed hash. A [`StreamFilter`] answers "not
/// touched" for most lookups; only when it says "maybe" are the touched
/// streams indexed by SipHash (stream ids are users', so a chosen collision
/// must not turn lookups into scans), once per group and then kept up to date.
struct Overlay<V> {
    /// Each touched stream once, with its state.
    touched: Vec<(StreamId, V)>,
    filter: StreamFilter,
    positions: RefCell<OverlayPositions>,
}

/// Positions in `touched` by the keyed hash of the stream id.
#[derive(Default)]
struct OverlayPositions {
    hasher: RandomState,
    /// Positions by hash; several only if two ids share a 64-bit hash.
    by_hash: HashMap<u64, OneOrMany<usize>, BuildHasherDefault<HashValueHasher>>,
    /// `touched[..indexed]` is in `by_hash`.
    indexed: usize,
}

impl<V> Default for Overlay<V> {
    fn default() -> Overlay<V> {
        Overlay { touched: Vec::new(), filter: StreamFilter::default(), positions: RefCell::default() }
    }
}

impl<V> Overlay<V> {
    fn position(&self, stream: &[u8]) -> Option<usize> {
        self.position_at(stream, StreamFilter::bit(stream))
    }

    /// [`Overlay::position`] of a stream whose filter bit is `bit`.
    ///
    /// Inlined into the writer's guard check and update of every append:
    /// the filter's answer "not touched" (most lookups) is then a test of a
    /// bit, not a call that saves registers for the indexed search.
    #[inline]
    fn position_at(&self, stream: &[u8], bit: FilterBit) -> Option<usize> {
        if !self.filter.may_hold_bit(bit) {
            return None;
        }
        self.indexed_position(stream)
    }

    /// [`Overlay::position_at`] past the filter: the touched streams
    /// indexed by the keyed hash, and the one that is `stream`.
    #[inline(never)]
    fn indexed_position(&self, stream: &[u8]) -> Option<usize> {
        let mut positions = self.positions.borrow_mut();
        let OverlayPositions { hasher, by_hash, indexed } = &mut *positions;
        for (at, (touched, _)) in self.touched.iter().enumerate().skip(*indexed) {
            by_hash.entry(hasher.hash_one(touched.as_ref())).or_insert_with(|| OneOrMany::with_capacity(1)).push(at);
        }
        *indexed = self.touched.len();
        let candidates = by_hash.get(&hasher.hash_one(stream))?;
        candidates.as_slice().iter().copied().find(|&at| self.touched[at].0.as_ref() == stream)
    }

    fn get(&self, stream: &[u8]) -> Option<&V> {
        self.position(stream).map(|at| &self.touched[at].1)
    }

    /// [`Overlay::get`] of a stream whose filter bit is `bit`.
    fn get_at(&self, stream: &[u8], bit: FilterBit) -> Option<&V> {
        self.position_at(stream, bit).map(|at| &self.touched[at].1)
    }

    #[cfg(test)]
    fn insert(&mut self, stream: StreamId, state: V) {
        let bit = StreamFilter::bit(&stream);
        self.insert_at(stream, bit, state);
    }

    /// Sets the state of `stream`, whose filter bit is `bit`.
    fn insert_at(&mut self, stream: StreamId, bit: FilterBit, state: V) {
        match self.position_at(&stream, bit) {
            Some(at) => self.touched[at].1 = state,
            None => {
                self.filter.insert_bit(bit);
                self.touched.push((stream, state));
            }
        }
    }

    /// Forgets every stream, keeping the allocations.
    fn clear(&mut self) {
        self.touched.clear();
        self.filter.clear();
        let positions = self.positions.get_mut();
        positions.by_hash.clear();
        positions.indexed = 0;
    }
}

/// Hashes a `u64` that is a hash already (from a keyed hasher) to itself.
#[derive(Default)]
struct HashValueHasher(u64);

impl Hasher for HashValueHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys come here; any other key is folded in all the same.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// Streams a group touched, by a cheap unkeyed hash of their ids: a clear
/// bit proves a stream is not in the overlay and saves the overlay's keyed
/// (SipHash) lookup, which is most of a guard check when groups hold many
/// streams once each. A set bit only means "maybe": a collision, chance or
/// chosen, costs that lookup and nothing more, so this needs no key.
struct StreamFilter {
    bits: [u64; STREAM_FILTER_WORDS],
    /// Bits set since the last clear (a group that touched none skips it).
    set: usize,
}

const STREAM_FILTER_WORDS: usize = 64;

/// A stream's bit in a [`StreamFilter`]: its word, and the bit in it.
#[derive(Clone, Copy)]
struct FilterBit {
    word: usize,
    mask: u64,
}

impl Default for StreamFilter {
    fn default() -> StreamFilter {
        StreamFilter { bits: [0; STREAM_FILTER_WORDS], set: 0 }
    }
}

impl StreamFilter {
    fn bit(stream: &[u8]) -> FilterBit {
        // foldhash with a fixed seed: a few instructions per short id, and
        // a filter needs no key (see above).
        let hash = foldhash::fast::FixedState::with_seed(0).hash_one(stream);
        let bit = (hash >> 52) as usize % (STREAM_FILTER_WORDS * 64);
        FilterBit { word: bit / 64, mask: 1 << (bit % 64) }
    }

    #[cfg(test)]
    fn insert(&mut self, stream: &[u8]) {
        self.insert_bit(StreamFilter::bit(stream));
    }

    fn insert_bit(&mut self, bit: FilterBit) {
        self.bits[bit.word] |= bit.mask;
        self.set += 1;
    }

    #[cfg(test)]
    fn may_hold(&self, stream: &[u8]) -> bool {
        self.may_hold_bit(StreamFilter::bit(stream))
    }

    fn may_hold_bit(&self, bit: FilterBit) -> bool {
        self.set > 0 && self.bits[bit.word] & bit.mask != 0
    }

    fn clear(&mut self) {
        if self.set > 0 {
            self.bits = [0; STREAM_FILTER_WORDS];
            self.set = 0;
        }
    }
}

/// Reports a group to telemetry: its replies say what it committed and
/// what guards refused (a failed write has poisoned the log, and says so).
fn group_committed(group: &Group, write: Duration, synced: bool) {
    let (mut records, mut conflicts) = (0, 0);
    for (_, result) in &group.replies {
        match result {
            Ok(acks) => records += acks.as_slice().len() as u64,
            Err(Error::Conflict { .. }) => conflicts += 1,
            Err(_) => {}
        }
    }
    let requests = group.replies.len();
    let figures =
        crate::telemetry::GroupFigures { requests, records, conflicts, bytes: group.buf.len(), synced, write };
    crate::telemetry::group_committed(&figures);
}

/// The sequence an operation gets at `lsn` (if it writes a record) and its
/// stream's state after it, from the state `cursor` before it; or the guard
/// that fails.
// Inlined into the writer's guard check of every operation: its result
// is then built in place rather than moved out of a call (`inline` alone
// left it a call).
#[inline(always)]
fn check_op(op: &Op, cursor: StreamCursor, lsn: Lsn) -> Result<CheckedOp> {
    let next = cursor.next;
    let since = cursor.exists.then_some(cursor.since);
    let conflict = |expected: Expectation| Error::Conflict {
        stream: display_stream(&op.stream),
        expected,
        actual: StreamSeq(next),
    };
    let seq = match op.kind {
        OpKind::Entry(expected)
        | OpKind::Clear(expected)
        | OpKind::Prune(_, _, expected, _)
        | OpKind::Check(expected)
            if !expected.holds_in(StreamSeq(next), since) =>
        {
            return Err(conflict(expected));
        }
        OpKind::Entry(_) | OpKind::Clear(_) | OpKind::Check(_) => StreamSeq(next),
        OpKind::Snapshot(seq) if seq.0 >= next || cursor.snapshot_floor.is_some_and(|s| s > seq) => {
            return Err(Error::SnapshotOutOfRange {
                stream: display_stream(&op.stream),
                seq,
                next_seq: StreamSeq(next),
            });
        }
        // Decided on another incarnation of the stream (it was
        // cleared and refilled since): a conflict, nothing written.
        OpKind::Prune(_, _, expected, Some(since)) if !cursor.exists || cursor.since != since => {
            return Err(conflict(expected));
        }
        OpKind::Prune(seq, _, _, _) if seq.0 > next => {
            return Err(Error::PruneOutOfRange { stream: display_stream(&op.stream), seq, next_seq: StreamSeq(next) });
        }
        OpKind::Base(_) if cursor.exists => return Err(conflict(Expectation::NoStream)),
        OpKind::Snapshot(seq) | OpKind::Prune(seq, ..) | OpKind::Base(seq) => seq,
    };
    let Some(kind) = record_kind(op.kind) else {
        // A check changes nothing: the LSN before the next one taken.
        let prune_payload = crate::frame::prune_payload(Lsn(0));
        let lsn = Lsn(lsn.0.saturating_sub(1));
        return Ok(CheckedOp { seq, lsn, after: cursor, prune_payload, start_before: None, start_after: None });
    };
    // A prune reaches no further than itself: snapshots written after it
    // are not its business.
    let snapshots_before = match op.kind {
        OpKind::Prune(_, PruneSnapshots::Before(before), ..) => before.min(lsn),
        OpKind::Prune(_, PruneSnapshots::AllButLatest, ..) => cursor.latest_snapshot.unwrap_or(Lsn(0)),
        _ => Lsn(0),
    };
    let after = cursor.apply(kind, seq, lsn, snapshots_before).expect("the guards above are the same rules");
    let prune_payload = crate::frame::prune_payload(snapshots_before);
    Ok(CheckedOp { seq, lsn, after, prune_payload, start_before: None, start_after: None })
}

/// `checked` with its stream's first live sequence followed through it, as
/// the index will have it once the group is published: a clear starts the
/// stream over at 0, a base at its sequence, a prune at its own sequence if
/// that is further; the others leave it. `start` is the sequence before, if
/// the group moved it; `index_start` the index's, looked up only for a
/// prune, which reports it.
fn follow_start(op: &Op, checked: CheckedOp, start: Option<u64>, index_start: impl FnOnce() -> u64) -> CheckedOp {
    let (start_before, start_after) = match op.kind {
        OpKind::Prune(..) => {
            let before = start.unwrap_or_else(index_start);
            (Some(StreamSeq(before)), Some(before.max(checked.seq.0)))
        }
        OpKind::Clear(_) => (None, Some(0)),
        OpKind::Base(seq) => (None, Some(seq.0)),
        OpKind::Entry(_) | OpKind::Snapshot(_) | OpKind::Check(_) => (None, start),
    };
    CheckedOp { start_before, start_after, ..checked }
}

/// The frame that holds these operations: a single one's own kind, or a batch.
fn frame_kind_of(refs: &[OpRef<'_>]) -> FrameKind {
    if refs.len() == 1 { refs[0].kind.frame_kind() } else { FrameKind::Batch }
}

/// The record an operation writes; `None` for a check, which writes nothing.
fn record_kind(kind: OpKind) -> Option<RecordKind> {
    Some(match kind {
        OpKind::Entry(_) => RecordKind::Entry,
        OpKind::Snapshot(_) => RecordKind::Snapshot,
        OpKind::Clear(_) => RecordKind::Tombstone,
        OpKind::Prune(..) => RecordKind::Prune,
        OpKind::Base(_) => RecordKind::Base,
        OpKind::Check(_) => return None,
    })
}

/// The writer thread gathers only when the last burst had at least this
/// many requests: many appenders are active, and most will be back within
/// microseconds of their reply.
const GATHER_GROUP_MIN: usize = 8;

/// The gathering waits at most as long as the last fdatasync took, and at
/// least this long: a fraction of an fdatasync, for a log that has not
/// synced yet or a disk whose syncs are that quick.
const GATHER_MAX_MIN: Duration = Duration::from_micros(40);

/// ... and at most this long, however slow the disk's syncs were: a burst
/// whose last appenders have gone away waits no longer than this once.
const GATHER_MAX_MAX: Duration = Duration::from_micros(500);

/// The requests the writer thread took since it last found the queue
/// empty after a round (a burst: what a crowd of appenders queues between
/// two of their replies), and how many the last whole burst had.
#[derive(Default)]
struct Burst {
    /// Requests taken in the burst so far.
    so_far: usize,
    /// Requests of the last whole burst.
    last: usize,
}

impl Burst {
    /// A round took `taken` requests, and left the queue `drained` or not.
    fn taken(&mut self, taken: usize, drained: bool) {
        self.so_far += taken;
        if drained && self.so_far > 0 {
            self.last = std::mem::take(&mut self.so_far);
        }
    }

    /// Requests the next group waits for: the rest of a burst as big as
    /// the last one. None once this burst has outgrown it.
    fn wanted(&self) -> usize {
        if self.last < GATHER_GROUP_MIN { 0 } else { self.last.saturating_sub(self.so_far) }
    }
}

/// Group commit's gathering, as PostgreSQL's `commit_delay` does it only
/// when `commit_siblings` are active: with a queue that is not empty and
/// the last burst big, waits for the rest of its appenders, so that one
/// write and one fdatasync serve them all instead of two. It waits as long
/// as a sync would take at most: past that, syncing what is queued and
/// leaving the rest to the next group costs less. It sleeps, leaving the
/// cores to the appenders, and the push that completes the burst wakes it
/// ([`Shared::push_or_wait`]). Waiting for as many as the last group took
/// instead split a round of 64 appenders whose requests came over more
/// than 40 µs into two groups, and once split, every round after it: the
/// second group's size became the next round's wait.
fn gather(shared: &Shared, burst: &Burst, wait_max: Duration) {
    let wanted = burst.wanted();
    // Shuttle's timed waits never time out, so a burst that never completes
    // would hang the model. Nothing waits on this wait but the gathering
    // itself: a wake-up it missed would cost `wait_max`, never an append.
    // The wake-up the model must cover is the idle writer's, by the first
    // request queued (`Shared::push_or_wait`), and it does.
    if cfg!(annals_shuttle) || wanted == 0 {
        return;
    }
    let started = Instant::now();
    let deadline = started + wait_max;
    let mut queue = shared.queue.lock();
    let mut queued = shared.queued.load(Ordering::Acquire);
    if queued < wanted {
        // Woken by the push that completes the burst, or by anything else
        // the writer is wanted for (a close, a full queue, a blocking
        // leader's leftovers): either way the gathering ends.
        shared.gather_wake_at.store(wanted, Ordering::Relaxed);
        let _ = shared.wake.wait_until(&mut queue, deadline);
        shared.gather_wake_at.store(0, Ordering::Relaxed);
        queued = shared.queued.load(Ordering::Acquire);
    }
    drop(queue);
    crate::telemetry::gathered(wanted, queued, started.elapsed());
}

/// After a round that had work, and while bursts are small (a few
/// appenders, each awaiting its append before the next), the writer thread
/// looks for the next request for this long before it sleeps: the next
/// request comes within microseconds, and a sleep costs a wake-up and a
/// context switch each way. It yields the core while it looks. With many
/// appenders it sleeps instead: their own work keeps the cores busy, a
/// spinning writer took a share of them (two cores, two runtime workers),
/// and the gathering hides the wake-up.
const POLL_FOR_WORK: Duration = Duration::from_micros(50);

fn poll_for_work(shared: &Shared) {
    // Shuttle's scheduler cannot preempt a polling loop: check once there.
    if cfg!(annals_shuttle) {
        return;
    }
    let until = Instant::now() + POLL_FOR_WORK;
    while shared.queued.load(Ordering::Acquire) == 0 && Instant::now() < until {
        crate::sync::thread::yield_now();
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the gathering waited for as many requests as the last
    /// take. A round of 64 appenders whose requests came over more than the
    /// gathering's wait split into two groups (29 + 35, say), and then the
    /// next round waited for 35 only and split again: one split made every
    /// round after it cost two fdatasyncs. The wait is now for the rest of
    /// a burst as big as the last whole one.
    #[test]
    fn a_split_round_does_not_make_the_next_round_wait_for_its_second_group_only() {
        let mut burst = Burst::default();
        burst.taken(64, true);
        assert_eq!(burst.wanted(), 64);
        // A round split: 29 taken, 35 queued during their fdatasync.
        burst.taken(29, false);
        assert_eq!(burst.wanted(), 35, "the second group waits for the rest of the burst, no more");
        burst.taken(35, true);
        assert_eq!(burst.wanted(), 64, "the next round waits for all 64 again");
    }

    /// Appenders that keep the queue from ever draining (their requests
    /// come while the last group syncs) are not waited for once they have
    /// outgrown the last whole burst; a few appenders are never waited for.
    #[test]
    fn the_gathering_waits_only_for_the_rest_of_a_big_burst() {
        let mut burst = Burst::default();
        assert_eq!(burst.wanted(), 0, "nothing is waited for before a burst was seen");
        burst.taken(GATHER_GROUP_MIN - 1, true);
        assert_eq!(burst.wanted(), 0, "a small burst is not waited for");
        burst.taken(40, true);
        burst.taken(30, false);
        burst.taken(30, false);
        assert_eq!(burst.wanted(), 0, "a burst that outgrew the last one is not waited for");
        burst.taken(0, true);
        assert_eq!(burst.wanted(), 60, "the burst ended when the queue drained");
    }

    /// A thread that had 64 requests out at once (64 tasks on one worker,
    /// each awaiting its append) gets each back for its next 64 appends,
    /// instead of freeing all but a few and allocating them afresh; one past
    /// the bound is freed, and the spares are kept emptied.
    #[test]
    fn a_thread_reuses_the_requests_of_as_many_appends_as_it_had_out_at_once() {
        let request = |i: usize| {
            let op = Op {
                kind: OpKind::Entry(crate::Expectation::Any),
                stream: StreamId::copy_from_slice(format!("s-{i}").as_bytes()),
                payload: Bytes::from(vec![i as u8; 300]),
                timestamp_ms: None,
            };
            WriteRequest::shared(OneOrMany::One(op), Durability::Sync)
        };
        // Run on a thread of its own: its spares start empty whatever other
        // tests ran on this one.
        std::thread::spawn(move || {
            let out: Vec<OwnedRequest> = (0..SPARE_REQUESTS_MAX + 1).map(request).collect();
            let addresses: Vec<*const WriteRequest> = out.iter().map(|r| Arc::as_ptr(&**r)).collect();
            drop(out);
            assert_eq!(SPARE_REQUESTS.with(|spares| spares.borrow().len()), SPARE_REQUESTS_MAX);
            let again: Vec<OwnedRequest> = (0..SPARE_REQUESTS_MAX).map(request).collect();
            let reused = again.iter().filter(|r| addresses.contains(&Arc::as_ptr(&**r))).count();
            assert_eq!(reused, SPARE_REQUESTS_MAX, "each of the next appends reuses a request");
            assert_eq!(SPARE_REQUESTS.with(|spares| spares.borrow().len()), 0);
            for (i, request) in again.iter().enumerate() {
                assert_eq!(&*request.ops.as_slice()[0].stream, format!("s-{i}").as_bytes(), "its own operation");
            }
        })
        .join()
        .unwrap();
    }

    /// The overlay answers for every stream it holds, with its latest state,
    /// and for none it does not, however many the filter cannot tell apart.
    #[test]
    fn the_overlay_holds_each_stream_once_with_its_latest_state() {
        let mut overlay = Overlay::default();
        let stream = |i: u32| StreamId::copy_from_slice(format!("s-{i}").as_bytes());
        for round in 0..3u32 {
            for i in 0..3000 {
                if i % 3 >= round {
                    overlay.insert(stream(i), (i, round));
                }
            }
            for i in 0..3000 {
                assert_eq!(overlay.get(&stream(i)), Some(&(i, round.min(i % 3))));
                assert_eq!(overlay.get(&stream(i + 3000)), None);
            }
        }
        assert_eq!(overlay.touched.len(), 3000, "an update does not add a stream twice");
        overlay.clear();
        assert!((0..3000).all(|i| overlay.get(&stream(i)).is_none()));
        overlay.insert(stream(7), (7, 9));
        assert_eq!(overlay.get(&stream(7)), Some(&(7, 9)));
    }

    /// A stream id is held inline up to its limit and shared beyond it, and
    /// reads back as the same bytes either way (every inline length: they
    /// are copied a word, a half word or a byte at a time).
    #[test]
    fn a_stream_id_reads_back_inline_or_shared() {
        let long = crate::frame::STREAM_ID_BYTES_MAX;
        for len in (0..=STREAM_ID_INLINE_BYTES + 1).chain([255, 256, long]) {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let id = StreamId::copy_from_slice(&bytes);
            assert_eq!(&*id, &bytes[..], "{len} bytes");
            assert_eq!(matches!(id, StreamId::Inline { .. }), len <= STREAM_ID_INLINE_BYTES, "{len} bytes");
        }
    }

    /// The filter may say "maybe" for a stream it never saw, never "no" for
    /// one it did: a "no" skips the overlay, whose answer would be wrong.
    #[test]
    fn the_stream_filter_never_denies_a_stream_it_holds() {
        let mut filter = StreamFilter::default();
        let streams: Vec<Vec<u8>> =
            (0..5000u32).map(|i| format!("stream-{i:0width$}", width = (i % 23) as usize).into_bytes()).collect();
        assert!(streams.iter().all(|s| !filter.may_hold(s)), "an empty filter holds nothing");
        for stream in &streams {
            filter.insert(stream);
            assert!(filter.may_hold(stream));
        }
        assert!(streams.iter().all(|s| filter.may_hold(s)));
        filter.clear();
        assert!(streams.iter().all(|s| !filter.may_hold(s)), "a cleared filter holds nothing");
    }
}
