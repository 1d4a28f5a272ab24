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
/// the serializer does not grow it, copying, three or four times. A value
/// under half of it gives the rest back ([`owned_bytes`]).
const ENCODE_START_BYTES: usize = 512;

/// The largest body size [`encode_sized`] allocates up front.
const SIZED_BODY_BYTES_MAX: usize = 64 << 20;

/// Encodes `value` under `schema` for `stream` (named in errors).
///
/// # Errors
/// [`StoreError::Encode`] if serde refuses the value.
pub fn encode<T: Serialize + ?Sized>(stream: &str, schema: u16, value: &T) -> Result<Bytes, StoreError> {
    encode_with(stream, schema, |out| encode_body(value, out))
}

/// Appends `value`'s body (what follows the envelope) to `out`, with serde:
/// what [`encode`] writes inside the envelope, for a type that writes some
/// bodies itself ([`encode_with`]) and leaves the rest to serde.
///
/// # Errors
/// Why serde refuses the value.
pub fn encode_body<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    rmp_serde::encode::write_named(out, value).map_err(|error| error.to_string())
}

/// As [`encode`], with the body appended to the buffer by `body` instead of
/// serde: the envelope and the buffer are the same. `body` writes exactly
/// what [`encode_body`] would for the value, so that a reader cannot tell.
///
/// # Errors
/// [`StoreError::Encode`] with `body`'s reason.
pub fn encode_with(
    stream: &str,
    schema: u16,
    body: impl FnMut(&mut Vec<u8>) -> Result<(), String>,
) -> Result<Bytes, StoreError> {
    encode_sized(stream, schema, None, body)
}

/// As [`encode_with`], for a body of `body_bytes` bytes if that is known:
/// the buffer is then allocated at the envelope's and the body's exact
/// size, and handed on as `Bytes` with no allocation of its own (a buffer
/// with room left over makes `Bytes` allocate a header to share it by,
/// and free it with the buffer: about a fifth of what encoding a cano row
/// cost, counted). Without a size, or past its size, the buffer grows as
/// [`encode_with`]'s does; the bytes are the same either way.
///
/// # Errors
/// [`StoreError::Encode`] with `body`'s reason.
pub fn encode_sized(
    stream: &str,
    schema: u16,
    body_bytes: Option<usize>,
    mut body: impl FnMut(&mut Vec<u8>) -> Result<(), String>,
) -> Result<Bytes, StoreError> {
    let capacity = match body_bytes {
        Some(bytes) if bytes <= SIZED_BODY_BYTES_MAX => ENVELOPE_BYTES + bytes,
        // A size this large is not taken on trust: the buffer grows to it.
        _ => ENCODE_START_BYTES,
    };
    let mut out = Vec::with_capacity(capacity);
    encode_into(&mut out, stream, schema, &mut body)?;
    Ok(owned_bytes(out))
}

/// Appends the envelope and the body `body` writes to `out`.
fn encode_into(
    out: &mut Vec<u8>,
    stream: &str,
    schema: u16,
    body: &mut impl FnMut(&mut Vec<u8>) -> Result<(), String>,
) -> Result<(), StoreError> {
    out.push(ENVELOPE_TAG);
    out.push(CODEC_MSGPACK_NAMED);
    out.extend_from_slice(&schema.to_le_bytes());
    body(out).map_err(|reason| StoreError::Encode { stream: stream.to_owned(), reason })
}

/// `encoded` as `Bytes`, keeping at most twice its length, as growth by
/// doubling would leave it: a batch of 65,536 small events is not 32 MiB
/// of buffers.
fn owned_bytes(mut encoded: Vec<u8>) -> Bytes {
    if encoded.capacity() > 2 * encoded.len() {
        encoded.shrink_to_fit();
    }
    Bytes::from(encoded)
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
    let (inner, schema) = body_of(stream, seq, schema_max, bytes)?;
    match body(inner) {
        Ok(value) => Ok((value, schema)),
        Err(reason) => Err(decode_error(stream, seq, reason)),
    }
}

/// The body of an encoded value of `stream` at `seq` (what follows the
/// envelope) and the schema it was written under, at most `schema_max`:
/// the envelope checks of [`decode`], for a reader that decodes the body
/// in place, one value after another, without a closure per value.
///
/// # Errors
/// [`StoreError::Decode`] naming the stream and sequence, for a foreign
/// envelope, an unknown codec or a newer schema.
#[inline]
pub(crate) fn body_of<'a>(
    stream: &str,
    seq: u64,
    schema_max: u16,
    bytes: &'a [u8],
) -> Result<(&'a [u8], u16), StoreError> {
    let Some(([ENVELOPE_TAG, codec, schema_0, schema_1], body)) = bytes.split_first_chunk::<ENVELOPE_BYTES>() else {
        return Err(decode_error(stream, seq, "not an Annals store value".to_owned()));
    };
    if *codec != CODEC_MSGPACK_NAMED {
        return Err(decode_error(stream, seq, format!("unknown codec {codec}")));
    }
    let schema = u16::from_le_bytes([*schema_0, *schema_1]);
    if schema > schema_max {
        return Err(decode_error(
            stream,
            seq,
            format!("written under schema {schema}, newer than this build's {schema_max}"),
        ));
    }
    Ok((body, schema))
}

/// The error of a value of `stream` at `seq` that does not decode, for
/// `reason`. Out of line: the path that decodes stays short.
#[cold]
#[inline(never)]
pub(crate) fn decode_error(stream: &str, seq: u64, reason: String) -> StoreError {
    StoreError::Decode { stream: stream.to_owned(), seq, reason }
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

    /// A value that encodes another value while it is encoded, as a
    /// serializer that calls a store's codec might.
    struct Nested(Vec<u8>);

    impl Serialize for Nested {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let inner = encode("inner", 1, &Old { a: self.0.len() as u32 }).map_err(serde::ser::Error::custom)?;
            serializer.serialize_bytes(&[&inner[..], &self.0[..]].concat())
        }
    }

    /// Values below, at and above the size an encoding buffer starts with,
    /// and a value encoded while another is, come out as the serializer
    /// writes them, each its own bytes.
    #[test]
    fn encodings_are_the_serializers_bytes_whatever_their_size_or_nesting() {
        let direct = |value: &dyn Fn(&mut Vec<u8>) -> Result<(), StoreError>| {
            let mut out = Vec::new();
            value(&mut out).unwrap();
            out
        };
        for len in [0, 1, 300, ENCODE_START_BYTES - 10, ENCODE_START_BYTES, 70_000, 5, 9000, 2] {
            let value = vec![len as u8; len];
            let bin = serde_bytes_like::Borrowed(&value);
            let encoded = encode("s", 2, &bin).unwrap();
            assert_eq!(
                &encoded[..],
                direct(&|out| encode_into(out, "s", 2, &mut |out| encode_body(&bin, out))),
                "{len} bytes"
            );
            let nested = encode("s", 2, &Nested(value.clone())).unwrap();
            assert_eq!(
                &nested[..],
                direct(&|out| encode_into(out, "s", 2, &mut |out| encode_body(&Nested(value.clone()), out))),
                "{len} nested"
            );
            let (_, body) = split_envelope(&nested).unwrap();
            let inner: Vec<u8> = rmp_serde::from_slice::<serde_bytes_like::Owned>(body).unwrap().0;
            let (old, schema) = decode::<Old>("inner", 0, 1, &inner[..inner.len() - len]).unwrap();
            assert_eq!((old, schema), (Old { a: len as u32 }, 1));
        }
    }

    /// A sized encoding is the unsized one's bytes, whatever the size said
    /// (exact, short, long, absurd); an exact size leaves no spare room.
    #[test]
    fn a_sized_encoding_is_the_same_bytes_whatever_the_size_said() {
        let value = serde_bytes_like::Borrowed(&[9u8; 300]);
        let unsized_bytes = encode("s", 2, &value).unwrap();
        let body_bytes = unsized_bytes.len() - ENVELOPE_BYTES;
        for said in [Some(body_bytes), Some(0), Some(body_bytes - 1), Some(body_bytes + 100), Some(usize::MAX), None] {
            let mut capacity_bytes = 0;
            let sized = encode_sized("s", 2, said, |out| {
                encode_body(&value, out)?;
                capacity_bytes = out.capacity();
                Ok(())
            })
            .unwrap();
            assert_eq!(sized, unsized_bytes, "size said {said:?}");
            if said == Some(body_bytes) {
                assert_eq!(capacity_bytes, unsized_bytes.len(), "an exact size leaves no room over");
            }
        }
    }

    /// Bytes serialized as MessagePack `bin`, and read back.
    mod serde_bytes_like {
        pub(super) struct Borrowed<'a>(pub(super) &'a [u8]);

        impl serde::Serialize for Borrowed<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(self.0)
            }
        }

        pub(super) struct Owned(pub(super) Vec<u8>);

        impl<'de> serde::Deserialize<'de> for Owned {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Owned, D::Error> {
                struct Visit;
                impl serde::de::Visitor<'_> for Visit {
                    type Value = Owned;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Owned, E> {
                        Ok(Owned(bytes.to_vec()))
                    }
                }
                deserializer.deserialize_bytes(Visit)
            }
        }
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

    /// The in-place read of an envelope (what a run's load takes per row)
    /// refuses what `decode` refuses, each with the stream and sequence.
    #[test]
    fn the_body_read_in_place_is_the_one_decode_reads_and_refuses_alike() {
        let bytes = encode("rows/r", 2, &Old { a: 7 }).unwrap();
        let (body, schema) = body_of("rows/r", 5, 2, &bytes).unwrap();
        assert_eq!((body, schema), (&bytes[ENVELOPE_BYTES..], 2));
        assert_eq!(decode_body::<Old>(body), Ok(Old { a: 7 }));
        let mut foreign = bytes.to_vec();
        foreign[0] ^= 1;
        let mut other_codec = bytes.to_vec();
        other_codec[1] = 9;
        for (defect, bytes, schema_max) in [
            ("foreign", &foreign[..], 2),
            ("codec", &other_codec[..], 2),
            ("newer", &bytes[..], 1),
            ("short", &bytes[..3], 2),
        ] {
            let error = body_of("rows/r", 5, schema_max, bytes).unwrap_err();
            assert!(
                matches!(&error, StoreError::Decode { stream, seq: 5, .. } if stream == "rows/r"),
                "{defect}: {error}"
            );
            assert!(decode::<Old>("rows/r", 5, schema_max, bytes).is_err(), "{defect}");
        }
    }
}
