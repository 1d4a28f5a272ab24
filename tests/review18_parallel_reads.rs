//! Review 18: attacks on the parallel first read (`index::Index::prefetch`),
//! which review 17's tests did not reach: media that refuses every change,
//! a read call that fails in a helper thread's share, options that differ
//! from the run that wrote the log, and segment files changed behind the
//! image's back. Each test of a read proves that the read it attacks was
//! shared with helper threads (its read calls came from two threads or
//! more), so that a change that stops the path being taken fails here
//! rather than passing on the one-thread path.
//!
//! Each test is named after the behaviour it must keep.

mod common;

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use annals::fs::{DirLock, File, FileSystem, LockMode, MappedFile, RealFs};
use annals::{Durability, Error, Expectation, IndexImageWrites, Log, LogReader, Options, Record, StreamSeq};
use common::scattered::{ROWS, options, scattered_log};

fn payloads(records: &[Record]) -> Vec<Vec<u8>> {
    records.iter().map(|record| record.payload.to_vec()).collect()
}

/// What a full scan of the log in `dir` reads of the long run.
fn scanned(dir: &Path) -> Vec<Record> {
    scanned_stream(dir, "long")
}

/// What a full scan of the log in `dir` reads of `stream`.
fn scanned_stream(dir: &Path, stream: &str) -> Vec<Record> {
    LogReader::open_scanning(dir, &Options::default()).unwrap().read_stream(stream).unwrap().entries
}

/// What [`WatchedFs`] records and refuses.
#[derive(Debug, Default)]
struct Watch {
    /// The threads that made a read call of a segment file.
    reading_threads: Mutex<HashSet<ThreadId>>,
    /// Changes asked of the media (all refused when `read_only`).
    changes: AtomicU64,
    read_only: AtomicBool,
    /// Read calls of this segment file at or after this offset fail with
    /// an I/O error, as a bad sector does.
    failing: Mutex<Option<(PathBuf, u64)>>,
    failed_reads: AtomicU64,
    /// Reads that do not wait answer "not in memory" for every other frame
    /// of a segment file, as after the system reclaimed part of the cache.
    half_cold: AtomicBool,
    /// Reads that did not wait, those answered "not in memory", and the
    /// hints that asked the device for what they missed.
    cached_reads: AtomicU64,
    missed: AtomicU64,
    hints: AtomicU64,
    /// Where the hints pointed, and the reads that waited for a frame a
    /// hint had asked for, on a thread other than `main`'s.
    hinted: Mutex<HashSet<(PathBuf, u64)>>,
    main: Mutex<Option<ThreadId>>,
    helper_rereads: AtomicU64,
    /// Read calls of segment files, and the bytes they asked for.
    read_calls: AtomicU64,
    read_bytes: AtomicU64,
    /// Threads whose read call failed.
    failed_on: Mutex<HashSet<ThreadId>>,
}

impl Watch {
    fn change(&self) -> io::Result<()> {
        self.changes.fetch_add(1, Ordering::SeqCst);
        if self.read_only.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::ReadOnlyFilesystem, "read-only file system"));
        }
        Ok(())
    }

    fn reading_threads(&self) -> usize {
        self.reading_threads.lock().unwrap().len()
    }

    fn forget_readers(&self) {
        self.reading_threads.lock().unwrap().clear();
        self.read_calls.store(0, Ordering::SeqCst);
        self.read_bytes.store(0, Ordering::SeqCst);
    }
}

/// The real file system, watched: which threads read segment files, which
/// changes are asked for (refused on read-only media), and read calls
/// that fail past an offset. Its files run their reads in parallel, as
/// the real file system's do.
#[derive(Debug, Clone, Default)]
struct WatchedFs {
    watch: Arc<Watch>,
}

impl WatchedFs {
    fn options(&self, base: Options) -> Options {
        Options { file_system: Arc::new(self.clone()), ..base }
    }
}

#[derive(Debug)]
struct WatchedFile {
    inner: Arc<dyn File>,
    path: PathBuf,
    segment: bool,
    watch: Arc<Watch>,
}

impl FileSystem for WatchedFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.watch.change()?;
        RealFs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        RealFs.list(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn File>> {
        self.watch.change()?;
        let inner = RealFs.create(path)?;
        Ok(Arc::new(WatchedFile { inner, path: path.to_owned(), segment: false, watch: self.watch.clone() }))
    }
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn File>> {
        if writable {
            self.watch.change()?;
        }
        let inner = RealFs.open(path, writable)?;
        let segment = path.extension().is_some_and(|extension| extension == "seg");
        Ok(Arc::new(WatchedFile { inner, path: path.to_owned(), segment, watch: self.watch.clone() }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.watch.change()?;
        RealFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.watch.change()?;
        RealFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.watch.change()?;
        RealFs.sync_dir(dir)
    }
    fn lock(&self, dir: &Path, mode: LockMode) -> io::Result<Option<DirLock>> {
        if self.watch.read_only.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::ReadOnlyFilesystem, "read-only file system"));
        }
        RealFs.lock(dir, mode)
    }
    fn writer_active(&self, dir: &Path) -> io::Result<bool> {
        RealFs.writer_active(dir)
    }
}

impl File for WatchedFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.segment {
            let me = std::thread::current().id();
            self.watch.reading_threads.lock().unwrap().insert(me);
            self.watch.read_calls.fetch_add(1, Ordering::SeqCst);
            self.watch.read_bytes.fetch_add(buf.len() as u64, Ordering::SeqCst);
            if *self.watch.main.lock().unwrap() != Some(me)
                && self.watch.hinted.lock().unwrap().contains(&(self.path.clone(), offset))
            {
                self.watch.helper_rereads.fetch_add(1, Ordering::SeqCst);
            }
            let fails =
                self.watch.failing.lock().unwrap().as_ref().is_some_and(|(p, from)| *p == self.path && offset >= *from);
            if fails {
                self.watch.failed_reads.fetch_add(1, Ordering::SeqCst);
                self.watch.failed_on.lock().unwrap().insert(me);
                return Err(io::Error::other("injected: unreadable sector"));
            }
        }
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.watch.change()?;
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.watch.change()?;
        self.inner.sync_data()
    }
    fn map(&self) -> io::Result<Arc<dyn MappedFile>> {
        self.inner.map()
    }
    fn parallel_reads(&self) -> bool {
        self.inner.parallel_reads()
    }
    fn read_cached_at(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        if !self.segment {
            return self.inner.read_cached_at(buf, offset);
        }
        let number = self.watch.cached_reads.fetch_add(1, Ordering::SeqCst);
        if self.watch.half_cold.load(Ordering::SeqCst) && number % 2 == 1 {
            self.watch.missed.fetch_add(1, Ordering::SeqCst);
            return Ok(false);
        }
        self.read_at(buf, offset).map(|()| true)
    }
    fn will_need(&self, offset: u64, len: usize) {
        if self.segment {
            self.watch.hints.fetch_add(1, Ordering::SeqCst);
            self.watch.hinted.lock().unwrap().insert((self.path.clone(), offset));
        }
        self.inner.will_need(offset, len);
    }
}

/// On media that refuses every change, a reader's long first read after it
/// loaded the image is shared with helper threads, reads what a full scan
/// reads, and asks the media for nothing but reads; a writer's open is
/// refused with an I/O error.
#[test]
fn a_long_first_read_on_read_only_media_is_shared_and_asks_only_for_reads() {
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        return; // one core: the read keeps its calls to itself
    }
    let dir = tempfile::tempdir().unwrap();
    let rows = scattered_log(dir.path());
    let expected = scanned(dir.path());
    assert_eq!(payloads(&expected), rows);
    let before = common::dir_snapshot(dir.path());

    let fs = WatchedFs::default();
    fs.watch.read_only.store(true, Ordering::SeqCst);
    let reader = LogReader::open_with(dir.path(), &fs.options(Options::default())).unwrap();
    assert!(reader.problems().is_empty(), "{:?}", reader.problems());
    fs.watch.forget_readers();
    assert_eq!(reader.read_stream("long").unwrap().entries, expected, "the first read");
    assert!(fs.watch.reading_threads() >= 2, "the first read was shared ({} threads)", fs.watch.reading_threads());
    assert_eq!(reader.read_stream("long").unwrap().entries, expected, "the second read");
    let changes = fs.watch.changes.load(Ordering::SeqCst);
    assert_eq!(changes, 0, "a reader asked read-only media for {changes} changes");
    drop(reader);

    let refused = Log::open(dir.path(), fs.options(options())).err();
    assert!(matches!(refused, Some(Error::Io { .. })), "a writer on read-only media: {refused:?}");
    common::assert_dir_unchanged(dir.path(), &before, "read-only media");
}

/// A read call that fails (an unreadable sector) in the share of a helper
/// thread: the read is an I/O error, the rows before the failing one are
/// visited as written and nothing from it on; the log is not poisoned by
/// a failed read, and once the sector reads again the whole run is read
/// and appends go on.
#[test]
fn a_read_call_that_fails_in_a_helper_threads_share_is_an_io_error_and_returns_nothing_after_it() {
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rows = scattered_log(dir.path());
    let expected = scanned(dir.path());
    let failing_row = ROWS as usize * 7 / 8;
    let (file, end) = common::payload_end(dir.path(), &rows[failing_row]).expect("the row is on disk");
    // Every read call of the file from just before the failing row's frame
    // (its headers are shorter than 128 bytes; the run's row before it
    // lies about 24 KiB earlier) fails.
    let from = (end - rows[failing_row].len() - 128) as u64;

    let fs = WatchedFs::default();
    let log = Log::open(dir.path(), fs.options(options())).unwrap();
    assert!(matches!(log.recovery_report().index_image, annals::image::ImageUse::Loaded { .. }));
    // The sector goes bad after the open.
    *fs.watch.failing.lock().unwrap() = Some((file.clone(), from));
    fs.watch.forget_readers();
    let mut seen = Vec::new();
    let visited = log.visit_stream("long", |record| seen.push(record.payload.to_vec()));
    assert!(matches!(visited, Err(Error::Io { .. })), "a failed read call: {visited:?}");
    assert!(fs.watch.reading_threads() >= 2, "the read was shared ({} threads)", fs.watch.reading_threads());
    assert!(fs.watch.failed_reads.load(Ordering::SeqCst) > 0, "the injected fault was reached");
    let main = std::thread::current().id();
    assert!(
        fs.watch.failed_on.lock().unwrap().iter().any(|thread| *thread != main),
        "the failing read call was a helper thread's"
    );
    assert!(seen.len() <= failing_row, "{} rows visited, the failing one at index {failing_row}", seen.len());
    assert_eq!(seen, rows[..seen.len()], "the rows visited are the run's first, as written");

    // The sector reads again: nothing was lost, nothing is poisoned.
    *fs.watch.failing.lock().unwrap() = None;
    assert_eq!(log.read_stream("long").unwrap().entries, expected);
    let next = log.append("long", Expectation::Any, &b"after the failed read"[..]).wait().unwrap();
    assert_eq!(next.seq, StreamSeq(expected.last().unwrap().seq.0 + 1));
    log.close().wait().unwrap();
}

/// Options that differ from the run that wrote the log (a record limit
/// below the run's rows, other segment sizes, durability and image policy)
/// are policy for writing: a long first read after the open is shared,
/// reads every row as written, and the log appends on.
#[test]
fn options_that_differ_from_the_writing_run_do_not_change_a_long_first_read() {
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rows = scattered_log(dir.path());
    let expected = scanned(dir.path());
    let differing = [
        Options { record_bytes_max: 128, ..options() },
        Options { segment_bytes: 1 << 20, durability: Durability::Sync, ..options() },
        Options { segment_bytes: 64 << 20, index_image: IndexImageWrites::Off, ..options() },
    ];
    for (run, differing) in differing.into_iter().enumerate() {
        let fs = WatchedFs::default();
        let log = Log::open(dir.path(), fs.options(differing)).unwrap();
        fs.watch.forget_readers();
        assert_eq!(log.read_stream("long").unwrap().entries, expected, "run {run}: the first read");
        assert!(fs.watch.reading_threads() >= 2, "run {run}: the first read was shared");
        // The appends of a run are checked against its own options; the
        // first run's limit refuses a row as long as the earlier ones.
        let long_row = vec![7u8; 300];
        let appended = log.append(format!("after-{run}"), Expectation::Any, long_row).wait();
        if run == 0 {
            assert!(matches!(appended, Err(Error::TooLarge { .. })), "run 0: {appended:?}");
        } else {
            appended.unwrap();
        }
        log.close().wait().unwrap();
    }
    assert_eq!(payloads(&scanned(dir.path())), rows, "the run as written, after three other runs");
}

/// A sealed segment cut short after a clean close, below rows the image
/// says it holds: the open refuses it as corruption naming the segment,
/// before any read could be shared out, and a reader either refuses it
/// too or reports it and never reads the run as whole.
#[test]
fn a_sealed_segment_cut_short_behind_the_image_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let rows = scattered_log(dir.path());
    let segments = common::segment_files(dir.path());
    assert!(segments.len() >= 4, "the log spans several segments ({})", segments.len());
    let cut = &segments[segments.len() / 2];
    let length = std::fs::metadata(cut).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(cut).unwrap().set_len(length / 2).unwrap();
    let before = common::dir_snapshot(dir.path());

    match Log::open(dir.path(), options()).err() {
        Some(Error::Corruption(corruption)) => assert_eq!(&corruption.file, cut),
        other => panic!("a cut segment's open: {other:?}"),
    }
    match LogReader::open(dir.path()) {
        Err(Error::Corruption(corruption)) => assert_eq!(&corruption.file, cut),
        Err(other) => panic!("a reader's open of a cut segment: {other}"),
        Ok(reader) => {
            assert!(!reader.problems().is_empty(), "a reader opened a cut segment and reported nothing");
            if let Ok(read) = reader.read_stream("long") {
                assert!(read.entries.len() < rows.len(), "a reader read a cut run as whole");
            }
        }
    }
    // Nothing but the image is changed: a read-write open deletes an image
    // it does not use (segments-format.md), before the scan that finds the
    // cut segment.
    let mut after = common::dir_snapshot(dir.path());
    let mut before = before;
    before.remove(annals::image::IMAGE_FILE_NAME);
    after.remove(annals::image::IMAGE_FILE_NAME);
    assert!(after == before, "a refused open changed more than the image");
}

/// A log whose run `sized` has rows of one length for its first half, then
/// longer rows that still fit a first read by read call (frames of 467
/// bytes, against 512), the last ten longer than that, between the rows of
/// short runs; closed cleanly. Returns the run's rows.
fn log_of_growing_rows(dir: &Path) -> Vec<Vec<u8>> {
    common::scattered::interleaved_log(dir, "sized", 800, 300, |i| {
        let len = match i {
            0..400 => 230,
            400..790 => 400,
            _ => 900,
        };
        common::unique_payload(i, len)
    })
}

/// A first read by read call fetches about as many bytes as the run's
/// frames hold, not a fixed 512: rows of one length cost one call each and
/// less than 512 bytes; rows that grow past the guess are read whole (a
/// second call for the rest, then a longer guess); rows longer than a read
/// call takes are read through the map. Every row reads as written, shared
/// with helper threads or not.
#[test]
fn a_first_read_by_read_call_fetches_about_what_the_frames_hold_and_reads_every_row_whole() {
    let dir = tempfile::tempdir().unwrap();
    let rows = log_of_growing_rows(dir.path());
    let expected = scanned_stream(dir.path(), "sized");
    assert!(payloads(&expected) == rows, "the full scan reads {} rows of {}", expected.len(), rows.len());

    let fs = WatchedFs::default();
    let log = Log::open(dir.path(), fs.options(options())).unwrap();
    assert!(matches!(log.recovery_report().index_image, annals::image::ImageUse::Loaded { .. }));
    fs.watch.forget_readers();
    let first_half = log.read_stream_range("sized", expected[0].seq, 400).unwrap();
    assert!(first_half == expected[..400], "the first 400 rows");
    let (calls, bytes) = (fs.watch.read_calls.load(Ordering::SeqCst), fs.watch.read_bytes.load(Ordering::SeqCst));
    // 230-byte rows: frames of 297 bytes (a header of 40, an operation's
    // 22, the id's 5), read as 384 once the guess has settled.
    assert!((400..=410).contains(&calls), "{calls} read calls for 400 rows of one length");
    assert!(bytes <= 400 * 400, "{bytes} bytes read for 400 frames of 297 bytes");
    fs.watch.forget_readers();
    let rest = log.read_stream_range("sized", expected[400].seq, 400).unwrap();
    assert!(rest == expected[400..], "rows longer than the guess, and longer than a read call takes");
    // This thread's guess fits the short rows: its first longer row takes a
    // second call, and the guess then fits the rest. A frame longer than a
    // read call takes is one call, then the map.
    let calls = fs.watch.read_calls.load(Ordering::SeqCst);
    assert!(
        (401..=420).contains(&calls),
        "{calls} read calls for 400 longer rows (a second call only while the guess grows)"
    );
    log.close().wait().unwrap();
    drop(log);

    // The same, the read shared with helper threads where the machine has
    // two cores or more.
    let fs = WatchedFs::default();
    let log = Log::open(dir.path(), fs.options(options())).unwrap();
    assert!(log.read_stream("sized").unwrap().entries == expected, "the whole run");
    log.close().wait().unwrap();
}

/// Half the frames of a long first read are not in memory (a cold cache,
/// or one the system reclaimed a part of): the read shared with helper
/// threads takes the others first, asks the device for each it missed,
/// then waits for them, and reads every row as written.
#[test]
fn a_long_first_read_asks_the_device_at_once_for_the_frames_not_in_memory() {
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rows = scattered_log(dir.path());
    let expected = scanned(dir.path());
    let fs = WatchedFs::default();
    let log = Log::open(dir.path(), fs.options(options())).unwrap();
    fs.watch.half_cold.store(true, Ordering::SeqCst);
    *fs.watch.main.lock().unwrap() = Some(std::thread::current().id());
    fs.watch.forget_readers();
    let mut seen = Vec::new();
    log.visit_stream("long", |record| seen.push(record.payload.to_vec())).unwrap();
    assert!(seen == rows, "{} rows read of {}", seen.len(), rows.len());
    let (cached, missed, hints) = (
        fs.watch.cached_reads.load(Ordering::SeqCst),
        fs.watch.missed.load(Ordering::SeqCst),
        fs.watch.hints.load(Ordering::SeqCst),
    );
    assert!(fs.watch.reading_threads() >= 2, "the read was shared");
    assert!(cached >= ROWS * 9 / 10, "{cached} reads that do not wait, for {ROWS} rows");
    assert!(missed >= cached / 2 - 4, "{missed} of {cached} missed");
    assert_eq!(hints, missed, "a hint for every frame missed");
    // Each missed frame read again, waiting, by the thread that missed it:
    // the helper threads read theirs again themselves.
    let calls = fs.watch.read_calls.load(Ordering::SeqCst);
    assert!(calls >= cached, "{calls} read calls for {cached} reads that did not wait");
    let rereads = fs.watch.helper_rereads.load(Ordering::SeqCst);
    assert!(rereads > 0 && rereads < missed, "{rereads} of {missed} missed frames read again by helper threads");
    assert_eq!(log.read_stream("long").unwrap().entries, expected);
    log.close().wait().unwrap();
}

/// The same on the real file system, its segments dropped from the cache
/// first (`dd iflag=nocache`, where the machine has GNU dd and the
/// temporary directory is not in memory): every row reads as written,
/// whichever of its frames the kernel had. A smoke test of the real calls:
/// the test above checks the order of the reads.
#[test]
fn a_long_first_read_of_segments_dropped_from_the_cache_reads_every_row_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let rows = scattered_log(dir.path());
    let expected = scanned(dir.path());
    for segment in common::segment_files(dir.path()) {
        let dropped = std::process::Command::new("dd")
            .arg(format!("if={}", segment.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status();
        if !dropped.is_ok_and(|status| status.success()) {
            eprintln!("no GNU dd: the segments stay in the cache");
            break;
        }
    }
    let log = Log::open(dir.path(), options()).unwrap();
    let mut seen = Vec::new();
    log.visit_stream("long", |record| seen.push(record.payload.to_vec())).unwrap();
    assert!(seen == rows, "{} rows read of {}", seen.len(), rows.len());
    assert_eq!(log.read_stream("long").unwrap().entries, expected);
    log.close().wait().unwrap();
}

/// A reader's long first read beside a live writer that appends to the
/// same run and to others while the reader opens and reads: the reader
/// reads the run as written up to some point, in order, and never a row
/// the writer did not write there.
#[test]
fn a_readers_long_first_read_beside_a_live_writer_reads_a_prefix_of_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let rows = scattered_log(dir.path());
    let log = Log::open(dir.path(), options()).unwrap();
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut more = Vec::new();
            for i in 0..300u64 {
                let row = common::unique_payload(5_000_000 + i, 250);
                log.append("long", Expectation::Any, row.clone()).wait().unwrap();
                log.append(format!("short-{}", i % 50), Expectation::Any, vec![b'w'; 2000]).wait().unwrap();
                more.push(row);
            }
            more
        })
    };
    let fs = WatchedFs::default();
    let mut shared = 0;
    let mut longest = 0;
    for round in 0.. {
        // Until the writer is done, and once after: that read sees it all.
        let done = writer.is_finished();
        let reader = LogReader::open_with(dir.path(), &fs.options(Options::default())).unwrap();
        fs.watch.forget_readers();
        let read = payloads(&reader.read_stream("long").unwrap().entries);
        shared = shared.max(fs.watch.reading_threads());
        assert!(read.len() >= rows.len(), "{} rows of the {} closed ones", read.len(), rows.len());
        assert!(read[..rows.len()] == rows[..], "the closed run as written");
        longest = longest.max(read.len());
        let extra = read[rows.len()..].to_vec();
        assert!(extra.iter().enumerate().all(|(i, row)| *row == common::unique_payload(5_000_000 + i as u64, 250)));
        if done && round >= 5 {
            break;
        }
    }
    let more = writer.join().unwrap();
    assert_eq!(more.len(), 300);
    if std::thread::available_parallelism().map_or(1, usize::from) >= 2 {
        assert!(shared >= 2, "a reader's first read beside the writer was shared ({shared} threads)");
    }
    assert_eq!(longest, rows.len() + 300, "the read after the writer finished");
    log.close().wait().unwrap();
}

/// A sealed segment deleted after a clean close, between two the image
/// covers: the open refuses it as corruption rather than read the run
/// with a hole, and a reader refuses it or reports it.
#[test]
fn a_sealed_segment_deleted_behind_the_image_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let rows = scattered_log(dir.path());
    let segments = common::segment_files(dir.path());
    assert!(segments.len() >= 4, "the log spans several segments ({})", segments.len());
    std::fs::remove_file(&segments[segments.len() / 2]).unwrap();
    match Log::open(dir.path(), options()).err() {
        Some(Error::Corruption(_)) => {}
        other => panic!("a deleted segment's open: {other:?}"),
    }
    match LogReader::open(dir.path()) {
        Err(Error::Corruption(_)) => {}
        Err(other) => panic!("a reader's open of a log missing a segment: {other}"),
        Ok(reader) => {
            assert!(!reader.problems().is_empty(), "a reader opened a log missing a segment and reported nothing");
            if let Ok(read) = reader.read_stream("long") {
                assert!(read.entries.len() < rows.len(), "a reader read the run whole");
            }
        }
    }
}
