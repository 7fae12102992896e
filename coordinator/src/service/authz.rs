//! Account policies and approvals on the coordinator's side (issue #13).
//!
//! The coordinator is not trusted to enforce a policy: every party checks the
//! approvals a descriptor carries against its own stored copy. The
//! coordinator checks them too, with the same code
//! ([`party_core::authz::authorize`]), so a request the parties would refuse
//! is answered at once (403 with the party's code) and no session, join
//! token or presignature is spent on it.

use mpc_api::error::ErrorCode;
use mpc_api::rest::{AccountPolicy, Approval as ApiApproval, Digest, PolicyApprover};
use party_core::authz::{
    authorize, Approval, Approver, ApproverKey, Authorization, AuthzError, Operation, Payload,
    Policy, Statement, MAX_APPROVERS,
};
use party_core::descriptor::{MessageDigest, SessionDescriptor};

use super::validate::bad;
use super::ServiceError;
use crate::store::now;

/// The service error of an authorization refusal: the party's code, with
/// its status (400 for a malformed policy or approval, 403 for a refusal).
pub fn authz_error(e: &AuthzError) -> ServiceError {
    match ErrorCode::parse(e.code()) {
        Some(code) => ServiceError::new(code, e.to_string()),
        None => ServiceError::internal(format!("authorization code without an ErrorCode: {e}")),
    }
}

fn strip_0x(s: &str) -> &str {
    s.strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s)
}

/// The digest of the API as party-core's.
pub fn message_digest(d: Digest) -> MessageDigest {
    match d {
        Digest::Keccak256 => MessageDigest::Keccak256,
        Digest::Sha256 => MessageDigest::Sha256,
    }
}

/// A policy as requested, parsed and validated by party-core (the parties
/// will run the same checks on the descriptor): 400 `invalid_policy`.
pub fn policy_from_api(p: &AccountPolicy) -> Result<Policy, ServiceError> {
    if p.approvers.len() > MAX_APPROVERS {
        return Err(authz_error(&AuthzError::InvalidPolicy(format!(
            "1 to {MAX_APPROVERS} approvers"
        ))));
    }
    let approvers = p
        .approvers
        .iter()
        .map(|a| {
            Approver::parse(
                a.id.clone(),
                a.ed25519.as_deref().map(strip_0x),
                a.p256.as_deref().map(strip_0x),
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| authz_error(&e))?;
    let policy = Policy {
        approvers,
        quorum: p.quorum,
        digests: p.digests.iter().copied().map(message_digest).collect(),
        allow_bare_hash: p.allow_bare_hash,
        max_signatures_per_hour: p.max_signatures_per_hour,
    };
    policy.validate().map_err(|e| authz_error(&e))?;
    Ok(policy)
}

/// A stored policy as the API shows it (P-256 keys compressed).
pub fn policy_to_api(p: &Policy) -> AccountPolicy {
    AccountPolicy {
        approvers: p
            .approvers
            .iter()
            .map(|a| match &a.key {
                ApproverKey::Ed25519(k) => PolicyApprover {
                    id: a.id.clone(),
                    ed25519: Some(hex::encode(k)),
                    p256: None,
                },
                ApproverKey::P256(k) => PolicyApprover {
                    id: a.id.clone(),
                    ed25519: None,
                    p256: Some(hex::encode(k)),
                },
            })
            .collect(),
        quorum: p.quorum,
        digests: p
            .digests
            .iter()
            .map(|d| match d {
                MessageDigest::Keccak256 => Digest::Keccak256,
                MessageDigest::Sha256 => Digest::Sha256,
            })
            .collect(),
        allow_bare_hash: p.allow_bare_hash,
        max_signatures_per_hour: p.max_signatures_per_hour,
    }
}

fn malformed(message: impl Into<String>) -> ServiceError {
    bad(ErrorCode::MalformedApproval, message)
}

/// Whether `sig` is an encoding `key` could verify: 64 bytes for Ed25519;
/// 64-byte `r || s` or DER for P-256.
fn encoding_fits(key: &ApproverKey, sig: &[u8]) -> bool {
    match key {
        ApproverKey::Ed25519(_) => sig.len() == 64,
        ApproverKey::P256(_) => sig.len() == 64 || p256::ecdsa::Signature::from_der(sig).is_ok(),
    }
}

/// The approvals of a request, decoded: 400 `malformed_approval` for bad
/// hex, too many, or a signature encoding the approver's key type does not
/// have. Approvers the policy does not name are left to
/// [`party_core::authz::authorize`] (403 `unknown_approver`).
fn decode_approvals(
    approvals: &[ApiApproval],
    policy: &Policy,
) -> Result<Vec<Approval>, ServiceError> {
    if approvals.len() > MAX_APPROVERS {
        return Err(malformed(format!("at most {MAX_APPROVERS} approvals")));
    }
    approvals
        .iter()
        .map(|a| {
            let signature = hex::decode(strip_0x(&a.signature)).map_err(|_| {
                malformed(format!(
                    "the signature of approver {:?} is not hex",
                    a.approver
                ))
            })?;
            let known = policy.approvers.iter().find(|p| p.id == a.approver);
            if known.is_some_and(|p| !encoding_fits(&p.key, &signature)) {
                return Err(malformed(format!(
                    "the signature of approver {:?} is not an encoding of its key type",
                    a.approver
                )));
            }
            Ok(Approval {
                approver: a.approver.clone(),
                signature,
            })
        })
        .collect()
}

/// The authorization a request carries for an account with `policy`:
/// 403 `approval_required` without approvals, 400 `malformed_approval`
/// when they cannot be checked.
pub fn authorization(
    request_id: Option<&str>,
    not_after: Option<u64>,
    approvals: &[ApiApproval],
    policy: &Policy,
) -> Result<Authorization, ServiceError> {
    let (Some(request_id), Some(not_after)) = (request_id, not_after) else {
        if approvals.is_empty() && request_id.is_none() && not_after.is_none() {
            return Err(authz_error(&AuthzError::ApprovalRequired));
        }
        return Err(malformed(
            "the account's policy needs request_id and not_after with the approvals",
        ));
    };
    let auth = Authorization {
        request_id: request_id.to_string(),
        not_after,
        message: None,
        approvals: decode_approvals(approvals, policy)?,
    };
    auth.validate().map_err(|e| authz_error(&e))?;
    Ok(auth)
}

/// Runs the parties' check on `descriptor` against the coordinator's copy
/// of the policy, now: the party's code when it would refuse.
pub fn precheck(descriptor: &SessionDescriptor, policy: &Policy) -> Result<(), ServiceError> {
    authorize(descriptor, policy, now())
        .map(|_| ())
        .map_err(|e| authz_error(&e))
}

/// The statement bytes of a signing of `account_id`: the message with its
/// digest when there is one, else the bare hash.
pub fn sign_statement(
    account_id: &str,
    hash: &[u8; 32],
    message: Option<&(Vec<u8>, MessageDigest)>,
    request_id: &str,
    not_after: u64,
) -> Vec<u8> {
    let payload = match message {
        Some((message, digest)) => Payload::Message {
            digest: *digest,
            message,
        },
        None => Payload::Hash(hash),
    };
    Statement {
        account_id,
        operation: Operation::Sign,
        payload,
        derivation_path: &[],
        request_id,
        not_after,
    }
    .to_bytes()
}

/// The statement bytes of a change of `account_id`'s policy to `policy`.
pub fn policy_change_statement(
    account_id: &str,
    policy: &Policy,
    request_id: &str,
    not_after: u64,
) -> Vec<u8> {
    Statement {
        account_id,
        operation: Operation::PolicyChange,
        payload: Payload::Policy(policy.hash()),
        derivation_path: &[],
        request_id,
        not_after,
    }
    .to_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_party_refusal_code_is_an_api_error_code() {
        for code in AuthzError::CODES {
            let parsed = ErrorCode::parse(code);
            assert_eq!(parsed.map(ErrorCode::as_str), Some(code), "{code}");
        }
    }

    /// docs/api.md's test vector is what party-core encodes.
    #[test]
    fn the_documented_statement_test_vector_is_the_encoders() {
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
        let docs = include_str!("../../../docs/api.md");
        let vector = hex::encode(st.to_bytes());
        assert!(
            docs.contains(&format!("\n{vector}\n")),
            "docs/api.md lacks {vector}"
        );
    }

    #[test]
    fn a_malformed_policy_or_approval_is_a_400_and_a_refusal_a_403() {
        assert_eq!(
            authz_error(&AuthzError::InvalidPolicy("x".into()))
                .code
                .status(),
            400
        );
        assert_eq!(
            authz_error(&AuthzError::Malformed("x".into()))
                .code
                .status(),
            400
        );
        for e in [
            AuthzError::ApprovalRequired,
            AuthzError::QuorumNotMet { have: 1, need: 2 },
            AuthzError::UnknownApprover("x".into()),
            AuthzError::BadApprovalSignature("x".into()),
            AuthzError::Expired,
            AuthzError::RequestIdReused,
            AuthzError::BareHashNotAllowed,
        ] {
            let s = authz_error(&e);
            assert_eq!((s.code.status(), s.code.as_str()), (403, e.code()));
        }
    }
}
