//! Review 16: a run's fold (`load_run_versioned`, then `snapshot_run`)
//! with rows appended out of sequence order.
//!
//! Each test is named after the bug it found, or the behaviour its fix
//! must keep.

mod common;

use std::sync::Arc;

use annals::stores::StoreError;
use annals::stores::checkpoint_rows::{CheckpointRows, VersionedRun};
use annals::{Log, Options};
use common::read_race::{Row, row, run};

fn sequences(rows: &[Row]) -> Vec<u64> {
    rows.iter().map(|row| row.sequence).collect()
}

/// A store on a fresh log with rows of these sequences in run `w`, appended in this order.
fn store_with(appended: &[u64]) -> (tempfile::TempDir, Arc<Log>, CheckpointRows<Log, Row>) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), Options::default()).unwrap());
    let store: CheckpointRows<_, Row> = CheckpointRows::new(log.clone());
    run(async {
        for &sequence in appended {
            store.append("w", row(sequence, "seen")).await.unwrap();
        }
    });
    (dir, log, store)
}

/// `snapshot_run` checked only the prefix of rows it prunes (those
/// appended before the first row above `through`) against the caller's
/// load. A row at or below `through` appended since the load, after a
/// row above it, was neither pruned nor a reason to refuse: the fold went
/// through, and the snapshot claimed rows through 3 with a state that had
/// never seen row 2, although the documentation promises a conflict for a
/// row at or below `through` appended since the version. The fold now
/// checks the last row at or below `through` wherever it stands; loaded
/// again, the fold covers row 2 and goes through.
#[test]
fn snapshot_run_folded_over_a_row_below_through_appended_since_the_load_behind_a_row_above_it() {
    let (_dir, log, store) = store_with(&[0, 1]);
    let version = run(store.load_run_versioned::<String>("w")).unwrap().version;
    let other: CheckpointRows<_, Row> = CheckpointRows::new(log.clone());
    run(other.append("w", row(5, "since the load"))).unwrap();
    run(other.append("w", row(2, "since the load"))).unwrap();
    let folded = run(store.snapshot_run("w", &version, 3, &"rows 0 and 1".to_owned()));
    assert!(matches!(folded, Err(StoreError::Conflict { .. })), "{folded:?}");
    assert_eq!(run(store.load_snapshot::<String>("w")).unwrap(), None);
    assert_eq!(sequences(&run(store.load_run("w")).unwrap()), [0, 1, 2, 5]);
    let VersionedRun { rows, version, .. } = run(store.load_run_versioned::<String>("w")).unwrap();
    assert_eq!(sequences(&rows), [0, 1, 2, 5]);
    assert!(run(store.snapshot_run("w", &version, 3, &"rows 0 to 2".to_owned())).unwrap());
    assert_eq!(run(store.load_snapshot("w")).unwrap(), Some((3, "rows 0 to 2".to_owned())));
}

/// A fold loaded before a compaction (which drops the rows an earlier
/// fold pruned and writes the run a base) and a reopen goes through after
/// them: the run's life and its snapshot read the same. Cleared and begun
/// again, the old version is refused and a fresh one folds.
#[test]
fn a_fold_loaded_before_a_compaction_and_a_reopen_goes_through_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let load = |log: &Arc<Log>| CheckpointRows::<_, Row>::new(log.clone());
    let log = Arc::new(Log::open(dir.path(), common::small_options()).unwrap());
    let store = load(&log);
    run(async {
        for s in 0..40 {
            store.append("w", Row { sequence: s, what: "x".repeat(300) }).await.unwrap();
        }
    });
    let v = run(store.load_run_versioned::<String>("w")).unwrap().version;
    assert!(run(store.snapshot_run("w", &v, 29, &"0..=29".to_owned())).unwrap());
    let loaded = run(store.load_run_versioned::<String>("w")).unwrap();
    assert!(log.compact().unwrap().bases_written > 0, "the compaction wrote the run a base");
    // Reopen between the load and the fold.
    drop(store);
    run(async { Arc::try_unwrap(log).ok().unwrap().close().await }).unwrap();
    let log = Arc::new(Log::open(dir.path(), common::small_options()).unwrap());
    let store = load(&log);
    let again = run(store.load_run_versioned::<String>("w")).unwrap();
    assert_eq!(again.version, loaded.version, "the same run read before and after a compaction and a reopen");
    let folded = run(store.snapshot_run("w", &loaded.version, 35, &"0..=35".to_owned()));
    assert!(folded.unwrap());
    assert!(log.compact().unwrap().generation > 0);
    let loaded = run(store.load_run_versioned::<String>("w")).unwrap();
    assert_eq!(loaded.folded, Some((35, "0..=35".to_owned())));
    assert_eq!(sequences(&loaded.rows), (36..40).collect::<Vec<_>>());
    run(store.clear("w")).unwrap();
    run(store.append("w", row(0, "new life"))).unwrap();
    let stale = run(store.snapshot_run("w", &loaded.version, 0, &"old".to_owned()));
    assert!(matches!(stale, Err(StoreError::Conflict { .. })), "{stale:?}");
    let fresh = run(store.load_run_versioned::<String>("w")).unwrap();
    assert!(run(store.snapshot_run("w", &fresh.version, 0, &"new".to_owned())).unwrap());
}

/// Review 16's second finding: rows appended out of sequence order (rows
/// 0, 2 and 1, in that order) and folded through 1 left row 1 on disk
/// (only row 0, before the first row above 1, was pruned), and every read
/// handed it back after the fold whose state already held it: a caller following the documentation
/// ("the rows after it") applied row 1 twice. A read now hides a row at or
/// below the fold's `through` written before the fold, in `load_run` and
/// in `load_run_versioned`, after a reopen and a compaction too.
#[test]
fn a_row_a_fold_holds_behind_a_row_above_through_was_read_again_after_the_fold() {
    let (dir, log, store) = store_with(&[0, 2, 1]);
    let version = run(store.load_run_versioned::<String>("w")).unwrap().version;
    assert!(run(store.snapshot_run("w", &version, 1, &"rows 0 and 1".to_owned())).unwrap());
    let check = |store: &CheckpointRows<Log, Row>| {
        assert_eq!(sequences(&run(store.load_run("w")).unwrap()), [2]);
        let loaded = run(store.load_run_versioned::<String>("w")).unwrap();
        assert_eq!(loaded.folded, Some((1, "rows 0 and 1".to_owned())));
        assert_eq!(sequences(&loaded.rows), [2]);
    };
    check(&store);
    assert!(matches!(run(store.append("w", row(1, "again"))), Err(StoreError::Duplicate { .. })));
    drop(store);
    log.compact().unwrap();
    run(log.close()).unwrap();
    drop(log);
    let log = Arc::new(Log::open(dir.path(), Options::default()).unwrap());
    check(&CheckpointRows::new(log.clone()));
}

/// Review 16's first finding, what the fix above must not hide: a handle
/// that remembered the run from before another handle's fold appends a
/// row at or below its `through` (the fold moved no sequence its guard
/// checks). That row is not in the fold's state, so it is read, once.
#[test]
fn a_row_at_or_below_through_appended_after_the_fold_is_still_read() {
    let (_dir, log, store) = store_with(&[0, 1, 2]);
    let stale: CheckpointRows<_, Row> = CheckpointRows::new(log.clone());
    run(stale.append("w", row(3, "remembers the run"))).unwrap();
    let version = run(store.load_run_versioned::<String>("w")).unwrap().version;
    assert!(run(store.snapshot_run("w", &version, 5, &"rows 0 to 3".to_owned())).unwrap());
    run(stale.append("w", row(4, "after the fold"))).unwrap();
    assert_eq!(sequences(&run(store.load_run("w")).unwrap()), [4]);
    assert_eq!(sequences(&run(store.load_run_versioned::<String>("w")).unwrap().rows), [4]);
}
