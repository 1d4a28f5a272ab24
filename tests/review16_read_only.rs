//! Review 16: every read-only entry point on media that refuses every
//! change (a read-only mount, a user without write permission), through a
//! file system that counts each change asked for and refuses it.
//!
//! Each test is named after the bug it found, or the behaviour its fix
//! must keep.

mod common;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use annals::fs::{DirLock, File, FileSystem, LockMode, MappedFile, RealFs};
use annals::recovery::{Access, recover};
use annals::{Expectation, Log, LogReader, Lsn, Options, RecoveryMode};
use common::{crash_image, dir_snapshot, small_options, unique_payload};

/// The real file system, read-only: every change is counted and refused
/// as a read-only mount refuses it.
#[derive(Debug, Default)]
struct ReadOnlyFs {
    changes: Arc<AtomicU64>,
}

fn refused(changes: &AtomicU64) -> io::Error {
    changes.fetch_add(1, Ordering::SeqCst);
    io::Error::new(io::ErrorKind::ReadOnlyFilesystem, "read-only file system")
}

#[derive(Debug)]
struct ReadOnlyFile {
    inner: Arc<dyn File>,
    changes: Arc<AtomicU64>,
}

impl File for ReadOnlyFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(refused(&self.changes))
    }
    fn sync_data(&self) -> io::Result<()> {
        Err(refused(&self.changes))
    }
    fn map(&self) -> io::Result<Arc<dyn MappedFile>> {
        self.inner.map()
    }
}

impl FileSystem for ReadOnlyFs {
    fn create_dir_all(&self, _: &Path) -> io::Result<()> {
        Err(refused(&self.changes))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        RealFs.list(dir)
    }
    fn create(&self, _: &Path) -> io::Result<Arc<dyn File>> {
        Err(refused(&self.changes))
    }
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn File>> {
        if writable {
            return Err(refused(&self.changes));
        }
        Ok(Arc::new(ReadOnlyFile { inner: RealFs.open(path, false)?, changes: self.changes.clone() }))
    }
    fn rename(&self, _: &Path, _: &Path) -> io::Result<()> {
        Err(refused(&self.changes))
    }
    fn remove(&self, _: &Path) -> io::Result<()> {
        Err(refused(&self.changes))
    }
    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Err(refused(&self.changes))
    }
    fn lock(&self, _: &Path, _: LockMode) -> io::Result<Option<DirLock>> {
        Err(refused(&self.changes))
    }
    fn writer_active(&self, dir: &Path) -> io::Result<bool> {
        RealFs.writer_active(dir)
    }
}

/// A crash image of a log with an index image, compacted segments, frames
/// after the image and the leftovers of work under way; and the records a
/// writable open of a copy reads from it.
fn crashed_log_with_everything(dir: &Path) -> Vec<annals::Record> {
    let live = tempfile::tempdir().unwrap();
    let options = Options { index_image: annals::IndexImageWrites::AtClose, ..small_options() };
    let log = Log::open(live.path(), options.clone()).unwrap();
    common::fill_worth_compacting(&log, 10, "a");
    log.close().wait().unwrap();
    let log = Log::open(live.path(), options).unwrap();
    log.compact().unwrap();
    for i in 0..30 {
        log.append(format!("b-{}", i % 3), Expectation::Any, unique_payload(i, 180)).wait().unwrap();
    }
    log.write_index_image().unwrap();
    log.append("c", Expectation::Any, &b"after the image"[..]).wait().unwrap();
    crash_image(live.path(), dir);
    drop(log);
    std::fs::write(dir.join("00000000000000000001-00000000000000000009.seg.compacting"), vec![7u8; 8192]).unwrap();
    std::fs::write(dir.join(annals::image::IMAGE_TEMP_FILE_NAME), vec![1u8; 100]).unwrap();
    let copy = tempfile::tempdir().unwrap();
    crash_image(dir, copy.path());
    let log = Log::open(copy.path(), small_options()).unwrap();
    log.read_all(Lsn::ZERO, usize::MAX).unwrap()
}

/// Every read-only entry point (a reader loading the image or scanning,
/// its refresh and stats, the intact scan of `verify` and `dump
/// --salvage`, read-only recovery, repair's source) on a crashed log with
/// compacted segments, an image and the leftovers of a compaction and an
/// image write asks nothing of the media but reads, and reads what a
/// writer would; a writer is refused with an I/O error and changes nothing.
#[test]
fn every_read_only_entry_point_on_a_crashed_log_with_leftovers_asks_only_for_reads() {
    let dir = tempfile::tempdir().unwrap();
    let expected = crashed_log_with_everything(dir.path());
    let before = dir_snapshot(dir.path());
    let fs = Arc::new(ReadOnlyFs::default());
    let options = Options { file_system: fs.clone(), ..Options::default() };
    let mut reader = LogReader::open_with(dir.path(), &options).unwrap();
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), expected);
    assert!(reader.problems().is_empty(), "{:?}", reader.problems());
    reader.refresh().unwrap();
    let stats = reader.stats().unwrap();
    assert_eq!(stats.total.live_records, expected.len() as u64);
    let scanning = LogReader::open_scanning(dir.path(), &options).unwrap();
    assert_eq!(scanning.read_all(Lsn::ZERO, usize::MAX).unwrap(), expected);
    let mut frames = 0;
    let scan = annals::inspect::scan_intact(fs.as_ref(), dir.path(), |_, _, _| frames += 1).unwrap();
    assert!(scan.damage.is_empty(), "{:?}", scan.damage);
    let recovered = recover(fs.as_ref(), dir.path(), Access::ReadOnly, RecoveryMode::Strict).unwrap();
    assert!(recovered.problems.is_empty(), "{:?}", recovered.problems);
    let out = tempfile::tempdir().unwrap();
    let repaired = annals::inspect::repair(dir.path(), out.path(), Options::default());
    assert!(repaired.unwrap().scan.damage.is_empty());
    assert_eq!(fs.changes.load(Ordering::SeqCst), 0, "changes asked of read-only media");
    common::assert_dir_unchanged(dir.path(), &before, "read-only entry points");
    let writer = Log::open(dir.path(), options);
    assert!(writer.is_err(), "a writer on read-only media");
    common::assert_dir_unchanged(dir.path(), &before, "a refused writer");
}
