//! Binary encoding of protocol messages and stored records.
//!
//! CBOR (through `ciborium`): compact, self-describing, and the serde formats of
//! the big-integer backends are identical, so a GMP party and a num-bigint party
//! read each other's messages.

use serde::{de::DeserializeOwned, Serialize};

/// A value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Encoding failed.
    #[error("encoding failed: {0}")]
    Encode(String),
    /// The bytes are not a valid encoding of the expected type.
    #[error("decoding failed: {0}")]
    Decode(String),
}

/// Encodes `value` as CBOR.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes CBOR bytes into `T`. Validating types (key shares, aux info) are
/// validated while decoding.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    // The decoder's error text can quote input bytes; keep only its kind.
    ciborium::from_reader(bytes).map_err(|e| CodecError::Decode(redacted_kind(&e)))
}

fn redacted_kind<E: std::fmt::Debug>(e: &ciborium::de::Error<E>) -> String {
    match e {
        ciborium::de::Error::Io(_) => "truncated input".into(),
        ciborium::de::Error::Syntax(off) => format!("syntax error at offset {off}"),
        ciborium::de::Error::Semantic(off, _) => match off {
            Some(off) => format!("invalid value at offset {off}"),
            None => "invalid value".into(),
        },
        ciborium::de::Error::RecursionLimitExceeded => "nesting too deep".into(),
    }
}
