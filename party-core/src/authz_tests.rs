#![allow(clippy::unwrap_used, clippy::expect_used)]

use ed25519_dalek::Signer as _;
use rand_core::OsRng;
use uuid::Uuid;

use super::*;
use crate::descriptor::{CurveName, Participant, DESCRIPTOR_VERSION};
use crate::identity::PartyIdentity;

const NOW: u64 = 1_900_000_000;

struct Keys {
    alice: ed25519_dalek::SigningKey,
    bob: p256::ecdsa::SigningKey,
    carol: ed25519_dalek::SigningKey,
}

fn keys() -> Keys {
    Keys {
        alice: ed25519_dalek::SigningKey::generate(&mut OsRng),
        bob: p256::ecdsa::SigningKey::random(&mut OsRng),
        carol: ed25519_dalek::SigningKey::generate(&mut OsRng),
    }
}

fn policy(k: &Keys) -> Policy {
    Policy {
        approvers: vec![
            Approver::parse(
                "alice".into(),
                Some(&hex::encode(k.alice.verifying_key().to_bytes())),
                None,
            )
            .unwrap(),
            Approver::parse(
                "bob".into(),
                None,
                Some(&hex::encode(
                    k.bob.verifying_key().to_encoded_point(false).as_bytes(),
                )),
            )
            .unwrap(),
            Approver::parse(
                "carol".into(),
                Some(&hex::encode(k.carol.verifying_key().to_bytes())),
                None,
            )
            .unwrap(),
        ],
        quorum: 2,
        digests: vec![MessageDigest::Keccak256],
        allow_bare_hash: false,
        max_signatures_per_hour: Some(100),
    }
}

fn sign_descriptor(
    account: &str,
    message: &[u8],
    auth: Option<Authorization>,
) -> SessionDescriptor {
    let ids: Vec<_> = (0..3)
        .map(|_| PartyIdentity::generate(&mut OsRng))
        .collect();
    SessionDescriptor {
        version: DESCRIPTOR_VERSION,
        session_id: Uuid::from_bytes([9; 16]),
        kind: SessionKind::Sign {
            account_id: account.into(),
            message_hash: MessageDigest::Keccak256.hash(message),
            derivation_path: vec![],
        },
        curve: CurveName::Secp256k1,
        threshold: 2,
        parties: 3,
        participants: [0u16, 1]
            .iter()
            .map(|&i| Participant {
                party_id: format!("p{i}"),
                keygen_index: i,
                identity: ids[usize::from(i)].public(),
            })
            .collect(),
        expires_at: NOW + 60,
        authorization: auth,
    }
}

fn statement(account: &str, message: &[u8], request_id: &str, not_after: u64) -> Vec<u8> {
    Statement {
        account_id: account,
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

fn ed(k: &ed25519_dalek::SigningKey, who: &str, st: &[u8]) -> Approval {
    Approval {
        approver: who.into(),
        signature: k.sign(st).to_bytes().to_vec(),
    }
}

fn p(k: &p256::ecdsa::SigningKey, st: &[u8], der: bool) -> Approval {
    let sig: p256::ecdsa::Signature = k.sign(st);
    Approval {
        approver: "bob".into(),
        signature: if der {
            sig.to_der().as_bytes().to_vec()
        } else {
            sig.to_bytes().to_vec()
        },
    }
}

fn auth(
    approvals: Vec<Approval>,
    message: &[u8],
    request_id: &str,
    not_after: u64,
) -> Authorization {
    Authorization {
        request_id: request_id.into(),
        not_after,
        message: Some(ApprovedMessage {
            message: message.to_vec(),
            digest: MessageDigest::Keccak256,
        }),
        approvals,
    }
}

#[test]
fn statement_test_vector() {
    // Every byte written out from the documented layout, not by the encoder.
    let st = Statement {
        account_id: "acct-1",
        operation: Operation::Sign,
        payload: Payload::Message {
            digest: MessageDigest::Keccak256,
            message: b"hi",
        },
        derivation_path: &[7],
        request_id: "r1",
        not_after: 1_900_000_000,
    };
    let expected = [
        "00000019",                                // len 25
        &hex::encode("mpc/approval-statement/v1"), // domain
        "00000006",                                // len 6
        &hex::encode("acct-1"),                    // account
        "01",                                      // sign
        "01",                                      // message
        "02",                                      // keccak256
        "00000002",                                // len 2
        "6869",                                    // "hi"
        "00000001",                                // path length 1
        "00000007",                                // index 7
        "00000002",                                // len 2
        &hex::encode("r1"),                        // request id
        "00000000713fb300",                        // 1_900_000_000 BE (0x713FB300)
    ]
    .concat();
    assert_eq!(hex::encode(st.to_bytes()), expected);
    assert_eq!(1_900_000_000u64, 0x713F_B300);
}

#[test]
fn two_valid_approvals_pass_and_give_what_to_record() {
    let k = keys();
    let pol = policy(&k);
    let st = statement("acct", b"pay 1", "r1", NOW + 10);
    for der in [false, true] {
        let d = sign_descriptor(
            "acct",
            b"pay 1",
            Some(auth(
                vec![ed(&k.alice, "alice", &st), p(&k.bob, &st, der)],
                b"pay 1",
                "r1",
                NOW + 10,
            )),
        );
        let approved = authorize(&d, &pol, NOW).unwrap().unwrap();
        assert_eq!(approved.request_id, "r1");
        assert_eq!(approved.account_id, "acct");
        assert_eq!(approved.max_per_hour, Some(100));
        assert!(approved.signs);
    }
}

#[test]
fn each_bad_authorization_is_refused_with_its_reason() {
    let k = keys();
    let pol = policy(&k);
    let msg = b"pay 1".as_slice();
    let st = statement("acct", msg, "r1", NOW + 10);
    let a = ed(&k.alice, "alice", &st);
    let b = p(&k.bob, &st, false);
    let check = |d: SessionDescriptor| authorize(&d, &pol, NOW).unwrap_err();

    assert_eq!(
        check(sign_descriptor("acct", msg, None)),
        AuthzError::ApprovalRequired
    );
    assert_eq!(
        check(sign_descriptor(
            "acct",
            msg,
            Some(auth(vec![], msg, "r1", NOW + 10))
        )),
        AuthzError::QuorumNotMet { have: 0, need: 2 }
    );
    assert_eq!(
        check(sign_descriptor(
            "acct",
            msg,
            Some(auth(vec![a.clone()], msg, "r1", NOW + 10))
        )),
        AuthzError::QuorumNotMet { have: 1, need: 2 }
    );
    assert_eq!(
        check(sign_descriptor(
            "acct",
            msg,
            Some(auth(vec![a.clone(), a.clone()], msg, "r1", NOW + 10))
        )),
        AuthzError::DuplicateApproval("alice".into())
    );
    // Approvals of another message, presented with the message they signed
    // but a descriptor hashing another: the hash check catches it.
    let mut other = sign_descriptor(
        "acct",
        b"pay 1000",
        Some(auth(vec![a.clone(), b.clone()], msg, "r1", NOW + 10)),
    );
    assert_eq!(
        authorize(&other, &pol, NOW).unwrap_err(),
        AuthzError::HashMismatch
    );
    // ... and presented with the new message: the signatures fail.
    other.authorization = Some(auth(
        vec![a.clone(), b.clone()],
        b"pay 1000",
        "r1",
        NOW + 10,
    ));
    assert_eq!(
        authorize(&other, &pol, NOW).unwrap_err(),
        AuthzError::BadApprovalSignature("alice".into())
    );
    // Another account.
    assert_eq!(
        check(sign_descriptor(
            "acct-2",
            msg,
            Some(auth(vec![a.clone(), b.clone()], msg, "r1", NOW + 10))
        )),
        AuthzError::BadApprovalSignature("alice".into())
    );
    // Another request id or expiry than signed.
    assert_eq!(
        check(sign_descriptor(
            "acct",
            msg,
            Some(auth(vec![a.clone(), b.clone()], msg, "r2", NOW + 10))
        )),
        AuthzError::BadApprovalSignature("alice".into())
    );
    // Expired (signed with that expiry).
    let st_old = statement("acct", msg, "r1", NOW - 1);
    assert_eq!(
        check(sign_descriptor(
            "acct",
            msg,
            Some(auth(
                vec![ed(&k.alice, "alice", &st_old), p(&k.bob, &st_old, false)],
                msg,
                "r1",
                NOW - 1
            ))
        )),
        AuthzError::Expired
    );
    // An approver the policy does not have.
    let mallory = ed25519_dalek::SigningKey::generate(&mut OsRng);
    assert_eq!(
        check(sign_descriptor(
            "acct",
            msg,
            Some(auth(
                vec![a.clone(), ed(&mallory, "mallory", &st)],
                msg,
                "r1",
                NOW + 10
            ))
        )),
        AuthzError::UnknownApprover("mallory".into())
    );
    // Carol's key under Alice's name.
    assert_eq!(
        check(sign_descriptor(
            "acct",
            msg,
            Some(auth(
                vec![ed(&k.carol, "alice", &st), b.clone()],
                msg,
                "r1",
                NOW + 10
            ))
        )),
        AuthzError::BadApprovalSignature("alice".into())
    );
    // A bad signature encoding.
    let garbage = Approval {
        approver: "bob".into(),
        signature: vec![1, 2, 3],
    };
    assert_eq!(
        check(sign_descriptor(
            "acct",
            msg,
            Some(auth(vec![a.clone(), garbage], msg, "r1", NOW + 10))
        )),
        AuthzError::BadApprovalSignature("bob".into())
    );
    // A bare hash when the policy does not allow one.
    let mut bare = auth(vec![a.clone(), b.clone()], msg, "r1", NOW + 10);
    bare.message = None;
    assert_eq!(
        check(sign_descriptor("acct", msg, Some(bare))),
        AuthzError::BareHashNotAllowed
    );
    // A digest the policy does not allow.
    let mut sha = auth(vec![a, b], msg, "r1", NOW + 10);
    sha.message = Some(ApprovedMessage {
        message: msg.to_vec(),
        digest: MessageDigest::Sha256,
    });
    assert_eq!(
        check(sign_descriptor("acct", msg, Some(sha))),
        AuthzError::DigestNotAllowed(MessageDigest::Sha256)
    );
}

#[test]
fn bare_hash_signing_where_the_policy_allows_it() {
    let k = keys();
    let mut pol = policy(&k);
    pol.allow_bare_hash = true;
    let hash = MessageDigest::Keccak256.hash(b"x");
    let st = Statement {
        account_id: "acct",
        operation: Operation::Sign,
        payload: Payload::Hash(&hash),
        derivation_path: &[],
        request_id: "r1",
        not_after: NOW + 5,
    }
    .to_bytes();
    let mut a = auth(
        vec![ed(&k.alice, "alice", &st), ed(&k.carol, "carol", &st)],
        b"x",
        "r1",
        NOW + 5,
    );
    a.message = None;
    assert!(
        authorize(&sign_descriptor("acct", b"x", Some(a)), &pol, NOW)
            .unwrap()
            .is_some()
    );
}

#[test]
fn online_signing_checks_the_message_in_the_session() {
    let k = keys();
    let pol = policy(&k);
    let st = statement("acct", b"pay 1", "r1", NOW + 10);
    let mut d = sign_descriptor("acct", b"pay 1", None);
    d.kind = SessionKind::OnlineSign {
        account_id: "acct".into(),
        presignature_id: Uuid::from_bytes([3; 16]),
        message: b"pay 1".to_vec(),
        digest: MessageDigest::Keccak256,
    };
    let mut a = auth(
        vec![ed(&k.alice, "alice", &st), p(&k.bob, &st, true)],
        b"pay 1",
        "r1",
        NOW + 10,
    );
    a.message = None;
    d.authorization = Some(a);
    assert!(authorize(&d, &pol, NOW).unwrap().is_some());
    if let SessionKind::OnlineSign { message, .. } = &mut d.kind {
        *message = b"pay 2".to_vec();
    }
    assert_eq!(
        authorize(&d, &pol, NOW).unwrap_err(),
        AuthzError::BadApprovalSignature("alice".into())
    );
}

#[test]
fn presign_and_keygen_need_no_approval() {
    let k = keys();
    let mut d = sign_descriptor("acct", b"m", None);
    d.kind = SessionKind::Presign {
        account_id: "acct".into(),
    };
    assert_eq!(authorize(&d, &policy(&k), NOW).unwrap(), None);
}

#[test]
fn policy_validation_refuses_bad_policies() {
    let k = keys();
    let good = policy(&k);
    good.validate().unwrap();
    let mut p0 = good.clone();
    p0.quorum = 0;
    assert!(matches!(p0.validate(), Err(AuthzError::InvalidPolicy(_))));
    let mut p4 = good.clone();
    p4.quorum = 4;
    assert!(matches!(p4.validate(), Err(AuthzError::InvalidPolicy(_))));
    let mut dup = good.clone();
    dup.approvers[1] = dup.approvers[0].clone();
    assert!(matches!(dup.validate(), Err(AuthzError::InvalidPolicy(_))));
    let mut same_key = good.clone();
    same_key.approvers[2].key = same_key.approvers[0].key.clone();
    assert!(matches!(
        same_key.validate(),
        Err(AuthzError::InvalidPolicy(_))
    ));
    let mut nothing = good.clone();
    nothing.digests.clear();
    assert!(matches!(
        nothing.validate(),
        Err(AuthzError::InvalidPolicy(_))
    ));
    assert!(Approver::parse("x".into(), Some("00"), None).is_err());
    assert!(Approver::parse("x".into(), None, Some("02ff")).is_err());
    assert!(Approver::parse("x".into(), None, None).is_err());
    assert!(Approver::parse("bad id!".into(), Some(&"11".repeat(32)), None).is_err());
    // The identity point is a small-order Ed25519 key.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(Approver::parse("x".into(), Some(&hex::encode(identity)), None).is_err());
}

#[test]
fn policy_hash_ignores_order_but_not_content() {
    let k = keys();
    let a = policy(&k);
    let mut b = a.clone();
    b.approvers.reverse();
    assert_eq!(a.hash(), b.hash());
    let mut c = a.clone();
    c.quorum = 3;
    assert_ne!(a.hash(), c.hash());
    // JSON round trip keeps the hash (P-256 keys are stored compressed).
    let json = serde_json::to_string(&a).unwrap();
    let back: Policy = serde_json::from_str(&json).unwrap();
    assert_eq!(back.hash(), a.hash());
}

#[test]
fn every_code_is_listed() {
    let all = [
        AuthzError::InvalidPolicy(String::new()),
        AuthzError::ApprovalRequired,
        AuthzError::QuorumNotMet { have: 0, need: 1 },
        AuthzError::UnknownApprover(String::new()),
        AuthzError::DuplicateApproval(String::new()),
        AuthzError::BadApprovalSignature(String::new()),
        AuthzError::Malformed(String::new()),
        AuthzError::HashMismatch,
        AuthzError::DigestNotAllowed(MessageDigest::Sha256),
        AuthzError::BareHashNotAllowed,
        AuthzError::Expired,
        AuthzError::RequestIdReused,
        AuthzError::RateLimited,
        AuthzError::SessionReplayed,
        AuthzError::NotWhatWasApproved,
        AuthzError::PolicyChangeRefused(String::new()),
    ];
    let codes: Vec<&str> = all.iter().map(AuthzError::code).collect();
    assert_eq!(codes, AuthzError::CODES);
}
