//! Review 16: a log written with one set of options and reopened with
//! others, with and without a crash in between.
//!
//! Each test is named after the bug it found, or the behaviour its fix
//! must keep.

mod common;

use std::path::Path;

use annals::{CompactionOptions, Expectation, IndexImageWrites, Log, LogReader, Lsn, Options, Record};
use common::{crash_image, small_options, unique_payload};

fn all(log: &Log) -> Vec<Record> {
    log.read_all(Lsn::ZERO, usize::MAX).unwrap()
}

fn reader_all(dir: &Path) -> Vec<Record> {
    LogReader::open(dir).unwrap().read_all(Lsn::ZERO, usize::MAX).unwrap()
}

fn with_segment(segment_bytes: u64) -> Options {
    Options { segment_bytes, record_bytes_max: Options::record_bytes_max_for(segment_bytes), ..small_options() }
}

/// Streams of records larger than a later run's whole segment, most of
/// them dead, in a log of 64 KiB segments.
fn log_of_large_mostly_dead_records(dir: &Path) -> Vec<Record> {
    let log = Log::open(dir, with_segment(64 << 10)).unwrap();
    for round in 0..12u64 {
        for stream in 0..3u64 {
            let name = format!("big-{stream}");
            let appended = log.append(&name, Expectation::Any, unique_payload(round * 10 + stream, 20_000));
            let appended = appended.wait().unwrap();
            if round % 4 == 3 && stream != 0 {
                log.prune(&name, appended.seq, annals::PruneSnapshots::Before(Lsn::ZERO)).wait().unwrap();
            }
        }
    }
    log.delete_stream("big-2").wait().unwrap();
    let live = all(&log);
    log.close().wait().unwrap();
    live
}

/// Records larger than a later run's whole segment (and its record limit)
/// are compacted by that run, and read back after a crash and reopens with
/// yet other sizes: the limits govern what is written next, never what is read.
#[test]
fn records_larger_than_a_later_runs_segment_survive_its_compaction_a_crash_and_other_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let live = log_of_large_mostly_dead_records(dir.path());
    let log = Log::open(dir.path(), with_segment(8192)).unwrap();
    assert_eq!(all(&log), live);
    assert!(log.compact().unwrap().operations_dropped > 0, "the run compacted");
    assert_eq!(all(&log), live);
    log.append("after", Expectation::Any, &b"small"[..]).wait().unwrap();
    let live = all(&log);
    let image = tempfile::tempdir().unwrap();
    crash_image(dir.path(), image.path());
    log.close().wait().unwrap();
    assert_eq!(reader_all(dir.path()), live);
    let reopened = Log::open(dir.path(), with_segment(64 << 10)).unwrap();
    assert_eq!(all(&reopened), live);
    let crashed = Log::open(image.path(), with_segment(1 << 20)).unwrap();
    assert_eq!(all(&crashed), live);
}

/// An image written by a first run, then a run with images off that
/// clears a stream, refills it to the same length and compacts, then a
/// run with images on: the old image never answers for the new streams.
#[test]
fn an_earlier_runs_image_never_answers_for_a_later_runs_refill_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let on = Options { index_image: IndexImageWrites::AtClose, ..small_options() };
    let off = Options { index_image: IndexImageWrites::Off, ..small_options() };
    let log = Log::open(dir.path(), on.clone()).unwrap();
    common::fill_worth_compacting(&log, 10, "a");
    log.close().wait().unwrap();
    // Off: clear a stream, refill it to the same length, compact.
    let log = Log::open(dir.path(), off.clone()).unwrap();
    let next = log.next_seq("a-0").unwrap();
    log.delete_stream("a-0").wait().unwrap();
    for i in 0..next.0 {
        log.append("a-0", Expectation::Any, unique_payload(9000 + i, 100)).wait().unwrap();
    }
    common::fill_worth_compacting(&log, 10, "b");
    assert!(log.compact().unwrap().generation > 0, "the run compacted");
    let live = all(&log);
    let image = tempfile::tempdir().unwrap();
    crash_image(dir.path(), image.path());
    log.close().wait().unwrap();
    for (what, d) in [("clean", dir.path()), ("crash", image.path())] {
        assert_eq!(reader_all(d), live, "{what} reader");
        let log = Log::open(d, on.clone()).unwrap();
        assert_eq!(all(&log), live, "{what}");
        for (stream, _) in log.streams("").unwrap() {
            let read = log.read_stream(&stream).unwrap();
            let expect: Vec<_> = live.iter().filter(|r| r.stream == stream).cloned().collect();
            assert!(read.entries.iter().all(|e| expect.contains(e)), "{what} {stream:?}");
        }
        log.close().wait().unwrap();
        assert_eq!(reader_all(d), live, "{what} reader after");
    }
}

/// Background compaction and image writes turned on at a reopen of a log
/// written without them, with a cursor registered: every record stays.
#[test]
fn background_compaction_and_images_turned_on_at_a_reopen_keep_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_options()).unwrap();
    common::fill_worth_compacting(&log, 10, "a");
    log.commit_cursor("reader", Lsn(5)).wait().unwrap();
    let live = all(&log);
    log.close().wait().unwrap();
    let options = Options {
        compaction: CompactionOptions { background: true, interval_ms: 1, ..CompactionOptions::default() },
        index_image: IndexImageWrites::Background,
        ..small_options()
    };
    let log = Log::open(dir.path(), options).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    log.append("z", Expectation::Any, &b"z"[..]).wait().unwrap();
    let mut after = all(&log);
    assert_eq!(after.pop().unwrap().stream, "z");
    assert_eq!(after, live);
    log.close().wait().unwrap();
}

/// Retention by size turned on for one run (with every cursor released)
/// and off again, after a clean close or a crash: what it trimmed stays
/// trimmed, and no LSN or stream sequence is handed out twice.
#[test]
fn retention_on_for_one_run_then_off_revives_nothing_and_reuses_no_lsn_or_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_options()).unwrap();
    for i in 0..200u64 {
        log.append(format!("s-{}", i % 7), Expectation::Any, unique_payload(i, 150)).wait().unwrap();
    }
    log.commit_cursor("c", Lsn(150)).wait().unwrap();
    let last = log.last_lsn().unwrap();
    log.close().wait().unwrap();
    let trimming = Options { max_bytes: Some(20_000), cursor_lag_bytes_max: 0, ..with_segment(4096) };
    let log = Log::open(dir.path(), trimming).unwrap();
    assert!(log.compact().unwrap().trimmed_before > Lsn::ZERO, "the run trimmed");
    let kept = all(&log);
    assert!(kept.len() < 200, "{}", kept.len());
    let image = tempfile::tempdir().unwrap();
    crash_image(dir.path(), image.path());
    log.close().wait().unwrap();
    for (what, d) in [("clean", dir.path()), ("crash", image.path())] {
        assert_eq!(reader_all(d), kept, "{what}");
        let log = Log::open(d, with_segment(1 << 20)).unwrap();
        assert_eq!(all(&log), kept, "{what}");
        let appended = log.append("after", Expectation::Any, &b"x"[..]).wait().unwrap();
        assert!(appended.lsn > last, "{what}: {appended:?} after {last:?}");
        for (stream, next) in log.streams("s-").unwrap() {
            let read = log.read_stream(&stream).unwrap();
            assert_eq!(read.next_seq, next);
            let appended = log.append(&stream, Expectation::Any, &b"y"[..]).wait().unwrap();
            assert_eq!(appended.seq, next, "{what}");
        }
        log.close().wait().unwrap();
    }
}

/// One log reader beside writers reopened with other segment sizes, image
/// writes and retention, each clearing a stream and compacting: after
/// each refresh it reads what the writer reads.
#[test]
fn a_log_reader_follows_writers_reopened_with_other_sizes_images_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_options()).unwrap();
    common::fill_worth_compacting(&log, 8, "a");
    let mut reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), all(&log));
    log.close().wait().unwrap();
    for (round, options) in [
        with_segment(4096),
        Options { index_image: IndexImageWrites::AtClose, ..with_segment(64 << 10) },
        Options { max_bytes: Some(30_000), ..with_segment(8192) },
        with_segment(4096),
    ]
    .into_iter()
    .enumerate()
    {
        let log = Log::open(dir.path(), options).unwrap();
        common::fill_worth_compacting(&log, 6, &format!("r{round}"));
        log.delete_stream("a-3").wait().unwrap();
        log.append("a-3", Expectation::Any, unique_payload(round as u64, 50)).wait().unwrap();
        reader.refresh().unwrap();
        assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), all(&log), "round {round} before compaction");
        let _ = log.compact().unwrap();
        reader.refresh().unwrap();
        assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), all(&log), "round {round}");
        for (stream, _) in log.streams("").unwrap() {
            assert_eq!(reader.read_stream(&stream).unwrap(), log.read_stream(&stream).unwrap(), "round {round}");
        }
        let live = all(&log);
        log.close().wait().unwrap();
        reader.refresh().unwrap();
        assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), live, "round {round} after close");
    }
}
