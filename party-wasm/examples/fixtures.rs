//! Test fixtures for the party-wasm adapter tests (`party-wasm/tests/*.mjs`):
//! prints JSON with a throwaway coordinator key, three party seeds and
//! coordinator-signed descriptors (a 2-of-3 keygen reusing the PUBLIC test
//! aux info, and a signing session of parties 0 and 2). Test use only.

use party_core::descriptor::{
    CurveName, Participant, SessionDescriptor, SessionKind, DESCRIPTOR_VERSION,
};
use party_core::identity::{CoordinatorKey, PartyIdentity};
use rand_core::{OsRng, RngCore};
use uuid::Uuid;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let coordinator = CoordinatorKey::generate(&mut OsRng);
    let seeds: Vec<[u8; 32]> = (0..3)
        .map(|_| {
            let mut s = [0u8; 32];
            OsRng.fill_bytes(&mut s);
            s
        })
        .collect();
    let ids: Vec<PartyIdentity> = seeds.iter().map(PartyIdentity::from_seed).collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let participant = |k: usize| Participant {
        party_id: format!("party-{k}"),
        keygen_index: u16::try_from(k).unwrap_or(0),
        identity: ids[k].public(),
    };
    let mut uuid_bytes = [0u8; 16];
    OsRng.fill_bytes(&mut uuid_bytes);
    let keygen_id = uuid::Builder::from_random_bytes(uuid_bytes).into_uuid();
    let keygen = SessionDescriptor {
        version: DESCRIPTOR_VERSION,
        session_id: keygen_id,
        kind: SessionKind::Keygen {
            generate_aux: false,
            policy: None,
            aux_fingerprint: None,
        },
        curve: CurveName::Secp256k1,
        threshold: 2,
        parties: 3,
        participants: (0..3).map(participant).collect(),
        expires_at: now + 3600,
        authorization: None,
    };
    let mut hash = [0u8; 32];
    OsRng.fill_bytes(&mut hash);
    OsRng.fill_bytes(&mut uuid_bytes);
    let sign = SessionDescriptor {
        version: DESCRIPTOR_VERSION,
        session_id: uuid::Builder::from_random_bytes(uuid_bytes).into_uuid(),
        kind: SessionKind::Sign {
            account_id: keygen_id.to_string(),
            message_hash: hash,
            derivation_path: vec![],
        },
        curve: CurveName::Secp256k1,
        threshold: 2,
        parties: 3,
        participants: vec![participant(0), participant(2)],
        expires_at: now + 3600,
        authorization: None,
    };
    let expired = SessionDescriptor {
        session_id: Uuid::from_u128(1),
        expires_at: now - 1,
        ..keygen.clone()
    };
    let out = serde_json::json!({
        "coordinator_public_key": hex::encode(coordinator.public()),
        "seeds": seeds.iter().map(hex::encode).collect::<Vec<_>>(),
        "keygen": keygen.sign(&coordinator)?,
        "sign": sign.sign(&coordinator)?,
        "expired": expired.sign(&coordinator)?,
        "message_hash": hex::encode(hash),
    });
    println!("{out}");
    Ok(())
}
