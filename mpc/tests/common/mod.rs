//! Helpers shared by the end-to-end tests: data directories (and PostgreSQL
//! databases when `MPC_TEST_DB=postgres`), participant lists, and the
//! independent signature check (k256 verify, low s, DER, recovery from `v`).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::PathBuf;

pub mod pki;

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use mpc::dev::{DevOptions, DevSystem};
use serde_json::{json, Value};

/// `party-core/test-data`: PUBLIC test primes and aux info.
pub fn test_data() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../party-core/test-data"
    ))
}

/// A test's data directory and, on PostgreSQL, its database (one schema for
/// the coordinator and one per party), kept across restarts of the system.
pub struct TempDir(pub PathBuf, tokio::sync::OnceCell<Vec<String>>);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("mpc-test-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p, tokio::sync::OnceCell::new())
    }

    /// Database URLs on PostgreSQL: `[coordinator, party-1, ..., party-5]`.
    pub async fn postgres_urls(&self) -> Option<&Vec<String>> {
        if mpc_db::testing::test_backend() != mpc_db::Backend::Postgres {
            return None;
        }
        let urls = self
            .1
            .get_or_init(|| async {
                mpc_db::testing::postgres_schema_urls(&[
                    "coordinator",
                    "party1",
                    "party2",
                    "party3",
                    "party4",
                    "party5",
                ])
                .await
                .expect("MPC_TEST_DB=postgres needs PostgreSQL")
            })
            .await;
        Some(urls)
    }

    /// Options for a fast system on port 0: public test aux info (a keygen
    /// is a DKG only), on the suite's database backend.
    pub async fn fast(&self, parties: usize) -> DevOptions {
        let mut o = DevOptions::new(&self.0);
        if let Some(urls) = self.postgres_urls().await {
            o.coordinator_database_url = Some(urls[0].clone());
            o.party_database_urls = urls[1..].to_vec();
        }
        o.api_addr = "127.0.0.1:0".parse().unwrap();
        o.router_addr = "127.0.0.1:0".parse().unwrap();
        o.vault_addr = "127.0.0.1:0".parse().unwrap();
        o.parties = parties;
        o.insecure_test_aux = Some(test_data());
        o.insecure_test_primes = Some(test_data());
        // The suites follow sessions by polling every 20 ms: more than the
        // default 200 requests per 10 s of their one key. The limits
        // themselves are tested in coordinator/tests/limits.rs.
        o.limits.requests = 1_000_000;
        o
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Server parties `server-party-k` as a participant list.
pub fn parties(ids: &[usize]) -> Value {
    Value::Array(
        ids.iter()
            .map(|k| json!({ "party_id": DevSystem::party_id(*k), "device_type": "server", "device_id": format!("d{k}") }))
            .collect(),
    )
}

/// 32 random bytes.
pub fn random_hash() -> [u8; 32] {
    let mut h = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut h);
    h
}

/// Checks a signature from the API with k256, not our code: it verifies
/// against `hash` and the account key, `s` is low, the DER form matches and
/// `v` recovers the account key.
pub fn verify(sig: &Value, hash: &[u8; 32], public_key_hex: &str) {
    let vk = VerifyingKey::from_sec1_bytes(&hex::decode(public_key_hex).unwrap()).unwrap();
    let r = hex::decode(sig["r"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    let s = hex::decode(sig["s"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    let k_sig = Signature::from_slice(&[r, s].concat()).unwrap();
    assert!(k_sig.normalize_s().is_none(), "low s");
    vk.verify_prehash(hash, &k_sig).expect("k256 verifies");
    let v = u8::try_from(sig["v"].as_u64().unwrap()).unwrap();
    let rec = VerifyingKey::recover_from_prehash(hash, &k_sig, RecoveryId::from_byte(v).unwrap())
        .unwrap();
    assert_eq!(rec, vk, "v recovers the account key");
    assert_eq!(
        Signature::from_der(&hex::decode(sig["der"].as_str().unwrap()).unwrap()).unwrap(),
        k_sig
    );
}

/// Runs `mpc <party_args> --print-identity` (a party's own arguments) and
/// returns the public identity it prints, for an operator to enrol.
pub async fn print_identity(party_args: &[String]) -> mpc::cli::party::PrintedIdentity {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mpc"))
        .args(party_args)
        .arg("--print-identity")
        .env_remove("MPC_DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "--print-identity failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Enrols a printed identity through the admin API (an operator key), as
/// `mpc parties enrol` does.
pub async fn enrol(client: &mpc::client::Client, id: &mpc::cli::party::PrintedIdentity) {
    let enrolment = client
        .enrol_party(
            &id.party_id,
            &mpc_api::admin::PartyEnrol {
                ed25519: id.ed25519.clone(),
                x25519: Some(id.x25519.clone()),
            },
        )
        .await
        .unwrap();
    assert_eq!(enrolment.ed25519, id.ed25519);
}
