//! What the benches share: the row every system stores, scratch
//! directories, the command line's filter, and the data sets of the open
//! benches, built the same way for each system.
#![allow(dead_code)] // each bench uses its own subset

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use annals::{Durability, Expectation, Log, Options};
use redb::{ReadableDatabase, TableDefinition};

/// Workflow ids the rows are spread over.
pub const WORKFLOWS: u64 = 1000;
const BLOB_BYTES: usize = 200;
/// redb's table: key `(workflow_id, seq)`, value the encoded row.
pub const TABLE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("checkpoints");

/// Whether `ANNALS_BENCH_SMOKE` asks for one quick pass on tiny data (CI).
pub fn smoke() -> bool {
    std::env::var_os("ANNALS_BENCH_SMOKE").is_some()
}

/// cano's `CheckpointRow` shape: a ~12-byte state, an ~8-byte task id and a
/// 200-byte incompressible blob. Every system stores it with this codec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub sequence: u64,
    pub state: String,
    pub task_id: String,
    pub blob: Vec<u8>,
}

impl Row {
    pub fn new(sequence: u64, salt: u64) -> Row {
        let mut state = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ sequence;
        let blob = (0..BLOB_BYTES)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        Row {
            sequence,
            state: format!("step-{:07}", sequence % 10_000_000),
            task_id: format!("task-{:03}", salt % 1000),
            blob,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 2 + self.state.len() + 2 + self.task_id.len() + self.blob.len());
        out.extend_from_slice(&self.sequence.to_le_bytes());
        for text in [&self.state, &self.task_id] {
            out.extend_from_slice(&(text.len() as u16).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(&self.blob);
        out
    }

    pub fn decode(bytes: &[u8]) -> Row {
        let sequence = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        let mut at = 8;
        let mut text = || {
            let len = u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap()) as usize;
            let value = String::from_utf8(bytes[at + 2..at + 2 + len].to_vec()).unwrap();
            at += 2 + len;
            value
        };
        let (state, task_id) = (text(), text());
        Row { sequence, state, task_id, blob: bytes[at..].to_vec() }
    }
}

/// Whether the command line's filter can match something in `group`: the
/// groups build their data sets up front, so one that is filtered out skips
/// that work too. Filters that name a group, or a bench in it, match it.
pub fn wanted(group: &str) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut filters = Vec::new();
    let mut skip_value = false;
    for arg in &args {
        if skip_value {
            skip_value = false;
        } else if arg.starts_with("--") {
            let takes_value = [
                "--profile-time",
                "--save-baseline",
                "--baseline",
                "--measurement-time",
                "--warm-up-time",
                "--sample-size",
                "--output-format",
                "--color",
            ];
            skip_value = takes_value.contains(&arg.as_str());
        } else if !arg.starts_with('-') {
            filters.push(arg.clone());
        }
    }
    filters.is_empty()
        || filters
            .iter()
            .any(|f| f.starts_with(group) || group.starts_with(f.as_str()) || f.split('/').next() == Some(group))
}

pub fn workflow(i: u64) -> String {
    format!("wf-{:05}", i % WORKFLOWS)
}

/// The workspace's target directory, where criterion writes too: cargo runs
/// a bench in its package's directory (`benches/`), so a relative `target`
/// would not be it. The bench binary is `<target>/<profile>/deps/<name>`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"))
}

/// A new, empty directory `name` under `ANNALS_BENCH_DIR` (default
/// `bench-data` in the target directory).
pub fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::var_os("ANNALS_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|| target_dir().join("bench-data"));
    let path = dir.join(name);
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    path
}

/// Lets a setup's background work (a spare segment being zeroed, write-back
/// of preallocated files) finish before anything is measured.
pub fn settle() {
    std::thread::sleep(if smoke() { Duration::ZERO } else { Duration::from_secs(2) });
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Runs `writers` tasks, each making `per_writer` appends with `append`, and
/// returns the elapsed time.
pub fn concurrent<F, Fut>(rt: &tokio::runtime::Runtime, writers: u64, per_writer: u64, append: F) -> Duration
where
    F: Fn(u64, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    rt.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let append = append.clone();
                tokio::spawn(async move {
                    for i in 0..per_writer {
                        append(w, i).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        started.elapsed()
    })
}

/// Drops a directory's files from the page cache (they are synced, so their
/// pages are clean): GNU dd's `iflag=nocache count=0` advises the kernel to
/// drop a whole file, without root and without `unsafe` here.
pub fn evict(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        File::open(&path).unwrap().sync_all().unwrap();
        let status = std::process::Command::new("dd")
            .arg(format!("if={}", path.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .expect("dd from coreutils");
        assert!(status.success());
    }
}

/// Copies every file of `from` into a new, empty `to` and syncs the copies,
/// so that their write-back does not land in what is measured next.
pub fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        std::fs::copy(entry.path(), &target).unwrap();
        File::open(&target).unwrap().sync_all().unwrap();
    }
    File::open(to).unwrap().sync_all().unwrap();
}

/// Bytes the files of `dir` take: their lengths, and the blocks the file
/// system allocated for them.
pub fn disk_use(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut lengths = 0;
    let mut allocated = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let Ok(metadata) = entry.unwrap().metadata() else { continue };
        lengths += metadata.len();
        allocated += metadata.blocks() * 512;
    }
    (lengths, allocated)
}

pub fn redb_db(dir: &Path) -> redb::Database {
    let db = redb::Database::create(dir.join("db.redb")).unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_table(TABLE).unwrap();
    tx.commit().unwrap();
    db
}

pub fn redb_append(db: &redb::Database, id: &str, seq: u64, row: &[u8], durability: redb::Durability) {
    let mut tx = db.begin_write().unwrap();
    tx.set_durability(durability).unwrap();
    {
        let mut table = tx.open_table(TABLE).unwrap();
        table.insert((id, seq), row).unwrap();
    }
    tx.commit().unwrap();
}

pub fn sqlite_db(dir: &Path, synchronous: &str) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.join("db.sqlite")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", synchronous).unwrap();
    conn.execute(
        "CREATE TABLE IF NOT EXISTS checkpoints (workflow_id TEXT NOT NULL, seq INTEGER NOT NULL, row BLOB NOT NULL, PRIMARY KEY (workflow_id, seq))",
        [],
    )
    .unwrap();
    conn
}

pub fn sqlite_append(conn: &rusqlite::Connection, id: &str, seq: u64, row: &[u8]) {
    // One transaction per append, as the seeds do.
    conn.execute(
        "INSERT INTO checkpoints (workflow_id, seq, row) VALUES (?1, ?2, ?3)",
        rusqlite::params![id, seq as i64, row],
    )
    .unwrap();
}

/// Lends each stored row of `workflow` to `f`, in sequence order, from one
/// read transaction: redb's counterpart of `Log::visit_stream`.
pub fn redb_visit_run(db: &redb::Database, workflow: &str, mut f: impl FnMut(&[u8])) {
    let tx = db.begin_read().unwrap();
    let table = tx.open_table(TABLE).unwrap();
    for entry in table.range((workflow, 0)..=(workflow, u64::MAX)).unwrap() {
        f(entry.unwrap().1.value());
    }
}

/// The `k`th row of an open bench's data set: its workflow, and the row.
pub fn open_row(k: u64) -> (String, Row) {
    (workflow(k), Row::new(k / WORKFLOWS, k))
}

/// An Annals log holding rows `0..rows` of [`open_row`], written by 64
/// concurrent writers with durability `Flush`; still open.
pub fn fill_annals(dir: &Path, rows: u64, rt: &tokio::runtime::Runtime) -> Log {
    let log = Log::open(dir, Options { durability: Durability::Flush, ..Options::default() }).unwrap();
    settle();
    let writers = 64;
    let log_ref = log.clone();
    concurrent(rt, writers, rows.div_ceil(writers), move |w, i| {
        let log = log_ref.clone();
        async move {
            let k = i * writers + w;
            if k < rows {
                let (id, row) = open_row(k);
                log.append(id, Expectation::Any, row.encode()).await.unwrap();
            }
        }
    });
    log
}

/// A redb database holding the same rows, 100,000 to a write transaction;
/// still open.
pub fn fill_redb(dir: &Path, rows: u64) -> redb::Database {
    let db = redb_db(dir);
    for chunk in 0..rows.div_ceil(100_000) {
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(TABLE).unwrap();
            for k in chunk * 100_000..((chunk + 1) * 100_000).min(rows) {
                let (id, row) = open_row(k);
                table.insert((id.as_str(), row.sequence), row.encode().as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    db
}

/// Runs `prepare`, then times `measured` on what it made, `iters` times: the
/// total of the timed parts. What `measured` returns is dropped after its time is taken
/// (a log closes, a database is released).
pub fn timed_each<P, T>(iters: u64, mut prepare: impl FnMut() -> P, mut measured: impl FnMut(P) -> T) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let prepared = prepare();
        let started = Instant::now();
        let out = measured(prepared);
        total += started.elapsed();
        drop(std::hint::black_box(out));
    }
    total
}

/// Opens the log in `dir` and serves its first read, the run of
/// `workflow(1)`: the log and the rows.
pub fn annals_first_run(dir: &Path) -> (Log, Vec<Row>) {
    annals_first_run_with(dir, Options::default())
}

/// [`annals_first_run`] with `options`.
pub fn annals_first_run_with(dir: &Path, options: Options) -> (Log, Vec<Row>) {
    let log = Log::open(dir, options).unwrap();
    let mut rows = Vec::new();
    log.visit_stream(workflow(1), |r| rows.push(Row::decode(r.payload))).unwrap();
    (log, rows)
}

/// Opens the redb database at `path` and serves its first read, as
/// [`annals_first_run`].
pub fn redb_first_run(path: &Path) -> (redb::Database, Vec<Row>) {
    let db = redb::Database::open(path).unwrap();
    let mut rows = Vec::new();
    redb_visit_run(&db, &workflow(1), |value| rows.push(Row::decode(value)));
    (db, rows)
}
