//! Approvers, policies and policy accounts for the authorization tests:
//! alice (Ed25519) and bob (P-256) approve, quorum 2; carol (Ed25519) is in
//! no policy until a test puts her there.

use axum::http::StatusCode;
use ed25519_dalek::Signer as _;
use party_core::authz::{Operation, Payload, Policy, Statement};
use party_core::descriptor::{MessageDigest, SessionDescriptor, SessionKind};
use party_core::wire::ReportBody;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{parties, signed_report, TestApp};

pub struct Approvers {
    pub alice: ed25519_dalek::SigningKey,
    pub bob: p256::ecdsa::SigningKey,
    pub carol: ed25519_dalek::SigningKey,
}

impl Approvers {
    pub fn new() -> Self {
        Self {
            alice: ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng),
            bob: p256::ecdsa::SigningKey::random(&mut rand_core::OsRng),
            carol: ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    /// alice + bob (bob's key given uncompressed), quorum 2, keccak256
    /// messages only, at most 100 signatures an hour.
    pub fn policy(&self) -> Value {
        json!({
            "approvers": [
                { "id": "alice", "ed25519": hex::encode(self.alice.verifying_key().as_bytes()) },
                { "id": "bob", "p256": hex::encode(self.bob.verifying_key().to_encoded_point(false).as_bytes()) },
            ],
            "quorum": 2,
            "digests": ["keccak256"],
            "allow_bare_hash": false,
            "max_signatures_per_hour": 100,
        })
    }

    /// carol alone, quorum 1, bare hashes allowed.
    pub fn carol_policy(&self) -> Value {
        json!({
            "approvers": [{ "id": "carol", "ed25519": hex::encode(self.carol.verifying_key().as_bytes()) }],
            "quorum": 1,
            "digests": ["keccak256", "sha256"],
            "allow_bare_hash": true,
        })
    }

    pub fn alice(&self, statement: &[u8]) -> Value {
        ed("alice", &self.alice, statement)
    }

    pub fn carol(&self, statement: &[u8]) -> Value {
        ed("carol", &self.carol, statement)
    }

    /// bob's approval, DER or 64-byte `r || s`.
    pub fn bob(&self, statement: &[u8], der: bool) -> Value {
        use p256::ecdsa::signature::Signer as _;
        let sig: p256::ecdsa::Signature = self.bob.sign(statement);
        let bytes = if der {
            sig.to_der().as_bytes().to_vec()
        } else {
            sig.to_bytes().to_vec()
        };
        json!({ "approver": "bob", "signature": hex::encode(bytes) })
    }
}

pub fn ed(id: &str, key: &ed25519_dalek::SigningKey, statement: &[u8]) -> Value {
    json!({ "approver": id, "signature": hex::encode(key.sign(statement).to_bytes()) })
}

/// A policy as party-core reads it (the same JSON shape as the API's).
pub fn policy_of(v: &Value) -> Policy {
    serde_json::from_value(v.clone()).unwrap()
}

/// The statement of signing `message` (keccak256) with `account_id`,
/// written out with party-core's encoder, independently of the coordinator.
pub fn sign_statement(
    account_id: &str,
    message: &[u8],
    request_id: &str,
    not_after: u64,
) -> Vec<u8> {
    Statement {
        account_id,
        operation: Operation::Sign,
        payload: Payload::Message {
            digest: MessageDigest::Keccak256,
            message,
        },
        derivation_path: &[],
        request_id,
        not_after,
    }
    .to_bytes()
}

/// Unix seconds from now.
pub fn in_secs(s: u64) -> u64 {
    party_core_now() + s
}

fn party_core_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl TestApp {
    /// The descriptor of the last invitation.
    pub fn last_descriptor(&self) -> SessionDescriptor {
        let calls = self.router.calls();
        calls
            .invited
            .last()
            .unwrap()
            .1
            .descriptor
            .descriptor
            .clone()
    }

    /// A 2-of-3 account of the three server parties with `policy`, made by
    /// a keygen whose every party reports the descriptor's policy hash.
    pub async fn policy_account(&self, policy: &Value) -> String {
        let (status, created) = self
            .post(
                "/api/v1/mpc/keygen",
                &json!({ "threshold_n": 3, "threshold_t": 2, "participants": parties(&[1, 2, 3]), "policy": policy }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let sid = Uuid::parse_str(created["session_id"].as_str().unwrap()).unwrap();
        let SessionKind::Keygen {
            policy: Some(p), ..
        } = self.last_descriptor().kind
        else {
            panic!("the keygen descriptor carries no policy");
        };
        let pk = random_public_key();
        for (pos, id) in self.servers.iter().enumerate() {
            let body = ReportBody::KeygenResult {
                public_key: pk,
                policy_hash: Some(p.hash()),
                aux_fingerprint: Some(super::TEST_AUX_FINGERPRINT),
            };
            let (status, b) = self.report(&signed_report(sid, pos as u16, body, id)).await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{b}");
        }
        let (_, s) = self.get(&format!("/api/v1/mpc/sessions/{sid}")).await;
        assert_eq!(s["status"], "completed", "{s}");
        s["result"]["account_id"].as_str().unwrap().to_string()
    }
}

pub fn random_public_key() -> [u8; 33] {
    let key = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    key.verifying_key()
        .to_encoded_point(true)
        .as_bytes()
        .try_into()
        .unwrap()
}
