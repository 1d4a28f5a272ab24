//! Reads never wait behind an fsync and never see a record before its fsync
//! returned; a bounded queue holds appenders back without losing any.

mod common;

use std::io;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::fs::{DirLock, File, FileSystem, LockMode, MappedFile, RealFs};
use annals::{Expectation, Log, Lsn, Options, SegmentPreparation};

/// The real file system, whose `sync_data` waits at a gate once armed.
#[derive(Debug, Default, Clone)]
struct GatedFs {
    gate: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
    entered: Arc<Mutex<Option<mpsc::Sender<()>>>>,
}

#[derive(Debug)]
struct GatedFile {
    inner: Arc<dyn File>,
    fs: GatedFs,
}

impl FileSystem for GatedFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        RealFs.list(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn File>> {
        Ok(Arc::new(GatedFile { inner: RealFs.create(path)?, fs: self.clone() }))
    }
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn File>> {
        Ok(Arc::new(GatedFile { inner: RealFs.open(path, writable)?, fs: self.clone() }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        RealFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)
    }
    fn lock(&self, dir: &Path, mode: LockMode) -> io::Result<Option<DirLock>> {
        RealFs.lock(dir, mode)
    }
}

impl File for GatedFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if let Some(gate) = self.fs.gate.lock().unwrap().take() {
            self.fs.entered.lock().unwrap().take().unwrap().send(()).unwrap();
            gate.recv().unwrap();
        }
        self.inner.sync_data()
    }
    fn map(&self) -> io::Result<Arc<dyn MappedFile>> {
        self.inner.map()
    }
}

#[test]
fn reads_do_not_wait_behind_an_fsync_and_never_see_the_record_being_synced() {
    let dir = tempfile::tempdir().unwrap();
    let fs = GatedFs::default();
    let options = Options {
        file_system: Arc::new(fs.clone()),
        segment_preparation: SegmentPreparation::Inline,
        ..common::small_options()
    };
    let log = Log::open(dir.path(), options).unwrap();
    log.append("s", Expectation::Any, &b"acknowledged"[..]).wait().unwrap();

    let (open_gate, gate) = mpsc::channel();
    let (entered, entered_rx) = mpsc::channel();
    *fs.gate.lock().unwrap() = Some(gate);
    *fs.entered.lock().unwrap() = Some(entered);
    let appender = {
        let log = log.clone();
        std::thread::spawn(move || log.append("s", Expectation::Any, &b"being synced"[..]).wait())
    };
    entered_rx.recv_timeout(Duration::from_secs(30)).expect("the append reached its fsync");

    // The fsync is held at the gate: every read completes, and none sees the record.
    let (done, finished) = mpsc::channel();
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            let seen = (log.read_stream("s").unwrap().entries.len(), log.read_all(Lsn::ZERO, 10).unwrap().len());
            done.send(seen).unwrap();
        })
    };
    let seen = finished.recv_timeout(Duration::from_secs(30)).expect("reads finish while an fsync is in flight");
    assert_eq!(seen, (1, 1), "the record being synced is not visible yet");
    assert!(log.read_lsn(Lsn(2)).unwrap().is_none());

    open_gate.send(()).unwrap();
    appender.join().unwrap().unwrap();
    reader.join().unwrap();
    assert_eq!(log.read_stream("s").unwrap().entries.len(), 2, "visible once acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_slot_queue_holds_appenders_back_without_losing_any() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options { queue_requests_max: 1, ..common::small_options() }).unwrap();
    let tasks: Vec<_> = (0..32u64)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..10u64 {
                    log.append(format!("t{t}"), Expectation::Exact(annals::StreamSeq(i)), vec![t as u8]).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(log.last_lsn().unwrap(), Lsn(320));
}
