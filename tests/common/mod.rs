//! Helpers shared by the behaviour tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use annals::fs::{DirLock, File, FileSystem, LockMode, MappedFile, RealFs};
use annals::{Log, Options, SegmentPreparation};

/// Options for small logs: 8 KiB segments so that a test rolls over often.
pub fn small_options() -> Options {
    Options { segment_bytes: 8192, record_bytes_max: 4096, ..Options::default() }
}

pub fn open(dir: &Path) -> Log {
    Log::open(dir, small_options()).expect("open")
}

/// Copies every segment file of a live log: the image a crash right now
/// would leave if the page cache reached the disk. Excludes the lock file.
pub fn crash_image(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name != "LOCK" {
            std::fs::copy(entry.path(), to.join(name)).unwrap();
        }
    }
}

/// Published segment files of a log, oldest first.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Offsets of the frames in a segment file, found by walking frame lengths,
/// and stepping over the zero padding before a clean-close marker.
pub fn frame_offsets(segment: &Path) -> Vec<usize> {
    let bytes = std::fs::read(segment).unwrap();
    let mut offsets = Vec::new();
    let mut at = annals::segment::SEGMENT_HEADER_BYTES;
    let has_frame = |at: usize| at + annals::frame::FRAME_HEADER_BYTES <= bytes.len() && bytes[at + 32] != 0;
    loop {
        if !has_frame(at) {
            at = annals::frame::marker_offset(at);
            if !has_frame(at) {
                return offsets;
            }
        }
        offsets.push(at);
        let body = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += annals::frame::FRAME_HEADER_BYTES + body;
    }
}

pub fn flip_bit(path: &Path, offset: usize, bit: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 1 << bit;
    std::fs::write(path, bytes).unwrap();
}

pub fn zero_range(path: &Path, from: usize, to: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[from..to].fill(0);
    std::fs::write(path, bytes).unwrap();
}

/// Switches that make [`FaultyFs`] fail writes and syncs.
#[derive(Debug, Default)]
pub struct Faults {
    pub fail_writes: AtomicBool,
    pub fail_syncs: AtomicBool,
    pub fail_dir_syncs: AtomicBool,
    pub syncs: AtomicU64,
    pub dir_syncs: AtomicU64,
}

/// The real file system, failing what [`Faults`] says.
#[derive(Debug, Default, Clone)]
pub struct FaultyFs {
    pub faults: Arc<Faults>,
}

impl FaultyFs {
    pub fn options(&self) -> Options {
        Options {
            file_system: Arc::new(self.clone()),
            segment_preparation: SegmentPreparation::Inline,
            ..small_options()
        }
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn File>,
    fs: Arc<Faults>,
}

fn injected() -> io::Error {
    io::Error::other("injected fault")
}

impl FileSystem for FaultyFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        RealFs.list(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn File>> {
        Ok(Arc::new(FaultyFile { inner: RealFs.create(path)?, fs: self.faults.clone() }))
    }
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn File>> {
        Ok(Arc::new(FaultyFile { inner: RealFs.open(path, writable)?, fs: self.faults.clone() }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        RealFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.faults.dir_syncs.fetch_add(1, Ordering::SeqCst);
        if self.faults.fail_dir_syncs.load(Ordering::SeqCst) {
            return Err(injected());
        }
        RealFs.sync_dir(dir)
    }
    fn lock(&self, dir: &Path, mode: LockMode) -> io::Result<Option<DirLock>> {
        RealFs.lock(dir, mode)
    }
}

impl File for FaultyFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.fs.fail_writes.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.fs.syncs.fetch_add(1, Ordering::SeqCst);
        if self.fs.fail_syncs.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.sync_data()
    }
    fn map(&self) -> io::Result<Arc<dyn MappedFile>> {
        self.inner.map()
    }
}
