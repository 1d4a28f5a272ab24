//! The row bodies this adapter writes: written directly for `append`, and
//! read directly for `load_run`.
//!
//! `append` writes a row's body byte for byte as `rmp_serde` writes
//! [`crate::StoredRow`] (checked against it in the tests), without serde's
//! generic serializer: the format is serde's, only the code is shorter.
//!
//! `rmp_serde` validates every field name as UTF-8, walks each value
//! through serde's generic visitors, and is most of what loading a run
//! costs (profiled on the W3 bench). A row written by
//! [`crate::StoredRow`]'s `Serialize` is a MessagePack map of at most six
//! known fields with string names, so this reads that shape directly from
//! the bytes, into the same row, and hands every body it does not
//! recognise (an unknown, missing or repeated field, another integer or
//! string form, trailing bytes, a kind a later cano adds, damage) to serde
//! unchanged: it returns a row only where serde returns the same row, and
//! every error is serde's.
//!
//! A row as `Serialize` writes it has its six fields in declaration order,
//! each name a fixstr: that exact layout is read first, comparing each name
//! as one fixed-size array; a map in any other order or form is read field
//! by field.
//!
//! ```text
//! // Format (the subset read here): fixmap | map16 | map32 of
//! //   { str name | value }, names from StoredRow, values:
//! //   sequence, workflow_version: positive fixint | uint8..uint64
//! //   state, task_id, kind: fixstr | str8 | str16 | str32
//! //   output_blob: nil | bin8 | bin16 | bin32
//! ```

use cano::recovery::{CheckpointRow, RowKind};

use crate::StoredRow;

/// Appends a row's body to `out`: the bytes `Serialize` writes through
/// `rmp_serde` (the six fields in declaration order, names as fixstrs,
/// integers, strings and the blob each in their smallest form), written
/// directly; serde writes a row of a kind this build does not name.
///
/// # Errors
/// serde's reason, for a row serde refuses.
pub(crate) fn encode(row: &StoredRow, out: &mut Vec<u8>) -> Result<(), String> {
    let CheckpointRow { sequence, state, task_id, output_blob, kind, workflow_version, .. } = &row.0;
    let kind: &[u8] = match kind {
        RowKind::StateEntry => STATE_ENTRY_KIND,
        RowKind::StepCursor => STEP_CURSOR_KIND,
        RowKind::CompensationCompletion => COMPENSATION_COMPLETION_KIND,
        _ => return annals::stores::codec::encode_body(row, out),
    };
    // Room for exactly what is written: a buffer allocated at that size
    // (what the store does with `encoded_bytes`) is not grown. A string or
    // blob MessagePack cannot hold is left to serde, which refuses it.
    let Some(body_bytes) = encoded_bytes(row) else { return annals::stores::codec::encode_body(row, out) };
    out.reserve(body_bytes);
    out.push(0x80 | 6);
    out.extend_from_slice(SEQUENCE_KEY);
    write_uint(out, *sequence);
    out.extend_from_slice(STATE_KEY);
    write_str(out, state)?;
    out.extend_from_slice(TASK_ID_KEY);
    write_str(out, task_id)?;
    out.extend_from_slice(OUTPUT_BLOB_KEY);
    match output_blob {
        None => out.push(0xc0),
        Some(blob) => write_length(out, blob.len(), [0xc4, 0xc5, 0xc6], "blob")?.extend_from_slice(blob),
    }
    out.extend_from_slice(KIND_KEY);
    out.extend_from_slice(kind);
    out.extend_from_slice(WORKFLOW_VERSION_KEY);
    write_uint(out, u64::from(*workflow_version));
    Ok(())
}

/// Bytes [`encode`] writes for `row`, if it writes them itself (`None`
/// for a row it leaves to serde, or one too long for MessagePack).
pub(crate) fn encoded_bytes(row: &StoredRow) -> Option<usize> {
    let CheckpointRow { sequence, state, task_id, output_blob, kind, workflow_version, .. } = &row.0;
    let kind_bytes = match kind {
        RowKind::StateEntry => STATE_ENTRY_KIND.len(),
        RowKind::StepCursor => STEP_CURSOR_KIND.len(),
        RowKind::CompensationCompletion => COMPENSATION_COMPLETION_KIND.len(),
        _ => return None,
    };
    let str_bytes = |len: usize| if len < 32 { Some(1 + len) } else { length_bytes(len).map(|marker| marker + len) };
    let blob_bytes = match output_blob {
        None => 1,
        Some(blob) => length_bytes(blob.len())? + blob.len(),
    };
    Some(
        1 + FIXED_KEYS_BYTES
            + kind_bytes
            + uint_bytes(*sequence)
            + str_bytes(state.len())?
            + str_bytes(task_id.len())?
            + blob_bytes
            + uint_bytes(u64::from(*workflow_version)),
    )
}

/// Bytes [`write_uint`] writes for `value`.
fn uint_bytes(value: u64) -> usize {
    match value {
        0..0x80 => 1,
        0x80..0x100 => 2,
        0x100..0x1_0000 => 3,
        0x1_0000..0x1_0000_0000 => 5,
        _ => 9,
    }
}

/// Bytes of the marker and length [`write_length`] writes for `len`.
fn length_bytes(len: usize) -> Option<usize> {
    match u32::try_from(len).ok()? {
        0..0x100 => Some(2),
        0x100..0x1_0000 => Some(3),
        _ => Some(5),
    }
}

/// Bytes of the six fields' names, markers included.
const FIXED_KEYS_BYTES: usize = SEQUENCE_KEY.len()
    + STATE_KEY.len()
    + TASK_ID_KEY.len()
    + OUTPUT_BLOB_KEY.len()
    + KIND_KEY.len()
    + WORKFLOW_VERSION_KEY.len();

/// An unsigned integer in its smallest MessagePack form.
#[inline]
fn write_uint(out: &mut Vec<u8>, value: u64) {
    match value {
        0..0x80 => out.push(value as u8),
        0x80..0x100 => out.extend_from_slice(&[0xcc, value as u8]),
        0x100..0x1_0000 => {
            out.push(0xcd);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..0x1_0000_0000 => {
            out.push(0xce);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(0xcf);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

/// A string in its smallest MessagePack form.
#[inline]
fn write_str(out: &mut Vec<u8>, text: &str) -> Result<(), String> {
    if text.len() < 32 {
        out.push(0xa0 | text.len() as u8);
    } else {
        write_length(out, text.len(), [0xd9, 0xda, 0xdb], "string")?;
    }
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// The marker and length of a string or blob of `len` bytes: the first of
/// `markers` for an 8-bit length, the second for 16 bits, the third for 32.
#[inline]
fn write_length<'a>(
    out: &'a mut Vec<u8>,
    len: usize,
    [marker_8, marker_16, marker_32]: [u8; 3],
    what: &str,
) -> Result<&'a mut Vec<u8>, String> {
    match u32::try_from(len) {
        Ok(len @ 0..0x100) => out.extend_from_slice(&[marker_8, len as u8]),
        Ok(len @ 0x100..0x1_0000) => {
            out.push(marker_16);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        Ok(len) => {
            out.push(marker_32);
            out.extend_from_slice(&len.to_be_bytes());
        }
        Err(_) => return Err(format!("a {what} of {len} bytes is longer than MessagePack's 4 GiB")),
    }
    Ok(out)
}

/// Decodes a row body: directly if it has the shape this adapter writes,
/// otherwise with serde.
///
/// # Errors
/// serde's reason, for a body that does not decode as a row.
pub(crate) fn decode(body: &[u8]) -> Result<StoredRow, String> {
    match decode_known_shape(body) {
        Some(row) => Ok(row),
        None => annals::stores::codec::decode_body(body),
    }
}

/// The row, if `body` is exactly a map of known fields in the forms
/// `Serialize` writes; `None` for anything else, decided by serde.
fn decode_known_shape(body: &[u8]) -> Option<StoredRow> {
    decode_written_order(body).or_else(|| decode_any_order(body))
}

/// The six fields' names in the order `StoredRow`'s `Serialize` writes
/// them, each with its fixstr marker.
const SEQUENCE_KEY: &[u8; 9] = b"\xa8sequence";
const STATE_KEY: &[u8; 6] = b"\xa5state";
const TASK_ID_KEY: &[u8; 8] = b"\xa7task_id";
const OUTPUT_BLOB_KEY: &[u8; 12] = b"\xaboutput_blob";
const KIND_KEY: &[u8; 5] = b"\xa4kind";
const WORKFLOW_VERSION_KEY: &[u8; 17] = b"\xb0workflow_version";

/// The row, if `body` is the fixmap of six fields that `Serialize` writes,
/// in its order: what every row this adapter wrote looks like.
fn decode_written_order(body: &[u8]) -> Option<StoredRow> {
    let mut reader = Reader { rest: body };
    if reader.byte()? != 0x86 {
        return None;
    }
    reader.key(SEQUENCE_KEY)?;
    let sequence = reader.uint()?;
    reader.key(STATE_KEY)?;
    let state = reader.str_bytes()?;
    reader.key(TASK_ID_KEY)?;
    let task_id = reader.str_bytes()?;
    let (state, task_id) = two_strings(state, task_id)?;
    reader.key(OUTPUT_BLOB_KEY)?;
    let output_blob = reader.optional_bin()?;
    reader.key(KIND_KEY)?;
    let kind = reader.written_kind()?;
    reader.key(WORKFLOW_VERSION_KEY)?;
    let workflow_version = u32::try_from(reader.uint()?).ok()?;
    if !reader.rest.is_empty() {
        return None;
    }
    Some(StoredRow(CheckpointRow { sequence, state, task_id, output_blob, kind, workflow_version }))
}

/// The row, if `body` is a map of known fields in any order, each at most
/// once, the optional ones possibly missing.
fn decode_any_order(body: &[u8]) -> Option<StoredRow> {
    let mut reader = Reader { rest: body };
    let fields = reader.map_len()?;
    let (mut sequence, mut state, mut task_id) = (None, None, None);
    let (mut output_blob, mut kind, mut workflow_version) = (None, None, None);
    // A repeated or unknown field returns, so this runs at most six times
    // whatever length the map claims.
    for _ in 0..fields {
        match reader.str_bytes()? {
            b"sequence" if sequence.is_none() => sequence = Some(reader.uint()?),
            b"state" if state.is_none() => state = Some(reader.string()?),
            b"task_id" if task_id.is_none() => task_id = Some(reader.string()?),
            b"output_blob" if output_blob.is_none() => output_blob = Some(reader.optional_bin()?),
            b"kind" if kind.is_none() => kind = Some(row_kind(reader.str_bytes()?)?),
            b"workflow_version" if workflow_version.is_none() => {
                workflow_version = Some(u32::try_from(reader.uint()?).ok()?)
            }
            _ => return None,
        }
    }
    if !reader.rest.is_empty() {
        return None;
    }
    Some(StoredRow(CheckpointRow {
        sequence: sequence?,
        state: state?,
        task_id: task_id?,
        output_blob: output_blob.unwrap_or(None),
        kind: kind.unwrap_or_default(),
        workflow_version: workflow_version.unwrap_or(0),
    }))
}

/// Bytes up to which [`two_strings`] checks two strings as one.
const JOINED_STRING_BYTES_MAX: usize = 64;

/// `first` and `second` as owned strings, if both are UTF-8.
///
/// A short state and task id (a dozen bytes each) are checked as one
/// string, copied side by side: UTF-8 validation costs a branch per byte
/// until a string is long enough for its word-at-a-time loop, so one check
/// of 20 bytes takes fewer instructions than two of 10. The join is valid
/// with a character boundary where `second` starts exactly when each is
/// valid on its own (a character split across the join would need a
/// continuation byte at `second`'s start, which is no boundary).
fn two_strings(first: &[u8], second: &[u8]) -> Option<(String, String)> {
    let joined_len = first.len() + second.len();
    if joined_len > JOINED_STRING_BYTES_MAX {
        return Some((owned_str(first)?, owned_str(second)?));
    }
    let mut joined = [0u8; JOINED_STRING_BYTES_MAX];
    joined[..first.len()].copy_from_slice(first);
    joined[first.len()..joined_len].copy_from_slice(second);
    let joined = std::str::from_utf8(&joined[..joined_len]).ok()?;
    if !joined.is_char_boundary(first.len()) {
        return None;
    }
    let (first, second) = joined.split_at(first.len());
    Some((first.to_owned(), second.to_owned()))
}

fn owned_str(bytes: &[u8]) -> Option<String> {
    Some(std::str::from_utf8(bytes).ok()?.to_owned())
}

/// The kinds as `Serialize` writes them: the variant name as a fixstr,
/// marker included, each compared as one fixed-size array.
const STATE_ENTRY_KIND: &[u8; 11] = b"\xaaStateEntry";
const STEP_CURSOR_KIND: &[u8; 11] = b"\xaaStepCursor";
const COMPENSATION_COMPLETION_KIND: &[u8; 23] = b"\xb6CompensationCompletion";

/// cano's serde form of a [`RowKind`]: its variant name.
fn row_kind(name: &[u8]) -> Option<RowKind> {
    match name {
        b"StateEntry" => Some(RowKind::StateEntry),
        b"CompensationCompletion" => Some(RowKind::CompensationCompletion),
        b"StepCursor" => Some(RowKind::StepCursor),
        _ => None,
    }
}

/// The unread bytes of a body; every read is bounded by them.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.rest.len() {
            return None;
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(taken)
    }

    /// Consumes `key` if the bytes start with it.
    fn key<const N: usize>(&mut self, key: &[u8; N]) -> Option<()> {
        let (head, rest) = self.rest.split_first_chunk::<N>()?;
        if head != key {
            return None;
        }
        self.rest = rest;
        Some(())
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    /// A big-endian unsigned integer of `N` bytes.
    fn be<const N: usize>(&mut self) -> Option<u64> {
        Some(self.take(N)?.iter().fold(0u64, |value, &byte| value << 8 | u64::from(byte)))
    }

    fn len<const N: usize>(&mut self) -> Option<usize> {
        usize::try_from(self.be::<N>()?).ok()
    }

    fn map_len(&mut self) -> Option<usize> {
        match self.byte()? {
            marker @ 0x80..=0x8f => Some(usize::from(marker & 0x0f)),
            0xde => self.len::<2>(),
            0xdf => self.len::<4>(),
            _ => None,
        }
    }

    fn uint(&mut self) -> Option<u64> {
        match self.byte()? {
            marker @ 0x00..=0x7f => Some(u64::from(marker)),
            0xcc => self.be::<1>(),
            0xcd => self.be::<2>(),
            0xce => self.be::<4>(),
            0xcf => self.be::<8>(),
            _ => None,
        }
    }

    fn str_bytes(&mut self) -> Option<&'a [u8]> {
        let len = match self.byte()? {
            marker @ 0xa0..=0xbf => usize::from(marker & 0x1f),
            0xd9 => self.len::<1>()?,
            0xda => self.len::<2>()?,
            0xdb => self.len::<4>()?,
            _ => return None,
        };
        self.take(len)
    }

    fn string(&mut self) -> Option<String> {
        owned_str(self.str_bytes()?)
    }

    /// A kind as `Serialize` writes it: the two short names compared as
    /// arrays, anything else by [`row_kind`].
    fn written_kind(&mut self) -> Option<RowKind> {
        if self.key(STATE_ENTRY_KIND).is_some() {
            return Some(RowKind::StateEntry);
        }
        if self.key(STEP_CURSOR_KIND).is_some() {
            return Some(RowKind::StepCursor);
        }
        row_kind(self.str_bytes()?)
    }

    fn optional_bin(&mut self) -> Option<Option<Vec<u8>>> {
        let len = match self.byte()? {
            0xc0 => return Some(None),
            0xc4 => self.len::<1>()?,
            0xc5 => self.len::<2>()?,
            0xc6 => self.len::<4>()?,
            _ => return None,
        };
        Some(Some(self.take(len)?.to_vec()))
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    /// What serde makes of `body`, as cano's row, or its error.
    fn by_serde(body: &[u8]) -> Result<CheckpointRow, String> {
        annals::stores::codec::decode_body::<StoredRow>(body).map(CheckpointRow::from)
    }

    fn body_of<T: serde::Serialize>(value: &T) -> Vec<u8> {
        let bytes = annals::stores::codec::encode("rows/t", 1, value).unwrap();
        bytes[annals::stores::codec::ENVELOPE_BYTES..].to_vec()
    }

    /// A small deterministic generator: the test needs variety, not secrecy.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn text(&mut self) -> String {
            let len = [0, 1, 5, 31, 32, 255, 256, 70_000][self.next() as usize % 8];
            let alphabet = ['a', 'Z', '0', '-', 'é', '✓', '𝄞'];
            (0..len).map(|_| alphabet[self.next() as usize % alphabet.len()]).collect()
        }

        fn row(&mut self) -> CheckpointRow {
            let sequence = [0, 1, 127, 128, 255, 256, 65_535, 65_536, u64::from(u32::MAX) + 1, u64::MAX]
                [self.next() as usize % 10];
            let mut row = CheckpointRow::new(sequence, self.text(), self.text());
            row.kind =
                [RowKind::StateEntry, RowKind::CompensationCompletion, RowKind::StepCursor][self.next() as usize % 3];
            row.workflow_version = [0, 1, 200, 70_000, u32::MAX][self.next() as usize % 5];
            row.output_blob = match self.next() % 4 {
                0 => None,
                1 => Some(Vec::new()),
                2 => Some(vec![0xC1; 300]),
                _ => Some((0..70_000).map(|i| i as u8).collect()),
            };
            row
        }
    }

    #[test]
    fn every_row_this_adapter_writes_decodes_directly_to_what_serde_decodes() {
        let mut rng = Rng(0x5EED);
        for _ in 0..500 {
            let row = rng.row();
            let body = body_of(&StoredRow::from(row.clone()));
            let direct = decode_written_order(&body).expect("the layout this adapter writes");
            assert_eq!(CheckpointRow::from(direct), row);
            let field_by_field = decode_any_order(&body).expect("the shape this adapter writes");
            assert_eq!(CheckpointRow::from(field_by_field), row);
            assert_eq!(by_serde(&body), Ok(row));
        }
    }

    /// The body written directly is serde's, byte for byte, for rows of
    /// every kind, of every string, blob and integer form.
    #[test]
    fn every_row_is_written_directly_as_serde_writes_it() {
        let mut rng = Rng(0xE4C0DE);
        for _ in 0..500 {
            let row = StoredRow::from(rng.row());
            let mut direct = Vec::new();
            encode(&row, &mut direct).unwrap();
            let mut by_serde = Vec::new();
            annals::stores::codec::encode_body(&row, &mut by_serde).unwrap();
            assert_eq!(direct, by_serde, "{row:?}");
            assert_eq!(encoded_bytes(&row), Some(direct.len()), "the size said before writing, {row:?}");
        }
        for len in [31, 32, 255, 256, 65_535, 65_536] {
            let mut row = CheckpointRow::new(u64::from(u32::MAX), "s".repeat(len), "t".repeat(len));
            row.output_blob = Some(vec![7; len]);
            let row = StoredRow::from(row);
            let (mut direct, mut by_serde) = (Vec::new(), Vec::new());
            encode(&row, &mut direct).unwrap();
            annals::stores::codec::encode_body(&row, &mut by_serde).unwrap();
            assert!(direct == by_serde, "lengths of {len} bytes");
            assert_eq!(encoded_bytes(&row), Some(direct.len()), "lengths of {len} bytes");
        }
    }

    #[test]
    fn damaged_and_cut_bodies_decode_as_serde_decodes_them_and_never_panic() {
        let mut rng = Rng(0xDA4A6E);
        for _ in 0..40 {
            let mut row = rng.row();
            row.state = row.state.chars().take(12).collect();
            row.task_id = row.task_id.chars().take(12).collect();
            row.output_blob = row.output_blob.map(|blob| blob[..blob.len().min(40)].to_vec());
            let body = body_of(&StoredRow::from(row));
            for cut in 0..body.len() {
                assert_eq!(decode(&body[..cut]).map(CheckpointRow::from), by_serde(&body[..cut]), "cut at {cut}");
            }
            for at in 0..body.len() {
                for bit in [0x01, 0x10, 0x80] {
                    let mut damaged = body.clone();
                    damaged[at] ^= bit;
                    for direct in [decode_written_order(&damaged), decode_any_order(&damaged)].into_iter().flatten() {
                        assert_eq!(Ok(CheckpointRow::from(direct)), by_serde(&damaged), "byte {at} ^ {bit:#x}");
                    }
                }
            }
        }
    }

    /// The state and task id are checked as one string: a character split
    /// across them (a lead byte ending the state, its continuation
    /// starting the task id) is valid joined, but neither string is, so the
    /// body is serde's to refuse.
    #[test]
    fn a_character_split_between_state_and_task_id_is_not_read_as_two_strings() {
        let body = body_of(&StoredRow::from(CheckpointRow::new(1, "ab", "cd")));
        let state_at = body.windows(2).position(|w| w == b"ab").unwrap();
        let task_at = body.windows(2).position(|w| w == b"cd").unwrap();
        let mut split = body.clone();
        split[state_at + 1] = 0xC3; // 'é' is C3 A9
        split[task_at] = 0xA9;
        assert!(decode_written_order(&split).is_none());
        assert!(decode(&split).is_err(), "serde refuses it too");
        for (state, task_id) in [("", ""), ("é", "✓"), ("𝄞", ""), ("", "𝄞"), (&*"s".repeat(40), &*"t".repeat(30))]
        {
            let body = body_of(&StoredRow::from(CheckpointRow::new(1, state, task_id)));
            let row = decode_written_order(&body).expect("the layout this adapter writes");
            assert_eq!((row.0.state.as_str(), row.0.task_id.as_str()), (state, task_id));
        }
    }

    #[test]
    fn a_row_in_another_field_order_decodes_field_by_field_as_serde_does() {
        #[derive(serde::Serialize)]
        struct Reordered {
            workflow_version: u32,
            kind: RowKind,
            output_blob: Option<serde_bytes_like::Bin>,
            task_id: &'static str,
            state: &'static str,
            sequence: u64,
        }
        let body = body_of(&Reordered {
            workflow_version: 7,
            kind: RowKind::StepCursor,
            output_blob: Some(serde_bytes_like::Bin(vec![9, 8])),
            task_id: "t",
            state: "S",
            sequence: 300,
        });
        assert!(decode_written_order(&body).is_none());
        let mut expected = CheckpointRow::new(300, "S", "t").with_workflow_version(7);
        expected.kind = RowKind::StepCursor;
        expected.output_blob = Some(vec![9, 8]);
        assert_eq!(decode_any_order(&body).map(CheckpointRow::from), Some(expected.clone()));
        assert_eq!(by_serde(&body), Ok(expected));
    }

    /// Bytes serialized as MessagePack `bin`, as `StoredRow` writes its blob.
    mod serde_bytes_like {
        pub(super) struct Bin(pub(super) Vec<u8>);

        impl serde::Serialize for Bin {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(&self.0)
            }
        }
    }

    #[test]
    fn other_shapes_are_left_to_serde() {
        #[derive(serde::Serialize)]
        struct Minimal {
            sequence: u64,
            state: &'static str,
            task_id: &'static str,
        }
        #[derive(serde::Serialize)]
        struct BlobAsNumbers {
            sequence: u64,
            state: &'static str,
            task_id: &'static str,
            output_blob: Vec<u8>,
        }
        #[derive(serde::Serialize)]
        struct Extra {
            sequence: u64,
            state: &'static str,
            task_id: &'static str,
            later_field: bool,
        }
        #[derive(serde::Serialize)]
        struct LaterKind {
            sequence: u64,
            state: &'static str,
            task_id: &'static str,
            kind: &'static str,
        }
        let minimal = body_of(&Minimal { sequence: 3, state: "S", task_id: "t" });
        assert_eq!(decode_known_shape(&minimal).map(CheckpointRow::from), Some(CheckpointRow::new(3, "S", "t")));
        let as_numbers = body_of(&BlobAsNumbers { sequence: 3, state: "S", task_id: "t", output_blob: vec![1, 2] });
        let extra = body_of(&Extra { sequence: 3, state: "S", task_id: "t", later_field: true });
        let later_kind = body_of(&LaterKind { sequence: 3, state: "S", task_id: "t", kind: "Unknown" });
        let mut repeated = body_of(&Minimal { sequence: 3, state: "S", task_id: "t" });
        repeated[0] += 1; // one more field: `sequence` again
        repeated.extend_from_slice(&body_of(&Minimal { sequence: 4, state: "S", task_id: "t" })[1..10]);
        for body in [&as_numbers, &extra, &later_kind, &repeated, &vec![0x93, 1, 2, 3]] {
            assert!(decode_known_shape(body).is_none());
            assert_eq!(decode(body).map(CheckpointRow::from), by_serde(body));
        }
        assert_eq!(decode(&as_numbers).unwrap().0.output_blob, Some(vec![1, 2]));
        assert!(decode(&later_kind).is_err(), "a kind this cano does not know is serde's error");
    }
}
