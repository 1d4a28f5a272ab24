//! Attacks on this session's image changes (segments-format.md, 11): image
//! version 3 (a single-record frame's record checksum is its frame's `crc`
//! field, decided by the segment's `batch_frames` table), the sections a
//! write carries over from the loaded image, and reads by LSN from the
//! image's seek points. Every read is compared with what the undamaged log
//! reads when every frame is scanned (`LogReader::open_scanning`): a read
//! either answers that, or fails with `corruption`, never anything else.

mod common;

use std::path::Path;

use common::image_layout::{HEADER_BYTES, SCALARS_BYTES, SEGMENT_FIXED_BYTES, segment_tables, u32_at, u64_at};

use annals::image::{IMAGE_FILE_NAME, ImageUse};
use annals::recovery::{Access, ImagePolicy, recover_with};
use annals::{
    Batch, CompactionOptions, Error, Expectation, IndexImageWrites, Log, LogReader, Lsn, Options, PruneSnapshots,
    RecoveryMode, StreamRead, StreamSeq,
};

/// Small segments, images at close, no background compaction.
fn options(index_image: IndexImageWrites) -> Options {
    Options {
        segment_bytes: 8192,
        record_bytes_max: 2048,
        compaction: CompactionOptions { background: false, ..CompactionOptions::default() },
        index_image,
        ..Options::default()
    }
}

const STREAMS: [&str; 5] = ["stream-0", "stream-1", "stream-2", "batched", "cleared"];

/// Appends over every stream of [`STREAMS`]: single entries, snapshots,
/// prunes, a clear, and batch frames of three records.
fn fill(log: &Log, from: u64, count: u64) {
    for i in from..from + count {
        let stream = STREAMS[(i % 3) as usize];
        log.append(stream, Expectation::Any, common::unique_payload(i, 150)).wait().unwrap();
        if i % 17 == 5 {
            let next = log.next_seq(stream).unwrap();
            log.snapshot(stream, StreamSeq(next.0 - 1), &b"folded"[..]).wait().unwrap();
        }
        if i % 29 == 7 {
            let next = log.next_seq(stream).unwrap();
            log.prune(stream, StreamSeq(next.0 / 2), PruneSnapshots::AllButLatest).wait().unwrap();
        }
        if i % 11 == 3 {
            let batch = (0..3u64).fold(Batch::new(), |b, k| {
                b.append("batched", Expectation::Any, common::unique_payload(10_000 + 3 * i + k, 60))
            });
            log.commit(batch).wait().unwrap();
        }
        if i % 41 == 9 {
            log.append("cleared", Expectation::Any, common::unique_payload(20_000 + i, 40)).wait().unwrap();
            if i % 82 == 9 {
                log.clear("cleared", Expectation::Any).wait().unwrap();
            }
        }
    }
}

/// A log of [`fill`]'s first 300 records, closed (an image covers it).
fn closed_log(dir: &Path) {
    let log = Log::open(dir, options(IndexImageWrites::AtClose)).unwrap();
    fill(&log, 0, 300);
    log.close().wait().unwrap();
}

/// What a reader answers for every stream and every LSN.
struct Attempt {
    streams: Vec<annals::Result<StreamRead>>,
    by_lsn: Vec<annals::Result<Option<annals::Record>>>,
    all: annals::Result<Vec<annals::Record>>,
}

/// What a reader of a healthy log answers.
#[derive(Debug, PartialEq)]
struct Reads {
    streams: Vec<StreamRead>,
    by_lsn: Vec<Option<annals::Record>>,
    all: Vec<annals::Record>,
}

impl Attempt {
    fn of_reader(reader: &LogReader, last: Lsn) -> Attempt {
        Attempt {
            streams: STREAMS.iter().map(|s| reader.read_stream(s)).collect(),
            by_lsn: (0..=last.0 + 1).map(|lsn| reader.read_lsn(Lsn(lsn))).collect(),
            all: reader.read_all(Lsn(0), usize::MAX),
        }
    }

    fn of_log(log: &Log, last: Lsn) -> Attempt {
        Attempt {
            streams: STREAMS.iter().map(|s| log.read_stream(s)).collect(),
            by_lsn: (0..=last.0 + 1).map(|lsn| log.read_lsn(Lsn(lsn))).collect(),
            all: log.read_all(Lsn(0), usize::MAX),
        }
    }

    /// The answers of a healthy log: every read succeeds.
    fn healthy(self, what: &str) -> Reads {
        let unwrap = |result: annals::Result<_>| result.unwrap_or_else(|e| panic!("{what}: a read failed: {e}"));
        Reads {
            streams: self.streams.into_iter().map(unwrap).collect(),
            by_lsn: self
                .by_lsn
                .into_iter()
                .map(|r| r.unwrap_or_else(|e| panic!("{what}: a read failed: {e}")))
                .collect(),
            all: self.all.unwrap_or_else(|e| panic!("{what}: read_all failed: {e}")),
        }
    }

    /// Each answer is `want`'s, or `corruption`.
    fn assert_right_or_corruption(&self, want: &Reads, what: &str) {
        fn check<T: PartialEq + std::fmt::Debug>(found: &annals::Result<T>, want: &T, what: &str) {
            match found {
                Ok(value) => assert_eq!(value, want, "{what}: a read answered wrong"),
                Err(Error::Corruption(_)) => {}
                Err(other) => panic!("{what}: a read failed with {other}, not corruption"),
            }
        }
        for (i, (f, w)) in self.streams.iter().zip(&want.streams).enumerate() {
            check(f, w, &format!("{what}: read of {}", STREAMS[i]));
        }
        for (lsn, (f, w)) in self.by_lsn.iter().zip(&want.by_lsn).enumerate() {
            check(f, w, &format!("{what}: read of LSN {lsn}"));
        }
        check(&self.all, &want.all, &format!("{what}: read_all"));
    }
}

/// What every frame scanned says (the log is healthy), and its last LSN.
fn scanned(dir: &Path) -> (Reads, Lsn) {
    let reader = LogReader::open_scanning(dir, &Options::default()).unwrap();
    let last = reader.last_lsn();
    (Attempt::of_reader(&reader, last).healthy("a full scan"), last)
}

fn loaded(report: &annals::recovery::RecoveryReport) -> bool {
    matches!(report.index_image, ImageUse::Loaded { .. })
}

/// The index a read-write open built equals a full scan's.
fn assert_index_is_a_full_scan(log: &Log, dir: &Path) {
    let scan = recover_with(&annals::fs::RealFs, dir, Access::ReadOnly, RecoveryMode::Strict, ImagePolicy::Ignore)
        .expect("a full scan");
    assert_eq!(log.index_differences(&scan.index), Vec::<String>::new());
}

/// Image version 3 checks a single-record frame's record against the
/// frame's own checksum, and a batch's record against its own bytes, the
/// segment's `batch_frames` table saying which. One bit flipped in each
/// byte, in turn, of a covered segment holding entries, snapshots, prunes,
/// a clear and batch frames (headers included: `durable_lsn`, time, kind,
/// flags, lengths, the `crc` field itself): every read from the image
/// either answers what the undamaged log answers or is `corruption`.
#[test]
fn a_bit_flipped_in_any_byte_of_a_covered_segment_never_reads_as_a_wrong_record() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path());
    let (want, last) = scanned(dir.path());
    let image = std::fs::read(dir.path().join(IMAGE_FILE_NAME)).unwrap();
    let segments = common::segment_files(dir.path());
    // A segment before the last with a batch frame and a single-record one.
    let victim = segments[..segments.len() - 1]
        .iter()
        .find(|path| {
            let bytes = std::fs::read(path).unwrap();
            let kinds: Vec<u8> = common::frame_offsets(path).iter().map(|&at| bytes[at + 32]).collect();
            kinds.contains(&4) && kinds.contains(&1) && kinds.contains(&2)
        })
        .expect("a covered segment with batch, entry and snapshot frames")
        .clone();
    let end = common::written_end(&victim);
    let mut loaded_opens = 0;
    for offset in 0..end {
        let bit = (offset % 8) as u8;
        common::flip_bit(&victim, offset, bit);
        match LogReader::open(dir.path()) {
            Ok(reader) => {
                let image_loaded = loaded(reader.report());
                loaded_opens += usize::from(image_loaded);
                // A reader that found the damage scanning (the image was
                // refused: the damage is in the last frame it covers, or
                // in a segment header) is a verifier's: it knows no stream
                // history from the damage on, so it is not compared.
                if reader.problems().is_empty() {
                    let what = format!("bit {bit} of byte {offset} (image loaded: {image_loaded})");
                    Attempt::of_reader(&reader, last).assert_right_or_corruption(&want, &what);
                } else {
                    assert!(!image_loaded, "byte {offset}: the image covers the damage, its open read none of it");
                }
            }
            Err(Error::Corruption(_)) => {}
            Err(other) => panic!("byte {offset}: the open failed with {other}, not corruption"),
        }
        common::flip_bit(&victim, offset, bit);
    }
    assert!(loaded_opens > end / 2, "most opens read from the image ({loaded_opens} of {end})");
    assert_eq!(std::fs::read(dir.path().join(IMAGE_FILE_NAME)).unwrap(), image, "readers wrote nothing");
}

/// A session between two images prunes a stream (its section no longer
/// starts its entries), prunes only another's snapshots (its section still
/// does), deletes a stream and writes it again, clears one, appends to the
/// rest, and maybe compacts, under each `IndexImageWrites`. A read-only
/// reader opened beside it reads what it reads. The next session's index
/// and reads, then those of the session after its close's image (which
/// carries the sections still true), are a full scan's.
#[test]
fn streams_changed_between_images_reopen_from_the_carried_sections_as_a_full_scan() {
    for writes in [IndexImageWrites::Off, IndexImageWrites::AtClose, IndexImageWrites::Background] {
        for compact in [false, true] {
            let what = format!("{writes:?}, compacted {compact}");
            let dir = tempfile::tempdir().unwrap();
            closed_log(dir.path());

            let log = Log::open(dir.path(), options(writes)).unwrap();
            assert!(loaded(log.recovery_report()), "{what}: the first image loads");
            let next = log.next_seq("stream-0").unwrap();
            log.prune("stream-0", StreamSeq(next.0 - 3), PruneSnapshots::AllButLatest).wait().unwrap();
            log.prune("stream-1", StreamSeq(0), PruneSnapshots::AllButLatest).wait().unwrap();
            log.delete_stream("stream-2").wait().unwrap();
            log.clear("batched", Expectation::Any).wait().unwrap();
            fill(&log, 300, 40);
            if compact {
                log.compact().unwrap();
            }
            let last = log.last_lsn().unwrap();
            let reader = LogReader::open(dir.path()).unwrap();
            let beside = Attempt::of_reader(&reader, last).healthy(&what);
            assert_eq!(beside, Attempt::of_log(&log, last).healthy(&what), "{what}: a reader beside the writer");
            drop(reader);
            log.close().wait().unwrap();
            drop(log);
            let (want, last) = scanned(dir.path());

            for session in ["the next session", "the session after its close's image"] {
                let log = Log::open(dir.path(), options(IndexImageWrites::AtClose)).unwrap();
                // Compaction made the first image stale, and `Off` wrote none.
                let none_written = compact && matches!(writes, IndexImageWrites::Off);
                if !(none_written && session == "the next session") {
                    assert!(loaded(log.recovery_report()), "{what}: {session} loads an image");
                }
                assert_index_is_a_full_scan(&log, dir.path());
                assert_eq!(Attempt::of_log(&log, last).healthy(&what), want, "{what}: {session}'s reads");
                log.close().wait().unwrap();
            }
        }
    }
}

/// Recomputes the tables' checksum and the header's, as a writer that
/// wrote wrong tables would have.
fn reseal_tables(image: &mut [u8]) {
    let crc = |image: &[u8], bytes: &[u8]| {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&image[16..32]);
        hasher.update(bytes);
        hasher.finalize()
    };
    let tables_end = HEADER_BYTES + u64_at(image, 88) as usize;
    let tables = crc(image, &image[HEADER_BYTES..tables_end]);
    image[96..100].copy_from_slice(&tables.to_le_bytes());
    let header = crc(image, &image[..100]);
    image[100..104].copy_from_slice(&header.to_le_bytes());
}

/// How a crafted seek point is wrong (each passes open's checks: in
/// order, within the segment's frames).
#[derive(Clone, Copy, Debug)]
enum WrongPoint {
    /// One LSN below the next point's: at no frame of its LSN.
    LsnBelowTheNext,
    /// The LSN of the frame after the one at its offset.
    LsnOfTheNextFrame,
    /// Its offset one byte into its frame: at no frame at all.
    OffsetInsideItsFrame,
}

/// A seek point at no frame of its LSN, in every covered segment (ordinary
/// and compacted) that has a second one, wrong in each way open cannot
/// see: reads by LSN from every LSN (a segment's first and last frames
/// included), `read_all` pages, a subscription from a named cursor, and a
/// read-only reader (what `annals dump` reads with) answer as a full scan
/// of the log, and a read-write session's close replaces the image.
#[test]
fn seek_points_at_no_frame_of_their_lsn_answer_every_read_by_lsn_as_a_scan() {
    for compacted in [false, true] {
        for wrong in [WrongPoint::LsnBelowTheNext, WrongPoint::LsnOfTheNextFrame, WrongPoint::OffsetInsideItsFrame] {
            let what = format!("{wrong:?}, compacted {compacted}");
            let dir = tempfile::tempdir().unwrap();
            let options = Options { segment_bytes: 1 << 16, ..options(IndexImageWrites::AtClose) };
            let log = Log::open(dir.path(), options.clone()).unwrap();
            fill(&log, 0, 700);
            if compacted {
                log.compact().unwrap();
            }
            let cursor = Lsn(log.last_lsn().unwrap().0 / 3);
            log.commit_cursor("consumer", cursor).wait().unwrap();
            fill(&log, 700, 100);
            log.close().wait().unwrap();
            drop(log);
            let (want, last) = scanned(dir.path());
            let scan = LogReader::open_scanning(dir.path(), &Options::default()).unwrap();
            let pages: Vec<_> = (0..=last.0).step_by(7).map(|after| scan.read_all(Lsn(after), 40).unwrap()).collect();
            let after_cursor = scan.read_all(cursor, usize::MAX).unwrap();
            drop(scan);

            let path = dir.path().join(IMAGE_FILE_NAME);
            let mut image = std::fs::read(&path).unwrap();
            let mut crafted = 0;
            for (entry, _, points) in segment_tables(&image) {
                let Some(&[(lsn, offset), (next_lsn, next_offset)]) = points.get(1..3) else { continue };
                let (offset, next_offset) = (offset as usize, next_offset as usize);
                let (new_lsn, new_offset) = match wrong {
                    WrongPoint::LsnBelowTheNext => (next_lsn - 1, offset),
                    WrongPoint::LsnOfTheNextFrame => (lsn + 1, offset),
                    WrongPoint::OffsetInsideItsFrame => (lsn, offset + 1),
                };
                assert!(new_lsn < next_lsn && new_offset < next_offset, "{what}: still in order");
                let point = entry + SEGMENT_FIXED_BYTES + 12;
                image[point..point + 8].copy_from_slice(&new_lsn.to_le_bytes());
                image[point + 8..point + 12].copy_from_slice(&(new_offset as u32).to_le_bytes());
                crafted += 1;
            }
            assert!(crafted >= 2, "{what}: points crafted in {crafted} segments");
            reseal_tables(&mut image);
            std::fs::write(&path, &image).unwrap();

            let reader = LogReader::open(dir.path()).unwrap();
            assert!(loaded(reader.report()), "{what}: the crafted image passes open's checks");
            assert_eq!(Attempt::of_reader(&reader, last).healthy(&what), want, "{what}: a reader");
            for (i, after) in (0..=last.0).step_by(7).enumerate() {
                assert_eq!(reader.read_all(Lsn(after), 40).unwrap(), pages[i], "{what}: reader, page after {after}");
            }
            drop(reader);

            let log = Log::open(dir.path(), options.clone()).unwrap();
            assert!(loaded(log.recovery_report()), "{what}: the crafted image loads");
            assert_eq!(log.cursor("consumer").unwrap(), Some(cursor));
            let subscribed: Vec<_> = log
                .subscribe(cursor)
                .unwrap()
                .take(after_cursor.len())
                .collect::<annals::Result<_>>()
                .unwrap_or_else(|e| panic!("{what}: the subscription failed: {e}"));
            assert_eq!(subscribed, after_cursor, "{what}: a subscription from the cursor");
            assert_eq!(Attempt::of_log(&log, last).healthy(&what), want, "{what}: a writer");
            log.close().wait().unwrap();
            drop(log);
            assert_ne!(std::fs::read(&path).unwrap(), image, "{what}: the close replaced the image");
            let log = Log::open(dir.path(), options).unwrap();
            assert!(loaded(log.recovery_report()), "{what}: the close's image loads");
            assert_index_is_a_full_scan(&log, dir.path());
        }
    }
}

/// Each covered segment's batch frames `(start, end)` and where its table
/// entry starts in the image.
fn batch_tables(image: &[u8]) -> Vec<(usize, Vec<(usize, usize)>)> {
    let mut out = Vec::new();
    let mut at = HEADER_BYTES + SCALARS_BYTES;
    for _ in 0..u32_at(image, HEADER_BYTES + 36) {
        let (count, batches) = (u32_at(image, at + 108), u32_at(image, at + 112));
        let first = at + SEGMENT_FIXED_BYTES + count * 12;
        let frames = (0..batches).map(|i| (u32_at(image, first + i * 8), u32_at(image, first + i * 8 + 4))).collect();
        out.push((at, frames));
        at = first + batches * 8;
    }
    out
}

/// A batch frame's entry missing from its segment's table, or moved onto
/// a single-record frame, under resealed checksums (an image written
/// wrong; open cannot see it without reading the frames): every read
/// answers as a full scan, never a record of a wrong checksum's frame read
/// as right, and no read of the healthy log fails.
#[test]
fn a_batch_frame_missing_from_its_table_or_moved_never_reads_as_a_wrong_record() {
    for moved in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        closed_log(dir.path());
        let (want, last) = scanned(dir.path());
        let path = dir.path().join(IMAGE_FILE_NAME);
        let mut image = std::fs::read(&path).unwrap();
        let segments = common::segment_files(dir.path());
        let tables = batch_tables(&image);
        let (index, (entry, frames)) =
            tables.iter().enumerate().find(|(_, (_, frames))| frames.len() >= 2).expect("a segment with two batches");
        let count = u32_at(&image, entry + 108);
        let first = entry + SEGMENT_FIXED_BYTES + count * 12;
        if moved {
            // Onto the single-record frame right after the first batch.
            let offsets = common::frame_offsets(&segments[index]);
            let after = offsets.iter().position(|&at| at == frames[0].1).expect("a frame after the batch");
            let (start, end) = (offsets[after], offsets[after + 1]);
            assert!(end <= frames[1].0, "still in order");
            assert_ne!(std::fs::read(&segments[index]).unwrap()[start + 32], 4, "not a batch");
            image[first..first + 4].copy_from_slice(&(start as u32).to_le_bytes());
            image[first + 4..first + 8].copy_from_slice(&(end as u32).to_le_bytes());
        } else {
            image.drain(first..first + 8);
            image[entry + 112..entry + 116].copy_from_slice(&(frames.len() as u32 - 1).to_le_bytes());
            for at in [80, 88] {
                let value = u64_at(&image, at) - 8;
                image[at..at + 8].copy_from_slice(&value.to_le_bytes());
            }
        }
        reseal_tables(&mut image);
        std::fs::write(&path, &image).unwrap();
        let reader = LogReader::open(dir.path()).unwrap();
        assert!(loaded(reader.report()), "moved {moved}: the crafted image passes open's checks");
        let attempt = Attempt::of_reader(&reader, last);
        attempt.assert_right_or_corruption(&want, &format!("moved {moved}"));
        // The frames are intact: a read whose record checksum disagrees
        // checks the record's frame whole and answers from it (this failed
        // the batched stream's reads before, in every session).
        let failed = attempt.streams.iter().filter(|r| r.is_err()).count();
        assert_eq!(failed, 0, "moved {moved}: {failed} of {} stream reads of a healthy log failed", STREAMS.len());
    }
}
