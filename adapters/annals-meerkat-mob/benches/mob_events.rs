//! Issue 10's mob event bench: `append` (one durable event at a time, and
//! 16 appenders at once) and `poll` (a page of 100 events after a cursor)
//! through meerkat-mob's `MobEventStore` on Annals, beside an event table
//! in SQLite in WAL mode with `synchronous=FULL` and meerkat-mob's own redb
//! store, in the same run. Each system stores the event as meerkat-mob's
//! JSON.
//!
//! `ANNALS_BENCH_SMOKE=1 cargo bench -p annals-meerkat-mob --bench mob_events -- --test`
//! runs each once on tiny data (what CI does).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals_meerkat_mob::AnnalsMobStores;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meerkat_mob::{MobError, MobEvent, MobEventKind, MobEventStore, MobId, NewMobEvent, RedbMobEventStore};

const PAGE_EVENTS: usize = 100;
const APPENDERS: usize = 16;

fn smoke() -> bool {
    std::env::var_os("ANNALS_BENCH_SMOKE").is_some()
}

fn scratch(name: &str) -> PathBuf {
    let root = std::env::var_os("ANNALS_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let path = root.join(format!("annals-mob-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    path
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn new_event(n: u64) -> NewMobEvent {
    let kind = if n.is_multiple_of(2) { MobEventKind::MobCompleted } else { MobEventKind::MobReset };
    NewMobEvent { mob_id: MobId::from(format!("mob-{}", n % 8)), timestamp: None, kind }
}

/// An event table in SQLite, WAL mode, `synchronous=FULL`: one durable
/// transaction per append, as meerkat-mob's redb store does.
struct SqliteEvents {
    connection: Mutex<rusqlite::Connection>,
}

impl SqliteEvents {
    fn open(path: PathBuf) -> SqliteEvents {
        let connection = rusqlite::Connection::open(path).unwrap();
        connection.pragma_update(None, "journal_mode", "WAL").unwrap();
        connection.pragma_update(None, "synchronous", "FULL").unwrap();
        connection
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS mob_events (cursor INTEGER PRIMARY KEY AUTOINCREMENT, timestamp_ms INTEGER NOT NULL, body BLOB NOT NULL)",
            )
            .unwrap();
        SqliteEvents { connection: Mutex::new(connection) }
    }
}

fn sqlite_error(error: rusqlite::Error) -> MobError {
    MobError::StorageError(Box::new(error))
}

fn decode(cursor: i64, timestamp_ms: i64, body: &[u8]) -> Result<MobEvent, MobError> {
    #[derive(serde::Deserialize)]
    struct Body {
        mob_id: MobId,
        kind: MobEventKind,
    }
    let body: Body = serde_json::from_slice(body).map_err(|error| MobError::StorageError(Box::new(error)))?;
    Ok(MobEvent {
        cursor: cursor as u64,
        timestamp: DateTime::from_timestamp_millis(timestamp_ms).unwrap_or_default(),
        mob_id: body.mob_id,
        kind: body.kind,
    })
}

#[async_trait]
impl MobEventStore for SqliteEvents {
    async fn append(&self, event: NewMobEvent) -> Result<MobEvent, MobError> {
        Ok(self.append_batch(vec![event]).await?.pop().unwrap())
    }

    async fn append_batch(&self, events: Vec<NewMobEvent>) -> Result<Vec<MobEvent>, MobError> {
        let mut connection = self.connection.lock().unwrap();
        let transaction = connection.transaction().map_err(sqlite_error)?;
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            let timestamp = event.timestamp.unwrap_or_else(Utc::now);
            let body = serde_json::to_vec(&serde_json::json!({ "mob_id": event.mob_id, "kind": event.kind })).unwrap();
            transaction
                .execute(
                    "INSERT INTO mob_events (timestamp_ms, body) VALUES (?1, ?2)",
                    rusqlite::params![timestamp.timestamp_millis(), body],
                )
                .map_err(sqlite_error)?;
            let cursor = transaction.last_insert_rowid() as u64;
            out.push(MobEvent { cursor, timestamp, mob_id: event.mob_id, kind: event.kind });
        }
        transaction.commit().map_err(sqlite_error)?;
        Ok(out)
    }

    async fn poll(&self, after_cursor: u64, limit: usize) -> Result<Vec<MobEvent>, MobError> {
        let connection = self.connection.lock().unwrap();
        let mut statement = connection
            .prepare_cached(
                "SELECT cursor, timestamp_ms, body FROM mob_events WHERE cursor > ?1 ORDER BY cursor LIMIT ?2",
            )
            .map_err(sqlite_error)?;
        let rows = statement
            .query_map(rusqlite::params![after_cursor as i64, limit as i64], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, Vec<u8>>(2)?))
            })
            .map_err(sqlite_error)?;
        let mut out = Vec::new();
        for row in rows {
            let (cursor, timestamp_ms, body) = row.map_err(sqlite_error)?;
            out.push(decode(cursor, timestamp_ms, &body)?);
        }
        Ok(out)
    }

    async fn replay_all(&self) -> Result<Vec<MobEvent>, MobError> {
        self.poll(0, usize::MAX >> 1).await
    }

    async fn clear(&self) -> Result<(), MobError> {
        self.connection.lock().unwrap().execute("DELETE FROM mob_events", []).map_err(sqlite_error)?;
        Ok(())
    }
}

/// The systems compared.
fn stores(name: &str) -> Vec<(&'static str, Arc<dyn MobEventStore>)> {
    let annals = AnnalsMobStores::open(scratch(&format!("{name}-annals"))).unwrap().event_store();
    let sqlite = SqliteEvents::open(scratch(&format!("{name}-sqlite")).join("events.sqlite"));
    let redb = RedbMobEventStore::open(scratch(&format!("{name}-redb")).join("events.redb")).unwrap();
    vec![
        ("annals_mob", Arc::new(annals)),
        ("sqlite_wal_full", Arc::new(sqlite)),
        ("meerkat_redb_store", Arc::new(redb)),
    ]
}

fn append_one_at_a_time(c: &mut Criterion) {
    let mut group = c.benchmark_group("mob_events_append");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    let rt = runtime();
    for (name, store) in stores("append") {
        let mut n = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(store.append(new_event(n))).unwrap();
                n += 1;
            })
        });
    }
    group.finish();
}

fn append_concurrently(c: &mut Criterion) {
    let mut group = c.benchmark_group("mob_events_append_16_appenders");
    let appenders = if smoke() { 2 } else { APPENDERS };
    group.throughput(Throughput::Elements(appenders as u64));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    let rt = runtime();
    for (name, store) in stores("concurrent") {
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let tasks: Vec<_> = (0..appenders as u64)
                        .map(|n| {
                            let store = store.clone();
                            tokio::spawn(async move { store.append(new_event(n)).await.unwrap() })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                })
            })
        });
    }
    group.finish();
}

fn poll_a_page(c: &mut Criterion) {
    let mut group = c.benchmark_group("mob_events_poll_100");
    let events = if smoke() { 2 * PAGE_EVENTS as u64 } else { 10_000 };
    group.throughput(Throughput::Elements(PAGE_EVENTS as u64));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    let rt = runtime();
    for (name, store) in stores("poll") {
        let mut cursors = Vec::with_capacity(events as usize);
        for chunk in 0..events / 100 {
            let batch = (0..100).map(|k| new_event(chunk * 100 + k)).collect();
            cursors.extend(rt.block_on(store.append_batch(batch)).unwrap().into_iter().map(|e| e.cursor));
        }
        let starts: Vec<u64> = cursors[..cursors.len() - PAGE_EVENTS].to_vec();
        let mut at = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                let after = starts[at % starts.len()];
                at = at.wrapping_add(7919);
                let page = rt.block_on(store.poll(after, PAGE_EVENTS)).unwrap();
                assert_eq!(page.len(), PAGE_EVENTS);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append_one_at_a_time, append_concurrently, poll_a_page);
criterion_main!(benches);
