//! A clean close that the next open can trust without reading the rest of
//! the active segment (issue 11, "open in O(tail)"; segments-format.md,
//! section 5, "the clean-close pair", and row 1c).
//!
//! A clean close writes its record into both state slots, with feature bit
//! 2; a writer writes and syncs a slot that is no longer clean before its
//! first frame past the marker. An open that finds the pair at the end of
//! the frames takes the zeros there for the end of the log. These tests
//! hold each side of that: the slot is written (and a crash around it loses
//! nothing), a damaged frame after the marker is still corruption, a log
//! without the bit is still read to the end, a reader beside a writer does
//! not trust a pair the writer has since cleared, and a session that wrote
//! nothing writes nothing, at open or at close.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use annals::frame::FRAME_HEADER_BYTES;
use annals::fs::{FileSystem, RealFs};
use annals::sim::fs::{CrashMode, SimFs};
use annals::sim::rng::SimRng;
use annals::state::{
    FEATURE_CLEAN_CLOSE_CLEARED_FIRST, LogState, STATE_FILE_NAME, STATE_SLOT_BYTES, StateRead, read_state,
};
use annals::{Error, Expectation, Log, LogReader, Lsn, Options};

/// Both slots of the state file, decoded (`None`: invalid).
fn slots(bytes: &[u8]) -> [Option<LogState>; 2] {
    [LogState::decode(&bytes[..STATE_SLOT_BYTES]).ok(), LogState::decode(&bytes[STATE_SLOT_BYTES..]).ok()]
}

fn state_of(dir: &Path) -> StateRead {
    read_state(&RealFs, dir).unwrap()
}

/// Rewrites every valid slot of the state file of `dir` through `change`.
fn rewrite_slots(dir: &Path, change: impl Fn(LogState) -> LogState) {
    let path = dir.join(STATE_FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    for (slot, state) in slots(&bytes).into_iter().enumerate() {
        if let Some(state) = state {
            bytes[slot * STATE_SLOT_BYTES..][..STATE_SLOT_BYTES].copy_from_slice(&change(state).encode());
        }
    }
    std::fs::write(&path, bytes).unwrap();
}

/// Small logs on the simulated file system, segments made inline.
fn sim_options(fs: &SimFs) -> Options {
    Options {
        file_system: Arc::new(fs.clone()),
        segment_preparation: annals::SegmentPreparation::Inline,
        ..common::small_options()
    }
}

/// Fills `len` bytes of `path` from `from` with non-zero bytes: damage
/// where no frame was written.
fn plant_bytes(path: &Path, from: usize, len: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[from..from + len].fill(0xa5);
    std::fs::write(path, bytes).unwrap();
}

/// A strict open of `dir` without an index image reads exactly `records`,
/// and `annals verify` finds no corruption.
fn assert_reopens_whole(dir: &Path, records: &[annals::Record]) {
    let reopened = Log::open(dir, common::small_options()).unwrap_or_else(|e| panic!("the reopen failed: {e}"));
    assert_eq!(reopened.read_all(Lsn::ZERO, usize::MAX).unwrap(), records);
    drop(reopened);
    let verified = LogReader::open_scanning(dir, &common::small_options()).unwrap();
    assert!(verified.problems().is_empty(), "verify: {:?}", verified.problems());
}

/// A log of 20 records closed cleanly (its state file holds the pair),
/// reopened, and given two more `Sync` appends, each its own group, so the
/// second one's frame says the first was durable. Leaves in `copy` what a
/// crash now would leave (the writer still open); returns the offset of the
/// first frame after the marker in its newest segment, and the state file
/// as the clean close left it.
fn written_past_a_clean_close(dir: &Path, copy: &Path) -> (usize, Vec<u8>) {
    let records = common::write_closed_log(dir, common::small_options(), 20, 100);
    assert!(state_of(dir).clean_close_pair().is_some(), "a clean close leaves its pair");
    let closed_state = std::fs::read(dir.join(STATE_FILE_NAME)).unwrap();
    let newest = common::segment_files(dir).pop().unwrap();
    let marker = *common::frame_offsets(&newest).last().unwrap();
    let log = common::open(dir);
    for i in 20..22 {
        log.append("after", Expectation::Any, common::unique_payload(i, 100)).wait().unwrap();
    }
    common::crash_image(dir, copy);
    drop(log);
    let frames = common::frame_offsets(&copy.join(newest.file_name().unwrap()));
    let first_after = *frames.iter().find(|&&at| at > marker).expect("frames follow the marker");
    assert_eq!(records.len(), 20);
    (first_after, closed_state)
}

/// The bug this protocol closes: a reopen after a clean close wrote
/// nothing to the state file, and neither did its `Sync` appends, so the
/// state still said "clean, the log ends at the marker" while acknowledged
/// frames followed it. An open that trusted that would take a first frame
/// after the marker whose header was zeroed for the end of the log, and
/// drop it and every frame after it without a word. Now the session's
/// first frame is preceded by a synced slot that is not clean: the open
/// reads on and reports the damage (row 3: a later frame says it was durable).
#[test]
fn a_damaged_first_frame_after_the_marker_in_a_session_that_wrote_past_a_clean_close_is_corruption() {
    let (dir, copy) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first_after, _) = written_past_a_clean_close(dir.path(), copy.path());
    let read = state_of(copy.path());
    let StateRead::Found { state, .. } = read else { panic!("no state: {read:?}") };
    assert!(!state.clean_close, "the session's first frame was written while the state said clean");
    assert_eq!(read.clean_close_pair(), None);
    let newest = common::segment_files(copy.path()).pop().unwrap();
    common::zero_range(&newest, first_after, first_after + annals::frame::FRAME_HEADER_BYTES);
    match Log::open(copy.path(), common::small_options()) {
        Err(Error::Corruption(corruption)) => assert_eq!(corruption.offset, first_after as u64, "{corruption}"),
        Err(other) => panic!("not corruption: {other}"),
        Ok(log) => panic!("the damaged frame was dropped silently: the log ends at {:?}", log.last_lsn()),
    }
    let reader = LogReader::open(copy.path()).unwrap();
    assert!(!reader.problems().is_empty(), "a reader found nothing wrong");
}

/// A crash after the slot that is no longer clean was written (and synced,
/// or not: lost, torn, or garbage, in every crash mode), before the first
/// frame reached the disk, recovers every acknowledged record; the log
/// then takes appends and closes cleanly into a new pair.
#[test]
fn a_crash_between_the_not_clean_slot_and_the_first_frame_recovers_everything() {
    let mut rng = SimRng::new(11);
    for crash_after in [1, 2] {
        for mode in CrashMode::ALL {
            let fs = SimFs::new();
            let options = || sim_options(&fs);
            let dir = annals::sim::sim_dir();
            let records = common::write_closed_log(dir, options(), 12, 100);
            let log = Log::open(dir, options()).unwrap();
            // The first append's first write is the slot, its second that
            // slot's fsync; then the frame.
            fs.crash_after(crash_after);
            let refused = log.append("s", Expectation::Any, vec![1; 50]).wait();
            assert!(refused.is_err(), "crash after op {crash_after}: acknowledged after the crash");
            drop(log);
            let image = fs.crash_image(mode, &mut rng);
            let what = format!("crash after op {crash_after}, {}", mode.name());
            let options = Options { file_system: Arc::new(image.clone()), ..common::small_options() };
            let reopened = Log::open(dir, options).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(reopened.read_all(Lsn::ZERO, usize::MAX).unwrap(), records, "{what}");
            if crash_after == 2 {
                let durable = image.durable_files();
                let current =
                    slots(&durable[&dir.join(STATE_FILE_NAME)]).into_iter().flatten().max_by_key(|s| s.generation);
                assert!(!current.unwrap().clean_close, "{what}: the synced slot says clean");
            }
            reopened.append("s", Expectation::Any, vec![2; 50]).wait().unwrap();
            reopened.close().wait().unwrap();
            drop(reopened);
            let state = read_state(&image, dir).unwrap();
            assert_eq!(state.clean_close_pair().map(|s| s.durable_end_lsn), Some(Lsn(14)), "{what}");
        }
    }
}

/// A log whose state slots lack feature bit 2 was closed by a build that
/// did not clear the flag before writing past a marker: its clean flag
/// vouches for nothing, and open still reads the zeros after the marker.
/// Crafted from a log written past a clean close, with the state file put
/// back to what the clean close wrote, less the bit (what an older build
/// leaves after writing past its marker): the damaged first frame after the
/// marker is still found. With the bit, the zeros are trusted (row 1c): the
/// next test.
#[test]
fn a_log_closed_without_the_feature_still_has_the_zeros_after_its_marker_read() {
    let (dir, copy) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first_after, closed_state) = written_past_a_clean_close(dir.path(), copy.path());
    std::fs::write(copy.path().join(STATE_FILE_NAME), closed_state).unwrap();
    rewrite_slots(copy.path(), |s| LogState { features: s.features & !FEATURE_CLEAN_CLOSE_CLEARED_FIRST, ..s });
    let newest = common::segment_files(copy.path()).pop().unwrap();
    let read = state_of(copy.path());
    assert!(matches!(read, StateRead::Found { state, .. } if state.clean_close && state.durable_end_lsn == Lsn(21)));
    assert_eq!(read.clean_close_pair(), None, "without the bit there is no pair");
    common::zero_range(&newest, first_after, first_after + annals::frame::FRAME_HEADER_BYTES);
    match Log::open(copy.path(), common::small_options()) {
        Err(Error::Corruption(corruption)) => assert_eq!(corruption.offset, first_after as u64, "{corruption}"),
        Err(other) => panic!("not corruption: {other}"),
        Ok(log) => panic!("the damaged frame was dropped silently: the log ends at {:?}", log.last_lsn()),
    }
}

/// Row 1c: with the pair, zeros at its end end the log, and the rest of the
/// segment is not read. Bytes planted far past the marker (which no writer
/// of the log put there) go unseen; without the bit, the same open reads
/// them and cuts them as a torn tail, and `annals verify` reads them in
/// either case. (With the pair standing over frames
/// written past its marker, which writers rule out, those frames would go
/// unseen the same way: why a writer clears the flag first.)
#[test]
fn a_clean_close_pair_ends_the_log_at_its_marker_without_reading_the_rest_of_the_segment() {
    for with_bit in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let records = common::write_closed_log(dir.path(), common::small_options(), 20, 100);
        if !with_bit {
            rewrite_slots(dir.path(), |s| LogState { features: s.features & !FEATURE_CLEAN_CLOSE_CLEARED_FIRST, ..s });
        }
        let newest = common::segment_files(dir.path()).pop().unwrap();
        let len = std::fs::metadata(&newest).unwrap().len() as usize;
        let mut bytes = std::fs::read(&newest).unwrap();
        bytes[len - 100..].fill(0xa5);
        std::fs::write(&newest, bytes).unwrap();
        // `annals verify` reads every byte, pair or not.
        let verified = LogReader::open_scanning(dir.path(), &common::small_options()).unwrap();
        assert!(verified.report().torn_tail.is_some(), "verify did not read past the marker");
        let log = Log::open(dir.path(), common::small_options()).unwrap();
        assert_eq!(log.read_all(Lsn::ZERO, usize::MAX).unwrap(), records);
        let torn = log.recovery_report().torn_tail.clone();
        if with_bit {
            assert_eq!(torn, None, "the bytes past the marker were read");
        } else {
            assert!(torn.is_some_and(|t| t.offset as usize <= len - 100), "the bytes past the marker were not read");
        }
    }
}

/// A read-only open beside a live writer read the state file while it
/// held the pair; the writer then cleared it and wrote past the marker, and
/// the first of its frames reads as zeros (damaged, or not yet visible to
/// this core). The reader reads the state file again before it trusts the
/// zeros: the pair is gone, so it reads on and finds the frame after it.
#[test]
fn a_reader_does_not_trust_a_pair_the_writer_cleared_after_it_read_the_state() {
    let dir = tempfile::tempdir().unwrap();
    common::write_closed_log(dir.path(), common::small_options(), 20, 100);
    let newest = common::segment_files(dir.path()).pop().unwrap();
    let marker = *common::frame_offsets(&newest).last().unwrap();
    let writer = Arc::new(common::open(dir.path()));
    let fs = common::FaultyFs::default();
    let (hook_writer, hook_newest) = (writer.clone(), newest.clone());
    *fs.faults.on_next_list.0.lock().unwrap() = Some(Box::new(move || {
        for i in 20..22 {
            hook_writer.append("after", Expectation::Any, common::unique_payload(i, 100)).wait().unwrap();
        }
        let first_after = *common::frame_offsets(&hook_newest).iter().find(|&&at| at > marker).unwrap();
        // Only the header: the frame after it keeps its place.
        let file = RealFs.open(&hook_newest, true).unwrap();
        file.write_at(&[0; annals::frame::FRAME_HEADER_BYTES], first_after as u64).unwrap();
    }));
    let options = Options { file_system: Arc::new(fs), ..common::small_options() };
    let reader = LogReader::open_with(dir.path(), &options).unwrap();
    assert!(
        !reader.problems().is_empty() || reader.report().torn_tail.is_some(),
        "the reader took the zeros after the marker for the end of the log: next lsn {:?}",
        reader.last_lsn()
    );
    drop(writer);
}

/// A session that writes nothing writes nothing: reopening a cleanly closed
/// log and closing it again, with every write and every fsync failing,
/// succeeds, syncs no file and leaves every byte as it was (it used to
/// write both state slots again at the close: two fsyncs). A session that
/// writes adds one synced slot before its first frame, and none after.
#[test]
fn with_every_write_failing_a_reopen_and_close_succeed_and_a_writing_session_adds_one_slot() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    // With the index image, as by default (without one, the pair alone
    // vouches for the marker:
    // `a_reopen_of_a_clean_close_pair_without_an_index_image_writes_nothing`).
    let options = || Options { index_image: annals::IndexImageWrites::AtClose, ..fs.options() };
    let records = common::write_closed_log(dir.path(), options(), 30, 100);
    let before = common::dir_snapshot(dir.path());
    fs.faults.fail_writes.store(true, Ordering::SeqCst);
    fs.faults.fail_syncs.store(true, Ordering::SeqCst);
    let syncs = fs.faults.syncs.load(Ordering::SeqCst);
    for round in 0..2 {
        let log = Log::open(dir.path(), options()).unwrap();
        assert_eq!(log.read_all(Lsn::ZERO, usize::MAX).unwrap(), records, "round {round}");
        log.close().wait().unwrap_or_else(|e| panic!("round {round}: the close wrote: {e}"));
        drop(log);
        assert_eq!(fs.faults.syncs.load(Ordering::SeqCst), syncs, "round {round}: a file was synced");
        common::assert_dir_unchanged(dir.path(), &before, &format!("round {round}"));
    }
    // A session that writes writes the slot first: one more fsync than its
    // append's own, and only while the state said clean.
    fs.faults.fail_writes.store(false, Ordering::SeqCst);
    fs.faults.fail_syncs.store(false, Ordering::SeqCst);
    let log = Log::open(dir.path(), options()).unwrap();
    let generation = |dir: &Path| match state_of(dir) {
        StateRead::Found { state, .. } => (state.generation, state.clean_close),
        other => panic!("{other:?}"),
    };
    let (closed_generation, _) = generation(dir.path());
    let syncs = fs.faults.syncs.load(Ordering::SeqCst);
    log.append("s", Expectation::Any, vec![1; 10]).wait().unwrap();
    assert_eq!(fs.faults.syncs.load(Ordering::SeqCst), syncs + 2, "the slot and the append");
    assert_eq!(generation(dir.path()), (closed_generation + 1, false));
    log.append("s", Expectation::Any, vec![2; 10]).wait().unwrap();
    assert_eq!(fs.faults.syncs.load(Ordering::SeqCst), syncs + 3, "the second append alone");
    assert_eq!(generation(dir.path()), (closed_generation + 1, false));
}

/// The slot that clears the flag is written before anything else of the
/// append: when it fails (a full disk), the append fails, nothing of it is
/// written, the log stays open and unpoisoned, and the next append writes
/// the slot and goes on.
#[test]
fn a_failed_not_clean_slot_fails_only_the_append_and_writes_nothing_past_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let records = common::write_closed_log(dir.path(), fs.options(), 10, 100);
    let log = Log::open(dir.path(), fs.options()).unwrap();
    let segments = |dir: &Path| {
        let mut snapshot = common::dir_snapshot(dir);
        snapshot.retain(|name, _| name.ends_with(".seg"));
        snapshot
    };
    let before = segments(dir.path());
    fs.faults.error_kind.store(1, Ordering::SeqCst);
    fs.faults.fail_syncs.store(true, Ordering::SeqCst);
    let failed = log.append("s", Expectation::Any, vec![1; 10]).wait();
    assert!(matches!(failed, Err(Error::DiskFull { .. })), "{failed:?}");
    assert!(segments(dir.path()) == before, "a segment was written while the state said clean");
    fs.faults.fail_syncs.store(false, Ordering::SeqCst);
    log.append("s", Expectation::Any, vec![2; 10]).wait().unwrap();
    log.close().wait().unwrap();
    drop(log);
    let log = Log::open(dir.path(), fs.options()).unwrap();
    let all = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    assert_eq!(all[..records.len()], records[..]);
    assert_eq!(all.len(), records.len() + 1);
    assert_eq!(all.last().unwrap().payload.as_ref(), &[2; 10]);
}

/// A read-write open syncs the directory before it lists it, so that what
/// it reads is not an entry a power cut could still take, except after a
/// clean close: the pair's session synced every entry it made, and any
/// session since wrote nothing the log depends on (segments-format.md, 7).
/// A log copied while open (what a crash leaves: no pair) is synced before
/// the listing; the same log, once closed cleanly, is opened and closed
/// without a directory sync.
#[test]
fn an_open_syncs_the_directory_before_listing_it_unless_a_clean_close_pair_holds() {
    let (live, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = Log::open(live.path(), common::small_options()).unwrap();
    for i in 0..20u8 {
        log.append("s", Expectation::Any, vec![i; 100]).wait().unwrap();
    }
    common::crash_image(live.path(), dir.path());
    let fs = common::FaultyFs::default();
    let options = || Options {
        file_system: fs.options().file_system,
        index_image: annals::IndexImageWrites::AtClose,
        ..common::small_options()
    };
    let dir_syncs = {
        let faults = fs.faults.clone();
        move || faults.dir_syncs.load(Ordering::SeqCst)
    };
    let open_counting_syncs_before_the_listing = || {
        let at_listing = Arc::new(std::sync::Mutex::new(None));
        let (record, count) = (at_listing.clone(), dir_syncs.clone());
        *fs.faults.on_next_list.0.lock().unwrap() = Some(Box::new(move || {
            *record.lock().unwrap() = Some(count());
        }));
        let before = dir_syncs();
        let log = Log::open(dir.path(), options()).unwrap();
        let at_listing = at_listing.lock().unwrap().expect("the open listed the directory");
        (log, at_listing - before)
    };
    let (log, synced) = open_counting_syncs_before_the_listing();
    assert_eq!(synced, 1, "a log without a pair: the directory is synced before it is listed");
    assert_eq!(log.read_stream("s").unwrap().entries.len(), 20);
    log.close().wait().unwrap();
    drop(log);
    assert!(state_of(dir.path()).clean_close_pair().is_some());
    let before = dir_syncs();
    let (log, synced) = open_counting_syncs_before_the_listing();
    assert_eq!(synced, 0, "a clean-close pair: no sync before the listing");
    assert_eq!(log.read_stream("s").unwrap().entries.len(), 20);
    log.close().wait().unwrap();
    drop(log);
    assert_eq!(dir_syncs() - before, 0, "nor at all, in a session that wrote nothing");
}

/// What a file named for the LSN right after a clean close's marker, newer
/// than the segment the pair records, holds (gap 1 of issue 11: the pair
/// vouches only for the zeros after the marker in its own segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stray {
    /// A valid header that chains onto the marker's segment, zeros after
    /// it: what a rollover leaves whose state slot failed (row 9).
    Empty,
    /// Zeros, the header included: never a published segment (row 6).
    ZeroFilled,
    /// A valid header and two valid entries of this log at the next LSNs:
    /// a segment copied in from a copy of the log that went on (row 9).
    Frames,
    /// Random bytes, the header included (row 6).
    Garbage,
    /// A valid header, then random bytes: a torn tail (row 2).
    GarbageAfterHeader,
}

impl Stray {
    const ALL: [Stray; 5] = [Stray::Empty, Stray::ZeroFilled, Stray::Frames, Stray::Garbage, Stray::GarbageAfterHeader];

    /// The file's bytes, for a log of `log_id` whose next LSN is `first`.
    fn bytes(self, log_id: [u8; 16], first: Lsn) -> Vec<u8> {
        use annals::frame::{FrameKind, FrameMeta, OpRef, encode_frame};
        let len = 8192;
        let header = annals::segment::SegmentHeader {
            version: annals::segment::FORMAT_VERSION,
            log_id,
            first_lsn: first,
            segment_bytes: len as u64,
            created_ms: 0,
        };
        let mut rng = SimRng::new(first.0);
        let mut bytes = match self {
            Stray::ZeroFilled => return vec![0; len],
            Stray::Garbage => return rng.bytes(len),
            _ => header.encode().to_vec(),
        };
        match self {
            Stray::Frames => {
                for i in 0..2u64 {
                    let lsn = Lsn(first.0 + i);
                    let payload = common::unique_payload(900 + i, 60);
                    let op = OpRef {
                        kind: annals::RecordKind::Entry,
                        stream: b"stray",
                        seq: annals::StreamSeq(i),
                        lsn,
                        payload: &payload,
                    };
                    let meta = FrameMeta { lsn, durable_lsn: lsn, timestamp_ms: u64::MAX / 2 };
                    encode_frame(&mut bytes, &log_id, FrameKind::Entry, meta, &[op]);
                }
            }
            Stray::GarbageAfterHeader => bytes.extend(rng.bytes(300)),
            _ => {}
        }
        bytes.resize(len, 0);
        bytes
    }

    /// Whether a strict open refuses the directory (the file is no segment
    /// of the log), naming the file.
    fn refused(self) -> bool {
        matches!(self, Stray::ZeroFilled | Stray::Garbage)
    }

    /// How many records of the log it holds.
    fn records(self) -> u64 {
        if self == Stray::Frames { 2 } else { 0 }
    }
}

/// A log closed cleanly (the pair in both slots, an image as `image` says),
/// beside which a file of `stray` is put under the name of the segment
/// after the marker's. Returns its records, the stray's path and the LSN
/// the close's marker names.
fn pair_with_stray(dir: &Path, image: annals::IndexImageWrites, stray: Stray) -> (Vec<annals::Record>, PathBuf, Lsn) {
    let options = Options { index_image: image, ..common::small_options() };
    let records = common::write_closed_log(dir, options, 20, 100);
    let pair = state_of(dir).clean_close_pair().expect("a clean close leaves its pair");
    let newest = common::segment_files(dir).pop().unwrap();
    assert_eq!(
        newest.file_name().unwrap().to_str(),
        Some(annals::segment::segment_file_name(pair.newest_segment_lsn).as_str())
    );
    let end = pair.durable_end_lsn;
    let path = dir.join(annals::segment::segment_file_name(end));
    std::fs::write(&path, stray.bytes(pair.log_id, end)).unwrap();
    (records, path, end)
}

/// Checks a read-only open of the directory: every record of the log
/// (and the stray's, if it holds any), the stray reported where it is no
/// segment, nothing written.
fn check_reader(reader: &LogReader, records: &[annals::Record], stray: Stray, path: &Path, what: &str) {
    let read = reader.read_all(Lsn::ZERO, usize::MAX).unwrap();
    assert_eq!(read[..records.len()], records[..], "{what}: the reader lost records");
    assert_eq!(read.len() as u64, records.len() as u64 + stray.records(), "{what}");
    let problems: Vec<_> = reader.problems().iter().map(|p| (p.file.clone(), p.offset)).collect();
    if stray.refused() {
        assert_eq!(problems, [(path.to_owned(), 0)], "{what}");
    } else {
        assert!(problems.is_empty(), "{what}: {problems:?}");
    }
    let torn = reader.report().torn_tail.as_ref().map(|t| t.file.clone());
    let expected_torn = (stray == Stray::GarbageAfterHeader).then(|| path.to_owned());
    assert_eq!(torn, expected_torn, "{what}");
}

/// Gap 1 of issue 11: a segment file newer than the one a clean close's
/// pair records, empty, zero-filled, holding valid frames or garbage,
/// with or without the index image. The pair vouches only for the zeros
/// after its marker in its own segment (row 1c: "in the segment it records
/// as newest"), so with a newer file beside it the open reads on, and the
/// file is judged as without a pair: a segment that chains on is part of
/// the log (row 9: its frames read, or its zeros a clean end), garbage
/// after a valid header is a torn tail (row 2), and a file that is no
/// segment is corruption (row 6), which salvage drops, keeping every
/// record and resuming past every LSN the file could have held. No record
/// is lost, none appears that the file did not hold, no LSN is handed out
/// twice; `Log::open`, `LogReader::open` and a reader on read-only media
/// agree.
#[test]
fn a_stray_newer_segment_beside_a_clean_close_pair_is_read_as_without_the_pair() {
    for image in [annals::IndexImageWrites::Off, annals::IndexImageWrites::AtClose] {
        for stray in Stray::ALL {
            let what = format!("{stray:?}, image {image:?}");
            let dir = tempfile::tempdir().unwrap();
            let (records, path, end) = pair_with_stray(dir.path(), image, stray);
            let before = common::dir_snapshot(dir.path());
            check_reader(&LogReader::open(dir.path()).unwrap(), &records, stray, &path, &what);
            // Read-only media: every write and fsync fails.
            let fs = common::FaultyFs::default();
            fs.faults.error_kind.store(3, Ordering::SeqCst);
            fs.faults.fail_writes.store(true, Ordering::SeqCst);
            fs.faults.fail_syncs.store(true, Ordering::SeqCst);
            fs.faults.fail_dir_syncs.store(true, Ordering::SeqCst);
            let reader = LogReader::open_with(dir.path(), &fs.options()).unwrap();
            check_reader(&reader, &records, stray, &path, &format!("{what}, read-only media"));
            common::assert_dir_unchanged(dir.path(), &before, &what);

            let options = || Options { index_image: image, ..common::small_options() };
            let log = match Log::open(dir.path(), options()) {
                Err(Error::Corruption(corruption)) if stray.refused() => {
                    assert_eq!(corruption.file, path, "{what}: {corruption}");
                    Log::open(dir.path(), Options { recovery_mode: annals::RecoveryMode::Salvage, ..options() })
                        .unwrap_or_else(|e| panic!("{what}: salvage: {e}"))
                }
                Err(error) => panic!("{what}: {error}"),
                Ok(_) if stray.refused() => panic!("{what}: a file that is no segment was taken for one"),
                Ok(log) => log,
            };
            let read = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
            assert_eq!(read[..records.len()], records[..], "{what}: records lost");
            assert_eq!(read.len() as u64, records.len() as u64 + stray.records(), "{what}");
            let appended = log.append("after", Expectation::Any, &b"after the stray"[..]).wait().unwrap();
            assert!(appended.lsn >= Lsn(end.0 + stray.records()), "{what}: lsn {} handed out again", appended.lsn);
            log.close().wait().unwrap();
            drop(log);
            let reopened = Log::open(dir.path(), options()).unwrap();
            let again = reopened.read_all(Lsn::ZERO, usize::MAX).unwrap();
            assert_eq!(again[..read.len()], read[..], "{what}: the reopen lost records");
            assert_eq!(again.last().map(|r| r.lsn), Some(appended.lsn), "{what}");
        }
    }
}

/// With a newer segment beside it, the pair's own segment is a sealed one,
/// judged by the chain (rows 1 and 1d), not by the pair: zeros at the LSN
/// the next segment starts with end its frames, and bytes planted after
/// them hold no record. Every record reads, by a writer, a reader and
/// `annals verify` alike; bytes planted at that LSN itself, where a frame
/// could be, are corruption (row 4).
#[test]
fn with_a_newer_segment_beside_it_the_pair_s_segment_is_judged_by_the_chain() {
    for at_the_end_of_the_frames in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (records, _, _) = pair_with_stray(dir.path(), annals::IndexImageWrites::Off, Stray::Empty);
        let marker_segment = common::segment_files(dir.path()).into_iter().rev().nth(1).unwrap();
        let marker = *common::frame_offsets(&marker_segment).last().unwrap();
        let len = std::fs::metadata(&marker_segment).unwrap().len() as usize;
        let planted = if at_the_end_of_the_frames { marker + FRAME_HEADER_BYTES } else { len - 100 };
        plant_bytes(&marker_segment, planted, 100);
        let verified = LogReader::open_scanning(dir.path(), &common::small_options()).unwrap();
        let problems: Vec<_> = verified.problems().iter().map(|p| (p.file.clone(), p.offset)).collect();
        match Log::open(dir.path(), common::small_options()) {
            Err(Error::Corruption(corruption)) if at_the_end_of_the_frames => {
                assert_eq!((corruption.file.clone(), corruption.offset), (marker_segment.clone(), planted as u64));
                assert_eq!(problems, [(marker_segment, planted as u64)]);
            }
            Ok(log) if !at_the_end_of_the_frames => {
                assert_eq!(log.read_all(Lsn::ZERO, usize::MAX).unwrap(), records);
                assert_eq!(problems, []);
            }
            other => panic!("bytes at {planted} of {len}: {:?}", other.map(|log| log.last_lsn())),
        }
    }
}

/// How the stray of the tests above arises without an operator: a session
/// writes past a clean close, the rollover publishes the next segment and
/// then fails to record it in the state file (a full disk, one fault), and
/// the log is closed right after: the close records its pair in the old
/// segment, and the new one is left empty beside it, named for the LSN
/// the marker names. Every fault point of the rollover is tried; every
/// outcome reopens with every acknowledged record and hands out no LSN
/// twice, and at least one leaves that directory.
#[test]
fn a_rollover_whose_state_slot_failed_before_a_clean_close_leaves_an_empty_segment_the_open_reads() {
    let mut strays = 0;
    for fault_at in 1..=40 {
        let fs = SimFs::new();
        let options = || sim_options(&fs);
        let dir = annals::sim::sim_dir();
        let mut acknowledged = common::write_closed_log(dir, options(), 4, 100);
        let log = Log::open(dir, options()).unwrap();
        fs.inject_fault_after(fault_at, annals::sim::fs::FaultKind::Enospc, false);
        for i in 0..30 {
            match log.append("s", Expectation::Any, common::unique_payload(i, 700)).wait() {
                Ok(appended) => acknowledged.push(log.read_lsn(appended.lsn).unwrap().unwrap()),
                Err(_) => break,
            }
        }
        fs.clear_fault();
        let closed = log.close().wait();
        drop(log);
        let what = format!("fault at op {fault_at} ({closed:?})");
        let pair = read_state(&fs, dir).unwrap().clean_close_pair();
        let names = fs.list(dir).unwrap();
        let newest = names.iter().filter_map(|name| annals::segment::parse_segment_file_name(name)).max().unwrap();
        if let Some(pair) = pair.filter(|pair| newest > pair.newest_segment_lsn) {
            assert_eq!(newest, pair.durable_end_lsn, "{what}: the stray is named for the marker's lsn");
            strays += 1;
        }
        let reopen = || Options { file_system: Arc::new(fs.clone()), ..common::small_options() };
        let reader = LogReader::open_with(dir, &reopen()).unwrap();
        assert!(reader.problems().is_empty(), "{what}: {:?}", reader.problems());
        let log = Log::open(dir, reopen()).unwrap_or_else(|e| panic!("{what}: {e}"));
        // The append the fault failed may be there (written, its fsync failed).
        let read = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
        assert_eq!(read[..acknowledged.len()], acknowledged[..], "{what}");
        assert!(read.len() <= acknowledged.len() + 1, "{what}: {} records more", read.len() - acknowledged.len());
        assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), read, "{what}: the reader");
        let next = log.append("s", Expectation::Any, &b"next"[..]).wait().unwrap();
        assert!(next.lsn > read.last().unwrap().lsn, "{what}: lsn {} handed out again", next.lsn);
    }
    assert!(strays > 0, "no fault point left an empty segment beside a pair");
}

/// Issue 11, point 4: a reopen writes at most what recovery must. Found
/// last session: after a clean close, an open without the index image
/// (images off, or `annals.index` deleted) could not tell that the close's
/// marker was durable, and wrote it again: a copy in `annals.resync`, the
/// marker, the copy removed, three fsyncs and a directory sync. The pair
/// vouches for the marker as the image does: the close synced it before it
/// wrote the first slot, and nothing writes a later marker at that LSN
/// without a synced slot that is not clean replacing one of the pair first.
/// So the open writes nothing, syncs nothing and changes no file. (Without
/// the pair the marker is still written again: `tests/index_image.rs`.)
#[test]
fn a_reopen_of_a_clean_close_pair_without_an_index_image_writes_nothing() {
    for image in [annals::IndexImageWrites::Off, annals::IndexImageWrites::AtClose] {
        let dir = tempfile::tempdir().unwrap();
        let fs = common::FaultyFs::default();
        let options = || Options { index_image: image, ..fs.options() };
        let records = common::write_closed_log(dir.path(), options(), 30, 100);
        let _ = std::fs::remove_file(dir.path().join(annals::image::IMAGE_FILE_NAME));
        let before = common::dir_snapshot(dir.path());
        let (writes, syncs) = (fs.faults.writes.load(Ordering::SeqCst), fs.faults.syncs.load(Ordering::SeqCst));
        let log = Log::open(dir.path(), options()).unwrap();
        let what = format!("image {image:?}");
        assert_eq!(log.recovery_report().index_image, annals::ImageUse::None, "{what}");
        assert_eq!(log.read_all(Lsn::ZERO, usize::MAX).unwrap(), records, "{what}");
        assert_eq!(log.recovery_report().tail_bytes_resynced, 0, "{what}");
        assert_eq!(fs.faults.writes.load(Ordering::SeqCst), writes, "{what}: the open wrote");
        assert_eq!(fs.faults.syncs.load(Ordering::SeqCst), syncs, "{what}: the open synced a file");
        common::assert_dir_unchanged(dir.path(), &before, &what);
        // And the log goes on from there: the next record gets the next LSN.
        let appended = log.append("s", Expectation::Any, &b"next"[..]).wait().unwrap();
        assert_eq!(appended.lsn, Lsn(records.len() as u64 + 1), "{what}");
    }
}

/// Found writing the tests of gap 5 (issue 11): non-zero bytes in the
/// zeros a clean close's pair vouches for (a flipped bit, a bad sector in
/// space never written) are not read by the open that trusts the pair
/// (row 1c), and stay there. The session that goes on writes its frames
/// after the marker and rolls over before it reaches the last 551 bytes of
/// the segment: the segment is sealed with those bytes after its last
/// frame. A later open that scans it (no index image, `annals verify`)
/// must not take them for damage to a record, nor refuse the log.
#[test]
fn bytes_in_the_zeros_a_pair_vouched_for_do_not_make_the_segment_corrupt_once_it_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    common::write_closed_log(dir.path(), common::small_options(), 20, 100);
    let newest = common::segment_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&newest).unwrap().len() as usize;
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes[len - 100] ^= 0x10;
    std::fs::write(&newest, bytes).unwrap();
    // Appends until the segment is sealed (the last append opened the next).
    let log = common::open(dir.path());
    let segments = common::segment_files(dir.path()).len();
    for i in 0.. {
        log.append("after", Expectation::Any, common::unique_payload(100 + i, 300)).wait().unwrap();
        if common::segment_files(dir.path()).len() > segments {
            break;
        }
    }
    let records = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    log.close().wait().unwrap();
    drop(log);
    assert_reopens_whole(dir.path(), &records);
}

/// Non-zero bytes the open that trusted a pair did not read can come to
/// lie in the padding before the marker of the next clean close (the writer
/// leaves padding as it finds it). The open after that close trusts its
/// own pair at the end of the frames before that padding (row 1c); the
/// session after it writes its frames there, and crashes; the open after
/// the crash (no pair) cuts what follows them as a torn tail and reads
/// every record acknowledged, and `annals verify` reports no corruption.
#[test]
fn bytes_in_the_zeros_a_pair_vouched_for_that_become_the_padding_before_a_later_marker_are_padding() {
    let (dir, copy) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    common::write_closed_log(dir.path(), common::small_options(), 20, 100);
    let newest = common::segment_files(dir.path()).pop().unwrap();
    let marker = *common::frame_offsets(&newest).last().unwrap();
    // Past the 87-byte frame the next session writes, before the next boundary.
    let planted = marker + FRAME_HEADER_BYTES + 300;
    assert!(planted + 10 < annals::frame::marker_offset(marker + FRAME_HEADER_BYTES + 87));
    plant_bytes(&newest, planted, 10);
    let log = common::open(dir.path());
    log.append("after", Expectation::Any, common::unique_payload(20, 20)).wait().unwrap();
    log.close().wait().unwrap();
    drop(log);
    let log = common::open(dir.path());
    for i in 21..23 {
        log.append("after", Expectation::Any, common::unique_payload(i, 20)).wait().unwrap();
    }
    let records = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    common::crash_image(dir.path(), copy.path());
    drop(log);
    assert_reopens_whole(copy.path(), &records);
}

/// Gap 5 of issue 11: a flipped bit in either slot of a clean close's pair
/// (in its id, generation, end, flags or checksum) leaves one valid slot,
/// which is the state (row 11), and no pair: the open reads the zeros
/// after the marker again (bytes planted there are cut as a torn tail),
/// reads every record, and its clean close writes the pair again. Both
/// slots flipped is a damaged state file (row 10): corruption, naming it.
#[test]
fn a_flipped_bit_in_a_slot_of_the_pair_breaks_the_pair_and_loses_nothing() {
    for slot in 0..2 {
        for byte in [16, 32, 64, 80, 508] {
            let what = format!("slot {slot}, byte {byte}");
            let dir = tempfile::tempdir().unwrap();
            let records = common::write_closed_log(dir.path(), common::small_options(), 20, 100);
            let state = dir.path().join(STATE_FILE_NAME);
            common::flip_bit(&state, slot * STATE_SLOT_BYTES + byte, 3);
            let read = state_of(dir.path());
            assert!(matches!(read, StateRead::Found { damaged_slot: Some(_), .. }), "{what}: {read:?}");
            assert_eq!(read.clean_close_pair(), None, "{what}");
            let newest = common::segment_files(dir.path()).pop().unwrap();
            let len = std::fs::metadata(&newest).unwrap().len() as usize;
            plant_bytes(&newest, len - 100, 100);
            let reader = LogReader::open(dir.path()).unwrap();
            assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), records, "{what}");
            assert!(reader.problems().is_empty() && reader.report().torn_tail.is_some(), "{what}");
            let log = common::open(dir.path());
            assert_eq!(log.read_all(Lsn::ZERO, usize::MAX).unwrap(), records, "{what}");
            let torn = log.recovery_report().torn_tail.clone();
            assert!(torn.is_some_and(|t| (t.offset + t.bytes) as usize == len), "{what}: the zeros were not read");
            log.close().wait().unwrap();
            drop(log);
            assert!(state_of(dir.path()).clean_close_pair().is_some(), "{what}: the close wrote no pair");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    common::write_closed_log(dir.path(), common::small_options(), 20, 100);
    let state = dir.path().join(STATE_FILE_NAME);
    common::flip_bit(&state, 64, 0);
    common::flip_bit(&state, STATE_SLOT_BYTES + 64, 0);
    match Log::open(dir.path(), common::small_options()) {
        Err(Error::Corruption(corruption)) => assert_eq!(corruption.file, state, "{corruption}"),
        other => panic!("both slots damaged: {:?}", other.map(|log| log.last_lsn())),
    }
}

/// Gap 5 of issue 11: the newest segment of a log closed with the pair,
/// truncated at its marker (before it, or right after it), is shorter than
/// its header says: corruption naming it (row 6) for a strict open with or
/// without the index image, reported by a reader that still reads every
/// record, never taken for the end the pair vouches for. Salvage gives the
/// zeros back, keeps every record and resumes past the durable end.
#[test]
fn a_segment_truncated_at_the_pair_s_marker_is_corruption_not_the_end_of_the_log() {
    for image in [annals::IndexImageWrites::Off, annals::IndexImageWrites::AtClose] {
        for after_marker in [false, true] {
            let what = format!("image {image:?}, cut {} the marker", if after_marker { "after" } else { "before" });
            let dir = tempfile::tempdir().unwrap();
            let options = || Options { index_image: image, ..common::small_options() };
            let records = common::write_closed_log(dir.path(), options(), 20, 100);
            let pair = state_of(dir.path()).clean_close_pair().unwrap();
            let newest = common::segment_files(dir.path()).pop().unwrap();
            let marker = *common::frame_offsets(&newest).last().unwrap();
            let cut = if after_marker { marker + FRAME_HEADER_BYTES } else { marker };
            std::fs::OpenOptions::new().write(true).open(&newest).unwrap().set_len(cut as u64).unwrap();
            match Log::open(dir.path(), options()) {
                Err(Error::Corruption(corruption)) => {
                    assert_eq!(corruption.file, newest, "{what}: {corruption}");
                    assert!(
                        matches!(corruption.kind, annals::CorruptionKind::SegmentLength { .. }),
                        "{what}: {corruption}"
                    );
                }
                other => panic!("{what}: {:?}", other.map(|log| log.last_lsn())),
            }
            let reader = LogReader::open(dir.path()).unwrap();
            assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), records, "{what}");
            assert!(reader.problems().iter().any(|p| p.file == newest), "{what}: {:?}", reader.problems());
            let salvage = Options { recovery_mode: annals::RecoveryMode::Salvage, ..options() };
            let log = Log::open(dir.path(), salvage).unwrap();
            assert_eq!(log.read_all(Lsn::ZERO, usize::MAX).unwrap(), records, "{what}");
            let appended = log.append("after", Expectation::Any, &b"after"[..]).wait().unwrap();
            assert!(appended.lsn >= pair.durable_end_lsn, "{what}: lsn {} handed out again", appended.lsn);
        }
    }
}
