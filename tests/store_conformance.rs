//! The typed stores' contracts, written once, generic over the backend
//! seam, and run against every backend (today the embedded log; a
//! PostgreSQL backend will join). Each check names the contract it holds.

use std::future::Future;
use std::sync::Arc;

use annals::stores::checkpoint_history::{CheckpointHistory, CheckpointId, Compression};
use annals::stores::checkpoint_rows::{CheckpointRows, SequencedRow, VersionedRun};
use annals::stores::whole_checkpoints::WholeCheckpoints;
use annals::stores::{
    Backend, Committed, Cursor, Entry, EntryKind, EntryRef, Expect, StoreError, StoreOp, StreamContents,
};
use bytes::Bytes;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Row {
    sequence: u64,
    state: String,
    blob: Option<Vec<u8>>,
}

impl SequencedRow for Row {
    fn sequence(&self) -> u64 {
        self.sequence
    }
}

fn row(sequence: u64, state: &str) -> Row {
    Row { sequence, state: state.to_owned(), blob: None }
}

/// A backend under test: `open` opens the same storage again (a restart);
/// `reclaimed_payloads` has the backend give back what retention removed
/// and lists every payload it still stores.
trait Factory {
    type B: Backend;
    fn open(&self) -> Arc<Self::B>;
    fn reclaimed_payloads(&self, backend: &Self::B) -> Vec<Vec<u8>>;
}

struct LogFactory {
    dir: tempfile::TempDir,
}

impl Factory for LogFactory {
    type B = annals::Log;
    fn open(&self) -> Arc<annals::Log> {
        Arc::new(annals::Log::open(self.dir.path(), annals::Options::default()).expect("open the log"))
    }

    fn reclaimed_payloads(&self, log: &annals::Log) -> Vec<Vec<u8>> {
        log.compact().expect("compact");
        log.read_all_on_disk(annals::Lsn::ZERO, usize::MAX)
            .expect("read")
            .into_iter()
            .map(|record| record.payload.to_vec())
            .collect()
    }
}

fn log_factory() -> LogFactory {
    LogFactory { dir: tempfile::tempdir().unwrap() }
}

fn run<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(future)
}

async fn rows_round_trip_in_ascending_order_whatever_the_insert_order<F: Factory>(factory: &F) {
    let store: CheckpointRows<F::B, Row> = CheckpointRows::new(factory.open());
    for sequence in [2, 0, 3, 1] {
        store.append("run", row(sequence, &format!("state {sequence}"))).await.unwrap();
    }
    let rows = store.load_run("run").await.unwrap();
    assert_eq!(rows.iter().map(|r| r.sequence).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(rows[2].state, "state 2");
}

async fn a_duplicate_sequence_is_rejected_and_never_overwrites<F: Factory>(factory: &F) {
    let store: CheckpointRows<F::B, Row> = CheckpointRows::new(factory.open());
    store.append("run", row(0, "first")).await.unwrap();
    let error = store.append("run", row(0, "second")).await.unwrap_err();
    assert!(matches!(error, StoreError::Duplicate { .. }), "{error}");
    assert_eq!(store.load_run("run").await.unwrap(), vec![row(0, "first")]);
}

async fn rows_survive_a_reopen_and_duplicates_are_still_caught<F: Factory>(factory: &F) {
    {
        let store: CheckpointRows<F::B, Row> = CheckpointRows::new(factory.open());
        store.append("run", row(0, "a")).await.unwrap();
        store.append("run", row(1, "b")).await.unwrap();
    }
    let store: CheckpointRows<F::B, Row> = CheckpointRows::new(factory.open());
    assert_eq!(store.load_run("run").await.unwrap(), vec![row(0, "a"), row(1, "b")]);
    assert!(matches!(store.append("run", row(1, "again")).await, Err(StoreError::Duplicate { .. })));
}

async fn clear_forgets_one_run_only_and_an_unknown_id_is_a_no_op<F: Factory>(factory: &F) {
    let store: CheckpointRows<F::B, Row> = CheckpointRows::new(factory.open());
    store.append("a", row(0, "a0")).await.unwrap();
    store.append("b", row(0, "b0")).await.unwrap();
    store.clear("a").await.unwrap();
    store.clear("never-seen").await.unwrap();
    assert!(store.load_run("a").await.unwrap().is_empty());
    assert!(store.load_run("never-seen").await.unwrap().is_empty());
    assert_eq!(store.load_run("b").await.unwrap(), vec![row(0, "b0")]);
    store.append("a", row(0, "a again")).await.expect("a cleared run starts over");
    assert_eq!(store.load_run("a").await.unwrap(), vec![row(0, "a again")]);
}

async fn concurrent_appends_to_one_run_keep_every_distinct_sequence_once<F: Factory>(factory: &F)
where
    F::B: Backend,
{
    let store: Arc<CheckpointRows<F::B, Row>> = Arc::new(CheckpointRows::new(factory.open()));
    let mut tasks = Vec::new();
    // 16 tasks race over 32 sequences, each sequence offered by two tasks.
    for task in 0..16u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = 0;
            for k in 0..4u64 {
                let sequence = (task % 8) * 4 + k;
                match store.append("shared", row(sequence, &format!("by {task}"))).await {
                    Ok(()) => won += 1,
                    Err(StoreError::Duplicate { .. }) => {}
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            won
        }));
    }
    let mut won = 0;
    for task in tasks {
        won += task.await.unwrap();
    }
    let rows = store.load_run("shared").await.unwrap();
    assert_eq!(won, 32, "each sequence is won exactly once");
    assert_eq!(rows.iter().map(|r| r.sequence).collect::<Vec<_>>(), (0..32).collect::<Vec<_>>());
}

/// Two stores over one backend (two services sharing a database) race for
/// the same sequences: the backend's guard, not the store's memory, decides.
async fn two_stores_racing_one_run_never_both_win_a_sequence<F: Factory>(factory: &F) {
    let backend = factory.open();
    let stores: Vec<Arc<CheckpointRows<F::B, Row>>> =
        (0..2).map(|_| Arc::new(CheckpointRows::new(backend.clone()))).collect();
    let mut tasks = Vec::new();
    for (index, store) in stores.iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for sequence in 0..40u64 {
                match store.append("raced", row(sequence, &format!("store {index}"))).await {
                    Ok(()) => won.push(sequence),
                    Err(StoreError::Duplicate { .. }) => {}
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            won
        }));
    }
    let mut won = Vec::new();
    for task in tasks {
        won.extend(task.await.unwrap());
    }
    won.sort();
    assert_eq!(won, (0..40).collect::<Vec<_>>(), "every sequence won once, by one store");
    let rows = stores[0].load_run("raced").await.unwrap();
    assert_eq!(rows.len(), 40);
}

/// Two stores over one backend: the first appended rows 0 to 2 of run
/// `run` (and remembers them), then the second cleared the run.
async fn a_run_of_three_that_another_store_cleared<F: Factory>(
    factory: &F,
) -> (CheckpointRows<F::B, Row>, CheckpointRows<F::B, Row>) {
    let backend = factory.open();
    let a: CheckpointRows<F::B, Row> = CheckpointRows::new(backend.clone());
    let b: CheckpointRows<F::B, Row> = CheckpointRows::new(backend);
    for sequence in 0..3 {
        a.append("run", row(sequence, "a")).await.unwrap();
    }
    b.clear("run").await.unwrap();
    (a, b)
}

/// A store that remembered a run's sequences refused a valid append after
/// another store over the same backend cleared the run (found by the cano
/// adapter's tests): a remembered duplicate is confirmed by a fresh read.
async fn a_run_cleared_by_another_store_takes_its_old_sequences_again<F: Factory>(factory: &F) {
    let (a, b) = a_run_of_three_that_another_store_cleared(factory).await;
    b.append("run", row(0, "b")).await.unwrap();
    a.append("run", row(1, "a again")).await.expect("sequence 1 is free since the clear");
    assert!(matches!(a.append("run", row(0, "dup")).await, Err(StoreError::Duplicate { .. })));
    assert_eq!(a.load_run("run").await.unwrap(), vec![row(0, "b"), row(1, "a again")]);
}

/// Review 9's bug 8: a store remembered a run at next sequence 3; another
/// store cleared it and appended three rows, so the stream was at next
/// sequence 3 again, and the first store's guard let a sequence through
/// that the run already had. The guard names the run's life now.
async fn a_run_cleared_and_refilled_to_the_same_length_by_another_store_still_refuses_its_rows<F: Factory>(
    factory: &F,
) {
    let (a, b) = a_run_of_three_that_another_store_cleared(factory).await;
    for sequence in 5..8 {
        b.append("run", row(sequence, "b")).await.unwrap();
    }
    for sequence in 5..8 {
        let duplicate = a.append("run", row(sequence, "a")).await;
        assert!(matches!(duplicate, Err(StoreError::Duplicate { .. })), "sequence {sequence}: {duplicate:?}");
    }
    a.append("run", row(1, "a")).await.expect("sequence 1 went with the clear");
    let rows = a.load_run("run").await.unwrap();
    assert_eq!(rows, vec![row(1, "a"), row(5, "b"), row(6, "b"), row(7, "b")]);
}

/// `Expect::NextIn` holds for the stream's life a read or an append
/// returned, and fails once a clear ended it, even with as many entries
/// appended again: through `commit`, the backend's own `append`, and the
/// seam's default `append` (a commit).
async fn a_guard_on_a_stream_s_life_fails_after_a_clear_and_as_many_appends_again<F: Factory>(factory: &F)
where
    F::B: 'static,
{
    let backend = factory.open();
    let by_default = DefaultVisit(Arc::clone(&backend));
    let entries = |contents: &StreamContents| -> Vec<Vec<u8>> {
        contents.entries.iter().map(|entry| entry.payload.to_vec()).collect()
    };
    // A stream with no state has no life: the guard is "empty".
    let empty = backend.read("s").await.unwrap();
    assert_eq!((empty.incarnation, empty.unchanged()), (None, Expect::Empty));
    backend.commit(vec![StoreOp::append("s", Expect::Empty, &b"a"[..])]).await.unwrap();
    let first = backend.append("s", Expect::Next(1), Bytes::from_static(b"b")).await.unwrap();
    let read = backend.read("s").await.unwrap();
    let life = read.incarnation.expect("a stream with entries has a life");
    assert_eq!(first.incarnation, Some(life));
    assert_eq!(read.unchanged(), Expect::NextIn { next: 2, incarnation: life });
    assert_eq!(first.unchanged_after_append(), read.unchanged());
    // The same life holds, through each path, and moves on with each append.
    let checked = backend.commit(vec![StoreOp::check("s", read.unchanged())]).await.unwrap();
    assert_eq!((checked[0].seq, checked[0].incarnation), (2, Some(life)));
    let own = backend.append("s", read.unchanged(), Bytes::from_static(b"c")).await.unwrap();
    let default = by_default.append("s", own.unchanged_after_append(), Bytes::from_static(b"d")).await.unwrap();
    assert_eq!((own.seq, default.seq), (2, 3));
    assert_eq!(default.incarnation, Some(life));
    let stale = default.unchanged_after_append();
    assert_eq!(stale, Expect::NextIn { next: 4, incarnation: life });
    // Another writer clears the stream and appends four entries again:
    // the next sequence is 4 once more, the life is not.
    backend.commit(vec![StoreOp::clear("s", Expect::Any)]).await.unwrap();
    assert_eq!(backend.read("s").await.unwrap().unchanged(), Expect::Empty);
    for payload in [&b"w"[..], b"x", b"y", b"z"] {
        backend.append("s", Expect::Any, Bytes::from_static(payload)).await.unwrap();
    }
    let refilled = backend.read("s").await.unwrap();
    assert_eq!(refilled.next_seq, 4);
    assert_ne!(refilled.incarnation, Some(life));
    let is_conflict = |error: &StoreError| matches!(error, StoreError::Conflict { stream, expected, actual: 4 } if stream == "s" && *expected == stale);
    let error = backend.append("s", stale, Bytes::from_static(b"own")).await.unwrap_err();
    assert!(is_conflict(&error), "{error}");
    let error = by_default.append("s", stale, Bytes::from_static(b"default")).await.unwrap_err();
    assert!(is_conflict(&error), "{error}");
    let blocking = Arc::clone(&backend);
    let error = tokio::task::spawn_blocking(move || blocking.append_blocking("s", stale, Bytes::from_static(b"b")))
        .await
        .unwrap()
        .unwrap_err();
    assert!(is_conflict(&error), "{error}");
    // A batch guarded by the old life writes nothing, on any stream.
    let batch = vec![StoreOp::append("other", Expect::Any, &b"o"[..]), StoreOp::check("s", stale)];
    let error = backend.commit(batch).await.unwrap_err();
    assert!(is_conflict(&error), "{error}");
    let error = backend.commit(vec![StoreOp::clear("s", stale)]).await.unwrap_err();
    assert!(is_conflict(&error), "{error}");
    assert_eq!(backend.read("other").await.unwrap().next_seq, 0);
    let after = backend.read("s").await.unwrap();
    assert_eq!(entries(&after), [b"w".to_vec(), b"x".to_vec(), b"y".to_vec(), b"z".to_vec()]);
    // The new life's guard holds.
    backend.append("s", after.unchanged(), Bytes::from_static(b"fresh")).await.unwrap();
}

async fn concurrent_runs_are_isolated<F: Factory>(factory: &F) {
    let store: Arc<CheckpointRows<F::B, Row>> = Arc::new(CheckpointRows::new(factory.open()));
    let mut tasks = Vec::new();
    for workflow in 0..12u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for sequence in 0..10 {
                store
                    .append(&format!("wf-{workflow}"), row(sequence, &format!("{workflow}/{sequence}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for workflow in 0..12u64 {
        let rows = store.load_run(&format!("wf-{workflow}")).await.unwrap();
        assert_eq!(rows.len(), 10);
        assert!(rows.iter().all(|r| r.state.starts_with(&format!("{workflow}/"))));
    }
}

async fn a_large_blob_round_trips<F: Factory>(factory: &F) {
    let store: CheckpointRows<F::B, Row> = CheckpointRows::new(factory.open());
    let blob: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i * 7) as u8).collect();
    store.append("big", Row { sequence: 0, state: "s".into(), blob: Some(blob.clone()) }).await.unwrap();
    assert_eq!(store.load_run("big").await.unwrap()[0].blob.as_deref(), Some(&blob[..]));
}

async fn a_value_that_does_not_decode_is_a_typed_error_naming_the_run<F: Factory>(factory: &F) {
    let backend = factory.open();
    backend
        .commit(vec![annals::stores::backend::StoreOp::append(
            "rows/broken",
            annals::stores::Expect::Any,
            &b"not a row"[..],
        )])
        .await
        .unwrap();
    let store: CheckpointRows<F::B, Row> = CheckpointRows::new(backend);
    let error = store.load_run("broken").await.unwrap_err();
    assert!(matches!(&error, StoreError::Decode { stream, seq: 0, .. } if stream == "rows/broken"), "{error}");
}

/// A backend that keeps `visit` to the trait's default (a `read`, lent),
/// so the default is held to the same contract as the backend's own.
struct DefaultVisit<B>(Arc<B>);

impl<B: Backend> Backend for DefaultVisit<B> {
    fn commit(&self, ops: Vec<StoreOp>) -> impl Future<Output = Result<Vec<Committed>, StoreError>> + Send {
        self.0.commit(ops)
    }

    fn commit_blocking(&self, ops: Vec<StoreOp>) -> Result<Vec<Committed>, StoreError> {
        self.0.commit_blocking(ops)
    }

    fn read(&self, stream: &str) -> impl Future<Output = Result<StreamContents, StoreError>> + Send {
        self.0.read(stream)
    }

    fn streams(&self, prefix: &str) -> impl Future<Output = Result<Vec<(String, u64)>, StoreError>> + Send {
        self.0.streams(prefix)
    }

    fn read_after(&self, after: Cursor, limit: usize) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send {
        self.0.read_after(after, limit)
    }

    fn read_range(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send {
        self.0.read_range(stream, from, limit)
    }

    fn read_stream_after(
        &self,
        stream: &str,
        after: Cursor,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send {
        self.0.read_stream_after(stream, after, limit)
    }
}

/// `commit_blocking` from threads that may block, beside `commit` from tasks.
async fn a_blocking_commit_keeps_the_contract_of_commit<F: Factory>(factory: &F)
where
    F::B: 'static,
{
    let backend = factory.open();
    let blocking = |ops: Vec<StoreOp>| {
        let backend = Arc::clone(&backend);
        tokio::task::spawn_blocking(move || backend.commit_blocking(ops))
    };
    let append = |expect, payload: &'static [u8]| StoreOp::append("s", expect, payload);
    let first = blocking(vec![append(Expect::Empty, b"a"), append(Expect::Next(1), b"b")]).await.unwrap().unwrap();
    assert_eq!(first.iter().map(|c| c.seq).collect::<Vec<_>>(), [0, 1]);
    assert!(first[0].cursor < first[1].cursor);
    // A failed expectation writes nothing of the batch and names what it found.
    let refused = blocking(vec![StoreOp::append("t", Expect::Any, &b"x"[..]), append(Expect::Next(1), b"c")]).await;
    let error = refused.unwrap().unwrap_err();
    assert!(
        matches!(&error, StoreError::Conflict { stream, expected: Expect::Next(1), actual: 2 } if stream == "s"),
        "{error}"
    );
    assert_eq!(backend.read("t").await.unwrap().next_seq, 0);
    // Blocking and async commits race on one stream: every one lands once, in cursor order.
    let mut racing = Vec::new();
    for i in 0..16u8 {
        let op = StoreOp::append("s", Expect::Any, vec![i]);
        if i % 2 == 0 {
            racing.push(blocking(vec![op]));
        } else {
            let backend = Arc::clone(&backend);
            racing.push(tokio::spawn(async move { backend.commit(vec![op]).await }));
        }
    }
    let mut cursors = Vec::new();
    for task in racing {
        cursors.push(task.await.unwrap().unwrap()[0].cursor);
    }
    let read = backend.read("s").await.unwrap();
    assert_eq!(read.next_seq, 18);
    let mut payloads: Vec<u8> = read.entries[2..].iter().map(|entry| entry.payload[0]).collect();
    assert!(read.entries.windows(2).all(|pair| pair[0].cursor < pair[1].cursor));
    payloads.sort_unstable();
    assert_eq!(payloads, (0..16).collect::<Vec<u8>>());
    cursors.sort_unstable();
    cursors.dedup();
    assert_eq!(cursors.len(), 16, "every commit has a cursor of its own");
    // The trait's own callers see the same through a wrapper that delegates.
    let wrapped = DefaultVisit(Arc::clone(&backend));
    let landed = wrapped.commit_blocking(vec![append(Expect::Next(18), b"d")]).unwrap();
    assert_eq!(landed[0].seq, 18);
}

/// `append` and `append_blocking`, the backend's own and the trait's
/// defaults (through a wrapper that delegates only `commit`), keep the
/// contract of a commit of one append: the expectation decides, a refused
/// append writes nothing and names the caller's own stream (also one the
/// log would show in hex), and every append lands once, in cursor order.
async fn an_append_keeps_the_contract_of_a_commit_of_one_append<F: Factory>(factory: &F)
where
    F::B: 'static,
{
    let backend = factory.open();
    let by_default = Arc::new(DefaultVisit(Arc::clone(&backend)));
    for (stream, blocking) in [("s", false), ("t\u{7}bell", true)] {
        let stream: &'static str = stream;
        let append = |expect: Expect, payload: &'static [u8]| {
            let (backend, by_default) = (Arc::clone(&backend), Arc::clone(&by_default));
            async move {
                if blocking {
                    // One after the other: the backend's own first, as the
                    // assertions below expect (spawned together, the two
                    // raced, and the default's sometimes landed first).
                    let own = tokio::task::spawn_blocking({
                        let backend = Arc::clone(&backend);
                        move || backend.append_blocking(stream, expect, Bytes::from_static(payload))
                    })
                    .await
                    .unwrap();
                    let default = tokio::task::spawn_blocking(move || {
                        by_default.append_blocking(stream, expect, Bytes::from_static(payload))
                    })
                    .await
                    .unwrap();
                    (own, default)
                } else {
                    let own = backend.append(stream, expect, Bytes::from_static(payload)).await;
                    (own, by_default.append(stream, expect, Bytes::from_static(payload)).await)
                }
            }
        };
        // Each pair appends twice to the stream: the backend's own, then the default's.
        let (own, default) = append(Expect::Empty, b"a").await;
        assert_eq!(own.unwrap().seq, 0);
        let error = default.unwrap_err();
        assert!(
            matches!(&error, StoreError::Conflict { stream: s, expected: Expect::Empty, actual: 1 } if s == stream),
            "{error}"
        );
        let (own, default) = append(Expect::Next(1), b"b").await;
        let (own_next, default) = (own.unwrap(), default.unwrap_err());
        assert_eq!(own_next.seq, 1);
        assert!(matches!(&default, StoreError::Conflict { actual: 2, .. }), "{default}");
        let (own, default) = append(Expect::Any, b"c").await;
        let (own_any, default_any) = (own.unwrap(), default.unwrap());
        assert_eq!((own_any.seq, default_any.seq), (2, 3));
        assert!(own_next.cursor < own_any.cursor && own_any.cursor < default_any.cursor);
        let (own, default) = append(Expect::Next(9), b"refused").await;
        for error in [own.unwrap_err(), default.unwrap_err()] {
            assert!(
                matches!(&error, StoreError::Conflict { stream: s, expected: Expect::Next(9), actual: 4 } if s == stream),
                "{error}"
            );
        }
        let read = backend.read(stream).await.unwrap();
        let payloads: Vec<&[u8]> = read.entries.iter().map(|entry| &entry.payload[..]).collect();
        assert_eq!(payloads, [&b"a"[..], b"b", b"c", b"c"], "the refused appends wrote nothing");
        assert_eq!(
            read.entries.iter().map(|entry| entry.cursor).collect::<Vec<_>>()[1..3],
            [own_next.cursor, own_any.cursor]
        );
        assert_eq!(read.entries[3].cursor, default_any.cursor);
        assert_eq!(read.entries[2].timestamp_ms, own_any.timestamp_ms);
    }
}

/// What `visit` lends, owned.
type Lent = (u64, Cursor, EntryKind, u64, Vec<u8>);

/// Everything `visit` lends of `stream`.
async fn visited<B: Backend>(backend: &B, stream: &str) -> Vec<Lent> {
    let mut seen = Vec::new();
    let collect = |entry: EntryRef<'_>| {
        seen.push((entry.seq, entry.cursor, entry.kind, entry.timestamp_ms, entry.payload.to_vec()));
        Ok(())
    };
    backend.visit(stream, collect).await.unwrap();
    seen
}

async fn visit_lends_what_read_returns_and_stops_at_the_first_error<F: Factory>(factory: &F) {
    let backend = factory.open();
    let append = |payload: &'static [u8]| StoreOp::append("s", Expect::Any, payload);
    backend.commit(vec![append(b"a"), append(b"b"), append(b"c")]).await.unwrap();
    backend.commit(vec![StoreOp::snapshot("s", 1, &b"through b"[..]), append(b"d")]).await.unwrap();
    backend.commit(vec![StoreOp::append("other", Expect::Any, &b"x"[..])]).await.unwrap();
    backend.commit(vec![StoreOp::clear("other", Expect::Any)]).await.unwrap();
    let read = backend.read("s").await.unwrap();
    let expected: Vec<_> = read
        .snapshot
        .iter()
        .chain(&read.entries)
        .map(|entry| (entry.seq, entry.cursor, entry.kind, entry.timestamp_ms, entry.payload.to_vec()))
        .collect();
    let payloads: Vec<&[u8]> = expected.iter().map(|(_, _, _, _, payload)| &payload[..]).collect();
    assert_eq!(payloads, [&b"through b"[..], b"c", b"d"], "the snapshot, then the entries after it");
    let by_default = DefaultVisit(Arc::clone(&backend));
    for seen in [visited(&*backend, "s").await, visited(&by_default, "s").await] {
        assert_eq!(seen, expected);
    }
    assert!(visited(&*backend, "other").await.is_empty(), "a cleared stream lends nothing");
    assert!(visited(&*backend, "unknown").await.is_empty());
    for calls in [visit_until_the_second_fails(&*backend).await, visit_until_the_second_fails(&by_default).await] {
        assert_eq!(calls, 2, "nothing after the error");
    }
}

/// Visits `s` with a callback that fails on its second call; returns how
/// often it was called, after checking that its error is the result.
async fn visit_until_the_second_fails<B: Backend>(backend: &B) -> usize {
    let mut calls = 0;
    let fail_second = |_: EntryRef<'_>| {
        calls += 1;
        if calls == 2 { Err(StoreError::InvalidArgument("stop".to_owned())) } else { Ok(()) }
    };
    let result = backend.visit("s", fail_second).await;
    assert!(matches!(&result, Err(StoreError::InvalidArgument(reason)) if reason == "stop"), "{result:?}");
    calls
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Checkpoint {
    step: u32,
    state: Vec<u8>,
}

fn checkpoint(step: u32) -> Checkpoint {
    Checkpoint { step, state: vec![step as u8; 100] }
}

async fn a_saved_checkpoint_loads_and_a_missing_one_is_none<F: Factory>(factory: &F) {
    let store: WholeCheckpoints<F::B, Checkpoint> = WholeCheckpoints::new(factory.open());
    store.save("run-a", &checkpoint(1)).await.unwrap();
    assert_eq!(store.load("run-a").await.unwrap(), Some(checkpoint(1)));
    assert_eq!(store.load("run-b").await.unwrap(), None);
}

async fn save_overwrites_and_survives_a_reopen<F: Factory>(factory: &F) {
    {
        let store: WholeCheckpoints<F::B, Checkpoint> = WholeCheckpoints::new(factory.open());
        for step in 1..=5 {
            store.save("run", &checkpoint(step)).await.unwrap();
        }
    }
    let store: WholeCheckpoints<F::B, Checkpoint> = WholeCheckpoints::new(factory.open());
    assert_eq!(store.load("run").await.unwrap(), Some(checkpoint(5)));
    assert_eq!(store.list().await.unwrap().len(), 1, "one checkpoint per run, however often it was saved");
}

async fn list_returns_every_run_most_recently_saved_first<F: Factory>(factory: &F) {
    let store: WholeCheckpoints<F::B, Checkpoint> = WholeCheckpoints::new(factory.open());
    store.save("first", &checkpoint(1)).await.unwrap();
    store.save("second", &checkpoint(2)).await.unwrap();
    store.save("third", &checkpoint(3)).await.unwrap();
    store.save("first", &checkpoint(4)).await.unwrap();
    let listed: Vec<String> = store.list().await.unwrap().into_iter().map(|(run, _)| run).collect();
    assert_eq!(listed, ["first", "third", "second"]);
}

async fn delete_forgets_one_run_and_an_unknown_run_is_a_no_op<F: Factory>(factory: &F) {
    let store: WholeCheckpoints<F::B, Checkpoint> = WholeCheckpoints::new(factory.open());
    store.save("kept", &checkpoint(1)).await.unwrap();
    store.save("gone", &checkpoint(2)).await.unwrap();
    store.delete("gone").await.unwrap();
    store.delete("never").await.unwrap();
    assert_eq!(store.load("gone").await.unwrap(), None);
    assert_eq!(store.list().await.unwrap(), vec![("kept".to_owned(), checkpoint(1))]);
}

/// Two stores of different checkpoint types on one backend listed each
/// other's checkpoints and failed to decode them (found by the blazen
/// adapter): a namespace keeps them apart.
async fn stores_in_different_namespaces_do_not_see_each_other<F: Factory>(factory: &F) {
    let backend = factory.open();
    let plain: WholeCheckpoints<F::B, Checkpoint> = WholeCheckpoints::new(backend.clone());
    let other: WholeCheckpoints<F::B, String> = WholeCheckpoints::in_namespace(backend, "other");
    plain.save("a/b", &checkpoint(1)).await.unwrap();
    other.save("a", &"text".to_owned()).await.unwrap();
    assert_eq!(plain.list().await.unwrap(), vec![("a/b".to_owned(), checkpoint(1))]);
    assert_eq!(other.list().await.unwrap(), vec![("a".to_owned(), "text".to_owned())]);
}

async fn snapshot_run_folds_the_rows_it_covers_and_they_stay_duplicates<F: Factory>(factory: &F) {
    {
        let store: CheckpointRows<F::B, Row> = CheckpointRows::new(factory.open());
        for sequence in 0..10 {
            store.append("run", row(sequence, &format!("step {sequence}"))).await.unwrap();
        }
        let unknown = store.load_run_versioned::<String>("other").await.unwrap().version;
        assert!(!store.snapshot_run("other", &unknown, 5, &"nothing").await.unwrap(), "an unknown run folds nothing");
        let version = store.load_run_versioned::<String>("run").await.unwrap().version;
        assert!(store.snapshot_run("run", &version, 6, &"through six".to_owned()).await.unwrap());
        let rows = store.load_run("run").await.unwrap();
        assert_eq!(rows.iter().map(|r| r.sequence).collect::<Vec<_>>(), [7, 8, 9]);
        assert_eq!(store.load_snapshot::<String>("run").await.unwrap(), Some((6, "through six".to_owned())));
        assert!(matches!(store.append("run", row(3, "again")).await, Err(StoreError::Duplicate { .. })));
        store.append("run", row(10, "step 10")).await.unwrap();
    }
    let store: CheckpointRows<F::B, Row> = CheckpointRows::new(factory.open());
    let rows = store.load_run("run").await.unwrap();
    assert_eq!(rows.iter().map(|r| r.sequence).collect::<Vec<_>>(), [7, 8, 9, 10], "the same after a restart");
    assert!(matches!(store.append("run", row(6, "again")).await, Err(StoreError::Duplicate { .. })));
    // Folding again goes further, and the latest fold is the one read.
    let VersionedRun { rows, version, .. } = store.load_run_versioned::<String>("run").await.unwrap();
    assert_eq!(rows.iter().map(|r| r.sequence).collect::<Vec<_>>(), [7, 8, 9, 10], "a versioned load reads the same");
    assert!(store.snapshot_run("run", &version, 9, &"through nine".to_owned()).await.unwrap());
    assert_eq!(store.load_snapshot::<String>("run").await.unwrap(), Some((9, "through nine".to_owned())));
    assert_eq!(store.load_run("run").await.unwrap(), vec![row(10, "step 10")]);
    store.clear("run").await.unwrap();
    assert_eq!(store.load_snapshot::<String>("run").await.unwrap(), None);
    assert!(store.load_run("run").await.unwrap().is_empty());
}

async fn rows_a_snapshot_folded_are_given_back_by_the_backend<F: Factory>(factory: &F) {
    let backend = factory.open();
    let store: CheckpointRows<F::B, Row> = CheckpointRows::new(backend.clone());
    let marked = |sequence: u64| Row { sequence, state: format!("<marked-{sequence}>"), blob: Some(vec![7; 4096]) };
    for sequence in 0..40 {
        store.append("run", marked(sequence)).await.unwrap();
    }
    let version = store.load_run_versioned::<String>("run").await.unwrap().version;
    store.snapshot_run("run", &version, 34, &"folded".to_owned()).await.unwrap();
    // Enough more writing that the folded rows' segment is sealed (a new
    // log's first segment is 1 MiB).
    for sequence in 40..300 {
        store.append("other", marked(sequence)).await.unwrap();
    }
    let stored = factory.reclaimed_payloads(&backend);
    let contains = |needle: &[u8]| stored.iter().any(|p| p.windows(needle.len()).any(|w| w == needle));
    for sequence in 0..=34 {
        assert!(!contains(format!("<marked-{sequence}>").as_bytes()), "row {sequence} was folded but is still stored");
    }
    for sequence in 35..300 {
        assert!(contains(format!("<marked-{sequence}>").as_bytes()), "row {sequence} is live but was not kept");
    }
}

fn history<F: Factory>(backend: Arc<F::B>) -> CheckpointHistory<F::B, Checkpoint> {
    CheckpointHistory::new(backend)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn id_ms(id: CheckpointId) -> u64 {
    let (seconds, nanos) = id.get_timestamp().expect("a UUIDv7 has a timestamp").to_unix();
    seconds * 1000 + u64::from(nanos) / 1_000_000
}

/// Ids are UUIDv7s carrying the save's time, unique, and within a key
/// larger in the order the saves were committed, however many race.
async fn history_ids_are_time_ordered_and_unique_under_concurrent_saves<F: Factory>(factory: &F) {
    let store = Arc::new(history::<F>(factory.open()));
    let started_ms = now_ms();
    let mut tasks = Vec::new();
    for task in 0..8u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for step in 0..10 {
                ids.push(store.save("wf/exec", &checkpoint(task * 100 + step)).await.unwrap());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    let finished_ms = now_ms();
    let listed: Vec<CheckpointId> = store.list("wf/exec").await.unwrap().iter().map(|meta| meta.id).collect();
    assert_eq!(listed.len(), 80);
    assert!(listed.windows(2).all(|pair| pair[0] > pair[1]), "newest first is largest id first");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 80, "every id unique");
    assert_eq!(ids, listed.iter().rev().copied().collect::<Vec<_>>());
    for id in &ids {
        assert_eq!(id.get_version_num(), 7, "{id}");
        assert!((started_ms..=finished_ms).contains(&id_ms(*id)), "{id} is not from the save's time");
    }
}

async fn load_latest_is_the_last_saved_also_after_a_reopen<F: Factory>(factory: &F) {
    let last = {
        let store = history::<F>(factory.open());
        assert_eq!(store.load_latest("wf/exec").await.unwrap(), None);
        let mut last = None;
        // Saved within a millisecond or two: the clock cannot tell them apart.
        for step in 1..=5 {
            last = Some(store.save("wf/exec", &checkpoint(step)).await.unwrap());
        }
        assert_eq!(store.load_latest("wf/exec").await.unwrap(), Some((last.unwrap(), checkpoint(5))));
        last.unwrap()
    };
    let store = history::<F>(factory.open());
    assert_eq!(store.load_latest("wf/exec").await.unwrap(), Some((last, checkpoint(5))));
    let after = store.save("wf/exec", &checkpoint(6)).await.unwrap();
    assert!(after > last, "an id saved after a reopen is larger");
    assert_eq!(store.load_latest("wf/exec").await.unwrap(), Some((after, checkpoint(6))));
}

async fn load_by_id_finds_each_checkpoint_and_an_unknown_id_is_none<F: Factory>(factory: &F) {
    let store = history::<F>(factory.open());
    let mut ids = Vec::new();
    for step in 1..=4 {
        ids.push(store.save("wf/exec", &checkpoint(step)).await.unwrap());
    }
    for (step, id) in (1..=4).zip(&ids) {
        assert_eq!(store.load("wf/exec", *id).await.unwrap(), Some(checkpoint(step)));
    }
    assert_eq!(store.load("wf/exec", CheckpointId::now_v7()).await.unwrap(), None);
    assert_eq!(store.load("wf/other", ids[0]).await.unwrap(), None, "an id belongs to its key");
    assert_eq!(store.find(ids[2]).await.unwrap(), Some(("wf/exec".to_owned(), checkpoint(3))), "found by id alone");
    assert_eq!(store.find(CheckpointId::now_v7()).await.unwrap(), None);
}

/// A checkpoint whose header is whole but whose body is not a checkpoint.
fn undecodable_entry(id: CheckpointId) -> Vec<u8> {
    use annals::stores::checkpoint_history::{HISTORY_TAG, HISTORY_VERSION};
    let body = b"not a checkpoint";
    let mut payload = vec![HISTORY_TAG, HISTORY_VERSION, 0, 0];
    payload.extend_from_slice(id.as_bytes());
    payload.extend_from_slice(&(body.len() as u64).to_le_bytes());
    payload.extend_from_slice(&9u64.to_le_bytes()); // summary
    payload.extend_from_slice(body);
    payload
}

async fn list_is_newest_first_with_metadata_and_decodes_no_body<F: Factory>(factory: &F) {
    let backend = factory.open();
    let store = history::<F>(backend.clone());
    let before_ms = now_ms();
    let mut ids = Vec::new();
    for step in 1..=3 {
        ids.push(store.save_with_summary("wf/exec", &checkpoint(step), u64::from(step) * 10).await.unwrap());
    }
    let odd = CheckpointId::now_v7();
    let op = annals::stores::StoreOp::append("history/wf/exec", annals::stores::Expect::Any, undecodable_entry(odd));
    backend.commit(vec![op]).await.unwrap();
    let listed = store.list("wf/exec").await.expect("listing reads headers only");
    assert_eq!(listed.iter().map(|meta| meta.id).collect::<Vec<_>>(), [odd, ids[2], ids[1], ids[0]]);
    assert_eq!(
        (listed[0].stored_bytes, listed[0].raw_bytes, listed[0].compressed, listed[0].summary),
        (16, 16, false, 9)
    );
    assert_eq!(listed.iter().map(|meta| meta.summary).collect::<Vec<_>>(), [9, 30, 20, 10]);
    for meta in &listed[1..] {
        assert!(!meta.compressed);
        assert_eq!(meta.stored_bytes, meta.raw_bytes);
        assert!(meta.stored_bytes > 100, "a 100-byte state is in the body");
    }
    assert!(listed.windows(2).all(|pair| pair[0].timestamp_ms >= pair[1].timestamp_ms));
    assert!((before_ms..=now_ms()).contains(&listed[3].timestamp_ms), "the timestamp is the commit's");
    let error = store.load_latest("wf/exec").await.unwrap_err();
    assert!(matches!(&error, StoreError::Decode { stream, seq: 3, .. } if stream == "history/wf/exec"), "{error}");
    assert_eq!(store.load("wf/exec", ids[1]).await.unwrap(), Some(checkpoint(2)), "the others still load");
    assert!(store.list("wf/never").await.unwrap().is_empty());
}

fn marked(step: u32) -> Checkpoint {
    let mut state = format!("<history-{step}>").into_bytes();
    state.resize(4096, 7);
    Checkpoint { step, state }
}

async fn prune_keeps_the_newest_and_the_backend_gives_back_the_rest<F: Factory>(factory: &F) {
    let backend = factory.open();
    let store = history::<F>(backend.clone());
    let mut ids = Vec::new();
    for step in 0..5 {
        ids.push(store.save("wf/exec", &marked(step)).await.unwrap());
    }
    assert_eq!(store.prune("wf/exec", 2).await.unwrap(), 3);
    assert_eq!(store.prune("wf/exec", 2).await.unwrap(), 0, "nothing more to prune");
    assert_eq!(store.list("wf/exec").await.unwrap().iter().map(|meta| meta.id).collect::<Vec<_>>(), [ids[4], ids[3]]);
    for id in &ids[..3] {
        assert_eq!(store.load("wf/exec", *id).await.unwrap(), None);
    }
    assert_eq!(store.load_latest("wf/exec").await.unwrap(), Some((ids[4], marked(4))));
    let next = store.save("wf/exec", &marked(5)).await.unwrap();
    assert!(next > ids[4], "a prune keeps the order");
    // Enough more writing that the pruned checkpoints' segment is sealed (a
    // new log's first segment is 1 MiB).
    for step in 100..400 {
        store.save("wf/filler", &marked(step)).await.unwrap();
    }
    let stored = factory.reclaimed_payloads(&backend);
    let contains = |needle: &[u8]| stored.iter().any(|p| p.windows(needle.len()).any(|w| w == needle));
    for step in 0..3 {
        assert!(!contains(format!("<history-{step}>").as_bytes()), "checkpoint {step} was pruned but is still stored");
    }
    for step in (3..6).chain(100..400) {
        assert!(contains(format!("<history-{step}>").as_bytes()), "checkpoint {step} is live but was not kept");
    }
    assert_eq!(store.prune("wf/exec", 0).await.unwrap(), 3, "keep 0 prunes all");
    assert!(store.list("wf/exec").await.unwrap().is_empty());
}

async fn history_keys_are_isolated_and_delete_all_forgets_one<F: Factory>(factory: &F) {
    let store = history::<F>(factory.open());
    for step in 0..3 {
        store.save("wf/a", &checkpoint(step)).await.unwrap();
    }
    let kept = store.save("wf/b", &checkpoint(10)).await.unwrap();
    assert_eq!(store.prune("wf/a", 1).await.unwrap(), 2);
    assert_eq!(store.list("wf/b").await.unwrap().len(), 1, "a prune of one key spares the others");
    assert_eq!(store.delete_all("wf/a").await.unwrap(), 1);
    assert_eq!(store.delete_all("wf/never").await.unwrap(), 0);
    assert_eq!(store.load_latest("wf/a").await.unwrap(), None);
    assert!(store.list("wf/a").await.unwrap().is_empty());
    assert_eq!(store.load_latest("wf/b").await.unwrap(), Some((kept, checkpoint(10))));
    let again = store.save("wf/a", &checkpoint(20)).await.unwrap();
    assert_eq!(store.load_latest("wf/a").await.unwrap(), Some((again, checkpoint(20))), "a deleted key starts over");
}

async fn compression_round_trips_and_is_flagged<F: Factory>(factory: &F) {
    let backend = factory.open();
    let store: CheckpointHistory<F::B, Checkpoint> =
        CheckpointHistory::in_namespace(backend.clone(), "", Compression::Lz4);
    let roomy = Checkpoint { step: 1, state: vec![42; 64 * 1024] };
    let roomy_id = store.save("wf/exec", &roomy).await.unwrap();
    let tiny = Checkpoint { step: 2, state: vec![] };
    let tiny_id = store.save("wf/exec", &tiny).await.unwrap();
    let listed = store.list("wf/exec").await.unwrap();
    assert_eq!((listed[0].id, listed[0].compressed), (tiny_id, false), "kept as is when compression does not help");
    assert_eq!((listed[1].id, listed[1].compressed), (roomy_id, true));
    assert!(listed[1].stored_bytes * 10 < listed[1].raw_bytes, "{:?}", listed[1]);
    assert_eq!(store.load("wf/exec", roomy_id).await.unwrap(), Some(roomy.clone()));
    let plain = history::<F>(backend);
    assert_eq!(plain.load("wf/exec", roomy_id).await.unwrap(), Some(roomy), "any store reads compressed bodies");
}

async fn a_damaged_compressed_body_is_a_typed_error_naming_stream_and_sequence<F: Factory>(factory: &F) {
    let backend = factory.open();
    let store: CheckpointHistory<F::B, Checkpoint> =
        CheckpointHistory::in_namespace(backend.clone(), "", Compression::Lz4);
    let id = store
        .save("wf/exec", &Checkpoint { step: 1, state: (0..4096).map(|i| (i % 13) as u8).collect() })
        .await
        .unwrap();
    let good = backend.read("history/wf/exec").await.unwrap().entries[0].payload.to_vec();
    assert!(store.list("wf/exec").await.unwrap()[0].compressed, "the body this test damages is compressed");
    let header = annals::stores::checkpoint_history::HEADER_BYTES;
    let mut damaged = Vec::new();
    damaged.push(good[..good.len() / 2].to_vec()); // the body cut short
    let mut flipped = good.clone();
    flipped[header..].iter_mut().for_each(|byte| *byte = !*byte);
    damaged.push(flipped); // every body byte flipped
    let mut huge = good.clone();
    huge[header - 16..header - 8].copy_from_slice(&u64::MAX.to_le_bytes());
    damaged.push(huge); // a raw size no block can give
    let mut short = good.clone();
    short[header - 16..header - 8].copy_from_slice(&8u64.to_le_bytes());
    damaged.push(short); // a raw size smaller than the block gives
    for (index, payload) in damaged.into_iter().enumerate() {
        let seq = index as u64 + 1;
        let op = annals::stores::StoreOp::append("history/wf/exec", annals::stores::Expect::Next(seq), payload);
        backend.commit(vec![op]).await.unwrap();
        let error = store.load_latest("wf/exec").await.unwrap_err();
        assert!(
            matches!(&error, StoreError::Decode { stream, seq: s, .. } if stream == "history/wf/exec" && *s == seq),
            "{error}"
        );
        let error = store.load("wf/exec", id).await.unwrap_err();
        assert!(matches!(&error, StoreError::Decode { seq: s, .. } if *s == seq), "{error}");
    }
    assert_eq!(store.list("wf/exec").await.unwrap().len(), 5, "damaged bodies still list");
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
        rows_round_trip_in_ascending_order_whatever_the_insert_order,
        a_duplicate_sequence_is_rejected_and_never_overwrites,
        rows_survive_a_reopen_and_duplicates_are_still_caught,
        clear_forgets_one_run_only_and_an_unknown_id_is_a_no_op,
        concurrent_appends_to_one_run_keep_every_distinct_sequence_once,
        two_stores_racing_one_run_never_both_win_a_sequence,
        a_run_cleared_by_another_store_takes_its_old_sequences_again,
        a_run_cleared_and_refilled_to_the_same_length_by_another_store_still_refuses_its_rows,
        a_guard_on_a_stream_s_life_fails_after_a_clear_and_as_many_appends_again,
        concurrent_runs_are_isolated,
        a_large_blob_round_trips,
        a_value_that_does_not_decode_is_a_typed_error_naming_the_run,
        visit_lends_what_read_returns_and_stops_at_the_first_error,
        a_blocking_commit_keeps_the_contract_of_commit,
        an_append_keeps_the_contract_of_a_commit_of_one_append,
        a_saved_checkpoint_loads_and_a_missing_one_is_none,
        save_overwrites_and_survives_a_reopen,
        list_returns_every_run_most_recently_saved_first,
        delete_forgets_one_run_and_an_unknown_run_is_a_no_op,
        stores_in_different_namespaces_do_not_see_each_other,
        snapshot_run_folds_the_rows_it_covers_and_they_stay_duplicates,
        rows_a_snapshot_folded_are_given_back_by_the_backend,
        history_ids_are_time_ordered_and_unique_under_concurrent_saves,
        load_latest_is_the_last_saved_also_after_a_reopen,
        load_by_id_finds_each_checkpoint_and_an_unknown_id_is_none,
        list_is_newest_first_with_metadata_and_decodes_no_body,
        prune_keeps_the_newest_and_the_backend_gives_back_the_rest,
        history_keys_are_isolated_and_delete_all_forgets_one,
        compression_round_trips_and_is_flagged,
        a_damaged_compressed_body_is_a_typed_error_naming_stream_and_sequence,
    );
}
