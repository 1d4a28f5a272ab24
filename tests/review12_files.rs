//! Review 12: damaged or hostile files in a log's directory, read by the
//! read-only tools (`LogReader`, `annals stats`, `dump`, `tail`) and
//! opened by a writer.
//!
//! Each test is named after what it attacks; one that found a bug failed
//! before the fix.

mod common;

use std::path::Path;

use annals::{Log, LogReader, Lsn, Options};

fn closed_log_with_an_image(dir: &Path) -> Vec<annals::Record> {
    let options = Options { index_image: annals::IndexImageWrites::AtClose, ..common::small_options() };
    let records = common::write_closed_log(dir, options, 60, 150);
    assert!(dir.join(annals::image::IMAGE_FILE_NAME).exists(), "a clean close writes an index image");
    records
}

/// The index image is an optimisation, never needed: one that cannot be
/// opened at all (a directory, or a symbolic link that loops, under its
/// name) is a full scan for a reader, as a damaged one is. It made
/// `LogReader::open` fail with an I/O error, and with it `annals stats`,
/// `dump` and `tail`, on a log whose every record was intact.
#[test]
fn an_index_image_that_cannot_be_opened_does_not_fail_a_reader() {
    for how in ["directory", "symlink loop"] {
        let dir = tempfile::tempdir().unwrap();
        let records = closed_log_with_an_image(dir.path());
        let image = dir.path().join(annals::image::IMAGE_FILE_NAME);
        std::fs::remove_file(&image).unwrap();
        match how {
            "directory" => std::fs::create_dir(&image).unwrap(),
            _ => std::os::unix::fs::symlink(&image, &image).unwrap(),
        }
        let reader = LogReader::open(dir.path()).unwrap_or_else(|error| panic!("{how}: {error}"));
        assert!(reader.problems().is_empty(), "{how}: {:?}", reader.problems());
        assert!(
            matches!(reader.report().index_image, annals::image::ImageUse::Rejected { .. }),
            "{how}: {:?}",
            reader.report().index_image
        );
        assert_eq!(reader.read_all(Lsn::ZERO, usize::MAX).unwrap(), records, "{how}");
        reader.stats().unwrap_or_else(|error| panic!("{how}: stats: {error}"));
    }
}

/// A writer's open removes an image it cannot use; one it cannot open is
/// no different when it can remove it (a symbolic link that loops).
#[test]
fn an_index_image_that_cannot_be_opened_is_removed_by_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let records = closed_log_with_an_image(dir.path());
    let image = dir.path().join(annals::image::IMAGE_FILE_NAME);
    std::fs::remove_file(&image).unwrap();
    std::os::unix::fs::symlink(&image, &image).unwrap();
    let log = Log::open(dir.path(), common::small_options()).unwrap();
    assert_eq!(log.read_all(Lsn::ZERO, usize::MAX).unwrap(), records);
    assert!(std::fs::symlink_metadata(&image).is_err(), "the unusable image is still there");
}
