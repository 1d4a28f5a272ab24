//! Attacks on the open that skips its directory fsync when the state file
//! holds a clean-close pair, on background threads started by the writer
//! thread, and on the image a clean close keeps (issue 11; segments-format.md
//! sections 7 and 11.2).
//!
//! The sweeps here put a fault at every mutating operation of a session
//! that may still end in a clean close (rollovers, a compaction that removes
//! files, an index image, the close), then reopen on the same simulated disk
//! (a process restart: what the fault left unsynced is still in the page
//! cache, so an open that skips the sync can read entries a power cut takes),
//! write in that session, and cut the power in every crash mode.

mod common;

use std::path::Path;
use std::sync::Arc;

use annals::sim::fs::{CrashMode, FaultKind, SimFs};
use annals::sim::rng::SimRng;
use annals::state::read_state;
use annals::{Expectation, IndexImageWrites, Log, Lsn, Options, Record, SegmentPreparation};

/// What a log holds, as a reader sees it.
#[derive(Debug, PartialEq)]
struct View {
    all: Vec<Record>,
    streams: Vec<(Vec<u8>, Vec<Record>)>,
}

fn view(log: &Log) -> View {
    let all = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    let streams = log
        .streams("")
        .unwrap()
        .into_iter()
        .map(|(id, _)| (id.to_vec(), log.read_stream(&id).unwrap().entries))
        .collect();
    View { all, streams }
}

fn sim_options(fs: &SimFs, images: IndexImageWrites) -> Options {
    Options {
        file_system: Arc::new(fs.clone()),
        segment_preparation: SegmentPreparation::Inline,
        index_image: images,
        ..common::small_options()
    }
}

/// A session that leaves the namespace busy and may still close cleanly:
/// appends over several rollovers, deletes a stream so that the compaction
/// after it removes segment files, writes an index image and closes. Every
/// error is ignored (a fault may hit any step); returns the LSNs acknowledged.
fn busy_session(dir: &Path, options: Options) -> Vec<(Lsn, Vec<u8>)> {
    let Ok(log) = Log::open(dir, options) else { return Vec::new() };
    let mut acked = Vec::new();
    for i in 0..30u64 {
        let stream = if i % 3 == 0 { "kept" } else { "gone" };
        let payload = common::unique_payload(100 + i, 300);
        if let Ok(appended) = log.append(stream, Expectation::Any, payload.clone()).wait() {
            acked.push((appended.lsn, payload));
        }
    }
    let _ = log.delete_stream("gone").wait();
    for i in 0..20u64 {
        let payload = common::unique_payload(200 + i, 300);
        if let Ok(appended) = log.append("kept", Expectation::Any, payload.clone()).wait() {
            acked.push((appended.lsn, payload));
        }
    }
    let _ = log.compact();
    let _ = log.write_index_image();
    let _ = log.close().wait();
    acked
}

/// The session after the restart: appends (each LSN past every one before),
/// closes, and then a power cut in every mode leaves the log it closed, and
/// hands out the next LSN past its last.
fn write_close_and_cut_the_power(
    log: Log,
    fs: &SimFs,
    images: IndexImageWrites,
    what: &str,
    first_payload: u64,
    rng: &mut SimRng,
) {
    let dir = annals::sim::sim_dir();
    let mut last = log.last_lsn().unwrap();
    for i in 0..8u64 {
        let appended = log.append("after", Expectation::Any, common::unique_payload(first_payload + i, 300)).wait();
        let appended = appended.unwrap_or_else(|e| panic!("{what}: append after the restart: {e}"));
        assert!(appended.lsn > last, "{what}: LSN {:?} handed out again", appended.lsn);
        last = appended.lsn;
    }
    let closed = view(&log);
    log.close().wait().unwrap_or_else(|e| panic!("{what}: close: {e}"));
    drop(log);
    for mode in CrashMode::ALL {
        let image = fs.crash_image(mode, rng);
        let what = format!("{what}, power cut ({})", mode.name());
        let log = Log::open(dir, sim_options(&image, images)).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(view(&log), closed, "{what}: not the log the last session closed");
        let next = log.append("next", Expectation::Any, vec![7; 40]).wait().unwrap();
        assert!(next.lsn > last, "{what}: LSN {:?} handed out again", next.lsn);
    }
}

/// Fault (EIO once) at every mutating operation of a busy session of a
/// cleanly closed log; the next session opens on the same disk (with the
/// pair, when the faulted session still closed cleanly, and then without a
/// directory sync), writes and closes; then a power cut in every mode. The
/// log after the cut is the one the last session closed: nothing it
/// acknowledged lost, nothing compacted or deleted back, and the next LSN
/// past every one handed out.
#[test]
fn a_fault_anywhere_in_a_session_then_an_unsynced_reopen_and_a_power_cut_loses_and_revives_nothing() {
    let dir = annals::sim::sim_dir();
    for images in [IndexImageWrites::AtClose, IndexImageWrites::Off] {
        let total = {
            let fs = SimFs::new();
            common::write_closed_log(dir, sim_options(&fs, images), 12, 300);
            let before = fs.counts().ops;
            busy_session(dir, sim_options(&fs, images));
            fs.counts().ops - before
        };
        assert!(total > 40, "the busy session made {total} mutating operations");
        let mut rng = SimRng::new(611);
        let mut pairs = 0;
        for at in 1..=total {
            let fs = SimFs::new();
            let options = || sim_options(&fs, images);
            common::write_closed_log(dir, options(), 12, 300);
            fs.inject_fault_after(at, FaultKind::Eio, false);
            let acked_b = busy_session(dir, options());
            fs.clear_fault();
            if read_state(&fs, dir).unwrap().clean_close_pair().is_some() {
                pairs += 1;
            }
            let what = format!("{images:?}, fault at op {at} of {total}");
            let log = Log::open(dir, options()).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
            let all = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
            for (lsn, payload) in &acked_b {
                let kept = all.iter().find(|r| r.lsn == *lsn);
                assert!(
                    kept.is_none_or(|r| r.payload[..] == payload[..]),
                    "{what}: LSN {lsn:?} holds other bytes after the restart"
                );
            }
            write_close_and_cut_the_power(log, &fs, images, &what, 300, &mut rng);
        }
        assert!(pairs > total / 4, "{images:?}: only {pairs} of {total} faulted sessions closed cleanly");
    }
}

fn segment_count(fs: &SimFs, dir: &Path) -> usize {
    use annals::fs::FileSystem;
    fs.list(dir).unwrap().iter().filter(|name| name.ends_with(".seg")).count()
}

/// Appends until the append that rolls over (`Some(n)`: exactly `n`
/// appends, the last of them the rollover), then closes at once: a fault
/// in the rollover's directory sync is the session's last namespace change,
/// under a clean close whose pair names the segment before it.
fn session_ending_in_a_rollover(fs: &SimFs, dir: &Path, appends: Option<usize>) -> (usize, Vec<(Lsn, Vec<u8>)>) {
    let Ok(log) = Log::open(dir, sim_options(fs, IndexImageWrites::Off)) else { return (0, Vec::new()) };
    let segments = segment_count(fs, dir);
    let mut acked = Vec::new();
    let mut made = 0;
    loop {
        let payload = common::unique_payload(500 + made as u64, 300);
        if let Ok(appended) = log.append("s", Expectation::Any, payload.clone()).wait() {
            acked.push((appended.lsn, payload));
        }
        made += 1;
        match appends {
            Some(n) if made == n => break,
            None if segment_count(fs, dir) > segments => break,
            _ => assert!(made < 100, "no rollover"),
        }
    }
    let _ = log.close().wait();
    (made, acked)
}

/// The riskiest sequence for the skipped sync: a rollover renames a spare
/// into the next segment and its directory fsync fails (the append fails,
/// the log goes on), then the session closes cleanly, its pair naming the
/// segment before. The next open finds the pair, skips the early sync and
/// lists a segment a power cut can still take; it must not write into it
/// (or record it as newest) before the directory is synced, or the cut
/// loses what it acknowledged there. A fault at every operation of that
/// session: fails if the sync after a pair that does not vouch for the end
/// of the log is skipped.
#[test]
fn a_rollover_whose_directory_sync_failed_before_a_clean_close_is_synced_by_the_next_open() {
    let dir = annals::sim::sim_dir();
    let (appends, total) = {
        let fs = SimFs::new();
        common::write_closed_log(dir, sim_options(&fs, IndexImageWrites::Off), 12, 300);
        let before = fs.counts().ops;
        let (appends, _) = session_ending_in_a_rollover(&fs, dir, None);
        (appends, fs.counts().ops - before)
    };
    let mut rng = SimRng::new(612);
    let mut dangling = 0;
    for at in 1..=total {
        let fs = SimFs::new();
        let options = || sim_options(&fs, IndexImageWrites::Off);
        common::write_closed_log(dir, options(), 12, 300);
        fs.inject_fault_after(at, FaultKind::Eio, false);
        let (_, acked_b) = session_ending_in_a_rollover(&fs, dir, Some(appends));
        fs.clear_fault();
        let durable_segments = fs.durable_files().keys().filter(|p| p.to_string_lossy().ends_with(".seg")).count();
        if read_state(&fs, dir).unwrap().clean_close_pair().is_some() && durable_segments < segment_count(&fs, dir) {
            dangling += 1;
        }
        let what = format!("fault at op {at} of {total}");
        let log = Log::open(dir, options()).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
        let all = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
        for (lsn, payload) in &acked_b {
            assert!(
                all.iter().any(|r| r.lsn == *lsn && r.payload[..] == payload[..]),
                "{what}: acknowledged LSN {lsn:?} lost at the restart"
            );
        }
        write_close_and_cut_the_power(log, &fs, IndexImageWrites::Off, &what, 700, &mut rng);
    }
    assert!(dangling > 0, "no faulted session left a clean close beside a segment name not yet durable");
}
