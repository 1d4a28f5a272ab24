//! A simulated file system for the file-system seam: it keeps, per file, the
//! bytes a reader sees and the bytes that are durable, and per directory the
//! names that are durable, and it can produce every image a crash could leave.
//!
//! Unsynced work is a list of pending operations in the order they were
//! issued: writes, creates, renames and deletes. `sync_data` makes a file's
//! pending writes durable; `sync_dir` makes the pending namespace changes
//! durable. A crash keeps some of the pending work, by [`CrashMode`]:
//!
//! | mode | what survives of the unsynced work |
//! |---|---|
//! | drop | nothing |
//! | prefix | a random prefix of the pending operations, in order |
//! | reorder | each pending operation independently, across files |
//! | torn | chosen writes cut at 512 or 4,096-byte sectors, each sector old or new |
//! | garbage | unsynced sectors read as new, old, zeros or random bytes |
//! | namespace | each unsynced create, rename or delete kept or lost (a rename stays atomic); writes kept |
//!
//! Faults: the N-th mutating operation can fail once or for good with EIO or
//! ENOSPC; a failed `sync_data` fails the Linux way: the error is returned
//! once, the data stays visible but is no longer pending (it will not become
//! durable), and the next sync says Ok. Directories are always durable once
//! created (the engine creates its directory before anything else).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::rng::SimRng;
use crate::fs::{DirLock, File, FileSystem, LockMode, MappedFile};

/// How a crash treats unsynced work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashMode {
    /// Nothing unsynced survives.
    Drop,
    /// A prefix of the pending operations survives, in order.
    Prefix,
    /// Each pending operation survives or not, independently.
    Reorder,
    /// Writes are cut at 512-byte sectors, each sector old or new.
    Torn512,
    /// Writes are cut at 4,096-byte sectors, each sector old or new.
    Torn4096,
    /// Unsynced sectors read as new, old, zeros or random bytes.
    Garbage,
    /// Unsynced namespace changes survive or not, independently.
    Namespace,
}

impl CrashMode {
    /// Every mode, in a fixed order.
    pub const ALL: [CrashMode; 7] = [
        CrashMode::Drop,
        CrashMode::Prefix,
        CrashMode::Reorder,
        CrashMode::Torn512,
        CrashMode::Torn4096,
        CrashMode::Garbage,
        CrashMode::Namespace,
    ];

    /// The mode's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            CrashMode::Drop => "drop",
            CrashMode::Prefix => "prefix",
            CrashMode::Reorder => "reorder",
            CrashMode::Torn512 => "torn512",
            CrashMode::Torn4096 => "torn4096",
            CrashMode::Garbage => "garbage",
            CrashMode::Namespace => "namespace",
        }
    }
}

/// Which error an injected fault returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// An I/O error.
    Eio,
    /// The disk is full.
    Enospc,
}

/// A planned fault: the operation numbered `at` (counting mutating
/// operations from 1) fails, and with `persistent` every one after it too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The mutating operation that fails first.
    pub at: u64,
    /// What it returns.
    pub kind: FaultKind,
    /// Whether every later mutating operation fails too.
    pub persistent: bool,
}

#[derive(Clone, Debug, Default)]
struct SimFile {
    visible: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Clone, Debug)]
enum PendingOp {
    Write { file: usize, offset: usize, data: Vec<u8> },
    Create { path: PathBuf, file: usize },
    Rename { from: PathBuf, to: PathBuf, file: usize },
    Remove { path: PathBuf, file: usize },
}

/// What the disk holds and what is in flight: everything a crash image needs.
#[derive(Clone, Debug, Default)]
struct Disk {
    files: Vec<SimFile>,
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
    pending: Vec<PendingOp>,
}

#[derive(Debug, Default)]
struct State {
    disk: Disk,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeMap<PathBuf, (LockMode, usize)>,
    /// Mutating operations so far.
    ops: u64,
    fault: Option<Fault>,
    /// Faults injected so far, by kind: EIO, ENOSPC, failed fsyncs.
    faults_injected: [u64; 3],
    /// Crash after this mutating operation: it happens, then the disk freezes.
    crash_after: Option<u64>,
    /// The disk as the crash left it; from then on every mutation fails.
    frozen: Option<Disk>,
    /// The machine's clock: milliseconds after [`SIM_EPOCH_MS`], moved only
    /// by [`SimFs::move_clock`], so that a seed replays the same bytes.
    clock_ms: u64,
}

/// What the simulated clock reads before it is moved (2027-01-15).
pub const SIM_EPOCH_MS: u64 = 1_800_000_000_000;

/// The simulated file system. Clones share one disk.
#[derive(Clone, Debug, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

/// Counts a [`SimFs`] keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimFsCounts {
    /// Mutating operations performed.
    pub ops: u64,
    /// Faults injected returning EIO.
    pub eio: u64,
    /// Faults injected returning ENOSPC.
    pub enospc: u64,
    /// Of those, the ones that were a failed fsync (data kept visible, not durable).
    pub failed_fsyncs: u64,
}

fn injected(kind: FaultKind) -> io::Error {
    match kind {
        FaultKind::Eio => io::Error::other("injected EIO"),
        FaultKind::Enospc => io::Error::new(io::ErrorKind::StorageFull, "injected ENOSPC"),
    }
}

fn crashed() -> io::Error {
    io::Error::other("the simulated machine has crashed")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OpClass {
    Sync,
    Other,
}

impl State {
    /// Counts a mutating operation and decides whether it fails.
    fn begin(&mut self, class: OpClass) -> io::Result<()> {
        if self.frozen.is_some() {
            return Err(crashed());
        }
        self.ops += 1;
        if let Some(fault) = self.fault
            && (self.ops == fault.at || (fault.persistent && self.ops > fault.at))
        {
            self.faults_injected[if fault.kind == FaultKind::Eio { 0 } else { 1 }] += 1;
            if class == OpClass::Sync {
                self.faults_injected[2] += 1;
            }
            return Err(injected(fault.kind));
        }
        Ok(())
    }

    /// After a mutating operation: freeze the disk if the crash point is here.
    fn end(&mut self) {
        if self.crash_after == Some(self.ops) {
            self.frozen = Some(self.disk.clone());
        }
    }

    fn file_of(&self, path: &Path) -> io::Result<usize> {
        self.disk.names.get(path).copied().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> SimFs {
        SimFs::default()
    }

    /// Plans a fault (replacing any earlier plan); `at` counts from the next operation.
    pub fn inject_fault_after(&self, ops_from_now: u64, kind: FaultKind, persistent: bool) {
        let mut state = self.state.lock();
        let at = state.ops + ops_from_now.max(1);
        state.fault = Some(Fault { at, kind, persistent });
    }

    /// Moves the clock by `delta_ms`, back too (a clock set back), never
    /// below [`SIM_EPOCH_MS`].
    pub fn move_clock(&self, delta_ms: i64) {
        let mut state = self.state.lock();
        state.clock_ms = state.clock_ms.saturating_add_signed(delta_ms);
    }

    /// Stops injecting faults.
    pub fn clear_fault(&self) {
        self.state.lock().fault = None;
    }

    /// Plans a crash right after the mutating operation `ops_from_now` from
    /// now (1 is the next one). From then on every mutation fails.
    pub fn crash_after(&self, ops_from_now: u64) {
        let mut state = self.state.lock();
        state.crash_after = Some(state.ops + ops_from_now.max(1));
    }

    /// Freezes the disk now, as a crash would.
    pub fn crash_now(&self) {
        let mut state = self.state.lock();
        if state.frozen.is_none() {
            state.frozen = Some(state.disk.clone());
        }
    }

    /// Whether the planned crash has happened.
    pub fn has_crashed(&self) -> bool {
        self.state.lock().frozen.is_some()
    }

    /// The counts so far.
    pub fn counts(&self) -> SimFsCounts {
        let state = self.state.lock();
        SimFsCounts {
            ops: state.ops,
            eio: state.faults_injected[0],
            enospc: state.faults_injected[1],
            failed_fsyncs: state.faults_injected[2],
        }
    }

    /// A new file system holding one image the disk could hold after the
    /// crash (or, if none happened, after a crash now).
    pub fn crash_image(&self, mode: CrashMode, rng: &mut SimRng) -> SimFs {
        let state = self.state.lock();
        let disk = state.frozen.as_ref().unwrap_or(&state.disk);
        let image = build_image(disk, mode, rng);
        SimFs {
            state: Arc::new(Mutex::new(State {
                disk: image,
                dirs: state.dirs.clone(),
                clock_ms: state.clock_ms,
                ..State::default()
            })),
        }
    }

    /// The durable bytes of every file, by name (for tests and reports).
    pub fn durable_files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let state = self.state.lock();
        state
            .disk
            .durable_names
            .iter()
            .map(|(path, &file)| (path.clone(), state.disk.files[file].durable.clone()))
            .collect()
    }

    /// A file system whose disk holds exactly these files, all durable.
    pub fn with_files(dir: &Path, files: &[(String, Vec<u8>)]) -> SimFs {
        let mut state = State::default();
        state.dirs.insert(dir.to_owned());
        for (name, bytes) in files {
            let id = state.disk.files.len();
            state.disk.files.push(SimFile { visible: bytes.clone(), durable: bytes.clone() });
            state.disk.names.insert(dir.join(name), id);
            state.disk.durable_names.insert(dir.join(name), id);
        }
        SimFs { state: Arc::new(Mutex::new(state)) }
    }
}

fn write_into(buf: &mut Vec<u8>, offset: usize, data: &[u8]) {
    if buf.len() < offset + data.len() {
        buf.resize(offset + data.len(), 0);
    }
    buf[offset..offset + data.len()].copy_from_slice(data);
}

/// What a crash does to one pending operation.
enum Fate {
    Keep,
    Lose,
    /// A write cut into sectors of this size, each: 0 old, 1 new, 2 zeros, 3 random.
    Sectors(usize, Vec<u8>),
}

fn sector_fates(offset: usize, len: usize, sector: usize, choices: u64, rng: &mut SimRng) -> Vec<u8> {
    let first = offset / sector;
    let last = (offset + len).div_ceil(sector);
    (first..last).map(|_| rng.below(choices) as u8).collect()
}

fn build_image(disk: &Disk, mode: CrashMode, rng: &mut SimRng) -> Disk {
    let prefix = rng.range(0, disk.pending.len() as u64) as usize;
    let fates: Vec<Fate> = disk
        .pending
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let is_write = matches!(op, PendingOp::Write { .. });
            match mode {
                CrashMode::Drop => Fate::Lose,
                CrashMode::Prefix => {
                    if i < prefix {
                        Fate::Keep
                    } else {
                        Fate::Lose
                    }
                }
                CrashMode::Reorder => {
                    if rng.chance(1, 2) {
                        Fate::Keep
                    } else {
                        Fate::Lose
                    }
                }
                CrashMode::Torn512 | CrashMode::Torn4096 | CrashMode::Garbage if is_write => {
                    let PendingOp::Write { offset, data, .. } = op else { unreachable!() };
                    let (sector, choices) = match mode {
                        CrashMode::Torn512 => (512, 2),
                        CrashMode::Torn4096 => (4096, 2),
                        _ => (512, 4),
                    };
                    Fate::Sectors(sector, sector_fates(*offset, data.len(), sector, choices, rng))
                }
                CrashMode::Torn512 | CrashMode::Torn4096 | CrashMode::Garbage | CrashMode::Namespace => {
                    if is_write || rng.chance(1, 2) { Fate::Keep } else { Fate::Lose }
                }
            }
        })
        .collect();

    let mut image = Disk { files: disk.files.clone(), ..Disk::default() };
    for file in &mut image.files {
        file.visible = file.durable.clone();
    }
    let mut names = disk.durable_names.clone();
    for (op, fate) in disk.pending.iter().zip(&fates) {
        if matches!(fate, Fate::Lose) {
            continue;
        }
        match op {
            PendingOp::Create { path, file } => {
                names.insert(path.clone(), *file);
            }
            PendingOp::Rename { from, to, file } => {
                if names.get(from) == Some(file) {
                    names.remove(from);
                    names.insert(to.clone(), *file);
                }
            }
            PendingOp::Remove { path, file } => {
                if names.get(path) == Some(file) {
                    names.remove(path);
                }
            }
            PendingOp::Write { file, offset, data } => {
                let target = &mut image.files[*file].visible;
                match fate {
                    Fate::Keep => write_into(target, *offset, data),
                    Fate::Sectors(sector, choices) => apply_sectors(target, *offset, data, *sector, choices, rng),
                    Fate::Lose => {}
                }
            }
        }
    }
    for file in &mut image.files {
        file.durable = file.visible.clone();
    }
    image.names = names.clone();
    image.durable_names = names;
    image
}

fn apply_sectors(target: &mut Vec<u8>, offset: usize, data: &[u8], sector: usize, choices: &[u8], rng: &mut SimRng) {
    let first = offset / sector;
    for (i, choice) in choices.iter().enumerate() {
        let start = ((first + i) * sector).max(offset);
        let end = ((first + i + 1) * sector).min(offset + data.len());
        if start >= end {
            continue;
        }
        let piece = &data[start - offset..end - offset];
        match choice {
            0 => {
                // Old: the sector keeps what it had, but the file may still have grown.
                if target.len() < end {
                    target.resize(end, 0);
                }
            }
            1 => write_into(target, start, piece),
            2 => write_into(target, start, &vec![0; piece.len()]),
            _ => write_into(target, start, &rng.bytes(piece.len())),
        }
    }
}

#[derive(Debug)]
struct SimHandle {
    fs: SimFs,
    file: usize,
}

#[derive(Debug)]
struct SimMap {
    fs: SimFs,
    file: usize,
    len: usize,
}

struct SimLock {
    fs: SimFs,
    dir: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.fs.state.lock();
        if let Some((_, holders)) = state.locks.get_mut(&self.dir) {
            *holders -= 1;
            if *holders == 0 {
                state.locks.remove(&self.dir);
            }
        }
    }
}

impl FileSystem for SimFs {
    fn now_ms(&self) -> u64 {
        SIM_EPOCH_MS + self.state.lock().clock_ms
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.state.lock().dirs.insert(dir.to_owned());
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock();
        if !state.dirs.contains(dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        Ok(state
            .disk
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn File>> {
        let mut state = self.state.lock();
        if state.disk.names.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
        }
        state.begin(OpClass::Other)?;
        let file = state.disk.files.len();
        state.disk.files.push(SimFile::default());
        state.disk.names.insert(path.to_owned(), file);
        state.disk.pending.push(PendingOp::Create { path: path.to_owned(), file });
        state.end();
        Ok(Arc::new(SimHandle { fs: self.clone(), file }))
    }

    fn open(&self, path: &Path, _writable: bool) -> io::Result<Arc<dyn File>> {
        let file = self.state.lock().file_of(path)?;
        Ok(Arc::new(SimHandle { fs: self.clone(), file }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let file = state.file_of(from)?;
        state.begin(OpClass::Other)?;
        state.disk.names.remove(from);
        state.disk.names.insert(to.to_owned(), file);
        state.disk.pending.push(PendingOp::Rename { from: from.to_owned(), to: to.to_owned(), file });
        state.end();
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let file = state.file_of(path)?;
        state.begin(OpClass::Other)?;
        state.disk.names.remove(path);
        state.disk.pending.push(PendingOp::Remove { path: path.to_owned(), file });
        state.end();
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin(OpClass::Sync)?;
        let disk = &mut state.disk;
        let mut kept = Vec::with_capacity(disk.pending.len());
        for op in disk.pending.drain(..) {
            match op {
                PendingOp::Create { path, file } => {
                    disk.durable_names.insert(path, file);
                }
                PendingOp::Rename { from, to, file } => {
                    if disk.durable_names.get(&from) == Some(&file) {
                        disk.durable_names.remove(&from);
                    }
                    disk.durable_names.insert(to, file);
                }
                PendingOp::Remove { path, file } => {
                    if disk.durable_names.get(&path) == Some(&file) {
                        disk.durable_names.remove(&path);
                    }
                }
                write => kept.push(write),
            }
        }
        disk.pending = kept;
        state.end();
        Ok(())
    }

    fn lock(&self, dir: &Path, mode: LockMode) -> io::Result<Option<DirLock>> {
        let mut state = self.state.lock();
        match state.locks.get_mut(dir) {
            None => {
                state.locks.insert(dir.to_owned(), (mode, 1));
            }
            Some((LockMode::Shared, holders)) if mode == LockMode::Shared => *holders += 1,
            Some(_) => return Ok(None),
        }
        Ok(Some(Box::new(SimLock { fs: self.clone(), dir: dir.to_owned() })))
    }
}

impl File for SimHandle {
    fn len(&self) -> io::Result<u64> {
        Ok(self.fs.state.lock().disk.files[self.file].visible.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let state = self.fs.state.lock();
        let visible = &state.disk.files[self.file].visible;
        let start = usize::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
        if start + buf.len() > visible.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"));
        }
        buf.copy_from_slice(&visible[start..start + buf.len()]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.fs.state.lock();
        state.begin(OpClass::Other)?;
        let offset = usize::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
        write_into(&mut state.disk.files[self.file].visible, offset, buf);
        state.disk.pending.push(PendingOp::Write { file: self.file, offset, data: buf.to_vec() });
        state.end();
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.fs.state.lock();
        let failed = state.begin(OpClass::Sync);
        let disk = &mut state.disk;
        let mut kept = Vec::with_capacity(disk.pending.len());
        for op in disk.pending.drain(..) {
            match op {
                PendingOp::Write { file, offset, data } if file == self.file => {
                    // On failure the Linux way: the pages are marked clean, so the
                    // data stays visible but will never become durable.
                    if failed.is_ok() {
                        write_into(&mut disk.files[file].durable, offset, &data);
                    }
                }
                other => kept.push(other),
            }
        }
        disk.pending = kept;
        failed?;
        state.end();
        Ok(())
    }

    fn map(&self) -> io::Result<Arc<dyn MappedFile>> {
        let len = self.fs.state.lock().disk.files[self.file].visible.len();
        Ok(Arc::new(SimMap { fs: self.fs.clone(), file: self.file, len }))
    }
}

impl MappedFile for SimMap {
    fn len(&self) -> usize {
        self.len
    }

    fn slice(&self, offset: usize, len: usize) -> Bytes {
        let state = self.fs.state.lock();
        let visible = &state.disk.files[self.file].visible;
        // Like a real mapping, bytes past the file's current end read as zeros.
        let mut out = vec![0u8; len];
        let available = visible.len().saturating_sub(offset).min(len);
        out[..available].copy_from_slice(&visible[offset..offset + available]);
        Bytes::from(out)
    }
}
