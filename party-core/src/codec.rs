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
/// validated while decoding. The bytes must be exactly one value: trailing
/// bytes (a message padded past its content) are refused.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let mut rest = bytes;
    // The decoder's error text can quote input bytes; keep only its kind.
    let value =
        ciborium::from_reader(&mut rest).map_err(|e| CodecError::Decode(redacted_kind(&e)))?;
    if !rest.is_empty() {
        return Err(CodecError::Decode(format!("{} trailing bytes", rest.len())));
    }
    Ok(value)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&(1u8, "x")).unwrap_or_default();
        assert_eq!(decode::<(u8, String)>(&bytes).ok(), Some((1, "x".into())));
        bytes.push(0);
        assert!(matches!(
            decode::<(u8, String)>(&bytes),
            Err(CodecError::Decode(e)) if e == "1 trailing bytes"
        ));
    }
}
