//! `annals dump --decode`: what a record's payload holds, as JSON.
//!
//! A typed store's value is MessagePack behind the stores' envelope
//! (`annals::stores::codec`); a checkpoint history entry is that value
//! behind a 36-byte header, perhaps LZ4-compressed
//! (`annals::stores::checkpoint_history`). Both are shown as JSON. Any other
//! payload is shown as its bytes, escaped. A payload that starts like one of
//! the two but does not decode is reported on its record, with the reason
//! and its bytes; nothing in a payload can make this panic or allocate more
//! than the values the payload holds (memory grows with each value read,
//! every one at least a byte of it).
//!
//! MessagePack is shown as JSON this way: nil, booleans, integers, strings,
//! arrays and maps as themselves (a map key that is not a string as its
//! JSON text); binary as a lowercase hex string; a float that is not finite
//! as the string `NaN`, `inf` or `-inf`; an extension as
//! `{"ext_type": T, "data": HEX}`.

use annals::stores::checkpoint_history::{HISTORY_TAG, open_entry};
use annals::stores::codec::{CODEC_MSGPACK_NAMED, ENVELOPE_BYTES, ENVELOPE_TAG};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// How deep arrays and maps may nest before a value is refused (the
/// stores' values are a few levels deep; this keeps the recursion bounded).
const NESTING_MAX: usize = 128;

/// What `--decode` adds to a record's line.
#[derive(Serialize, Default)]
pub struct Decoded {
    /// The schema a store value was written under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<u16>,
    /// The store value as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// A checkpoint history entry's header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Value>,
    /// Why a payload that looks like a store value does not decode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_error: Option<String>,
    /// The payload's bytes, escaped (printable ASCII as itself, other bytes
    /// as `\xNN`), when it is not a store value or does not decode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<String>,
}

/// Decodes a payload.
pub fn decode(payload: &[u8]) -> Decoded {
    let decoded = match payload.first() {
        Some(&ENVELOPE_TAG) => store_value(payload),
        Some(&HISTORY_TAG) => history_entry(payload),
        _ => return Decoded { bytes: Some(escaped(payload)), ..Decoded::default() },
    };
    decoded.unwrap_or_else(|reason| Decoded {
        decode_error: Some(reason),
        bytes: Some(escaped(payload)),
        ..Decoded::default()
    })
}

fn escaped(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// A value in the stores' envelope.
fn store_value(bytes: &[u8]) -> Result<Decoded, String> {
    if bytes.len() < ENVELOPE_BYTES {
        return Err(format!("a {}-byte store value is shorter than its {ENVELOPE_BYTES}-byte envelope", bytes.len()));
    }
    if bytes[1] != CODEC_MSGPACK_NAMED {
        return Err(format!("unknown codec {}", bytes[1]));
    }
    let schema = u16::from_le_bytes([bytes[2], bytes[3]]);
    let value = msgpack_to_json(&bytes[ENVELOPE_BYTES..])?;
    Ok(Decoded { schema: Some(schema), value: Some(value), ..Decoded::default() })
}

/// A checkpoint history entry: its header, and its body as a store value.
fn history_entry(bytes: &[u8]) -> Result<Decoded, String> {
    let entry = open_entry(bytes)?;
    if entry.body.first() != Some(&ENVELOPE_TAG) {
        return Err("a checkpoint history entry whose body is not a store value".to_owned());
    }
    let mut decoded = store_value(&entry.body).map_err(|reason| format!("checkpoint history body: {reason}"))?;
    decoded.history = Some(json!({
        "id": entry.id.to_string(),
        "compressed": entry.compressed,
        "raw_bytes": entry.raw_bytes,
        "summary": entry.summary,
    }));
    Ok(decoded)
}

/// One MessagePack value, the whole of `bytes`, as JSON.
///
/// # Errors
/// Where and why it does not decode, or how many bytes follow it.
pub fn msgpack_to_json(bytes: &[u8]) -> Result<Value, String> {
    let mut reader = Reader { bytes, at: 0 };
    let value = reader.value(0)?;
    match bytes.len() - reader.at {
        0 => Ok(value),
        trailing => Err(format!("{trailing} bytes follow the value at offset {}", reader.at)),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let rest = self.bytes.len() - self.at;
        if len > rest {
            return Err(format!("{len} bytes wanted at offset {}, {rest} left", self.at));
        }
        let taken = &self.bytes[self.at..self.at + len];
        self.at += len;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A big-endian length of `N` bytes.
    fn len<const N: usize>(&mut self) -> Result<usize, String> {
        let value = self.take(N)?.iter().fold(0u64, |value, &byte| value << 8 | u64::from(byte));
        usize::try_from(value).map_err(|_| format!("length {value} at offset {}", self.at))
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > NESTING_MAX {
            return Err(format!("nested deeper than {NESTING_MAX} at offset {}", self.at));
        }
        let at = self.at;
        let marker = self.take(1)?[0];
        Ok(match marker {
            0x00..=0x7f => json!(marker),
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0x90..=0x9f => self.list(usize::from(marker & 0x0f), depth)?,
            0xa0..=0xbf => self.string(usize::from(marker & 0x1f))?,
            0xc0 => Value::Null,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 => self.binary::<1>()?,
            0xc5 => self.binary::<2>()?,
            0xc6 => self.binary::<4>()?,
            0xc7 => self.extension_of_len::<1>()?,
            0xc8 => self.extension_of_len::<2>()?,
            0xc9 => self.extension_of_len::<4>()?,
            0xca => float(f64::from(f32::from_be_bytes(self.array()?))),
            0xcb => float(f64::from_be_bytes(self.array()?)),
            0xcc => json!(u8::from_be_bytes(self.array()?)),
            0xcd => json!(u16::from_be_bytes(self.array()?)),
            0xce => json!(u32::from_be_bytes(self.array()?)),
            0xcf => json!(u64::from_be_bytes(self.array()?)),
            0xd0 => json!(i8::from_be_bytes(self.array()?)),
            0xd1 => json!(i16::from_be_bytes(self.array()?)),
            0xd2 => json!(i32::from_be_bytes(self.array()?)),
            0xd3 => json!(i64::from_be_bytes(self.array()?)),
            0xd4 => self.extension(1)?,
            0xd5 => self.extension(2)?,
            0xd6 => self.extension(4)?,
            0xd7 => self.extension(8)?,
            0xd8 => self.extension(16)?,
            0xd9 => {
                let len = self.len::<1>()?;
                self.string(len)?
            }
            0xda => {
                let len = self.len::<2>()?;
                self.string(len)?
            }
            0xdb => {
                let len = self.len::<4>()?;
                self.string(len)?
            }
            0xdc => {
                let len = self.len::<2>()?;
                self.list(len, depth)?
            }
            0xdd => {
                let len = self.len::<4>()?;
                self.list(len, depth)?
            }
            0xde => {
                let len = self.len::<2>()?;
                self.map(len, depth)?
            }
            0xdf => {
                let len = self.len::<4>()?;
                self.map(len, depth)?
            }
            0xe0..=0xff => json!(marker as i8),
            0xc1 => return Err(format!("the unused marker 0xc1 at offset {at}")),
        })
    }

    fn string(&mut self, len: usize) -> Result<Value, String> {
        let at = self.at;
        let bytes = self.take(len)?;
        let text = std::str::from_utf8(bytes).map_err(|error| format!("the string at offset {at}: {error}"))?;
        Ok(Value::String(text.to_owned()))
    }

    fn binary<const N: usize>(&mut self) -> Result<Value, String> {
        let len = self.len::<N>()?;
        Ok(Value::String(hex(self.take(len)?)))
    }

    fn extension_of_len<const N: usize>(&mut self) -> Result<Value, String> {
        let len = self.len::<N>()?;
        self.extension(len)
    }

    fn extension(&mut self, len: usize) -> Result<Value, String> {
        let ext_type = i8::from_be_bytes(self.array()?);
        Ok(json!({ "ext_type": ext_type, "data": hex(self.take(len)?) }))
    }

    /// `len` values; each takes at least a byte, so a length larger than
    /// what is left fails before anything is read. Nothing is reserved for
    /// the values claimed: the list grows with the values read, so that
    /// nested lists each claiming every byte left (one reservation per
    /// level, of about 70 bytes a value) cannot reserve more than the
    /// values the payload holds.
    fn list(&mut self, len: usize, depth: usize) -> Result<Value, String> {
        self.check_room(len)?;
        let mut items = Vec::new();
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, String> {
        self.check_room(len.saturating_mul(2))?;
        let mut map = Map::new();
        for _ in 0..len {
            let key = match self.value(depth + 1)? {
                Value::String(key) => key,
                other => other.to_string(),
            };
            let value = self.value(depth + 1)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }

    fn check_room(&self, values: usize) -> Result<(), String> {
        let rest = self.bytes.len() - self.at;
        if values > rest {
            return Err(format!("{values} values claimed at offset {}, {rest} bytes left", self.at));
        }
        Ok(())
    }
}

fn float(value: f64) -> Value {
    match serde_json::Number::from_f64(value) {
        Some(number) => Value::Number(number),
        None if value.is_nan() => json!("NaN"),
        None if value > 0.0 => json!("inf"),
        None => json!("-inf"),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Sample {
        name: &'static str,
        count: u64,
        delta: i64,
        ratio: f64,
        missing: Option<u8>,
        #[serde(with = "serde_bytes_shim")]
        blob: Vec<u8>,
        list: Vec<bool>,
        by_number: std::collections::BTreeMap<u32, &'static str>,
    }

    /// Binary without a serde_bytes dependency.
    mod serde_bytes_shim {
        pub fn serialize<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(bytes)
        }
    }

    fn sample() -> Sample {
        Sample {
            name: "step ✓",
            count: u64::MAX,
            delta: i64::MIN,
            ratio: 0.5,
            missing: None,
            blob: vec![0, 0xAB, 0xFF],
            list: vec![true, false],
            by_number: [(7, "seven")].into(),
        }
    }

    #[test]
    fn a_store_value_shows_as_json_with_its_schema() {
        let bytes = annals::stores::codec::encode("s", 3, &sample()).unwrap();
        let decoded = decode(&bytes);
        assert_eq!(decoded.schema, Some(3));
        assert_eq!(
            decoded.value.unwrap(),
            json!({
                "name": "step ✓", "count": u64::MAX, "delta": i64::MIN, "ratio": 0.5, "missing": null,
                "blob": "00abff", "list": [true, false], "by_number": { "7": "seven" },
            })
        );
        assert!(decoded.bytes.is_none() && decoded.decode_error.is_none());
    }

    #[test]
    fn a_raw_payload_shows_as_escaped_bytes() {
        let decoded = decode(b"plain \x00\xff\"bytes\"");
        assert_eq!(decoded.bytes.as_deref(), Some(r#"plain \x00\xff\"bytes\""#));
        assert!(decoded.value.is_none() && decoded.decode_error.is_none());
        assert_eq!(decode(b"").bytes.as_deref(), Some(""));
    }

    #[test]
    fn every_cut_and_flip_of_a_store_value_decodes_or_is_reported_never_panics() {
        let bytes = annals::stores::codec::encode("s", 1, &sample()).unwrap();
        for cut in 0..bytes.len() {
            let decoded = decode(&bytes[..cut]);
            if cut > 0 {
                assert!(decoded.decode_error.is_some(), "cut at {cut} decoded");
                assert!(decoded.bytes.is_some());
            }
        }
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.to_vec();
                damaged[at] ^= 1 << bit;
                let decoded = decode(&damaged);
                // A value, or the bytes (with the reason if it looked like a value).
                assert_eq!(decoded.value.is_some(), decoded.bytes.is_none(), "byte {at} bit {bit}");
                assert!(decoded.decode_error.is_none() || decoded.bytes.is_some(), "byte {at} bit {bit}");
            }
        }
    }

    /// A compressed checkpoint history entry, as the store writes it.
    fn history_entry_bytes() -> Vec<u8> {
        use annals::stores::checkpoint_history::{CheckpointHistory, Compression};
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(annals::Log::open(dir.path(), annals::Options::default()).unwrap());
        let history: CheckpointHistory<annals::Log, Vec<String>> =
            CheckpointHistory::in_namespace(log.clone(), "", Compression::Lz4);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        runtime.block_on(history.save("key", &vec!["same words ".repeat(20); 4])).unwrap();
        let record = log.read_all(annals::Lsn::ZERO, 1).unwrap().remove(0);
        record.payload.to_vec()
    }

    #[test]
    fn every_cut_and_flip_of_a_compressed_history_entry_decodes_or_is_reported() {
        let bytes = history_entry_bytes();
        let whole = decode(&bytes);
        assert_eq!(whole.history.as_ref().unwrap()["compressed"], json!(true), "the test needs a compressed body");
        assert_eq!(whole.value.unwrap(), json!(vec!["same words ".repeat(20); 4]));
        for cut in 1..bytes.len() {
            let decoded = decode(&bytes[..cut]);
            assert!(decoded.decode_error.is_some() && decoded.bytes.is_some(), "cut at {cut} decoded");
        }
        for at in 0..bytes.len() {
            for bit in [0x01, 0x20, 0x80] {
                let mut damaged = bytes.clone();
                damaged[at] ^= bit;
                let decoded = decode(&damaged);
                assert_eq!(decoded.value.is_some(), decoded.bytes.is_none(), "byte {at} ^ {bit:#x}");
            }
        }
    }

    #[test]
    fn absurd_lengths_and_nesting_are_refused_before_allocating() {
        let mut huge_list = vec![ENVELOPE_TAG, CODEC_MSGPACK_NAMED, 1, 0, 0xdd];
        huge_list.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge_list).decode_error.unwrap().contains("values claimed"));
        let mut huge_bin = vec![ENVELOPE_TAG, CODEC_MSGPACK_NAMED, 1, 0, 0xc6];
        huge_bin.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge_bin).decode_error.is_some());
        let mut deep = vec![ENVELOPE_TAG, CODEC_MSGPACK_NAMED, 1, 0];
        deep.extend(std::iter::repeat_n(0x91, 100_000));
        deep.push(0xc0);
        assert!(decode(&deep).decode_error.unwrap().contains("nested deeper"));
        let trailing = [ENVELOPE_TAG, CODEC_MSGPACK_NAMED, 1, 0, 0xc0, 0xc0];
        assert!(decode(&trailing).decode_error.unwrap().contains("1 bytes follow"));
        assert!(decode(&[ENVELOPE_TAG, 9, 1, 0, 0xc0]).decode_error.unwrap().contains("unknown codec 9"));
    }

    #[test]
    fn every_marker_decodes() {
        let cases: [(&[u8], Value); 12] = [
            (&[0xc2], json!(false)),
            (&[0xff], json!(-1)),
            (&[0xd0, 0x80], json!(-128)),
            (&[0xcd, 1, 0], json!(256)),
            (&[0xca, 0x7f, 0xc0, 0, 0], json!("NaN")),
            (&[0xcb, 0xff, 0xf0, 0, 0, 0, 0, 0, 0], json!("-inf")),
            (&[0xd9, 2, b'h', b'i'], json!("hi")),
            (&[0xc4, 2, 1, 2], json!("0102")),
            (&[0xd4, 5, 0xee], json!({ "ext_type": 5, "data": "ee" })),
            (&[0xc7, 1, 0xfe, 0x01], json!({ "ext_type": -2, "data": "01" })),
            (&[0x92, 0x01, 0xc3], json!([1, true])),
            (&[0x81, 0x01, 0x02], json!({ "1": 2 })),
        ];
        for (bytes, expected) in cases {
            assert_eq!(msgpack_to_json(bytes), Ok(expected), "{bytes:02x?}");
        }
        assert!(msgpack_to_json(&[0xc1]).is_err());
        assert!(msgpack_to_json(&[0xa1, 0xff]).is_err(), "a string that is not UTF-8");
    }
}
