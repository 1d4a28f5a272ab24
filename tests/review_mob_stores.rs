//! Review of the mob stores (issue 10 point 7) on the embedded log: CAS
//! edge cases, decode errors, and event polling and pruning at the edges;
//! and what every store that removes and counts (events, checkpoint
//! history, runs) answers when another writer removes first. Each test
//! names the behaviour it holds; the ones a bug was found with say so.

use std::future::Future;
use std::sync::Arc;

use annals::stores::checkpoint_history::CheckpointHistory;
use annals::stores::mob_events::{MobEvents, NewMobEvent};
use annals::stores::mob_runs::{DocumentExpectation, DocumentWrite, MobRuns, RUN_DOCUMENT, RUN_SCHEMA, Versioned};
use annals::stores::mob_specs::MobSpecs;
use annals::stores::{Backend, Committed, Cursor, Entry, StoreError, StoreOp, StreamContents};
use annals::{Expectation, Log, Options};

fn run<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

fn open(dir: &std::path::Path) -> Arc<Log> {
    Arc::new(Log::open(dir, Options::default()).unwrap())
}

fn expect(name: &str, revision: u64) -> DocumentExpectation {
    DocumentExpectation { name: name.into(), revision }
}

fn put(name: &str, value: u32) -> DocumentWrite<u32> {
    DocumentWrite { name: name.into(), value: Some(value) }
}

/// A document named twice in `expected` (with the same revision) and
/// written: the expectations hold, so the write lands once, with one
/// revision back per write. Found in review: each repeated name planned
/// its write again, so the batch appended twice under one guard, always
/// conflicted with itself, and the call failed with `Contention`.
#[test]
fn multi_document_cas_with_a_document_expected_twice_writes_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let runs = MobRuns::new(open(dir.path()));
    run(async {
        runs.create_run("r", &0u32).await.unwrap();
        let written = runs
            .cas_documents("r", &[expect("frame", 0), expect(RUN_DOCUMENT, 1), expect("frame", 0)], &[put("frame", 7)])
            .await
            .unwrap();
        assert_eq!(written, Some(vec![1]));
        assert_eq!(runs.get_document::<u32>("r", "frame").await.unwrap(), Some(Versioned { value: 7, revision: 1 }));
        // Named twice with two different revisions: one of them cannot hold.
        let refused = runs.cas_documents("r", &[expect("frame", 1), expect("frame", 2)], &[put("frame", 8)]).await;
        assert_eq!(refused.unwrap(), None);
        let refused = runs.cas_documents("r", &[expect("frame", 2), expect("frame", 1)], &[put("frame", 8)]).await;
        assert_eq!(refused.unwrap(), None);
        assert_eq!(
            runs.get_document::<u32>("r", "frame").await.unwrap(),
            Some(Versioned { value: 7, revision: 1 }),
            "nothing written"
        );
    });
}

/// CAS on a run that does not exist answers `false` and creates nothing.
#[test]
fn run_cas_on_a_missing_run_is_false_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let runs = MobRuns::new(log.clone());
    run(async {
        assert!(!runs.update_run_if::<u32>("nope", |_| true, |v| *v += 1).await.unwrap());
        assert!(runs.get_run::<u32>("nope").await.unwrap().is_none());
        assert!(log.streams("").unwrap().is_empty(), "{:?}", log.streams(""));
        let error = runs.append_step("nope", &1u32).await.unwrap_err();
        assert!(matches!(error, StoreError::NotFound { .. }), "{error}");
        let error = runs.put_step_output("nope", "s", &1u32).await.unwrap_err();
        assert!(matches!(error, StoreError::NotFound { .. }), "{error}");
        assert!(log.streams("").unwrap().is_empty(), "{:?}", log.streams(""));
    });
}

/// An event that does not decode is a typed error naming its stream and
/// sequence, from `poll`, `replay_all` and `prune`; the events before it
/// still poll.
#[test]
fn an_event_that_does_not_decode_is_a_typed_error_naming_stream_and_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let events: MobEvents<Log, u32> = MobEvents::new(log.clone());
    run(async {
        let first = events.append(NewMobEvent { event: 1, timestamp_ms: Some(1) }).await.unwrap();
        log.append("mob-events", Expectation::Any, &b"not msgpack"[..]).wait().unwrap();
        let polled = events.poll(Cursor::START, 1).await.unwrap();
        assert_eq!(polled.len(), 1);
        for error in [
            events.poll(first.cursor, 10).await.unwrap_err(),
            events.replay_all().await.unwrap_err(),
            events.prune(u64::MAX).await.unwrap_err(),
        ] {
            assert!(matches!(&error, StoreError::Decode { stream, seq: 1, .. } if stream == "mob-events"), "{error}");
        }
        assert_eq!(events.poll(Cursor::START, 0).await.unwrap(), []);
    });
}

/// A spec id or namespace with `/`, `%` or `@` stays in its own streams:
/// specs of one namespace are not listed in another, nor in the default.
#[test]
fn spec_namespaces_and_ids_do_not_reach_into_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let plain: MobSpecs<Log, String> = MobSpecs::new(log.clone());
    let a: MobSpecs<Log, String> = MobSpecs::in_namespace(log.clone(), "a");
    let a_slash: MobSpecs<Log, String> = MobSpecs::in_namespace(log.clone(), "a/b");
    run(async {
        plain.put_spec("x", &"plain".to_owned(), Some(0)).await.unwrap();
        a.put_spec("b/x", &"a".to_owned(), Some(0)).await.unwrap();
        a_slash.put_spec("x", &"a/b".to_owned(), Some(0)).await.unwrap();
        a.put_spec("@a/x", &"at".to_owned(), Some(0)).await.unwrap();
        assert_eq!(plain.list_specs().await.unwrap(), ["x"]);
        assert_eq!(a.list_specs().await.unwrap(), ["@a/x", "b/x"]);
        assert_eq!(a_slash.list_specs().await.unwrap(), ["x"]);
        assert_eq!(a_slash.get_spec("x").await.unwrap(), Some(("a/b".to_owned(), 1)));
        let error = a.put_spec("b/x", &"again".to_owned(), Some(0)).await.unwrap_err();
        assert!(matches!(&error, StoreError::RevisionConflict { expected: Some(0), actual: 1, .. }), "{error}");
        assert!(!a.delete_spec("missing", Some(3)).await.unwrap());
        let error = a.delete_spec("b/x", Some(2)).await.unwrap_err();
        assert!(matches!(&error, StoreError::RevisionConflict { expected: Some(2), actual: 1, .. }), "{error}");
        assert!(a.delete_spec("b/x", Some(1)).await.unwrap());
        assert_eq!(a.list_specs().await.unwrap(), ["@a/x"]);
    });
}

/// `prune(older_than)` counts what it removed: a second prune with the
/// same bound removes and counts nothing, and the count across prunes is
/// the number of events gone.
#[test]
fn event_prune_counts_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let events: MobEvents<Log, u32> = MobEvents::new(open(dir.path()));
    run(async {
        for n in 0..10u32 {
            events.append(NewMobEvent { event: n, timestamp_ms: Some(100 + u64::from(n)) }).await.unwrap();
        }
        assert_eq!(events.prune(105).await.unwrap(), 5);
        assert_eq!(events.prune(105).await.unwrap(), 0);
        assert_eq!(events.prune(0).await.unwrap(), 0);
        assert_eq!(events.prune(u64::MAX).await.unwrap(), 5);
        assert_eq!(events.replay_all().await.unwrap(), []);
        assert_eq!(events.prune(u64::MAX).await.unwrap(), 0);
        let next = events.append(NewMobEvent { event: 99, timestamp_ms: None }).await.unwrap();
        assert_eq!(events.poll(Cursor::START, 10).await.unwrap(), [next]);
    });
}

type Hook = std::sync::Mutex<Option<Box<dyn FnOnce(&Log) + Send>>>;

/// The log as a backend, that runs `after_listing` (once) right after it
/// lists streams and before it answers, `after_reading` right after it
/// reads a stream's tail, and `after_read` right after it reads a whole
/// stream: another writer's commit landing between a store's read and its
/// commit, with no race to arrange.
struct ListingRace {
    log: Arc<Log>,
    after_listing: Hook,
    after_reading: Hook,
    after_read: Hook,
}

impl ListingRace {
    fn new(log: &Arc<Log>) -> Arc<ListingRace> {
        Arc::new(ListingRace {
            log: log.clone(),
            after_listing: Hook::default(),
            after_reading: Hook::default(),
            after_read: Hook::default(),
        })
    }
}

/// `answer`, with `hook` (if still set) run once it is ready and before
/// it is returned.
fn then_run<T>(hook: &Hook, log: &Arc<Log>, answer: impl Future<Output = T> + Send) -> impl Future<Output = T> + Send {
    let log = log.clone();
    let hook = hook.lock().unwrap().take();
    async move {
        let answer = answer.await;
        if let Some(hook) = hook {
            hook(&log);
        }
        answer
    }
}

impl Backend for ListingRace {
    fn commit(&self, ops: Vec<StoreOp>) -> impl Future<Output = Result<Vec<Committed>, StoreError>> + Send {
        Backend::commit(&*self.log, ops)
    }
    fn commit_blocking(&self, ops: Vec<StoreOp>) -> Result<Vec<Committed>, StoreError> {
        Backend::commit_blocking(&*self.log, ops)
    }
    fn read(&self, stream: &str) -> impl Future<Output = Result<StreamContents, StoreError>> + Send {
        then_run(&self.after_read, &self.log, Backend::read(&*self.log, stream))
    }
    fn read_range(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send {
        Backend::read_range(&*self.log, stream, from, limit)
    }
    fn read_stream_after(
        &self,
        stream: &str,
        after: Cursor,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send {
        then_run(&self.after_reading, &self.log, Backend::read_stream_after(&*self.log, stream, after, limit))
    }

    fn streams(&self, prefix: &str) -> impl Future<Output = Result<Vec<(String, u64)>, StoreError>> + Send {
        then_run(&self.after_listing, &self.log, Backend::streams(&*self.log, prefix))
    }
    fn read_after(&self, after: Cursor, limit: usize) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send {
        Backend::read_after(&*self.log, after, limit)
    }
}

/// Runs over a [`ListingRace`] on a log in `dir`, with the run `r`
/// created and the `after_listing` hook set to `hook`.
fn run_r_then(dir: &std::path::Path, hook: impl FnOnce(&Log) + Send + 'static) -> (Arc<Log>, MobRuns<ListingRace>) {
    let log = open(dir);
    let racing = ListingRace::new(&log);
    let runs = MobRuns::new(racing.clone());
    run(runs.create_run("r", &1u32)).unwrap();
    *racing.after_listing.lock().unwrap() = Some(Box::new(hook));
    (log, runs)
}

/// `delete_run` forgets every stream of the run, also one that another
/// writer created after the run's streams were listed (here the first
/// step of its ledger). Found in review: the clear covered only the
/// streams listed, so that step outlived the delete and showed in the
/// ledger of a run created again under the same id.
#[test]
fn delete_run_forgets_a_ledger_started_while_it_listed_the_runs_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (log, runs) = run_r_then(dir.path(), |log: &Log| {
        let stream = "mob-run/r/steps";
        let payload = annals::stores::codec::encode(stream, RUN_SCHEMA, &"late step").unwrap();
        log.append(stream, Expectation::Any, payload).wait().unwrap();
    });
    run(async {
        assert!(runs.delete_run("r").await.unwrap());
        assert!(log.streams("mob-run/r/").unwrap().is_empty(), "{:?}", log.streams("mob-run/r/"));
        runs.create_run("r", &2u32).await.unwrap();
        assert_eq!(runs.step_ledger::<String>("r").await.unwrap(), Vec::<String>::new());
    });
}

/// Two prunes racing with one bound remove each event once, and their
/// counts add up to the events removed. Found in review: each prune
/// counted what it read before its commit, so a prune that another one
/// overtook between its read and its commit reported the events again
/// (here 5 + 5 for 5 removed). Fixed in the seam: a prune's
/// `Committed::seq` is the stream's first live sequence before it, which
/// the log's writer reports, and the store counts from there.
#[test]
fn racing_event_prunes_count_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let racing = ListingRace::new(&log);
    let events: MobEvents<ListingRace, u32> = MobEvents::new(racing.clone());
    run(async {
        for n in 0..10u32 {
            events.append(NewMobEvent { event: n, timestamp_ms: Some(100 + u64::from(n)) }).await.unwrap();
        }
        // The other prune, as the store would commit it for the same bound.
        *racing.after_reading.lock().unwrap() = Some(Box::new(|log: &Log| {
            let other: MobEvents<Log, u32> = MobEvents::new(Arc::new(log.clone()));
            let counted = std::thread::scope(|scope| scope.spawn(|| run(other.prune(105))).join());
            assert_eq!(counted.unwrap().unwrap(), 5);
        }));
        let counted = events.prune(105).await.unwrap();
        assert_eq!(events.replay_all().await.unwrap().len(), 5);
        assert_eq!(counted, 0, "the other prune removed those 5 events");
    });
}

/// `poll` from the cursor of an event inside a batch returns the rest of
/// the batch and what follows, each once; an empty batch writes nothing;
/// a batch with one event over the backend's limits writes none of it.
#[test]
fn poll_from_inside_a_batch_and_batches_at_the_edges() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), Options { record_bytes_max: 4096, ..Options::default() }).unwrap());
    let events: MobEvents<Log, String> = MobEvents::new(log.clone());
    let new = |text: &str| NewMobEvent { event: text.to_owned(), timestamp_ms: None };
    run(async {
        assert_eq!(events.append_batch(Vec::new()).await.unwrap(), []);
        let batch = events.append_batch(["a", "b", "c", "d"].map(new).to_vec()).await.unwrap();
        events.append(new("e")).await.unwrap();
        let rest: Vec<String> =
            events.poll(batch[1].cursor, 10).await.unwrap().into_iter().map(|event| event.event).collect();
        assert_eq!(rest, ["c", "d", "e"]);
        let error = events.append_batch(vec![new("f"), new(&"x".repeat(8192))]).await.unwrap_err();
        assert!(matches!(error, StoreError::Backend(_)), "{error}");
        assert_eq!(events.replay_all().await.unwrap().len(), 5, "nothing of the refused batch");
    });
}

/// Runs `future` on a runtime of its own on another thread: a hook's
/// other writer, done before the hook returns.
fn elsewhere<T: Send>(future: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| scope.spawn(|| run(future)).join().unwrap())
}

/// Two racing `delete_run`s of one run: the one that finds the run gone
/// when it commits says `false`. Found in review (issue 10): each said
/// `true` for having committed its clears, so two callers each believed
/// they deleted the run.
#[test]
fn racing_run_deletes_say_true_once() {
    let dir = tempfile::tempdir().unwrap();
    let (log, runs) = run_r_then(dir.path(), |log: &Log| {
        let other = MobRuns::new(Arc::new(log.clone()));
        assert!(elsewhere(other.delete_run("r")).unwrap(), "the other delete finds the run");
    });
    run(async {
        runs.append_step("r", &"step".to_owned()).await.unwrap();
        assert!(!runs.delete_run("r").await.unwrap(), "the other delete removed it first");
        assert!(log.streams("mob-run/").unwrap().is_empty());
        assert!(!runs.delete_run("r").await.unwrap());
    });
}

fn history(log: &Log) -> CheckpointHistory<Log, u32> {
    CheckpointHistory::new(Arc::new(log.clone()))
}

/// A checkpoint history over a [`ListingRace`] on a log in `dir`, whose key
/// `k` holds the checkpoints 0 to 4, with its `after_read` hook set to
/// `hook`.
fn five_checkpoints_then(
    dir: &std::path::Path,
    hook: impl FnOnce(&Log) + Send + 'static,
) -> CheckpointHistory<ListingRace, u32> {
    let racing = ListingRace::new(&open(dir));
    let store = CheckpointHistory::new(racing.clone());
    run(async {
        for n in 0..5 {
            store.save("k", &n).await.unwrap();
        }
    });
    *racing.after_read.lock().unwrap() = Some(Box::new(hook));
    store
}

/// Another store prunes the key `k` to its 2 newest checkpoints: 3 go.
fn another_store_prunes_to_two(log: &Log) {
    assert_eq!(elsewhere(history(log).prune("k", 2)).unwrap(), 3);
}

/// Two stores pruning one key to the same count remove each checkpoint
/// once, and their counts add up to the checkpoints removed. Found in
/// review (issue 10), as with the events: each counted what it had read
/// (3 + 3 for 3 removed).
#[test]
fn racing_history_prunes_count_each_checkpoint_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = five_checkpoints_then(dir.path(), another_store_prunes_to_two);
    run(async {
        assert_eq!(store.prune("k", 2).await.unwrap(), 0, "the other prune removed those 3");
        assert_eq!(store.list("k").await.unwrap().len(), 2);
    });
}

/// `delete_all` racing a prune of its key counts only the checkpoints it
/// removed itself. Found in review (issue 10): it counted all it had read.
#[test]
fn history_delete_all_racing_a_prune_counts_only_what_it_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = five_checkpoints_then(dir.path(), another_store_prunes_to_two);
    run(async {
        assert_eq!(store.delete_all("k").await.unwrap(), 2, "the prune removed the other 3");
        assert!(store.list("k").await.unwrap().is_empty());
        assert_eq!(store.delete_all("k").await.unwrap(), 0);
    });
}

/// A prune decided on a key that another store then deleted and saved
/// again keeps the newest `keep_count` of the key as it is now. Found in
/// review (issue 10): the prune removed by the sequences it had read, which
/// the key took again after the delete, so it removed new checkpoints and
/// kept fewer than asked.
#[test]
fn a_history_prune_never_applies_to_a_key_deleted_and_saved_again_since_its_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = five_checkpoints_then(dir.path(), |log: &Log| {
        let other = history(log);
        elsewhere(async {
            assert_eq!(other.delete_all("k").await.unwrap(), 5);
            for n in 10..14 {
                other.save("k", &n).await.unwrap();
            }
        });
    });
    run(async {
        assert_eq!(store.prune("k", 2).await.unwrap(), 2, "2 of the 4 saved since");
        let kept: Vec<u32> = store.load_latest("k").await.unwrap().into_iter().map(|(_, n)| n).collect();
        assert_eq!(kept, [13]);
        assert_eq!(store.list("k").await.unwrap().len(), 2, "the newest 2 are kept");
    });
}
