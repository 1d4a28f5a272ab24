//! Review 12: the typed stores under concurrent misuse: two handles on
//! one log, one's commit landing between the other's read and its commit.
//!
//! Each test is named after the bug it found; it failed before the fix.

use std::future::Future;
use std::sync::{Arc, Mutex};

use annals::stores::checkpoint_rows::{CheckpointRows, SequencedRow};
use annals::stores::{Backend, Committed, Cursor, Entry, StoreError, StoreOp, StreamContents};
use annals::{Log, Options};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Row {
    sequence: u64,
    what: String,
}

impl SequencedRow for Row {
    fn sequence(&self) -> u64 {
        self.sequence
    }
}

fn row(sequence: u64, what: &str) -> Row {
    Row { sequence, what: what.to_owned() }
}

fn run<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

/// Runs `future` on a runtime of its own on another thread: the other
/// writer of a hook, done before the hook returns.
fn elsewhere<T: Send>(future: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| scope.spawn(|| run(future)).join().unwrap())
}

type Hook = Box<dyn FnOnce(&Arc<Log>) + Send>;

/// The log as a backend that, once armed, runs a hook right after it
/// answers a read of one stream: another writer's commits landing between
/// what the store read and its own commit.
struct ReadRace {
    log: Arc<Log>,
    after_reading: Mutex<Option<(String, Hook)>>,
}

impl ReadRace {
    fn arm(&self, stream: &str, hook: impl FnOnce(&Arc<Log>) + Send + 'static) {
        *self.after_reading.lock().unwrap() = Some((stream.to_owned(), Box::new(hook)));
    }
}

impl Backend for ReadRace {
    fn commit(&self, ops: Vec<StoreOp>) -> impl Future<Output = Result<Vec<Committed>, StoreError>> + Send {
        Backend::commit(&*self.log, ops)
    }
    fn commit_blocking(&self, ops: Vec<StoreOp>) -> Result<Vec<Committed>, StoreError> {
        Backend::commit_blocking(&*self.log, ops)
    }
    fn read(&self, stream: &str) -> impl Future<Output = Result<StreamContents, StoreError>> + Send {
        let hook = {
            let mut armed = self.after_reading.lock().unwrap();
            match armed.take() {
                Some((armed_stream, hook)) if armed_stream == stream => Some(hook),
                other => {
                    *armed = other;
                    None
                }
            }
        };
        let log = self.log.clone();
        let answer = Backend::read(&*self.log, stream);
        async move {
            let answer = answer.await;
            if let Some(hook) = hook {
                hook(&log);
            }
            answer
        }
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
        Backend::read_stream_after(&*self.log, stream, after, limit)
    }
    fn streams(&self, prefix: &str) -> impl Future<Output = Result<Vec<(String, u64)>, StoreError>> + Send {
        Backend::streams(&*self.log, prefix)
    }
    fn read_after(&self, after: Cursor, limit: usize) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send {
        Backend::read_after(&*self.log, after, limit)
    }
}

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
    let racing = Arc::new(ReadRace { log: log.clone(), after_reading: Mutex::new(None) });
    let rows: CheckpointRows<_, Row> = CheckpointRows::new(racing.clone());
    run(async {
        for sequence in 0..4 {
            rows.append("w", row(sequence, "first life")).await.unwrap();
        }
    });
    let stream = "rows/w";
    assert_eq!(log.next_seq(stream).unwrap().0, 4, "the test names the run's stream");
    racing.arm(stream, |log: &Arc<Log>| {
        let other: CheckpointRows<_, Row> = CheckpointRows::new(log.clone());
        elsewhere(async {
            other.clear("w").await.unwrap();
            for sequence in 10..14 {
                other.append("w", row(sequence, "second life")).await.unwrap();
            }
        });
    });
    let folded = run(rows.snapshot_run("w", 2, &"state of the first life".to_owned()));
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
    let racing = Arc::new(ReadRace { log: log.clone(), after_reading: Mutex::new(None) });
    let rows: CheckpointRows<_, Row> = CheckpointRows::new(racing.clone());
    run(async {
        for sequence in 0..4 {
            rows.append("w", row(sequence, "first life")).await.unwrap();
        }
    });
    racing.arm("rows/w", |log: &Arc<Log>| {
        let other: CheckpointRows<_, Row> = CheckpointRows::new(log.clone());
        elsewhere(async {
            other.clear("w").await.unwrap();
            for sequence in 0..4 {
                other.append("w", row(sequence, "second life")).await.unwrap();
            }
        });
    });
    let folded = run(rows.snapshot_run("w", 2, &"state of the first life".to_owned()));
    assert!(racing.after_reading.lock().unwrap().is_none(), "the other handle's writes landed");
    let left = run(rows.load_run("w")).unwrap();
    let snapshot: Option<(u64, String)> = run(rows.load_snapshot("w")).unwrap();
    assert_eq!(left, (0..4).map(|sequence| row(sequence, "second life")).collect::<Vec<_>>(), "folded {folded:?}");
    assert_eq!(snapshot, None);
    assert!(matches!(folded, Err(StoreError::Conflict { .. })), "{folded:?}");
}
