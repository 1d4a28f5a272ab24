//! Issue 10's benches for the cano adapter: W1 (one workflow appending
//! durable rows), W2 (64 workflows appending concurrently) and W3 (load a
//! 20-row run decoded into `CheckpointRow`s), through `AnnalsCheckpointStore`
//! and through cano's own `RedbCheckpointStore`, in the same run.
//!
//! `ANNALS_BENCH_SMOKE=1 cargo bench -p annals-cano -- --test` runs each
//! once on tiny data (what CI does).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use annals_cano::AnnalsCheckpointStore;
use cano::recovery::{CheckpointRow, CheckpointStore, RedbCheckpointStore};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const BLOB_BYTES: usize = 200;
const RUN_ROWS: u64 = 20;
const WRITERS: usize = 64;

fn smoke() -> bool {
    std::env::var_os("ANNALS_BENCH_SMOKE").is_some()
}

fn scratch(name: &str) -> PathBuf {
    let root = std::env::var_os("ANNALS_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let path = root.join(format!("annals-cano-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    path
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// cano's row: a ~12-byte state, an ~8-byte task id and a 200-byte blob.
fn row(sequence: u64, salt: u64) -> CheckpointRow {
    let mut state = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ sequence;
    let blob: Vec<u8> = (0..BLOB_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut row =
        CheckpointRow::new(sequence, format!("step-{:07}", sequence % 10_000_000), format!("task-{:03}", salt % 1000));
    row.output_blob = Some(blob);
    row
}

/// The systems compared: the Annals adapter and cano's redb store.
fn stores(name: &str) -> Vec<(&'static str, Arc<dyn CheckpointStore>)> {
    let annals = AnnalsCheckpointStore::open(scratch(&format!("{name}-annals"))).unwrap();
    let redb = RedbCheckpointStore::new(scratch(&format!("{name}-redb")).join("cano.redb")).unwrap();
    vec![("annals_cano", Arc::new(annals)), ("cano_redb_store", Arc::new(redb))]
}

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
        rt.block_on(async {
            for workflow in 0..runs {
                for sequence in 0..RUN_ROWS {
                    store.append(&format!("run-{workflow}"), row(sequence, workflow)).await.unwrap();
                }
            }
        });
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
