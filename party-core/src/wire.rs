//! Messages between parties, the router and the coordinator (JSON), shared by
//! native hosts and the browser.
//!
//! Router WebSocket (`GET /ws`): the router first sends
//! [`RouterToClient::Challenge`]; the client answers with one
//! [`ClientToRouter`] message signed by its identity key over
//! [`join_message`] or [`control_message`]. A session connection then carries
//! binary frames ([`crate::envelope`]); a control connection receives
//! [`RouterToClient::Invitation`]s.
//!
//! Reports (`POST /internal/v1/reports` on the coordinator): a party's signed
//! statement about a session ([`SignedReport`]).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::descriptor::SignedDescriptor;
use crate::identity::{IdentityError, PartyIdentity, PartyPublicKey};
use crate::signature::RecoverableSignature;

/// Router to client.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RouterToClient {
    /// First message on every connection: sign this nonce.
    Challenge {
        /// 32 random bytes, hex.
        #[serde(with = "hex::serde")]
        nonce: [u8; 32],
    },
    /// A session connection was accepted; binary frames follow.
    Joined {
        /// Session id.
        session_id: Uuid,
        /// This party's position in the session.
        position: u16,
    },
    /// A control connection was accepted.
    Registered {
        /// The party id the router knows this connection as.
        party_id: String,
    },
    /// An invitation to a session (control connections only).
    Invitation(Box<Invitation>),
    /// The session ended (completed, failed or expired); close the connection.
    SessionClosed {
        /// Session id.
        session_id: Uuid,
    },
    /// A refusal; the router closes the connection after it.
    Error {
        /// Machine-readable code.
        code: String,
        /// Human-readable message (never contains secrets).
        message: String,
    },
}

/// Client to router: the answer to the challenge.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientToRouter {
    /// Join a session's traffic with a join token.
    JoinSession {
        /// Session id.
        session_id: Uuid,
        /// The party's join token for this session.
        token: String,
        /// The party's identity; the token binds to it on first use.
        identity: PartyPublicKey,
        /// Signature over [`join_message`].
        #[serde(with = "hex::serde")]
        signature: [u8; 64],
    },
    /// Open the control connection of a server party.
    Control {
        /// The party's id.
        party_id: String,
        /// The party's identity.
        identity: PartyPublicKey,
        /// Signature over [`control_message`].
        #[serde(with = "hex::serde")]
        signature: [u8; 64],
    },
}

impl std::fmt::Debug for ClientToRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientToRouter::JoinSession {
                session_id,
                identity,
                ..
            } => f
                .debug_struct("JoinSession")
                .field("session_id", session_id)
                .field("identity", identity)
                .field("token", &"<redacted>")
                .finish_non_exhaustive(),
            ClientToRouter::Control {
                party_id, identity, ..
            } => f
                .debug_struct("Control")
                .field("party_id", party_id)
                .field("identity", identity)
                .finish_non_exhaustive(),
        }
    }
}

/// An invitation: the signed descriptor and this party's join token.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invitation {
    /// The coordinator-signed descriptor.
    pub descriptor: SignedDescriptor,
    /// The join token for the invited party.
    pub join_token: String,
}

impl std::fmt::Debug for Invitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invitation")
            .field("session_id", &self.descriptor.descriptor.session_id)
            .field("join_token", &"<redacted>")
            .finish()
    }
}

/// The bytes a party signs to join a session.
pub fn join_message(nonce: &[u8; 32], session_id: &Uuid) -> Vec<u8> {
    let mut m = b"mpc/router/join/v1".to_vec();
    m.extend_from_slice(nonce);
    m.extend_from_slice(session_id.as_bytes());
    m
}

/// Domain tag of the device join proof. v1 (session id and token hash only)
/// did not cover the X25519 key and is no longer accepted.
pub const DEVICE_JOIN_DOMAIN: &[u8] = b"mpc/coordinator/device-join/v2";

/// The bytes a device party signs when it presents its identity to the
/// coordinator with its join token (proof of possession of the identity key,
/// covering both public keys so neither can be swapped):
/// `"mpc/coordinator/device-join/v2" || session id || SHA-256(token) ||
/// Ed25519 key || X25519 key`.
pub fn device_join_message(session_id: &Uuid, token: &str, identity: &PartyPublicKey) -> Vec<u8> {
    use sha2::Digest as _;
    let mut m = DEVICE_JOIN_DOMAIN.to_vec();
    m.extend_from_slice(session_id.as_bytes());
    m.extend_from_slice(&sha2::Sha256::digest(token.as_bytes()));
    m.extend_from_slice(&identity.ed25519);
    m.extend_from_slice(&identity.x25519);
    m
}

/// Domain tag of a party's signed registration with the coordinator.
pub const PARTY_REGISTER_DOMAIN: &[u8] = b"mpc/coordinator/party-register/v1";

/// The bytes a party signs to register its identity with the coordinator:
/// `"mpc/coordinator/party-register/v1" || len(party_id) (u32 BE) ||
/// party_id || len(device_type) (u32 BE) || device_type || Ed25519 key ||
/// X25519 key || issued_at (Unix seconds, u64 BE) || nonce (16 bytes)`.
/// The identity signs both of its keys, so neither can be swapped, and the
/// time and nonce make each request usable once.
pub fn party_register_message(
    party_id: &str,
    device_type: &str,
    identity: &PartyPublicKey,
    issued_at: u64,
    nonce: &[u8; 16],
) -> Vec<u8> {
    let mut m = PARTY_REGISTER_DOMAIN.to_vec();
    for field in [party_id, device_type] {
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(field.as_bytes());
    }
    m.extend_from_slice(&identity.ed25519);
    m.extend_from_slice(&identity.x25519);
    m.extend_from_slice(&issued_at.to_be_bytes());
    m.extend_from_slice(nonce);
    m
}

/// The bytes a server party signs to open its control connection.
pub fn control_message(nonce: &[u8; 32], party_id: &str) -> Vec<u8> {
    let mut m = b"mpc/router/control/v1".to_vec();
    m.extend_from_slice(nonce);
    m.extend_from_slice(party_id.as_bytes());
    m
}

/// A party's statement about a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Session id.
    pub session_id: Uuid,
    /// The reporting party's position in the session.
    pub position: u16,
    /// What happened.
    pub body: ReportBody,
}

/// What a report states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReportBody {
    /// The party accepted the descriptor and joined the session's traffic.
    Joined,
    /// Progress of the protocol.
    Progress {
        /// Stage name (`aux_info`, `keygen`, `sign`, ...; `primes` while
        /// generating primes).
        stage: String,
        /// Round within the stage.
        round: u16,
        /// Percent done where known.
        percent: Option<u8>,
    },
    /// Keygen finished; the share is stored.
    KeygenResult {
        /// Compressed SEC1 public key, hex.
        #[serde(with = "hex::serde")]
        public_key: [u8; 33],
        /// Hash of the account policy the party stored with its share
        /// ([`crate::authz::Policy::hash`]), hex.
        #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex32")]
        policy_hash: Option<[u8; 32]>,
        /// Fingerprint of the aux info the new share carries
        /// ([`crate::aux_fingerprint::aux_fingerprint`]), hex. Absent in
        /// reports of parties older than the field.
        #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex32")]
        aux_fingerprint: Option<[u8; 32]>,
    },
    /// An aux-info session finished: the new aux info is stored beside the
    /// group's current one; its fingerprint.
    AuxInfoStored {
        /// [`crate::aux_fingerprint::aux_fingerprint`] of the new aux info,
        /// hex.
        #[serde(with = "hex::serde")]
        aux_fingerprint: [u8; 32],
    },
    /// A policy change is stored; the hash of the new policy.
    PolicyChanged {
        /// [`crate::authz::Policy::hash`] of the stored policy, hex.
        #[serde(with = "hex::serde")]
        policy_hash: [u8; 32],
    },
    /// The party refused the session before it started (nothing was sent).
    Refused {
        /// Stable code ([`crate::authz::AuthzError::code`]).
        code: String,
        /// Human-readable reason (no secrets).
        reason: String,
    },
    /// Signing finished.
    Signature {
        /// The verified signature.
        signature: RecoverableSignature,
    },
    /// Presignature stored.
    PresignatureStored,
    /// The party failed or refused the session.
    Failed {
        /// Why (no secrets).
        reason: String,
        /// Position of the party the failure is blamed on, where known.
        blamed: Option<u16>,
    },
}

/// A report as sent: the exact JSON text and the party's signature over it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReport {
    /// JSON of a [`Report`]; verified byte for byte.
    pub report: String,
    /// Ed25519 signature over `"mpc/report/v1" || report`.
    #[serde(with = "hex::serde")]
    pub signature: [u8; 64],
}

const DOMAIN_REPORT: &[u8] = b"mpc/report/v1";

impl SignedReport {
    /// Signs a report with the party's identity.
    pub fn sign(report: &Report, identity: &PartyIdentity) -> Result<Self, serde_json::Error> {
        let text = serde_json::to_string(report)?;
        let mut m = DOMAIN_REPORT.to_vec();
        m.extend_from_slice(text.as_bytes());
        Ok(Self {
            signature: identity.sign(&m),
            report: text,
        })
    }

    /// The report, if the signature verifies under `key`.
    pub fn verify(&self, key: &PartyPublicKey) -> Result<Report, IdentityError> {
        let mut m = DOMAIN_REPORT.to_vec();
        m.extend_from_slice(self.report.as_bytes());
        key.verify(&m, &self.signature)?;
        serde_json::from_str(&self.report).map_err(|_| IdentityError::BadSignature)
    }

    /// The report without checking the signature (to find out who claims to
    /// have sent it before looking up their key).
    pub fn peek(&self) -> Option<Report> {
        serde_json::from_str(&self.report).ok()
    }
}

pub(crate) mod opt_hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("expected 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registration bytes are length-prefixed: moving a character
    /// between the party id and the device type changes them, and they end
    /// with the time (big-endian) and the nonce.
    #[test]
    fn registration_bytes_are_unambiguous() {
        let id = PartyPublicKey {
            ed25519: [1; 32],
            x25519: [2; 32],
        };
        let a = party_register_message("party-1s", "erver", &id, 7, &[3; 16]);
        let b = party_register_message("party-1", "server", &id, 7, &[3; 16]);
        assert_ne!(a, b);
        assert!(b.starts_with(PARTY_REGISTER_DOMAIN));
        let tail = &b[b.len() - 24..];
        assert_eq!(&tail[..8], &7u64.to_be_bytes());
        assert_eq!(&tail[8..], &[3; 16]);
        let len = PARTY_REGISTER_DOMAIN.len() + 4 + 7 + 4 + 6 + 32 + 32 + 8 + 16;
        assert_eq!(b.len(), len);
    }
}
