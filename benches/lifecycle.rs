//! The storage lifecycle of issue 11, in one criterion run beside redb and
//! SQLite (`benches/README.md`, "Storage lifecycle"):
//!
//! - `lifecycle_churn`: 1,000 workflows append steps and snapshot-and-prune
//!   every 20 steps, with background compaction off and on; appends per
//!   second, their latency percentiles, and the disk at quiescence against
//!   the live bytes.
//! - `lifecycle_open`: open after a clean close and after a crash (a copy of
//!   the directory taken while the log was open), 100k rows and about 1 GiB,
//!   Annals' `Log` and `LogReader` against redb on the same rows. Annals
//!   loads the index image (`annals.index`): written at the clean close,
//!   and in the crashed copy the image of the sealed segments, as the
//!   background image writer leaves it. `ANNALS_BENCH_OPEN_SIZES=100k_rows`
//!   (a comma-separated list of labels) builds and measures only those.
//! - `lifecycle_close`: a clean close after one durable append to a log of
//!   100k rows and of about 1 GiB (the image it writes), against redb's
//!   commit of one row on the same rows. `ANNALS_BENCH_CLOSE_SIZES` as
//!   `ANNALS_BENCH_OPEN_SIZES`.
//! - `lifecycle_compaction`: `Log::compact()` on a mostly dead log, in bytes
//!   of input per second.
//! - `lifecycle_small_log`: create a store in a fresh directory and
//!   acknowledge its first durable write, Annals, SQLite and redb; and the
//!   disk each takes once closed.
//!
//! What criterion does not keep (percentiles, disk, the machine's load) goes
//! to `target/criterion/annals-lifecycle-<group>.json` (`-smoke.json` in a
//! smoke run); `python3 benches/report.py` turns both into the README's
//! tables and ratios.
//!
//! `ANNALS_BENCH_SMOKE=1 cargo bench --bench lifecycle -- --test` runs every
//! bench once on tiny data (what CI does).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals::frame::{FRAME_HEADER_BYTES, OP_HEADER_BYTES};
use annals::segment::{FIRST_SEGMENT_BYTES, parse_compacted_file_name};
use annals::stats::LogStats;
use annals::{CompactionOptions, Durability, Expectation, Log, LogReader, Options, SegmentPreparation, StreamSeq};
use common::{
    Row, annals_first_run, concurrent, copy_dir, disk_use, fill_annals, fill_redb, redb_append, redb_first_run,
    runtime, scratch, settle, smoke, sqlite_append, sqlite_db, timed_each, wanted, workflow,
};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use serde::Serialize;

/// Steps a workflow appends between two snapshot-and-prunes.
const SNAPSHOT_EVERY: u64 = 20;
/// Segments of the churn's log: small enough that the allowance of three
/// segments in the disk bound (2 × live + 3 segments) does not hide the
/// live term, as the default 64 MiB would.
const CHURN_SEGMENT_BYTES: u64 = 4 << 20;
/// How long the churn waits for background compaction to settle.
const QUIESCENCE_WAIT_MAX: Duration = Duration::from_secs(180);

fn workflows() -> u64 {
    if smoke() { 20 } else { common::WORKFLOWS }
}

/// The 1-, 5- and 15-minute load averages, as `uptime` shows them.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Writes what a group measured beside criterion's results, for the report.
/// A smoke run writes under another name, so that it never replaces the
/// figures of a full run that criterion's results go with.
fn write_figures(group: &str, figures: &impl Serialize) {
    let dir = common::target_dir().join("criterion");
    let _ = std::fs::create_dir_all(&dir);
    let text = serde_json::to_string_pretty(figures).unwrap();
    let name =
        if smoke() { format!("annals-lifecycle-{group}-smoke.json") } else { format!("annals-lifecycle-{group}.json") };
    std::fs::write(dir.join(name), text + "\n").unwrap();
}

/// Bytes of one operation as `annals::stats` counts live bytes: a frame
/// header, an operation header, the stream id and the payload.
fn record_bytes(stream: usize, payload: usize) -> u64 {
    (FRAME_HEADER_BYTES + OP_HEADER_BYTES + stream + payload) as u64
}

// ---------------------------------------------------------------- churn

/// The churn: every workflow is a task that appends its next step, and
/// after every `SNAPSHOT_EVERY` steps (staggered across workflows) writes a
/// snapshot of its state through that step and prunes what it covers.
struct Churn {
    log: Log,
    /// The next step of each workflow.
    next: Vec<AtomicU64>,
    /// Microseconds each append waited.
    append_us: Mutex<Vec<u32>>,
    /// Microseconds each snapshot-and-prune waited.
    snapshot_us: Mutex<Vec<u32>>,
    /// Bytes of what was written, counted as live bytes are.
    record_bytes: AtomicU64,
}

impl Churn {
    fn new(log: Log, workflows: u64) -> Arc<Churn> {
        Arc::new(Churn {
            log,
            next: (0..workflows).map(|_| AtomicU64::new(0)).collect(),
            append_us: Mutex::new(Vec::new()),
            snapshot_us: Mutex::new(Vec::new()),
            record_bytes: AtomicU64::new(0),
        })
    }

    /// Every workflow makes `rounds` steps, concurrently; the time it took.
    fn run(self: &Arc<Churn>, rt: &tokio::runtime::Runtime, rounds: u64) -> Duration {
        let churn = self.clone();
        concurrent(rt, self.next.len() as u64, rounds, move |w, _| churn.clone().step(w))
    }

    async fn step(self: Arc<Churn>, w: u64) {
        let id = workflow(w);
        let seq = self.next[w as usize].fetch_add(1, Ordering::Relaxed);
        let row = Row::new(seq, w).encode();
        let mut written = record_bytes(id.len(), row.len());
        let started = Instant::now();
        self.log.append(&id, Expectation::Exact(StreamSeq(seq)), row).await.unwrap();
        let waited = started.elapsed().as_micros() as u32;
        self.append_us.lock().unwrap().push(waited);
        if (seq + w) % SNAPSHOT_EVERY == SNAPSHOT_EVERY - 1 {
            let state = Row::new(seq, !w).encode();
            // The snapshot, and the prune beside it in the same frame.
            written += record_bytes(id.len(), state.len()) + (OP_HEADER_BYTES + id.len()) as u64;
            let started = Instant::now();
            self.log.snapshot_and_prune(&id, StreamSeq(seq), state).await.unwrap();
            let waited = started.elapsed().as_micros() as u32;
            self.snapshot_us.lock().unwrap().push(waited);
        }
        self.record_bytes.fetch_add(written, Ordering::Relaxed);
    }
}

/// Latency percentiles of one kind of write, in microseconds.
#[derive(Serialize, Default)]
struct Latencies {
    count: usize,
    p50_us: u32,
    p99_us: u32,
    p999_us: u32,
    max_us: u32,
}

impl Latencies {
    fn of(samples: &Mutex<Vec<u32>>) -> Latencies {
        let mut sorted = samples.lock().unwrap().clone();
        sorted.sort_unstable();
        let Some(&max_us) = sorted.last() else { return Latencies::default() };
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        Latencies { count: sorted.len(), p50_us: at(0.5), p99_us: at(0.99), p999_us: at(0.999), max_us }
    }
}

/// The disk a log takes, and what of it is live.
#[derive(Serialize)]
struct DiskFigures {
    /// The lengths of every file in the directory (segments, spare, state).
    file_bytes: u64,
    /// The blocks the file system allocated for them.
    allocated_bytes: u64,
    /// Live bytes, as `LogReader::stats` counts them.
    live_bytes: u64,
    /// Written bytes still on disk, live or not.
    written_bytes: u64,
    segments: usize,
    /// The compaction generation the log is at (0: never compacted).
    compaction_generation: u64,
}

impl DiskFigures {
    fn of(dir: &Path, stats: &LogStats) -> DiskFigures {
        let (file_bytes, allocated_bytes) = disk_use(dir);
        let compaction_generation = stats
            .segments
            .iter()
            .filter_map(|segment| parse_compacted_file_name(&segment.file).map(|(_, generation)| generation))
            .max()
            .unwrap_or(0);
        DiskFigures {
            file_bytes,
            allocated_bytes,
            live_bytes: stats.total.live_bytes,
            written_bytes: stats.total.written_bytes,
            segments: stats.segments.len(),
            compaction_generation,
        }
    }
}

/// What `Log::compact()` on demand did to the log churned without
/// background compaction.
#[derive(Serialize)]
struct OnDemand {
    millis: u64,
    input_bytes: u64,
    output_bytes: u64,
    after: DiskFigures,
}

#[derive(Serialize)]
struct ChurnFigures {
    background_compaction: bool,
    workflows: u64,
    snapshot_every: u64,
    segment_bytes: u64,
    appends: Latencies,
    snapshot_and_prunes: Latencies,
    /// Bytes of every record written over the run, counted as live bytes are.
    record_bytes_written: u64,
    /// At quiescence: background compaction has nothing left to do.
    quiescent: DiskFigures,
    /// How long compaction took to settle once appends stopped.
    quiescence_wait_ms: u64,
    /// Whether it settled within `QUIESCENCE_WAIT_MAX`.
    settled: bool,
    /// 2 × live bytes + 3 segments: the bound on the disk at quiescence.
    bound_bytes: u64,
    on_demand: Option<OnDemand>,
    load_before: String,
    load_after: String,
    smoke: bool,
}

/// Whether background compaction would still compact the log `stats`
/// describes: its own trigger (`CompactionOptions::dead_ratio` of the
/// sealed segments' written bytes dead, and at least a first segment's
/// worth), worked out from what a reader sees.
fn compaction_due(stats: &LogStats, options: &Options) -> bool {
    let sealed = &stats.segments[..stats.segments.len().saturating_sub(1)];
    let written: u64 = sealed.iter().map(|segment| segment.space.written_bytes).sum();
    let live: u64 = sealed.iter().map(|segment| segment.space.live_bytes).sum();
    let dead = written.saturating_sub(live);
    dead as f64 >= options.compaction.dead_ratio * written as f64
        && dead >= options.segment_bytes.min(FIRST_SEGMENT_BYTES)
}

/// Waits until background compaction has nothing left to do (or
/// `QUIESCENCE_WAIT_MAX` passed): the log's statistics then, whether it
/// settled, and how long it took.
fn quiescence(dir: &Path, options: &Options) -> (LogStats, bool, Duration) {
    let started = Instant::now();
    let wait_max = if smoke() { Duration::from_secs(2) } else { QUIESCENCE_WAIT_MAX };
    loop {
        // A reader beside the writer; a file compaction removes while the
        // reader lists them fails the open, which is tried again.
        if let Ok(stats) = LogReader::open(dir).and_then(|reader| reader.stats()) {
            let settled = !compaction_due(&stats, options) && !has_compaction_in_flight(dir);
            if settled || started.elapsed() > wait_max {
                return (stats, settled, started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn has_compaction_in_flight(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| entry.unwrap().file_name().to_string_lossy().ends_with(".compacting"))
}

fn churn_options(background: bool) -> Options {
    Options {
        segment_bytes: CHURN_SEGMENT_BYTES,
        record_bytes_max: 1 << 20,
        compaction: CompactionOptions { background, ..CompactionOptions::default() },
        ..Options::default()
    }
}

fn lifecycle_churn(c: &mut Criterion) {
    if !wanted("lifecycle_churn") {
        return;
    }
    let mut group = c.benchmark_group("lifecycle_churn");
    group.throughput(Throughput::Elements(workflows()));
    group.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(10));
    let rt = runtime();
    let mut figures = Vec::new();
    for background in [false, true] {
        let name = if background { "compaction_on" } else { "compaction_off" };
        let dir = scratch(&format!("lifecycle-churn-{name}"));
        let options = churn_options(background);
        let churn = Churn::new(Log::open(&dir, options.clone()).unwrap(), workflows());
        settle();
        let load_before = load_average();
        group.bench_function(name, |b| b.iter_custom(|rounds| churn.run(&rt, rounds)));
        let load_after = load_average();
        let (stats, settled, waited) = if background {
            quiescence(&dir, &options)
        } else {
            (LogReader::open(&dir).unwrap().stats().unwrap(), true, Duration::ZERO)
        };
        let quiescent = DiskFigures::of(&dir, &stats);
        let on_demand = (!background).then(|| {
            let started = Instant::now();
            let report = churn.log.compact().unwrap();
            let millis = started.elapsed().as_millis() as u64;
            let stats = LogReader::open(&dir).unwrap().stats().unwrap();
            OnDemand {
                millis,
                input_bytes: report.input_bytes,
                output_bytes: report.output_bytes,
                after: DiskFigures::of(&dir, &stats),
            }
        });
        churn.log.close().wait().unwrap();
        figures.push(ChurnFigures {
            background_compaction: background,
            workflows: workflows(),
            snapshot_every: SNAPSHOT_EVERY,
            segment_bytes: CHURN_SEGMENT_BYTES,
            appends: Latencies::of(&churn.append_us),
            snapshot_and_prunes: Latencies::of(&churn.snapshot_us),
            record_bytes_written: churn.record_bytes.load(Ordering::Relaxed),
            bound_bytes: 2 * quiescent.live_bytes + 3 * CHURN_SEGMENT_BYTES,
            quiescent,
            quiescence_wait_ms: waited.as_millis() as u64,
            settled,
            on_demand,
            load_before,
            load_after,
            smoke: smoke(),
        });
    }
    group.finish();
    write_figures("churn", &figures);
}

// ---------------------------------------------------------------- open

#[derive(Serialize)]
struct OpenFigures {
    label: String,
    rows: u64,
    annals_log_bytes: u64,
    redb_file_bytes: u64,
    load_before: String,
    load_after: String,
    smoke: bool,
}

/// A log and a redb database of `rows` rows, each closed cleanly, and a copy
/// of each taken while it was still open: what a crash of the process
/// would have left.
struct OpenDataSet {
    annals: PathBuf,
    annals_crashed: PathBuf,
    redb: PathBuf,
    redb_crashed: PathBuf,
}

impl OpenDataSet {
    fn build(label: &str, rows: u64, rt: &tokio::runtime::Runtime) -> OpenDataSet {
        let annals = scratch(&format!("lifecycle-open-annals-{label}"));
        let annals_crashed = scratch(&format!("lifecycle-open-annals-{label}-crashed"));
        let log = fill_annals(&annals, rows, rt);
        // What the background image writer leaves after the last rollover:
        // the crashed copy has the image of its sealed segments.
        let _ = log.write_index_image();
        copy_dir(&annals, &annals_crashed);
        log.close().wait().unwrap();
        drop(log);
        let redb = scratch(&format!("lifecycle-open-redb-{label}"));
        let redb_crashed = scratch(&format!("lifecycle-open-redb-{label}-crashed"));
        let db = fill_redb(&redb, rows);
        copy_dir(&redb, &redb_crashed);
        drop(db);
        settle();
        OpenDataSet { annals, annals_crashed, redb, redb_crashed }
    }
}

/// A group of ten flat samples over three seconds: each iteration opens or
/// closes a store.
fn few_long_samples<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    group.sampling_mode(SamplingMode::Flat);
    group
}

/// The data sets of the open and close groups, `(label, rows)`: 100k rows
/// and about 1 GiB (1k rows in a smoke run), less those the variable `env`
/// (a comma-separated list of labels), if set, leaves out.
fn data_sizes(env: &str) -> Vec<(&'static str, u64)> {
    let sizes: &[(&str, u64)] =
        if smoke() { &[("1k_rows", 1000)] } else { &[("100k_rows", 100_000), ("1gib", 4_000_000)] };
    let only = std::env::var(env).ok();
    sizes
        .iter()
        .copied()
        .filter(|(label, _)| only.as_ref().is_none_or(|only| only.split(',').any(|l| l == *label)))
        .collect()
}

fn lifecycle_open(c: &mut Criterion) {
    if !wanted("lifecycle_open") {
        return;
    }
    let mut group = few_long_samples(c, "lifecycle_open");
    let rt = runtime();
    let mut figures = Vec::new();
    for (label, rows) in data_sizes("ANNALS_BENCH_OPEN_SIZES") {
        let data = OpenDataSet::build(label, rows, &rt);
        let load_before = load_average();
        // A crashed open changes what it opens (it recovers, and closes
        // cleanly): each gets a fresh copy, made and synced untimed.
        let work = scratch(&format!("lifecycle-open-work-{label}"));
        let fresh = |from: &Path| {
            let (from, work) = (from.to_owned(), work.clone());
            move || copy_dir(&from, &work)
        };
        let read_only = |dir: &Path| {
            let reader = LogReader::open(dir).unwrap();
            let first = reader.read_stream(workflow(1)).unwrap();
            (reader, first)
        };
        group.bench_function(format!("annals_log_{label}_clean"), |b| {
            b.iter_custom(|iters| timed_each(iters, || (), |()| annals_first_run(&data.annals)))
        });
        group.bench_function(format!("annals_reader_{label}_clean"), |b| {
            b.iter_custom(|iters| timed_each(iters, || (), |()| read_only(&data.annals)))
        });
        group.bench_function(format!("redb_{label}_clean"), |b| {
            b.iter_custom(|iters| timed_each(iters, || (), |()| redb_first_run(&data.redb.join("db.redb"))))
        });
        // The open alone, without the first read: what the open itself
        // costs, apart from the page faults of a first read of rows that a
        // log scatters over its whole length (redb keeps them together).
        group.bench_function(format!("annals_log_{label}_clean_open_alone"), |b| {
            b.iter_custom(|iters| timed_each(iters, || (), |()| Log::open(&data.annals, Options::default()).unwrap()))
        });
        group.bench_function(format!("redb_{label}_clean_open_alone"), |b| {
            b.iter_custom(|iters| {
                timed_each(iters, || (), |()| redb::Database::open(data.redb.join("db.redb")).unwrap())
            })
        });
        group.bench_function(format!("annals_log_{label}_crash"), |b| {
            b.iter_custom(|iters| timed_each(iters, fresh(&data.annals_crashed), |()| annals_first_run(&work)))
        });
        group.bench_function(format!("annals_reader_{label}_crash"), |b| {
            b.iter_custom(|iters| timed_each(iters, || (), |()| read_only(&data.annals_crashed)))
        });
        group.bench_function(format!("redb_{label}_crash"), |b| {
            b.iter_custom(|iters| {
                timed_each(iters, fresh(&data.redb_crashed), |()| redb_first_run(&work.join("db.redb")))
            })
        });
        figures.push(OpenFigures {
            label: label.to_owned(),
            rows,
            annals_log_bytes: disk_use(&data.annals).0,
            redb_file_bytes: disk_use(&data.redb).0,
            load_before,
            load_after: load_average(),
            smoke: smoke(),
        });
    }
    group.finish();
    write_figures("open", &figures);
}

// ---------------------------------------------------------------- close

/// The time of a close after one append (issue 11: the image written at a
/// clean close), against redb's commit of one row on the same rows.
fn lifecycle_close(c: &mut Criterion) {
    if !wanted("lifecycle_close") {
        return;
    }
    let mut group = few_long_samples(c, "lifecycle_close");
    let rt = runtime();
    for (label, rows) in data_sizes("ANNALS_BENCH_CLOSE_SIZES") {
        let annals = scratch(&format!("lifecycle-close-annals-{label}"));
        fill_annals(&annals, rows, &rt).close().wait().unwrap();
        let redb_dir = scratch(&format!("lifecycle-close-redb-{label}"));
        let db = fill_redb(&redb_dir, rows);
        settle();
        let next = AtomicU64::new(rows);
        let next_row = || common::open_row(next.fetch_add(1, Ordering::Relaxed));
        // Open and one durable append untimed; the close timed: it writes
        // the clean-close marker and state, and the index image.
        group.bench_function(format!("annals_{label}_close_after_one_append"), |b| {
            b.iter_custom(|iters| {
                timed_each(
                    iters,
                    || {
                        let log = Log::open(&annals, Options::default()).unwrap();
                        let (id, row) = next_row();
                        log.append(id, Expectation::Any, row.encode()).wait().unwrap();
                        log
                    },
                    |log| log.close().wait().unwrap(),
                )
            })
        });
        group.bench_function(format!("redb_{label}_commit_one_row"), |b| {
            b.iter_custom(|iters| {
                timed_each(iters, &next_row, |(id, row)| {
                    redb_append(&db, &id, row.sequence, &row.encode(), redb::Durability::Immediate)
                })
            })
        });
    }
    group.finish();
}

// ---------------------------------------------------------------- compaction

#[derive(Serialize)]
struct CompactionFigures {
    /// Segment files compaction read, and their bytes.
    inputs: usize,
    input_bytes: u64,
    /// What it wrote.
    output_bytes: u64,
    live_bytes: u64,
    records_kept: u64,
    load_before: String,
    load_after: String,
    smoke: bool,
}

fn compaction_options() -> Options {
    Options {
        compaction: CompactionOptions { background: false, ..CompactionOptions::default() },
        segment_preparation: SegmentPreparation::Inline,
        ..Options::default()
    }
}

fn lifecycle_compaction(c: &mut Criterion) {
    if !wanted("lifecycle_compaction") {
        return;
    }
    let rt = runtime();
    // A mostly dead log: the churn's workload, written without syncing each
    // append and without compaction, with the default 64 MiB segments.
    let template = scratch("lifecycle-compaction-template");
    let log_bytes: u64 = if smoke() { 4 << 20 } else { 256 << 20 };
    let options = Options { durability: Durability::Flush, ..compaction_options() };
    let churn = Churn::new(Log::open(&template, options).unwrap(), workflows());
    // A round is a step of every workflow, and a snapshot of one in `SNAPSHOT_EVERY`.
    let step_bytes = record_bytes(workflow(0).len(), Row::new(0, 0).encode().len());
    let round_bytes = workflows() * step_bytes * (SNAPSHOT_EVERY + 1) / SNAPSHOT_EVERY;
    churn.run(&rt, log_bytes / round_bytes);
    churn.log.close().wait().unwrap();
    drop(churn);

    let work = scratch("lifecycle-compaction-work");
    let open_copy = || {
        copy_dir(&template, &work);
        Log::open(&work, compaction_options()).unwrap()
    };
    // Once untimed, for the input's size and what the output keeps.
    let log = open_copy();
    let report = log.compact().unwrap();
    let live_bytes = LogReader::open(&work).unwrap().stats().unwrap().total.live_bytes;
    drop(log);
    settle();

    let mut group = c.benchmark_group("lifecycle_compaction");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5));
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes(report.input_bytes));
    let load_before = load_average();
    group.bench_function("annals_compact_warm", |b| {
        b.iter_custom(|iters| {
            timed_each(iters, open_copy, |log| {
                let report = log.compact().unwrap();
                assert!(report.inputs > 0, "compaction had nothing to read");
                (log, report)
            })
        })
    });
    group.finish();
    write_figures(
        "compaction",
        &CompactionFigures {
            inputs: report.inputs,
            input_bytes: report.input_bytes,
            output_bytes: report.output_bytes,
            live_bytes,
            records_kept: report.records_kept,
            load_before,
            load_after: load_average(),
            smoke: smoke(),
        },
    );
}

// ---------------------------------------------------------------- small log

#[derive(Serialize)]
struct SmallLogDisk {
    system: String,
    file_bytes: u64,
    allocated_bytes: u64,
}

#[derive(Serialize)]
struct SmallLogFigures {
    disk_after_close: Vec<SmallLogDisk>,
    load_before: String,
    load_after: String,
    smoke: bool,
}

/// The first row a small store takes.
fn first_row() -> (String, Row) {
    (workflow(7), Row::new(0, 7))
}

/// A small store of one of the systems, open.
enum SmallStore {
    Annals(Log),
    Sqlite(rusqlite::Connection),
    Redb(redb::Database),
}

impl SmallStore {
    const SYSTEMS: [&'static str; 3] = ["annals", "sqlite_full", "redb"];

    /// Creates `system`'s store in the empty `dir` and acknowledges its
    /// first durable write.
    fn create(system: &str, dir: &Path) -> SmallStore {
        let (id, row) = first_row();
        match system {
            "annals" => {
                let log = Log::open(dir, Options::default()).unwrap();
                log.append(&id, Expectation::NoStream, row.encode()).wait().unwrap();
                SmallStore::Annals(log)
            }
            "sqlite_full" => {
                let conn = sqlite_db(dir, "FULL");
                sqlite_append(&conn, &id, row.sequence, &row.encode());
                SmallStore::Sqlite(conn)
            }
            _ => {
                // The table is made by the first write transaction, as a
                // new store's first write would.
                let db = redb::Database::create(dir.join("db.redb")).unwrap();
                redb_append(&db, &id, row.sequence, &row.encode(), redb::Durability::Immediate);
                SmallStore::Redb(db)
            }
        }
    }

    fn close(self) {
        match self {
            SmallStore::Annals(log) => log.close().wait().unwrap(),
            SmallStore::Sqlite(conn) => conn.close().map_err(|(_, error)| error).unwrap(),
            SmallStore::Redb(db) => drop(db),
        }
    }
}

fn lifecycle_small_log(c: &mut Criterion) {
    if !wanted("lifecycle_small_log") {
        return;
    }
    let mut group = c.benchmark_group("lifecycle_small_log");
    group.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(4));
    group.sampling_mode(SamplingMode::Flat);
    let load_before = load_average();
    let mut disk_after_close = Vec::new();
    for system in SmallStore::SYSTEMS {
        let parent = scratch(&format!("lifecycle-small-{system}"));
        let made = AtomicU64::new(0);
        // A fresh directory each time; the last one made is removed first.
        let fresh_dir = || {
            let _ = std::fs::remove_dir_all(&parent);
            let dir = parent.join(made.fetch_add(1, Ordering::Relaxed).to_string());
            std::fs::create_dir_all(&dir).unwrap();
            dir
        };
        group.bench_function(system, |b| {
            b.iter_custom(|iters| timed_each(iters, fresh_dir, |dir| SmallStore::create(system, &dir)))
        });
        let dir = fresh_dir();
        SmallStore::create(system, &dir).close();
        let (file_bytes, allocated_bytes) = disk_use(&dir);
        disk_after_close.push(SmallLogDisk { system: system.to_owned(), file_bytes, allocated_bytes });
    }
    group.finish();
    let load_after = load_average();
    write_figures("small_log", &SmallLogFigures { disk_after_close, load_before, load_after, smoke: smoke() });
}

criterion_group!(benches, lifecycle_small_log, lifecycle_compaction, lifecycle_open, lifecycle_close, lifecycle_churn);
criterion_main!(benches);
