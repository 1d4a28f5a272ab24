//! Review 12: the typed stores under concurrent misuse: two handles on
//! one log, one's commit landing between the other's read and its commit.
//!
//! Each test is named after the bug it found; it failed before the fix.

mod common;

use std::sync::Arc;

use annals::stores::StoreError;
use annals::stores::checkpoint_rows::CheckpointRows;
use annals::{Log, Options};
use common::read_race::{ReadRace, Row, elsewhere, row, run};

/// `snapshot_run` read run `w` (rows 0 to 3 of its first life) and decided
/// to fold the first three stream entries, the rows through sequence 2;
/// before its commit, another handle on the same log cleared the run and
/// appended rows 10 to 13 of a new life. The unguarded snapshot-and-prune
/// landed on the new life: it pruned rows 10 to 12, all above the
/// `through` of 2 it was asked for, under a snapshot of the first life's
/// state, and the new life lost three rows. Guarded by the run's life and
/// length as read, the commit is refused, the store reads again, and finds
/// no row at or below 2 to fold.
#[test]
fn snapshot_run_after_another_handle_clears_and_refills_the_run_prunes_no_row_above_through() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), Options::default()).unwrap());
    let racing = Arc::new(ReadRace::new(log.clone()));
    let rows: CheckpointRows<_, Row> = CheckpointRows::new(racing.clone());
    run(async {
        for sequence in 0..4 {
            rows.append("w", row(sequence, "first life")).await.unwrap();
        }
    });
    let stream = "rows/w";
    assert_eq!(log.next_seq(stream).unwrap().0, 4, "the test names the run's stream");
    let version = run(rows.load_run_versioned::<String>("w")).unwrap().version;
    racing.arm(stream, |log: &Arc<Log>| {
        let other: CheckpointRows<_, Row> = CheckpointRows::new(log.clone());
        elsewhere(async {
            other.clear("w").await.unwrap();
            for sequence in 10..14 {
                other.append("w", row(sequence, "second life")).await.unwrap();
            }
        });
    });
    let folded = run(rows.snapshot_run("w", &version, 2, &"state of the first life".to_owned()));
    assert!(racing.after_reading.lock().unwrap().is_none(), "the other handle's writes landed");
    let left: Vec<u64> = run(rows.load_run("w")).unwrap().iter().map(|row| row.sequence).collect();
    let snapshot: Option<(u64, String)> = run(rows.load_snapshot("w")).unwrap();
    assert_eq!(left, [10, 11, 12, 13], "folded {folded:?}, snapshot {snapshot:?}");
    assert_eq!(snapshot, None);
    assert!(!folded.unwrap(), "no row of the run is at or below 2");
}

/// Review 13: the guard above made `snapshot_run` read again after a
/// conflict, and the second read decided anew on whatever run it found. A
/// run cleared and restarted by another handle starts again at sequence 0
/// (a workflow run again under its id), so the retry found rows at or
/// below `through` in the new life and folded them under the state the
/// caller computed from the first life: rows 0 to 2 of the second life
/// were pruned, and `load_snapshot` gave the first life's state for them.
/// The race had moved, not closed. A retry now goes on only in the life the
/// first read saw; a run that began another life meanwhile is a conflict,
/// and nothing is folded.
#[test]
fn snapshot_run_after_another_handle_restarts_the_run_from_zero_folds_none_of_the_new_life() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), Options::default()).unwrap());
    let racing = Arc::new(ReadRace::new(log.clone()));
    let rows: CheckpointRows<_, Row> = CheckpointRows::new(racing.clone());
    run(async {
        for sequence in 0..4 {
            rows.append("w", row(sequence, "first life")).await.unwrap();
        }
    });
    let version = run(rows.load_run_versioned::<String>("w")).unwrap().version;
    racing.arm("rows/w", |log: &Arc<Log>| {
        let other: CheckpointRows<_, Row> = CheckpointRows::new(log.clone());
        elsewhere(async {
            other.clear("w").await.unwrap();
            for sequence in 0..4 {
                other.append("w", row(sequence, "second life")).await.unwrap();
            }
        });
    });
    let folded = run(rows.snapshot_run("w", &version, 2, &"state of the first life".to_owned()));
    assert!(racing.after_reading.lock().unwrap().is_none(), "the other handle's writes landed");
    let left = run(rows.load_run("w")).unwrap();
    let snapshot: Option<(u64, String)> = run(rows.load_snapshot("w")).unwrap();
    assert_eq!(left, (0..4).map(|sequence| row(sequence, "second life")).collect::<Vec<_>>(), "folded {folded:?}");
    assert_eq!(snapshot, None);
    assert!(matches!(folded, Err(StoreError::Conflict { .. })), "{folded:?}");
}
