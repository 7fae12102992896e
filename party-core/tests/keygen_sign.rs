//! Keygen and signing over the envelope layer (signed broadcasts, encrypted
//! p2p frames), every signature checked independently with `k256`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use party_core::descriptor::{MessageDigest, SessionKind};
use party_core::session::{SessionInput, SessionOutput, StoredPresignature};
use sha3::Digest as _;

/// Every t-subset of 0..n, in increasing order.
fn subsets(n: u16, t: usize) -> Vec<Vec<u16>> {
    let mut out = Vec::new();
    for mask in 0u32..(1 << n) {
        if mask.count_ones() as usize == t {
            out.push((0..n).filter(|i| mask & (1 << i) != 0).collect());
        }
    }
    out
}

#[test]
fn two_of_three_keygen_then_every_pair_signs() {
    let f = Fixture::new(3);
    let shares = f.keygen(2);
    let pk = public_key(&shares[0]);
    for signers in subsets(3, 2) {
        let hash = random_hash();
        let sigs = f.sign(&shares, &signers, hash);
        assert_eq!(sigs.len(), 2);
        for s in &sigs {
            assert_valid_signature(s, &hash, &pk);
        }
        assert_eq!(
            sigs[0], sigs[1],
            "signers {signers:?} agree on the signature"
        );
    }
}

#[test]
fn signers_listed_out_of_keygen_order_still_sign() {
    let f = Fixture::new(3);
    let shares = f.keygen(2);
    let hash = random_hash();
    // Parties 3 and 1 (keygen indices 2, 0), in that session order.
    let sigs = f.sign(&shares, &[2, 0], hash);
    assert_valid_signature(&sigs[0], &hash, &public_key(&shares[0]));
}

/// Signing with every t-subset costs CI about two CPU-minutes at 3-of-5 (ten
/// signings); these four triples cover every pair of the five parties and
/// every party, first and last positions included. `MPC_ALL_SUBSETS=1` signs
/// with all ten.
const TRIPLES_COVERING_EVERY_PAIR: [[u16; 3]; 4] = [[0, 1, 2], [0, 3, 4], [1, 3, 4], [2, 3, 4]];

#[test]
fn three_of_five_keygen_then_triples_covering_every_pair_sign() {
    let f = Fixture::new(5);
    // With the group's multiexp tables attached, as server parties sign
    // (about a quarter less CPU per signing).
    let shares = f.keygen(3);
    let tables = party_core::accel::MultiexpTables::build(&shares[0].aux).unwrap();
    let shares: Vec<_> = shares.iter().map(|s| tables.attach(s).unwrap()).collect();
    let pk = public_key(&shares[0]);
    let all = subsets(5, 3);
    assert_eq!(all.len(), 10);
    let chosen: Vec<Vec<u16>> = if std::env::var("MPC_ALL_SUBSETS").as_deref() == Ok("1") {
        all
    } else {
        TRIPLES_COVERING_EVERY_PAIR
            .iter()
            .map(|t| t.to_vec())
            .collect()
    };
    for a in 0..5u16 {
        for b in a + 1..5 {
            assert!(
                chosen.iter().any(|t| t.contains(&a) && t.contains(&b)),
                "parties {a} and {b} sign together"
            );
        }
    }
    for signers in chosen {
        let hash = random_hash();
        let sigs = f.sign(&shares, &signers, hash);
        assert_eq!(sigs.len(), 3);
        for s in &sigs {
            assert_valid_signature(s, &hash, &pk);
        }
    }
}

#[test]
fn presign_then_online_sign() {
    let f = Fixture::new(3);
    let shares = f.keygen(2);
    let pk = public_key(&shares[0]);
    let account = "acct-presign".to_string();
    for signers in subsets(3, 2) {
        // Presign.
        let signed = f.sign_descriptor(f.descriptor(
            SessionKind::Presign {
                account_id: account.clone(),
            },
            2,
            &signers,
        ));
        let presign_id = signed.descriptor.session_id;
        let sessions = f.sessions(&signed, |k| {
            SessionInput::Share(Box::new(shares[usize::from(k)].clone()))
        });
        let presigs: Vec<StoredPresignature> = Hub::default()
            .run(sessions)
            .unwrap()
            .into_iter()
            .map(|o| match o {
                SessionOutput::Presignature(p) => *p,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert!(presigs.iter().all(|p| p.presignature_id == presign_id));

        // Online sign with the Ethereum digest.
        let message = b"transfer 1 ETH to 0x00".to_vec();
        let hash: [u8; 32] = sha3::Keccak256::digest(&message).into();
        let signed = f.sign_descriptor(f.descriptor(
            SessionKind::OnlineSign {
                account_id: account.clone(),
                presignature_id: presign_id,
                message,
                digest: MessageDigest::Keccak256,
            },
            2,
            &signers,
        ));
        let mut presigs = presigs.into_iter();
        let sessions = f.sessions(&signed, |_| {
            SessionInput::Presignature(Box::new(presigs.next().unwrap()))
        });
        let sigs = signatures(Hub::default().run(sessions).unwrap());
        for s in &sigs {
            assert_valid_signature(s, &hash, &pk);
        }
    }
}

#[test]
fn keygen_reports_progress_by_stage_and_round() {
    let f = Fixture::new(3);
    let signed = f.sign_descriptor(f.descriptor(
        SessionKind::Keygen {
            generate_aux: false,
            policy: None,
            aux_fingerprint: None,
        },
        2,
        &[0, 1, 2],
    ));
    let mut sessions = f.sessions(&signed, |k| {
        SessionInput::Keygen(party_core::session::AuxSource::Existing(Box::new(
            test_aux(3, usize::from(k)),
        )))
    });
    let pump = sessions[0].start().unwrap();
    assert!(!pump.frames.is_empty(), "keygen starts by sending");
    assert!(
        pump.progress
            .iter()
            .any(|p| p.stage == party_core::envelope::Stage::Keygen && p.round >= 1),
        "progress names the stage and round: {:?}",
        pump.progress
    );
}
