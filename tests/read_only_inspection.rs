//! Issue 9, cases 7 to 9: inspection works when it is needed most. The
//! reader takes no lock and changes nothing (a live writer beside it) and
//! says "not an Annals log" where there is none. The same for the `annals`
//! command, on read-only media too, and its `dump --salvage` and
//! `repair --into`, are tested in the command's crate (`cli/tests/inspection.rs`).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use annals::{Error, Expectation, Log, LogReader, Lsn, Record};

fn all_records(log: &Log) -> Vec<Record> {
    log.read_all(Lsn::ZERO, usize::MAX).unwrap()
}

/// A cleanly closed log over several 8 KiB segments.
fn closed_log(dir: &Path) -> Vec<Record> {
    common::write_closed_log(dir, common::small_options(), 80, 300)
}

/// Issue 9, case 7: the reader took a shared lock (creating `LOCK`) and so
/// could not run beside a writer nor on media it may not write. It takes no
/// lock: a writer opens while a reader is open, and no file appears.
#[test]
fn log_reader_takes_no_lock_and_creates_no_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let records = closed_log(dir.path());
    let _ = std::fs::remove_file(dir.path().join("LOCK"));
    let before = common::dir_snapshot(dir.path());
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), records);
    common::assert_dir_unchanged(dir.path(), &before, "the reader");
    assert!(!dir.path().join("LOCK").exists());
    let writer = Log::open(dir.path(), common::small_options()).expect("a writer opens beside a reader");
    writer.append("s", Expectation::Any, &b"beside a reader"[..]).wait().unwrap();
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), records, "the reader keeps what it read");
    writer.close().wait().unwrap();
}

/// Issue 9, case 7: `LogReader::open` failed with `Locked` while a writer
/// had the log open. Opened beside a writer that keeps appending, it sees at
/// least every record acknowledged before it opened, reports no false
/// corruption, and the writer goes on undisturbed.
#[test]
fn log_reader_beside_a_live_writer_sees_every_acknowledged_record_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (log, acked, stop) = (log.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) || i < 50 {
                let appended = log
                    .append(format!("stream-{}", i % 3), Expectation::Any, common::unique_payload(i, 300))
                    .wait()
                    .expect("the writer is not disturbed by readers");
                acked.fetch_max(appended.lsn.0, Ordering::SeqCst);
                i += 1;
            }
        })
    };
    let mut seen = Vec::new();
    for _ in 0..30 {
        let acked_before = acked.load(Ordering::SeqCst);
        let reader = LogReader::open(dir.path()).expect("a reader opens beside a writer");
        assert!(reader.problems().is_empty(), "false corruption beside a writer: {:?}", reader.problems());
        assert!(reader.last_lsn().0 >= acked_before, "{} < {acked_before}", reader.last_lsn());
        seen.push(reader.read_all(Lsn::ZERO, usize::MAX).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let after = log.append("s", Expectation::Any, &b"after the readers"[..]).wait().unwrap();
    let all = all_records(&log);
    for records in &seen {
        assert_eq!(records.as_slice(), &all[..records.len()], "a reader saw something the log does not hold");
    }
    log.close().wait().unwrap();
    let reopened = Log::open(dir.path(), common::small_options()).unwrap();
    assert_eq!(reopened.last_lsn().unwrap(), after.lsn);
    assert_eq!(all_records(&reopened), all);
}

fn outcome(result: &annals::Result<LogReader>) -> String {
    match result {
        Ok(_) => "the reader opened".to_owned(),
        Err(error) => format!("{error:?}"),
    }
}

/// Issue 9, case 7: on an empty directory, or one holding other files, the
/// reader said "clean" (an empty log). It fails with `NotALog` and creates
/// nothing; on a path that does not exist it fails and creates no directory.
#[test]
fn log_reader_on_an_empty_directory_or_one_of_unrelated_files_is_not_a_log() {
    let empty = tempfile::tempdir().unwrap();
    let result = LogReader::open(empty.path());
    assert!(matches!(result, Err(Error::NotALog { .. })), "{}", outcome(&result));
    assert!(common::dir_snapshot(empty.path()).is_empty(), "the reader created a file");

    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("notes.txt"), b"not a log").unwrap();
    std::fs::write(other.path().join("data.bin"), vec![7u8; 8192]).unwrap();
    std::fs::write(other.path().join("00000000000000000001.txt"), b"").unwrap();
    let before = common::dir_snapshot(other.path());
    let result = LogReader::open(other.path());
    assert!(matches!(result, Err(Error::NotALog { .. })), "{}", outcome(&result));
    common::assert_dir_unchanged(other.path(), &before, "the reader");

    let missing = empty.path().join("missing");
    assert!(LogReader::open(&missing).is_err());
    assert!(!missing.exists(), "the reader created the directory");
}

/// What a reader answers for the record at `lsn`, for messages.
fn answer(result: &annals::Result<Option<Record>>) -> String {
    match result {
        Ok(Some(record)) => format!("the record at lsn {}", record.lsn),
        Ok(None) => "no record".to_owned(),
        Err(error) => format!("{error:?}"),
    }
}

/// Whether `result` is corruption reported at `file`.
fn corruption_at<T>(result: &annals::Result<T>, file: &Path) -> bool {
    matches!(result, Err(Error::Corruption(corruption)) if corruption.file == file)
}

/// Review 7: a read-only reader over a log with a damaged sealed segment
/// restarted its index at the next segment, so it answered `Trimmed` for
/// every record before the damage and `None` to `read_lsn` of a live
/// record before it (misleading, never wrong data), and its stream reads
/// found none of them. A writer's strict open refuses the same log,
/// naming the damage; the reader must not claim less than is there. It
/// now keeps every record before the damage and after the damaged
/// segment: reads of what is on disk return them, and the LSNs between
/// (the damage to the next segment) are corruption naming the damage.
/// Whether a record is live is another matter: the damage may hide a
/// prune or a tombstone of any stream, so live reads (`read_lsn`,
/// `read_all`, stream reads) answer that corruption too, for every record
/// that is there, never `Trimmed` or no record. The same opened as
/// `annals stats` and `tail` open it and as `annals verify` does.
#[test]
fn a_reader_past_a_damaged_sealed_segment_answered_trimmed_and_none_for_records_before_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    // No index image: the reader scans, and meets the damage.
    let records = common::write_closed_log(dir.path(), common::small_options(), 80, 300);
    let segments = common::segment_files(dir.path());
    assert!(segments.len() >= 4, "a damaged sealed segment between others: {} segments", segments.len());
    let damaged = &segments[1];
    let frames = common::frame_offsets(damaged);
    let frame = frames[frames.len() / 2];
    common::flip_bit(damaged, frame + annals::frame::FRAME_HEADER_BYTES + 10, 3);
    let before = common::records_before(dir.path(), &records, damaged, frame);
    assert!(!before.is_empty());
    let lost_from = records[before.len()].lsn;
    let name = segments[2].file_name().and_then(|name| name.to_str()).unwrap();
    let next_segment_first = annals::segment::parse_segment_file_name(name).unwrap();
    let after: Vec<Record> = records.iter().filter(|record| record.lsn >= next_segment_first).cloned().collect();
    assert!(!after.is_empty());

    let strict = Log::open(dir.path(), common::small_options());
    assert!(
        matches!(&strict, Err(Error::Corruption(c)) if c.file == *damaged && c.offset == frame as u64),
        "the writer's strict open names the damage: {:?}",
        strict.err()
    );

    let opened = LogReader::open(dir.path()).unwrap();
    let scanning = LogReader::open_scanning(dir.path(), &annals::Options::default()).unwrap();
    for (how, reader) in [("open", &opened), ("open_scanning", &scanning)] {
        let problem = reader.problems().first().expect("the damage is reported");
        assert_eq!((&problem.file, problem.offset), (damaged, frame as u64), "{how}");
        // What is on disk: every record before the damage, and after the damaged segment.
        assert_eq!(reader.read_all_on_disk(Lsn::ZERO, before.len()).unwrap(), before, "{how}");
        let from_next = reader.read_all_on_disk(Lsn(next_segment_first.0 - 1), usize::MAX).unwrap();
        assert_eq!(from_next, after, "{how}: the records after the damaged segment");
        for lsn in lost_from.0..next_segment_first.0 {
            let read = reader.read_all_on_disk(Lsn(lsn - 1), 1);
            assert!(corruption_at(&read, damaged), "{how}: lsn {lsn} past the damage: {:?}", read.err());
        }
        let through = reader.read_all_on_disk(Lsn::ZERO, usize::MAX);
        assert!(corruption_at(&through, damaged), "{how}: a read through the damage: {:?}", through.err());
        // Live reads: every record there, the damage named (never Trimmed, never none).
        for record in &records {
            let read = reader.read_lsn(record.lsn);
            assert!(corruption_at(&read, damaged), "{how}: read_lsn({}): {}", record.lsn, answer(&read));
        }
        let live = reader.read_all(Lsn::ZERO, usize::MAX);
        assert!(corruption_at(&live, damaged), "{how}: a live read: {:?}", live.err());
        let stream = reader.read_stream("stream-0");
        assert!(corruption_at(&stream, damaged), "{how}: a stream read would be short: {:?}", stream.err());
        assert_eq!(reader.last_lsn(), records.last().unwrap().lsn, "{how}");
    }
}
