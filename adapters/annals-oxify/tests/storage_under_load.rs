//! oxify's `CheckpointStorage` through the adapter as an engine would hit
//! it: a second handle on the directory, saves racing prunes from several
//! threads, list order across a reopen, and values at the edges of the
//! log's limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use annals_oxify::AnnalsCheckpointStorage;
use oxify_model::{CheckpointError, CheckpointStorage, ExecutionCheckpoint, ExecutionState};

fn checkpoint(nodes: usize, text_bytes: usize) -> ExecutionCheckpoint {
    ExecutionCheckpoint {
        timestamp: chrono::Utc::now(),
        completed_nodes: (0..nodes).map(|_| uuid::Uuid::new_v4()).collect(),
        variables: if text_bytes == 0 {
            Default::default()
        } else {
            [("text".to_owned(), serde_json::json!("x".repeat(text_bytes)))].into()
        },
        state: ExecutionState::Running,
    }
}

/// A second open of a directory a storage holds is the log's typed
/// `Locked` error, never a second writer over the same files.
#[test]
fn a_second_open_of_the_directory_is_a_typed_locked_error() {
    let dir = tempfile::tempdir().unwrap();
    let first = AnnalsCheckpointStorage::open(dir.path()).unwrap();
    let execution = uuid::Uuid::new_v4();
    first.save_checkpoint(execution, &checkpoint(1, 0)).unwrap();
    match AnnalsCheckpointStorage::open(dir.path()) {
        Err(annals::Error::Locked { .. }) => {}
        Err(other) => panic!("not a Locked error: {other}"),
        Ok(_) => panic!("a second storage opened a held directory"),
    }
    assert_eq!(first.list_checkpoints(execution).unwrap().len(), 1);
}

/// Four threads save to one execution while a fifth prunes it to its three
/// newest again and again. Every checkpoint is counted by exactly one
/// prune, the newest three saved are never pruned, and `list` is newest
/// first (ids descending), the same after a reopen.
#[test]
fn saves_racing_prunes_keep_the_newest_and_count_each_pruned_checkpoint_once() {
    const SAVERS: usize = 4;
    const SAVES_EACH: usize = 40;
    const KEEP: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let execution = uuid::Uuid::new_v4();
    let pruned = AtomicUsize::new(0);
    let saved_ids = {
        let storage = Arc::new(AnnalsCheckpointStorage::open(dir.path()).unwrap());
        let done = AtomicUsize::new(0);
        let ids = std::thread::scope(|scope| {
            let pruner = scope.spawn(|| {
                while done.load(Ordering::SeqCst) < SAVERS {
                    pruned.fetch_add(storage.prune_checkpoints(execution, KEEP).unwrap(), Ordering::SeqCst);
                }
            });
            let savers: Vec<_> = (0..SAVERS)
                .map(|_| {
                    scope.spawn(|| {
                        let ids: Vec<_> = (0..SAVES_EACH)
                            .map(|i| storage.save_checkpoint(execution, &checkpoint(i, 16)).unwrap())
                            .collect();
                        done.fetch_add(1, Ordering::SeqCst);
                        ids
                    })
                })
                .collect();
            let ids: Vec<_> = savers.into_iter().flat_map(|saver| saver.join().unwrap()).collect();
            pruner.join().unwrap();
            ids
        });
        pruned.fetch_add(storage.prune_checkpoints(execution, KEEP).unwrap(), Ordering::SeqCst);
        ids
    };
    assert_eq!(pruned.load(Ordering::SeqCst), SAVERS * SAVES_EACH - KEEP, "each pruned checkpoint counted once");
    let mut newest: Vec<_> = saved_ids.clone();
    newest.sort_unstable_by(|a, b| b.cmp(a));
    newest.truncate(KEEP);
    let storage = AnnalsCheckpointStorage::open(dir.path()).unwrap();
    let listed: Vec<_> = storage.list_checkpoints(execution).unwrap().iter().map(|meta| meta.id).collect();
    assert_eq!(listed, newest, "the newest {KEEP}, newest first, after a reopen");
    let latest = storage.load_latest_checkpoint(execution).unwrap().unwrap();
    let by_id = storage.load_checkpoint(newest[0]).unwrap().unwrap();
    assert_eq!((latest.completed_nodes, latest.timestamp), (by_id.completed_nodes, by_id.timestamp));
}

/// An empty checkpoint round-trips; one over the log's record limit is a
/// typed storage error that writes nothing, and the execution goes on.
#[test]
fn empty_and_oversized_checkpoints_are_saved_or_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let storage = AnnalsCheckpointStorage::open(dir.path()).unwrap();
    let execution = uuid::Uuid::new_v4();
    let empty = checkpoint(0, 0);
    let id = storage.save_checkpoint(execution, &empty).unwrap();
    assert_eq!(storage.load_checkpoint(id).unwrap().unwrap().variables, empty.variables);
    let limit = annals::Options::default().record_bytes_max;
    match storage.save_checkpoint(execution, &checkpoint(3, limit + 1)) {
        Err(CheckpointError::StorageError(message)) => assert!(message.contains("over the limit"), "{message}"),
        other => panic!("an oversized checkpoint: {other:?}"),
    }
    assert_eq!(storage.list_checkpoints(execution).unwrap().len(), 1, "nothing written");
    let big = checkpoint(3, limit / 2);
    let id = storage.save_checkpoint(execution, &big).unwrap();
    assert_eq!(storage.load_latest_checkpoint(execution).unwrap().unwrap().variables, big.variables);
    assert_eq!(storage.list_checkpoints(execution).unwrap()[0].id, id);
}
