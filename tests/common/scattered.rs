//! A log whose one long run is scattered over it (reviews 17 and 18): the
//! first read of that run after an open from the index image is one read
//! call a row, enough of them to be shared with helper threads
//! (`index::Index::prefetch`).

use std::path::Path;

use annals::{CompactionOptions, Durability, Expectation, IndexImageWrites, Log, Options};

/// Segments of 4 MiB, images at close, no background compaction.
pub fn options() -> Options {
    Options {
        segment_bytes: 4 << 20,
        record_bytes_max: 4096,
        durability: Durability::Flush,
        compaction: CompactionOptions { background: false, ..CompactionOptions::default() },
        index_image: IndexImageWrites::AtClose,
        ..Options::default()
    }
}

/// Rows of the long run.
pub const ROWS: u64 = 1500;

/// A log of a long run (`long`) whose rows lie about 24 KiB apart, between
/// the rows of many short ones: no 64 KiB window holds four of them, so
/// each row's first read after an open from the image is a read call, far
/// more of them than a read keeps to itself. Closed cleanly (an image of
/// all of it). Returns the long run's rows as written.
pub fn scattered_log(dir: &Path) -> Vec<Vec<u8>> {
    interleaved_log(dir, "long", ROWS, 500, |i| super::unique_payload(i, 200 + (i % 7) as usize * 40))
}

/// A log of `rows` rows of `stream` (`row(i)` for the `i`th), each followed
/// by 24 rows of 1,000 bytes of `shorts` short runs; closed cleanly.
/// Returns the stream's rows as written.
pub fn interleaved_log(dir: &Path, stream: &str, rows: u64, shorts: u64, row: impl Fn(u64) -> Vec<u8>) -> Vec<Vec<u8>> {
    let log = Log::open(dir, options()).unwrap();
    let mut written = Vec::new();
    let mut pending = Vec::new();
    for i in 0..rows {
        let payload = row(i);
        pending.push(log.append(stream, Expectation::Any, payload.clone()));
        written.push(payload);
        for k in 0..24 {
            let other = format!("short-{}", (i * 24 + k) % shorts);
            pending.push(log.append(other, Expectation::Any, super::unique_payload(1_000_000 + i * 24 + k, 1000)));
        }
        if pending.len() >= 250 {
            pending.drain(..).for_each(|p| {
                p.wait().unwrap();
            });
        }
    }
    pending.into_iter().for_each(|p| {
        p.wait().unwrap();
    });
    log.close().wait().unwrap();
    written
}
