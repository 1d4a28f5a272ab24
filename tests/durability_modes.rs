//! Flush acknowledges without an fsync; Periodic is synced by the writer
//! within the interval; Sync fsyncs before acknowledging.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use annals::{Durability, Expectation, Log, Options};
use common::FaultyFs;

#[test]
fn sync_appends_fsync_and_flush_appends_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    let before = fs.faults.syncs.load(Ordering::SeqCst);
    for _ in 0..5 {
        log.append_with("s", Expectation::Any, &b"f"[..], Durability::Flush).wait().unwrap();
    }
    assert_eq!(fs.faults.syncs.load(Ordering::SeqCst), before);
    assert_eq!(log.read_stream("s").unwrap().entries.len(), 5, "flushed appends are readable at once");
    log.append_with("s", Expectation::Any, &b"s"[..], Durability::Sync).wait().unwrap();
    assert_eq!(fs.faults.syncs.load(Ordering::SeqCst), before + 1);
}

#[test]
fn periodic_appends_are_synced_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::default();
    let options = Options { durability: Durability::Periodic, fsync_interval_ms: 5, ..fs.options() };
    let log = Log::open(dir.path(), options).unwrap();
    let before = fs.faults.syncs.load(Ordering::SeqCst);
    log.append("s", Expectation::Any, &b"p"[..]).wait().unwrap();
    // A liveness bound, not a measurement: the sync is due after 5 ms.
    let mut polls = 0;
    while fs.faults.syncs.load(Ordering::SeqCst) == before {
        polls += 1;
        assert!(polls < 5_000, "the periodic fsync never ran");
        std::thread::sleep(Duration::from_millis(2));
    }
}
