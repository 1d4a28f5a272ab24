//! Review 9: `annals repair` (`annals::inspect::repair`) copies a log of
//! any size in memory that does not grow with it. A test binary of its
//! own, because it counts every allocation of the process (a global
//! allocator that keeps the peak of the bytes allocated at once).
//!
//! A global allocator is an `unsafe` trait: this one only forwards to the
//! system allocator and counts, and is the only `unsafe` outside `fs.rs`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use annals::{Expectation, Log, Lsn, Options};

/// The system allocator, counting the bytes allocated now and the most
/// allocated at once since the last [`reset_peak`].
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the
// counters only observe the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller promised for `layout`.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            let now = ALLOCATED.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` came from `alloc` with this `layout`.
        unsafe { System.dealloc(pointer, layout) };
        ALLOCATED.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn reset_peak() {
    PEAK.store(ALLOCATED.load(Ordering::SeqCst), Ordering::SeqCst);
}

/// A damaged log of 96 MiB of payloads is repaired with at most 32 MiB
/// allocated at once. Found in review 9: repair read every intact record of
/// the source into memory before it copied the first, so a damaged log
/// larger than the machine's memory could not be repaired at all (and one
/// of 96 MiB took more than 96 MiB).
#[test]
fn repair_copies_a_log_in_memory_that_does_not_grow_with_it() {
    let source = tempfile::tempdir().unwrap();
    let payload_bytes = 64 << 10;
    let records = 1536u64; // 96 MiB of payloads
    let log = Log::open(source.path(), Options::default()).unwrap();
    for i in 0..records {
        let payload = vec![(i % 251) as u8; payload_bytes];
        log.append_with(format!("s{}", i % 5), Expectation::Any, payload, annals::Durability::Flush).wait().unwrap();
    }
    log.close().wait().unwrap();
    // Damage one frame in the middle, so there is something to repair.
    let segment = source.path().join("00000000000000000001.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[annals::segment::SEGMENT_HEADER_BYTES + 100] ^= 0x55;
    std::fs::write(&segment, bytes).unwrap();

    let copy = tempfile::tempdir().unwrap();
    let into = copy.path().join("copy");
    reset_peak();
    let before = ALLOCATED.load(Ordering::SeqCst);
    let report = annals::inspect::repair(source.path(), &into, Options::default()).expect("repair");
    let peak_bytes = PEAK.load(Ordering::SeqCst) - before;
    // The damaged record is lost, and with it every later record of its
    // stream (they no longer follow it); every other record is copied.
    let dropped = report.records_dropped.len() as u64;
    assert_eq!(report.records_copied + dropped, records - 1, "copied {}, dropped {dropped}", report.records_copied);
    assert!(report.records_copied >= records * 3 / 4, "copied {}", report.records_copied);
    assert!(peak_bytes <= 32 << 20, "repair allocated {peak_bytes} bytes at once for 96 MiB of records");
    let copied = Log::open(&into, Options::default()).unwrap();
    assert_eq!(copied.last_lsn().unwrap(), Lsn(records), "the copy hands out none of the source's lsns again");
    assert_eq!(copied.read_all(Lsn::ZERO, usize::MAX).unwrap().len() as u64, report.records_copied);
    copied.close().wait().unwrap();
}
