//! Review 8 of `LogReader` past a damaged sealed segment: the LSNs from
//! the damage to the next segment's first are a hole, which a read reaching
//! it answers as corruption naming the damage. These read every LSN and
//! every page boundary around the holes' edges, with damage in two
//! segments, in the first segment, and in a compacted segment, against a
//! model built from what the log held before the damage.

mod common;

use std::path::{Path, PathBuf};

use annals::{Error, LogReader, Lsn, Record};

/// Damage in one segment: the file, the offset of the damaged frame, the
/// first LSN lost and the first LSN of the next segment (the hole's end).
struct Damage {
    file: PathBuf,
    offset: usize,
    lost_from: Lsn,
    hole_to: Lsn,
}

/// Flips a bit in the middle frame (or the first, with `first_frame`) of
/// each of `damaged` (positions in the list of segments), and says what
/// each hole is.
fn damage_segments(dir: &Path, records: &[Record], damaged: &[usize], first_frame: bool) -> Vec<Damage> {
    let segments = common::segment_files(dir);
    let mut damages = Vec::new();
    for &position in damaged {
        assert!(position + 1 < segments.len(), "a sealed segment with one after it");
        let file = segments[position].clone();
        let frames = common::frame_offsets(&file);
        let offset = if first_frame { frames[0] } else { frames[frames.len() / 2] };
        // Records found by their payloads (a prune or a base of a compacted
        // segment has none): the first lost is the first after the last intact.
        let with_payload: Vec<Record> = records.iter().filter(|record| !record.payload.is_empty()).cloned().collect();
        let before = common::records_before(dir, &with_payload, &file, offset);
        let lost_from = match before.last() {
            Some(intact) => records.iter().find(|record| record.lsn > intact.lsn).unwrap().lsn,
            None => records[0].lsn,
        };
        let name = segments[position + 1].file_name().and_then(|name| name.to_str()).unwrap();
        let hole_to = annals::segment::parse_segment_file_name(name)
            .or_else(|| annals::segment::parse_compacted_file_name(name).map(|(first, _generation)| first))
            .unwrap();
        damages.push(Damage { file, offset, lost_from, hole_to });
    }
    // Damage the files only once every hole is known (records_before reads them).
    for damage in &damages {
        common::flip_bit(&damage.file, damage.offset + annals::frame::FRAME_HEADER_BYTES + 10, 3);
    }
    damages
}

/// The damage whose hole holds `lsn`, if any.
fn hole_of(damages: &[Damage], lsn: Lsn) -> Option<&Damage> {
    damages.iter().find(|damage| damage.lost_from <= lsn && lsn < damage.hole_to)
}

/// What `read_all_on_disk(after, limit)` must answer: the records after
/// `after` up to `limit`, or the corruption of the first hole met first.
fn expected_page(records: &[Record], damages: &[Damage], after: Lsn, limit: usize) -> Result<Vec<Record>, PathBuf> {
    let mut page = Vec::new();
    let mut lsn = Lsn(after.0 + 1);
    if let Some(damage) = hole_of(damages, lsn) {
        return Err(damage.file.clone());
    }
    for record in records.iter().filter(|record| record.lsn > after) {
        if page.len() == limit {
            break;
        }
        // An LSN skipped on the way to this record is in a hole if any is.
        while lsn < record.lsn {
            if let Some(damage) = hole_of(damages, lsn) {
                return Err(damage.file.clone());
            }
            lsn = Lsn(lsn.0 + 1);
        }
        if let Some(damage) = hole_of(damages, record.lsn) {
            return Err(damage.file.clone());
        }
        page.push(record.clone());
        lsn = Lsn(record.lsn.0 + 1);
    }
    Ok(page)
}

/// Reads every page from every LSN, at limits that end a page right
/// before, at and after each hole's edges, and checks each against the
/// model; the live reads and stream reads name the first damage.
fn check_every_page(dir: &Path, records: &[Record], damages: &[Damage]) {
    let opened = LogReader::open(dir).unwrap();
    let scanning = LogReader::open_scanning(dir, &annals::Options::default()).unwrap();
    let last = records.last().unwrap().lsn;
    for (how, reader) in [("open", &opened), ("open_scanning", &scanning)] {
        let problems: Vec<(PathBuf, u64)> =
            reader.problems().iter().map(|problem| (problem.file.clone(), problem.offset)).collect();
        let expected: Vec<(PathBuf, u64)> =
            damages.iter().map(|damage| (damage.file.clone(), damage.offset as u64)).collect();
        assert_eq!(problems, expected, "{how}: every damage reported");
        for after in 0..=last.0 + 1 {
            for limit in [1, 2, 3, 5, 17, usize::MAX] {
                let read = reader.read_all_on_disk(Lsn(after), limit);
                let want = expected_page(records, damages, Lsn(after), limit);
                match (&read, &want) {
                    (Ok(page), Ok(wanted)) => assert_eq!(page, wanted, "{how}: after {after}, limit {limit}"),
                    (Err(Error::Corruption(corruption)), Err(file)) => {
                        assert_eq!(&corruption.file, file, "{how}: after {after}, limit {limit}")
                    }
                    _ => panic!("{how}: after {after}, limit {limit}: read {read:?}, wanted {want:?}"),
                }
            }
            let lsn = Lsn(after);
            let read = reader.read_lsn(lsn);
            if lsn.0 > 0 && lsn <= last {
                // An LSN in a hole names its damage; any other, whose
                // liveness the first damage may hide, names that.
                let named = &hole_of(damages, lsn).unwrap_or(&damages[0]).file;
                assert!(
                    matches!(&read, Err(Error::Corruption(c)) if c.file == *named),
                    "{how}: read_lsn({after}) names {named:?}: {read:?}"
                );
            }
        }
        let stream = reader.read_stream("stream-0");
        assert!(matches!(&stream, Err(Error::Corruption(c)) if c.file == damages[0].file), "{how}: {stream:?}");
        assert_eq!(reader.last_lsn(), last, "{how}");
    }
}

/// Damage in two sealed segments: two holes, each named by its own damage.
#[test]
fn a_reader_past_damage_in_two_sealed_segments_names_each_hole_at_its_edges() {
    let dir = tempfile::tempdir().unwrap();
    let records = common::write_closed_log(dir.path(), common::small_options(), 120, 300);
    assert!(common::segment_files(dir.path()).len() >= 6);
    let damages = damage_segments(dir.path(), &records, &[1, 3], false);
    check_every_page(dir.path(), &records, &damages);
}

/// Damage in the first frame of a segment: the first (nothing before it,
/// the hole from the log's first LSN) and a middle one (the hole right
/// after the last record of the segment before).
#[test]
fn a_reader_past_damage_in_a_segment_s_first_frame_names_the_hole_from_the_segment_before() {
    for position in [0, 2] {
        let dir = tempfile::tempdir().unwrap();
        let records = common::write_closed_log(dir.path(), common::small_options(), 80, 300);
        let damages = damage_segments(dir.path(), &records, &[position], true);
        if position == 0 {
            assert_eq!(damages[0].lost_from, records[0].lsn);
        }
        check_every_page(dir.path(), &records, &damages);
    }
}

/// Review 8: a reader past damage in a compacted segment stopped reading
/// compacted segments there: every later compacted segment was left out,
/// and the first ordinary segment was reported as a `MissingSegment` (a
/// second, false problem) whose hole covered the records of all of them,
/// on disk and whole. Found by reading every page of such a log. The
/// reader now goes on at the next compacted segment, as it does past an
/// ordinary one (segments-format.md, section 7): the hole runs from the
/// first record lost to that segment's first LSN, and the compacted
/// segment's gaps (records compaction dropped) read as ever.
#[test]
fn a_reader_past_damage_in_a_compacted_segment_skipped_every_later_compacted_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = common::open(dir.path());
        for i in 0..160u64 {
            let stream = format!("stream-{}", i % 4);
            log.append(&stream, annals::Expectation::Any, common::unique_payload(i, 300)).wait().unwrap();
        }
        // Stream 3 pruned: a quarter of the records dead, compacted away.
        let last = log.next_seq("stream-3").unwrap().0;
        log.prune("stream-3", annals::StreamSeq(last), annals::PruneSnapshots::Before(Lsn::ZERO)).wait().unwrap();
        for i in 160..200u64 {
            let stream = format!("stream-{}", i % 3);
            log.append(&stream, annals::Expectation::Any, common::unique_payload(i, 300)).wait().unwrap();
        }
        let report = log.compact().unwrap();
        assert!(report.outputs >= 2, "{report:?}");
        log.close().wait().unwrap();
    }
    let records = LogReader::open(dir.path()).unwrap().read_all_on_disk(Lsn::ZERO, usize::MAX).unwrap();
    let segments = common::segment_files(dir.path());
    // The first segment is a compaction's output: its LSNs have gaps.
    assert!(records.windows(2).any(|pair| pair[1].lsn.0 > pair[0].lsn.0 + 1), "a compacted segment with gaps");
    assert!(segments.len() >= 3, "{segments:?}");
    let damages = damage_segments(dir.path(), &records, &[0], false);
    check_every_page(dir.path(), &records, &damages);
}
