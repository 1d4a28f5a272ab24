//! The bodies of the fuzz targets under `fuzz/`. They live in the library
//! so that a stable `cargo test` replays the committed corpus through the
//! same code (`tests/fuzz_corpus.rs`). Each panics on a violated property.

use std::path::Path;
use std::sync::Arc;

use super::fs::SimFs;
use super::rng::SimRng;
use crate::frame::{
    FRAME_HEADER_BYTES, FrameKind, FrameMeta, OpRef, RecordKind, decode_frame, decode_frame_anywhere, encode_frame,
};
use crate::log::{Log, LogReader};
use crate::options::{Options, SegmentPreparation};
use crate::segment::{SEGMENT_HEADER_BYTES, SegmentHeader, segment_file_name};
use crate::state::{LogState, STATE_FILE_BYTES, STATE_FILE_NAME, STATE_SLOT_BYTES};
use crate::types::{Expectation, Lsn, RecoveryMode, StreamSeq};

const LOG_ID: [u8; 16] = *b"annals-fuzz-log!";

/// Decodes arbitrary bytes as a segment: the header, then frames at every
/// offset. Nothing may panic; every frame that decodes must re-encode to
/// the same bytes; and the whole thing, as a file in a log directory, must
/// open or fail with an error.
pub fn decode_segment(data: &[u8]) {
    let _ = SegmentHeader::decode(data);
    for offset in 0..data.len().min(4096) {
        if let Ok(frame) = decode_frame_anywhere(&data[offset..], &LOG_ID) {
            let ops: Vec<OpRef<'_>> = frame
                .ops()
                .map(|op| OpRef { kind: op.kind, stream: op.stream, seq: op.seq, lsn: op.lsn, payload: op.payload })
                .collect();
            let mut again = Vec::new();
            encode_frame(&mut again, &LOG_ID, frame.kind, frame.meta, &ops);
            assert_eq!(again, &data[offset..offset + frame.total_bytes()], "a decoded frame re-encodes identically");
        }
    }
    let name = segment_file_name(Lsn::FIRST);
    open_directory_of(&[(name, data.to_vec())]);
}

/// Encodes operations drawn from the bytes and decodes them back.
pub fn round_trip(data: &[u8]) {
    let mut rng = SimRng::from_bytes(data);
    let count = rng.range(1, 6) as usize;
    let mut owned = Vec::new();
    for i in 0..count {
        let kind = *rng.pick(&[RecordKind::Entry, RecordKind::Snapshot, RecordKind::Tombstone]);
        let stream_len = rng.range(1, 40) as usize;
        let payload_len = if kind == RecordKind::Tombstone { 0 } else { rng.below(600) as usize };
        owned.push((kind, rng.bytes(stream_len), rng.next_u64(), 1000 + i as u64, rng.bytes(payload_len)));
    }
    let ops: Vec<OpRef<'_>> = owned
        .iter()
        .map(|(kind, stream, seq, lsn, payload)| OpRef {
            kind: *kind,
            stream,
            seq: StreamSeq(*seq),
            lsn: Lsn(*lsn),
            payload,
        })
        .collect();
    let kind = if ops.len() == 1 && rng.chance(1, 2) { ops[0].kind.frame_kind() } else { FrameKind::Batch };
    let meta = FrameMeta { lsn: Lsn(1000), durable_lsn: Lsn(rng.range(0, 1000)), timestamp_ms: rng.next_u64() };
    let mut buf = Vec::new();
    encode_frame(&mut buf, &LOG_ID, kind, meta, &ops);
    let frame = decode_frame(&buf, &LOG_ID, Lsn(1000)).expect("an encoded frame decodes");
    assert_eq!((frame.kind, frame.meta, frame.total_bytes()), (kind, meta, buf.len()));
    let decoded: Vec<_> = frame.ops().map(|op| (op.kind, op.stream, op.seq, op.lsn, op.payload)).collect();
    let original: Vec<_> = ops.iter().map(|op| (op.kind, op.stream, op.seq, op.lsn, op.payload)).collect();
    assert_eq!(decoded, original);
    assert!(decode_frame(&buf[..buf.len() - 1], &LOG_ID, Lsn(1000)).is_err());
    assert!(buf.len() >= FRAME_HEADER_BYTES);
}

/// Runs the crash simulation with every decision taken from the bytes;
/// panics with the oracle property that broke.
pub fn operations(data: &[u8]) {
    if let Err(failure) = super::run_script(data) {
        panic!("oracle: {failure}");
    }
}

/// Splits the bytes into files of a log directory (segments, spares, junk,
/// the state file; some with valid headers or slots) and opens it every way:
/// strict, salvage and read-only. Nothing may panic; whatever opens must
/// read back and take an append.
pub fn open_directory(data: &[u8]) {
    let mut rng = SimRng::from_bytes(data);
    let mut files = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && files.len() < 4 {
        let len = (rng.range(0, 3 * 4096) as usize).min(rest.len());
        let name = match rng.below(6) {
            0 => "spare-1.seg.tmp".to_owned(),
            1 => "junk".to_owned(),
            2 => STATE_FILE_NAME.to_owned(),
            _ => segment_file_name(Lsn(*rng.pick(&[1, 2, 5, 17, u64::MAX]))),
        };
        let mut bytes = rest[..len].to_vec();
        if name == STATE_FILE_NAME {
            if rng.chance(1, 2) {
                // A state file with valid slots (or one of them), so that
                // recovery holds the segments to what it records.
                bytes.resize(STATE_FILE_BYTES, 0);
                for slot in 0..2 {
                    if rng.chance(3, 4) {
                        let oldest = *rng.pick(&[1, 2, 5]);
                        let newest = oldest + rng.below(20);
                        let durable_end = newest + rng.below(40);
                        let state = LogState {
                            log_id: LOG_ID,
                            generation: 1 + rng.below(4),
                            oldest_segment_lsn: Lsn(oldest),
                            newest_segment_lsn: Lsn(newest),
                            durable_end_lsn: Lsn(durable_end),
                            written_ms: 0,
                            clean_close: rng.chance(1, 2),
                            lsn_lease_end: Lsn(durable_end + *rng.pick(&[0, 1, 1000])),
                            features: 0,
                            compaction_generation: 0,
                            compacted_end_lsn: Lsn::ZERO,
                            trimmed_lsn: Lsn::ZERO,
                        };
                        bytes[slot * STATE_SLOT_BYTES..][..STATE_SLOT_BYTES].copy_from_slice(&state.encode());
                    }
                }
            }
        } else if rng.chance(1, 2) && bytes.len() >= SEGMENT_HEADER_BYTES {
            // Give some files a valid header, so frames behind it are reached.
            let header = SegmentHeader {
                version: crate::segment::FORMAT_VERSION,
                log_id: LOG_ID,
                first_lsn: Lsn(1),
                segment_bytes: 4096,
                created_ms: 0,
            };
            bytes[..SEGMENT_HEADER_BYTES].copy_from_slice(&header.encode());
            bytes.resize(4096, 0);
        }
        files.push((name, bytes));
        rest = &rest[len..];
    }
    open_directory_of(&files);
}

fn open_directory_of(files: &[(String, Vec<u8>)]) {
    let dir = Path::new("/fuzz/log");
    for mode in [RecoveryMode::Strict, RecoveryMode::Salvage] {
        let fs = SimFs::with_files(dir, files);
        let options = Options {
            segment_bytes: 4096,
            record_bytes_max: 1024,
            recovery_mode: mode,
            segment_preparation: SegmentPreparation::Inline,
            file_system: Arc::new(fs.clone()),
            compaction: crate::options::CompactionOptions { background: false, ..Default::default() },
            ..Options::default()
        };
        if let Ok(reader) = LogReader::open_with(dir, &options) {
            let _ = reader.read_all(Lsn::ZERO, usize::MAX);
        }
        if let Ok(log) = Log::open(dir, options.clone()) {
            let records = log.read_all(Lsn::ZERO, usize::MAX).expect("an opened log reads back");
            let appended = log.append("fuzz", Expectation::Any, &b"after"[..]).wait();
            drop(log);
            let again = Log::open(dir, options).expect("a log that opened once opens again");
            let reread = again.read_all(Lsn::ZERO, usize::MAX).expect("and reads back");
            assert_eq!(&reread[..records.len()], &records[..], "reopening keeps what was read");
            if let Ok(appended) = appended {
                assert!(again.read_lsn(appended.lsn).expect("readable").is_some(), "an acknowledged append survives");
            }
        }
    }
}
