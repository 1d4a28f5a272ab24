//! Issue 10's bench for the blazen adapter: `save`, `load` and `list` over
//! 1,000 runs, through `AnnalsCheckpointStore` and through blazen-persist's
//! own `RedbCheckpointStore`, in the same run. Each save is durable in both
//! (redb commits with its default, immediate durability).
//!
//! `ANNALS_BENCH_SMOKE=1 cargo bench -p annals-blazen -- --test` runs each
//! once on 10 runs (what CI does).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use annals_blazen::AnnalsCheckpointStore;
use blazen_persist::{CheckpointStore, RedbCheckpointStore, SerializedEvent, WorkflowCheckpoint};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use uuid::Uuid;

/// Runs in each store.
const RUNS: usize = 1000;
/// Runs in each store on a smoke run.
const SMOKE_RUNS: usize = 10;

fn runs() -> usize {
    if std::env::var_os("ANNALS_BENCH_SMOKE").is_some() { SMOKE_RUNS } else { RUNS }
}

fn scratch(name: &str) -> PathBuf {
    let root = std::env::var_os("ANNALS_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let path = root.join(format!("annals-blazen-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    path
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A checkpoint as a blazen pipeline step leaves one: a few state values
/// (about 300 bytes of JSON), one pending event and a little metadata.
fn checkpoint(run_id: Uuid, step: u64) -> WorkflowCheckpoint {
    WorkflowCheckpoint {
        workflow_name: "ingest-documents".to_owned(),
        run_id,
        timestamp: chrono::Utc::now(),
        state: HashMap::from([
            ("step".to_owned(), json!(step)),
            ("source".to_owned(), json!(format!("s3://bucket/batch-{step:06}/input.jsonl"))),
            ("documents".to_owned(), json!((0..12).map(|i| step * 100 + i).collect::<Vec<_>>())),
            ("summary".to_owned(), json!({ "accepted": step % 17, "rejected": step % 3, "last_error": null })),
        ]),
        pending_events: vec![SerializedEvent {
            event_type: "ingest::ChunkReady".to_owned(),
            data: json!({ "chunk": step, "bytes": 65_536, "checksum": "9f86d081884c7d65" }),
        }],
        metadata: HashMap::from([("attempt".to_owned(), json!(1)), ("worker".to_owned(), json!("w-3"))]),
    }
}

/// A system compared, by name.
type Named = (&'static str, Arc<dyn CheckpointStore>);

/// The systems compared, each holding the same `runs` checkpoints, and the
/// run ids.
fn stores(name: &str, runs: usize) -> (Vec<Named>, Vec<Uuid>) {
    let annals = AnnalsCheckpointStore::open(scratch(&format!("{name}-annals"))).unwrap();
    let redb = RedbCheckpointStore::new(scratch(&format!("{name}-redb")).join("blazen.redb")).unwrap();
    let stores: Vec<Named> = vec![("annals_blazen", Arc::new(annals)), ("blazen_redb_store", Arc::new(redb))];
    let run_ids: Vec<Uuid> = (0..runs as u128).map(|i| Uuid::from_u128(0x5EED_0000 + i)).collect();
    let rt = runtime();
    for (_, store) in &stores {
        rt.block_on(async {
            for (step, run_id) in run_ids.iter().enumerate() {
                store.save(&checkpoint(*run_id, step as u64)).await.unwrap();
            }
        });
    }
    (stores, run_ids)
}

fn save(c: &mut Criterion) {
    let mut group = c.benchmark_group("blazen_save_one_of_1000_runs");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    let rt = runtime();
    let (stores, run_ids) = stores("save", runs());
    for (name, store) in stores {
        let mut step = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                // Overwrites a run's checkpoint, as each step of a run does.
                let run_id = run_ids[step as usize % run_ids.len()];
                rt.block_on(store.save(&checkpoint(run_id, step))).unwrap();
                step += 1;
            })
        });
    }
    group.finish();
}

fn load(c: &mut Criterion) {
    let mut group = c.benchmark_group("blazen_load_one_of_1000_runs");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    let rt = runtime();
    let (stores, run_ids) = stores("load", runs());
    for (name, store) in stores {
        let mut next = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                let loaded = rt.block_on(store.load(&run_ids[next % run_ids.len()])).unwrap();
                next += 1;
                loaded.expect("every run was saved")
            })
        });
    }
    group.finish();
}

fn list(c: &mut Criterion) {
    let mut group = c.benchmark_group("blazen_list_1000_runs");
    let runs = runs();
    group.throughput(Throughput::Elements(runs as u64));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    let rt = runtime();
    let (stores, _) = stores("list", runs);
    for (name, store) in stores {
        group.bench_function(name, |b| {
            b.iter(|| {
                let listed = rt.block_on(store.list()).unwrap();
                assert_eq!(listed.len(), runs);
                listed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, save, load, list);
criterion_main!(benches);
