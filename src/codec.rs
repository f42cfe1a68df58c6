//! Codecs turn message keys and values into bytes and back.
//!
//! A [`Topic`](crate::Topic) has one codec for its keys and one for its values.
//! Values default to [`Json`], keys to [`Bytes`]. The built-in codecs mirror
//! the serializers of Quix Streams and Kafka:
//!
//! | codec | Rust type | bytes |
//! |---|---|---|
//! | [`Json`] | any `Serialize + DeserializeOwned` type, `serde_json::Value` | UTF-8 JSON |
//! | [`Bytes`] | `Vec<u8>` | as they are |
//! | [`Utf8`] | `String` | UTF-8 |
//! | [`I32`], [`I64`] | `i32`, `i64` | big-endian, as Kafka's `IntegerSerializer` and `LongSerializer` |
//! | [`F64`] | `f64` | big-endian IEEE 754, as Kafka's `DoubleSerializer` |
//!
//! A custom format is one implementation of [`Codec`].
//!
//! # Examples
//!
//! ```
//! use kstreams::codec::Codec;
//!
//! /// Comma-separated pairs, e.g. `alice,42`.
//! struct Csv;
//!
//! impl Codec<(String, u32)> for Csv {
//!     fn encode(&self, value: &(String, u32), out: &mut Vec<u8>) -> anyhow::Result<()> {
//!         out.extend_from_slice(format!("{},{}", value.0, value.1).as_bytes());
//!         Ok(())
//!     }
//!     fn decode(&self, bytes: &[u8]) -> anyhow::Result<(String, u32)> {
//!         let text = std::str::from_utf8(bytes)?;
//!         let (name, n) = text.split_once(',').ok_or_else(|| anyhow::anyhow!("no comma"))?;
//!         Ok((name.to_string(), n.parse()?))
//!     }
//! }
//!
//! let mut bytes = Vec::new();
//! Csv.encode(&("alice".to_string(), 42), &mut bytes).unwrap();
//! assert_eq!(Csv.decode(&bytes).unwrap(), ("alice".to_string(), 42));
//! ```

use anyhow::{anyhow, Context as _};
use serde::{de::DeserializeOwned, Serialize};

/// Encodes values of type `T` into bytes and decodes them back.
///
/// Implementations must be cheap to share between threads; they hold
/// configuration, not per-message state.
pub trait Codec<T>: Send + Sync {
    /// Appends the encoding of `value` to `out`.
    ///
    /// # Errors
    ///
    /// When `value` cannot be represented in this format.
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> anyhow::Result<()>;

    /// Decodes one value from `bytes`.
    ///
    /// # Errors
    ///
    /// When `bytes` is not a valid encoding of a `T`.
    fn decode(&self, bytes: &[u8]) -> anyhow::Result<T>;
}

/// JSON, through serde: the default value codec.
///
/// # Examples
///
/// ```
/// use kstreams::codec::{Codec, Json};
///
/// let mut out = Vec::new();
/// Json.encode(&serde_json::json!({"amount": 3}), &mut out).unwrap();
/// assert_eq!(out, br#"{"amount":3}"#);
/// let back: serde_json::Value = Json.decode(&out).unwrap();
/// assert_eq!(back["amount"], 3);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl<T: Serialize + DeserializeOwned> Codec<T> for Json {
    fn encode(&self, value: &T, out: &mut Vec<u8>) -> anyhow::Result<()> {
        serde_json::to_writer(out, value).context("cannot encode as JSON")
    }

    fn decode(&self, bytes: &[u8]) -> anyhow::Result<T> {
        serde_json::from_slice(bytes).context("invalid JSON")
    }
}

/// Raw bytes, passed through unchanged: the default key codec.
///
/// # Examples
///
/// ```
/// use kstreams::codec::{Bytes, Codec};
///
/// assert_eq!(Bytes.decode(b"abc").unwrap(), b"abc".to_vec());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Bytes;

impl Codec<Vec<u8>> for Bytes {
    fn encode(&self, value: &Vec<u8>, out: &mut Vec<u8>) -> anyhow::Result<()> {
        out.extend_from_slice(value);
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
        Ok(bytes.to_vec())
    }
}

/// UTF-8 text.
///
/// # Examples
///
/// ```
/// use kstreams::codec::{Codec, Utf8};
///
/// assert_eq!(Utf8.decode(b"alice").unwrap(), "alice");
/// assert!(Utf8.decode(&[0xff]).is_err());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8;

impl Codec<String> for Utf8 {
    fn encode(&self, value: &String, out: &mut Vec<u8>) -> anyhow::Result<()> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> anyhow::Result<String> {
        String::from_utf8(bytes.to_vec()).context("invalid UTF-8")
    }
}

macro_rules! big_endian_codec {
    ($(#[$doc:meta])* $name:ident, $ty:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl Codec<$ty> for $name {
            fn encode(&self, value: &$ty, out: &mut Vec<u8>) -> anyhow::Result<()> {
                out.extend_from_slice(&value.to_be_bytes());
                Ok(())
            }

            fn decode(&self, bytes: &[u8]) -> anyhow::Result<$ty> {
                let array = bytes.try_into().map_err(|_| {
                    anyhow!(
                        "expected {} bytes for {}, got {}",
                        std::mem::size_of::<$ty>(),
                        stringify!($ty),
                        bytes.len()
                    )
                })?;
                Ok(<$ty>::from_be_bytes(array))
            }
        }
    };
}

big_endian_codec!(
    /// A 32-bit signed integer, 4 bytes big-endian (Kafka's `IntegerSerializer`).
    ///
    /// # Examples
    ///
    /// ```
    /// use kstreams::codec::{Codec, I32};
    ///
    /// assert_eq!(I32.decode(&[0, 0, 1, 0]).unwrap(), 256);
    /// ```
    I32,
    i32
);
big_endian_codec!(
    /// A 64-bit signed integer, 8 bytes big-endian (Kafka's `LongSerializer`).
    ///
    /// # Examples
    ///
    /// ```
    /// use kstreams::codec::{Codec, I64};
    ///
    /// let mut out = Vec::new();
    /// I64.encode(&-2, &mut out).unwrap();
    /// assert_eq!(I64.decode(&out).unwrap(), -2);
    /// ```
    I64,
    i64
);
big_endian_codec!(
    /// A 64-bit float, 8 bytes big-endian (Kafka's `DoubleSerializer`).
    ///
    /// # Examples
    ///
    /// ```
    /// use kstreams::codec::{Codec, F64};
    ///
    /// let mut out = Vec::new();
    /// F64.encode(&1.5, &mut out).unwrap();
    /// assert_eq!(F64.decode(&out).unwrap(), 1.5);
    /// ```
    F64,
    f64
);

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: PartialEq + std::fmt::Debug>(codec: &impl Codec<T>, value: T) {
        let mut bytes = Vec::new();
        codec.encode(&value, &mut bytes).unwrap();
        assert_eq!(codec.decode(&bytes).unwrap(), value);
    }

    #[test]
    fn every_codec_roundtrips() {
        roundtrip(&Json, serde_json::json!({"a": [1, 2.5, "x", null]}));
        roundtrip(&Json, ("user".to_string(), 7u64));
        roundtrip(&Bytes, vec![0u8, 255, 3]);
        roundtrip(&Utf8, "grüße".to_string());
        roundtrip(&I32, i32::MIN);
        roundtrip(&I64, i64::MAX);
        roundtrip(&F64, -0.25);
    }

    #[test]
    fn integer_with_wrong_length_names_expected_size() {
        let err = I64.decode(&[1, 2, 3]).unwrap_err().to_string();
        assert_eq!(err, "expected 8 bytes for i64, got 3");
    }

    #[test]
    fn bad_json_is_an_error() {
        let result: anyhow::Result<serde_json::Value> = Json.decode(b"{not json");
        assert!(result.is_err());
    }
}
