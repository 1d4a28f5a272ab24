//! Every damage to a small, cleanly closed log gives either the exact data
//! (the damage hit only the in-flight tail: the close marker, or zeros past
//! the end) or a typed corruption error; never wrong data, never silent
//! loss. The read-only verifier (`annals verify`) reports the same file and
//! offset as the failed open. Runs on the simulated file system for speed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use annals::sim::fs::SimFs;
use annals::{Batch, Error, Expectation, Log, LogReader, Lsn, Options, Record, SegmentPreparation, StreamSeq};

const SECTOR: usize = 512;

fn options(fs: &SimFs) -> Options {
    Options {
        segment_bytes: 4096,
        record_bytes_max: 2048,
        segment_preparation: SegmentPreparation::Inline,
        file_system: Arc::new(fs.clone()),
        // Every frame scanned at open: the sweep is of the scan's decisions
        // (tests/index_image.rs has damage under an image).
        index_image: annals::IndexImageWrites::Off,
        ..Options::default()
    }
}

fn dir() -> &'static Path {
    annals::sim::sim_dir()
}

/// A cleanly closed log of three segments and its state file, as durable
/// files, and its records.
fn small_log(salt: u8) -> (Vec<(String, Vec<u8>)>, Vec<Record>) {
    let fs = SimFs::new();
    let log = Log::open(dir(), options(&fs)).unwrap();
    for i in 0..40u64 {
        let payload: Vec<u8> = (0..(i * 37 % 300) as usize).map(|b| (b as u8) ^ salt).collect();
        log.append(format!("s{}", i % 3), Expectation::Any, payload).wait().unwrap();
    }
    log.snapshot("s1", StreamSeq(3), &b"snapshot"[..]).wait().unwrap();
    log.clear("s2", Expectation::Any).wait().unwrap();
    log.commit(Batch::new().append("b", Expectation::NoStream, &b"x"[..]).append("s0", Expectation::Any, &b"y"[..]))
        .wait()
        .unwrap();
    let records = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
    log.close().wait().unwrap();
    let files = fs
        .durable_files()
        .into_iter()
        .filter(|(path, _)| path.file_name().is_some_and(|name| name != "LOCK"))
        .map(|(path, bytes)| (path.file_name().unwrap().to_str().unwrap().to_owned(), bytes))
        .collect();
    (files, records)
}

#[derive(Default, Debug)]
struct Tally {
    cases: u64,
    exact: u64,
    corruption: u64,
}

/// Opens damaged files; the outcome must be the exact records or corruption
/// that the verifier reports at the same place.
fn check(files: &[(String, Vec<u8>)], expected: &[Record], what: &str, tally: &mut Tally) {
    tally.cases += 1;
    let fs = SimFs::with_files(dir(), files);
    let verified = LogReader::open_with(dir(), &options(&fs)).map(|r| r.problems().to_vec());
    match Log::open(dir(), options(&fs)) {
        Ok(log) => {
            let got = log.read_all(Lsn::ZERO, usize::MAX).unwrap_or_else(|e| panic!("{what}: read failed: {e}"));
            assert!(
                got == expected,
                "{what}: opened with different data ({} records, expected {})",
                got.len(),
                expected.len()
            );
            let problems = verified.unwrap_or_else(|e| panic!("{what}: verify failed to open: {e}"));
            assert!(problems.is_empty(), "{what}: verify reports {problems:?} where open found none");
            tally.exact += 1;
        }
        Err(Error::Corruption(corruption)) => {
            let problems = verified.unwrap_or_else(|e| panic!("{what}: verify failed to open: {e}"));
            let first = problems.first().unwrap_or_else(|| panic!("{what}: open found {corruption}, verify nothing"));
            assert_eq!((&first.file, first.offset), (&corruption.file, corruption.offset), "{what}");
            tally.corruption += 1;
        }
        Err(other) => panic!("{what}: open failed with a non-corruption error: {other}"),
    }
}

fn with_file(files: &[(String, Vec<u8>)], index: usize, bytes: Vec<u8>) -> Vec<(String, Vec<u8>)> {
    let mut out = files.to_vec();
    out[index].1 = bytes;
    out
}

#[test]
fn every_single_bit_flip_gives_exact_data_or_typed_corruption() {
    let (files, records) = small_log(0);
    assert!(files.len() >= 3, "the sweep needs a sealed, a middle and a last segment");
    let mut tally = Tally::default();
    for (index, (name, bytes)) in files.iter().enumerate() {
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            check(&with_file(&files, index, damaged), &records, &format!("{name} bit {bit}"), &mut tally);
        }
    }
    println!("bit flips: {tally:?}");
    assert!(tally.corruption > 0 && tally.exact > 0);
}

#[test]
fn zeroed_garbage_and_duplicated_sectors_give_exact_data_or_typed_corruption() {
    let (files, records) = small_log(0);
    let mut tally = Tally::default();
    for (index, (name, bytes)) in files.iter().enumerate() {
        for sector in 0..bytes.len() / SECTOR {
            let range = sector * SECTOR..(sector + 1) * SECTOR;
            let mut zeroed = bytes.clone();
            zeroed[range.clone()].fill(0);
            check(&with_file(&files, index, zeroed), &records, &format!("{name} zeroed sector {sector}"), &mut tally);
            let mut garbage = bytes.clone();
            for (i, byte) in garbage[range.clone()].iter_mut().enumerate() {
                *byte = (i as u8).wrapping_mul(151).wrapping_add(sector as u8) | 1;
            }
            check(&with_file(&files, index, garbage), &records, &format!("{name} garbage sector {sector}"), &mut tally);
            if range.end < bytes.len() {
                let mut duplicated = bytes.clone();
                duplicated.copy_within(range.clone(), range.end);
                check(
                    &with_file(&files, index, duplicated),
                    &records,
                    &format!("{name} sector {sector} duplicated"),
                    &mut tally,
                );
            }
        }
    }
    println!("sectors: {tally:?}");
}

#[test]
fn truncation_at_every_offset_gives_exact_data_or_typed_corruption() {
    let (files, records) = small_log(0);
    let mut tally = Tally::default();
    for (index, (name, bytes)) in files.iter().enumerate() {
        for len in 0..bytes.len() {
            check(
                &with_file(&files, index, bytes[..len].to_vec()),
                &records,
                &format!("{name} cut at {len}"),
                &mut tally,
            );
        }
    }
    println!("truncations: {tally:?}");
    assert_eq!(tally.exact, 0, "a shortened segment is always reported");
}

#[test]
fn a_removed_middle_segment_or_a_segment_from_another_log_is_typed_corruption() {
    let (files, records) = small_log(0);
    let (other, _) = small_log(1);
    let mut tally = Tally::default();
    let mut removed = files.clone();
    removed.remove(1);
    check(&removed, &records, "middle segment removed", &mut tally);
    let names: BTreeMap<&String, usize> = files.iter().enumerate().map(|(i, (n, _))| (n, i)).collect();
    for (name, bytes) in &other {
        if let Some(&index) = names.get(name) {
            check(&with_file(&files, index, bytes.clone()), &records, &format!("{name} from another log"), &mut tally);
        }
    }
    assert_eq!((tally.exact, tally.corruption), (0, tally.cases));
    let _unused: Option<PathBuf> = None;
}

/// Issue 9, case 3: deleting the newest segment went unnoticed, and so did
/// deleting the state file that records it. Every file of a cleanly closed
/// log, removed in turn, is typed corruption; none leaves a log that opens
/// with fewer records.
#[test]
fn the_deletion_of_each_file_in_turn_is_typed_corruption() {
    let (files, records) = small_log(0);
    assert!(files.iter().any(|(name, _)| name == "annals.state"));
    let mut tally = Tally::default();
    for index in 0..files.len() {
        let mut removed = files.clone();
        let (name, _) = removed.remove(index);
        check(&removed, &records, &format!("{name} deleted"), &mut tally);
    }
    assert_eq!((tally.exact, tally.corruption), (0, tally.cases), "{tally:?}");
}
