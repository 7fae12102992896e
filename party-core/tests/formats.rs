//! Pinned formats (issue #15): known-answer vectors for the canonical
//! descriptor bytes and the sealed-record layout and AAD, and sealed records
//! that take random byte flips and swaps between parties, accounts and kinds
//! without ever opening or panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use party_core::authz::{Approval, Approver, Authorization, Policy};
use party_core::descriptor::{
    CurveName, MessageDigest, Participant, SessionDescriptor, SessionKind, DESCRIPTOR_VERSION,
};
use party_core::identity::{CoordinatorKey, PartyIdentity};
use party_core::seal::{MasterKey, Provenance, RecordContext, RecordKind, SealError, SEAL_VERSION};
use rand_core::{OsRng, RngCore};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

fn fixed_descriptor() -> SessionDescriptor {
    fixed_descriptors().0
}

/// A sign with an authorization and a keygen with a policy, fixed keys.
fn fixed_descriptors() -> (SessionDescriptor, SessionDescriptor) {
    let ids: Vec<PartyIdentity> = (1u8..=3)
        .map(|i| PartyIdentity::from_seed(&[i; 32]))
        .collect();
    let approver = Approver::parse(
        "alice".into(),
        Some(&hex::encode(
            ed25519_dalek::SigningKey::from_bytes(&[9; 32])
                .verifying_key()
                .to_bytes(),
        )),
        None,
    )
    .unwrap();
    let policy = Policy {
        approvers: vec![approver],
        quorum: 1,
        digests: vec![MessageDigest::Keccak256],
        allow_bare_hash: false,
        max_signatures_per_hour: Some(10),
    };
    let keygen = SessionDescriptor {
        version: DESCRIPTOR_VERSION,
        session_id: Uuid::from_bytes([0x22; 16]),
        kind: SessionKind::Keygen {
            generate_aux: true,
            policy: Some(policy),
            aux_fingerprint: None,
        },
        curve: CurveName::Secp256k1,
        threshold: 2,
        parties: 3,
        participants: (0u16..3)
            .map(|k| Participant {
                party_id: format!("party-{k}"),
                keygen_index: k,
                identity: ids[usize::from(k)].public(),
            })
            .collect(),
        expires_at: 1_900_000_000,
        authorization: None,
    };
    let sign = SessionDescriptor {
        version: DESCRIPTOR_VERSION,
        session_id: Uuid::from_bytes([0x11; 16]),
        kind: SessionKind::Sign {
            account_id: "acct-1".into(),
            message_hash: MessageDigest::Keccak256.hash(b"pay 1"),
            derivation_path: vec![],
        },
        curve: CurveName::Secp256k1,
        threshold: 2,
        parties: 3,
        participants: [0u16, 2]
            .iter()
            .map(|&k| Participant {
                party_id: format!("party-{k}"),
                keygen_index: k,
                identity: ids[usize::from(k)].public(),
            })
            .collect(),
        expires_at: 1_900_000_000,
        authorization: Some(Authorization {
            request_id: "r-1".into(),
            not_after: 1_900_000_000,
            message: Some(party_core::authz::ApprovedMessage {
                message: b"pay 1".to_vec(),
                digest: MessageDigest::Keccak256,
            }),
            approvals: vec![Approval {
                approver: "alice".into(),
                signature: vec![0xab; 64],
            }],
        }),
    };
    (sign, keygen)
}

/// The descriptor's canonical bytes (what the coordinator signs and the
/// execution id hashes) are pinned: a change of layout must be a new
/// version, not a silent change.
#[test]
fn descriptor_canonical_bytes_are_pinned() {
    let d = fixed_descriptor();
    let bytes = d.canonical_bytes();
    // The layout starts with the length-prefixed domain and the version.
    let domain = b"mpc/descriptor/v2";
    assert_eq!(&bytes[..4], &(domain.len() as u32).to_be_bytes());
    assert_eq!(&bytes[4..4 + domain.len()], domain);
    assert_eq!(bytes[4 + domain.len()], 2, "descriptor version");
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        DESCRIPTOR_SHA256,
        "canonical descriptor bytes changed"
    );
    assert_eq!(hex::encode(d.execution_id()), EXECUTION_ID);
    let keygen = fixed_descriptors().1;
    keygen.validate().unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(keygen.canonical_bytes())),
        KEYGEN_SHA256,
        "canonical keygen descriptor (with a policy) changed"
    );
    // And they are what a coordinator signature covers.
    let key = CoordinatorKey::generate(&mut OsRng);
    let signed = d.clone().sign(&key).unwrap();
    signed.verify(&key.public()).unwrap();
}

const DESCRIPTOR_SHA256: &str = "a0026b6da66a8b189975776581cbf076a5696855b7aa8b18e710e56d75346d64";
const KEYGEN_SHA256: &str = "0c594a7d1330b67f577308c316089c644777bcc19baf3dbdfc9674652e6860c1";
const EXECUTION_ID: &str = "555372eb2ec6b6bd58ff738b8d542c74d4f87eddcaef814b8882eaa0db0473c0";

/// The AAD of a sealed record, written out from its layout: the raw domain
/// `mpc/seal/v1`, the party id and the account id each prefixed with its
/// length (u32 BE), the kind byte and the version byte.
#[test]
fn sealed_record_aad_and_layout_are_pinned() {
    let ctx = RecordContext {
        party_id: "p1",
        account_id: "acct",
        kind: RecordKind::KeyShare,
    };
    let expected = [
        hex::encode("mpc/seal/v1"),
        "00000002".into(),
        hex::encode("p1"),
        "00000004".into(),
        hex::encode("acct"),
        "01".into(), // kind: key share
        "01".into(), // seal version
    ]
    .concat();
    assert_eq!(hex::encode(ctx.associated_data()), expected);
    // version || kind || 12-byte nonce || ciphertext || 16-byte tag.
    let key = MasterKey::from_bytes(&[5; 32]).unwrap();
    let sealed = key.seal(ctx, b"hello").unwrap();
    assert_eq!(sealed[0], SEAL_VERSION);
    assert_eq!(sealed[1], RecordKind::KeyShare as u8);
    assert_eq!(sealed.len(), 2 + 12 + 5 + 16);
    assert_eq!(&*key.open(ctx, &sealed).unwrap(), b"hello");
}

/// A record sealed by this format's first release still opens.
#[test]
fn a_record_sealed_by_an_earlier_build_still_opens() {
    let key = MasterKey::from_bytes(&[5; 32]).unwrap();
    let ctx = RecordContext {
        party_id: "party-1",
        account_id: "acct-1",
        kind: RecordKind::Presignature,
    };
    let sealed = hex::decode(SEALED_FIXTURE).unwrap();
    assert_eq!(
        &*key.open(ctx, &sealed).unwrap(),
        b"a presignature of an earlier build"
    );
}

/// Sealed on 2026-12-02 under the master key `[5; 32]`.
const SEALED_FIXTURE: &str = "01049ec4f6de0344ed2cab52097c275f76b04f7ed25a04d4243caac69fb30a4b5bde3ba7a3a0d7803abb4f4b9ed0ec4f4612eeaf76e8d7fa970b7228c306cd0c";

const KINDS: [RecordKind; 6] = [
    RecordKind::KeyShare,
    RecordKind::AuxInfo,
    RecordKind::Primes,
    RecordKind::Presignature,
    RecordKind::Identity,
    RecordKind::Policy,
];

/// Every record kind: 10,000 random byte flips each, and every swap of
/// party, account and kind: all refused, none panics.
#[test]
fn sealed_records_refuse_every_flip_and_swap() {
    let key = MasterKey::generate();
    let mut refused = 0usize;
    for kind in KINDS {
        let ctx = RecordContext {
            party_id: "party-1",
            account_id: "acct-1",
            kind,
        };
        let mut plain = vec![0u8; 256];
        OsRng.fill_bytes(&mut plain);
        let sealed = key.seal(ctx, &plain).unwrap();
        for _ in 0..10_000 {
            let mut bad = sealed.clone();
            let i = usize::try_from(OsRng.next_u32()).unwrap() % bad.len();
            let flip = loop {
                let b = (OsRng.next_u32() & 0xff) as u8;
                if b != 0 {
                    break b;
                }
            };
            bad[i] ^= flip;
            assert!(
                key.open(ctx, &bad).is_err(),
                "a flipped {kind:?} record opened"
            );
            refused += 1;
        }
        // Truncated and extended.
        for n in [0, 1, 2, 13, 29, sealed.len() - 1] {
            assert!(key.open(ctx, &sealed[..n]).is_err());
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(key.open(ctx, &longer).is_err());
        // Swapped to another party, account or kind, or opened by another key.
        for other in [
            RecordContext {
                party_id: "party-2",
                ..ctx
            },
            RecordContext {
                account_id: "acct-2",
                ..ctx
            },
            RecordContext {
                account_id: "",
                ..ctx
            },
        ] {
            assert!(key.open(other, &sealed).is_err());
        }
        for k in KINDS.into_iter().filter(|k| *k as u8 != kind as u8) {
            assert!(key.open(RecordContext { kind: k, ..ctx }, &sealed).is_err());
        }
        assert!(MasterKey::generate().open(ctx, &sealed).is_err());
        assert_eq!(&*key.open(ctx, &sealed).unwrap(), plain.as_slice());
    }
    assert_eq!(refused, KINDS.len() * 10_000);
}

/// The descriptor kinds of the aux-info repair (issue #15) are pinned too:
/// a keygen that names the group's aux info by fingerprint (marker byte 2
/// where a keygen has its generate flag, then the 32 bytes: a value older
/// descriptors never had, so their bytes are unchanged) and an aux-info
/// session (kind tag 6, no fields).
#[test]
fn aux_repair_descriptor_bytes_are_pinned() {
    let base = fixed_descriptors().1;
    // Where the kind starts: domain (4 + 17), version, session id.
    let at = 4 + b"mpc/descriptor/v2".len() + 1 + 16;
    let named = SessionDescriptor {
        kind: SessionKind::Keygen {
            generate_aux: false,
            policy: None,
            aux_fingerprint: Some([0x5c; 32]),
        },
        ..base.clone()
    };
    named.validate().unwrap();
    let bytes = named.canonical_bytes();
    assert_eq!(bytes[at], 1, "keygen tag");
    assert_eq!(bytes[at + 1], 2, "reuse the named aux info");
    assert_eq!(&bytes[at + 2..at + 34], &[0x5c; 32]);
    assert_eq!(bytes[at + 34], 0, "no policy");
    assert_eq!(bytes[at + 35], 1, "curve secp256k1");
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        NAMED_KEYGEN_SHA256,
        "canonical named-keygen descriptor changed"
    );
    let unnamed = SessionDescriptor {
        kind: SessionKind::Keygen {
            generate_aux: false,
            policy: None,
            aux_fingerprint: None,
        },
        ..base.clone()
    };
    assert_eq!(unnamed.canonical_bytes()[at + 1], 0);
    assert_ne!(unnamed.execution_id(), named.execution_id());

    let aux = SessionDescriptor {
        kind: SessionKind::AuxInfo {},
        ..base.clone()
    };
    aux.validate().unwrap();
    let bytes = aux.canonical_bytes();
    assert_eq!(bytes[at], 6, "aux-info tag");
    assert_eq!(bytes[at + 1], 1, "curve right after: no fields");
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        AUX_INFO_SHA256,
        "canonical aux-info descriptor changed"
    );
    // A keygen cannot both generate aux info and name some.
    let both = SessionDescriptor {
        kind: SessionKind::Keygen {
            generate_aux: true,
            policy: None,
            aux_fingerprint: Some([0x5c; 32]),
        },
        ..base
    };
    assert_eq!(
        both.validate(),
        Err(party_core::descriptor::DescriptorError::ConflictingAux)
    );
}

const NAMED_KEYGEN_SHA256: &str =
    "42fa5f4bd571226c657d1d422a68cb37248aa4db685b58e20d975a13d33e60a8";
const AUX_INFO_SHA256: &str = "199bb30c4957e964319087c5ddb1209fc21c673385bee69a732b404e4b646d76";
/// A record made from PUBLIC test data carries the test-data bit in its
/// kind byte, bound by the AAD: it opens only where test data is accepted
/// (typed [`SealError::TestData`] elsewhere), and clearing the bit (or
/// setting it on a production record) makes the record fail to open, so a
/// test-data record can never pass for a production one. Production
/// records keep their layout and AAD.
#[test]
fn test_data_records_are_marked_and_the_mark_is_authenticated() {
    let key = MasterKey::from_bytes(&[5; 32]).unwrap();
    for kind in KINDS {
        let ctx = RecordContext {
            party_id: "party-1",
            account_id: "acct-1",
            kind,
        };
        let marked = key.seal_as(ctx, Provenance::TestData, b"public").unwrap();
        assert_eq!(
            marked[1],
            kind as u8 | 0x80,
            "{kind:?}: the mark is in the kind byte"
        );
        // A build that accepts test data opens it and learns what it is.
        let (plain, provenance) = key.open_checked(ctx, &marked, true).unwrap();
        assert_eq!(
            (&**plain, provenance),
            (&b"public"[..], Provenance::TestData)
        );
        // A build that does not: the typed refusal, from both entry points.
        assert_eq!(key.open(ctx, &marked).unwrap_err(), SealError::TestData);
        assert_eq!(
            key.open_checked(ctx, &marked, false).unwrap_err(),
            SealError::TestData
        );
        assert!(SealError::TestData
            .to_string()
            .contains("made from public test data"));
        // Clearing the mark does not make a production record.
        let mut unmarked = marked.clone();
        unmarked[1] &= 0x7f;
        for accept in [false, true] {
            assert_eq!(
                key.open_checked(ctx, &unmarked, accept).unwrap_err(),
                SealError::OpenFailed
            );
        }
        // Nor does marking a production record make a test-data one.
        let production = key.seal(ctx, b"real").unwrap();
        assert_eq!(production[1], kind as u8);
        let mut forged = production.clone();
        forged[1] |= 0x80;
        assert_eq!(
            key.open_checked(ctx, &forged, true).unwrap_err(),
            SealError::OpenFailed
        );
        let (plain, provenance) = key.open_checked(ctx, &production, true).unwrap();
        assert_eq!(
            (&**plain, provenance),
            (&b"real"[..], Provenance::Production)
        );
        // Random flips of a marked record never open, even where test data
        // is accepted.
        for _ in 0..1_000 {
            let mut bad = marked.clone();
            let i = usize::try_from(OsRng.next_u32()).unwrap() % bad.len();
            bad[i] ^= u8::try_from(OsRng.next_u32() % 255 + 1).unwrap();
            assert!(key.open_checked(ctx, &bad, true).is_err());
        }
    }
}
