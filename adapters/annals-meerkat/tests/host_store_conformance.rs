//! meerkat's published conformance suite, `chapters::host_store`, run
//! unmodified against `AnnalsHostStore`: the nine obligations of the host
//! store contract, at a scale of 210 scopes, through a factory whose every
//! open stands for a new process.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use annals_meerkat::{AnnalsHostStore, LeaseClock, SystemClock};
use meerkat_core::host_store::{FenceTiming, HostStore};
use meerkat_store_conformance::{ConformanceFailure, HostStoreFactory, chapters};

/// The wall clock plus an offset that only grows: the store's clock, which
/// `lapse_fence_leases` advances by a whole lease.
#[derive(Default)]
struct AdvancingClock {
    offset_ms: AtomicU64,
}

impl LeaseClock for AdvancingClock {
    fn now_ms(&self) -> u64 {
        SystemClock.now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }
}

/// One realm in one directory. Annals locks the directory while a handle
/// on its log lives, so handles opened while another lives share its log
/// (each a separate store, holding no state of its own); once every handle
/// is gone (the chapter drops a "killed" process's handle and its commits
/// in flight before it opens the next), the next open reopens the log from
/// disk and recovers it, as a new process would.
struct AnnalsRealm {
    dir: PathBuf,
    log: Mutex<Weak<annals::Log>>,
    clock: Arc<AdvancingClock>,
    reopens: AtomicU64,
}

impl AnnalsRealm {
    fn new(dir: PathBuf) -> AnnalsRealm {
        AnnalsRealm { dir, log: Mutex::new(Weak::new()), clock: Arc::default(), reopens: AtomicU64::new(0) }
    }

    fn log(&self) -> Result<Arc<annals::Log>, ConformanceFailure> {
        let mut shared = self.log.lock().unwrap();
        if let Some(log) = shared.upgrade() {
            return Ok(log);
        }
        // The last handle of the previous "process" may still be closing
        // on another thread (a write it spawned finished after the chapter
        // dropped the handle): wait for its lock, as a restarted process would.
        let mut attempts = 0;
        let log = loop {
            let options = annals::Options { record_bytes_max: annals_meerkat::RECORD_BYTES_MAX, ..Default::default() };
            match annals::Log::open(&self.dir, options) {
                Ok(log) => break Arc::new(log),
                Err(annals::Error::Locked { .. }) if attempts < 500 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(error) => {
                    return Err(ConformanceFailure::new("factory", "open", format!("cannot open the log: {error}")));
                }
            }
        };
        *shared = Arc::downgrade(&log);
        self.reopens.fetch_add(1, Ordering::SeqCst);
        Ok(log)
    }
}

#[async_trait::async_trait]
impl HostStoreFactory for AnnalsRealm {
    async fn open(&self) -> Result<Arc<dyn HostStore>, ConformanceFailure> {
        let clock: Arc<dyn LeaseClock> = self.clock.clone();
        Ok(Arc::new(AnnalsHostStore::from_log(self.log()?).with_lease_clock(clock)))
    }

    async fn lapse_fence_leases(&self) -> Result<(), ConformanceFailure> {
        let lease_ms = u64::try_from(FenceTiming::default().lease().as_millis()).unwrap();
        self.clock.offset_ms.fetch_add(lease_ms + 1, Ordering::SeqCst);
        Ok(())
    }
}

/// Every row of the chapter: acquire on an empty realm, reopen, kill
/// (before, during and after a two-scope batch), stale fence, takeover with
/// an unknown commit, same version twice, retry, rows/removal/listing (with
/// a batch of exactly 8 MiB), independence of 210 scopes, and a stalled
/// commit that blocks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annals_host_store_passes_the_host_store_chapter() {
    let dir = tempfile::tempdir().unwrap();
    let realm = AnnalsRealm::new(dir.path().join("realm"));
    if let Err(failure) = chapters::host_store(&realm).await {
        panic!(
            "the host_store chapter failed at row {:?}: {}\n(full failure: {failure})",
            failure.step(),
            failure.detail()
        );
    }
    // The kill rows drop every handle before the next open: the realm was
    // really reopened from disk, not only shared.
    assert!(realm.reopens.load(Ordering::SeqCst) > 1, "the log was never reopened from disk");
}

/// The reference store passes the same chapter here, so a failure above is
/// the adapter's, not the harness's or this build's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_store_passes_the_same_chapter() {
    struct Reference(Arc<meerkat_store_conformance::InMemoryHostStore>);

    #[async_trait::async_trait]
    impl HostStoreFactory for Reference {
        async fn open(&self) -> Result<Arc<dyn HostStore>, ConformanceFailure> {
            Ok(self.0.clone())
        }

        async fn lapse_fence_leases(&self) -> Result<(), ConformanceFailure> {
            self.0.lapse_fence_leases();
            Ok(())
        }
    }

    let reference = Reference(Arc::default());
    chapters::host_store(&reference).await.unwrap();
}
