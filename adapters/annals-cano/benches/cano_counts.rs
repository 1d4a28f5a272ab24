//! A driver for counting what one operation of the cano bench costs, with
//! tools that count rather than time (callgrind's instructions, strace's
//! syscalls), which stay fair on a shared machine where timings do not.
//!
//! ```text
//! cargo bench -p annals-cano --bench cano_counts --no-run   # prints the binary
//! cano_counts fill DIR                  # 1,000 runs of 20 rows in each store under DIR
//! cano_counts w3 annals|redb DIR N      # reopen the filled store, then N loads of a run
//! cano_counts w3-verified annals|redb DIR N  # reopen, load every run once (not counted), then N loads
//! cano_counts w3-written annals|redb DIR N  # fill a fresh store, then N loads (the bench's case)
//! cano_counts w1 annals|redb|raw DIR N  # N durable appends to one workflow (fresh DIR)
//! cano_counts w1-interleaved DIR N      # N rounds of one append on each, timed apiece
//! cano_counts w2 annals|redb DIR N      # N rounds of 64 workflows appending at once
//! ```
//!
//! A load's cost: `valgrind --tool=callgrind --toggle-collect='cano_counts::load_runs'`
//! counts only the loads; divide by N. An append's: the difference between
//! a run with N appends and one with none, divided by N (opening the store
//! and the runtime cancel out). `raw` is the floor W1 sits on: a write of an Annals frame's bytes
//! into a preallocated file and an fdatasync, per append. Without
//! arguments (as `cargo bench` runs it) it runs each mode once on tiny data.

#[allow(dead_code)] // the criterion bench uses the rest
mod common;

use std::path::{Path, PathBuf};

use common::{RAW_FRAME_BYTES, RUN_ROWS, RawFile, annals_store, fill_runs, redb_store, row, runtime};

/// Runs of [`RUN_ROWS`] rows that `fill` writes, as the W3 bench does.
const RUNS: u64 = 1000;
/// Workflows appending at once in W2, as in the criterion bench.
const WRITERS: u64 = 64;
/// Bytes the raw loop preallocates, with synced zeros, before it writes.
const RAW_PREALLOCATED_BYTES: u64 = 64 << 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| !arg.starts_with("--")).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["fill", dir] => fill(Path::new(dir), RUNS),
        ["w3", system, dir, count] => w3(system, Path::new(dir), count.parse().expect("a count"), RUNS),
        ["w3-verified", system, dir, count] => {
            w3_verified(system, Path::new(dir), count.parse().expect("a count"), RUNS)
        }
        ["w3-written", system, dir, count] => w3_written(system, Path::new(dir), count.parse().expect("a count"), RUNS),
        ["w1", system, dir, count] => w1(system, Path::new(dir), count.parse().expect("a count")),
        ["w2", system, dir, count] => w2(system, Path::new(dir), count.parse().expect("a count")),
        ["w1-interleaved", dir, count] => w1_interleaved(Path::new(dir), count.parse().expect("a count")),
        [] => smoke(),
        _ => panic!(
            "usage: cano_counts fill DIR | w3[-verified|-written] annals|redb DIR N | w1 annals|redb|raw DIR N | w1-interleaved DIR N | w2 annals|redb DIR N"
        ),
    }
}

/// Each mode once, on tiny data: what `cargo bench` runs.
fn smoke() {
    let dir = common::scratch("counts");
    fill(&dir, 2);
    for system in ["annals", "redb"] {
        w3(system, &dir, 2, 2);
        w3_verified(system, &dir, 2, 2);
        w3_written(system, &dir.join(format!("w3-{system}")), 2, 2);
    }
    for system in ["annals", "redb", "raw"] {
        w1(system, &dir.join(format!("w1-{system}")), 2);
    }
    w1_interleaved(&dir.join("w1-interleaved"), 2);
    for system in ["annals", "redb"] {
        w2(system, &dir.join(format!("w2-{system}")), 2);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn store_dir(dir: &Path, system: &str) -> PathBuf {
    let path = dir.join(system);
    std::fs::create_dir_all(&path).unwrap();
    path
}

fn open(system: &str, dir: &Path) -> std::sync::Arc<dyn cano::recovery::CheckpointStore> {
    match system {
        "annals" => annals_store(&store_dir(dir, system)),
        "redb" => redb_store(&store_dir(dir, system)),
        _ => panic!("unknown system {system:?}: annals or redb"),
    }
}

fn fill(dir: &Path, runs: u64) {
    let rt = runtime();
    for system in ["annals", "redb"] {
        let store = open(system, dir);
        rt.block_on(fill_runs(store.as_ref(), runs));
    }
}

fn w3(system: &str, dir: &Path, count: u64, runs: u64) {
    load_runs(&runtime(), &open(system, dir), count, runs);
}

/// W3 on a reopened log once every run was read: the loads that follow
/// find each record's checksum already checked in this process.
fn w3_verified(system: &str, dir: &Path, count: u64, runs: u64) {
    let rt = runtime();
    let store = open(system, dir);
    first_loads(&rt, &store, runs);
    load_runs(&rt, &store, count, runs);
}

/// One load of every run, outside what callgrind counts.
#[inline(never)]
fn first_loads(rt: &tokio::runtime::Runtime, store: &std::sync::Arc<dyn cano::recovery::CheckpointStore>, runs: u64) {
    for run in 0..runs {
        let rows = rt.block_on(store.load_run(&format!("run-{run}"))).unwrap();
        assert_eq!(rows.len(), RUN_ROWS as usize);
    }
}

/// W3 as the criterion bench runs it: the loads read what this process
/// wrote (so the log checked its frames as it wrote them, and a reopened
/// log checks each frame as it first reads it).
fn w3_written(system: &str, dir: &Path, count: u64, runs: u64) {
    let store = open(system, dir);
    let rt = runtime();
    rt.block_on(fill_runs(store.as_ref(), runs));
    load_runs(&rt, &store, count, runs);
}

/// `count` loads of the runs in turn: the only function that callgrind's
/// `--toggle-collect='cano_counts::load_runs'` counts.
#[inline(never)]
fn load_runs(
    rt: &tokio::runtime::Runtime,
    store: &std::sync::Arc<dyn cano::recovery::CheckpointStore>,
    count: u64,
    runs: u64,
) {
    for next in 0..count {
        let rows = rt.block_on(store.load_run(&format!("run-{}", next % runs))).unwrap();
        assert_eq!(rows.len(), RUN_ROWS as usize);
    }
}

fn w1(system: &str, dir: &Path, count: u64) {
    if system == "raw" {
        let preallocated_bytes = if count <= 2 { 1 << 20 } else { RAW_PREALLOCATED_BYTES };
        return raw(&store_dir(dir, system), count, preallocated_bytes);
    }
    let rt = runtime();
    let store = open(system, dir);
    for sequence in 0..count {
        rt.block_on(store.append("workflow-1", row(sequence, 1))).unwrap();
    }
}

/// W2 as the criterion bench runs it: each round, 64 spawned tasks append
/// the next row of their own workflow, and the round ends when all are
/// durable. strace counts the fdatasyncs a round costs (group commit: a few
/// for the 64).
fn w2(system: &str, dir: &Path, rounds: u64) {
    let rt = runtime();
    let store = open(system, dir);
    let mut times = Vec::with_capacity(rounds as usize);
    let mut last_calls = Vec::with_capacity(rounds as usize);
    for round in 0..rounds {
        let started = std::time::Instant::now();
        let last_call = rt.block_on(async {
            let tasks: Vec<_> = (0..WRITERS)
                .map(|workflow| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let (workflow_id, row) = (format!("workflow-{workflow}"), row(round, workflow));
                        let called = std::time::Instant::now();
                        store.append(&workflow_id, row).await.map(|()| called)
                    })
                })
                .collect();
            let mut last_call = started;
            for task in tasks {
                last_call = last_call.max(task.await.unwrap().unwrap());
            }
            last_call
        });
        times.push(started.elapsed());
        last_calls.push(last_call - started);
    }
    print_rounds(system, &mut times);
    // How long the round's appends take to reach the store: a group commit
    // that takes less than this leaves the rest to a second fdatasync.
    print_rounds(&format!("{system}, the last task's call to append"), &mut last_calls);
}

/// Prints the median and mean of W2's rounds (the first tenth left out as
/// warm-up): a timing to set beside the counts, not a decision.
fn print_rounds(system: &str, times: &mut [std::time::Duration]) {
    let warm_up = times.len() / 10;
    let times = &mut times[warm_up..];
    if times.is_empty() {
        return;
    }
    times.sort();
    let micros = |d: std::time::Duration| d.as_secs_f64() * 1e6;
    let mean = times.iter().map(|&d| micros(d)).sum::<f64>() / times.len() as f64;
    println!(
        "{system}, per round of {WRITERS}: median {:.1} µs, mean {mean:.1} µs over {} rounds",
        micros(times[times.len() / 2]),
        times.len()
    );
}

/// The floor: a frame's bytes written into a preallocated file, then an
/// fdatasync, per append.
fn raw(dir: &Path, count: u64, preallocated_bytes: u64) {
    let mut file = RawFile::new(dir, preallocated_bytes);
    let frame = vec![0xA5u8; RAW_FRAME_BYTES];
    for _ in 0..count {
        file.append(&frame);
    }
}

/// W1 on a busy machine: per round, one durable append to each store from
/// `block_on` (as `#[tokio::main]` runs `main`), one from a spawned task, and
/// one raw write+fdatasync, in turn (the order rotating each round), each
/// timed alone, so that the disk's queue, which drifts over seconds, weighs
/// on all alike. Prints each one's median and mean, and the ratios of the
/// medians.
fn w1_interleaved(dir: &Path, rounds: u64) {
    let rt = runtime();
    let annals = open("annals", dir);
    let redb = open("redb", dir);
    let mut raw = RawFile::new(&store_dir(dir, "raw"), if rounds <= 2 { 1 << 20 } else { RAW_PREALLOCATED_BYTES });
    let frame = vec![0xA5u8; RAW_FRAME_BYTES];
    let in_task = |store: &std::sync::Arc<dyn cano::recovery::CheckpointStore>, workflow: &'static str, sequence| {
        let store = store.clone();
        rt.block_on(async move { tokio::spawn(async move { store.append(workflow, row(sequence, 1)).await }).await })
            .unwrap()
            .unwrap()
    };
    let names = [
        "annals_cano",
        "cano_redb_store",
        "annals_cano_from_a_task",
        "cano_redb_store_from_a_task",
        "raw_preallocated_fdatasync",
    ];
    let warm_up = rounds / 10;
    let mut times = vec![Vec::new(); names.len()];
    for round in 0..warm_up + rounds {
        for turn in 0..names.len() {
            let system = (round as usize + turn) % names.len();
            let started = std::time::Instant::now();
            match system {
                0 => rt.block_on(annals.append("workflow-1", row(round, 1))).unwrap(),
                1 => rt.block_on(redb.append("workflow-1", row(round, 1))).unwrap(),
                2 => in_task(&annals, "workflow-2", round),
                3 => in_task(&redb, "workflow-2", round),
                _ => raw.append(&frame),
            }
            if round >= warm_up {
                times[system].push(started.elapsed());
            }
        }
    }
    let mut medians = vec![0f64; names.len()];
    for (system, times) in times.iter_mut().enumerate() {
        times.sort();
        let micros = |d: std::time::Duration| d.as_secs_f64() * 1e6;
        medians[system] = micros(times[times.len() / 2]);
        let mean = times.iter().map(|&d| micros(d)).sum::<f64>() / times.len() as f64;
        println!("{}: median {:.1} µs, mean {mean:.1} µs over {} appends", names[system], medians[system], times.len());
    }
    println!(
        "from block_on: redb / annals {:.2}x; from a task: redb / annals {:.2}x; redb / raw {:.2}x; annals / raw {:.2}x (medians)",
        medians[1] / medians[0],
        medians[3] / medians[2],
        medians[1] / medians[4],
        medians[0] / medians[4]
    );
}
