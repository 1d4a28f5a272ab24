//! Review 11: the stores' guards against another writer on the same log,
//! landed at a chosen point between a store's read and its commit.
//!
//! Each test is named after the bug it found; it failed before the fix.

mod common;

use std::sync::Arc;

use annals::stores::mob_runs::MobRuns;
use annals::{Log, Options};
use common::read_race::{ReadRace, elsewhere, run};

/// `append_step_if_absent` read the ledger of run `r` (one step, "a");
/// before its commit, another store deleted the run, created it again and
/// appended the step "b", so that the ledger is back at one entry. The
/// append guarded by the ledger's next sequence alone passed, and the
/// ledger held "b" twice, although the call promises that "retrying it
/// appends nothing more, however many race". Guarded by the ledger's
/// incarnation too, the commit is refused, the store reads again, and
/// finds "b" there.
#[test]
fn append_step_if_absent_after_the_run_is_deleted_and_created_again_appends_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), Options::default()).unwrap());
    let racing = Arc::new(ReadRace::new(log.clone()));
    let runs = MobRuns::new(racing.clone());
    run(async {
        runs.create_run("r", &1u32).await.unwrap();
        runs.append_step("r", &"a".to_owned()).await.unwrap();
    });
    let ledger = "mob-run/r/steps";
    assert_eq!(log.next_seq(ledger).unwrap().0, 1, "the test names the ledger's stream");
    racing.arm(ledger, |log: &Arc<Log>| {
        let other = MobRuns::new(log.clone());
        elsewhere(async {
            assert!(other.delete_run("r").await.unwrap());
            other.create_run("r", &2u32).await.unwrap();
            other.append_step("r", &"b".to_owned()).await.unwrap();
        });
    });
    let appended = run(runs.append_step_if_absent("r", &"b".to_owned(), |existing: &String, new| existing == new));
    assert!(racing.after_reading.lock().unwrap().is_none(), "the other store's writes landed");
    let steps: Vec<String> = run(runs.step_ledger("r")).unwrap();
    assert_eq!(steps, ["b"], "appended: {appended:?}");
    assert!(!appended.unwrap(), "the step was there");
}

/// `update_run_if` read run `r`'s document (1, revision 1) and decided on
/// it; before its commit, another store deleted the run and created it
/// again with the document 2, back at revision 1. The write guarded by the
/// document's next sequence alone passed, and replaced the new run's
/// document with the old one changed (11), on a condition the new one
/// does not meet. Guarded by the document's incarnation too, the commit is
/// refused, the store reads again, and the condition is false.
#[test]
fn update_run_if_after_the_run_is_deleted_and_created_again_does_not_write_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), Options::default()).unwrap());
    let racing = Arc::new(ReadRace::new(log.clone()));
    let runs = MobRuns::new(racing.clone());
    run(runs.create_run("r", &1u32)).unwrap();
    let document = "mob-run/r/doc/run";
    assert_eq!(log.next_seq(document).unwrap().0, 1, "the test names the run document's stream");
    racing.arm(document, |log: &Arc<Log>| {
        let other = MobRuns::new(log.clone());
        elsewhere(async {
            assert!(other.delete_run("r").await.unwrap());
            other.create_run("r", &2u32).await.unwrap();
        });
    });
    let updated = run(runs.update_run_if("r", |value: &u32| *value == 1, |value| *value += 10));
    assert!(racing.after_reading.lock().unwrap().is_none(), "the other store's writes landed");
    let stored = run(runs.get_run::<u32>("r")).unwrap().expect("the run exists");
    assert_eq!(stored.value, 2, "updated: {updated:?}");
    assert!(!updated.unwrap(), "the run the condition held for is gone");
}
