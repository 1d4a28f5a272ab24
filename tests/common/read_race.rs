//! A backend for the stores' race tests (reviews 11 to 13): the log,
//! with a hook that lands another writer's commits between what a store
//! read and its own commit.

use std::future::Future;
use std::sync::{Arc, Mutex};

use annals::Log;
use annals::stores::checkpoint_rows::SequencedRow;
use annals::stores::{Backend, Committed, Cursor, Entry, StoreError, StoreOp, StreamContents};

/// The race tests' checkpoint row.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    pub sequence: u64,
    pub what: String,
}

impl SequencedRow for Row {
    fn sequence(&self) -> u64 {
        self.sequence
    }
}

pub fn row(sequence: u64, what: &str) -> Row {
    Row { sequence, what: what.to_owned() }
}

pub fn run<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

/// Runs `future` on a runtime of its own on another thread: the other
/// writer of a hook, done before the hook returns.
pub fn elsewhere<T: Send>(future: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| scope.spawn(|| run(future)).join().unwrap())
}

pub type Hook = Box<dyn FnOnce(&Arc<Log>) + Send>;

/// The log as a backend that, once armed, runs a hook right after it
/// answers a read of one stream: another writer's commits landing between
/// what the store read and its own commit.
pub struct ReadRace {
    pub log: Arc<Log>,
    pub after_reading: Mutex<Option<(String, Hook)>>,
}

impl ReadRace {
    pub fn new(log: Arc<Log>) -> ReadRace {
        ReadRace { log, after_reading: Mutex::new(None) }
    }

    /// Runs `hook` once, right after the next read of `stream` is answered.
    pub fn arm(&self, stream: &str, hook: impl FnOnce(&Arc<Log>) + Send + 'static) {
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
