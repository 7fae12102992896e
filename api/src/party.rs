//! What parties send the coordinator, apart from their signed reports
//! (`party_core::wire::SignedReport`, a protocol format shared with wasm):
//! server party registration (signed by the party's identity key) and the
//! device join.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A party's public identity: Ed25519 and X25519 keys, 32 bytes each, hex.
/// The JSON form of `party_core::identity::PartyPublicKey`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Ed25519 verifying key, 64 hex digits.
    pub ed25519: String,
    /// X25519 public key, 64 hex digits.
    pub x25519: String,
}

/// `POST /internal/v1/parties`: a server party registers (or confirms) its
/// identity, signed by that identity's Ed25519 key over
/// `party_core::wire::party_register_message` (party id, device type, both
/// public keys, `issued_at`, `nonce`). The coordinator accepts it only for
/// the key an operator enrolled for the party id, within ±120 s of its
/// clock, and once per nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterParty {
    /// Party id (1..=128 characters).
    pub party_id: String,
    /// `server`.
    pub device_type: String,
    /// Its identity keys.
    pub identity: Identity,
    /// When the request was made, Unix seconds.
    pub issued_at: u64,
    /// 16 random bytes, 32 hex digits: the request is accepted once.
    pub nonce: String,
    /// Ed25519 signature by the identity, 128 hex digits.
    pub signature: String,
}

/// `POST /api/v1/mpc/sessions/{id}/join`: a device presents its join token
/// and identity, with the identity's signature over
/// `"mpc/coordinator/device-join/v2" || session id || SHA-256(token) ||
/// ed25519 || x25519` (both public keys, 32 bytes each).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceJoinRequest {
    /// The join token from `join_tokens`.
    pub join_token: String,
    /// The device's identity keys.
    pub identity: Identity,
    /// Ed25519 signature by the identity (proof of possession), 128 hex digits.
    pub signature: String,
}

impl std::fmt::Debug for DeviceJoinRequest {
    /// The join token is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceJoinRequest")
            .field("join_token", &"<redacted>")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// Whether a device join has its descriptor yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceJoinStatus {
    /// The descriptor is signed: run the session.
    Ready,
    /// Other devices of the session have not joined yet: ask again.
    WaitingForDevices,
}

/// The answer to a device join: `200` ready, `202` waiting for devices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceJoined {
    /// Session id.
    pub session_id: Uuid,
    /// Ready, or waiting for other devices.
    pub status: DeviceJoinStatus,
    /// The device's position in the descriptor (ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u16>,
    /// The signed descriptor, `party_core::descriptor::SignedDescriptor` (ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub descriptor: Option<serde_json::Value>,
}
