//! `mpc approve`'s pieces against party-core's own check: an approval made
//! here is accepted by `authz::authorize` for exactly the request it names.

use party_core::authz::{authorize, Approval, ApprovedMessage, AuthzError};
use party_core::descriptor::{
    CurveName, Participant, SessionDescriptor, SessionKind, DESCRIPTOR_VERSION,
};
use party_core::identity::PartyIdentity;

use super::*;

const ACCOUNT: &str = "acct-1";
const RID: &str = "pay-0001";

fn in_a_minute() -> u64 {
    now_secs() + 60
}

struct Approvers {
    alice: ApproverKey,
    bob: ApproverKey,
}

fn approvers() -> Approvers {
    Approvers {
        alice: ApproverKey::generate(false),
        bob: ApproverKey::generate(true),
    }
}

fn policy(a: &Approvers, allow_bare_hash: bool) -> Policy {
    Policy {
        approvers: vec![
            a.alice.approver("alice").unwrap(),
            a.bob.approver("bob").unwrap(),
        ],
        quorum: 2,
        digests: vec![MessageDigest::Keccak256, MessageDigest::Sha256],
        allow_bare_hash,
        max_signatures_per_hour: None,
    }
}

/// A descriptor as the coordinator builds it for `kind`.
fn descriptor(kind: SessionKind, auth: Authorization) -> SessionDescriptor {
    let ids: Vec<_> = (0..2)
        .map(|_| PartyIdentity::generate(&mut rand_core::OsRng))
        .collect();
    SessionDescriptor {
        version: DESCRIPTOR_VERSION,
        session_id: uuid::Uuid::new_v4(),
        kind,
        curve: CurveName::Secp256k1,
        threshold: 2,
        parties: 3,
        participants: (0u16..2)
            .map(|i| Participant {
                party_id: format!("p{i}"),
                keygen_index: i,
                identity: ids[usize::from(i)].public(),
            })
            .collect(),
        expires_at: now_secs() + 60,
        authorization: Some(auth),
    }
}

fn to_core(a: mpc_api::rest::Approval) -> Approval {
    Approval {
        approver: a.approver,
        signature: hex::decode(a.signature).unwrap(),
    }
}

fn both(
    a: &Approvers,
    what: &Approved<'_>,
    account: &str,
    rid: &str,
    not_after: u64,
) -> Vec<Approval> {
    vec![
        to_core(approve(&a.alice, "alice", account, what, rid, not_after).unwrap()),
        to_core(approve(&a.bob, "bob", account, what, rid, not_after).unwrap()),
    ]
}

fn full_sign(signed: &Signed, approvals: Vec<Approval>, not_after: u64) -> SessionDescriptor {
    let message = match signed {
        Signed::Message { digest, message } => Some(ApprovedMessage {
            message: message.clone(),
            digest: *digest,
        }),
        Signed::Hash(_) => None,
    };
    descriptor(
        SessionKind::Sign {
            account_id: ACCOUNT.into(),
            message_hash: signed.hash(),
            derivation_path: vec![],
        },
        Authorization {
            request_id: RID.into(),
            not_after,
            message,
            approvals,
        },
    )
}

fn target(args: &[&str]) -> SignTarget {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct T {
        #[command(flatten)]
        t: SignTarget,
    }
    T::try_parse_from(["t", "--account", ACCOUNT].iter().chain(args))
        .unwrap()
        .t
}

#[test]
fn approvals_made_here_pass_every_partys_check_for_full_and_pool_signing() {
    let a = approvers();
    let pol = policy(&a, false);
    let not_after = in_a_minute();
    for digest in ["keccak256", "sha256"] {
        let signed = target(&["--message-text", "pay 10 USDC to alice", "--digest", digest])
            .signed()
            .unwrap();
        let approvals = both(&a, &Approved::Sign(signed.clone()), ACCOUNT, RID, not_after);
        // Full signing: the descriptor carries the message and its hash.
        let d = full_sign(&signed, approvals.clone(), not_after);
        let ok = authorize(&d, &pol, now_secs()).unwrap().unwrap();
        assert_eq!(
            (ok.account_id.as_str(), ok.request_id.as_str()),
            (ACCOUNT, RID)
        );
        // Pool signing: the same approvals name the message of the one round.
        let Signed::Message { digest, message } = signed else {
            panic!("a message")
        };
        let d = descriptor(
            SessionKind::OnlineSign {
                account_id: ACCOUNT.into(),
                presignature_id: uuid::Uuid::new_v4(),
                message,
                digest,
            },
            Authorization {
                request_id: RID.into(),
                not_after,
                message: None,
                approvals,
            },
        );
        assert!(authorize(&d, &pol, now_secs()).unwrap().is_some());
    }
}

#[test]
fn a_bare_hash_approval_passes_where_the_policy_allows_bare_hashes() {
    let a = approvers();
    let not_after = in_a_minute();
    let signed = target(&["--hash", &format!("0x{}", "ab".repeat(32))])
        .signed()
        .unwrap();
    assert_eq!(signed, Signed::Hash([0xab; 32]));
    let d = full_sign(
        &signed,
        both(&a, &Approved::Sign(signed.clone()), ACCOUNT, RID, not_after),
        not_after,
    );
    assert!(authorize(&d, &policy(&a, true), now_secs())
        .unwrap()
        .is_some());
    assert_eq!(
        authorize(&d, &policy(&a, false), now_secs()),
        Err(AuthzError::BareHashNotAllowed)
    );
}

#[test]
fn an_approval_is_for_its_own_request_only() {
    let a = approvers();
    let pol = policy(&a, false);
    let not_after = in_a_minute();
    let pay = target(&["--message-text", "pay 1"]).signed().unwrap();
    let other = target(&["--message-text", "pay 1000"]).signed().unwrap();
    let bad = |approvals: Vec<Approval>| {
        let d = full_sign(&pay, approvals, not_after);
        authorize(&d, &pol, now_secs())
    };
    // Another message, another account, another request id, another expiry.
    for approvals in [
        both(&a, &Approved::Sign(other), ACCOUNT, RID, not_after),
        both(&a, &Approved::Sign(pay.clone()), "acct-2", RID, not_after),
        both(
            &a,
            &Approved::Sign(pay.clone()),
            ACCOUNT,
            "pay-0002",
            not_after,
        ),
        both(
            &a,
            &Approved::Sign(pay.clone()),
            ACCOUNT,
            RID,
            not_after + 1,
        ),
    ] {
        assert_eq!(
            bad(approvals),
            Err(AuthzError::BadApprovalSignature("alice".into()))
        );
    }
    // Signed as alice with bob's key.
    let mut approvals = both(&a, &Approved::Sign(pay.clone()), ACCOUNT, RID, not_after);
    approvals[0] = to_core(
        approve(
            &a.bob,
            "alice",
            ACCOUNT,
            &Approved::Sign(pay.clone()),
            RID,
            not_after,
        )
        .unwrap(),
    );
    assert_eq!(
        bad(approvals),
        Err(AuthzError::BadApprovalSignature("alice".into()))
    );
}

#[test]
fn a_policy_change_approval_passes_for_that_policy_only() {
    let a = approvers();
    let current = policy(&a, false);
    let mut next = current.clone();
    next.quorum = 1;
    let not_after = in_a_minute();
    let change = |new: &Policy, approvals| {
        descriptor(
            SessionKind::PolicyChange {
                account_id: ACCOUNT.into(),
                policy: new.clone(),
            },
            Authorization {
                request_id: RID.into(),
                not_after,
                message: None,
                approvals,
            },
        )
    };
    let approvals = both(&a, &Approved::PolicyChange(&next), ACCOUNT, RID, not_after);
    let d = change(&next, approvals.clone());
    assert!(authorize(&d, &current, now_secs()).unwrap().is_some());
    let mut other = next.clone();
    other.allow_bare_hash = true;
    assert_eq!(
        authorize(&change(&other, approvals), &current, now_secs()),
        Err(AuthzError::BadApprovalSignature("alice".into()))
    );
}

#[test]
fn the_statement_is_party_cores_encoding_of_the_request() {
    let hex_form = target(&["--message", "0x706179", "--digest", "sha256"])
        .signed()
        .unwrap();
    let text_form = target(&["--message-text", "pay", "--digest", "sha256"])
        .signed()
        .unwrap();
    assert_eq!(hex_form, text_form);
    let bytes = statement(ACCOUNT, hex_form.payload(), RID, 1_900_000_000);
    let expected = Statement {
        account_id: ACCOUNT,
        operation: Operation::Sign,
        payload: Payload::Message {
            digest: MessageDigest::Sha256,
            message: b"pay",
        },
        derivation_path: &[],
        request_id: RID,
        not_after: 1_900_000_000,
    };
    assert_eq!(bytes, expected.to_bytes());
    // The default digest is the API's: keccak256.
    assert_eq!(
        target(&["--message-text", "pay"]).signed().unwrap(),
        Signed::Message {
            digest: MessageDigest::Keccak256,
            message: b"pay".to_vec()
        }
    );
}

#[test]
fn a_request_that_names_nothing_or_too_much_is_refused() {
    assert!(target(&[]).signed().is_err());
    assert!(target(&["--hash", "abcd"]).signed().is_err());
    assert!(target(&["--hash", "zz"]).signed().is_err());
    assert!(target(&["--message", "not hex"]).signed().is_err());
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct T {
        #[command(flatten)]
        t: SignTarget,
    }
    for args in [
        &["--hash", "00", "--message", "00"][..],
        &["--hash", "00", "--digest", "sha256"],
        &["--message", "00", "--message-text", "x"],
        &["--message", "00", "--digest", "md5"],
    ] {
        let all = ["t", "--account", ACCOUNT]
            .into_iter()
            .chain(args.iter().copied());
        assert!(T::try_parse_from(all).is_err(), "{args:?}");
    }
}

#[test]
fn a_bad_request_id_or_past_expiry_is_refused_before_signing() {
    let a = approvers();
    let what = Approved::Sign(Signed::Hash([1; 32]));
    for rid in ["", "has space", &"x".repeat(129)] {
        assert!(
            approve(&a.alice, "alice", ACCOUNT, &what, rid, in_a_minute()).is_err(),
            "{rid:?}"
        );
    }
    assert!(approve(&a.alice, "not an id!", ACCOUNT, &what, RID, in_a_minute()).is_err());
}

#[test]
fn what_is_approved_is_shown_in_full_and_cannot_drive_the_terminal() {
    let text = describe(
        ACCOUNT,
        &Approved::Sign(Signed::Message {
            digest: MessageDigest::Keccak256,
            message: b"pay 10 \x1b[2Jto alice".to_vec(),
        }),
        RID,
        1_900_000_000,
    );
    assert!(!text.contains('\x1b'), "{text}");
    assert!(text.contains(r#""pay 10 \u{1b}[2Jto alice""#), "{text}");
    assert!(text.contains(&hex::encode(
        MessageDigest::Keccak256.hash(b"pay 10 \x1b[2Jto alice")
    )));
    assert!(text.contains(RID));
    assert!(text.contains("unix 1900000000"), "{text}");
    let binary = describe(
        ACCOUNT,
        &Approved::Sign(Signed::Message {
            digest: MessageDigest::Sha256,
            message: vec![0xff, 0x00],
        }),
        RID,
        1,
    );
    assert!(binary.contains("0xff00 (2 bytes)"), "{binary}");
    let a = approvers();
    let pol = policy(&a, false);
    let change = describe(ACCOUNT, &Approved::PolicyChange(&pol), RID, 1);
    assert!(change.contains("REPLACE THE ACCOUNT POLICY"));
    assert!(change.contains(&hex::encode(pol.hash())));
    assert!(change.contains("quorum 2 of 2"));
}
