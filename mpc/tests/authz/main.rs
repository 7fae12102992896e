//! Issue #13's "must show" on the server parties: a compromised coordinator
//! (its key and its router access, no approver key) cannot get a signature
//! for an account with a policy without the policy's quorum, cannot replay a
//! session, and cannot change the policy without a quorum. Every refusal is
//! made by every party with its typed code before any frame (checked on the
//! frames the real router relayed). Signatures are checked with k256.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;
mod rogue;

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use party_core::authz::{
    Approval, ApprovedMessage, Approver, Authorization, Operation, Payload, Policy, Statement,
};
use party_core::descriptor::{MessageDigest, SessionDescriptor, SessionKind};
use party_core::primes::PrimeSet;
use party_core::wire::ReportBody;
use rogue::World;

pub fn test_primes(i: usize) -> PrimeSet {
    let path = common::test_data().join("primes.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    PrimeSet::from_bytes(&hex::decode(v["parties"][i].as_str().unwrap()).unwrap()).unwrap()
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn random_bytes() -> [u8; 32] {
    common::random_hash()
}

/// An approver's private key (the rogue coordinator has none of these).
enum ApproverKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

struct Signer {
    id: &'static str,
    key: ApproverKey,
}

impl Signer {
    fn ed25519(id: &'static str) -> Self {
        Self {
            id,
            key: ApproverKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng)),
        }
    }

    fn p256(id: &'static str) -> Self {
        Self {
            id,
            key: ApproverKey::P256(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng)),
        }
    }

    fn approver(&self) -> Approver {
        match &self.key {
            ApproverKey::Ed25519(k) => Approver::parse(
                self.id.into(),
                Some(&hex::encode(k.verifying_key().as_bytes())),
                None,
            ),
            ApproverKey::P256(k) => Approver::parse(
                self.id.into(),
                None,
                Some(&hex::encode(k.verifying_key().to_encoded_point(true))),
            ),
        }
        .unwrap()
    }

    fn approve(&self, statement: &Statement<'_>) -> Approval {
        let bytes = statement.to_bytes();
        let signature = match &self.key {
            ApproverKey::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(&bytes).to_bytes().to_vec()
            }
            ApproverKey::P256(k) => {
                use p256::ecdsa::signature::Signer as _;
                let s: p256::ecdsa::Signature = k.sign(&bytes);
                s.to_bytes().to_vec()
            }
        };
        Approval {
            approver: self.id.into(),
            signature,
        }
    }
}

fn policy(approvers: &[&Signer]) -> Policy {
    let p = Policy {
        approvers: approvers.iter().map(|s| s.approver()).collect(),
        quorum: 2,
        digests: vec![MessageDigest::Keccak256],
        allow_bare_hash: false,
        max_signatures_per_hour: Some(1000),
    };
    p.validate().unwrap();
    p
}

/// What a signing approves: a message for an account, under a request id.
#[derive(Clone)]
struct Request {
    account_id: String,
    message: Vec<u8>,
    request_id: String,
    not_after: u64,
}

impl Request {
    fn new(account_id: &str, message: &[u8]) -> Self {
        Self {
            account_id: account_id.into(),
            message: message.to_vec(),
            request_id: format!("req-{}", uuid::Uuid::new_v4()),
            not_after: unix_now() + 600,
        }
    }

    fn statement(&self) -> Statement<'_> {
        Statement {
            account_id: &self.account_id,
            operation: Operation::Sign,
            payload: Payload::Message {
                digest: MessageDigest::Keccak256,
                message: &self.message,
            },
            derivation_path: &[],
            request_id: &self.request_id,
            not_after: self.not_after,
        }
    }

    fn approvals(&self, by: &[&Signer]) -> Vec<Approval> {
        by.iter().map(|s| s.approve(&self.statement())).collect()
    }

    /// The authorization a descriptor carries for this request.
    fn authorization(&self, approvals: Vec<Approval>) -> Authorization {
        Authorization {
            request_id: self.request_id.clone(),
            not_after: self.not_after,
            message: Some(ApprovedMessage {
                message: self.message.clone(),
                digest: MessageDigest::Keccak256,
            }),
            approvals,
        }
    }

    fn hash(&self) -> [u8; 32] {
        MessageDigest::Keccak256.hash(&self.message)
    }
}

fn sign_kind(account_id: &str, hash: [u8; 32]) -> SessionKind {
    SessionKind::Sign {
        account_id: account_id.into(),
        message_hash: hash,
        derivation_path: vec![],
    }
}

/// Keygen of a 2-of-3 account with `policy`, made by the rogue coordinator
/// itself: every party reports the same key and the policy's hash.
async fn keygen(w: &World, policy: &Policy) -> (String, [u8; 33], SessionDescriptor) {
    let d = w.descriptor(
        SessionKind::Keygen {
            generate_aux: false,
            policy: Some(policy.clone()),
            aux_fingerprint: None,
        },
        &[0, 1, 2],
        None,
    );
    w.deliver(d.clone(), 1).await;
    let finals = w.finals(&d, 1).await;
    let mut keys = finals.iter().map(|b| match &b[..] {
        [ReportBody::KeygenResult {
            public_key,
            policy_hash,
            ..
        }] => {
            assert_eq!(*policy_hash, Some(policy.hash()), "policy hash reported");
            *public_key
        }
        other => panic!("keygen: {other:?}"),
    });
    let key = keys.next().unwrap();
    assert!(keys.all(|k| k == key), "every party has the same key");
    let account_id = d.session_id.to_string();
    for p in &w.parties {
        assert_eq!(
            p.store().policy(&account_id).await.unwrap().as_ref(),
            Some(policy),
            "each party stored the policy with its share"
        );
    }
    (account_id, key, d)
}

/// Delivers `d` and asserts every participant refused it with `code`, that
/// no party joined and the router relayed no frame of it.
async fn refused_by_all(w: &World, d: SessionDescriptor, code: &str) {
    w.deliver(d.clone(), 1).await;
    assert_refused(w, &d, code).await;
}

async fn assert_refused(w: &World, d: &SessionDescriptor, code: &str) {
    for (pos, bodies) in w.finals(d, 1).await.into_iter().enumerate() {
        match &bodies[..] {
            [ReportBody::Refused { code: c, .. }] if c == code => {}
            other => panic!("{code}: position {pos} reported {other:?}"),
        }
    }
    assert!(!w.anyone_joined(d), "{code}: a party joined");
    assert_eq!(w.frames(d.session_id), 0, "{code}: frames relayed");
}

/// Signs `hash` with `public_key` checked by k256, not our code: verify, low
/// s, and `v` recovers the key.
fn verify(sig: &party_core::signature::RecoverableSignature, hash: &[u8; 32], public_key: &[u8]) {
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
    let vk = VerifyingKey::from_sec1_bytes(public_key).unwrap();
    let k_sig = Signature::from_slice(&[sig.r, sig.s].concat()).unwrap();
    assert!(k_sig.normalize_s().is_none(), "low s");
    vk.verify_prehash(hash, &k_sig).expect("k256 verifies");
    let rec =
        VerifyingKey::recover_from_prehash(hash, &k_sig, RecoveryId::from_byte(sig.v).unwrap())
            .unwrap();
    assert_eq!(rec, vk, "v recovers the account key");
}

/// Every participant reported the same signature, which k256 verifies.
fn signed(finals: &[Vec<ReportBody>], hash: &[u8; 32], public_key: &[u8]) {
    for bodies in finals {
        let sig = bodies
            .iter()
            .find_map(|b| match b {
                ReportBody::Signature { signature } => Some(signature),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no signature: {bodies:?}"));
        verify(sig, hash, public_key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compromised_coordinator_gets_no_signature_without_the_quorum() {
    let w = World::start("authz-rogue", 3).await;
    let (alice, bob, carol) = (
        Signer::ed25519("alice"),
        Signer::ed25519("bob"),
        Signer::p256("carol"),
    );
    let (account, public_key, keygen_d) = keygen(&w, &policy(&[&alice, &bob, &carol])).await;
    let signers = [0, 1];
    let desc = |r: &Request, auth: Option<Authorization>| {
        w.descriptor(sign_kind(&account, r.hash()), &signers, auth)
    };

    // No approval at all: the coordinator's signature alone is not enough.
    let r = Request::new(&account, b"pay mallory 100");
    refused_by_all(&w, desc(&r, None), "approval_required").await;
    // One approval of a quorum of two.
    let auth = r.authorization(r.approvals(&[&alice]));
    refused_by_all(&w, desc(&r, Some(auth)), "approval_quorum_not_met").await;
    // Two approvals by the same approver.
    let auth = r.authorization(r.approvals(&[&alice, &alice]));
    refused_by_all(&w, desc(&r, Some(auth)), "duplicate_approval").await;

    // Approvals of another message: presented with the approved message
    // (whose digest is not the hash signed) ...
    let approved = Request::new(&account, b"pay bob 1");
    let mut evil = approved.clone();
    evil.message = b"pay mallory 1000000".to_vec();
    let auth = approved.authorization(approved.approvals(&[&alice, &bob]));
    refused_by_all(&w, desc(&evil, Some(auth)), "approval_hash_mismatch").await;
    // ... or with the signed message (the approvals do not verify over it).
    let auth = evil.authorization(approved.approvals(&[&alice, &bob]));
    refused_by_all(&w, desc(&evil, Some(auth)), "bad_approval_signature").await;

    // Approvals for another account (same approvers, same message).
    let other = Request {
        account_id: uuid::Uuid::new_v4().to_string(),
        ..approved.clone()
    };
    let auth = approved.authorization(other.approvals(&[&alice, &bob]));
    refused_by_all(&w, desc(&approved, Some(auth)), "bad_approval_signature").await;

    // Approvals whose not_after has passed (validly signed as such).
    let mut expired = Request::new(&account, b"pay bob 2");
    expired.not_after = unix_now() - 1;
    let auth = expired.authorization(expired.approvals(&[&alice, &carol]));
    refused_by_all(&w, desc(&expired, Some(auth)), "approval_expired").await;

    // Two valid approvals (Ed25519 and P-256): signed. The descriptor is
    // delivered twice at once to each party: each admits it exactly once
    // and refuses the other copy as a replay.
    let ok = Request::new(&account, b"pay bob 3");
    let auth = ok.authorization(ok.approvals(&[&alice, &carol]));
    let d = desc(&ok, Some(auth.clone()));
    let signed_d = w.deliver(d.clone(), 2).await;
    let finals = w.finals(&d, 2).await;
    signed(&finals, &ok.hash(), &public_key);
    for bodies in &finals {
        assert_eq!(bodies.len(), 2, "{bodies:?}");
        assert!(
            bodies.iter().any(
                |b| matches!(b, ReportBody::Refused { code, .. } if code == "session_replayed")
            ),
            "the second copy is refused: {bodies:?}"
        );
    }
    for p in &w.parties[..2] {
        assert!(p.store().was_admitted(&d.session_id).await.unwrap());
    }
    assert!(
        w.frames(d.session_id) > 0,
        "the signing ran through the router"
    );

    // The same approvals in a new session (a new session id): the request id
    // was used.
    refused_by_all(&w, desc(&ok, Some(auth)), "request_id_reused").await;

    // The completed signing and the keygen re-registered and re-invited:
    // refused by every party; nothing spent.
    w.router.close_session(d.session_id);
    let before = spent(&w, &account).await;
    // Every frame of the signing was relayed before its parties reported:
    // from here on the tap sees only what the replays would send.
    let mut tap = w.tap();
    w.redeliver(&signed_d, 1).await;
    let finals = w.finals(&d, 3).await;
    for bodies in &finals {
        let replays = bodies
            .iter()
            .filter(|b| matches!(b, ReportBody::Refused { code, .. } if code == "session_replayed"))
            .count();
        assert_eq!(replays, 2, "{bodies:?}");
    }
    let keygen_signed = keygen_d.clone().sign(&w.key).unwrap();
    w.redeliver(&keygen_signed, 1).await;
    let finals = w.finals(&keygen_d, 2).await;
    for bodies in &finals {
        assert!(
            matches!(&bodies[1], ReportBody::Refused { code, .. } if code == "session_replayed"),
            "{bodies:?}"
        );
    }
    loop {
        match tap.try_recv() {
            Ok((session, _)) => assert!(
                session != d.session_id && session != keygen_d.session_id,
                "a frame of a replayed session was relayed"
            ),
            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
            Err(e) => panic!("frame tap: {e}"),
        }
    }
    assert_eq!(
        spent(&w, &account).await,
        before,
        "no prime set or presignature spent"
    );
    w.stop().await;
}

/// Prime sets in the pools, presignatures of the account, shares held.
async fn spent(w: &World, account: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for p in &w.parties {
        out.push(p.store().prime_count().await.unwrap());
        out.push(p.store().presignature_count(account).await.unwrap());
        out.push(p.store().share_count().await.unwrap());
    }
    out
}

/// A policy change's approval statement.
fn change_statement<'a>(
    account: &'a str,
    new: &Policy,
    request_id: &'a str,
    not_after: u64,
) -> Statement<'a> {
    Statement {
        account_id: account,
        operation: Operation::PolicyChange,
        payload: Payload::Policy(new.hash()),
        derivation_path: &[],
        request_id,
        not_after,
    }
}

fn change(w: &World, account: &str, new: &Policy, by: &[&Signer]) -> SessionDescriptor {
    let request_id = format!("change-{}", uuid::Uuid::new_v4());
    let not_after = unix_now() + 600;
    let statement = change_statement(account, new, &request_id, not_after);
    let auth = Authorization {
        request_id: request_id.clone(),
        not_after,
        message: None,
        approvals: by.iter().map(|s| s.approve(&statement)).collect(),
    };
    w.descriptor(
        SessionKind::PolicyChange {
            account_id: account.into(),
            policy: new.clone(),
        },
        &[0, 1, 2],
        Some(auth),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_needs_the_current_quorum_and_removes_old_approvers() {
    let w = World::start("authz-change", 3).await;
    let (alice, bob, carol, dave) = (
        Signer::ed25519("alice"),
        Signer::ed25519("bob"),
        Signer::p256("carol"),
        Signer::ed25519("dave"),
    );
    let old = policy(&[&alice, &bob, &carol]);
    let (account, public_key, _) = keygen(&w, &old).await;
    let new = policy(&[&alice, &bob, &dave]);

    // Without a quorum (and with the new policy's own approver, who does not
    // count yet): every party refuses, its policy unchanged.
    refused_by_all(
        &w,
        change(&w, &account, &new, &[&alice]),
        "approval_quorum_not_met",
    )
    .await;
    refused_by_all(
        &w,
        change(&w, &account, &new, &[&alice, &dave]),
        "unknown_approver",
    )
    .await;
    for p in &w.parties {
        assert_eq!(p.store().policy(&account).await.unwrap(), Some(old.clone()));
    }

    // With a quorum of the current policy: every party stores the new one.
    // (Approvers kept by the new policy, so that the replay below passes the
    // approval check and meets the session record.)
    let d = change(&w, &account, &new, &[&alice, &bob]);
    let signed_change = w.deliver(d.clone(), 1).await;
    for bodies in w.finals(&d, 1).await {
        assert_eq!(
            bodies,
            vec![ReportBody::PolicyChanged {
                policy_hash: new.hash()
            }]
        );
    }
    for p in &w.parties {
        assert_eq!(p.store().policy(&account).await.unwrap(), Some(new.clone()));
    }
    // Replayed, the change is refused.
    w.redeliver(&signed_change, 1).await;
    for bodies in w.finals(&d, 2).await {
        assert!(
            matches!(&bodies[1], ReportBody::Refused { code, .. } if code == "session_replayed"),
            "{bodies:?}"
        );
    }

    // The removed approver's approvals no longer count.
    let r = Request::new(&account, b"pay carol 5");
    let d = w.descriptor(
        sign_kind(&account, r.hash()),
        &[1, 2],
        Some(r.authorization(r.approvals(&[&alice, &carol]))),
    );
    refused_by_all(&w, d, "unknown_approver").await;

    // The new approver's do: signed by parties 2 and 3.
    let r = Request::new(&account, b"pay dave 6");
    let d = w.descriptor(
        sign_kind(&account, r.hash()),
        &[1, 2],
        Some(r.authorization(r.approvals(&[&dave, &alice]))),
    );
    w.deliver(d.clone(), 1).await;
    signed(&w.finals(&d, 1).await, &r.hash(), &public_key);

    // A party whose store fails cannot read the policy or record the
    // admission: it fails the session rather than admitting it.
    w.parties[2].store().pool().close().await;
    let r = Request::new(&account, b"pay dave 7");
    let d = w.descriptor(
        sign_kind(&account, r.hash()),
        &[1, 2],
        Some(r.authorization(r.approvals(&[&dave, &bob]))),
    );
    w.deliver(d.clone(), 1).await;
    let body = w.final_of(&d, 1).await;
    assert!(matches!(body, ReportBody::Failed { .. }), "{body:?}");
    assert!(
        !w.reports(&d)
            .iter()
            .any(|r| r.position == 1 && matches!(r.body, ReportBody::Joined)),
        "the party whose store failed joined"
    );
    assert!(!w
        .reports(&d)
        .iter()
        .any(|r| matches!(r.body, ReportBody::Signature { .. })));
    w.stop().await;
}
