//! The mob stores' contracts (events, runs, specs) and the backend seam's
//! check-only operation and range reads: the conformance suite's mob
//! chapter, written once, generic over the backend seam, and run against
//! every backend (today the embedded log, on the real file system and on
//! the simulated one that can cut the power; a PostgreSQL backend will
//! join). Each check names the contract it holds.

use std::future::Future;
use std::sync::Arc;

use annals::sim::fs::{CrashMode, SimFs};
use annals::sim::rng::SimRng;
use annals::stores::mob_events::{MobEvent, MobEvents, NewMobEvent};
use annals::stores::mob_runs::{DocumentExpectation, DocumentWrite, MobRuns, RUN_DOCUMENT, RunDocument, Versioned};
use annals::stores::mob_specs::MobSpecs;
use annals::stores::{Backend, Cursor, Expect, StoreError, StoreOp};
use parking_lot::Mutex;

/// A backend under test: `open` opens the same storage again (a restart);
/// `reclaimed_payloads` has the backend give back what retention removed
/// and lists every payload it still stores.
trait Factory {
    type B: Backend;
    fn open(&self) -> Arc<Self::B>;
    fn reclaimed_payloads(&self, backend: &Self::B) -> Vec<Vec<u8>>;
}

/// A backend whose machine can lose its power: `power_cut` freezes the
/// disk now, drops `backend`, and opens what a power cut could have left
/// (`variant` picks which of the images).
trait PowerCut: Factory {
    fn power_cut(&self, backend: Arc<Self::B>, variant: u64) -> Arc<Self::B>;
}

fn compact_and_list(log: &annals::Log) -> Vec<Vec<u8>> {
    log.compact().expect("compact");
    log.read_all_on_disk(annals::Lsn::ZERO, usize::MAX)
        .expect("read")
        .into_iter()
        .map(|record| record.payload.to_vec())
        .collect()
}

/// The log in a temporary directory of the real file system.
struct LogFactory {
    dir: tempfile::TempDir,
}

impl Factory for LogFactory {
    type B = annals::Log;
    fn open(&self) -> Arc<annals::Log> {
        Arc::new(annals::Log::open(self.dir.path(), annals::Options::default()).expect("open the log"))
    }

    fn reclaimed_payloads(&self, log: &annals::Log) -> Vec<Vec<u8>> {
        compact_and_list(log)
    }
}

fn log_factory() -> LogFactory {
    LogFactory { dir: tempfile::tempdir().unwrap() }
}

/// The log on the simulated file system, which keeps what is durable
/// apart from what is only written, and can lose the latter.
struct SimLogFactory {
    fs: Mutex<SimFs>,
}

const SIM_DIR: &str = "mob-log";

impl SimLogFactory {
    fn options(&self) -> annals::Options {
        annals::Options {
            file_system: Arc::new(self.fs.lock().clone()),
            segment_preparation: annals::SegmentPreparation::Inline,
            compaction: annals::CompactionOptions { background: false, ..annals::CompactionOptions::default() },
            ..annals::Options::default()
        }
    }
}

impl Factory for SimLogFactory {
    type B = annals::Log;
    fn open(&self) -> Arc<annals::Log> {
        Arc::new(annals::Log::open(SIM_DIR, self.options()).expect("open the log"))
    }

    fn reclaimed_payloads(&self, log: &annals::Log) -> Vec<Vec<u8>> {
        compact_and_list(log)
    }
}

impl PowerCut for SimLogFactory {
    fn power_cut(&self, backend: Arc<annals::Log>, variant: u64) -> Arc<annals::Log> {
        let image = {
            let fs = self.fs.lock();
            fs.crash_now();
            let mode = CrashMode::ALL[(variant % CrashMode::ALL.len() as u64) as usize];
            fs.crash_image(mode, &mut SimRng::new(variant))
        };
        // Its writes fail from the freeze on; it poisons itself and goes.
        drop(backend);
        *self.fs.lock() = image;
        self.open()
    }
}

fn sim_factory() -> SimLogFactory {
    SimLogFactory { fs: Mutex::new(SimFs::new()) }
}

fn run<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(future)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

// ---------------------------------------------------------------------------
// The seam: check-only operations and range reads
// ---------------------------------------------------------------------------

async fn a_check_only_operation_writes_nothing_and_guards_its_commit<F: Factory>(factory: &F) {
    let backend = factory.open();
    backend.commit(vec![StoreOp::append("checked", Expect::Empty, &b"a"[..])]).await.unwrap();
    let before = backend.read_after(Cursor::START, usize::MAX).await.unwrap();
    let committed = backend
        .commit(vec![StoreOp::check("checked", Expect::Next(1)), StoreOp::append("written", Expect::Any, &b"w"[..])])
        .await
        .expect("the check holds");
    assert_eq!(committed[0].seq, 1, "a check reports the next sequence it found");
    assert_eq!(committed[0].cursor, before.last().unwrap().cursor, "and the last cursor before it");
    assert!(committed[1].cursor > committed[0].cursor);
    let after = backend.read_after(Cursor::START, usize::MAX).await.unwrap();
    assert_eq!(after.len(), before.len() + 1, "the check wrote nothing, the append one entry");
    let refused = backend
        .commit(vec![StoreOp::append("written", Expect::Any, &b"x"[..]), StoreOp::check("checked", Expect::Next(0))])
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::Conflict { stream, expected: Expect::Next(0), actual: 1 } if stream == "checked"),
        "{refused}"
    );
    assert_eq!(backend.read("written").await.unwrap().entries.len(), 1, "nothing of a refused commit is written");
    // A check sees the operations before it in its commit.
    backend
        .commit(vec![
            StoreOp::append("checked", Expect::Next(1), &b"b"[..]),
            StoreOp::check("checked", Expect::Next(2)),
        ])
        .await
        .expect("the check sees the append before it");
    // A commit of checks alone writes nothing.
    let last = backend.read_after(Cursor::START, usize::MAX).await.unwrap().last().unwrap().cursor;
    backend
        .commit(vec![StoreOp::check("checked", Expect::Next(2)), StoreOp::check("nobody", Expect::Empty)])
        .await
        .unwrap();
    assert!(backend.read_after(last, usize::MAX).await.unwrap().is_empty());
    let next = backend.commit(vec![StoreOp::append("written", Expect::Any, &b"y"[..])]).await.unwrap();
    assert_eq!(next[0].cursor, backend.read_after(last, 1).await.unwrap()[0].cursor, "and takes no cursor");
}

async fn a_check_survives_nothing_on_reopen_and_the_streams_are_as_written<F: Factory>(factory: &F) {
    {
        let backend = factory.open();
        for n in 0..3u64 {
            let ops =
                vec![StoreOp::check("guard", Expect::Empty), StoreOp::append("data", Expect::Next(n), vec![n as u8])];
            backend.commit(ops).await.unwrap();
        }
    }
    let backend = factory.open();
    let everything = backend.read_after(Cursor::START, usize::MAX).await.unwrap();
    assert_eq!(everything.iter().map(|e| e.stream.as_str()).collect::<Vec<_>>(), ["data", "data", "data"]);
    assert!(backend.streams("guard").await.unwrap().is_empty(), "a check leaves no stream behind");
}

async fn range_reads_page_through_a_stream_by_sequence_and_by_cursor<F: Factory>(factory: &F) {
    let backend = factory.open();
    for n in 0..10u8 {
        backend.commit(vec![StoreOp::append("paged", Expect::Any, vec![n])]).await.unwrap();
        backend.commit(vec![StoreOp::append("other", Expect::Any, vec![n])]).await.unwrap();
    }
    let page = backend.read_range("paged", 3, 4).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5, 6]);
    assert_eq!(backend.read_range("paged", 8, 100).await.unwrap().len(), 2);
    assert!(backend.read_range("paged", 10, 100).await.unwrap().is_empty());
    assert!(backend.read_range("nobody", 0, 100).await.unwrap().is_empty());
    let mut seen = Vec::new();
    let mut after = Cursor::START;
    loop {
        let page = backend.read_stream_after("paged", after, 3).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.cursor;
        seen.extend(page.iter().map(|e| (e.seq, e.payload[0])));
    }
    assert_eq!(seen, (0..10).map(|n| (n, n as u8)).collect::<Vec<_>>());
    // A cursor of another stream's entry lands between this one's.
    let other = backend.read("other").await.unwrap().entries;
    let tail = backend.read_stream_after("paged", other[4].cursor, 100).await.unwrap();
    assert_eq!(tail.first().map(|e| e.seq), Some(5));
    backend.commit(vec![StoreOp::prune("paged", 6)]).await.unwrap();
    assert!(matches!(backend.read_range("paged", 2, 1).await, Err(StoreError::Backend(_))), "pruned is an error");
    let tail = backend.read_stream_after("paged", Cursor::START, 100).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 7, 8, 9], "a prune's entries are gone");
}

async fn a_snapshot_or_prune_out_of_range_is_a_typed_error_with_the_detail<F: Factory>(factory: &F) {
    let backend = factory.open();
    backend.commit(vec![StoreOp::append("s", Expect::Any, &b"a"[..])]).await.unwrap();
    let error = backend.commit(vec![StoreOp::snapshot("s", 4, &b"x"[..])]).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::OutOfRange { stream, action: "snapshot", seq: 4, next_seq: 1 } if stream == "s"),
        "{error}"
    );
    let error = backend.commit(vec![StoreOp::prune("s", 9)]).await.unwrap_err();
    assert!(matches!(&error, StoreError::OutOfRange { action: "prune", seq: 9, next_seq: 1, .. }), "{error}");
}

/// The sequence `backend` acknowledges for each operation of `ops`.
async fn acknowledged<B: Backend>(backend: &B, ops: Vec<StoreOp>) -> Vec<u64> {
    backend.commit(ops).await.unwrap().iter().map(|committed| committed.seq).collect()
}

async fn a_prune_reports_where_its_stream_started_before_it<F: Factory>(factory: &F) {
    let backend = factory.open();
    let backend = &*backend;
    backend.commit((0..10u8).map(|n| StoreOp::append("s", Expect::Any, vec![n])).collect()).await.unwrap();
    assert_eq!(acknowledged(backend, vec![StoreOp::prune("s", 3)]).await, [0], "removed 0..3");
    assert_eq!(acknowledged(backend, vec![StoreOp::prune("s", 3)]).await, [3], "the same bound removes nothing");
    assert_eq!(acknowledged(backend, vec![StoreOp::prune("s", 2)]).await, [3], "a lower bound removes nothing");
    let both = vec![StoreOp::prune("s", 6), StoreOp::prune("s", 5)];
    assert_eq!(acknowledged(backend, both).await, [3, 6], "the second sees the first in its own commit");
    let over = vec![
        StoreOp::clear("s", Expect::Any),
        StoreOp::append("s", Expect::Empty, &b"a"[..]),
        StoreOp::append("s", Expect::Any, &b"b"[..]),
        StoreOp::prune("s", 1),
    ];
    assert_eq!(acknowledged(backend, over).await, [10, 0, 1, 0], "a clear starts the stream over at 0");
    assert_eq!(acknowledged(backend, vec![StoreOp::prune("never-written", 0)]).await, [0]);
    assert_eq!(backend.read_range("s", 1, 10).await.unwrap().len(), 1);
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Event {
    n: u64,
    text: String,
}

fn event(n: u64) -> NewMobEvent<Event> {
    NewMobEvent { event: Event { n, text: format!("event {n}") }, timestamp_ms: None }
}

fn events<F: Factory>(backend: Arc<F::B>) -> MobEvents<F::B, Event> {
    MobEvents::new(backend)
}

fn numbers(events: &[MobEvent<Event>]) -> Vec<u64> {
    events.iter().map(|e| e.event.n).collect()
}

async fn events_get_growing_cursors_and_poll_pages_through_them_in_order<F: Factory>(factory: &F) {
    let store = events::<F>(factory.open());
    let started_ms = now_ms();
    let mut appended = Vec::new();
    for n in 0..6 {
        appended.push(store.append(event(n)).await.unwrap());
    }
    appended.extend(store.append_batch((6..10).map(event).collect()).await.unwrap());
    let finished_ms = now_ms();
    assert!(appended.windows(2).all(|pair| pair[0].cursor < pair[1].cursor), "cursors grow in commit order");
    assert!(appended.iter().all(|e| (started_ms..=finished_ms).contains(&e.timestamp_ms)), "the backend's time");
    let first = store.poll(Cursor::START, 4).await.unwrap();
    assert_eq!(first, appended[..4]);
    let rest = store.poll(first[3].cursor, 100).await.unwrap();
    assert_eq!(rest, appended[4..]);
    assert!(store.poll(appended[9].cursor, 10).await.unwrap().is_empty());
    assert!(store.poll(Cursor::START, 0).await.unwrap().is_empty());
    assert_eq!(store.replay_all().await.unwrap(), appended);
    let given = store.append(NewMobEvent { event: Event { n: 10, text: "old".into() }, timestamp_ms: Some(7) }).await;
    assert_eq!(given.unwrap().timestamp_ms, 7, "a caller's timestamp is kept");
    assert_eq!(store.replay_all().await.unwrap()[10].timestamp_ms, 7);
    assert!(store.append_batch(Vec::new()).await.unwrap().is_empty());
}

/// An event whose `n` is `u64::MAX` refuses to serialize.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
struct Picky {
    n: u64,
}

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.n == u64::MAX {
            return Err(serde::ser::Error::custom("refused"));
        }
        use serde::ser::SerializeStruct;
        let mut fields = serializer.serialize_struct("Picky", 1)?;
        fields.serialize_field("n", &self.n)?;
        fields.end()
    }
}

async fn an_event_batch_lands_whole_or_not_at_all<F: Factory>(factory: &F) {
    let backend = factory.open();
    let store: MobEvents<F::B, Picky> = MobEvents::new(backend.clone());
    let new = |n: u64| NewMobEvent { event: Picky { n }, timestamp_ms: None };
    store.append(new(1)).await.unwrap();
    let error = store.append_batch(vec![new(2), new(u64::MAX), new(3)]).await.unwrap_err();
    assert!(matches!(error, StoreError::Encode { .. }), "{error}");
    // Too large for one commit of the backend (16 MiB by default).
    let big: MobEvents<F::B, Event> = MobEvents::in_namespace(backend, "big");
    let blob = "x".repeat(1 << 20);
    let batch = (0..20).map(|n| NewMobEvent { event: Event { n, text: blob.clone() }, timestamp_ms: None }).collect();
    assert!(big.append_batch(batch).await.is_err(), "a batch over the backend's limit is refused");
    assert!(big.replay_all().await.unwrap().is_empty(), "and nothing of it was written");
    assert_eq!(store.replay_all().await.unwrap().iter().map(|e| e.event.n).collect::<Vec<_>>(), [1]);
}

async fn events_survive_a_reopen_and_later_cursors_are_larger<F: Factory>(factory: &F) {
    let last = {
        let store = events::<F>(factory.open());
        store.append_batch((0..5).map(event).collect()).await.unwrap().pop().unwrap()
    };
    let store = events::<F>(factory.open());
    assert_eq!(numbers(&store.replay_all().await.unwrap()), [0, 1, 2, 3, 4]);
    let next = store.append(event(5)).await.unwrap();
    assert!(next.cursor > last.cursor);
    assert_eq!(store.poll(last.cursor, 10).await.unwrap(), vec![next]);
}

async fn clear_removes_every_event_and_cursors_never_go_back<F: Factory>(factory: &F) {
    let saved = {
        let store = events::<F>(factory.open());
        let appended = store.append_batch((0..5).map(event).collect()).await.unwrap();
        store.clear().await.unwrap();
        assert!(store.replay_all().await.unwrap().is_empty());
        assert!(store.poll(Cursor::START, 10).await.unwrap().is_empty());
        store.clear().await.unwrap();
        appended[4].cursor
    };
    let store = events::<F>(factory.open());
    assert!(store.replay_all().await.unwrap().is_empty(), "a clear survives a reopen");
    let next = store.append(event(9)).await.unwrap();
    assert!(next.cursor > saved, "a cursor is never given twice, also after a clear");
    assert_eq!(numbers(&store.poll(saved, 10).await.unwrap()), [9]);
    assert_eq!(numbers(&store.poll(Cursor::START, 10).await.unwrap()), [9]);
}

async fn prune_removes_the_oldest_events_before_a_time_and_counts_them<F: Factory>(factory: &F) {
    let store = events::<F>(factory.open());
    let now = now_ms();
    let at = |n: u64, timestamp_ms: u64| NewMobEvent {
        event: Event { n, text: String::new() },
        timestamp_ms: Some(timestamp_ms),
    };
    // meerkat's own scenario: one event ten minutes old, one now.
    store.append(at(0, now - 600_000)).await.unwrap();
    store.append(at(1, now)).await.unwrap();
    assert_eq!(store.prune(now - 60_000).await.unwrap(), 1);
    assert_eq!(numbers(&store.replay_all().await.unwrap()), [1]);
    assert_eq!(store.prune(now - 60_000).await.unwrap(), 0, "nothing more is older");
    // An old event behind a newer one stays until the newer one goes: a
    // consumer never finds a hole behind its cursor.
    store.append(at(2, now - 600_000)).await.unwrap();
    assert_eq!(store.prune(now - 60_000).await.unwrap(), 0);
    assert_eq!(store.prune(now + 1).await.unwrap(), 2);
    assert!(store.replay_all().await.unwrap().is_empty());
    // The backend's own times: everything appended before a time is older.
    store.append_batch((10..15).map(event).collect()).await.unwrap();
    assert_eq!(store.prune(0).await.unwrap(), 0);
    assert_eq!(store.prune(u64::MAX).await.unwrap(), 5);
    assert_eq!(store.prune(u64::MAX).await.unwrap(), 0);
}

async fn racing_event_prunes_count_each_event_once<F: Factory>(factory: &F) {
    let store = Arc::new(events::<F>(factory.open()));
    let at = |n: u64| NewMobEvent { event: Event { n, text: String::new() }, timestamp_ms: Some(1_000 + n) };
    store.append_batch((0..64).map(at).collect()).await.unwrap();
    // Eight prunes at once, each with its own bound, on a runtime of two
    // threads: whichever removes an event, it is counted once.
    let tasks: Vec<_> = (0..8u64)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move { store.prune(1_000 + 24 + task).await.unwrap() })
        })
        .collect();
    let mut counted = 0;
    for task in tasks {
        counted += task.await.unwrap();
    }
    assert_eq!(counted, 31, "the events before the highest bound, each counted once");
    assert_eq!(numbers(&store.replay_all().await.unwrap()), (31..64).collect::<Vec<_>>());
}

async fn pruned_and_cleared_events_are_given_back_by_the_backend<F: Factory>(factory: &F) {
    let backend = factory.open();
    let store = events::<F>(backend.clone());
    let marked = |n: u64, timestamp_ms: u64| NewMobEvent {
        event: Event { n, text: format!("<mob-event-{n}>{}", "x".repeat(4096)) },
        timestamp_ms: Some(timestamp_ms),
    };
    for n in 0..20 {
        store.append(marked(n, 1_000 + n)).await.unwrap();
    }
    assert_eq!(store.prune(1_010).await.unwrap(), 10);
    let other: MobEvents<F::B, Event> = MobEvents::in_namespace(backend.clone(), "other");
    for n in 100..110 {
        other.append(marked(n, 5)).await.unwrap();
    }
    other.clear().await.unwrap();
    // Enough more writing that the pruned events' segment is sealed (a new
    // log's first segment is 1 MiB).
    let filler: MobEvents<F::B, Event> = MobEvents::in_namespace(backend.clone(), "filler");
    for n in 200..500 {
        filler.append(marked(n, 5)).await.unwrap();
    }
    let stored = factory.reclaimed_payloads(&backend);
    let contains = |needle: &[u8]| stored.iter().any(|p| p.windows(needle.len()).any(|w| w == needle));
    for n in (0..10).chain(100..110) {
        assert!(!contains(format!("<mob-event-{n}>").as_bytes()), "event {n} was removed but is still stored");
    }
    for n in (10..20).chain(200..500) {
        assert!(contains(format!("<mob-event-{n}>").as_bytes()), "event {n} is live but was not kept");
    }
}

/// Appenders race while a consumer polls in small pages: the consumer sees
/// exactly the events in their final order, none skipped, none twice.
async fn a_consumer_polling_beside_racing_appenders_never_skips_an_event<F: Factory>(factory: &F) {
    let store = Arc::new(events::<F>(factory.open()));
    const TASKS: u64 = 8;
    const EACH: u64 = 25;
    let mut appenders = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        appenders.push(tokio::spawn(async move {
            for k in 0..EACH {
                if k % 5 == 4 {
                    store.append_batch(vec![event(task * 1000 + k)]).await.unwrap();
                } else {
                    store.append(event(task * 1000 + k)).await.unwrap();
                }
            }
        }));
    }
    let consumer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen: Vec<MobEvent<Event>> = Vec::new();
            let mut after = Cursor::START;
            while (seen.len() as u64) < TASKS * EACH {
                let page = store.poll(after, 7).await.unwrap();
                if let Some(last) = page.last() {
                    after = last.cursor;
                }
                seen.extend(page);
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    for appender in appenders {
        appender.await.unwrap();
    }
    let seen = consumer.await.unwrap();
    let all = store.replay_all().await.unwrap();
    assert_eq!(all.len() as u64, TASKS * EACH);
    assert_eq!(seen, all, "the consumer saw every event once, in the final order");
}

/// A consumer saves the cursor of the last event it handled; the power
/// goes while appends are in flight; after the restart it polls on from
/// its cursor. Every acknowledged event survives, every event a poll
/// returned before the cut survives (poll shows only durable events), none
/// after the cursor is skipped, and cursors never go back.
async fn after_a_power_cut_a_consumer_resumes_from_its_cursor_and_misses_nothing<F: PowerCut>(factory: &F) {
    let mut backend = factory.open();
    let mut saved = Cursor::START;
    let mut polled_before: Vec<MobEvent<Event>> = Vec::new();
    let mut acknowledged: Vec<MobEvent<Event>> = Vec::new();
    let mut highest = Cursor::START;
    for round in 0..CrashMode::ALL.len() as u64 * 2 {
        let store = Arc::new(events::<F>(backend.clone()));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let mut appenders = Vec::new();
        for task in 0..4u64 {
            let (store, acked) = (store.clone(), acked.clone());
            appenders.push(tokio::spawn(async move {
                for k in 0.. {
                    let n = round * 100_000 + task * 1000 + k;
                    match store.append(event(n)).await {
                        Ok(appended) => acked.lock().push(appended),
                        Err(_) => return, // the power went
                    }
                }
            }));
        }
        // The consumer handles some events and saves its cursor.
        let mut handled = 0;
        while handled < 10 {
            let page = store.poll(saved, 3).await.unwrap();
            if let Some(last) = page.last() {
                saved = last.cursor;
            }
            handled += page.len();
            polled_before.extend(page);
            tokio::task::yield_now().await;
        }
        drop(store);
        backend = factory.power_cut(backend, round);
        for appender in appenders {
            appender.await.unwrap();
        }
        acknowledged.extend(acked.lock().drain(..));
        let store = events::<F>(backend.clone());
        let all = store.replay_all().await.unwrap();
        let cursors: Vec<Cursor> = all.iter().map(|e| e.cursor).collect();
        assert!(cursors.windows(2).all(|pair| pair[0] < pair[1]), "round {round}: events in cursor order");
        if let Some(lost) = acknowledged.iter().chain(&polled_before).find(|e| !all.contains(e)) {
            panic!(
                "round {round}: event {} at cursor {} was acknowledged or polled but is gone",
                lost.event.n, lost.cursor
            );
        }
        let resumed = store.poll(saved, usize::MAX).await.unwrap();
        let expected: Vec<_> = all.iter().filter(|e| e.cursor > saved).cloned().collect();
        assert_eq!(resumed, expected, "round {round}: the consumer resumes with every later event");
        highest = highest.max(*cursors.last().unwrap()).max(acknowledged.iter().map(|e| e.cursor).max().unwrap());
        let next = store.append(event(round)).await.unwrap();
        assert!(next.cursor > highest, "round {round}: a cursor is never given twice");
        highest = next.cursor;
        acknowledged.push(next);
    }
}

// ---------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Status {
    Pending,
    Running,
    Completed,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Run {
    mob: String,
    status: Status,
    flow_state: u32,
}

impl RunDocument for Run {
    type Status = Status;
    type FlowState = u32;
    fn status(&self) -> &Status {
        &self.status
    }
    fn set_status(&mut self, status: Status) {
        self.status = status;
    }
    fn flow_state(&self) -> &u32 {
        &self.flow_state
    }
    fn set_flow_state(&mut self, flow_state: u32) {
        self.flow_state = flow_state;
    }
}

fn a_run(status: Status) -> Run {
    Run { mob: "mob".into(), status, flow_state: 0 }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Step {
    step: String,
    worker: String,
    status: Status,
}

fn step(name: &str, worker: &str) -> Step {
    Step { step: name.into(), worker: worker.into(), status: Status::Running }
}

fn same_step(a: &Step, b: &Step) -> bool {
    a.step == b.step && a.worker == b.worker && a.status == b.status
}

async fn a_run_is_created_once_and_read_back_with_its_revision<F: Factory>(factory: &F) {
    let runs = MobRuns::new(factory.open());
    runs.create_run("r1", &a_run(Status::Pending)).await.unwrap();
    let error = runs.create_run("r1", &a_run(Status::Running)).await.unwrap_err();
    assert!(matches!(error, StoreError::Duplicate { .. }), "{error}");
    assert_eq!(
        runs.get_run::<Run>("r1").await.unwrap(),
        Some(Versioned { value: a_run(Status::Pending), revision: 1 })
    );
    assert_eq!(runs.get_run::<Run>("never").await.unwrap(), None);
}

async fn run_status_cas_has_exactly_one_winner_among_racers<F: Factory>(factory: &F) {
    let runs = Arc::new(MobRuns::new(factory.open()));
    runs.create_run("raced", &a_run(Status::Running)).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let runs = runs.clone();
        tasks.push(tokio::spawn(async move {
            runs.cas_status::<Run>("raced", &Status::Running, Status::Completed).await.unwrap()
        }));
    }
    let mut wins = 0;
    for task in tasks {
        wins += usize::from(task.await.unwrap());
    }
    assert_eq!(wins, 1);
    let stored = runs.get_run::<Run>("raced").await.unwrap().unwrap();
    assert_eq!((stored.value.status, stored.revision), (Status::Completed, 2), "one write, by the winner");
}

async fn status_and_flow_state_cas_write_only_when_everything_expected_holds<F: Factory>(factory: &F) {
    let runs = MobRuns::new(factory.open());
    runs.create_run("r", &a_run(Status::Running)).await.unwrap();
    assert!(!runs.cas_status::<Run>("r", &Status::Pending, Status::Failed).await.unwrap());
    assert!(!runs.cas_flow_state::<Run>("r", &7, 8).await.unwrap());
    assert!(!runs.cas_status_and_flow_state::<Run>("r", (&Status::Running, &7), (Status::Failed, 8)).await.unwrap());
    assert!(!runs.cas_status::<Run>("missing", &Status::Running, Status::Failed).await.unwrap(), "no run: false");
    assert_eq!(runs.get_run::<Run>("r").await.unwrap().unwrap().revision, 1, "mismatches wrote nothing");
    assert!(runs.cas_flow_state::<Run>("r", &0, 3).await.unwrap());
    assert!(runs.cas_status_and_flow_state::<Run>("r", (&Status::Running, &3), (Status::Completed, 4)).await.unwrap());
    let stored = runs.get_run::<Run>("r").await.unwrap().unwrap();
    assert_eq!((stored.value.status, stored.value.flow_state, stored.revision), (Status::Completed, 4, 3));
    assert!(runs.update_run_if::<Run>("r", |run| run.flow_state == 4, |run| run.mob = "renamed".into()).await.unwrap());
    assert_eq!(runs.get_run::<Run>("r").await.unwrap().unwrap().value.mob, "renamed");
}

async fn ledgers_are_append_only_and_append_if_absent_is_idempotent_under_races<F: Factory>(factory: &F) {
    let runs = Arc::new(MobRuns::new(factory.open()));
    runs.create_run("r", &a_run(Status::Running)).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let runs = runs.clone();
        tasks.push(tokio::spawn(async move {
            runs.append_step_if_absent("r", &step("s1", "w1"), same_step).await.unwrap()
        }));
    }
    let mut appended = 0;
    for task in tasks {
        appended += usize::from(task.await.unwrap());
    }
    assert_eq!(appended, 1, "one of the racers appended, the others found it");
    assert!(runs.append_step_if_absent("r", &step("s1", "w2"), same_step).await.unwrap());
    runs.append_step("r", &step("s1", "w1")).await.unwrap();
    runs.append_failure("r", &step("s2", "boom")).await.unwrap();
    let ledger: Vec<Step> = runs.step_ledger("r").await.unwrap();
    assert_eq!(ledger, [step("s1", "w1"), step("s1", "w2"), step("s1", "w1")]);
    assert_eq!(runs.failure_ledger::<Step>("r").await.unwrap(), [step("s2", "boom")]);
    for error in [
        runs.append_step("missing", &step("s", "w")).await.unwrap_err(),
        runs.append_failure("missing", &step("s", "w")).await.unwrap_err(),
        runs.append_step_if_absent("missing", &step("s", "w"), same_step).await.unwrap_err(),
        runs.put_step_output("missing", "s", &1).await.unwrap_err(),
    ] {
        assert!(matches!(error, StoreError::NotFound { .. }), "{error}");
    }
    assert!(runs.step_ledger::<Step>("missing").await.unwrap().is_empty());
    assert_eq!(runs.get_run::<Run>("r").await.unwrap().unwrap().revision, 1, "a ledger is not the run document");
}

async fn step_outputs_replace_each_other_and_runs_survive_a_reopen<F: Factory>(factory: &F) {
    {
        let runs = MobRuns::new(factory.open());
        for id in ["b", "a", "c/with/slashes"] {
            runs.create_run(id, &a_run(Status::Pending)).await.unwrap();
        }
        runs.append_step("a", &step("s1", "w1")).await.unwrap();
        runs.put_step_output("a", "s1", &serde_json_like("first")).await.unwrap();
        runs.put_step_output("a", "s1", &serde_json_like("second")).await.unwrap();
        runs.put_step_output("a", "s0/x", &serde_json_like("other")).await.unwrap();
        assert!(runs.cas_status::<Run>("b", &Status::Pending, Status::Running).await.unwrap());
    }
    let runs = MobRuns::new(factory.open());
    let listed: Vec<(String, u64)> =
        runs.list_runs::<Run>().await.unwrap().into_iter().map(|(id, run)| (id, run.revision)).collect();
    assert_eq!(listed, [("a".to_owned(), 1), ("b".to_owned(), 2), ("c/with/slashes".to_owned(), 1)]);
    let outputs: Vec<(String, Vec<String>)> = runs.step_outputs("a").await.unwrap();
    assert_eq!(outputs, [("s0/x".to_owned(), serde_json_like("other")), ("s1".to_owned(), serde_json_like("second"))]);
    assert_eq!(runs.step_ledger::<Step>("a").await.unwrap(), [step("s1", "w1")]);
    assert!(runs.step_outputs::<Vec<String>>("b").await.unwrap().is_empty());
}

fn serde_json_like(text: &str) -> Vec<String> {
    vec![text.to_owned(), "value".to_owned()]
}

async fn a_run_id_cannot_reach_into_another_runs_streams<F: Factory>(factory: &F) {
    let runs = MobRuns::new(factory.open());
    runs.create_run("x", &a_run(Status::Pending)).await.unwrap();
    // Unescaped, these would name run x's documents and ledgers.
    for id in ["x/doc/run", "x/steps", "x/doc", "x%2Fsteps"] {
        runs.create_run(id, &a_run(Status::Running)).await.unwrap();
        runs.append_step(id, &step("s", id)).await.unwrap();
    }
    assert_eq!(runs.get_run::<Run>("x").await.unwrap().unwrap().value.status, Status::Pending);
    assert!(runs.step_ledger::<Step>("x").await.unwrap().is_empty());
    assert_eq!(runs.list_runs::<Run>().await.unwrap().len(), 5);
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Frame {
    depth: u32,
}

fn expect(name: &str, revision: u64) -> DocumentExpectation {
    DocumentExpectation { name: name.into(), revision }
}

fn put(name: &str, depth: u32) -> DocumentWrite<Frame> {
    DocumentWrite { name: name.into(), value: Some(Frame { depth }) }
}

async fn multi_document_cas_writes_all_or_nothing<F: Factory>(factory: &F) {
    let runs = MobRuns::new(factory.open());
    runs.create_run("r", &a_run(Status::Running)).await.unwrap();
    // Start a frame and a loop together, while the run is at revision 1.
    let written = runs
        .cas_documents(
            "r",
            &[expect(RUN_DOCUMENT, 1), expect("frame", 0), expect("loop", 0)],
            &[put("frame", 1), put("loop", 1)],
        )
        .await
        .unwrap();
    assert_eq!(written, Some(vec![1, 1]));
    // One stale expectation: nothing is written.
    let refused =
        runs.cas_documents("r", &[expect("frame", 1), expect("loop", 7)], &[put("frame", 2), put("loop", 2)]).await;
    assert_eq!(refused.unwrap(), None);
    assert_eq!(
        runs.get_document::<Frame>("r", "frame").await.unwrap(),
        Some(Versioned { value: Frame { depth: 1 }, revision: 1 })
    );
    // A document only expected, not written, is checked in the same commit.
    assert!(runs.cas_status::<Run>("r", &Status::Running, Status::Completed).await.unwrap());
    let refused = runs.cas_documents("r", &[expect(RUN_DOCUMENT, 1)], &[put("frame", 3)]).await;
    assert_eq!(refused.unwrap(), None, "the run moved to revision 2");
    let done = runs
        .cas_documents(
            "r",
            &[expect(RUN_DOCUMENT, 2), expect("frame", 1)],
            &[put("frame", 3), DocumentWrite { name: "loop".into(), value: None }],
        )
        .await
        .unwrap();
    assert_eq!(done, Some(vec![2, 0]));
    assert_eq!(runs.get_document::<Frame>("r", "loop").await.unwrap(), None, "deleted");
    // Revisions are never given twice: the loop had 1, its delete took 2.
    let again = runs.cas_documents("r", &[expect("loop", 0)], &[put("loop", 9)]).await.unwrap();
    assert_eq!(again, Some(vec![3]));
    let error = runs.cas_documents::<Frame>("r", &[], &[]).await.unwrap_err();
    assert!(matches!(error, StoreError::InvalidArgument(_)), "{error}");
    let error = runs.cas_documents("r", &[], &[put("a", 1), put("a", 2)]).await.unwrap_err();
    assert!(matches!(error, StoreError::InvalidArgument(_)), "{error}");
}

async fn racing_multi_document_cas_on_one_revision_has_one_winner<F: Factory>(factory: &F) {
    let runs = Arc::new(MobRuns::new(factory.open()));
    runs.create_run("r", &a_run(Status::Running)).await.unwrap();
    let mut tasks = Vec::new();
    for task in 0..8u32 {
        let runs = runs.clone();
        tasks.push(tokio::spawn(async move {
            let expected = [expect(RUN_DOCUMENT, 1), expect("frame", 0)];
            runs.cas_documents("r", &expected, &[put("frame", task), put("loop", task)]).await.unwrap()
        }));
    }
    let mut winners = Vec::new();
    for (task, outcome) in tasks.into_iter().enumerate() {
        if outcome.await.unwrap().is_some() {
            winners.push(task as u32);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let frame = runs.get_document::<Frame>("r", "frame").await.unwrap().unwrap();
    let lp = runs.get_document::<Frame>("r", "loop").await.unwrap().unwrap();
    assert_eq!((frame.value.depth, lp.value.depth), (winners[0], winners[0]), "both documents from one writer");
}

async fn a_deleted_run_is_forgotten_and_given_back_by_the_backend<F: Factory>(factory: &F) {
    let backend = factory.open();
    let runs = MobRuns::new(backend.clone());
    let big = |tag: &str| format!("<{tag}>{}", "y".repeat(4096));
    runs.create_run("gone", &Run { mob: big("gone-run"), status: Status::Running, flow_state: 0 }).await.unwrap();
    runs.append_step("gone", &step(&big("gone-step"), "w")).await.unwrap();
    runs.put_step_output("gone", "s", &big("gone-output")).await.unwrap();
    runs.create_run("kept", &Run { mob: big("kept-run"), status: Status::Running, flow_state: 0 }).await.unwrap();
    // Old versions of a document are reclaimed too.
    runs.update_run_if::<Run>("kept", |_| true, |run| run.mob = big("kept-run-v2")).await.unwrap();
    assert!(runs.delete_run("gone").await.unwrap());
    assert!(!runs.delete_run("gone").await.unwrap());
    assert_eq!(runs.get_run::<Run>("gone").await.unwrap(), None);
    assert!(runs.step_ledger::<Step>("gone").await.unwrap().is_empty());
    let filler: MobEvents<F::B, Event> = MobEvents::new(backend.clone());
    for n in 0..300 {
        filler.append(NewMobEvent { event: Event { n, text: "z".repeat(4096) }, timestamp_ms: None }).await.unwrap();
    }
    let stored = factory.reclaimed_payloads(&backend);
    let contains = |needle: &str| stored.iter().any(|p| p.windows(needle.len()).any(|w| w == needle.as_bytes()));
    for tag in ["<gone-run>", "<gone-step>", "<gone-output>", "<kept-run>"] {
        assert!(!contains(tag), "{tag} was removed but is still stored");
    }
    assert!(contains("<kept-run-v2>"));
    runs.create_run("gone", &a_run(Status::Pending)).await.expect("a deleted run can be created again");
}

// ---------------------------------------------------------------------------
// Specs
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Spec {
    profiles: Vec<String>,
}

fn spec(tag: &str) -> Spec {
    Spec { profiles: vec![tag.to_owned()] }
}

async fn spec_revisions_count_up_and_a_mismatch_is_a_typed_conflict<F: Factory>(factory: &F) {
    let specs: MobSpecs<F::B, Spec> = MobSpecs::new(factory.open());
    assert_eq!(specs.put_spec("mob", &spec("a"), None).await.unwrap(), 1);
    assert_eq!(specs.put_spec("mob", &spec("b"), Some(1)).await.unwrap(), 2);
    let conflict = specs.put_spec("mob", &spec("c"), Some(1)).await.unwrap_err();
    assert!(
        matches!(&conflict, StoreError::RevisionConflict { key, expected: Some(1), actual: 2 } if key == "mob"),
        "{conflict}"
    );
    assert_eq!(specs.get_spec("mob").await.unwrap(), Some((spec("b"), 2)), "a conflict wrote nothing");
    let conflict = specs.delete_spec("mob", Some(1)).await.unwrap_err();
    assert!(matches!(conflict, StoreError::RevisionConflict { expected: Some(1), actual: 2, .. }), "{conflict}");
    assert!(specs.delete_spec("mob", Some(2)).await.unwrap());
    assert!(!specs.delete_spec("mob", None).await.unwrap(), "already gone");
    assert_eq!(specs.get_spec("mob").await.unwrap(), None);
    // Expecting absence: revision 0.
    let conflict = specs.put_spec("mob", &spec("d"), Some(2)).await.unwrap_err();
    assert!(matches!(conflict, StoreError::RevisionConflict { actual: 0, .. }), "{conflict}");
    let revision = specs.put_spec("mob", &spec("d"), Some(0)).await.unwrap();
    assert!(revision > 2, "a revision is never given twice for one id, also across a delete: {revision}");
    let conflict = specs.put_spec("fresh", &spec("e"), Some(1)).await.unwrap_err();
    assert!(matches!(conflict, StoreError::RevisionConflict { actual: 0, .. }), "{conflict}");
}

async fn racing_spec_writers_on_one_revision_have_one_winner<F: Factory>(factory: &F) {
    let specs: Arc<MobSpecs<F::B, Spec>> = Arc::new(MobSpecs::new(factory.open()));
    specs.put_spec("mob", &spec("base"), None).await.unwrap();
    let mut tasks = Vec::new();
    for task in 0..8 {
        let specs = specs.clone();
        tasks.push(tokio::spawn(async move { specs.put_spec("mob", &spec(&format!("{task}")), Some(1)).await }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(revision) => {
                assert_eq!(revision, 2);
                wins += 1;
            }
            Err(StoreError::RevisionConflict { expected: Some(1), actual: 2, .. }) => {}
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    assert_eq!(wins, 1);
}

async fn specs_survive_a_reopen_and_list_only_live_ids<F: Factory>(factory: &F) {
    {
        let specs: MobSpecs<F::B, Spec> = MobSpecs::new(factory.open());
        for id in ["b", "a/1", "c", "100%"] {
            specs.put_spec(id, &spec(id), None).await.unwrap();
        }
        specs.delete_spec("c", None).await.unwrap();
        specs.put_spec("b", &spec("b2"), Some(1)).await.unwrap();
    }
    let specs: MobSpecs<F::B, Spec> = MobSpecs::new(factory.open());
    assert_eq!(specs.list_specs().await.unwrap(), ["100%", "a/1", "b"]);
    assert_eq!(specs.get_spec("b").await.unwrap(), Some((spec("b2"), 2)));
    let other: MobSpecs<F::B, Spec> = MobSpecs::in_namespace(specs.backend().clone(), "other");
    assert!(other.list_specs().await.unwrap().is_empty(), "namespaces keep apart");
}

async fn a_spec_that_does_not_decode_is_a_typed_error_naming_stream_and_sequence<F: Factory>(factory: &F) {
    let backend = factory.open();
    backend.commit(vec![StoreOp::append("mob-spec/broken", Expect::Empty, &b"not a spec"[..])]).await.unwrap();
    let specs: MobSpecs<F::B, Spec> = MobSpecs::new(backend);
    let error = specs.get_spec("broken").await.unwrap_err();
    assert!(matches!(&error, StoreError::Decode { stream, seq: 0, .. } if stream == "mob-spec/broken"), "{error}");
    assert_eq!(specs.put_spec("broken", &spec("fixed"), Some(1)).await.unwrap(), 2, "and it can be replaced");
    assert_eq!(specs.get_spec("broken").await.unwrap(), Some((spec("fixed"), 2)));
}

macro_rules! conformance {
    ($factory:expr, $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let factory = $factory;
                run(super::$check(&factory));
            }
        )*
    };
}

mod embedded_log {
    use super::*;

    conformance!(
        log_factory(),
        a_check_only_operation_writes_nothing_and_guards_its_commit,
        a_check_survives_nothing_on_reopen_and_the_streams_are_as_written,
        range_reads_page_through_a_stream_by_sequence_and_by_cursor,
        a_snapshot_or_prune_out_of_range_is_a_typed_error_with_the_detail,
        a_prune_reports_where_its_stream_started_before_it,
        events_get_growing_cursors_and_poll_pages_through_them_in_order,
        an_event_batch_lands_whole_or_not_at_all,
        events_survive_a_reopen_and_later_cursors_are_larger,
        clear_removes_every_event_and_cursors_never_go_back,
        prune_removes_the_oldest_events_before_a_time_and_counts_them,
        racing_event_prunes_count_each_event_once,
        pruned_and_cleared_events_are_given_back_by_the_backend,
        a_consumer_polling_beside_racing_appenders_never_skips_an_event,
        a_run_is_created_once_and_read_back_with_its_revision,
        run_status_cas_has_exactly_one_winner_among_racers,
        status_and_flow_state_cas_write_only_when_everything_expected_holds,
        ledgers_are_append_only_and_append_if_absent_is_idempotent_under_races,
        step_outputs_replace_each_other_and_runs_survive_a_reopen,
        a_run_id_cannot_reach_into_another_runs_streams,
        multi_document_cas_writes_all_or_nothing,
        racing_multi_document_cas_on_one_revision_has_one_winner,
        a_deleted_run_is_forgotten_and_given_back_by_the_backend,
        spec_revisions_count_up_and_a_mismatch_is_a_typed_conflict,
        racing_spec_writers_on_one_revision_have_one_winner,
        specs_survive_a_reopen_and_list_only_live_ids,
        a_spec_that_does_not_decode_is_a_typed_error_naming_stream_and_sequence,
    );
}

/// The same contracts on the simulated file system, and the ones that
/// need a power cut.
mod simulated_log {
    use super::*;

    conformance!(
        sim_factory(),
        a_check_only_operation_writes_nothing_and_guards_its_commit,
        a_check_survives_nothing_on_reopen_and_the_streams_are_as_written,
        a_prune_reports_where_its_stream_started_before_it,
        racing_event_prunes_count_each_event_once,
        events_survive_a_reopen_and_later_cursors_are_larger,
        clear_removes_every_event_and_cursors_never_go_back,
        a_consumer_polling_beside_racing_appenders_never_skips_an_event,
        step_outputs_replace_each_other_and_runs_survive_a_reopen,
        multi_document_cas_writes_all_or_nothing,
        specs_survive_a_reopen_and_list_only_live_ids,
        after_a_power_cut_a_consumer_resumes_from_its_cursor_and_misses_nothing,
    );
}
