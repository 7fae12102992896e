//! Request validation: hashes, messages, participant lists, party ids and
//! device types, each refused with its stable code.

use mpc_api::error::ErrorCode;
use mpc_api::rest::{DeviceType, Digest, Participant as ParticipantRequest, SignRequest};
use party_core::descriptor::MessageDigest;

use super::ServiceError;

/// Longest party id.
pub const MAX_PARTY_ID: usize = 128;

pub(super) fn bad(code: ErrorCode, message: impl Into<String>) -> ServiceError {
    ServiceError::new(code, message)
}

/// Parses a 32-byte hash given as 64 hex digits with an optional `0x`.
pub fn parse_hash(s: &str) -> Result<[u8; 32], ServiceError> {
    let h = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if h.len() != 64 {
        return Err(bad(
            ErrorCode::InvalidMessageHash,
            format!(
                "message_hash must be 32 bytes (64 hex digits), got {} digits",
                h.len()
            ),
        ));
    }
    let bytes = hex::decode(h)
        .map_err(|_| bad(ErrorCode::InvalidMessageHash, "message_hash is not hex"))?;
    bytes.try_into().map_err(|_| {
        bad(
            ErrorCode::InvalidMessageHash,
            "message_hash must be 32 bytes",
        )
    })
}

/// The message of a sign request (hex, optional `0x`) with its digest.
pub(super) fn parse_message(
    req: &SignRequest,
) -> Result<Option<(Vec<u8>, MessageDigest)>, ServiceError> {
    match &req.message {
        Some(m) => {
            let bytes = hex::decode(m.strip_prefix("0x").unwrap_or(m))
                .map_err(|_| bad(ErrorCode::InvalidMessage, "message must be hex"))?;
            if bytes.is_empty() {
                return Err(bad(ErrorCode::InvalidMessage, "message must not be empty"));
            }
            let digest = match req.digest.unwrap_or_default() {
                Digest::Keccak256 => MessageDigest::Keccak256,
                Digest::Sha256 => MessageDigest::Sha256,
            };
            Ok(Some((bytes, digest)))
        }
        None if req.digest.is_some() => {
            Err(bad(ErrorCode::InvalidMessage, "digest needs a message"))
        }
        None => Ok(None),
    }
}

/// The 32-byte hash a sign request signs: `message_hash`, the digest of
/// `message`, or both when they agree.
pub(super) fn hash_to_sign(
    message_hash: Option<&str>,
    message: Option<&(Vec<u8>, MessageDigest)>,
) -> Result<[u8; 32], ServiceError> {
    match (message_hash, message) {
        (Some(h), Some((m, digest))) => {
            let hash = parse_hash(h)?;
            if hash != digest.hash(m) {
                return Err(bad(
                    ErrorCode::InvalidMessageHash,
                    "message_hash is not the digest of message",
                ));
            }
            Ok(hash)
        }
        (Some(h), None) => parse_hash(h),
        (None, Some((m, digest))) => Ok(digest.hash(m)),
        (None, None) => Err(bad(
            ErrorCode::InvalidMessageHash,
            "give message_hash, or message (hex) with its digest",
        )),
    }
}

pub(super) fn check_unique(participants: &[ParticipantRequest]) -> Result<(), ServiceError> {
    let mut seen = std::collections::BTreeSet::new();
    for p in participants {
        if !seen.insert(p.party_id.as_str()) {
            return Err(bad(
                ErrorCode::DuplicateParticipant,
                format!("participant {} is listed twice", p.party_id),
            ));
        }
    }
    Ok(())
}

/// A device party id: 1..=128 characters of `[A-Za-z0-9._-]`.
pub(super) fn check_device_party_id(id: &str) -> Result<(), ServiceError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(bad(
            ErrorCode::InvalidPartyId,
            "a device party_id must be 1..128 characters of A-Z a-z 0-9 . _ -",
        ))
    }
}

/// A device type named by a caller; 422 `unsupported_device_type` otherwise.
pub(super) fn parse_device_type(s: &str) -> Result<DeviceType, ServiceError> {
    DeviceType::parse(s).ok_or_else(|| {
        let devices: Vec<&str> = DeviceType::ALL
            .iter()
            .filter(|d| d.is_device())
            .map(|d| d.as_str())
            .collect();
        ServiceError::new(
            ErrorCode::UnsupportedDeviceType,
            format!(
                "device_type must be server or one of {}",
                devices.join(", ")
            ),
        )
    })
}
