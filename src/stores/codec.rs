//! How the typed stores encode values: MessagePack with field names
//! (`rmp-serde`), behind a small versioned envelope.
//!
//! ```text
//! // Envelope: { tag | codec | schema } body
//! ```
//!
//! | offset | size | field | value |
//! |---|---|---|---|
//! | 0 | 1 | tag | `0xA5`: an Annals store value |
//! | 1 | 1 | codec | `1`: MessagePack with field names |
//! | 2 | 2 | schema | the store's schema version (little-endian); a store reads every version up to its own |
//! | 4 | … | body | the value |
//!
//! Field names make a value readable by a later schema that adds fields
//! with defaults; the schema number lets a store convert what it cannot.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::stores::backend::StoreError;

/// The first byte of every encoded value.
pub const ENVELOPE_TAG: u8 = 0xA5;
/// The codec byte for MessagePack with field names.
pub const CODEC_MSGPACK_NAMED: u8 = 1;
/// Bytes before the body.
pub const ENVELOPE_BYTES: usize = 4;
/// Bytes an encoding buffer starts with: a typical store value (a
/// checkpoint row with a few hundred bytes of output, a document) fits, so
/// the serializer does not grow it, copying, three or four times.
const ENCODE_START_BYTES: usize = 512;

/// Encodes `value` under `schema` for `stream` (named in errors).
///
/// # Errors
/// [`StoreError::Encode`] if serde refuses the value.
pub fn encode<T: Serialize + ?Sized>(stream: &str, schema: u16, value: &T) -> Result<Bytes, StoreError> {
    let mut out = Vec::with_capacity(ENCODE_START_BYTES);
    out.push(ENVELOPE_TAG);
    out.push(CODEC_MSGPACK_NAMED);
    out.extend_from_slice(&schema.to_le_bytes());
    rmp_serde::encode::write_named(&mut out, value)
        .map_err(|error| StoreError::Encode { stream: stream.to_owned(), reason: error.to_string() })?;
    Ok(Bytes::from(out))
}

/// The schema and body of an encoded value, if `bytes` is one (for tools
/// that show values without knowing their type, such as `annals dump --decode`).
pub fn split_envelope(bytes: &[u8]) -> Option<(u16, &[u8])> {
    if bytes.len() < ENVELOPE_BYTES || bytes[0] != ENVELOPE_TAG || bytes[1] != CODEC_MSGPACK_NAMED {
        return None;
    }
    Some((u16::from_le_bytes([bytes[2], bytes[3]]), &bytes[ENVELOPE_BYTES..]))
}

/// Decodes a value of `stream` at `seq`, written under a schema at most
/// `schema_max`; returns it with the schema it was written under.
///
/// # Errors
/// [`StoreError::Decode`] naming the stream and sequence, for a foreign
/// envelope, an unknown codec, a newer schema or a body that does not decode.
pub fn decode<T: DeserializeOwned>(
    stream: &str,
    seq: u64,
    schema_max: u16,
    bytes: &[u8],
) -> Result<(T, u16), StoreError> {
    decode_with(stream, seq, schema_max, bytes, decode_body)
}

/// Decodes a body (what follows the envelope) with serde: what [`decode`]
/// does inside the envelope, for a type that decodes some bodies itself
/// ([`decode_with`]) and leaves the rest to serde.
///
/// # Errors
/// Why the body does not decode as a `T`.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(body).map_err(|error| error.to_string())
}

/// As [`decode`], with the body decoded by `body` instead of serde: the
/// envelope checks and the error naming the stream and sequence are the same.
///
/// # Errors
/// As [`decode`]; `body`'s error is the reason.
pub fn decode_with<T>(
    stream: &str,
    seq: u64,
    schema_max: u16,
    bytes: &[u8],
    body: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<(T, u16), StoreError> {
    let fail = |reason: String| StoreError::Decode { stream: stream.to_owned(), seq, reason };
    if bytes.len() < ENVELOPE_BYTES || bytes[0] != ENVELOPE_TAG {
        return Err(fail("not an Annals store value".to_owned()));
    }
    if bytes[1] != CODEC_MSGPACK_NAMED {
        return Err(fail(format!("unknown codec {}", bytes[1])));
    }
    let schema = u16::from_le_bytes([bytes[2], bytes[3]]);
    if schema > schema_max {
        return Err(fail(format!("written under schema {schema}, newer than this build's {schema_max}")));
    }
    let value = body(&bytes[ENVELOPE_BYTES..]).map_err(fail)?;
    Ok((value, schema))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Old {
        a: u32,
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct New {
        a: u32,
        #[serde(default)]
        b: String,
    }

    #[test]
    fn a_later_schema_reads_an_earlier_value_by_field_name() {
        let bytes = encode("s", 1, &Old { a: 7 }).unwrap();
        let (new, schema): (New, u16) = decode("s", 0, 2, &bytes).unwrap();
        assert_eq!((new, schema), (New { a: 7, b: String::new() }, 1));
    }

    #[test]
    fn damage_and_newer_schemas_are_typed_errors_naming_stream_and_sequence() {
        let bytes = encode("run-9", 3, &Old { a: 7 }).unwrap();
        let newer = decode::<Old>("run-9", 4, 2, &bytes).unwrap_err();
        assert!(matches!(&newer, StoreError::Decode { stream, seq: 4, .. } if stream == "run-9"), "{newer}");
        for cut in 0..bytes.len() {
            assert!(decode::<Old>("run-9", 4, 3, &bytes[..cut]).is_err(), "cut at {cut} decoded");
        }
        assert!(decode::<Old>("run-9", 4, 3, b"\x00\x01\x00\x00garbage").is_err());
    }
}
