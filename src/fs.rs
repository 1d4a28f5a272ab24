//! The file-system seam: the only place Annals touches files.
//!
//! Every read, write, sync, rename and delete the engine does goes through
//! [`FileSystem`] and [`File`]. [`RealFs`] is the operating system's; the
//! crash simulator supplies one that keeps durable and pending bytes apart
//! and can fail any operation. The traits are deliberately narrow: whatever
//! the engine can ask of a disk, a simulator can model and fail.

use std::any::Any;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

/// How a directory lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// One writer, no readers from other handles.
    Exclusive,
    /// Any number of readers, no writer.
    Shared,
}

/// A held directory lock; dropping it releases the lock.
pub type DirLock = Box<dyn Any + Send + Sync>;

/// A file system, as far as Annals needs one.
pub trait FileSystem: Send + Sync + fmt::Debug + 'static {
    /// Creates the directory and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries in a directory.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates a new, empty file for reading and writing; fails if it exists.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn File>>;
    /// Opens an existing regular file, for writing too if `writable`;
    /// anything else under the name (a directory, a named pipe, a device)
    /// is refused with [`io::ErrorKind::InvalidInput`].
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn File>>;
    /// Renames a file atomically, replacing any file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Deletes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creates, renames, deletes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Locks a directory against other handles and processes. `Ok(None)`
    /// when someone else holds a conflicting lock.
    fn lock(&self, dir: &Path, mode: LockMode) -> io::Result<Option<DirLock>>;
    /// Whether a writer holds the directory's lock right now, found without
    /// creating or changing anything (readers use it on read-only media).
    fn writer_active(&self, dir: &Path) -> io::Result<bool> {
        let _ = dir;
        Ok(false)
    }
    /// Milliseconds since the Unix epoch by this machine's clock: the time
    /// stamped on frames, segment headers and the index image, and the
    /// "now" of time-based retention. The simulator's clock is its own, so
    /// that a seed replays the same bytes.
    fn now_ms(&self) -> u64 {
        crate::commit::now_ms()
    }
    /// Called before a log starts one of its background threads (`thread`
    /// is its name): an error is what a failed spawn returns. The real file
    /// system allows every one; a test's can refuse one, to see what a log
    /// does without it.
    fn before_spawn(&self, thread: &str) -> io::Result<()> {
        let _ = thread;
        Ok(())
    }
}

/// An open file.
#[allow(clippy::len_without_is_empty)] // a fallible length; emptiness is never asked
pub trait File: Send + Sync + fmt::Debug {
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Fills `buf` from `offset`; an error if the file ends first.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the file's data durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// A read-only view of the whole file that also shows later writes at
    /// offsets below the file's length at the time of the call.
    fn map(&self) -> io::Result<Arc<dyn MappedFile>>;
    /// Whether a read may spread its many small reads of this file over
    /// helper threads: a real file's run in parallel in the kernel. The
    /// simulator's files keep theirs on one thread, so that a seed's run
    /// (which read its faults hit) stays the same.
    fn parallel_reads(&self) -> bool {
        false
    }
    /// Fills `buf` from `offset` if all of it is in memory now, without
    /// waiting for the device: `Ok(false)` if some of it is not (and `buf`
    /// then says nothing), which a [`File::read_at`] waits for. Files that
    /// cannot tell (the simulator's) read as `read_at` does.
    fn read_cached_at(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        self.read_at(buf, offset).map(|()| true)
    }
    /// A hint that `len` bytes from `offset` will be read soon: a real
    /// file's device starts fetching them at once, beside the others asked
    /// for this way, where one waiting read at a time would fetch them in
    /// turn. Nothing to answer: a hint that fails changes nothing.
    fn will_need(&self, offset: u64, len: usize) {
        let _ = (offset, len);
    }
}

/// A read-only view of a file's bytes.
pub trait MappedFile: Send + Sync + fmt::Debug {
    /// Bytes in the view.
    fn len(&self) -> usize;
    /// Whether the view is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `len` bytes from `offset`, without copying where the implementation
    /// allows it. The caller keeps the range inside the view.
    fn slice(&self, offset: usize, len: usize) -> Bytes;
    /// The whole view as one borrowed slice, where the implementation can
    /// lend it (a memory map can; the simulated file system cannot, and
    /// readers fall back to [`MappedFile::slice`]).
    fn as_slice(&self) -> Option<&[u8]> {
        None
    }
}

/// A file's bytes held in memory: a view of a file as it would read after
/// a write that has not been made (a read-only open reading a segment
/// through recovery's synced copy of its tail).
#[derive(Debug)]
pub struct OwnedView(pub Bytes);

impl MappedFile for OwnedView {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn slice(&self, offset: usize, len: usize) -> Bytes {
        self.0.slice(offset..offset + len)
    }

    fn as_slice(&self) -> Option<&[u8]> {
        Some(&self.0)
    }
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

#[derive(Debug)]
struct RealFile {
    file: fs::File,
    /// Its file system refused a read that does not wait: every read waits.
    waits_only: std::sync::atomic::AtomicBool,
}

impl FileSystem for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn File>> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        Ok(Arc::new(RealFile { file, waits_only: Default::default() }))
    }

    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn File>> {
        // Only a regular file is a file of the log. What was opened is
        // checked, so anything else under its name is refused; the open is
        // non-blocking so that a named pipe there cannot hold it forever
        // waiting for a writer to the pipe (the flag changes nothing for a
        // regular file's reads, writes and syncs).
        let file = OpenOptions::new().read(true).write(writable).custom_flags(libc::O_NONBLOCK).open(path)?;
        refuse_unless_a_regular_file(&file.metadata()?)?;
        Ok(Arc::new(RealFile { file, waits_only: Default::default() }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        fs::File::open(dir)?.sync_all()
    }

    fn lock(&self, dir: &Path, mode: LockMode) -> io::Result<Option<DirLock>> {
        let path = lock_path(dir);
        // A lock file that is no regular file is refused, as `open` refuses
        // one: a reader could not ask about it without blocking
        // (`writer_holds_lock`), so no writer holds one.
        match fs::metadata(&path) {
            Ok(metadata) => refuse_unless_a_regular_file(&metadata)?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let attempt = match mode {
            LockMode::Exclusive => file.try_lock(),
            LockMode::Shared => file.try_lock_shared(),
        };
        match attempt {
            Ok(()) => Ok(Some(Box::new(file))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(error)) => Err(error),
        }
    }

    fn writer_active(&self, dir: &Path) -> io::Result<bool> {
        RealFs::writer_holds_lock(dir)
    }
}

impl RealFs {
    fn writer_holds_lock(dir: &Path) -> io::Result<bool> {
        // Non-blocking, then checked: opening a named pipe for reading
        // would otherwise block forever.
        let file = match OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(lock_path(dir)) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(error),
        };
        refuse_unless_a_regular_file(&file.metadata()?)?;
        match file.try_lock_shared() {
            Ok(()) => Ok(false),
            Err(fs::TryLockError::WouldBlock) => Ok(true),
            Err(fs::TryLockError::Error(error)) => Err(error),
        }
    }
}

/// `InvalidInput` unless `metadata` is a regular file's: a directory, a
/// named pipe or a device put under a log's file name is none of the log's.
fn refuse_unless_a_regular_file(metadata: &fs::Metadata) -> io::Result<()> {
    if metadata.is_file() {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"))
    }
}

/// The lock file inside a log directory.
pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join("LOCK")
}

impl File for RealFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn map(&self) -> io::Result<Arc<dyn MappedFile>> {
        mmap::map_file(&self.file)
    }

    fn parallel_reads(&self) -> bool {
        true
    }

    fn read_cached_at(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        cached::read_cached_at(&self.file, &self.waits_only, buf, offset)
    }

    fn will_need(&self, offset: u64, len: usize) {
        cached::will_need(&self.file, offset, len);
    }
}

/// Reads that do not wait for the device, and hints that start it: two
/// calls of the kernel that std does not wrap, each with its own `unsafe`.
#[allow(unsafe_code)]
mod cached {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Fills `buf` from `offset` of `file` if all of it is in memory, as
    /// [`File::read_cached_at`]. `waits_only` is set, for this file, once
    /// its file system refuses reads that do not wait (a kernel before
    /// 4.14, a file system without them): its reads then wait.
    #[cfg(target_os = "linux")]
    pub(super) fn read_cached_at(
        file: &fs::File,
        waits_only: &AtomicBool,
        buf: &mut [u8],
        offset: u64,
    ) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let at = match libc::off_t::try_from(offset) {
            Ok(at) if !waits_only.load(Ordering::Relaxed) => at,
            _ => return file.read_exact_at(buf, offset).map(|()| true),
        };
        let vector = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: `vector` describes `buf`, borrowed mutably for the whole
        // call: the kernel writes at most `buf.len()` bytes, into it alone.
        let read = unsafe { libc::preadv2(file.as_raw_fd(), &vector, 1, at, libc::RWF_NOWAIT) };
        if let Ok(read) = usize::try_from(read) {
            // Short: the rest is not in memory, or the file ends there (the
            // read that waits says which).
            return Ok(read == buf.len());
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR) => Ok(false),
            // The flag, or the call, unknown here: never again for this file.
            Some(libc::EOPNOTSUPP | libc::ENOSYS) => {
                waits_only.store(true, Ordering::Relaxed);
                file.read_exact_at(buf, offset).map(|()| true)
            }
            // Anything else, the read that waits answers for itself.
            _ => file.read_exact_at(buf, offset).map(|()| true),
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn read_cached_at(file: &fs::File, _: &AtomicBool, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        file.read_exact_at(buf, offset).map(|()| true)
    }

    #[cfg(target_os = "linux")]
    pub(super) fn will_need(file: &fs::File, offset: u64, len: usize) {
        use std::os::fd::AsRawFd;
        let (Ok(at), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else { return };
        if len == 0 {
            return; // 0 would ask for the rest of the file
        }
        // SAFETY: a file descriptor and a range: the kernel reads and writes
        // none of this process's memory.
        let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), at, len, libc::POSIX_FADV_WILLNEED) };
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn will_need(_: &fs::File, _: u64, _: usize) {}
}

/// Mapping files: with [`cached`], the only `unsafe` of the crate.
#[allow(unsafe_code)]
mod mmap {
    use super::*;

    #[derive(Debug)]
    struct RealMap {
        bytes: Bytes,
    }

    pub(super) fn map_file(file: &fs::File) -> io::Result<Arc<dyn MappedFile>> {
        // SAFETY: Annals never shrinks or truncates a segment file while it is
        // open, and it only hands out slices of ranges that were written and
        // acknowledged before the slice was taken and are never written
        // again; writes into the rest of the file go through `write_at`,
        // which the shared mapping observes coherently on Linux. Another
        // process could still change the file, which the directory lock
        // rules out for cooperating processes.
        let map = unsafe { memmap2::Mmap::map(file)? };
        Ok(Arc::new(RealMap { bytes: Bytes::from_owner(map) }))
    }

    impl MappedFile for RealMap {
        fn len(&self) -> usize {
            self.bytes.len()
        }

        fn slice(&self, offset: usize, len: usize) -> Bytes {
            self.bytes.slice(offset..offset + len)
        }

        fn as_slice(&self) -> Option<&[u8]> {
            Some(&self.bytes)
        }
    }
}
