//! meerkat's `HostStore` extension point on Annals.
//!
//! meerkat keeps a realm's durable state (sessions, identities, mobs and
//! realm-wide records) in a host's database through
//! [`meerkat_core::host_store::HostStore`]: versioned opaque heads, ordered
//! rows, atomic multi-scope batches and a fence with leases.
//! [`AnnalsHostStore`] keeps that realm in an Annals log: every batch is one
//! checksummed frame, acknowledged after an fdatasync that concurrent
//! commits share.
//!
//! ```
//! use std::sync::Arc;
//!
//! use annals_meerkat::AnnalsHostStore;
//! use meerkat_core::host_store::{
//!     AcquireMode, CommitBatch, CommitId, HostStore, Row, RowIndex, ScopeKind, ScopeName, ScopeRef,
//!     ScopeUpdate, ScopeVersion,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! // The one line that changes: the store behind the realm.
//! let store: Arc<dyn HostStore> = Arc::new(AnnalsHostStore::open(dir.path())?);
//! let grant = store.acquire_fence(AcquireMode::Exclusive).await?;
//! let scope = ScopeRef::new(ScopeKind::Session, ScopeName::try_new("run-42")?);
//! let create = ScopeUpdate {
//!     scope: scope.clone(),
//!     previous: None,
//!     next: ScopeVersion::FIRST,
//!     head: Some(b"state".to_vec()),
//!     append: vec![Row::try_new(b"hello".to_vec())?],
//!     truncate_after: None,
//!     drop_before: None,
//!     delete: false,
//! };
//! store.commit(&CommitBatch::try_new(CommitId::try_new("c-1")?, grant.token, vec![create])?).await?;
//! assert_eq!(store.load_head(&scope).await?.map(|head| head.version), Some(ScopeVersion::FIRST));
//! assert_eq!(store.read_rows(&scope, RowIndex::new(0), 10).await?.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! Every stream of the realm starts with `meerkat/`, so one log can hold
//! other data beside it.
//!
//! | stream | holds |
//! |---|---|
//! | `meerkat/fence/token` | one entry per acquire (the new token); its latest snapshot names the current token |
//! | `meerkat/fence/lease` | one entry per acquire or renew: token, start and length of the lease, as the store's clock saw them |
//! | `meerkat/head/<kind>/<name>` | one head record per batch that touched the scope (version, commit id, token, row map); a snapshot holds the head bytes too |
//! | `meerkat/rows/<kind>/<name>` | one entry per row, its bytes as they are |
//!
//! # How each obligation is met
//!
//! 1. **All or nothing.** A batch is one Annals batch: the head record of
//!    every scope it touches and its rows (and clears, for deletes). Annals
//!    writes it as one checksummed frame, so recovery keeps all of it or
//!    none.
//! 2. **Durable once acknowledged.** Commits use `Durability::Sync`: `Ok`
//!    comes after an fdatasync.
//! 3. **Idempotent retry.** The commit id is recorded in the same batch, in
//!    the head record of every scope it touches. A batch whose scopes all
//!    show it at its `next` version has landed, and a retry answers `Ok`
//!    without writing; a retry after the scopes moved on answers
//!    [`HostStoreError::Conflict`] and writes nothing.
//! 4. **One version chain.** Refused at commit: each head record is
//!    appended with an expectation on the head stream's next sequence, read
//!    together with the version it holds, so of two batches for one version
//!    the second answers [`HostStoreError::Conflict`].
//! 5. **Fencing.** Refused at commit. An acquire appends the next token to
//!    `meerkat/fence/token`, expecting the stream as it read it. A commit or
//!    renew reads the fence, checks its token, and writes in one atomic
//!    batch with a check-only operation expecting the token stream as it
//!    read it: if an acquire landed in between, the batch writes nothing and
//!    is planned again, and the fresh read answers
//!    [`HostStoreError::FencedOut`]. So a commit lands only while its token
//!    is current, whichever store over the log acquired. The writes run on a spawned tokio task that finishes even if
//!    the caller stops polling, so an acquire never waits on a commit its
//!    caller abandoned.
//! 6. **Logical removal.** `truncate_after` and `drop_before` rewrite the
//!    scope's row map in its head record: rows keep their indices, and the
//!    stream sequence each row sits at is looked up through the map.
//!    Dropped rows are covered by a snapshot of the rows stream (so the
//!    engine may reclaim them); a delete clears both streams.
//! 7. **Order.** Rows are entries of the scope's rows stream, in commit
//!    order.
//! 8. **Independence.** A commit writes only its scopes' streams and only
//!    checks the fence token's, so commits never wait for one another.
//!    Annals' group commit shares one write and one fdatasync among
//!    concurrent commits.
//! 9. **Listing.** A scope is listed while its head stream exists: from its
//!    creating batch until the batch that clears it.
//!
//! # Fence leases
//!
//! A lease starts at the acquire or renew, as the store's [`LeaseClock`]
//! saw it ([`SystemClock`], wall-clock time, unless one is given with
//! [`AnnalsHostStore::with_lease_clock`]), and lasts the store's
//! [`FenceTiming::lease`] ([`AnnalsHostStore::with_fence_timing`]). Both
//! are recorded in the log, so a restarted process sees what remains of
//! the last holder's lease.
//!
//! # Limits
//!
//! A batch is one Annals record, so it must fit the log's
//! `record_bytes_max`. meerkat bounds a batch at 8 MiB of heads and rows
//! ([`MAX_BATCH_BYTES`]); Annals adds a 23-byte operation header and the
//! stream id (at most 534 bytes here) per row and per head record.
//! [`AnnalsHostStore::open`] opens the log with [`RECORD_BYTES_MAX`]
//! (16 MiB, the Annals default), which leaves 8 MiB for that overhead: any
//! batch of rows averaging at least 560 bytes fits, whatever its scope
//! names. A batch over the limit, or over Annals' 65,536 operations per
//! batch (one per row, two or three per scope), answers
//! [`HostStoreError::Invalid`] and writes nothing.
//!
//! # Runtime
//!
//! Commits, acquires and renews run on a spawned task: the store needs a
//! tokio runtime, as meerkat itself does.
//!
//! # Lock
//!
//! The log's directory is locked while any handle on the log lives: one
//! process serves a realm. Share one store, or build several over one log
//! with [`AnnalsHostStore::from_log`]; they keep no realm state in memory,
//! so each behaves as a separate client of the same realm.
//!
//! # Other backends
//!
//! The store reads and writes only through the stores' backend seam
//! ([`annals::stores::Backend`]): [`AnnalsHostStore::over`] keeps a realm
//! in any backend of it (a test may wrap the log to land another writer's
//! commit at a chosen point).

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use annals::stores::codec;
use annals::stores::{Backend, Expect, StoreError, StoreOp, StreamContents};
use async_trait::async_trait;
use meerkat_core::host_store::{
    AcquireMode, CommitBatch, FenceGrant, FenceTiming, FenceToken, HeadPage, HostStore, HostStoreError,
    MAX_BATCH_BYTES, Row, RowIndex, ScopeHead, ScopeKind, ScopeName, ScopeRef, ScopeUpdate, ScopeVersion,
    VersionedHead,
};

/// The `record_bytes_max` that [`AnnalsHostStore::open`] opens the log
/// with: twice meerkat's [`MAX_BATCH_BYTES`], so a full batch fits in one
/// record with room for Annals' per-operation overhead.
pub const RECORD_BYTES_MAX: usize = 2 * MAX_BATCH_BYTES;

const _: () = assert!(RECORD_BYTES_MAX >= MAX_BATCH_BYTES + (1 << 20));

/// The schema of every value this crate encodes.
const SCHEMA: u16 = 1;

/// Head records written after the scope's latest snapshot before the next
/// batch snapshots again (copying the head), so that loading a scope reads
/// at most this many records.
const HEAD_ENTRIES_PER_SNAPSHOT_MAX: usize = 64;

/// How often a commit, acquire or renew is planned again after another
/// writer moved one of its streams between the plan and the write.
const ATTEMPTS_MAX: usize = 8;

const FENCE_TOKEN_STREAM: &str = "meerkat/fence/token";
const FENCE_LEASE_STREAM: &str = "meerkat/fence/lease";
const HEAD_PREFIX: &str = "meerkat/head/";
const ROWS_PREFIX: &str = "meerkat/rows/";

/// The store's clock for fence leases.
pub trait LeaseClock: Send + Sync + 'static {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// Wall-clock time: the default [`LeaseClock`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl LeaseClock for SystemClock {
    fn now_ms(&self) -> u64 {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
    }
}

/// A meerkat [`HostStore`] over an Annals log (or another backend of the
/// stores' seam, [`AnnalsHostStore::over`]): one realm per log.
///
/// Cheap to share: wrap it in an `Arc` and hand it to meerkat as
/// `Arc<dyn HostStore>`. All methods may be called concurrently.
pub struct AnnalsHostStore<B = annals::Log> {
    realm: Arc<Realm<B>>,
}

/// What a store and its spawned writes share.
struct Realm<B> {
    backend: Arc<B>,
    timing: FenceTiming,
    clock: Arc<dyn LeaseClock>,
}

impl AnnalsHostStore<annals::Log> {
    /// Opens (creating it if needed) the Annals log in the directory `dir`
    /// with `record_bytes_max` set to [`RECORD_BYTES_MAX`], recovers it,
    /// and returns a store over it with the default fence timing.
    ///
    /// # Errors
    /// [`annals::Error::Locked`] if another handle or process has the
    /// directory open; [`annals::Error::Corruption`] naming the file and
    /// offset if acknowledged records are damaged; [`annals::Error::Io`].
    pub fn open(dir: impl AsRef<Path>) -> annals::Result<AnnalsHostStore> {
        let options = annals::Options { record_bytes_max: RECORD_BYTES_MAX, ..annals::Options::default() };
        let log = annals::Log::open(dir, options)?;
        Ok(AnnalsHostStore::from_log(Arc::new(log)))
    }

    /// A store over a log the caller opened (with its own options, or
    /// shared with other stores). Its `record_bytes_max` should be at least
    /// [`RECORD_BYTES_MAX`] for every batch meerkat may send to fit.
    pub fn from_log(log: Arc<annals::Log>) -> AnnalsHostStore {
        AnnalsHostStore::over(log)
    }

    /// The log the realm is kept in.
    pub fn log(&self) -> &Arc<annals::Log> {
        &self.realm.backend
    }

    /// Syncs and closes the log and releases its directory lock now, even
    /// while other handles on it live; every later call on any store over
    /// the log answers [`HostStoreError::Unavailable`] (a commit:
    /// [`HostStoreError::Indeterminate`]).
    ///
    /// # Errors
    /// [`annals::Error::Poisoned`] if an earlier failure poisoned the log
    /// (the lock is released all the same); [`annals::Error::Io`] if the
    /// final sync fails.
    pub async fn close(&self) -> annals::Result<()> {
        self.realm.backend.close().await
    }
}

impl<B: Backend> AnnalsHostStore<B> {
    /// A store over any backend of the stores' seam, with the default fence
    /// timing ([`AnnalsHostStore::from_log`] is this over a log).
    pub fn over(backend: Arc<B>) -> AnnalsHostStore<B> {
        let realm = Realm { backend, timing: FenceTiming::default(), clock: Arc::new(SystemClock) };
        AnnalsHostStore { realm: Arc::new(realm) }
    }

    /// This store with another fence timing: the lease it records and the
    /// renew interval it reports to meerkat.
    #[must_use]
    pub fn with_fence_timing(self, timing: FenceTiming) -> AnnalsHostStore<B> {
        self.with_realm(|realm| Realm { timing, ..realm })
    }

    /// This store with another clock for fence leases (a test may advance
    /// one to let leases lapse).
    #[must_use]
    pub fn with_lease_clock(self, clock: Arc<dyn LeaseClock>) -> AnnalsHostStore<B> {
        self.with_realm(|realm| Realm { clock, ..realm })
    }

    fn with_realm(self, change: impl FnOnce(Realm<B>) -> Realm<B>) -> AnnalsHostStore<B> {
        let Realm { backend, timing, clock } = &*self.realm;
        let realm = Realm { backend: backend.clone(), timing: *timing, clock: clock.clone() };
        AnnalsHostStore { realm: Arc::new(change(realm)) }
    }

    /// Runs `write` on a spawned task, so that it finishes even if the
    /// caller stops polling.
    async fn spawned<T, F>(&self, write: impl FnOnce(Arc<Realm<B>>) -> F) -> Result<T, HostStoreError>
    where
        F: Future<Output = Result<T, HostStoreError>> + Send + 'static,
        T: Send + 'static,
    {
        tokio::spawn(write(self.realm.clone()))
            .await
            .map_err(|error| HostStoreError::Indeterminate(format!("the write's task ended abnormally: {error}")))?
    }

    /// Decides what `batch` does now: the ops that write it, or the answer
    /// it gets without writing.
    async fn plan(&self, batch: &CommitBatch) -> Result<Plan, HostStoreError> {
        let realm = &self.realm;
        let mut states = Vec::with_capacity(batch.updates().len());
        for update in batch.updates() {
            states.push(realm.scope(&update.scope).await?);
        }
        if landed(batch, &states) {
            return Ok(Plan::Landed);
        }
        realm.fence().await?.check(batch.fence())?;
        let mut ops = Vec::new();
        for (update, state) in batch.updates().iter().zip(&states) {
            let current = state.as_ref().map(|state| ScopeVersion::new(state.record.version));
            if current != update.previous {
                return Err(HostStoreError::Conflict { scope: update.scope.clone(), current });
            }
            scope_ops(batch, update, state.as_ref(), &mut ops)?;
        }
        Ok(Plan::Write(ops))
    }
}

impl<B: Backend> Realm<B> {
    fn lease_ms(&self) -> u64 {
        u64::try_from(self.timing.lease().as_millis()).unwrap_or(u64::MAX)
    }

    async fn read(&self, stream: &str) -> Result<StreamContents, HostStoreError> {
        Backend::read(&*self.backend, stream).await.map_err(unavailable)
    }

    /// The fence as the log holds it now.
    async fn fence(&self) -> Result<Fence, HostStoreError> {
        let tokens = self.read(FENCE_TOKEN_STREAM).await?;
        let current = match tokens.entries.last().or(tokens.snapshot.as_ref()) {
            None => None,
            Some(entry) => Some(decode::<FenceRecord>(FENCE_TOKEN_STREAM, entry.seq, &entry.payload)?.token),
        };
        let leases = self.read(FENCE_LEASE_STREAM).await?;
        let lease = match leases.entries.last().or(leases.snapshot.as_ref()) {
            None => None,
            Some(entry) => Some(decode::<LeaseRecord>(FENCE_LEASE_STREAM, entry.seq, &entry.payload)?),
        };
        Ok(Fence { current, token_next_seq: tokens.next_seq, lease, lease_next_seq: leases.next_seq })
    }

    /// The ops that record a lease for `token` from now.
    fn lease_ops(&self, fence: &Fence, token: u64, now_ms: u64) -> Result<[StoreOp; 2], HostStoreError> {
        let lease = LeaseRecord { token, start_ms: now_ms, lease_ms: self.lease_ms() };
        let payload = encode(FENCE_LEASE_STREAM, &lease)?;
        let seq = fence.lease_next_seq;
        Ok([
            StoreOp::append(FENCE_LEASE_STREAM, Expect::Next(seq), payload.clone()),
            StoreOp::snapshot(FENCE_LEASE_STREAM, seq, payload),
        ])
    }

    /// The scope's state: its latest head record and the head bytes, with
    /// where its head stream stands.
    async fn scope(&self, scope: &ScopeRef) -> Result<Option<ScopeState>, HostStoreError> {
        let stream = head_stream(scope);
        let contents = self.read(&stream).await?;
        let Some(snapshot) = &contents.snapshot else {
            return match contents.entries.first() {
                // A head stream always starts with a snapshot; entries
                // without one are not this crate's.
                Some(entry) => Err(corrupt(&stream, entry.seq, "head records without a snapshot")),
                None => Ok(None),
            };
        };
        let base: HeadRecord = decode(&stream, snapshot.seq, &snapshot.payload)?;
        let head = base.head.clone().ok_or_else(|| corrupt(&stream, snapshot.seq, "a snapshot without a head"))?;
        let record = match contents.entries.last() {
            Some(entry) => decode(&stream, entry.seq, &entry.payload)?,
            None => base,
        };
        Ok(Some(ScopeState {
            record,
            head: head.into_vec(),
            next_seq: contents.next_seq,
            unchanged: contents.unchanged(),
            entries_since_snapshot: contents.entries.len(),
        }))
    }

    /// Acquires the fence: the token and lease appends expect the streams
    /// as read, so a racing acquire or renew makes this one read again.
    async fn acquire(self: Arc<Realm<B>>, mode: AcquireMode) -> Result<FenceGrant, HostStoreError> {
        for _ in 0..ATTEMPTS_MAX {
            let fence = self.fence().await?;
            let now_ms = self.clock.now_ms();
            let live = fence.live_lease(now_ms);
            if let (AcquireMode::Exclusive, Some((holder, remaining))) = (mode, live) {
                return Err(HostStoreError::Held { holder: FenceToken::new(holder), remaining });
            }
            let token = fence
                .current
                .unwrap_or(0)
                .checked_add(1)
                .ok_or_else(|| HostStoreError::Invalid("every fence token has been issued".to_owned()))?;
            let record = encode(FENCE_TOKEN_STREAM, &FenceRecord { token })?;
            let seq = fence.token_next_seq;
            let mut ops = vec![
                StoreOp::append(FENCE_TOKEN_STREAM, Expect::Next(seq), record.clone()),
                StoreOp::snapshot(FENCE_TOKEN_STREAM, seq, record),
            ];
            ops.extend(self.lease_ops(&fence, token, now_ms)?);
            match Backend::commit(&*self.backend, ops).await {
                Ok(_) => {
                    let superseded_lease = live.map_or(Duration::ZERO, |(_, remaining)| remaining);
                    return Ok(FenceGrant { token: FenceToken::new(token), superseded_lease });
                }
                // A store over another handle on this log moved the fence.
                Err(StoreError::Conflict { .. }) => {}
                Err(error) => return Err(unavailable(error)),
            }
        }
        Err(HostStoreError::Unavailable(format!("the fence kept moving under {ATTEMPTS_MAX} acquires")))
    }

    /// Renews a lease, in one commit with a check that the token is still
    /// the current one.
    async fn renew(self: Arc<Realm<B>>, token: FenceToken) -> Result<(), HostStoreError> {
        for _ in 0..ATTEMPTS_MAX {
            let fence = self.fence().await?;
            fence.check(token)?;
            let mut ops = Vec::from(self.lease_ops(&fence, token.get(), self.clock.now_ms())?);
            ops.push(fence.unchanged());
            match Backend::commit(&*self.backend, ops).await {
                Ok(_) => return Ok(()),
                // Another renew recorded a lease first, or an acquire moved
                // the token: read the fence again.
                Err(StoreError::Conflict { .. }) => {}
                Err(error) => return Err(unavailable(error)),
            }
        }
        Err(HostStoreError::Unavailable(format!("the lease kept moving under {ATTEMPTS_MAX} renews")))
    }

    /// Writes a planned batch if `token` is still current, in one commit
    /// with a check that it still is.
    async fn write(self: Arc<Realm<B>>, token: FenceToken, mut ops: Vec<StoreOp>) -> Result<Written, HostStoreError> {
        let fence = self.fence().await?;
        fence.check(token)?;
        ops.push(fence.unchanged());
        match Backend::commit(&*self.backend, ops).await {
            Ok(_) => Ok(Written::Landed),
            // A head stream moved between the plan and the write, or an
            // acquire moved the token: plan again.
            Err(StoreError::Conflict { .. }) => Ok(Written::Moved),
            Err(StoreError::Backend(error)) => Err(commit_error(error)),
            Err(error) => Err(HostStoreError::Indeterminate(error.to_string())),
        }
    }
}

/// What a write did.
enum Written {
    Landed,
    /// Nothing: a stream moved since the plan.
    Moved,
}

impl fmt::Debug for AnnalsHostStore<annals::Log> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnnalsHostStore")
            .field("dir", &self.realm.backend.dir())
            .field("timing", &self.realm.timing)
            .finish()
    }
}

#[async_trait]
impl<B: Backend> HostStore for AnnalsHostStore<B> {
    async fn acquire_fence(&self, mode: AcquireMode) -> Result<FenceGrant, HostStoreError> {
        self.spawned(|realm| realm.acquire(mode)).await
    }

    async fn renew_fence(&self, token: FenceToken) -> Result<(), HostStoreError> {
        self.spawned(|realm| realm.renew(token)).await
    }

    fn fence_timing(&self) -> FenceTiming {
        self.realm.timing
    }

    async fn load_head(&self, scope: &ScopeRef) -> Result<Option<VersionedHead>, HostStoreError> {
        self.realm.scope(scope).await?.map(ScopeState::into_versioned_head).transpose()
    }

    async fn list_heads(
        &self,
        kind: ScopeKind,
        after: Option<&ScopeName>,
        limit: usize,
    ) -> Result<HeadPage, HostStoreError> {
        if limit == 0 {
            return Err(HostStoreError::Invalid("a listing page holds at least one head".to_owned()));
        }
        let prefix = format!("{HEAD_PREFIX}{}/", kind.as_str());
        let streams = Backend::streams(&*self.realm.backend, &prefix).await.map_err(unavailable)?;
        let mut page = HeadPage::default();
        let names = streams.iter().filter_map(|(stream, _)| stream.strip_prefix(&prefix));
        for name in names.filter(|name| after.is_none_or(|after| *name > after.as_str())) {
            if page.heads.len() == limit {
                page.next = page.heads.last().map(|head| head.name.clone());
                break;
            }
            let name = ScopeName::try_new(name).map_err(|error| {
                HostStoreError::Unavailable(format!("a stream of {prefix} is not a scope: {error}"))
            })?;
            let scope = ScopeRef::new(kind, name);
            // A scope deleted since the streams were listed is skipped.
            if let Some(state) = self.realm.scope(&scope).await? {
                page.heads.push(ScopeHead { name: scope.name, head: state.into_versioned_head()? });
            }
        }
        Ok(page)
    }

    async fn read_rows(&self, scope: &ScopeRef, from: RowIndex, limit: usize) -> Result<Vec<Row>, HostStoreError> {
        let Some(state) = self.realm.scope(scope).await? else {
            return Ok(Vec::new());
        };
        let map = &state.record.rows;
        let from = from.get();
        if from < map.start {
            return Err(HostStoreError::Invalid(format!(
                "{scope}: rows before {} were dropped; read from {from}",
                map.start
            )));
        }
        let until = from.saturating_add(u64::try_from(limit).unwrap_or(u64::MAX)).min(map.end);
        let Some(first_seq) = map.seq_of(from).filter(|_| from < until) else {
            return Ok(Vec::new());
        };
        // Through the seam, only the entries from the first row needed to
        // the last (a corrupt row map asking for more gets at most the
        // stream's end, and fails below).
        let stream = rows_stream(scope);
        let last_seq = map.seq_of(until - 1).ok_or_else(|| corrupt(&stream, first_seq, "a row map with a hole"))?;
        let span = usize::try_from(last_seq.saturating_sub(first_seq).saturating_add(1)).unwrap_or(usize::MAX);
        let records = Backend::read_range(&*self.realm.backend, &stream, first_seq, span).await.map_err(unavailable)?;
        let mut rows = Vec::with_capacity(usize::try_from(until - from).unwrap_or(0));
        for index in from..until {
            let seq = map.seq_of(index).ok_or_else(|| corrupt(&stream, first_seq, "a row map with a hole"))?;
            let record = usize::try_from(seq - first_seq)
                .ok()
                .and_then(|at| records.get(at))
                .filter(|record| record.seq == seq)
                .ok_or_else(|| corrupt(&stream, seq, "a row the row map names is missing"))?;
            rows.push(
                Row::try_new(record.payload.to_vec()).map_err(|error| corrupt(&stream, seq, &error.to_string()))?,
            );
        }
        Ok(rows)
    }

    async fn commit(&self, batch: &CommitBatch) -> Result<(), HostStoreError> {
        for _ in 0..ATTEMPTS_MAX {
            let ops = match self.plan(batch).await? {
                Plan::Landed => return Ok(()),
                Plan::Write(ops) => ops,
            };
            let token = batch.fence();
            match self.spawned(move |realm| realm.write(token, ops)).await? {
                Written::Landed => return Ok(()),
                // The next plan answers Conflict, or sees the batch landed
                // from another handle, or writes again.
                Written::Moved => {}
            }
        }
        Err(HostStoreError::Unavailable(format!(
            "the scopes of commit {} kept moving under {ATTEMPTS_MAX} attempts; nothing was written",
            batch.commit_id()
        )))
    }
}

/// What a commit does once planned.
enum Plan {
    /// Every scope already shows the batch: a retry that acts no more.
    Landed,
    /// The ops that write it.
    Write(Vec<StoreOp>),
}

/// Whether every scope of `batch` shows it: at its `next` version with its
/// commit id, or gone for a delete. A batch that only deletes has landed
/// once its scopes are gone.
fn landed(batch: &CommitBatch, states: &[Option<ScopeState>]) -> bool {
    batch.updates().iter().zip(states).all(|(update, state)| match (update.delete, state) {
        (true, state) => state.is_none(),
        (false, Some(state)) => {
            state.record.version == update.next.get() && state.record.commit_id == batch.commit_id().as_str()
        }
        (false, None) => false,
    })
}

/// Appends to `ops` what `update` writes to its scope's streams.
fn scope_ops(
    batch: &CommitBatch,
    update: &ScopeUpdate,
    state: Option<&ScopeState>,
    ops: &mut Vec<StoreOp>,
) -> Result<(), HostStoreError> {
    let heads = head_stream(&update.scope);
    let rows = rows_stream(&update.scope);
    // The head's guard covers the rows: every commit that writes them
    // writes the head too.
    let head_expect = state.map_or(Expect::Empty, |state| state.unchanged);
    if update.delete {
        ops.push(StoreOp::clear(&heads, head_expect));
        if let Some(state) = state.filter(|state| state.record.rows.next_seq > 0) {
            ops.push(StoreOp::clear(&rows, Expect::Next(state.record.rows.next_seq)));
        }
        return Ok(());
    }
    let mut map = state.map(|state| state.record.rows.clone()).unwrap_or_default();
    if let Some(index) = update.truncate_after {
        map.truncate_after(index.get());
    }
    if let Some(index) = update.drop_before {
        map.drop_before(index.get());
    }
    for row in &update.append {
        ops.push(StoreOp::append(&rows, Expect::Next(map.next_seq), row.as_bytes().to_vec()));
        map.push_row();
    }
    let live = map.first_live_seq();
    if live > map.floor {
        ops.push(StoreOp::snapshot(&rows, live - 1, Vec::new()));
        map.floor = live;
    }
    let record = HeadRecord {
        version: update.next.get(),
        commit_id: batch.commit_id().as_str().to_owned(),
        fence: batch.fence().get(),
        head: None,
        rows: map,
    };
    let seq = state.map_or(0, |state| state.next_seq);
    ops.push(StoreOp::append(&heads, head_expect, encode(&heads, &record)?));
    let head = match (&update.head, state) {
        (Some(head), _) => Some(head.clone()),
        (None, Some(state)) if state.entries_since_snapshot >= HEAD_ENTRIES_PER_SNAPSHOT_MAX => {
            Some(state.head.clone())
        }
        (None, Some(_)) => None,
        (None, None) => {
            return Err(HostStoreError::Invalid(format!("{}: a creating update sets the head", update.scope)));
        }
    };
    if let Some(head) = head {
        let snapshot = HeadRecord { head: Some(serde_bytes::ByteBuf::from(head)), ..record };
        ops.push(StoreOp::snapshot(&heads, seq, encode(&heads, &snapshot)?));
    }
    Ok(())
}

/// The fence as read from the log.
struct Fence {
    /// The highest token acquired.
    current: Option<u64>,
    /// The next sequence of the token stream: the latest acquire is one before.
    token_next_seq: u64,
    /// The latest lease recorded.
    lease: Option<LeaseRecord>,
    lease_next_seq: u64,
}

impl Fence {
    /// A check-only operation that holds while no acquire has moved the
    /// token stream since this fence was read.
    fn unchanged(&self) -> StoreOp {
        StoreOp::check(FENCE_TOKEN_STREAM, Expect::Next(self.token_next_seq))
    }

    /// Whether `token` is the current token: a superseded one is fenced
    /// out, one never issued is invalid.
    fn check(&self, token: FenceToken) -> Result<(), HostStoreError> {
        match self.current {
            Some(current) if current > token.get() => {
                Err(HostStoreError::FencedOut { current: FenceToken::new(current) })
            }
            Some(current) if current == token.get() => Ok(()),
            _ => Err(HostStoreError::Invalid(format!("fence token {token} was never issued"))),
        }
    }

    /// The current token's holder and what remains of its lease, if it is live at `now_ms`.
    fn live_lease(&self, now_ms: u64) -> Option<(u64, Duration)> {
        let lease = self.lease.as_ref().filter(|lease| Some(lease.token) == self.current)?;
        let end_ms = lease.start_ms.saturating_add(lease.lease_ms);
        // A clock that went back never stretches a lease past its length.
        let remaining_ms = end_ms.saturating_sub(now_ms).min(lease.lease_ms);
        (remaining_ms > 0).then(|| (lease.token, Duration::from_millis(remaining_ms)))
    }
}

/// One entry (and the latest snapshot) of the token stream.
///
/// ```text
/// // Format (MessagePack map, by field name): { token: u64 }
/// ```
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct FenceRecord {
    token: u64,
}

/// One entry (and the latest snapshot) of the lease stream.
///
/// ```text
/// // Format (MessagePack map, by field name): { token: u64 | start_ms: u64 | lease_ms: u64 }
/// ```
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct LeaseRecord {
    token: u64,
    /// When the lease started, on the store's clock (ms since the Unix epoch).
    start_ms: u64,
    lease_ms: u64,
}

/// What one batch left a scope as: one entry of its head stream. A
/// snapshot of the stream is the same record with the head bytes; an entry
/// leaves them as in the latest snapshot.
///
/// ```text
/// // Format (MessagePack map, by field name):
/// // { version: u64 | commit_id: str | fence: u64 | head: bin or nil | rows: RowMap }
/// ```
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct HeadRecord {
    version: u64,
    commit_id: String,
    /// The token the batch carried.
    fence: u64,
    #[serde(default)]
    head: Option<serde_bytes::ByteBuf>,
    rows: RowMap,
}

/// Where a scope's visible rows sit in its rows stream: row indices
/// `start..end`, in extents of consecutive indices at consecutive stream
/// sequences. Appends extend the last extent; only a truncation in the
/// middle starts a new one.
///
/// ```text
/// // Format (MessagePack map, by field name):
/// // { start: u64 | end: u64 | next_seq: u64 | floor: u64 | extents: [{ index: u64 | seq: u64 | len: u64 }] }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct RowMap {
    /// The first visible index.
    start: u64,
    /// The index the next appended row takes.
    end: u64,
    /// The rows stream's next sequence.
    next_seq: u64,
    /// Sequences of the rows stream below this one are covered by its
    /// snapshot (dropped).
    floor: u64,
    /// The visible rows, in index order, covering `start..end` exactly.
    extents: Vec<Extent>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Extent {
    index: u64,
    seq: u64,
    len: u64,
}

impl RowMap {
    /// Removes every row at `index` or after; the next row takes `index`.
    fn truncate_after(&mut self, index: u64) {
        if index >= self.end {
            return;
        }
        self.end = index;
        self.start = self.start.min(index);
        self.extents.retain_mut(|extent| {
            extent.len = extent.len.min(index.saturating_sub(extent.index));
            extent.len > 0
        });
    }

    /// Removes every row below `index`, keeping the others' indices; past
    /// the end, removes every row and keeps the end.
    fn drop_before(&mut self, index: u64) {
        let start = index.min(self.end);
        if start <= self.start {
            return;
        }
        self.start = start;
        self.extents.retain_mut(|extent| {
            let cut = start.saturating_sub(extent.index).min(extent.len);
            extent.index += cut;
            extent.seq += cut;
            extent.len -= cut;
            extent.len > 0
        });
    }

    /// Records a row appended at `next_seq` with index `end`.
    fn push_row(&mut self) {
        match self.extents.last_mut() {
            Some(last) if last.index + last.len == self.end && last.seq + last.len == self.next_seq => last.len += 1,
            _ => self.extents.push(Extent { index: self.end, seq: self.next_seq, len: 1 }),
        }
        self.end += 1;
        self.next_seq += 1;
    }

    /// The lowest sequence a visible row sits at (`next_seq` with none).
    fn first_live_seq(&self) -> u64 {
        self.extents.first().map_or(self.next_seq, |extent| extent.seq)
    }

    /// The sequence the row at `index` sits at, if it is visible.
    fn seq_of(&self, index: u64) -> Option<u64> {
        let at = self.extents.partition_point(|extent| extent.index + extent.len <= index);
        let extent = self.extents.get(at).filter(|extent| extent.index <= index)?;
        Some(extent.seq + (index - extent.index))
    }
}

/// A scope as loaded.
struct ScopeState {
    record: HeadRecord,
    head: Vec<u8>,
    /// The head stream's next sequence.
    next_seq: u64,
    /// That the head stream is still as read: at `next_seq` in the same
    /// life, so that another handle's delete and re-creation of the scope
    /// to as many head records does not pass for it.
    unchanged: Expect,
    entries_since_snapshot: usize,
}

impl ScopeState {
    fn into_versioned_head(self) -> Result<VersionedHead, HostStoreError> {
        let commit_id = meerkat_core::host_store::CommitId::try_new(self.record.commit_id)
            .map_err(|error| HostStoreError::Unavailable(format!("a stored commit id is not one: {error}")))?;
        Ok(VersionedHead { version: ScopeVersion::new(self.record.version), commit_id, head: self.head })
    }
}

fn head_stream(scope: &ScopeRef) -> String {
    format!("{HEAD_PREFIX}{}/{}", scope.kind.as_str(), scope.name.as_str())
}

fn rows_stream(scope: &ScopeRef) -> String {
    format!("{ROWS_PREFIX}{}/{}", scope.kind.as_str(), scope.name.as_str())
}

fn encode<T: serde::Serialize>(stream: &str, value: &T) -> Result<bytes::Bytes, HostStoreError> {
    codec::encode(stream, SCHEMA, value).map_err(|error| HostStoreError::Invalid(error.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(stream: &str, seq: u64, bytes: &[u8]) -> Result<T, HostStoreError> {
    codec::decode(stream, seq, SCHEMA, bytes).map(|(value, _schema)| value).map_err(unavailable)
}

/// A record of the realm that is not what this crate writes.
fn corrupt(stream: &str, seq: u64, what: &str) -> HostStoreError {
    HostStoreError::Unavailable(format!("damaged realm: {what} at sequence {seq} of stream {stream}"))
}

/// A failure to read: nothing was written.
fn unavailable(error: StoreError) -> HostStoreError {
    HostStoreError::Unavailable(error.to_string())
}

/// A failed commit: a refusal before anything was queued writes nothing;
/// anything else may have reached the disk.
fn commit_error(error: annals::Error) -> HostStoreError {
    match error {
        annals::Error::TooLarge { .. } | annals::Error::InvalidArgument(_) => HostStoreError::Invalid(format!(
            "the batch does not fit one Annals record (raise the log's record_bytes_max): {error}"
        )),
        annals::Error::DiskFull { .. } | annals::Error::Locked { .. } => HostStoreError::Unavailable(error.to_string()),
        other => HostStoreError::Indeterminate(other.to_string()),
    }
}
