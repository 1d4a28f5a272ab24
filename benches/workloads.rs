//! Workloads W1–W5 of `benches/README.md`, for Annals, redb (also through
//! cano's own `RedbCheckpointStore`), SQLite, okaywal and the raw disk, in
//! one run on the same data. `python3 benches/report.py` turns the results into the
//! README's table of medians and ratios and the W2 plot.
//!
//! `ANNALS_BENCH_SMOKE=1 cargo bench --bench workloads -- --test` runs every
//! workload once on tiny data (what CI does).

mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use annals::{Durability, Expectation, IndexImageWrites, Log, Options, StreamSeq};
use common::{
    Row, TABLE, WORKFLOWS, annals_first_run_with, concurrent, disk_use, evict, fill_annals, fill_redb, open_row,
    redb_append, redb_db, redb_first_run, redb_visit_run, runtime, scratch, settle, smoke, sqlite_append, sqlite_db,
    timed_each, wanted, workflow,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const RUN_ROWS: u64 = 20;

impl Row {
    fn cano(&self) -> cano::recovery::CheckpointRow {
        let mut row = cano::recovery::CheckpointRow::new(self.sequence, self.state.clone(), self.task_id.clone());
        row.output_blob = Some(self.blob.clone());
        row
    }
}

/// The rows of W1 in order: round-robin over the workflows, dense per workflow.
struct RoundRobin {
    next: u64,
}

impl RoundRobin {
    fn take(&mut self) -> (String, Row) {
        let i = self.next;
        self.next += 1;
        open_row(i)
    }
}

// ---------------------------------------------------------------- systems

fn annals_log(dir: &Path, durability: Durability) -> Log {
    let log = Log::open(dir, Options { durability, ..Options::default() }).unwrap();
    settle();
    log
}

/// okaywal with its default configuration (1 MiB preallocated segments);
/// checkpointing keeps nothing, as its own benchmarks do.
fn okaywal_log(dir: &Path) -> okaywal::WriteAheadLog {
    let wal = okaywal::WriteAheadLog::recover(dir, okaywal::LogVoid).unwrap();
    settle();
    wal
}

/// One okaywal entry holding the workflow id and the row, committed (written
/// and fsynced, in a group with concurrent committers).
fn okaywal_append(wal: &okaywal::WriteAheadLog, id: &str, row: &[u8]) {
    let mut entry = wal.begin_entry().unwrap();
    entry.write_chunk(id.as_bytes()).unwrap();
    entry.write_chunk(row).unwrap();
    entry.commit().unwrap();
}

/// Benches one writer making W1's appends one at a time with `append`.
fn sequential<R>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut append: impl FnMut(&str, &Row) -> R,
) {
    let mut rows = RoundRobin { next: 0 };
    group.bench_function(name, |b| {
        b.iter(|| {
            let (id, row) = rows.take();
            append(&id, &row)
        })
    });
}

/// A plain file for the raw loops, optionally preallocated with synced zeros.
struct RawFile {
    file: File,
    offset: u64,
}

impl RawFile {
    fn new(dir: &Path, preallocate_bytes: u64) -> RawFile {
        let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(dir.join("raw")).unwrap();
        let zeros = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < preallocate_bytes {
            file.write_all_at(&zeros, at).unwrap();
            at += zeros.len() as u64;
        }
        file.sync_all().unwrap();
        settle();
        RawFile { file, offset: 0 }
    }

    fn append(&mut self, bytes: &[u8], sync: bool) {
        self.file.write_all_at(bytes, self.offset).unwrap();
        self.offset += bytes.len() as u64;
        if sync {
            self.file.sync_data().unwrap();
        }
    }
}

/// A plain group commit written here: appenders send records over a
/// channel; one writer thread writes everything queued at once, fdatasyncs,
/// and replies.
struct ChannelGroupCommit {
    sender: Option<mpsc::Sender<(Vec<u8>, tokio::sync::oneshot::Sender<()>)>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl ChannelGroupCommit {
    fn new(dir: &Path) -> ChannelGroupCommit {
        let mut raw = RawFile::new(dir, 256 << 20);
        let (sender, receiver) = mpsc::channel::<(Vec<u8>, tokio::sync::oneshot::Sender<()>)>();
        let writer = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut replies = Vec::new();
            while let Ok(first) = receiver.recv() {
                for (bytes, reply) in std::iter::once(first).chain(receiver.try_iter()) {
                    buf.extend_from_slice(&bytes);
                    replies.push(reply);
                }
                if raw.offset + buf.len() as u64 > (256 << 20) {
                    raw.offset = 0;
                }
                raw.append(&buf, true);
                buf.clear();
                for reply in replies.drain(..) {
                    let _ = reply.send(());
                }
            }
        });
        ChannelGroupCommit { sender: Some(sender), writer: Some(writer) }
    }

    async fn append(&self, bytes: Vec<u8>) {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.sender.as_ref().unwrap().send((bytes, reply)).unwrap();
        done.await.unwrap();
    }
}

impl Drop for ChannelGroupCommit {
    fn drop(&mut self) {
        self.sender.take();
        self.writer.take().unwrap().join().unwrap();
    }
}

/// A frame like Annals' for the raw loops: the row plus a 40-byte header's worth of bytes.
fn raw_record(row: &Row) -> Vec<u8> {
    let mut bytes = vec![0xA5; 40];
    bytes.extend_from_slice(&row.encode());
    bytes
}

// ---------------------------------------------------------------- W1

fn w1_sequential_durable_appends(c: &mut Criterion) {
    if !wanted("w1_sequential_durable_appends") {
        return;
    }
    let mut group = c.benchmark_group("w1_sequential_durable_appends");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));

    let dir = scratch("w1-annals");
    let log = annals_log(&dir, Durability::Sync);
    sequential(&mut group, "annals_sync", |id, row| {
        log.append(id, Expectation::Exact(StreamSeq(row.sequence)), row.encode()).wait().unwrap()
    });
    drop(log);

    // The same appends from one tokio task, each awaited: a lone appender
    // on a worker of the multi-threaded runtime commits in place, inside
    // `block_in_place` (`Options::awaited_commits_in_place`). Then the same
    // with that turned off: the writer thread does the I/O and wakes the
    // task, two thread hand-offs per append (what `annals_sync_async` paid
    // before it led in place).
    let rt = runtime();
    for (name, in_place) in [("annals_sync_async", true), ("annals_sync_async_writer_thread", false)] {
        let dir = scratch(&format!("w1-{name}"));
        let log = Log::open(&dir, Options { awaited_commits_in_place: in_place, ..Options::default() }).unwrap();
        settle();
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        group.bench_function(name, |b| {
            b.iter_custom(|rounds| {
                let (log, next) = (log.clone(), next.clone());
                concurrent(&rt, 1, rounds, move |_, _| {
                    let log = log.clone();
                    let (id, row) = RoundRobin { next: next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) }.take();
                    async move {
                        log.append(id, Expectation::Exact(StreamSeq(row.sequence)), row.encode()).await.unwrap();
                    }
                })
            })
        });
    }

    // The same shape with nothing of Annals in it: one task hands each
    // record to a writer thread (the minimal channel group commit below),
    // which writes, fdatasyncs and wakes it. What this loses to the raw loop
    // is what the hand-off itself costs on this machine, the floor of any
    // async append whose fsync runs off the executor.
    let dir = scratch("w1-channel");
    let channel = Arc::new(ChannelGroupCommit::new(&dir));
    group.bench_function("channel_group_commit_async", |b| {
        b.iter_custom(|rounds| {
            let channel = channel.clone();
            concurrent(&rt, 1, rounds, move |w, i| {
                let channel = channel.clone();
                async move { channel.append(raw_record(&Row::new(i, w))).await }
            })
        })
    });
    drop(channel);

    let dir = scratch("w1-okaywal");
    let wal = okaywal_log(&dir);
    sequential(&mut group, "okaywal", |id, row| okaywal_append(&wal, id, &row.encode()));
    wal.shutdown().unwrap();

    let dir = scratch("w1-redb");
    let db = redb_db(&dir);
    sequential(&mut group, "redb_immediate", |id, row| {
        redb_append(&db, id, row.sequence, &row.encode(), redb::Durability::Immediate)
    });
    drop(db);

    let dir = scratch("w1-cano");
    let store = cano::recovery::RedbCheckpointStore::new(dir.join("cano.redb")).unwrap();
    let mut rows = RoundRobin { next: 0 };
    group.bench_function("cano_redb_store", |b| {
        use cano::recovery::CheckpointStore;
        b.iter(|| {
            let (id, row) = rows.take();
            rt.block_on(store.append(&id, row.cano())).unwrap()
        })
    });
    drop(store);

    let dir = scratch("w1-sqlite");
    let conn = sqlite_db(&dir, "FULL");
    sequential(&mut group, "sqlite_full", |id, row| sqlite_append(&conn, id, row.sequence, &row.encode()));
    drop(conn);

    for (name, preallocate) in [("raw_append_fdatasync", 0u64), ("raw_preallocated_fdatasync", 256 << 20)] {
        let dir = scratch(&format!("w1-{name}"));
        let mut raw = RawFile::new(&dir, if smoke() { 1 << 20 } else { preallocate });
        let mut rows = RoundRobin { next: 0 };
        group.bench_function(name, |b| {
            b.iter(|| {
                let (_, row) = rows.take();
                if preallocate > 0 && raw.offset > preallocate - 4096 {
                    raw.offset = 0;
                }
                raw.append(&raw_record(&row), true)
            })
        });
    }

    // What a hand-off to another thread costs on this machine, with no I/O:
    // a request and its reply over std channels between two threads, and
    // from a tokio task to a thread and back over a tokio oneshot (what the
    // channel group commit pays per append on top of the disk).
    {
        let (to_echo, requests) = mpsc::channel::<mpsc::Sender<()>>();
        let echo = std::thread::spawn(move || {
            while let Ok(reply) = requests.recv() {
                let _ = reply.send(());
            }
        });
        group.bench_function("wakeup_round_trip_thread", |b| {
            b.iter(|| {
                let (reply, answer) = mpsc::channel();
                to_echo.send(reply).unwrap();
                answer.recv().unwrap()
            })
        });
        drop(to_echo);
        echo.join().unwrap();
        let (to_echo, requests) = mpsc::channel::<tokio::sync::oneshot::Sender<()>>();
        let echo = std::thread::spawn(move || {
            while let Ok(reply) = requests.recv() {
                let _ = reply.send(());
            }
        });
        group.bench_function("wakeup_round_trip_task", |b| {
            b.iter_custom(|rounds| {
                let to_echo = to_echo.clone();
                concurrent(&rt, 1, rounds, move |_, _| {
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    to_echo.send(reply).unwrap();
                    async move { answer.await.unwrap() }
                })
            })
        });
        drop(to_echo);
        echo.join().unwrap();
    }

    // The physical limit: 64 records per write and fdatasync (time per record).
    let dir = scratch("w1-raw-batch");
    let mut raw = RawFile::new(&dir, if smoke() { 1 << 20 } else { 256 << 20 });
    let mut rows = RoundRobin { next: 0 };
    group.throughput(Throughput::Elements(64));
    group.bench_function("raw_preallocated_batch64_fdatasync", |b| {
        b.iter(|| {
            let mut buf = Vec::new();
            for _ in 0..64 {
                buf.extend_from_slice(&raw_record(&rows.take().1));
            }
            if raw.offset + buf.len() as u64 > raw.file.metadata().unwrap().len() {
                raw.offset = 0;
            }
            raw.append(&buf, true)
        })
    });
    group.finish();
}

// ---------------------------------------------------------------- W2

fn w2_concurrent_durable_appends(c: &mut Criterion) {
    if !wanted("w2_concurrent_durable_appends") {
        return;
    }
    let mut group = c.benchmark_group("w2_concurrent_durable_appends");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    let rt = runtime();
    let writer_counts: &[u64] = if smoke() { &[1, 4] } else { &[1, 4, 16, 64, 256] };
    for &writers in writer_counts {
        group.throughput(Throughput::Elements(writers));

        let dir = scratch("w2-annals");
        let log = annals_log(&dir, Durability::Sync);
        let base = Arc::new(std::sync::atomic::AtomicU64::new(0));
        group.bench_with_input(BenchmarkId::new("annals_sync", writers), &writers, |b, &writers| {
            b.iter_custom(|rounds| {
                let (log, base) = (log.clone(), base.clone());
                let start = base.fetch_add(rounds, std::sync::atomic::Ordering::Relaxed);
                concurrent(&rt, writers, rounds, move |w, i| {
                    let log = log.clone();
                    async move {
                        let row = Row::new(start + i, w);
                        let expected = Expectation::Exact(StreamSeq(start + i));
                        log.append(format!("writer-{w}"), expected, row.encode()).await.unwrap();
                    }
                })
            })
        });
        drop(log);

        let dir = scratch("w2-redb");
        let db = Arc::new(redb_db(&dir));
        group.bench_with_input(BenchmarkId::new("redb_immediate", writers), &writers, |b, &writers| {
            b.iter_custom(|rounds| {
                let db = db.clone();
                let salt = rounds.wrapping_mul(7919);
                concurrent(&rt, writers, rounds, move |w, i| {
                    let db = db.clone();
                    async move {
                        let row = Row::new(salt + i, w);
                        tokio::task::spawn_blocking(move || {
                            redb_append(
                                &db,
                                &format!("writer-{w}"),
                                row.sequence,
                                &row.encode(),
                                redb::Durability::Immediate,
                            )
                        })
                        .await
                        .unwrap()
                    }
                })
            })
        });
        drop(db);

        let dir = scratch("w2-sqlite");
        let conn = Arc::new(std::sync::Mutex::new(sqlite_db(&dir, "FULL")));
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        group.bench_with_input(BenchmarkId::new("sqlite_full", writers), &writers, |b, &writers| {
            b.iter_custom(|rounds| {
                let (conn, next) = (conn.clone(), next.clone());
                concurrent(&rt, writers, rounds, move |w, _| {
                    let (conn, next) = (conn.clone(), next.clone());
                    async move {
                        tokio::task::spawn_blocking(move || {
                            let seq = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let row = Row::new(seq, w);
                            sqlite_append(&conn.lock().unwrap(), &format!("writer-{w}"), seq, &row.encode())
                        })
                        .await
                        .unwrap()
                    }
                })
            })
        });
        drop(conn);

        let dir = scratch("w2-okaywal");
        let wal = Arc::new(okaywal_log(&dir));
        group.bench_with_input(BenchmarkId::new("okaywal", writers), &writers, |b, &writers| {
            b.iter_custom(|rounds| {
                let wal = wal.clone();
                concurrent(&rt, writers, rounds, move |w, i| {
                    let wal = wal.clone();
                    async move {
                        let row = Row::new(i, w).encode();
                        tokio::task::spawn_blocking(move || okaywal_append(&wal, &format!("writer-{w}"), &row))
                            .await
                            .unwrap()
                    }
                })
            })
        });
        if let Some(wal) = Arc::into_inner(wal) {
            wal.shutdown().unwrap();
        }

        let dir = scratch("w2-channel");
        let channel = Arc::new(ChannelGroupCommit::new(&dir));
        group.bench_with_input(BenchmarkId::new("channel_group_commit", writers), &writers, |b, &writers| {
            b.iter_custom(|rounds| {
                let channel = channel.clone();
                concurrent(&rt, writers, rounds, move |w, i| {
                    let channel = channel.clone();
                    async move { channel.append(raw_record(&Row::new(i, w))).await }
                })
            })
        });
        drop(channel);
    }
    group.finish();
}

// ---------------------------------------------------------------- W3

fn w3_load_a_run(c: &mut Criterion) {
    if !wanted("w3_load_a_run") {
        return;
    }
    let mut group = c.benchmark_group("w3_load_a_run");
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    let workflows = if smoke() { 10 } else { WORKFLOWS };
    let all_rows = || (0..workflows).flat_map(|w| (0..RUN_ROWS).map(move |s| (workflow(w), Row::new(s, w))));
    let mut pick = 0x1234_5678u64;
    let mut random_workflow = move || {
        pick ^= pick << 13;
        pick ^= pick >> 7;
        pick ^= pick << 17;
        workflow(pick % workflows)
    };

    let dir = scratch("w3-annals");
    let log = annals_log(&dir, Durability::Flush);
    for w in 0..workflows {
        let batch = (0..RUN_ROWS).fold(annals::Batch::new(), |batch, s| {
            batch.append(workflow(w), Expectation::Exact(StreamSeq(s)), Row::new(s, w).encode())
        });
        log.commit(batch).wait().unwrap();
    }
    log.close().wait().unwrap();
    let log = annals_log(&dir, Durability::Sync);
    write_index_memory(&log);
    group.bench_function("annals", |b| {
        b.iter(|| {
            let mut rows = Vec::new();
            log.visit_stream(random_workflow(), |r| rows.push(Row::decode(r.payload))).unwrap();
            rows
        })
    });
    // The engine's share alone: the run's records read (and checksummed), no row decoded.
    group.bench_function("annals_bytes_only", |b| {
        b.iter(|| {
            let mut bytes = 0;
            log.visit_stream(random_workflow(), |r| bytes += r.payload.len()).unwrap();
            bytes
        })
    });
    group.bench_function("annals_read_stream", |b| {
        b.iter(|| {
            let run = log.read_stream(random_workflow()).unwrap();
            run.entries.iter().map(|r| Row::decode(&r.payload)).collect::<Vec<Row>>()
        })
    });
    drop(log);

    let dir = scratch("w3-redb");
    let db = redb_db(&dir);
    let tx = db.begin_write().unwrap();
    {
        let mut table = tx.open_table(TABLE).unwrap();
        for (id, row) in all_rows() {
            table.insert((id.as_str(), row.sequence), row.encode().as_slice()).unwrap();
        }
    }
    tx.commit().unwrap();
    group.bench_function("redb", |b| {
        b.iter(|| {
            let mut rows = Vec::new();
            redb_visit_run(&db, &random_workflow(), |value| rows.push(Row::decode(value)));
            rows
        })
    });
    group.bench_function("redb_bytes_only", |b| {
        b.iter(|| {
            let mut bytes = 0;
            redb_visit_run(&db, &random_workflow(), |value| bytes += value.len());
            bytes
        })
    });
    drop(db);

    let dir = scratch("w3-cano");
    let store = cano::recovery::RedbCheckpointStore::new(dir.join("cano.redb")).unwrap();
    let rt = runtime();
    {
        use cano::recovery::CheckpointStore;
        for (id, row) in all_rows().take(if smoke() { 200 } else { 2000 }) {
            rt.block_on(store.append(&id, row.cano())).unwrap();
        }
        let loaded_workflows = if smoke() { 10 } else { 100 };
        let mut pick = 99u64;
        group.bench_function("cano_redb_store", |b| {
            b.iter(|| {
                pick = pick.wrapping_mul(6364136223846793005).wrapping_add(1);
                rt.block_on(store.load_run(&workflow((pick >> 33) % loaded_workflows))).unwrap()
            })
        });
    }
    drop(store);

    let dir = scratch("w3-sqlite");
    let mut conn = sqlite_db(&dir, "FULL");
    let tx = conn.transaction().unwrap();
    for (id, row) in all_rows() {
        sqlite_append(&tx, &id, row.sequence, &row.encode());
    }
    tx.commit().unwrap();
    let mut select = conn.prepare("SELECT row FROM checkpoints WHERE workflow_id = ?1 ORDER BY seq").unwrap();
    group.bench_function("sqlite", |b| {
        b.iter(|| {
            let id = random_workflow();
            select
                .query_map([id], |r| r.get::<_, Vec<u8>>(0))
                .unwrap()
                .map(|r| Row::decode(&r.unwrap()))
                .collect::<Vec<Row>>()
        })
    });
    group.finish();
}

/// Index memory of Annals for the W3 data set, for the report.
fn write_index_memory(log: &Log) {
    let stats = log.index_stats();
    let beyond_ids = stats.entry_bytes + stats.stream_overhead_bytes + stats.checkpoint_bytes;
    let report = format!(
        "{{\"entries\":{},\"streams\":{},\"entry_bytes\":{},\"stream_overhead_bytes\":{},\"checkpoint_bytes\":{},\"stream_id_bytes\":{},\"bytes_per_record_beyond_ids\":{:.3}}}\n",
        stats.entries,
        stats.streams,
        stats.entry_bytes,
        stats.stream_overhead_bytes,
        stats.checkpoint_bytes,
        stats.stream_id_bytes,
        beyond_ids as f64 / stats.entries.max(1) as f64
    );
    let path = common::target_dir().join("criterion");
    let _ = std::fs::create_dir_all(&path);
    let _ =
        std::fs::File::create(path.join("annals-index-memory.json")).and_then(|mut f| f.write_all(report.as_bytes()));
}

// ---------------------------------------------------------------- W4

fn w4_open(c: &mut Criterion) {
    if !wanted("w4_open") {
        return;
    }
    let mut group = c.benchmark_group("w4_open");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    let rt = runtime();
    let sizes: &[(&str, u64)] =
        if smoke() { &[("1k_rows", 1000)] } else { &[("100k_rows", 100_000), ("1gib", 4_000_000)] };
    for &(label, rows) in sizes {
        let dir = scratch(&format!("w4-annals-{label}"));
        fill_annals(&dir, rows, &rt).close().wait().unwrap();
        let log_bytes = disk_use(&dir).0;
        group.throughput(Throughput::Bytes(log_bytes));
        // W4 measures the full scan and index rebuild: the persisted index
        // image, which spares an open most of it (lifecycle_open measures
        // that open), is removed first and not written again at close.
        let _ = std::fs::remove_file(dir.join("annals.index"));
        let scanning = Options { index_image: IndexImageWrites::Off, ..Options::default() };
        for cache in ["warm", "cold"] {
            let prepare = || {
                if cache == "cold" {
                    evict(&dir)
                }
            };
            group.bench_function(format!("annals_{label}_{cache}"), |b| {
                b.iter_custom(|iters| timed_each(iters, prepare, |()| annals_first_run_with(&dir, scanning.clone())))
            });
        }

        let dir = scratch(&format!("w4-redb-{label}"));
        drop(fill_redb(&dir, rows));
        group.throughput(Throughput::Bytes(log_bytes));
        for cache in ["warm", "cold"] {
            let prepare = || {
                if cache == "cold" {
                    evict(&dir)
                }
            };
            group.bench_function(format!("redb_{label}_{cache}"), |b| {
                b.iter_custom(|iters| timed_each(iters, prepare, |()| redb_first_run(&dir.join("db.redb"))))
            });
        }

        let dir = scratch(&format!("w4-sqlite-{label}"));
        {
            let mut conn = sqlite_db(&dir, "FULL");
            let tx = conn.transaction().unwrap();
            for k in 0..rows {
                let (id, row) = open_row(k);
                sqlite_append(&tx, &id, row.sequence, &row.encode());
            }
            tx.commit().unwrap();
            conn.pragma_update(None, "wal_checkpoint", "TRUNCATE").unwrap();
        }
        for cache in ["warm", "cold"] {
            let prepare = || {
                if cache == "cold" {
                    evict(&dir)
                }
            };
            group.bench_function(format!("sqlite_{label}_{cache}"), |b| {
                b.iter_custom(|iters| {
                    timed_each(iters, prepare, |()| {
                        let conn = rusqlite::Connection::open(dir.join("db.sqlite")).unwrap();
                        let mut select =
                            conn.prepare("SELECT row FROM checkpoints WHERE workflow_id = ?1 ORDER BY seq").unwrap();
                        select
                            .query_map([workflow(1)], |r| r.get::<_, Vec<u8>>(0))
                            .unwrap()
                            .map(|r| Row::decode(&r.unwrap()))
                            .collect::<Vec<Row>>()
                    })
                })
            });
        }
    }
    group.finish();
}

// ---------------------------------------------------------------- W5

fn w5_buffered_appends(c: &mut Criterion) {
    if !wanted("w5_buffered_appends") {
        return;
    }
    let mut group = c.benchmark_group("w5_buffered_appends");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    let rt = runtime();
    for writers in [1u64, 64] {
        group.throughput(Throughput::Elements(writers));
        let dir = scratch("w5-annals");
        let log = annals_log(&dir, Durability::Flush);
        let base = Arc::new(std::sync::atomic::AtomicU64::new(0));
        group.bench_with_input(BenchmarkId::new("annals_flush", writers), &writers, |b, &writers| {
            b.iter_custom(|rounds| {
                let (log, base) = (log.clone(), base.clone());
                let start = base.fetch_add(rounds, std::sync::atomic::Ordering::Relaxed);
                concurrent(&rt, writers, rounds, move |w, i| {
                    let log = log.clone();
                    async move {
                        let row = Row::new(start + i, w);
                        log.append(format!("writer-{w}"), Expectation::Exact(StreamSeq(start + i)), row.encode())
                            .await
                            .unwrap();
                    }
                })
            })
        });
        drop(log);
    }
    group.throughput(Throughput::Elements(1));
    let dir = scratch("w5-annals-blocking");
    let log = annals_log(&dir, Durability::Flush);
    sequential(&mut group, "annals_flush_blocking", |id, row| {
        log.append(id, Expectation::Exact(StreamSeq(row.sequence)), row.encode()).wait().unwrap()
    });
    drop(log);

    let dir = scratch("w5-redb");
    let db = redb_db(&dir);
    sequential(&mut group, "redb_durability_none", |id, row| {
        redb_append(&db, id, row.sequence, &row.encode(), redb::Durability::None)
    });
    drop(db);

    let dir = scratch("w5-sqlite");
    let conn = sqlite_db(&dir, "OFF");
    sequential(&mut group, "sqlite_synchronous_off", |id, row| sqlite_append(&conn, id, row.sequence, &row.encode()));
    drop(conn);

    let dir = scratch("w5-raw");
    let mut raw = RawFile::new(&dir, 0);
    let mut rows = RoundRobin { next: 0 };
    group.bench_function("raw_write", |b| b.iter(|| raw.append(&raw_record(&rows.take().1), false)));
    group.finish();
}

criterion_group!(
    benches,
    w1_sequential_durable_appends,
    w2_concurrent_durable_appends,
    w3_load_a_run,
    w4_open,
    w5_buffered_appends
);
criterion_main!(benches);
