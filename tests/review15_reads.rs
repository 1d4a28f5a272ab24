//! Review 15: the hot read and open paths of the last session (a first
//! read by read call unless four records of the read share a 64 KiB
//! window, the copies' shared stream id, the stream map's inline
//! comparison of short ids, the close's rescan parsing a frame's first
//! operation once), attacked from outside: every read of a log opened from
//! its index image must answer exactly what a full scan answers.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use annals::{
    Batch, CompactionOptions, Durability, Expectation, IndexImageWrites, Log, LogReader, Lsn, Options, PruneSnapshots,
    Record, StreamSeq,
};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// How many runs a test makes: `default`, or more from the environment
/// variable `name` for a longer soak.
fn runs(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// Segments of 1 MiB (sixteen 64 KiB windows each), images at close,
/// compaction only when asked, appends acknowledged once written.
fn options() -> Options {
    Options {
        segment_bytes: 1 << 20,
        record_bytes_max: 4096,
        durability: Durability::Flush,
        compaction: CompactionOptions { background: false, ..CompactionOptions::default() },
        index_image: IndexImageWrites::AtClose,
        ..Options::default()
    }
}

/// Stream ids of every length around the inline comparison's (4 to 16
/// bytes), each beside ids equal to it in all but its first or last byte,
/// and ids that are prefixes of one another.
fn stream_ids() -> Vec<Vec<u8>> {
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    let mut ids = Vec::new();
    for len in [1usize, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 24] {
        let id = letters[..len].to_vec();
        let mut last = id.clone();
        *last.last_mut().unwrap() = b'Z';
        let mut first = id.clone();
        first[0] = b'Z';
        ids.extend([id, last, first]);
    }
    ids.sort();
    ids.dedup();
    ids
}

/// What a full scan of `dir` reads of each stream: the reference.
fn scanned(dir: &Path, ids: &[Vec<u8>]) -> BTreeMap<Vec<u8>, annals::StreamRead> {
    let reader = LogReader::open_scanning(dir, &Options::default()).unwrap();
    ids.iter().map(|id| (id.clone(), reader.read_stream(id).unwrap())).collect()
}

/// Reads every stream of `log` in many shapes, in an order and with ranges
/// drawn from `rng` (so that each record's first read takes a different
/// path from run to run), and compares each answer with `expected`.
fn assert_reads_match(log: &Log, expected: &BTreeMap<Vec<u8>, annals::StreamRead>, rng: &mut Rng, what: &str) {
    let ids: Vec<&Vec<u8>> = expected.keys().collect();
    for _ in 0..(ids.len() * 4) {
        let id = ids[rng.below(ids.len() as u64) as usize];
        let want = &expected[id];
        let name = String::from_utf8_lossy(id).into_owned();
        let entries: &[Record] = &want.entries;
        let start = want.next_seq.0 - entries.len() as u64;
        match rng.below(4) {
            0 => {
                let read = log.read_stream(id).unwrap();
                assert_eq!(read.entries, want.entries, "{what}: read_stream of {name}");
                assert_eq!(read.snapshot, want.snapshot, "{what}: snapshot of {name}");
            }
            1 if !entries.is_empty() => {
                let from = rng.below(entries.len() as u64);
                let limit = 1 + rng.below(6) as usize;
                let read = log.read_stream_range(id, StreamSeq(start + from), limit).unwrap();
                let end = (from as usize + limit).min(entries.len());
                assert_eq!(read, entries[from as usize..end], "{what}: range of {name} from {from}");
            }
            2 => {
                let mut seen = Vec::new();
                log.visit_stream(id, |record| seen.push(record.to_record())).unwrap();
                let mut wanted: Vec<Record> = want.snapshot.iter().cloned().collect();
                wanted.extend(entries.iter().cloned());
                assert_eq!(seen, wanted, "{what}: visit of {name}");
            }
            _ if !entries.is_empty() => {
                let i = rng.below(entries.len() as u64) as usize;
                let after = Lsn(entries[i].lsn.0 - 1);
                let read = log.read_stream_after(id, after, 3).unwrap();
                assert_eq!(read, entries[i..(i + 3).min(entries.len())], "{what}: after of {name}");
            }
            _ => {}
        }
    }
}

/// Appends `count` operations over `ids`: mostly single appends to a few
/// busy streams and sparse ones, some records longer than a first read by
/// read call fetches, batches over several streams, snapshots, prunes and
/// clears.
fn write(log: &Log, ids: &[Vec<u8>], rng: &mut Rng, count: u64) {
    let mut pending: Vec<annals::Pending<annals::Appended>> = Vec::new();
    for i in 0..count {
        // A third of the appends to three busy streams, the rest spread.
        let id =
            if rng.below(3) == 0 { &ids[rng.below(3) as usize] } else { &ids[rng.below(ids.len() as u64) as usize] };
        let len = if rng.below(8) == 0 { 500 + rng.below(600) as usize } else { rng.below(300) as usize };
        let payload = common::unique_payload(i, len.max(20));
        let kind = rng.below(100);
        if (0..=5).contains(&kind) {
            for p in pending.drain(..) {
                p.wait().unwrap();
            }
        }
        match kind {
            0..=2 => {
                let mut batch = Batch::new();
                for k in 0..2 + rng.below(4) {
                    let other = &ids[rng.below(ids.len() as u64) as usize];
                    batch = batch.append(other, Expectation::Any, common::unique_payload(i * 7 + k, 120));
                }
                log.commit(batch).wait().unwrap();
            }
            3 => {
                let next = log.next_seq(id).unwrap();
                if next.0 > 0 {
                    log.snapshot(id, StreamSeq(next.0 - 1), payload).wait().unwrap();
                }
            }
            4 => {
                let next = log.next_seq(id).unwrap();
                log.prune(id, StreamSeq(next.0 / 2), PruneSnapshots::AllButLatest).wait().unwrap();
            }
            5 if rng.below(4) == 0 => log.delete_stream(id).wait().map(|_| ()).unwrap(),
            _ => pending.push(log.append(id, Expectation::Any, payload)),
        }
        if pending.len() >= 64 {
            for p in pending.drain(..) {
                p.wait().unwrap();
            }
        }
    }
    for p in pending {
        p.wait().unwrap();
    }
}

/// What a reader that loads the image says of the log's space, streams and
/// oldest record is what a full scan says.
fn assert_stats_match(dir: &Path, what: &str) {
    let stats = |reader: LogReader| {
        let stats = reader.stats().unwrap();
        let oldest = stats.oldest_record.map(|record| (record.lsn, record.timestamp_ms));
        (stats.segments, stats.total, stats.streams, stats.operations, stats.oldest_lsn, stats.next_lsn, oldest)
    };
    let from_image = LogReader::open_with(dir, &Options::default()).unwrap();
    assert!(matches!(from_image.report().index_image, annals::image::ImageUse::Loaded { .. }), "{what}");
    assert_eq!(stats(from_image), stats(LogReader::open_scanning(dir, &Options::default()).unwrap()), "{what}");
}

/// A log in `dir` of `count` operations over `ids`, closed (so with an
/// image of all of it): what a full scan reads of each stream.
fn closed_log(dir: &Path, ids: &[Vec<u8>], rng: &mut Rng, count: u64) -> BTreeMap<Vec<u8>, annals::StreamRead> {
    let log = Log::open(dir, options()).unwrap();
    write(&log, ids, rng, count);
    log.close().wait().unwrap();
    drop(log);
    scanned(dir, ids)
}

/// Streams of ids of every length around the inline comparison's, records
/// of each spread over a few MiB and several segments (one to a window, a
/// few, many), read after an open from the image in every shape and order,
/// then after appends and a compaction in the same process, then after
/// another open from the image the close wrote: every answer is a full
/// scan's. Three seeds; `REVIEW15_SEEDS` runs more.
#[test]
fn every_read_of_a_log_opened_from_its_image_is_a_full_scan_s() {
    let ids = stream_ids();
    for seed in 1..=runs("REVIEW15_SEEDS", 3) {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let expected = closed_log(dir.path(), &ids, &mut rng, 12_000);
        assert_stats_match(dir.path(), "closed");

        // Counted: the reads take both first-read paths.
        let fs = common::FaultyFs::default();
        let counted = Options { file_system: Arc::new(fs.clone()), ..options() };
        let log = Log::open(dir.path(), counted).unwrap();
        assert!(matches!(log.recovery_report().index_image, annals::image::ImageUse::Loaded { .. }));
        let reads = fs.faults.reads.load(Ordering::SeqCst);
        assert_reads_match(&log, &expected, &mut rng, "opened from the image");
        let read_calls = fs.faults.reads.load(Ordering::SeqCst) - reads;
        let records = expected.values().map(|read| read.entries.len() as u64).sum::<u64>();
        assert!(read_calls > 0 && read_calls < records / 2, "{read_calls} read calls for {records} records");
        write(&log, &ids, &mut rng, 2_000);
        log.close().wait().unwrap();
        drop(log);
        let expected = scanned(dir.path(), &ids);

        let log = Log::open(dir.path(), options()).unwrap();
        assert_reads_match(&log, &expected, &mut rng, "after appends");
        log.compact().unwrap();
        assert_reads_match(&log, &expected, &mut rng, "after a compaction");
        log.close().wait().unwrap();
        drop(log);
        // A compaction may name an incarnation by another LSN (a base's):
        // the records are the same.
        let after = scanned(dir.path(), &ids);
        for (id, read) in &expected {
            let now = &after[id];
            assert!(now.entries == read.entries && now.snapshot == read.snapshot, "compaction changed {id:?}");
        }
        assert_stats_match(dir.path(), "compacted and closed");
        let log = Log::open(dir.path(), options()).unwrap();
        assert_reads_match(&log, &expected, &mut rng, "opened after a compaction");
        drop(log);
    }
}

/// Reads every stream of a reader in the shapes `assert_reads_match` uses
/// for a log, compared with `expected`.
fn assert_reader_matches(reader: &LogReader, expected: &BTreeMap<Vec<u8>, annals::StreamRead>, what: &str) {
    for (id, want) in expected {
        let read = reader.read_stream(id).unwrap();
        assert!(read.entries == want.entries && read.snapshot == want.snapshot, "{what}: {id:?}");
        let start = want.next_seq.0 - want.entries.len() as u64;
        let from = reader.read_stream_from(id, StreamSeq(start + want.entries.len() as u64 / 2)).unwrap();
        assert_eq!(from, want.entries[want.entries.len() / 2..], "{what}: from the middle of {id:?}");
    }
}

/// An image written mid-session (covering a prefix of the log, the newest
/// segment in part), then more appends: a crash image of the directory
/// opens from that image and scans the rest, and a reader beside the live
/// writer does the same and follows it with `refresh`; every read of
/// either is what a full scan reads, and what the writer itself reads.
#[test]
fn an_image_of_a_prefix_and_the_frames_after_it_read_as_a_full_scan_beside_a_live_writer() {
    let ids = stream_ids();
    let mut rng = Rng(0x5eed_1515);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    write(&log, &ids, &mut rng, 6_000);
    for round in 0..3 {
        // Named cursors (batches of a clear and an entry in the reserved
        // namespace) on both sides of the image.
        let cursor = |name: &str| log.commit_cursor(name, Lsn(log.last_lsn().unwrap().0 / 2)).wait().unwrap();
        cursor(&format!("cursor-{round}"));
        log.write_index_image().unwrap();
        write(&log, &ids, &mut rng, 1_500);
        cursor(&format!("cursor-{}", round + 7));
        let live: BTreeMap<Vec<u8>, annals::StreamRead> =
            ids.iter().map(|id| (id.clone(), log.read_stream(id).unwrap())).collect();

        let reader = LogReader::open_with(dir.path(), &Options::default()).unwrap();
        assert!(matches!(reader.report().index_image, annals::image::ImageUse::Loaded { .. }), "round {round}");
        assert_eq!(reader.cursors(), log.cursors().unwrap(), "round {round}");
        assert_reader_matches(&reader, &live, "a reader beside the writer");
        let mut reader = reader;
        write(&log, &ids, &mut rng, 500);
        reader.refresh().unwrap();
        let live: BTreeMap<Vec<u8>, annals::StreamRead> =
            ids.iter().map(|id| (id.clone(), log.read_stream(id).unwrap())).collect();
        assert_reader_matches(&reader, &live, "a refreshed reader");

        let crashed = tempfile::tempdir().unwrap();
        common::crash_image(dir.path(), crashed.path());
        let expected = scanned(crashed.path(), &ids);
        for (id, want) in &expected {
            assert!(want.entries == live[id].entries && want.snapshot == live[id].snapshot, "crash image: {id:?}");
        }
        let reopened = Log::open(crashed.path(), options()).unwrap();
        assert!(matches!(reopened.recovery_report().index_image, annals::image::ImageUse::Loaded { .. }));
        assert_reads_match(&reopened, &expected, &mut rng, "a crash image opened from a prefix's image");
        assert_eq!(reopened.cursors().unwrap(), log.cursors().unwrap(), "round {round}");
        assert_eq!(reopened.cursors().unwrap().len(), 2 * (round + 1));
    }
}

/// Reads every stream of `log` in the shapes of `assert_reads_match`, each
/// answer either what `expected` holds or corruption: never other records.
fn assert_reads_exact_or_corruption(
    log: &Log,
    expected: &BTreeMap<Vec<u8>, annals::StreamRead>,
    rng: &mut Rng,
    what: &str,
) -> usize {
    let mut refused = 0;
    let ids: Vec<&Vec<u8>> = expected.keys().collect();
    for _ in 0..(ids.len() * 4) {
        let id = ids[rng.below(ids.len() as u64) as usize];
        let want = &expected[id];
        let entries: &[Record] = &want.entries;
        let start = want.next_seq.0 - entries.len() as u64;
        let from = rng.below(entries.len() as u64 + 1) as usize;
        let limit = 1 + rng.below(8) as usize;
        let answer = match rng.below(3) {
            0 => log.read_stream(id).map(|read| {
                assert_eq!(read.snapshot, want.snapshot, "{what}: snapshot of {id:?}");
                read.entries == entries
            }),
            1 => log
                .read_stream_range(id, StreamSeq(start + from as u64), limit)
                .map(|read| read == entries[from..(from + limit).min(entries.len())]),
            _ => {
                let mut seen = Vec::new();
                log.visit_stream(id, |record| seen.push(record.to_record())).map(|_| {
                    let mut wanted: Vec<Record> = want.snapshot.iter().cloned().collect();
                    wanted.extend(entries.iter().cloned());
                    seen == wanted
                })
            }
        };
        match answer {
            Ok(same) => assert!(same, "{what}: a read of {id:?} returned other records"),
            Err(annals::Error::Corruption(_)) => refused += 1,
            Err(other) => panic!("{what}: a read of {id:?} failed with {other}"),
        }
    }
    refused
}

/// One flipped bit anywhere in the frames of a log opened from its image
/// (frame headers, operation headers, stream ids, payloads; records read
/// first by read call or through the map): every read returns exactly the
/// records a full scan of the undamaged log returned, or corruption.
/// Thirty flips; `REVIEW15_TRIALS` runs more.
#[test]
fn a_flipped_bit_under_the_image_is_never_read_as_other_records() {
    let ids = stream_ids();
    let mut rng = Rng(0xb17_f11b);
    let pristine = tempfile::tempdir().unwrap();
    let expected = closed_log(pristine.path(), &ids, &mut rng, 3_000);
    let segments = common::segment_files(pristine.path());
    let mut refused = 0;
    let trials = runs("REVIEW15_TRIALS", 30);
    for trial in 0..trials {
        let dir = tempfile::tempdir().unwrap();
        common::crash_image(pristine.path(), dir.path());
        // Half the flips anywhere in the written frames, half in a live
        // record (its frame header, operation header, stream id or payload),
        // of a stream most of whose records are read first by read call.
        let (file, at) = if trial % 2 == 0 {
            let segment = &segments[rng.below(segments.len() as u64) as usize];
            let written = common::written_end(segment);
            (segment.clone(), 128 + rng.below(written as u64 - 128) as usize)
        } else {
            let records: Vec<&Record> = expected.values().flat_map(|read| &read.entries).collect();
            let record = records[rng.below(records.len() as u64) as usize];
            let (file, end) = common::payload_end(pristine.path(), &record.payload).unwrap();
            let frame_bytes = 40 + 22 + record.stream.len() + record.payload.len();
            (file, end - 1 - rng.below(frame_bytes as u64) as usize)
        };
        common::flip_bit(&dir.path().join(file.file_name().unwrap()), at, rng.below(8) as u8);
        let log = Log::open(dir.path(), options()).unwrap();
        assert!(matches!(log.recovery_report().index_image, annals::image::ImageUse::Loaded { .. }));
        refused += assert_reads_exact_or_corruption(&log, &expected, &mut rng, &format!("trial {trial}, byte {at}"));
    }
    assert!(refused > 0, "no flipped bit was found by a read");
}

/// The stream map compares ids of 4 to 16 bytes inline, two words at a
/// time, and only where hashes meet: thousands of ids of every length
/// around those, equal but for one byte at each position, fill the map
/// enough that ids which differ only where a wrong comparison would not
/// look share buckets. Each id's stream is its own, in the writer's guards
/// (a stream that is not there is not found), its publication and the
/// scan an open makes: each id holds its own records, in order.
#[test]
fn ids_equal_but_for_one_byte_are_different_streams_in_the_writer_and_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { index_image: IndexImageWrites::Off, ..options() };
    let mut ids: Vec<Vec<u8>> = Vec::new();
    for len in 1..=18usize {
        let base: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        for at in 0..len {
            for value in 0..24u8 {
                let mut id = base.clone();
                id[at] = b'A' + value;
                ids.push(id);
            }
        }
        ids.push(base);
    }
    ids.sort();
    ids.dedup();
    let log = Log::open(dir.path(), options.clone()).unwrap();
    for round in 0..2u64 {
        let expected = if round == 0 { Expectation::NoStream } else { Expectation::Exact(StreamSeq(1)) };
        let pending: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| log.append(id, expected, common::unique_payload(round * 100_000 + i as u64, 24)))
            .collect();
        for (p, id) in pending.into_iter().zip(&ids) {
            assert_eq!(p.wait().unwrap().seq, StreamSeq(round), "{id:?}");
        }
    }
    drop(log);
    // The scan of a crash image (no image, no close: every frame read).
    let log = Log::open(dir.path(), options).unwrap();
    assert_eq!(log.recovery_report().index_image, annals::image::ImageUse::None);
    for (i, id) in ids.iter().enumerate() {
        let read = log.read_stream(id).unwrap();
        let payloads: Vec<&[u8]> = read.entries.iter().map(|record| &record.payload[..]).collect();
        let wanted = [common::unique_payload(i as u64, 24), common::unique_payload(100_000 + i as u64, 24)];
        assert_eq!(payloads, wanted.iter().map(|p| &p[..]).collect::<Vec<_>>(), "{id:?}");
    }
}

/// Readers of streams a log opened from its image, their records' first
/// reads (by read call or through the map) racing appends that roll the
/// log over and compactions that move those very records into compacted
/// segments: every read is what a full scan read before the race.
#[test]
fn first_reads_racing_rollovers_and_compactions_read_as_a_full_scan() {
    let ids = stream_ids();
    let mut rng = Rng(0xace_1515);
    let dir = tempfile::tempdir().unwrap();
    let expected = closed_log(dir.path(), &ids, &mut rng, 6_000);

    let log = Arc::new(Log::open(dir.path(), options()).unwrap());
    assert!(matches!(log.recovery_report().index_image, annals::image::ImageUse::Loaded { .. }));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2u64)
        .map(|reader| {
            let (log, stop, expected) = (log.clone(), stop.clone(), expected.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x1234_5678 + reader);
                let mut rounds = 0;
                while !stop.load(Ordering::Relaxed) || rounds == 0 {
                    assert_reads_match(&log, &expected, &mut rng, &format!("reader {reader}, round {rounds}"));
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    // Churn in streams of their own, cleared again: a few segments of dead
    // records for each compaction to drop.
    for round in 0..4u64 {
        let mut pending = Vec::new();
        for i in 0..3_000u64 {
            let payload = common::unique_payload(1_000_000 + round * 10_000 + i, 400);
            pending.push(log.append(format!("churn-{}", i % 50), Expectation::Any, payload));
        }
        for p in pending {
            p.wait().unwrap();
        }
        for i in 0..50 {
            log.delete_stream(format!("churn-{i}")).wait().unwrap();
        }
        let report = log.compact().unwrap();
        assert!(report.outputs > 0, "round {round}: nothing was compacted");
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
    assert_reads_match(&log, &expected, &mut rng, "after the race");
}

/// One flipped bit anywhere in the index image over intact frames: the
/// open refuses the image (a full scan) or loads it and finds the damaged
/// stream section on the stream's first use, reading its records from the
/// frames instead. Either way every read of every stream, whichever path
/// its records' first reads take, is exactly a full scan's: never
/// corruption, since nothing the records are read from is damaged.
/// Thirty flips; `REVIEW15_TRIALS` runs more.
#[test]
fn a_flipped_bit_in_the_image_over_intact_frames_never_fails_a_read() {
    let ids = stream_ids();
    let mut rng = Rng(0x1a6e_f11b);
    let pristine = tempfile::tempdir().unwrap();
    let expected = closed_log(pristine.path(), &ids, &mut rng, 3_000);
    let image_len = std::fs::metadata(pristine.path().join(annals::image::IMAGE_FILE_NAME)).unwrap().len();
    let trials = runs("REVIEW15_TRIALS", 30);
    let mut loaded = 0;
    for trial in 0..trials {
        let dir = tempfile::tempdir().unwrap();
        common::crash_image(pristine.path(), dir.path());
        let at = rng.below(image_len) as usize;
        common::flip_bit(&dir.path().join(annals::image::IMAGE_FILE_NAME), at, rng.below(8) as u8);
        let log = Log::open(dir.path(), options()).unwrap();
        loaded += usize::from(matches!(log.recovery_report().index_image, annals::image::ImageUse::Loaded { .. }));
        let what = format!("trial {trial}, image byte {at}");
        if trial % 2 == 0 {
            assert_reads_match(&log, &expected, &mut rng, &what);
            continue;
        }
        // Appends before any read (a stream whose section is damaged
        // takes its positions from the frames), a close that writes a new
        // image, and an open from it.
        let touched: Vec<&Vec<u8>> = (0..5).map(|_| &ids[rng.below(ids.len() as u64) as usize]).collect();
        for (i, id) in touched.iter().enumerate() {
            log.append(id, Expectation::Any, common::unique_payload(900_000 + i as u64, 30)).wait().unwrap();
        }
        log.close().wait().unwrap();
        drop(log);
        let after = scanned(dir.path(), &ids);
        for (id, read) in &after {
            let before = &expected[id];
            let added = touched.iter().filter(|t| **t == id).count();
            assert_eq!(read.entries[..read.entries.len() - added], before.entries, "{what}: {id:?}");
        }
        let log = Log::open(dir.path(), options()).unwrap();
        assert!(matches!(log.recovery_report().index_image, annals::image::ImageUse::Loaded { .. }));
        assert_reads_match(&log, &after, &mut rng, &format!("{what}, reopened"));
    }
    assert!(loaded > 0, "every damaged image was refused: no section was damaged");
}

/// A first read by read call fetches 512 bytes from the frame's start: a
/// record whose frame is a few bytes shorter than that, exactly that, or a
/// few bytes longer, each alone in its 64 KiB window, reads back whole
/// (the longer ones through the map after a read call that could not hold
/// them), and a flipped bit in its frame's last byte is corruption.
#[test]
fn records_whose_frames_end_around_the_first_read_s_512_bytes_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_bytes: 4 << 20, ..options() };
    let log = Log::open(dir.path(), options.clone()).unwrap();
    // Frames of 40 + 22 + 6 + payload bytes: 504 to 520.
    let payloads: Vec<Vec<u8>> = (436..=452).map(|len| common::unique_payload(len as u64, len)).collect();
    for payload in &payloads {
        log.append("sparse", Expectation::Any, payload.clone()).wait().unwrap();
        for j in 0..300u64 {
            log.append("filler", Expectation::Any, common::unique_payload(10_000 + j, 250)).wait().unwrap();
        }
    }
    log.close().wait().unwrap();
    drop(log);
    let read_one = |log: &Log, i: usize| log.read_stream_range("sparse", StreamSeq(i as u64), 1);
    let log = Log::open(dir.path(), options.clone()).unwrap();
    for (i, payload) in payloads.iter().enumerate() {
        assert_eq!(read_one(&log, i).unwrap()[0].payload, payload[..], "frame of {} bytes", 62 + 6 + payload.len());
    }
    drop(log);
    for (i, payload) in payloads.iter().enumerate() {
        let copy = tempfile::tempdir().unwrap();
        common::crash_image(dir.path(), copy.path());
        let (file, end) = common::payload_end(copy.path(), payload).unwrap();
        common::flip_bit(&file, end - 1, 0);
        let log = Log::open(copy.path(), options.clone()).unwrap();
        assert!(
            matches!(read_one(&log, i), Err(annals::Error::Corruption(_))),
            "frame of {} bytes with its last byte flipped",
            62 + 6 + payload.len()
        );
    }
}
