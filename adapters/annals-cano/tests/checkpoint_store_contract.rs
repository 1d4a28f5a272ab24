//! The `CheckpointStore` contract through the adapter: the checklist of
//! cano's own redb store tests (order, reopen, isolation, unknown ids,
//! duplicates, concurrency, large blobs, every `RowKind`, the workflow
//! version, damaged rows), written anew against `AnnalsCheckpointStore`,
//! plus what is particular to Annals (the directory lock, close, limits).

use std::path::Path;
use std::sync::Arc;

use annals::stores::backend::StoreOp;
use annals::stores::{Backend, Expect};
use annals_cano::AnnalsCheckpointStore;
use cano::CanoError;
use cano::recovery::{CheckpointRow, CheckpointStore, RowKind};

fn open(dir: &Path) -> AnnalsCheckpointStore {
    AnnalsCheckpointStore::open(dir).expect("open the store")
}

fn sequences(rows: &[CheckpointRow]) -> Vec<u64> {
    rows.iter().map(|row| row.sequence).collect()
}

fn assert_checkpoint_store_error(error: &CanoError, words: &str) {
    assert_eq!(error.category(), "checkpoint_store", "{error}");
    assert!(error.message().contains(words), "{words:?} not in {:?}", error.message());
}

/// cano replays rows in `load_run` order, so it must be ascending by
/// sequence even when the appends came in another order.
#[tokio::test]
async fn rows_load_in_ascending_sequence_whatever_the_insert_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for sequence in [5, 1, 9, 0, 3] {
        store.append("run", CheckpointRow::new(sequence, format!("S{sequence}"), "t")).await.unwrap();
    }
    let rows = store.load_run("run").await.unwrap();
    assert_eq!(sequences(&rows), [0, 1, 3, 5, 9]);
    assert!(rows.iter().all(|row| row.state == format!("S{}", row.sequence)));
}

/// Recovery reads what an earlier process wrote: rows survive dropping the
/// store and reopening the directory, and so does duplicate detection.
#[tokio::test]
async fn rows_survive_a_reopen_and_still_reject_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.append("run", CheckpointRow::new(0, "A", "t0")).await.unwrap();
        store.append("run", CheckpointRow::new(1, "B", "t1")).await.unwrap();
    }
    let store = open(dir.path());
    let rows = store.load_run("run").await.unwrap();
    assert_eq!(rows, [CheckpointRow::new(0, "A", "t0"), CheckpointRow::new(1, "B", "t1")]);
    let error = store.append("run", CheckpointRow::new(1, "B again", "t1")).await.unwrap_err();
    assert_checkpoint_store_error(&error, "checkpoint conflict");
    store.append("run", CheckpointRow::new(2, "C", "t2")).await.unwrap();
}

/// A completed workflow clears its own rows and never another's.
#[tokio::test]
async fn clear_forgets_one_workflow_and_leaves_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append("a", CheckpointRow::new(0, "A0", "t")).await.unwrap();
    store.append("a", CheckpointRow::new(1, "A1", "t")).await.unwrap();
    store.append("b", CheckpointRow::new(0, "B0", "t")).await.unwrap();
    store.clear("a").await.unwrap();
    assert!(store.load_run("a").await.unwrap().is_empty());
    assert_eq!(store.load_run("b").await.unwrap(), [CheckpointRow::new(0, "B0", "t")]);
    store.append("a", CheckpointRow::new(0, "A0 anew", "t")).await.expect("a cleared id starts over");
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.load_run("a").await.unwrap(), [CheckpointRow::new(0, "A0 anew", "t")], "the clear is durable");
}

/// A fresh `resume_from` of an id the store never saw finds nothing, and
/// clearing it is a no-op, not an error.
#[tokio::test]
async fn an_unknown_workflow_loads_empty_and_clears_as_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(store.load_run("never-seen").await.unwrap().is_empty());
    store.clear("never-seen").await.unwrap();
    assert!(store.load_run("never-seen").await.unwrap().is_empty());
}

/// cano relies on a duplicate `(workflow id, sequence)` being refused, not
/// overwritten, to catch two runs sharing an id.
#[tokio::test]
async fn a_duplicate_sequence_is_a_checkpoint_store_conflict_and_the_first_row_stays() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append("run", CheckpointRow::new(0, "A", "t0")).await.unwrap();
    let error = store.append("run", CheckpointRow::new(0, "A again", "t0")).await.unwrap_err();
    assert_checkpoint_store_error(&error, "checkpoint conflict");
    assert!(error.message().contains("\"run\"") && error.message().contains("sequence 0"), "{error}");
    store.append("run", CheckpointRow::new(1, "B", "t1")).await.unwrap();
    let rows = store.load_run("run").await.unwrap();
    assert_eq!(rows, [CheckpointRow::new(0, "A", "t0"), CheckpointRow::new(1, "B", "t1")]);
    store.append("other", CheckpointRow::new(0, "A", "t0")).await.expect("another id may use sequence 0");
}

/// One store serves many workflows at once: their rows never mix and each
/// run keeps its order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_to_distinct_workflows_stay_isolated_and_ordered() {
    const RUNS: u64 = 16;
    const ROWS_PER_RUN: u64 = 12;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let tasks: Vec<_> = (0..RUNS)
        .map(|run| {
            let store = store.clone();
            tokio::spawn(async move {
                for sequence in 0..ROWS_PER_RUN {
                    let row = CheckpointRow::new(sequence, format!("S{run}-{sequence}"), "t");
                    store.append(&format!("run-{run}"), row).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for run in 0..RUNS {
        let rows = store.load_run(&format!("run-{run}")).await.unwrap();
        assert_eq!(sequences(&rows), (0..ROWS_PER_RUN).collect::<Vec<_>>(), "run {run}");
        assert!(
            rows.iter().all(|row| row.state == format!("S{run}-{}", row.sequence)),
            "run {run} holds another's row"
        );
    }
}

/// The store commits on the caller's thread in a multi-threaded runtime's
/// `block_on` (a LocalSet's included) and through the log's writer thread
/// from tasks and current-thread runtimes: appends from all of them at once,
/// to one workflow and to their own, each land once, in order.
#[test]
fn appends_from_every_kind_of_caller_land_once_each() {
    const ROWS: u64 = 24;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let shared_sequence = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let append_rows = |caller: &'static str| {
        let (store, shared_sequence) = (store.clone(), shared_sequence.clone());
        async move {
            for sequence in 0..ROWS {
                store.append(caller, CheckpointRow::new(sequence, caller, "t")).await.unwrap();
                let shared = shared_sequence.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                store.append("shared", CheckpointRow::new(shared, caller, "t")).await.unwrap();
            }
        }
    };
    let multi = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let current_thread = std::thread::spawn({
        let rows = append_rows("current-thread");
        move || tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(rows)
    });
    let local = tokio::task::LocalSet::new();
    let task = multi.spawn(append_rows("task"));
    multi.block_on(local.run_until(async {
        let local_task = tokio::task::spawn_local(append_rows("local-task"));
        append_rows("block-on").await;
        local_task.await.unwrap();
    }));
    multi.block_on(task).unwrap();
    current_thread.join().unwrap();
    multi.block_on(async {
        for caller in ["current-thread", "task", "local-task", "block-on"] {
            assert_eq!(sequences(&store.load_run(caller).await.unwrap()), (0..ROWS).collect::<Vec<_>>(), "{caller}");
        }
        assert_eq!(sequences(&store.load_run("shared").await.unwrap()), (0..4 * ROWS).collect::<Vec<_>>());
    });
}

/// Appends of distinct sequences to one workflow may race (a split state's
/// branches): every one lands, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_of_distinct_sequences_to_one_workflow_all_land() {
    const ROWS: u64 = 32;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let tasks: Vec<_> = (0..ROWS)
        .map(|sequence| {
            let store = store.clone();
            tokio::spawn(
                async move { store.append("run", CheckpointRow::new(sequence, format!("S{sequence}"), "t")).await },
            )
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(sequences(&store.load_run("run").await.unwrap()), (0..ROWS).collect::<Vec<_>>());
}

/// Racing appends of one sequence: exactly one lands, every other gets a
/// conflict, and the row kept is the winner's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_of_one_sequence_let_exactly_one_win() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let tasks: Vec<_> = (0..8)
        .map(|contender| {
            let store = store.clone();
            tokio::spawn(async move {
                let outcome = store.append("run", CheckpointRow::new(0, format!("by {contender}"), "t")).await;
                (contender, outcome)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (contender, Ok(())) => winners.push(contender),
            (_, Err(error)) => assert_checkpoint_store_error(&error, "checkpoint conflict"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(store.load_run("run").await.unwrap(), [CheckpointRow::new(0, format!("by {}", winners[0]), "t")]);
}

/// Two stores over one log (say, two components of a service) are guarded
/// by the log, not by either store's memory: no sequence is won twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_over_one_log_never_both_win_a_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(annals::Log::open(dir.path(), annals::Options::default()).unwrap());
    let stores = [AnnalsCheckpointStore::from_log(log.clone()), AnnalsCheckpointStore::from_log(log)].map(Arc::new);
    let tasks: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(index, store)| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut won = Vec::new();
                for sequence in 0..24 {
                    match store.append("shared", CheckpointRow::new(sequence, format!("store {index}"), "t")).await {
                        Ok(()) => won.push(sequence),
                        Err(error) => assert_checkpoint_store_error(&error, "checkpoint conflict"),
                    }
                }
                won
            })
        })
        .collect();
    let mut won = Vec::new();
    for task in tasks {
        won.extend(task.await.unwrap());
    }
    won.sort_unstable();
    assert_eq!(won, (0..24).collect::<Vec<_>>(), "every sequence won exactly once");
    assert_eq!(stores[1].load_run("shared").await.unwrap().len(), 24);
}

/// A saga output or a stepped cursor can be large: a 5 MiB blob comes back
/// byte for byte.
#[tokio::test]
async fn a_five_mebibyte_blob_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let blob: Vec<u8> = (0..5 << 20).map(|i: usize| (i % 251) as u8).collect();
    store.append("run", CheckpointRow::new(0, "Big", "t").with_output(blob.clone())).await.unwrap();
    drop(store);
    let rows = open(dir.path()).load_run("run").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].output_blob.as_deref(), Some(&blob[..]));
}

/// `resume_from` routes rows by kind; every kind, with its blob (an empty
/// blob distinct from none), must come back as written.
#[tokio::test]
async fn every_row_kind_round_trips_with_its_blob() {
    let dir = tempfile::tempdir().unwrap();
    let written = [
        CheckpointRow::new(0, "A", "task-a"),
        CheckpointRow::new(1, "B", "task-b").with_output(vec![1, 2, 3]),
        CheckpointRow::new(2, "C", "task-c").with_cursor(vec![4, 5]),
        CheckpointRow::new(3, "D", "task-d").with_output(Vec::new()),
        CheckpointRow::new(4, "E", "task-e").with_cursor(Vec::new()),
    ];
    {
        let store = open(dir.path());
        for row in written.clone() {
            store.append("run", row).await.unwrap();
        }
    }
    let rows = open(dir.path()).load_run("run").await.unwrap();
    assert_eq!(rows, written);
    let kinds: Vec<RowKind> = rows.iter().map(|row| row.kind).collect();
    assert_eq!(
        kinds,
        [
            RowKind::StateEntry,
            RowKind::CompensationCompletion,
            RowKind::StepCursor,
            RowKind::CompensationCompletion,
            RowKind::StepCursor
        ]
    );
    assert_eq!(rows[0].output_blob, None);
    assert_eq!(rows[3].output_blob, Some(Vec::new()));
}

/// `resume_from` rejects rows of another workflow version, so the version
/// must survive storage exactly.
#[tokio::test]
async fn the_workflow_version_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.append("wf", CheckpointRow::new(0, "Start", "task").with_workflow_version(7)).await.unwrap();
        store.append("wf", CheckpointRow::new(1, "Next", "task").with_workflow_version(u32::MAX)).await.unwrap();
        store.append("wf", CheckpointRow::new(2, "Last", "task")).await.unwrap();
    }
    let rows = open(dir.path()).load_run("wf").await.unwrap();
    assert_eq!(rows.iter().map(|row| row.workflow_version).collect::<Vec<_>>(), [7, u32::MAX, 0]);
}

/// A row whose bytes do not decode fails `load_run` with a
/// `checkpoint_store` error naming the workflow, and does not panic.
#[tokio::test]
async fn a_row_that_does_not_decode_is_a_checkpoint_store_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append("run", CheckpointRow::new(0, "A", "t0")).await.unwrap();
    store.append("other", CheckpointRow::new(0, "A", "t0")).await.unwrap();
    // Past the adapter, on the run's stream: bytes that are no row.
    for garbage in [&[0xFF_u8; 4][..], b"\xA5\x01\x01\x00not msgpack", b""] {
        let op = StoreOp::append("rows/run", Expect::Any, garbage.to_vec());
        // `Log::commit` (a log batch) shadows the backend seam's `commit`.
        Backend::commit(store.log().as_ref(), vec![op]).await.unwrap();
        let error = store.load_run("run").await.expect_err("a damaged row is an error");
        assert_checkpoint_store_error(&error, "cannot decode a checkpoint row of workflow \"run\"");
        assert!(error.message().contains("rows/run"), "{error}");
    }
    let error = store.append("run", CheckpointRow::new(9, "Z", "t")).await.expect_err("append reads the run too");
    assert_checkpoint_store_error(&error, "cannot decode");
    assert_eq!(store.load_run("other").await.unwrap().len(), 1, "other runs still load");
    store.clear("run").await.expect("a damaged run can be cleared");
    assert!(store.load_run("run").await.unwrap().is_empty());
}

/// A load decodes into the list the last load emptied before it sizes the
/// one it returns: runs of other lengths, a load that failed halfway, and
/// loads at once each get exactly their own rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_of_runs_of_other_lengths_after_a_failed_load_and_at_once_get_their_own_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let lengths = [0_u64, 1, 3, 20, 1500, 2];
    for (run, &length) in lengths.iter().enumerate() {
        for sequence in (0..length).rev() {
            store
                .append(&format!("run-{run}"), CheckpointRow::new(sequence, format!("S{run}.{sequence}"), "t"))
                .await
                .unwrap();
        }
    }
    store.append("damaged", CheckpointRow::new(0, "A", "t")).await.unwrap();
    Backend::commit(store.log().as_ref(), vec![StoreOp::append("rows/damaged", Expect::Any, b"no row".to_vec())])
        .await
        .unwrap();
    let expected = |run: usize| -> Vec<CheckpointRow> {
        (0..lengths[run]).map(|sequence| CheckpointRow::new(sequence, format!("S{run}.{sequence}"), "t")).collect()
    };
    for run in [3, 1, 4, 0, 2, 5, 3] {
        assert_eq!(store.load_run(&format!("run-{run}")).await.unwrap(), expected(run), "run-{run}");
        store.load_run("damaged").await.expect_err("a damaged run is an error");
    }
    let loads: Vec<_> = (0..24)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { (i % 6, store.load_run(&format!("run-{}", i % 6)).await.unwrap()) })
        })
        .collect();
    for load in loads {
        let (run, rows) = load.await.unwrap();
        assert_eq!(rows, expected(run), "run-{run} loaded at once with others");
    }
}

/// A flipped bit inside a durable row on disk is caught by the log's
/// checksum, when the directory is opened or (opened from the index image)
/// when the row is read: a typed corruption error naming the file, never a
/// panic and never a silently different row.
#[tokio::test]
async fn a_flipped_byte_in_a_durable_row_is_a_typed_corruption_error_at_open_or_read() {
    const MARK: &[u8] = b"state-to-damage-0123456789";
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.append("run", CheckpointRow::new(0, "A", "t")).await.unwrap();
        store.append("run", CheckpointRow::new(1, std::str::from_utf8(MARK).unwrap(), "t")).await.unwrap();
        store.append("run", CheckpointRow::new(2, "C", "t")).await.unwrap();
        store.close().await.unwrap();
    }
    let mut damaged = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|extension| extension == "seg") {
            let mut bytes = std::fs::read(&path).unwrap();
            if let Some(at) = bytes.windows(MARK.len()).position(|window| window == MARK) {
                bytes[at + 3] ^= 0x01;
                std::fs::write(&path, bytes).unwrap();
                damaged += 1;
            }
        }
    }
    assert_eq!(damaged, 1, "the row was found in one segment");
    match AnnalsCheckpointStore::open(dir.path()) {
        Err(annals::Error::Corruption(corruption)) => {
            assert!(corruption.to_string().contains(".seg"), "the error names the file: {corruption}");
        }
        Err(other) => panic!("expected a corruption error, got {other}"),
        // Opened from the persisted index image, which spares open reading
        // the covered frames: the row's checksum is checked when it is read.
        Ok(store) => match store.load_run("run").await {
            Err(error) => {
                let message = error.to_string();
                assert!(message.contains("checksum") && message.contains(".seg"), "a typed corruption: {message}");
            }
            Ok(rows) => panic!("read a damaged log; it returned {rows:?}"),
        },
    }
}

/// One writer per directory: a second open while the first store lives is
/// refused with a typed error, and `close` releases the directory at once,
/// even while the closed store is still alive, which then refuses work:
/// committing through the log's writer thread (a current-thread runtime)
/// and on the caller's thread (a multi-threaded runtime's `block_on`) alike.
#[tokio::test]
async fn the_directory_is_locked_while_a_store_lives_and_close_releases_it() {
    directory_lock_and_close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_is_locked_and_close_releases_it_when_commits_run_on_the_callers_thread() {
    directory_lock_and_close().await;
}

async fn directory_lock_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    first.append("run", CheckpointRow::new(0, "A", "t")).await.unwrap();
    assert!(matches!(AnnalsCheckpointStore::open(dir.path()), Err(annals::Error::Locked { .. })));
    first.close().await.unwrap();
    let error = first.append("run", CheckpointRow::new(1, "B", "t")).await.expect_err("a closed store refuses work");
    assert_checkpoint_store_error(&error, "closed");
    let second = AnnalsCheckpointStore::open(dir.path()).expect("close released the lock");
    assert_eq!(second.load_run("run").await.unwrap(), [CheckpointRow::new(0, "A", "t")]);
    first.close().await.expect("closing twice is harmless");
}

/// A row over the log's record limit is refused with a `checkpoint_store`
/// error that says so, and nothing is written.
#[tokio::test]
async fn a_row_over_the_record_limit_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let options = annals::Options { record_bytes_max: 4096, ..annals::Options::default() };
    let store = AnnalsCheckpointStore::from_log(Arc::new(annals::Log::open(dir.path(), options).unwrap()));
    let error = store.append("run", CheckpointRow::new(0, "Big", "t").with_output(vec![7; 8192])).await.unwrap_err();
    assert_checkpoint_store_error(&error, "over the limit");
    assert!(store.load_run("run").await.unwrap().is_empty());
    store.append("run", CheckpointRow::new(0, "Small", "t")).await.expect("the sequence is still free");
}
