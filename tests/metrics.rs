//! With the `metrics` feature the engine reports appends, conflicts, group
//! sizes, fsync latency, queue depth, rollovers, compactions and its bytes on
//! disk through the `metrics` facade, under the names tabled in
//! `annals::telemetry`. A recorder installed for the whole process sees what
//! the writer thread records too; one test per binary, since the recorder is
//! global.

mod common;

use std::collections::HashMap;

use annals::telemetry;
use annals::{Batch, Expectation, Log, Lsn, StreamSeq};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Every metric recorded since the last snapshot, by name (a snapshot drains
/// counters, gauges and histograms alike).
fn take(snapshotter: &Snapshotter) -> HashMap<String, DebugValue> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
        .collect()
}

fn counter(metrics: &HashMap<String, DebugValue>, name: &str) -> u64 {
    match metrics.get(name) {
        Some(DebugValue::Counter(value)) => *value,
        other => panic!("{name}: expected a counter, got {other:?}"),
    }
}

fn gauge(metrics: &HashMap<String, DebugValue>, name: &str) -> f64 {
    match metrics.get(name) {
        Some(DebugValue::Gauge(value)) => value.into_inner(),
        other => panic!("{name}: expected a gauge, got {other:?}"),
    }
}

fn histogram(metrics: &HashMap<String, DebugValue>, name: &str) -> Vec<f64> {
    match metrics.get(name) {
        Some(DebugValue::Histogram(values)) => values.iter().map(|v| v.into_inner()).collect(),
        other => panic!("{name}: expected a histogram, got {other:?}"),
    }
}

fn bytes_on_disk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.ends_with(".seg") || name == annals::state::STATE_FILE_NAME
        })
        .map(|entry| entry.metadata().unwrap().len())
        .sum()
}

#[test]
fn the_main_metrics_are_emitted_to_an_installed_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder of this test binary");
    let dir = tempfile::tempdir().unwrap();

    let log = Log::open(dir.path(), common::small_options()).unwrap();
    let opened = take(&snapshotter);
    assert_eq!(gauge(&opened, telemetry::DISK_BYTES), bytes_on_disk(dir.path()) as f64, "the new log's files");

    // 60 appends of 300 bytes over 3 streams: 8 KiB segments roll over.
    for i in 0..60u64 {
        let stream = format!("run-{}", i % 3);
        log.append(&stream, Expectation::Exact(StreamSeq(i / 3)), vec![b'x'; 300]).wait().unwrap();
    }
    // One guard that fails, and a batch of three records.
    let conflict = log.append("run-0", Expectation::NoStream, &b"again"[..]).wait();
    assert!(matches!(conflict, Err(annals::Error::Conflict { .. })));
    let batch = Batch::new().append("a", Expectation::Any, &b"1"[..]).append("b", Expectation::Any, &b"2"[..]);
    log.commit(batch.append("c", Expectation::Any, &b"3"[..])).wait().unwrap();

    let written = take(&snapshotter);
    assert_eq!(counter(&written, telemetry::APPENDS_TOTAL), 63);
    assert_eq!(counter(&written, telemetry::CONFLICTS_TOTAL), 1);
    let groups = histogram(&written, telemetry::GROUP_RECORDS);
    assert_eq!(groups.iter().sum::<f64>(), 63.0, "every committed record is in one group: {groups:?}");
    assert!(histogram(&written, telemetry::GROUP_BYTES).iter().all(|&bytes| bytes > 0.0));
    let fsyncs = histogram(&written, telemetry::FSYNC_SECONDS);
    assert!(fsyncs.len() >= 61, "each Sync group is synced: {} fsyncs", fsyncs.len());
    assert!(fsyncs.iter().all(|&seconds| seconds > 0.0 && seconds < 60.0));
    assert!(written.contains_key(telemetry::QUEUE_DEPTH));
    let rollovers = counter(&written, telemetry::ROLLOVERS_TOTAL);
    assert!(rollovers >= 2, "60 records of 300 bytes fill more than two 8 KiB segments: {rollovers}");
    let grown = gauge(&written, telemetry::DISK_BYTES);
    assert!(grown >= (rollovers * 4096) as f64, "each new segment's bytes were added: {grown}");

    // Clearing the streams makes the sealed segments dead; compaction gives them back.
    for stream in ["run-0", "run-1", "run-2"] {
        log.clear(stream, Expectation::Any).wait().unwrap();
    }
    let _ = take(&snapshotter);
    let before = bytes_on_disk(dir.path());
    let report = log.compact().unwrap();
    assert!(report.reclaimed_bytes > 0, "{report:?}");
    let compacted = take(&snapshotter);
    assert_eq!(counter(&compacted, telemetry::COMPACTION_RUNS_TOTAL), 1);
    assert_eq!(counter(&compacted, telemetry::COMPACTION_RECLAIMED_BYTES_TOTAL), report.reclaimed_bytes);
    assert_eq!(histogram(&compacted, telemetry::COMPACTION_SECONDS).len(), 1);
    let after = bytes_on_disk(dir.path());
    assert_eq!(gauge(&compacted, telemetry::DISK_BYTES), after as f64 - before as f64, "the gauge follows the files");

    // A subscriber from the start is as far behind as the log is long.
    let end = log.last_lsn().unwrap().0;
    let mut subscription = log.subscribe(Lsn::ZERO).unwrap();
    let first = subscription.next_blocking().unwrap().unwrap();
    assert_eq!(&first.payload[..], b"1", "the cleared streams' records are not live");
    let lags = histogram(&take(&snapshotter), telemetry::SUBSCRIBER_LAG_RECORDS);
    assert_eq!(lags.first().copied(), Some(end as f64), "behind by every LSN of the log: {lags:?}");
    drop(subscription);

    // Closing the log takes its share of the gauge back.
    log.close().wait().unwrap();
    drop(log);
    let closed = take(&snapshotter);
    assert_eq!(gauge(&closed, telemetry::DISK_BYTES), -(after as f64));
    assert_eq!(closed.get(telemetry::POISONED_TOTAL), None, "nothing failed");
}
