//! Review 14: a run's fold computed from one load and committed after
//! other appends to the run.
//!
//! Each test is named after the bug it found, or the behaviour its fix
//! must keep.

mod common;

use std::sync::Arc;

use annals::stores::StoreError;
use annals::stores::checkpoint_rows::{CheckpointRows, VersionedRun};
use annals::{Log, Options};
use common::read_race::{ReadRace, Row, elsewhere, row, run};

fn sequences(rows: &[Row]) -> Vec<u64> {
    rows.iter().map(|row| row.sequence).collect()
}

/// A store on a fresh log with rows `0..rows` in run `w`.
fn store_with(rows: u64) -> (tempfile::TempDir, Arc<Log>, CheckpointRows<Log, Row>) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), Options::default()).unwrap());
    let store: CheckpointRows<_, Row> = CheckpointRows::new(log.clone());
    run(async {
        for sequence in 0..rows {
            store.append("w", row(sequence, "seen")).await.unwrap();
        }
    });
    (dir, log, store)
}

/// A store through a [`ReadRace`] on a fresh log, with rows 0 to 3 in run `w`.
fn racing_store_with_rows_0_to_3() -> (tempfile::TempDir, Arc<ReadRace>, CheckpointRows<ReadRace, Row>) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), Options::default()).unwrap());
    let racing = Arc::new(ReadRace::new(log));
    let store: CheckpointRows<_, Row> = CheckpointRows::new(racing.clone());
    run(async {
        for sequence in 0..4 {
            store.append("w", row(sequence, "seen")).await.unwrap();
        }
    });
    (dir, racing, store)
}

/// `snapshot_run(w, through, state)` took the caller's word that `state`
/// covered every row at or below `through`, and folded the rows the run
/// held when it committed. A caller that loaded rows 0 to 3, computed its
/// state from them and folded through 5, after another task appended row
/// 4, pruned row 4 under a state without it: an acknowledged row was gone
/// from `load_run` and from the snapshot. The fold now names the run as
/// the load saw it (`load_run_versioned`) and is refused when a row it
/// would cover was appended since; nothing is folded and row 4 stays.
#[test]
fn snapshot_run_folded_a_row_appended_after_the_load_its_state_came_from() {
    let (_dir, log, store) = store_with(4);
    let VersionedRun { rows, version, .. } = run(store.load_run_versioned::<String>("w")).unwrap();
    assert_eq!(sequences(&rows), [0, 1, 2, 3]);
    let other: CheckpointRows<_, Row> = CheckpointRows::new(log.clone());
    run(other.append("w", row(4, "appended after the load"))).unwrap();
    let folded = run(store.snapshot_run("w", &version, 5, &"state of rows 0 to 3".to_owned()));
    assert!(matches!(folded, Err(StoreError::Conflict { .. })), "{folded:?}");
    assert_eq!(sequences(&run(store.load_run("w")).unwrap()), [0, 1, 2, 3, 4]);
    assert_eq!(run(store.load_snapshot::<String>("w")).unwrap(), None);
    // Loaded again, the fold covers row 4 and goes through.
    let VersionedRun { rows, version, .. } = run(store.load_run_versioned::<String>("w")).unwrap();
    assert_eq!(sequences(&rows), [0, 1, 2, 3, 4]);
    assert!(run(store.snapshot_run("w", &version, 5, &"state of rows 0 to 4".to_owned())).unwrap());
    assert!(run(store.load_run("w")).unwrap().is_empty());
    assert_eq!(run(store.load_snapshot("w")).unwrap(), Some((5, "state of rows 0 to 4".to_owned())));
}

/// The same race inside the fold: the other task's row at or below
/// `through` lands between the fold's own read and its commit. The
/// guarded commit is refused, the retry reads the run again, and finds a
/// row the caller's load did not see.
#[test]
fn snapshot_run_refuses_a_row_at_or_below_through_landing_between_its_read_and_its_commit() {
    let (_dir, racing, store) = racing_store_with_rows_0_to_3();
    let version = run(store.load_run_versioned::<String>("w")).unwrap().version;
    racing.arm("rows/w", |log: &Arc<Log>| {
        let other: CheckpointRows<_, Row> = CheckpointRows::new(log.clone());
        elsewhere(async { other.append("w", row(4, "landed during the fold")).await.unwrap() });
    });
    let folded = run(store.snapshot_run("w", &version, 5, &"state of rows 0 to 3".to_owned()));
    assert!(racing.after_reading.lock().unwrap().is_none(), "the other task's append landed");
    assert!(matches!(folded, Err(StoreError::Conflict { .. })), "{folded:?}");
    assert_eq!(sequences(&run(store.load_run("w")).unwrap()), [0, 1, 2, 3, 4]);
    assert_eq!(run(store.load_snapshot::<String>("w")).unwrap(), None);
}

/// Rows appended since the load above `through` are not the fold's: it
/// goes through and keeps them, whether they landed before the fold's
/// read or between its read and its commit.
#[test]
fn snapshot_run_folds_past_rows_above_through_appended_since_the_load_and_keeps_them() {
    let (_dir, racing, store) = racing_store_with_rows_0_to_3();
    let version = run(store.load_run_versioned::<String>("w")).unwrap().version;
    run(store.append("w", row(10, "before the fold"))).unwrap();
    racing.arm("rows/w", |log: &Arc<Log>| {
        let other: CheckpointRows<_, Row> = CheckpointRows::new(log.clone());
        elsewhere(async { other.append("w", row(11, "during the fold")).await.unwrap() });
    });
    assert!(run(store.snapshot_run("w", &version, 3, &"state of rows 0 to 3".to_owned())).unwrap());
    assert_eq!(sequences(&run(store.load_run("w")).unwrap()), [10, 11]);
    assert_eq!(run(store.load_snapshot("w")).unwrap(), Some((3, "state of rows 0 to 3".to_owned())));
}

/// A run read empty (never begun, or cleared) has no rows a state could
/// cover: rows appended since are refused a fold under it.
#[test]
fn snapshot_run_under_a_version_read_before_the_run_began_folds_none_of_its_rows() {
    let (_dir, log, store) = store_with(0);
    let VersionedRun { rows, version, .. } = run(store.load_run_versioned::<String>("w")).unwrap();
    assert!(rows.is_empty());
    let other: CheckpointRows<_, Row> = CheckpointRows::new(log.clone());
    run(other.append("w", row(0, "begun after the load"))).unwrap();
    let folded = run(store.snapshot_run("w", &version, 0, &"state of nothing".to_owned()));
    assert!(matches!(folded, Err(StoreError::Conflict { .. })), "{folded:?}");
    assert_eq!(sequences(&run(store.load_run("w")).unwrap()), [0]);
    // Cleared and begun again since the load: also refused.
    let version = run(store.load_run_versioned::<String>("w")).unwrap().version;
    run(other.clear("w")).unwrap();
    run(other.append("w", row(0, "second life"))).unwrap();
    let folded = run(store.snapshot_run("w", &version, 0, &"state of the first life".to_owned()));
    assert!(matches!(folded, Err(StoreError::Conflict { .. })), "{folded:?}");
    assert_eq!(run(store.load_run("w")).unwrap(), [row(0, "second life")]);
}

/// A caller that computed its state from `load_snapshot` and then
/// `load_run`, two reads, could straddle another handle's fold: the first
/// read found no fold, the second the rows after the other's fold, and the
/// state missed the rows that fold took. `load_run_versioned` returns the
/// fold and the rows after it from one read; and a fold recorded since the
/// version is a conflict, so a state computed over an older fold never
/// replaces a newer one.
#[test]
fn a_fold_computed_over_a_snapshot_another_handle_replaced_since_is_refused() {
    let (_dir, log, store) = store_with(6);
    let other: CheckpointRows<_, Row> = CheckpointRows::new(log.clone());
    let first = run(other.load_run_versioned::<String>("w")).unwrap();
    assert!(run(other.snapshot_run("w", &first.version, 1, &"rows 0 to 1".to_owned())).unwrap());
    let loaded = run(store.load_run_versioned::<String>("w")).unwrap();
    assert_eq!(loaded.folded, Some((1, "rows 0 to 1".to_owned())), "the fold and the rows after it, in one read");
    assert_eq!(sequences(&loaded.rows), [2, 3, 4, 5]);
    // Another fold lands after that load.
    let second = run(other.load_run_versioned::<String>("w")).unwrap();
    assert!(run(other.snapshot_run("w", &second.version, 3, &"rows 0 to 3".to_owned())).unwrap());
    let folded = run(store.snapshot_run("w", &loaded.version, 4, &"rows 0 to 4 over the first fold".to_owned()));
    assert!(matches!(folded, Err(StoreError::Conflict { .. })), "{folded:?}");
    assert_eq!(run(store.load_snapshot("w")).unwrap(), Some((3, "rows 0 to 3".to_owned())));
    assert_eq!(sequences(&run(store.load_run("w")).unwrap()), [4, 5]);
}
