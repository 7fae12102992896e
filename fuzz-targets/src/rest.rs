//! REST and internal JSON bodies: the api crate's request types, decoded as
//! the coordinator and the router decode them, with the policy parts turned
//! into a party-core policy and validated (what the coordinator does with
//! them before a descriptor exists).

use mpc_api::admin::ApiKeyCreate;
use mpc_api::party::{DeviceJoinRequest, RegisterParty};
use mpc_api::rest::{
    AccountPolicy, Digest, KeygenRequest, PolicyChangeRequest, SignRequest, StatementRequest,
};
use mpc_api::router::{InviteRequest, RegisterSession};
use party_core::authz::{Approver, Policy};
use party_core::descriptor::MessageDigest;
use party_core::identity::PartyPublicKey;
use party_core::wire::Invitation;

use crate::select;

/// A public REST body; the first byte chooses the type: 0 keygen, 1 sign,
/// 2 policy change, 3 approval statement, 4 API key creation, 5 device
/// join, 6 party registration.
pub fn rest_json(data: &[u8]) {
    let Some((which, body)) = select(data) else {
        return;
    };
    match which % 7 {
        0 => {
            if let Ok(r) = serde_json::from_slice::<KeygenRequest>(body) {
                if let Some(p) = r.policy {
                    check_policy(&p);
                }
            }
        }
        1 => {
            let _ = serde_json::from_slice::<SignRequest>(body).map(|r| check_sign(&r));
        }
        2 => {
            if let Ok(r) = serde_json::from_slice::<PolicyChangeRequest>(body) {
                check_policy(&r.policy);
            }
        }
        3 => match serde_json::from_slice::<StatementRequest>(body) {
            Ok(StatementRequest::Sign(r)) => check_sign(&r),
            Ok(StatementRequest::PolicyChange(r)) => check_policy(&r.policy),
            Err(_) => {}
        },
        4 => {
            let _ = serde_json::from_slice::<ApiKeyCreate>(body);
        }
        5 => {
            if let Ok(r) = serde_json::from_slice::<DeviceJoinRequest>(body) {
                check_identity(&r.identity);
                let _ = hex::decode(&r.signature);
            }
        }
        _ => {
            if let Ok(r) = serde_json::from_slice::<RegisterParty>(body) {
                check_identity(&r.identity);
            }
        }
    }
}

/// A router internal body; the first byte chooses: even, a session
/// registration; odd, an invitation (whose descriptor is checked as a
/// party checks it).
pub fn internal_json(data: &[u8]) {
    let Some((which, body)) = select(data) else {
        return;
    };
    if which % 2 == 0 {
        if let Ok(r) = serde_json::from_slice::<RegisterSession<PartyPublicKey>>(body) {
            for slot in &r.participants {
                if let Some(identity) = &slot.identity {
                    let _ = identity.validate();
                }
                let _ = hex::decode(&slot.token_sha256);
            }
        }
    } else if let Ok(r) = serde_json::from_slice::<InviteRequest<Invitation>>(body) {
        let _ = hex::decode(&r.identity_ed25519);
        crate::network::descriptor_json(
            serde_json::to_vec(&r.invitation.descriptor)
                .unwrap_or_default()
                .as_slice(),
        );
    }
}

fn digest(d: Digest) -> MessageDigest {
    match d {
        Digest::Sha256 => MessageDigest::Sha256,
        Digest::Keccak256 => MessageDigest::Keccak256,
    }
}

/// The policy as the coordinator turns it into a party-core policy.
fn check_policy(p: &AccountPolicy) {
    let approvers: Result<Vec<Approver>, _> = p
        .approvers
        .iter()
        .map(|a| Approver::parse(a.id.clone(), a.ed25519.as_deref(), a.p256.as_deref()))
        .collect();
    let Ok(approvers) = approvers else {
        return;
    };
    let policy = Policy {
        approvers,
        quorum: p.quorum,
        digests: p.digests.iter().copied().map(digest).collect(),
        allow_bare_hash: p.allow_bare_hash,
        max_signatures_per_hour: p.max_signatures_per_hour,
    };
    if policy.validate().is_ok() {
        let _ = (policy.hash(), policy.canonical_bytes());
    }
}

/// The hex fields, decoded as the coordinator decodes them.
fn check_sign(r: &SignRequest) {
    for field in [&r.message_hash, &r.message].into_iter().flatten() {
        let _ = hex::decode(field.strip_prefix("0x").unwrap_or(field));
    }
    for a in &r.approvals {
        let _ = hex::decode(&a.signature);
    }
}

fn check_identity(identity: &mpc_api::party::Identity) {
    let key = |h: &str| -> Option<[u8; 32]> { hex::decode(h).ok()?.try_into().ok() };
    if let (Some(ed), Some(x)) = (key(&identity.ed25519), key(&identity.x25519)) {
        let _ = PartyPublicKey::new(ed, x);
    }
}
