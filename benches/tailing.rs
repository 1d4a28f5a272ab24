//! Tailing (issue 12): how soon a subscriber gets a record after it was
//! appended, and whether a reader in another handle keeps up with a writer.
//!
//! - `tailing_delivery`: 1 and 64 tokio tasks append durably (`Sync`, the
//!   W2 row); a `Log::subscribe` subscriber on a thread of its own receives
//!   every record. Criterion times the appends until the subscriber has
//!   them all; each record's append-to-delivery latency (from the call to
//!   `append` to the subscriber's `next` returning it) goes to the p50 and
//!   p99 this bench prints and writes.
//! - `tailing_reader`: 64 tasks append at the W2 rate while a `LogReader`
//!   follows the same directory as `annals tail --follow` does (refresh,
//!   then `read_durable`, polling every millisecond when idle). Criterion
//!   times the appends until the reader has read them all; the figures
//!   give the append rate, the reader's rate and their ratio (the target:
//!   the reader keeps up, a ratio near 1). Each round ends with one more
//!   append, whose frame tells the reader that the round's last group is
//!   durable (a reader in another process learns it from the next frame).
//!
//! The percentiles and rates go to
//! `target/criterion/annals-tailing-<group>.json` (`-smoke.json` in a smoke
//! run). `ANNALS_BENCH_SMOKE=1 cargo bench --bench tailing -- --test` runs
//! each once on tiny data (what CI does).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals::{CompactionOptions, Durability, Expectation, Log, LogReader, Lsn, Options, StreamSeq};
use common::{Row, concurrent, runtime, scratch, settle, smoke, wanted};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::Serialize;

fn log_options() -> Options {
    Options {
        durability: Durability::Sync,
        compaction: CompactionOptions { background: false, ..CompactionOptions::default() },
        ..Options::default()
    }
}

/// A row, after the time it was appended at (ns since `base`).
fn payload(base: Instant, row: &Row) -> Vec<u8> {
    let mut out = (base.elapsed().as_nanos() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&row.encode());
    out
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Writes what a group measured beside criterion's results.
fn write_figures(group: &str, figures: &impl Serialize) {
    let dir = common::target_dir().join("criterion");
    let _ = std::fs::create_dir_all(&dir);
    let name =
        if smoke() { format!("annals-tailing-{group}-smoke.json") } else { format!("annals-tailing-{group}.json") };
    std::fs::write(dir.join(name), serde_json::to_string_pretty(figures).unwrap() + "\n").unwrap();
}

/// Waits until `counter` reaches `target`; a bound on a benchmark that
/// would otherwise hang, not a measurement.
fn wait_for(counter: &AtomicU64, target: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while counter.load(Ordering::Acquire) < target {
        assert!(Instant::now() < deadline, "{what}: {} of {target} after 120 s", counter.load(Ordering::Acquire));
        std::thread::yield_now();
    }
}

#[derive(Serialize)]
struct DeliveryFigures {
    writers: u64,
    records: usize,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

fn tailing_delivery(c: &mut Criterion) {
    if !wanted("tailing_delivery") {
        return;
    }
    let mut group = c.benchmark_group("tailing_delivery");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    let rt = runtime();
    let mut figures = Vec::new();
    for writers in [1u64, 64] {
        group.throughput(Throughput::Elements(writers));
        let dir = scratch("tailing-delivery");
        let log = Log::open(&dir, log_options()).unwrap();
        settle();
        let base = Instant::now();
        let delivered = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
        let subscriber = {
            let mut subscription = log.subscribe(Lsn::ZERO).unwrap();
            let (delivered, latencies) = (delivered.clone(), latencies.clone());
            std::thread::spawn(move || {
                while let Some(Ok(record)) = subscription.next() {
                    let sent = u64::from_le_bytes(record.payload[..8].try_into().unwrap());
                    let latency = (base.elapsed().as_nanos() as u64).saturating_sub(sent);
                    latencies.lock().unwrap().push(latency);
                    delivered.fetch_add(1, Ordering::Release);
                }
            })
        };
        let next_seq = Arc::new(AtomicU64::new(0));
        group.bench_with_input(BenchmarkId::new("annals_sync_subscriber", writers), &writers, |b, &writers| {
            b.iter_custom(|rounds| {
                let target = delivered.load(Ordering::Acquire) + rounds * writers;
                let start = next_seq.fetch_add(rounds, Ordering::Relaxed);
                let log = log.clone();
                let started = Instant::now();
                concurrent(&rt, writers, rounds, move |w, i| {
                    let log = log.clone();
                    async move {
                        let row = Row::new(start + i, w);
                        let expected = Expectation::Exact(StreamSeq(start + i));
                        log.append(format!("writer-{w}"), expected, payload(base, &row)).await.unwrap();
                    }
                });
                wait_for(&delivered, target, "subscriber");
                started.elapsed()
            })
        });
        log.close().wait().unwrap();
        subscriber.join().unwrap();
        let mut sorted = std::mem::take(&mut *latencies.lock().unwrap());
        sorted.sort_unstable();
        let us = |ns: u64| ns as f64 / 1000.0;
        let row = DeliveryFigures {
            writers,
            records: sorted.len(),
            p50_us: us(percentile(&sorted, 0.50)),
            p99_us: us(percentile(&sorted, 0.99)),
            max_us: us(sorted.last().copied().unwrap_or(0)),
        };
        println!(
            "tailing_delivery/{writers} writers: {} records, append-to-delivery p50 {:.0} us, p99 {:.0} us, max {:.0} us",
            row.records, row.p50_us, row.p99_us, row.max_us
        );
        figures.push(row);
    }
    group.finish();
    write_figures("delivery", &figures);
}

#[derive(Serialize)]
struct ReaderFigures {
    writers: u64,
    records: u64,
    appends_per_sec: f64,
    reader_records_per_sec: f64,
    /// The reader's rate over the append rate: 1 keeps up.
    reader_over_append: f64,
}

fn tailing_reader(c: &mut Criterion) {
    if !wanted("tailing_reader") {
        return;
    }
    let mut group = c.benchmark_group("tailing_reader");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    let rt = runtime();
    let writers = 64u64;
    group.throughput(Throughput::Elements(writers));
    let dir = scratch("tailing-reader");
    let log = Log::open(&dir, log_options()).unwrap();
    settle();
    let read = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (read, stop, dir) = (read.clone(), stop.clone(), dir.clone());
        std::thread::spawn(move || {
            let mut reader = LogReader::open(&dir).unwrap();
            let mut after = Lsn::ZERO;
            let mut batch = Vec::new();
            while !stop.load(Ordering::Acquire) {
                reader.refresh().unwrap();
                let mut moved = false;
                loop {
                    batch.clear();
                    let read_to = reader.read_durable(after, &mut batch).unwrap();
                    let rows = batch.iter().filter(|record| record.stream.starts_with(b"writer-")).count();
                    read.fetch_add(rows as u64, Ordering::Release);
                    if read_to == after {
                        break;
                    }
                    (after, moved) = (read_to, true);
                }
                if !moved {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    let next_seq = Arc::new(AtomicU64::new(0));
    let (appended_total, append_time, reader_time) =
        (Arc::new(AtomicU64::new(0)), Arc::new(Mutex::new(Duration::ZERO)), Arc::new(Mutex::new(Duration::ZERO)));
    group.bench_with_input(BenchmarkId::new("annals_sync_log_reader", writers), &writers, |b, &writers| {
        b.iter_custom(|rounds| {
            let target = read.load(Ordering::Acquire) + rounds * writers;
            let start = next_seq.fetch_add(rounds, Ordering::Relaxed);
            let appender = log.clone();
            let started = Instant::now();
            let appended = concurrent(&rt, writers, rounds, move |w, i| {
                let log = appender.clone();
                async move {
                    let row = Row::new(start + i, w);
                    log.append(format!("writer-{w}"), Expectation::Exact(StreamSeq(start + i)), row.encode())
                        .await
                        .unwrap();
                }
            });
            // The next frame vouches for the round's last group.
            log.append("fence", Expectation::Any, &b""[..]).wait().unwrap();
            wait_for(&read, target, "log reader");
            let elapsed = started.elapsed();
            appended_total.fetch_add(rounds * writers, Ordering::Relaxed);
            *append_time.lock().unwrap() += appended;
            *reader_time.lock().unwrap() += elapsed;
            elapsed
        })
    });
    group.finish();
    stop.store(true, Ordering::Release);
    reader.join().unwrap();
    log.close().wait().unwrap();
    let records = appended_total.load(Ordering::Relaxed);
    let appends_per_sec = records as f64 / append_time.lock().unwrap().as_secs_f64();
    let reader_records_per_sec = records as f64 / reader_time.lock().unwrap().as_secs_f64();
    let figures = ReaderFigures {
        writers,
        records,
        appends_per_sec,
        reader_records_per_sec,
        reader_over_append: reader_records_per_sec / appends_per_sec,
    };
    println!(
        "tailing_reader/{writers} writers: {records} records, appends {:.0}/s, log reader {:.0}/s ({:.2} of the append rate)",
        figures.appends_per_sec, figures.reader_records_per_sec, figures.reader_over_append
    );
    write_figures("reader", &figures);
}

criterion_group!(benches, tailing_delivery, tailing_reader);
criterion_main!(benches);
