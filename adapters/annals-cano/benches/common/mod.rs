//! What the cano adapter's bench and its counting driver share: the rows,
//! the scratch directories and the stores compared.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use annals_cano::AnnalsCheckpointStore;
use cano::recovery::{CheckpointRow, CheckpointStore, RedbCheckpointStore};

/// Bytes of each row's output blob.
pub const BLOB_BYTES: usize = 200;
/// Rows of a run that W3 loads.
pub const RUN_ROWS: u64 = 20;

/// Whether this is CI's smoke run (tiny data, one iteration).
pub fn smoke() -> bool {
    std::env::var_os("ANNALS_BENCH_SMOKE").is_some()
}

/// A fresh directory under `ANNALS_BENCH_DIR` (default: the temp dir).
pub fn scratch(name: &str) -> PathBuf {
    let root = std::env::var_os("ANNALS_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let path = root.join(format!("annals-cano-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    path
}

/// The runtime the benches drive the stores from.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// cano's row: a ~12-byte state, an ~8-byte task id and a 200-byte blob.
pub fn row(sequence: u64, salt: u64) -> CheckpointRow {
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

/// The Annals adapter over the log in `dir`.
pub fn annals_store(dir: &Path) -> Arc<dyn CheckpointStore> {
    Arc::new(AnnalsCheckpointStore::open(dir).unwrap())
}

/// cano's redb store in the file `cano.redb` of `dir`.
pub fn redb_store(dir: &Path) -> Arc<dyn CheckpointStore> {
    Arc::new(RedbCheckpointStore::new(dir.join("cano.redb")).unwrap())
}

/// The systems compared, each in a fresh directory: the Annals adapter and
/// cano's redb store.
pub fn stores(name: &str) -> Vec<(&'static str, Arc<dyn CheckpointStore>)> {
    vec![
        ("annals_cano", annals_store(&scratch(&format!("{name}-annals")))),
        ("cano_redb_store", redb_store(&scratch(&format!("{name}-redb")))),
    ]
}

/// Fills `store` with `runs` runs of [`RUN_ROWS`] rows each (`run-0`, ...).
pub async fn fill_runs(store: &dyn CheckpointStore, runs: u64) {
    for workflow in 0..runs {
        for sequence in 0..RUN_ROWS {
            store.append(&format!("run-{workflow}"), row(sequence, workflow)).await.unwrap();
        }
    }
}

/// Bytes of an Annals frame holding one bench row (what the log's writer
/// hands `pwrite` per W1 append): the row's MessagePack in the stores'
/// envelope, the stream name and the frame header.
pub const RAW_FRAME_BYTES: usize = 320;

/// W1's floor: a file preallocated with synced zeros, into which each
/// append writes a frame's bytes at the next offset and fdatasyncs.
pub struct RawFile {
    file: std::fs::File,
    offset: u64,
    preallocated_bytes: u64,
}

impl RawFile {
    /// Creates `raw` in `dir`, preallocated with `preallocated_bytes` of zeros.
    pub fn new(dir: &Path, preallocated_bytes: u64) -> RawFile {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(dir.join("raw")).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for at in (0..preallocated_bytes).step_by(zeros.len()) {
            file.write_all_at(&zeros, at).unwrap();
        }
        file.sync_all().unwrap();
        RawFile { file, offset: 0, preallocated_bytes }
    }

    /// Writes `bytes` at the next offset (wrapping to the start at the end
    /// of the preallocation) and fdatasyncs.
    pub fn append(&mut self, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        if self.offset + bytes.len() as u64 > self.preallocated_bytes {
            self.offset = 0;
        }
        self.file.write_all_at(bytes, self.offset).unwrap();
        self.file.sync_data().unwrap();
        self.offset += bytes.len() as u64;
    }
}
