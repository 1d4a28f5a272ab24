//! One test per bug found, named after the bug.

mod common;

use std::future::Future;

use annals::{Error, Expectation, Log, Lsn, Options, StreamSeq};

/// The writer took a ready spare and asked for the next one at once; the
/// preparer then deleted and re-created `spare.seg.tmp` before the writer
/// renamed it, so the writer published the preparer's half-made file under
/// the new segment's name and the next open reported a bad header.
#[test]
fn spare_taken_while_ready_is_not_replaced_before_its_rename() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path()); // background preparation, 8 KiB segments
    let payload = vec![7u8; 1500];
    for i in 0..600u64 {
        log.append("s", Expectation::Exact(StreamSeq(i)), payload.clone()).wait().unwrap();
    }
    log.close().wait().unwrap();
    let reopened = Log::open(dir.path(), common::small_options()).expect("every rolled-over segment is well formed");
    assert_eq!(reopened.next_seq("s").unwrap(), StreamSeq(600));
}

/// A clean-close marker whose fsync failed the Linux way stayed visible but
/// never became durable. The next open trusted it (it claims everything
/// before it is durable) and did not sync it again; after a power cut it read
/// as zeros ahead of a synced record that could not vouch for it, and
/// recovery cut that acknowledged record as a torn tail. Found by the
/// simulator (seed 3).
#[test]
fn a_marker_whose_fsync_failed_is_synced_again_before_anything_follows_it() {
    use annals::sim::fs::{CrashMode, FaultKind, SimFs};
    use annals::sim::rng::SimRng;
    use std::sync::Arc;

    let fs = SimFs::new();
    let options = annals::Options {
        file_system: Arc::new(fs.clone()),
        segment_preparation: annals::SegmentPreparation::Inline,
        ..common::small_options()
    };
    let dir = annals::sim::sim_dir();
    let log = Log::open(dir, options.clone()).unwrap();
    log.append("s", Expectation::Any, &b"first"[..]).wait().unwrap();
    fs.inject_fault_after(2, FaultKind::Eio, false); // the marker's write succeeds, its fsync fails
    assert!(log.close().wait().is_err());
    fs.clear_fault();

    let log = Log::open(dir, options.clone()).unwrap();
    let acked = log.append("s", Expectation::Any, &b"second"[..]).wait().unwrap();
    drop(log);
    fs.crash_now();
    let image = fs.crash_image(CrashMode::Drop, &mut SimRng::new(0));
    let recovered = Log::open(dir, annals::Options { file_system: Arc::new(image), ..options }).unwrap();
    let record = recovered.read_lsn(acked.lsn).unwrap().expect("the acknowledged append survived");
    assert_eq!(record.payload, &b"second"[..]);
}

/// Every clean close wrote a 40-byte marker, even when the log already
/// ended with one; open-close cycles with no writes piled markers past the
/// space a segment keeps for one, and the file grew past its declared length,
/// which the next open reported as corruption. Found by the simulator (seed 29).
#[test]
fn closing_again_without_writes_adds_no_marker() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    for _ in 0..2 {
        log.append("s", Expectation::Any, vec![1; 3500]).wait().unwrap(); // most of an 8 KiB segment
    }
    drop(log);
    for _ in 0..300 {
        drop(common::open(dir.path()));
    }
    let segments = common::segment_files(dir.path());
    assert_eq!(segments.len(), 1);
    assert_eq!(std::fs::metadata(&segments[0]).unwrap().len(), 8192);
    let frames = common::frame_offsets(&segments[0]);
    assert_eq!(frames.len(), 3, "two entries and one marker");
    assert_eq!(common::open(dir.path()).next_seq("s").unwrap(), StreamSeq(2));
}

/// Reads by cursor walk frames from an LSN checkpoint; after a reopen, new
/// frames follow the clean-close marker, which sits after zero padding at a
/// 512-byte boundary. The walk computed that boundary from where the read
/// started instead of from the segment's start, so `read_all` and `annals
/// dump` reported the padding as a damaged record. Found by the CLI test.
#[test]
fn reads_step_over_the_padding_before_a_marker_in_mid_segment() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3u64 {
        let log = common::open(dir.path());
        for i in 0..40u64 {
            log.append("s", Expectation::Exact(StreamSeq(round * 40 + i)), vec![i as u8; 17]).wait().unwrap();
        }
        drop(log);
    }
    let log = common::open(dir.path());
    for after in [0u64, 39, 40, 41, 79, 80, 100] {
        let page = log.read_all(annals::Lsn(after), 1000).unwrap();
        assert_eq!(page.len() as u64, 120 - after, "after {after}");
        assert_eq!(page[0].lsn, annals::Lsn(after + 1));
    }
}

/// The docs said an append is queued when the call returns; it is queued
/// when its future is first polled, like any Rust future, and a bench that
/// dropped unpolled futures loaded nothing. The docs now say so; this pins
/// the behaviour on both sides of the first poll.
#[tokio::test]
async fn an_unpolled_append_never_happens_and_a_polled_one_is_not_withdrawn() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    drop(log.append("s", Expectation::Any, &b"never polled"[..]));
    let mut pending = Box::pin(log.append("s", Expectation::Any, &b"polled once"[..]));
    let waker = std::task::Waker::noop();
    let _ = pending.as_mut().poll(&mut std::task::Context::from_waker(waker));
    drop(pending);
    log.append("s", Expectation::Any, &b"awaited"[..]).await.unwrap();
    let entries = log.read_stream("s").unwrap().entries;
    let payloads: Vec<&[u8]> = entries.iter().map(|r| r.payload.as_ref()).collect();
    assert_eq!(payloads, vec![&b"polled once"[..], &b"awaited"[..]]);
}

/// After the leader/follower change, a blocking appender that led a group of
/// `Periodic` appends set the sync deadline while the writer thread slept
/// without one, and nobody woke it: the background fdatasync never ran until
/// some later request came. Found by a flaky run of
/// `periodic_appends_are_synced_in_the_background`; here the writer thread
/// is surely asleep first.
#[test]
fn a_periodic_append_led_by_a_blocking_caller_is_synced_in_the_background() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let options = annals::Options { durability: annals::Durability::Periodic, fsync_interval_ms: 5, ..fs.options() };
    let log = Log::open(dir.path(), options).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100)); // the writer thread is asleep now
    let before = fs.faults.syncs.load(Ordering::SeqCst);
    log.append("s", Expectation::Any, &b"periodic"[..]).wait().unwrap();
    let mut polls = 0;
    while fs.faults.syncs.load(Ordering::SeqCst) == before {
        polls += 1;
        assert!(polls < 2_500, "the periodic fsync never ran");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// After the first corruption, the read-only verifier started over at the
/// next segment with an empty index, so the first entry of every later
/// segment looked like a broken stream: it reported one false problem per
/// segment and missed the real second damage. Found by hand with two
/// damaged sealed segments.
#[test]
fn verify_reports_each_real_problem_and_no_follow_on_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    for i in 0..120u64 {
        log.append(format!("s{}", i % 3), Expectation::Any, vec![i as u8; 300]).wait().unwrap();
    }
    log.close().wait().unwrap();
    drop(log);
    let segments = common::segment_files(dir.path());
    let first = common::frame_offsets(&segments[1])[2];
    let second = common::frame_offsets(&segments[4])[1];
    common::flip_bit(&segments[1], first + 50, 1);
    common::flip_bit(&segments[4], second + 50, 1);
    let reader = annals::LogReader::open(dir.path()).unwrap();
    let found: Vec<(std::path::PathBuf, u64)> = reader.problems().iter().map(|p| (p.file.clone(), p.offset)).collect();
    assert_eq!(found, vec![(segments[1].clone(), first as u64), (segments[4].clone(), second as u64)]);
}

/// `close()` released the directory lock while the spare preparer thread
/// could still be making a spare in the directory. A new opener's recovery
/// and preparer then raced it: both named a spare `spare-1.seg.tmp`, the
/// second creation failed, and an append after the reopen failed with an
/// I/O error. Found by an intermittent failure of
/// `salvage_of_a_sealed_segment_truncated_past_its_data_keeps_its_records`.
/// A file system that is slow to create spares makes the race certain:
/// once `close()` returns, nothing in the directory may change.
#[test]
fn close_waits_for_the_spare_preparer_before_releasing_the_directory() {
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let slow_spares = RealFsWith { spare_create_delay_ms: 150, ..RealFsWith::default() };
    let options = annals::Options { file_system: Arc::new(slow_spares), ..common::small_options() };
    let log = Log::open(dir.path(), options.clone()).unwrap(); // its preparer starts on a spare at once
    log.close().wait().unwrap();
    let listing = || {
        let mut names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    };
    let closed = listing();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(listing(), closed, "the directory changed after close returned, with its lock released");
    // The old handle is still alive (its threads not joined): a new opener works.
    let reopened = Log::open(dir.path(), options).unwrap();
    for i in 0..12u64 {
        reopened.append("s", Expectation::Any, vec![7; 700 + i as usize]).wait().unwrap();
    }
    drop(log);
}

/// A close whose state-file fsync failed left its record in the page cache
/// only. The next process read it at open, and its close skipped writing
/// the same record again, trusting it; after a power cut the durable state
/// was the older one, and damage over the last record went unreported as
/// a torn tail. Found by the crash simulator (seed 617). Now a close writes
/// its record unless this handle itself wrote and synced it, or the open
/// found it in both slots (the first synced before the second was written:
/// `tests/clean_close_pair.rs`).
#[test]
fn a_close_after_a_reopen_records_its_end_again_when_the_last_record_was_not_synced_here() {
    use annals::sim::fs::{FaultKind, SimFs};
    use annals::state::{LogState, STATE_FILE_NAME, STATE_SLOT_BYTES};
    use std::sync::Arc;

    for fault_at in 1..=8u64 {
        let fs = SimFs::new();
        let options = || annals::Options {
            file_system: Arc::new(fs.clone()),
            segment_preparation: annals::SegmentPreparation::Inline,
            ..common::small_options()
        };
        let log = Log::open(annals::sim::sim_dir(), options()).unwrap();
        for i in 0..3u8 {
            log.append("s", Expectation::Any, vec![i; 100]).wait().unwrap();
        }
        fs.inject_fault_after(fault_at, FaultKind::Eio, false);
        let _ = log.close().wait(); // the state write or its fsync may fail
        drop(log);
        fs.clear_fault();
        let log = Log::open(annals::sim::sim_dir(), options()).unwrap();
        log.close().wait().unwrap();
        drop(log);
        let durable = fs.durable_files();
        let state = &durable[&annals::sim::sim_dir().join(STATE_FILE_NAME)];
        let newest = [&state[..STATE_SLOT_BYTES], &state[STATE_SLOT_BYTES..]]
            .into_iter()
            .filter_map(|slot| LogState::decode(slot).ok())
            .max_by_key(|slot| slot.generation)
            .unwrap();
        assert_eq!(newest.durable_end_lsn, annals::Lsn(4), "fault at {fault_at}: the durable state misses the end");
        assert!(newest.clean_close, "fault at {fault_at}");
    }
}

/// The writer started a stream that was new to a commit group at "next
/// sequence 0, no snapshot" when the group's first operation on it was a
/// snapshot, instead of taking the stream's state from the index. Later
/// requests in the same group were checked against that: snapshots were
/// refused as out of range, and an `Any` append was acknowledged at
/// sequence 0 of a stream at 3, after which the log would not reopen. Found
/// by the meerkat adapter under the conformance suite's concurrency.
#[test]
fn a_snapshot_first_in_a_group_leaves_its_streams_state_for_the_rest_of_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), common::small_options()).unwrap();
    for i in 0..3u8 {
        log.append("s", Expectation::Any, vec![i; 8]).wait().unwrap();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for _ in 0..20 {
        let results = rt.block_on(async {
            let mut pending = Vec::new();
            for task in 0..32u64 {
                let log = log.clone();
                pending.push(tokio::spawn(async move {
                    if task % 2 == 0 {
                        log.snapshot("s", StreamSeq(2), &b"state"[..]).await.map(|_| ())
                    } else {
                        log.append("s", Expectation::Any, &b"more"[..]).await.map(|_| ())
                    }
                }));
            }
            let mut results = Vec::new();
            for task in pending {
                results.push(task.await.unwrap());
            }
            results
        });
        for result in results {
            result.expect("every snapshot and append holds");
        }
    }
    let appended = log.next_seq("s").unwrap();
    assert_eq!(appended, StreamSeq(3 + 20 * 16));
    log.close().wait().unwrap();
    drop(log);
    let reopened = Log::open(dir.path(), common::small_options()).expect("the log reopens");
    assert_eq!(reopened.next_seq("s").unwrap(), appended);
}

/// A close skipped the zero padding before its clean-close marker in the
/// index, then wrote the marker and published it under a second lock: a
/// read of the log in between walked into the padding and reported a
/// "zeroed frame header" as corruption of a healthy log. Found by the
/// subscription tests, whose subscriber read while the log closed.
#[test]
fn a_read_racing_a_close_never_reports_the_markers_padding_as_corruption() {
    for _ in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let log = common::open(dir.path());
        log.append("s", Expectation::Any, &b"a"[..]).wait().unwrap();
        let reader = log.clone();
        let reading = std::thread::spawn(move || {
            loop {
                match reader.read_all(annals::Lsn::ZERO, 10) {
                    Ok(records) => assert_eq!(records.len(), 1),
                    Err(annals::Error::Closed) => return,
                    Err(error) => panic!("a read beside a close failed: {error}"),
                }
            }
        });
        log.close().wait().unwrap();
        reading.join().unwrap();
    }
}

/// Appends take their time from the file system's clock (the simulator's
/// own, so that a seed replays the same bytes). Reading the clock once per
/// group, the writer called the process's clock instead of the seam's: the
/// branch that did it was written before the seam had a clock, and a rebase
/// merged the two without a conflict. Found reviewing that rebase.
#[test]
fn a_groups_time_comes_from_the_file_systems_clock() {
    use annals::sim::fs::{SIM_EPOCH_MS, SimFs};
    let fs = SimFs::new();
    let options = annals::Options {
        file_system: std::sync::Arc::new(fs.clone()),
        segment_preparation: annals::SegmentPreparation::Inline,
        ..annals::Options::default()
    };
    let log = Log::open(annals::sim::sim_dir(), options).unwrap();
    let first = log.append("s", Expectation::Any, vec![1]).wait().unwrap();
    assert_eq!(first.timestamp_ms, SIM_EPOCH_MS);
    fs.move_clock(5_000);
    let batch = annals::Batch::new().append("s", Expectation::Any, vec![2]).append("t", Expectation::Any, vec![3]);
    let later = log.commit(batch).wait().unwrap();
    assert!(later.iter().all(|appended| appended.timestamp_ms == SIM_EPOCH_MS + 5_000), "{later:?}");
    log.close().wait().unwrap();
}

/// The `open_directory` fuzz target's input `00 00 00 26`: salvage of a
/// directory holding a stray file named for the last LSN (2^64 - 1) resumes
/// the log at the top of the LSN space, past every LSN the file could have
/// held. The writer's next LSN then overflowed: a panic with overflow
/// checks, and in release an LSN that wrapped to 0 after one append (an
/// LSN reused). Now an append that would take an LSN past the space is
/// refused with a typed error, writes nothing and poisons nothing, and the
/// records before it stay.
#[test]
fn an_append_past_the_last_lsn_is_refused_not_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options { segment_preparation: annals::SegmentPreparation::Inline, ..Options::default() };
    let log = Log::open(dir.path(), options()).unwrap();
    log.append("s", Expectation::Any, &b"kept"[..]).wait().unwrap();
    log.close().wait().unwrap();
    drop(log);
    std::fs::write(dir.path().join(format!("{:020}.seg", u64::MAX)), b"not a segment").unwrap();
    let salvage = Options { recovery_mode: annals::RecoveryMode::Salvage, ..options() };
    let log = Log::open(dir.path(), salvage).unwrap();
    for _ in 0..2 {
        let refused = log.append("s", Expectation::Any, &b"past the end"[..]).wait();
        assert!(matches!(refused, Err(Error::LsnSpaceExhausted { .. })), "{refused:?}");
    }
    let read = log.read_stream("s").unwrap();
    assert_eq!(read.entries.len(), 1);
    assert_eq!(&read.entries[0].payload[..], b"kept");
    assert!(log.read_all(Lsn::ZERO, usize::MAX).unwrap().iter().all(|record| record.lsn == Lsn::FIRST));
    log.close().wait().unwrap();
}

/// Found reviewing the background threads' start (now the writer thread
/// starts them): when one could not be started, the writer poisoned the
/// log but woke nobody, so a leader that had taken the writer and waited
/// for the spare preparer at a rollover waited forever, and so did the
/// drop after it. Now the failure shuts the spares down too: the waiting
/// append fails with the poison, every later write is refused with it,
/// reads go on, and close and drop return.
#[test]
fn a_background_thread_that_cannot_start_fails_writes_and_never_hangs_them() {
    for refused in ["annals-spare", "annals-compactor", "annals-image"] {
        let dir = tempfile::tempdir().unwrap();
        let fs = common::FaultyFs::default();
        let options = || Options {
            segment_bytes: 8192,
            segment_preparation: annals::SegmentPreparation::Background,
            compaction: annals::CompactionOptions { background: true, ..annals::CompactionOptions::default() },
            index_image: annals::IndexImageWrites::Background,
            ..fs.options()
        };
        let written = common::write_closed_log(dir.path(), options(), 5, 100);
        fs.faults.refused_threads.lock().unwrap().push(refused);
        let log = Log::open(dir.path(), options()).unwrap();
        // Enough to roll over the 8 KiB segments several times, blocking
        // (each append may lead its group and wait for a spare).
        let mut refusals = 0;
        for i in 0..200u64 {
            match log.append("s", Expectation::Any, vec![i as u8; 100]).wait() {
                Ok(_) => {}
                Err(Error::Poisoned { cause }) => {
                    assert!(cause.to_string().contains("spawn thread"), "{refused}: {cause}");
                    refusals += 1;
                }
                Err(other) => panic!("{refused}: {other}"),
            }
        }
        assert!(refusals > 0, "{refused}: no write was refused");
        drop(log);
        // The race itself: the spare preparer's start fails only once a
        // leader is waiting for its spare at a rollover.
        let log = Log::open(dir.path(), options()).unwrap();
        if refused == "annals-spare" {
            let (go, gate) = std::sync::mpsc::channel();
            *fs.faults.refusal_gate.lock().unwrap() = Some(gate);
            let releaser = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(200));
                let _ = go.send(());
            });
            // Two of these do not fit in an 8 KiB segment: a rollover, led
            // by this thread (no writer thread is running yet).
            let refused_append = (0..3)
                .map(|_| log.append("s", Expectation::Any, vec![9; 3900]).wait())
                .find(|appended| appended.is_err())
                .expect("a rollover's append is refused");
            assert!(matches!(refused_append, Err(Error::Poisoned { .. })), "{refused_append:?}");
            releaser.join().unwrap();
        }
        assert_eq!(log.read_all(Lsn::ZERO, 5).unwrap(), written, "{refused}: reads go on");
        drop(log);
        fs.faults.refused_threads.lock().unwrap().clear();
        let reopened = Log::open(dir.path(), options()).unwrap();
        assert_eq!(reopened.read_all(Lsn::ZERO, 5).unwrap(), written, "{refused}");
        reopened.append("s", Expectation::Any, &b"after"[..]).wait().unwrap();
    }
}

/// The completer thread, which wakes a mid-sized group's waiters, is not
/// needed: a log whose completer cannot start answers every group on the
/// writer thread, none lost, none poisoned (64 concurrent appenders, so
/// that groups of 8 to 64 form).
#[test]
fn a_log_whose_completer_thread_cannot_start_answers_every_append_itself() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    fs.faults.refused_threads.lock().unwrap().push("annals-completer");
    let log = Log::open(dir.path(), Options { durability: annals::Durability::Sync, ..fs.options() }).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..64u64)
            .map(|w| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in 0..20u64 {
                        log.append(format!("w{w}"), Expectation::Exact(StreamSeq(i)), vec![w as u8; 50]).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    assert_eq!(log.read_all(Lsn::ZERO, usize::MAX).unwrap().len(), 64 * 20);
    log.close().wait().unwrap();
}

/// A compaction unlinks its inputs after its commit, outside the writer's
/// lock, and a close does not wait for those unlinks: a log reopened right
/// after its close could list an input as a leftover of the compaction,
/// lose it to the old compactor's unlink, and fail its open with `remove:
/// No such file or directory`. Found by a loop of the compaction tests on
/// the loaded machine (`the_background_compactor_gives_back_dead_space_on_its_own_and_reads_stay_the_same`,
/// once in 20 runs). Here a file system removes the leftover itself right after
/// the open lists it: the open goes on, as the removal wanted it gone.
#[test]
fn an_open_does_not_fail_on_a_leftover_that_vanished_after_its_listing() {
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    for i in 0..60u64 {
        log.append(format!("s{}", i % 3), Expectation::Any, vec![i as u8; 300]).wait().unwrap();
    }
    // Dead records for the compaction to drop.
    log.delete_stream("s0").wait().unwrap();
    let input = common::segment_files(dir.path()).remove(0);
    let input_bytes = std::fs::read(&input).unwrap();
    let report = log.compact().unwrap();
    assert!(report.leftovers.is_empty() && !input.exists(), "{report:?}");
    let records = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    log.close().wait().unwrap();
    drop(log);
    // The input as the old compactor had not unlinked it yet.
    std::fs::write(&input, input_bytes).unwrap();
    let fs =
        Arc::new(RealFsWith { vanish_after_list: std::sync::Mutex::new(Some(input.clone())), ..RealFsWith::default() });
    let options = Options { file_system: fs.clone(), ..common::small_options() };
    let reopened = Log::open(dir.path(), options).expect("an open beside the old compactor's unlink");
    assert!(fs.vanish_after_list.lock().unwrap().is_none(), "the file vanished after the listing");
    assert!(!input.exists());
    assert_eq!(reopened.read_all(Lsn::ZERO, usize::MAX).unwrap(), records);
}

/// The real file system with a slow spare creation, or a file that another
/// thread removes right after a listing, for the races above.
#[derive(Debug, Default)]
struct RealFsWith {
    /// Each creation of a spare segment waits this long first.
    spare_create_delay_ms: u64,
    /// Removed (once) right after the next listing.
    vanish_after_list: std::sync::Mutex<Option<std::path::PathBuf>>,
}

impl annals::fs::FileSystem for RealFsWith {
    fn create_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
        annals::fs::RealFs.create_dir_all(dir)
    }
    fn list(&self, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
        let names = annals::fs::RealFs.list(dir)?;
        if let Some(path) = self.vanish_after_list.lock().unwrap().take() {
            std::fs::remove_file(path)?;
        }
        Ok(names)
    }
    fn create(&self, path: &std::path::Path) -> std::io::Result<std::sync::Arc<dyn annals::fs::File>> {
        if path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("spare-")) {
            std::thread::sleep(std::time::Duration::from_millis(self.spare_create_delay_ms));
        }
        annals::fs::RealFs.create(path)
    }
    fn open(&self, path: &std::path::Path, writable: bool) -> std::io::Result<std::sync::Arc<dyn annals::fs::File>> {
        annals::fs::RealFs.open(path, writable)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        annals::fs::RealFs.rename(from, to)
    }
    fn remove(&self, path: &std::path::Path) -> std::io::Result<()> {
        annals::fs::RealFs.remove(path)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        annals::fs::RealFs.sync_dir(dir)
    }
    fn lock(&self, dir: &std::path::Path, mode: annals::fs::LockMode) -> std::io::Result<Option<annals::fs::DirLock>> {
        annals::fs::RealFs.lock(dir, mode)
    }
}

/// Found reviewing the background threads' lazy start (review 17): the
/// writer thread starts them at its first wake-up, and a blocking leader
/// can close the log meanwhile. A thread that then failed to start
/// poisoned the closed log, which turned `Closed` back into `Poisoned`:
/// a later `close()` was queued, and nobody was left to answer it. Now a
/// closed log stays closed.
#[test]
fn a_background_thread_that_fails_to_start_after_a_leader_closed_the_log_leaves_it_closed() {
    let dir = tempfile::tempdir().unwrap();
    let fs = common::FaultyFs::default();
    let options = Options { segment_preparation: annals::SegmentPreparation::Background, ..fs.options() };
    let written = common::write_closed_log(dir.path(), options.clone(), 3, 100);
    fs.faults.refused_threads.lock().unwrap().push("annals-spare");
    let (release, gate) = std::sync::mpsc::channel();
    *fs.faults.refusal_gate.lock().unwrap() = Some(gate);
    let log = Log::open(dir.path(), options.clone()).unwrap();
    // The close's push wakes the writer thread, whose start of the spare
    // preparer waits at the gate.
    let closing = {
        let log = log.clone();
        std::thread::spawn(move || log.close().wait())
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    // This append leads (the writer thread holds nothing): its round takes
    // the close first, then finds the log closed. (On a machine so loaded
    // that the closing thread had not queued its close yet, the append
    // goes first and is written.)
    let appended = log.append("s", Expectation::Any, &b"late"[..]).wait();
    assert!(matches!(appended, Err(Error::Closed) | Ok(_)), "{appended:?}");
    closing.join().unwrap().unwrap();
    // Now the preparer's start fails.
    release.send(()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (done, finished) = std::sync::mpsc::channel();
    let again = {
        let log = log.clone();
        std::thread::spawn(move || done.send(log.close().wait()).unwrap())
    };
    let closed_again = finished.recv_timeout(std::time::Duration::from_secs(10)).expect("a second close returns");
    assert!(closed_again.is_ok(), "{closed_again:?}");
    again.join().unwrap();
    assert!(matches!(log.append("s", Expectation::Any, &b"later"[..]).wait(), Err(Error::Closed)));
    drop(log);
    fs.faults.refused_threads.lock().unwrap().clear();
    let reopened = Log::open(dir.path(), options).unwrap();
    let read = reopened.read_all(Lsn::ZERO, usize::MAX).unwrap();
    assert_eq!(read[..written.len()], written[..]);
    assert_eq!(read.len(), written.len() + usize::from(appended.is_ok()), "the late append, if it was acknowledged");
}
