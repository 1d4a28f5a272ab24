//! Issue 10's benches for the cano adapter: W1 (one workflow appending
//! durable rows), W2 (64 workflows appending concurrently) and W3 (load a
//! 20-row run decoded into `CheckpointRow`s), through `AnnalsCheckpointStore`
//! and through cano's own `RedbCheckpointStore`, in the same run.
//!
//! `ANNALS_BENCH_SMOKE=1 cargo bench -p annals-cano -- --test` runs each
//! once on tiny data (what CI does).

mod common;

use std::time::Duration;

use common::{RAW_FRAME_BYTES, RUN_ROWS, RawFile, fill_runs, row, runtime, scratch, smoke, stores};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const WRITERS: usize = 64;

fn w1_one_workflow_appending(c: &mut Criterion) {
    let mut group = c.benchmark_group("cano_w1_one_workflow_appending");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    let rt = runtime();
    for (name, store) in stores("w1") {
        let mut next = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(store.append("workflow-1", row(next, 1))).unwrap();
                next += 1;
            })
        });
    }
    // The floor both sit on, in the same run: a frame's bytes written into
    // a preallocated file and an fdatasync, per append, from this thread.
    let mut raw = RawFile::new(&scratch("w1-raw"), if smoke() { 1 << 20 } else { 64 << 20 });
    let frame = vec![0xA5u8; RAW_FRAME_BYTES];
    group.bench_function("raw_preallocated_fdatasync", |b| b.iter(|| raw.append(&frame)));
    group.finish();
}

fn w2_concurrent_workflows(c: &mut Criterion) {
    let mut group = c.benchmark_group("cano_w2_concurrent_workflows");
    let writers = if smoke() { 4 } else { WRITERS };
    group.throughput(Throughput::Elements(writers as u64));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(6));
    let rt = runtime();
    for (name, store) in stores("w2") {
        let mut round = 0u64;
        group.bench_with_input(BenchmarkId::new(name, writers), &writers, |b, &writers| {
            b.iter(|| {
                // One round: every workflow appends its next row, all at once.
                rt.block_on(async {
                    let mut tasks = Vec::with_capacity(writers);
                    for workflow in 0..writers as u64 {
                        let store = store.clone();
                        let sequence = round;
                        tasks.push(tokio::spawn(async move {
                            store.append(&format!("workflow-{workflow}"), row(sequence, workflow)).await
                        }));
                    }
                    for task in tasks {
                        task.await.unwrap().unwrap();
                    }
                });
                round += 1;
            })
        });
    }
    group.finish();
}

fn w3_load_a_run(c: &mut Criterion) {
    let mut group = c.benchmark_group("cano_w3_load_a_run");
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    let rt = runtime();
    let runs = if smoke() { 4 } else { 1000 };
    for (name, store) in stores("w3") {
        rt.block_on(fill_runs(store.as_ref(), runs));
        let mut next = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                let rows = rt.block_on(store.load_run(&format!("run-{}", next % runs))).unwrap();
                assert_eq!(rows.len(), RUN_ROWS as usize);
                next += 1;
                rows
            })
        });
    }
    group.finish();
}

criterion_group!(benches, w1_one_workflow_appending, w2_concurrent_workflows, w3_load_a_run);
criterion_main!(benches);
