//! Review 9 of what the directory holds besides the log's own regular
//! files: files an operator or another program put there under the log's
//! names. Each test names the behaviour it holds and says how the bug it
//! guards was found.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use annals::{Expectation, Log, LogReader, Options};

/// How long a test waits for an open it runs on another thread before it
/// calls the open hung. A guard against a hang, not a measurement: an open
/// of this log takes milliseconds.
const HUNG_AFTER: Duration = Duration::from_secs(60);

fn closed_log(dir: &Path) {
    let log = Log::open(dir, Options::default()).unwrap();
    for i in 0..20u8 {
        log.append(format!("s{}", i % 3), Expectation::Any, vec![i; 100]).wait().unwrap();
    }
    log.close().wait().unwrap();
}

/// Replaces `path` with a named pipe (FIFO).
fn replace_with_a_fifo(path: &Path) {
    std::fs::remove_file(path).unwrap();
    let made = std::process::Command::new("mkfifo").arg(path).status().expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// Runs `open` on its own thread and returns what it returned; if it has
/// not returned within [`HUNG_AFTER`], lets it go (a writer opens and
/// closes the pipe, so a reader blocked on it sees its end) and fails.
fn without_hanging<T: Send + 'static>(fifo: PathBuf, open: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    let opener = std::thread::spawn(move || {
        let _ = sender.send(open());
    });
    match receiver.recv_timeout(HUNG_AFTER) {
        Ok(opened) => {
            opener.join().unwrap();
            opened
        }
        Err(_) => {
            // A blocked open of the pipe for reading returns once a writer
            // opens it; its reads then end at once when the writer closes.
            let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
            let _ = opener.join();
            panic!("opening a log whose {} is a named pipe hung", fifo.display());
        }
    }
}

/// A named pipe where the state file belongs makes the open of a writer
/// and of a reader fail with a typed error. Found in review 9: every
/// open (and with it `annals verify`, `stats`, `dump` and `tail`) blocked
/// forever in `open(2)` of the pipe, waiting for a writer to it.
#[test]
fn a_named_pipe_as_the_state_file_fails_the_open_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path());
    let state = dir.path().join(annals::state::STATE_FILE_NAME);
    replace_with_a_fifo(&state);
    let path = dir.path().to_owned();
    let read = without_hanging(state.clone(), move || LogReader::open(&path).map(|_| ()));
    assert!(matches!(read, Err(annals::Error::Io { .. })), "{read:?}");
    let path = dir.path().to_owned();
    let opened = without_hanging(state, move || Log::open(&path, Options::default()).map(|log| log.close().wait()));
    assert!(matches!(opened, Err(annals::Error::Io { .. })), "{opened:?}");
}

/// The same for the index image, which a reader loads instead of
/// scanning: the open fails with a typed error or scans, but returns.
/// Found in review 9 with the test above (`annals stats`, `dump` and
/// `tail` hung).
#[test]
fn a_named_pipe_as_the_index_image_does_not_hang_the_open() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path());
    let image = dir.path().join(annals::image::IMAGE_FILE_NAME);
    assert!(image.exists(), "a clean close writes an index image");
    replace_with_a_fifo(&image);
    let path = dir.path().to_owned();
    let read = without_hanging(image.clone(), move || LogReader::open(&path).map(|reader| reader.last_lsn()));
    assert!(matches!(read, Ok(annals::Lsn(20)) | Err(annals::Error::Io { .. })), "{read:?}");
}

/// A directory named like the newest segment is refused with a typed
/// error, not read as one.
#[test]
fn a_directory_named_like_a_segment_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path());
    let segment = dir.path().join("00000000000000000001.seg");
    std::fs::remove_file(&segment).unwrap();
    std::fs::create_dir(&segment).unwrap();
    assert!(LogReader::open(dir.path()).is_err());
    assert!(Log::open(dir.path(), Options::default()).is_err());
}

/// A named pipe as the lock file of a damaged log: a read-only open (as
/// `annals verify` runs it) still returns, with the damage as a problem.
/// Found in review 9: a read-only open that finds damage asks whether a
/// writer holds the lock (damage beside a live writer may be its group in
/// flight) and opened the lock file read-only to ask, which blocked
/// forever on the pipe.
#[test]
fn a_named_pipe_as_the_lock_file_of_a_damaged_log_does_not_hang_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path());
    let segment = dir.path().join("00000000000000000001.seg");
    // Inside a frame in the middle of the segment (20 frames of 100-byte
    // payloads): a checksum mismatch with intact frames after it.
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[annals::segment::SEGMENT_HEADER_BYTES + 1000] ^= 0x55;
    std::fs::write(&segment, bytes).unwrap();
    let lock = annals::fs::lock_path(dir.path());
    replace_with_a_fifo(&lock);
    let path = dir.path().to_owned();
    let read = without_hanging(lock.clone(), move || {
        LogReader::open_scanning(&path, &Options::default()).map(|reader| reader.problems().len())
    });
    assert!(matches!(read, Ok(1..)), "{read:?}");
    // A writer refuses the pipe too, so no writer ever holds a lock that a
    // reader cannot ask about.
    let path = dir.path().to_owned();
    let opened = without_hanging(lock, move || Log::open(&path, Options::default()).map(|log| log.close().wait()));
    assert!(matches!(opened, Err(annals::Error::Io { .. })), "{opened:?}");
}
