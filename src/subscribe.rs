//! Subscriptions: every durable, live record after a cursor, in LSN order,
//! then each new one as it becomes durable.
//!
//! [`Log::subscribe`](crate::Log::subscribe) returns a [`Subscription`]. It
//! is a blocking [`Iterator`] (each `next` waits on a condition variable
//! until there is a record) and an async [`futures_core::Stream`] (the
//! writer wakes the task; any runtime), over `Result<Record>`.
//!
//! # What it delivers
//!
//! - **Durable only.** A `Flush` or `Periodic` append is readable before it
//!   is synced, and a power cut may take it (and its LSN may then stand for
//!   nothing). A subscription delivers a record only once an fdatasync that
//!   covers it has returned: the writer publishes a *durable end* after each
//!   one (and at open, where everything recovered is durable). A log
//!   written only with `Flush` delivers at its next sync: a `Sync` append,
//!   a `Periodic` deadline, a rollover or a compaction. The close syncs
//!   too, but it ends subscriptions: what only the close made durable is
//!   delivered by a subscription from the same cursor after the reopen.
//! - **Gap-free, exactly once, in order.** Every live record in
//!   `(after, durable end]` is delivered once, in LSN order, read through
//!   the index in batches of at most [`BATCH_RECORDS_MAX`] records (nothing
//!   else is buffered per subscriber; a slow subscriber holds no memory of
//!   the log's).
//! - **The live view**, as [`Log::read_all`](crate::Log::read_all): a
//!   record that a clear or prune removed before the subscription reached
//!   it is not delivered, nor are the log's named cursors (see
//!   [`crate::cursors`]). Compaction reclaims only records that are not
//!   live, so it never changes what a subscription delivers.
//! - **Trimmed, never skipped.** If log-wide retention (`max_age_ms`,
//!   `max_bytes`) dropped records after the cursor before they were
//!   delivered, the subscription yields [`Error::Trimmed`] with the LSN the
//!   log now starts at, and ends. A named cursor holds that back.
//! - **Ends with the log.** Once the log is closed it yields
//!   [`Error::Closed`], once poisoned [`Error::Poisoned`], and ends. A
//!   subscription does not keep the log open: dropping every [`Log`](crate::Log)
//!   handle closes it.
//!
//! # Example
//!
//! ```
//! use annals::{Expectation, Log, Lsn, Options};
//!
//! # fn main() -> annals::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(dir.path(), Options::default())?;
//! log.append("orders", Expectation::Any, &b"order 1"[..]).wait()?;
//! // Resume after the position a consumer committed (none yet: the start).
//! let after = log.cursor("projection")?.unwrap_or(Lsn::ZERO);
//! let mut records = log.subscribe(after)?;
//! log.append("orders", Expectation::Any, &b"order 2"[..]).wait()?;
//! for expected in [&b"order 1"[..], b"order 2"] {
//!     let record = records.next().expect("a subscription waits for records")?;
//!     assert_eq!(record.payload, expected);
//!     // Processed: commit the position, durably, in the log itself.
//!     log.commit_cursor("projection", record.lsn).wait()?;
//! }
//! log.close().wait()?;
//! assert!(matches!(records.next(), Some(Err(annals::Error::Closed))));
//! # Ok(())
//! # }
//! ```
//!
//! Async callers poll the same value as a `Stream` (with
//! `futures::StreamExt::next` or `tokio_stream::StreamExt::next`), or call
//! [`Subscription::next_async`].
//!
//! A [`LogReader`](crate::LogReader) in another process follows a live
//! writer with [`LogReader::refresh`](crate::LogReader::refresh) and
//! [`LogReader::read_durable`](crate::LogReader::read_durable); see there for
//! how it tells what is durable.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use crate::commit::{Shared, Status};
use crate::error::{Error, Result};
use crate::index::{Index, Record};
use crate::sync::{Condvar, Mutex};
use crate::types::Lsn;

/// Records a subscription reads from the index at once: its whole buffer.
pub const BATCH_RECORDS_MAX: usize = 256;

/// The durable end the writer publishes, and who waits for it to move.
pub(crate) struct DurableEnd {
    /// Every LSN below this one is durable and in the index.
    end: AtomicU64,
    /// Subscribers asleep or registered: the writer takes the lock to wake
    /// them only if there are any.
    sleepers: AtomicUsize,
    waiters: Mutex<Waiters>,
    wake: Condvar,
}

#[derive(Default)]
struct Waiters {
    /// Async subscribers' wakers, by subscription: one each, however often
    /// a subscription is polled.
    wakers: HashMap<u64, Waker>,
    /// Blocked threads.
    threads: usize,
}

static SUBSCRIPTION_IDS: AtomicU64 = AtomicU64::new(0);

impl DurableEnd {
    /// Everything below `end` is durable (at open: all that was recovered).
    pub(crate) fn new(end: Lsn) -> DurableEnd {
        DurableEnd {
            end: AtomicU64::new(end.0),
            sleepers: AtomicUsize::new(0),
            waiters: Mutex::new(Waiters::default()),
            wake: Condvar::new(),
        }
    }

    /// Every LSN below the returned one is durable and in the index.
    pub(crate) fn get(&self) -> Lsn {
        Lsn(self.end.load(Ordering::SeqCst))
    }

    /// Moves the durable end to `end` (never back) and wakes subscribers.
    /// Called by the writer after each fdatasync, once what it covers is in
    /// the index.
    pub(crate) fn advance(&self, end: Lsn) {
        let before = self.end.fetch_max(end.0, Ordering::SeqCst);
        // SeqCst on both sides: either a sleeper sees the new end before it
        // sleeps, or this sees the sleeper.
        if before < end.0 && self.sleepers.load(Ordering::SeqCst) > 0 {
            self.wake_all();
        }
    }

    /// Wakes every subscriber: the end moved, or the log closed or was poisoned.
    pub(crate) fn wake_all(&self) {
        let wakers = {
            let mut waiters = self.waiters.lock();
            let wakers = std::mem::take(&mut waiters.wakers);
            self.sleepers.store(waiters.threads, Ordering::SeqCst);
            wakers
        };
        self.wake.notify_all();
        wakers.into_values().for_each(Waker::wake);
    }

    /// Blocks until a record after `after` may be durable, or the log stopped.
    fn wait_past(&self, shared: &Shared, after: Lsn) {
        let mut waiters = self.waiters.lock();
        waiters.threads += 1;
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        while !ready(shared, after) {
            self.wake.wait(&mut waiters);
        }
        waiters.threads -= 1;
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Leaves `waker` to be woken once a record after `after` may be
    /// durable; `false` (nothing left) if that is so already.
    fn register(&self, shared: &Shared, id: u64, after: Lsn, waker: &Waker) -> bool {
        let mut waiters = self.waiters.lock();
        if !waiters.wakers.contains_key(&id) {
            self.sleepers.fetch_add(1, Ordering::SeqCst);
        }
        match waiters.wakers.get_mut(&id) {
            Some(left) if left.will_wake(waker) => {}
            Some(left) => *left = waker.clone(),
            None => {
                waiters.wakers.insert(id, waker.clone());
            }
        }
        if ready(shared, after) {
            waiters.wakers.remove(&id);
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    fn forget(&self, id: u64) {
        let mut waiters = self.waiters.lock();
        if waiters.wakers.remove(&id).is_some() {
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Whether a subscription after `after` has something to do: a durable
/// record past it, or the log closed or poisoned.
fn ready(shared: &Shared, after: Lsn) -> bool {
    shared.durable.get().0 > after.0.saturating_add(1)
        || shared.closed.load(Ordering::Acquire)
        || shared.poisoned.load(Ordering::Acquire)
}

/// Every durable, live record after a cursor, then each new one; see the
/// [module docs](self).
pub struct Subscription {
    shared: Arc<Shared>,
    id: u64,
    /// Everything up to here was read from the index (delivered, or in `batch`).
    scanned: Lsn,
    /// The last record handed out (or the cursor it started after).
    delivered: Lsn,
    batch: VecDeque<Record>,
    ended: bool,
}

impl Subscription {
    pub(crate) fn new(shared: Arc<Shared>, after: Lsn) -> Subscription {
        let id = SUBSCRIPTION_IDS.fetch_add(1, Ordering::Relaxed);
        Subscription { shared, id, scanned: after, delivered: after, batch: VecDeque::new(), ended: false }
    }

    /// The LSN of the last record delivered (at first, the cursor the
    /// subscription started after): what to pass to
    /// [`Log::commit_cursor`](crate::Log::commit_cursor) once it is processed.
    pub fn position(&self) -> Lsn {
        self.delivered
    }

    /// The next record, waiting on the calling thread until there is one;
    /// `None` after the subscription ended with an error.
    pub fn next_blocking(&mut self) -> Option<Result<Record>> {
        loop {
            if let Some(next) = self.take() {
                return next;
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => self.shared.durable.wait_past(&self.shared, self.scanned),
                Err(error) => return self.end(error),
            }
        }
    }

    /// The next record, awaited on any runtime; `None` after the
    /// subscription ended with an error.
    pub async fn next_async(&mut self) -> Option<Result<Record>> {
        poll_fn(|cx| self.poll_record(cx)).await
    }

    fn poll_record(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Record>>> {
        loop {
            if let Some(next) = self.take() {
                return Poll::Ready(next);
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => {
                    if self.shared.durable.register(&self.shared, self.id, self.scanned, cx.waker()) {
                        return Poll::Pending;
                    }
                }
                Err(error) => return Poll::Ready(self.end(error)),
            }
        }
    }

    /// A record from the batch, or the end; `None` if the batch is empty.
    fn take(&mut self) -> Option<Option<Result<Record>>> {
        if let Some(record) = self.batch.pop_front() {
            self.delivered = record.lsn;
            return Some(Some(Ok(record)));
        }
        self.ended.then_some(None)
    }

    fn end(&mut self, error: Error) -> Option<Result<Record>> {
        self.ended = true;
        self.shared.durable.forget(self.id);
        Some(Err(error))
    }

    /// Reads the next batch of durable live records into `batch`. `Ok(false)`
    /// if nothing durable lies past what was read.
    fn fill(&mut self) -> Result<bool> {
        match self.shared.status() {
            Status::Open => {}
            Status::Poisoned(cause) => return Err(Error::Poisoned { cause }),
            Status::Closed => return Err(Error::Closed),
        }
        let durable_end = self.shared.durable.get();
        if durable_end.0 <= self.scanned.0.saturating_add(1) {
            return Ok(false);
        }
        // How far behind the durable end this batch starts, in LSNs (one
        // per record).
        crate::telemetry::subscriber_lag(durable_end.0 - 1 - self.scanned.0);
        let index = self.shared.index.read();
        self.scanned = read_durable(&index, self.scanned, durable_end, &mut self.batch)?;
        Ok(true)
    }
}

/// Reads into `out` the live records after `after` and below `durable_end`,
/// at most [`BATCH_RECORDS_MAX`], and returns how far it read: the last
/// record's LSN if the batch is full, else `durable_end - 1`.
///
/// Below the log's oldest record, compaction reclaimed only records that
/// were not live, unless log-wide retention trimmed them: then
/// [`Error::Trimmed`]. `after` 0 is the start of the log, never trimmed.
pub(crate) fn read_durable(index: &Index, after: Lsn, durable_end: Lsn, out: &mut VecDeque<Record>) -> Result<Lsn> {
    if after.0 > 0 && after.0.saturating_add(1) < index.trimmed_before().0 {
        return Err(Error::Trimmed { after, oldest: index.oldest_lsn() });
    }
    // Below the oldest record and above the trim, compaction reclaimed
    // only records that were not live: nothing there is skipped.
    let from = after.max(Lsn(index.oldest_lsn().0.saturating_sub(1)));
    let mut records = Vec::new();
    index.read_all(from, BATCH_RECORDS_MAX, &mut records)?;
    let full = records.len() == BATCH_RECORDS_MAX;
    let read_to = match records.last() {
        Some(last) if full && last.lsn < durable_end => last.lsn,
        _ => Lsn(durable_end.0 - 1),
    };
    out.extend(records.into_iter().filter(|record| record.lsn < durable_end));
    Ok(read_to.max(after))
}

impl Iterator for Subscription {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        self.next_blocking()
    }
}

impl futures_core::Stream for Subscription {
    type Item = Result<Record>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Record>>> {
        self.get_mut().poll_record(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.durable.forget(self.id);
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("position", &self.delivered)
            .field("scanned", &self.scanned)
            .field("buffered", &self.batch.len())
            .field("ended", &self.ended)
            .finish()
    }
}
