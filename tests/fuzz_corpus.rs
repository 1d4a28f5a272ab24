//! Replays the committed fuzz corpus and every input that ever failed
//! (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through the
//! targets' library bodies, so CI needs no nightly toolchain.

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) -> usize {
    let mut inputs = 0;
    for folder in ["corpus", "regressions"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(folder).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).unwrap();
            if let Err(panic) = std::panic::catch_unwind(|| body(&data)) {
                std::panic::resume_unwind(Box::new(format!(
                    "{}: {:?}",
                    path.display(),
                    panic.downcast_ref::<String>()
                )));
            }
            inputs += 1;
        }
    }
    println!("{target}: {inputs} inputs replayed");
    inputs
}

#[test]
fn decode_segment_corpus() {
    assert!(replay("decode_segment", annals::sim::fuzz::decode_segment) > 0);
}

#[test]
fn round_trip_corpus() {
    assert!(replay("round_trip", annals::sim::fuzz::round_trip) > 0);
}

#[test]
fn operations_corpus() {
    assert!(replay("operations", annals::sim::fuzz::operations) > 0);
}

#[test]
fn open_directory_corpus() {
    assert!(replay("open_directory", annals::sim::fuzz::open_directory) > 0);
}

#[test]
fn lifecycle_corpus() {
    assert!(replay("lifecycle", annals::sim::fuzz::lifecycle) > 0);
}
