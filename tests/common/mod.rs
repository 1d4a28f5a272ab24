//! Helpers shared by the behaviour tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use annals::fs::{DirLock, File, FileSystem, LockMode, MappedFile, RealFs};
use annals::{Log, Options, SegmentPreparation};

pub mod image_layout;
pub mod read_race;
pub mod scattered;

/// Options for small logs: 8 KiB segments so that a test rolls over often,
/// no background compaction, so that what a test finds on disk is what it
/// wrote (the compaction tests turn it on themselves), and no index image,
/// so that an open scans (and checks) every frame a test damaged
/// (`tests/index_image.rs` tests the image).
pub fn small_options() -> Options {
    Options {
        segment_bytes: 8192,
        record_bytes_max: 4096,
        compaction: annals::CompactionOptions { background: false, ..annals::CompactionOptions::default() },
        index_image: annals::IndexImageWrites::Off,
        ..Options::default()
    }
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
    /// The kind of error injected faults return: 0 other, 1 a full disk,
    /// 2 permission denied, 3 a read-only file system.
    pub error_kind: AtomicU64,
    pub fail_writes: AtomicBool,
    pub fail_syncs: AtomicBool,
    pub fail_dir_syncs: AtomicBool,
    /// Fails every file removal (an unlink refused: an I/O error, a
    /// directory made read-only).
    pub fail_removes: AtomicBool,
    /// Fails only the directory fsync with this number (counting from 1; 0: none).
    pub fail_dir_sync_number: AtomicU64,
    pub syncs: AtomicU64,
    /// Writes to files asked for (failed ones included).
    pub writes: AtomicU64,
    /// Reads from files (`read_at`) asked for (failed ones included).
    pub reads: AtomicU64,
    pub fail_reads: AtomicBool,
    pub dir_syncs: AtomicU64,
    /// The next segment file opened is not found (once): one listed and
    /// then removed before it was opened, as a writer's compaction or
    /// retention does under a reader.
    pub vanish_next_segment_open: AtomicBool,
    /// Once set, the next `sync_data` says so on the sender and waits for
    /// a message on the receiver: the writer held inside an fsync while a
    /// test queues what it wants in the next group.
    pub sync_gate: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
    /// As `sync_gate`, for the next `sync_data` of the state file
    /// (`annals.state`) alone: a compaction held at its commit point, the
    /// writer with it, while a test calls what it wants to race it.
    pub state_sync_gate: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
    /// Run once, at the next listing of a directory: what a recovery does
    /// right after it read the state file.
    pub on_next_list: ListHook,
    /// Background threads (by name) a log may not start: what a failed
    /// spawn leaves.
    pub refused_threads: Mutex<Vec<&'static str>>,
    /// Once set, a refused thread's start waits for a message on it first.
    pub refusal_gate: Mutex<Option<mpsc::Receiver<()>>>,
    /// Writes to spare segments asked for.
    pub spare_writes: AtomicU64,
    /// Each write to a spare segment takes at least this long (ms): a slow
    /// disk, while a spare's zeros are written.
    pub spare_write_delay_ms: AtomicU64,
    /// Writes to a compaction's outputs (`*.compacting`) asked for.
    pub compacting_writes: AtomicU64,
    /// Each write to a compaction's output takes at least this long (ms).
    pub compacting_write_delay_ms: AtomicU64,
    /// Once set, the next write to a compaction's output says so on it,
    /// before its delay: a test knows the compaction is writing.
    pub compacting_write_started: Mutex<Option<mpsc::Sender<()>>>,
}

/// A hook [`FaultyFs`] runs at the next directory listing.
#[derive(Default)]
pub struct ListHook(pub Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl std::fmt::Debug for ListHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListHook")
    }
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
    /// A spare segment's file.
    spare: bool,
    /// A compaction's output, under its temporary name.
    compacting: bool,
    /// The state file.
    state: bool,
}

fn injected_as(kind: u64) -> io::Error {
    match kind {
        1 => io::Error::new(io::ErrorKind::StorageFull, "injected: no space left on device"),
        2 => io::Error::new(io::ErrorKind::PermissionDenied, "injected: permission denied"),
        3 => io::Error::new(io::ErrorKind::ReadOnlyFilesystem, "injected: read-only file system"),
        _ => io::Error::other("injected fault"),
    }
}

impl FileSystem for FaultyFs {
    fn before_spawn(&self, thread: &str) -> io::Result<()> {
        if self.faults.refused_threads.lock().unwrap().contains(&thread) {
            if let Some(gate) = self.faults.refusal_gate.lock().unwrap().take() {
                let _ = gate.recv();
            }
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "no thread for you"));
        }
        Ok(())
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let hook = self.faults.on_next_list.0.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        RealFs.list(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn File>> {
        let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        let spare = name.starts_with(annals::segment::SPARE_PREFIX);
        let compacting = name.ends_with(".compacting");
        // A new log's state file is written under its temporary name and
        // renamed; its writer keeps that handle.
        let state = name == annals::state::STATE_FILE_NAME || name == annals::state::STATE_TEMP_FILE_NAME;
        Ok(Arc::new(FaultyFile { inner: RealFs.create(path)?, fs: self.faults.clone(), spare, compacting, state }))
    }
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn File>> {
        if path.extension().is_some_and(|extension| extension == "seg")
            && self.faults.vanish_next_segment_open.swap(false, Ordering::SeqCst)
        {
            return Err(io::Error::new(io::ErrorKind::NotFound, "injected: removed after it was listed"));
        }
        Ok(Arc::new(FaultyFile {
            inner: RealFs.open(path, writable)?,
            fs: self.faults.clone(),
            spare: false,
            compacting: false,
            state: path.file_name().is_some_and(|name| name == annals::state::STATE_FILE_NAME),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        if self.faults.fail_removes.load(Ordering::SeqCst) {
            return Err(injected_as(self.faults.error_kind.load(Ordering::SeqCst)));
        }
        RealFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let number = self.faults.dir_syncs.fetch_add(1, Ordering::SeqCst) + 1;
        if self.faults.fail_dir_syncs.load(Ordering::SeqCst)
            || self.faults.fail_dir_sync_number.load(Ordering::SeqCst) == number
        {
            return Err(injected_as(self.faults.error_kind.load(Ordering::SeqCst)));
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
        self.fs.reads.fetch_add(1, Ordering::SeqCst);
        if self.fs.fail_reads.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected read fault"));
        }
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.fs.writes.fetch_add(1, Ordering::SeqCst);
        if self.spare {
            self.fs.spare_writes.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(self.fs.spare_write_delay_ms.load(Ordering::SeqCst)));
        }
        if self.compacting {
            self.fs.compacting_writes.fetch_add(1, Ordering::SeqCst);
            if let Some(started) = self.fs.compacting_write_started.lock().unwrap().take() {
                let _ = started.send(());
            }
            let delay = self.fs.compacting_write_delay_ms.load(Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(delay));
        }
        if self.fs.fail_writes.load(Ordering::SeqCst) {
            return Err(injected_as(self.fs.error_kind.load(Ordering::SeqCst)));
        }
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if let Some((entered, open)) = self.fs.sync_gate.lock().unwrap().take() {
            entered.send(()).unwrap();
            open.recv().unwrap();
        }
        if self.state
            && let Some((entered, open)) = self.fs.state_sync_gate.lock().unwrap().take()
        {
            entered.send(()).unwrap();
            open.recv().unwrap();
        }
        self.fs.syncs.fetch_add(1, Ordering::SeqCst);
        if self.fs.fail_syncs.load(Ordering::SeqCst) {
            return Err(injected_as(self.fs.error_kind.load(Ordering::SeqCst)));
        }
        self.inner.sync_data()
    }
    fn map(&self) -> io::Result<Arc<dyn MappedFile>> {
        self.inner.map()
    }
}

/// Every file directly in `dir`, by name, with its bytes: compare two of
/// these to check that an inspection changed nothing.
pub fn dir_snapshot(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).unwrap())
        })
        .collect()
}

/// A payload that occurs nowhere else in a log: `payload-<i>:` and filler
/// up to `len` bytes (at least 20), so a test can find it in a segment file.
pub fn unique_payload(i: u64, len: usize) -> Vec<u8> {
    assert!(len >= 20, "the unique prefix needs 20 bytes");
    let mut payload = format!("payload-{i:010}:").into_bytes();
    while payload.len() < len {
        payload.push(b'a' + ((payload.len() as u64 + i) % 26) as u8);
    }
    payload
}

/// Writes `count` records of `payload_len` bytes ([`unique_payload`]) over
/// three streams, closes the log cleanly and returns every record.
pub fn write_closed_log(dir: &Path, options: Options, count: u64, payload_len: usize) -> Vec<annals::Record> {
    let log = Log::open(dir, options).expect("open");
    for i in 0..count {
        log.append(format!("stream-{}", i % 3), annals::Expectation::Any, unique_payload(i, payload_len))
            .wait()
            .unwrap();
    }
    let records = log.read_all(annals::Lsn::ZERO, usize::MAX).unwrap();
    log.close().wait().unwrap();
    records
}

/// A cleanly closed log over several 8 KiB segments (80 records of 300
/// bytes) in a new temporary directory, and its records.
pub fn closed_multi_segment_log() -> (tempfile::TempDir, Vec<annals::Record>) {
    let dir = tempfile::tempdir().unwrap();
    let records = write_closed_log(dir.path(), small_options(), 80, 300);
    (dir, records)
}

/// Where a record's payload ends in the log's segment files: the file and
/// the offset just past it (a record's frame ends with its payload).
pub fn payload_end(dir: &Path, payload: &[u8]) -> Option<(PathBuf, usize)> {
    segment_files(dir).into_iter().find_map(|file| {
        let bytes = std::fs::read(&file).unwrap();
        let at = bytes.windows(payload.len()).position(|w| w == payload)?;
        Some((file, at + payload.len()))
    })
}

/// The records, in LSN order, whose frames lie wholly before `offset` of
/// segment `file`: everything damage starting there leaves intact (when it
/// reaches to the end of the log).
pub fn records_before(dir: &Path, records: &[annals::Record], file: &Path, offset: usize) -> Vec<annals::Record> {
    let segments = segment_files(dir);
    let damaged = segments.iter().position(|s| s == file).expect("a segment of the log");
    let mut intact = Vec::new();
    for record in records {
        let (at_file, end) = payload_end(dir, &record.payload).expect("every record's payload is in a segment");
        let index = segments.iter().position(|s| *s == at_file).unwrap();
        if index > damaged || (index == damaged && end > offset) {
            break;
        }
        intact.push(record.clone());
    }
    intact
}

/// The offset just past the last non-zero byte of a file, rounded up to a
/// whole 512-byte sector: where its written data ends.
pub fn written_end(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let last = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    last.div_ceil(512) * 512
}

/// Overwrites the last 4 KiB of written data of a segment (see
/// [`written_end`]: the last records and a clean-close marker) with
/// garbage (no zero byte) or with zeros; returns the first damaged offset.
pub fn damage_written_tail(segment: &Path, garbage: bool) -> usize {
    let end = written_end(segment);
    assert!(end >= 4096 + 1024, "the segment holds too little data for a 4 KiB tail ({end} bytes)");
    let start = end - 4096;
    let mut bytes = std::fs::read(segment).unwrap();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for byte in &mut bytes[start..end] {
        *byte = if garbage {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0] | 1
        } else {
            0
        };
    }
    std::fs::write(segment, bytes).unwrap();
    start
}

/// Panics naming every file added, removed or changed in `dir` since `before`.
pub fn assert_dir_unchanged(dir: &Path, before: &std::collections::BTreeMap<String, Vec<u8>>, what: &str) {
    let after = dir_snapshot(dir);
    let mut changes = Vec::new();
    for (name, bytes) in &after {
        match before.get(name) {
            None => changes.push(format!("{name} added")),
            Some(old) if old != bytes => {
                let at = old.iter().zip(bytes).position(|(a, b)| a != b).unwrap_or(old.len().min(bytes.len()));
                changes.push(format!(
                    "{name} changed ({} -> {} bytes, first difference at {at})",
                    old.len(),
                    bytes.len()
                ));
            }
            Some(_) => {}
        }
    }
    changes.extend(before.keys().filter(|name| !after.contains_key(*name)).map(|name| format!("{name} removed")));
    assert!(changes.is_empty(), "{what} changed the directory: {}", changes.join(", "));
}

/// Writes a log over many 8 KiB segments whose records are mostly dead, and
/// closes it cleanly: three records of a stream left alone ("untouched"),
/// then 12 workflows append steps of 120 bytes and fold every fifth into a
/// snapshot that prunes the steps it covers (`rounds` steps each), two of
/// them are deleted, and a batch writes to two more streams. Returns its
/// live records, in LSN order.
pub fn write_churned_log(dir: &Path, rounds: u64) -> Vec<annals::Record> {
    use annals::{Batch, Expectation, Lsn};
    let log = Log::open(dir, small_options()).expect("open");
    for i in 0..3 {
        log.append("untouched", Expectation::Any, unique_payload(1_000_000 + i, 200)).wait().unwrap();
    }
    for round in 0..rounds {
        for workflow in 0..12u64 {
            let stream = format!("wf-{workflow}");
            let appended = log.append(&stream, Expectation::Any, unique_payload(round * 100 + workflow, 120));
            let appended = appended.wait().unwrap();
            if appended.seq.0 % 5 == 4 {
                let state = format!("state of {stream} after round {round}").into_bytes();
                log.snapshot_and_prune(&stream, appended.seq, state).wait().unwrap();
            }
        }
    }
    log.delete_stream("wf-0").wait().unwrap();
    log.delete_stream("wf-1").wait().unwrap();
    let batch = Batch::new().append("batch-a", Expectation::Any, &b"first of a batch"[..]).append(
        "batch-b",
        Expectation::Any,
        &b"second of a batch"[..],
    );
    log.commit(batch).wait().unwrap();
    let live = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    log.close().wait().unwrap();
    live
}

/// Appends `rounds` rounds of 200 bytes to 20 streams (`{tag}-0` to
/// `{tag}-19`) and prunes all but the last entry of 19 of them: sealed
/// segments that are mostly dead, worth compacting.
pub fn fill_worth_compacting(log: &Log, rounds: u64, tag: &str) {
    for round in 0..rounds {
        for wf in 0..20u64 {
            log.append(format!("{tag}-{wf}"), annals::Expectation::Any, vec![round as u8; 200]).wait().unwrap();
        }
    }
    for wf in 1..20u64 {
        let stream = format!("{tag}-{wf}");
        let last = log.next_seq(&stream).unwrap().0 - 1;
        log.prune(&stream, annals::StreamSeq(last), annals::PruneSnapshots::Before(annals::Lsn::ZERO)).wait().unwrap();
    }
}
