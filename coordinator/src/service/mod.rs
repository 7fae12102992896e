//! The service layer: what the coordinator does, without HTTP. Every call
//! answers a [`ServiceError`] (an [`ErrorCode`] and a message); the HTTP layer
//! turns it into a response with the code's status.
//!
//! - [`create`] — request validation and creation of every session kind.
//! - [`aux`] — aux-info agreement: one aux generation per party group,
//!   keygens complete only on agreeing fingerprints.
//! - [`launch`] — router registration and the server parties' invitations.
//! - [`reports`] — applying party reports, checked against their session.
//! - [`results`] — completing sessions once the parties' results agree.
//! - [`pool`] — the presignature refill policy.
//! - [`devices`] — the device join and the launch of pending keygens.
//! - [`disconnects`] — sessions failed early on the router's disconnect
//!   notices.
//! - [`enrolment`] — party credentials: the operator's enrolments and the
//!   parties' signed registrations.
//! - [`keys`] — API keys of the admin API (tenants, scopes, revocation).
//! - [`descriptors`] — the bounded cache of parsed signed descriptors.
//! - [`validate`] — request validation shared by the above.
//! - [`authz`] — account policies and approvals: conversion, the
//!   coordinator's own check, approval statements.
//! - [`policy`] — policy-change sessions and the statement endpoint.

pub mod authz;
pub mod aux;
pub mod aux_repair;
pub mod create;
pub mod descriptors;
pub mod devices;
pub mod disconnects;
pub mod enrolment;
pub mod keys;
pub mod launch;
pub mod policy;
pub mod pool;
pub mod reports;
pub mod results;
pub mod validate;

use mpc_api::error::ErrorCode;

use crate::store::StoreError;

pub use create::{Created, MAX_PARTIES};
pub use descriptors::DescriptorCache;
pub use devices::{DeviceJoin, Joined};
pub use enrolment::SignedRegistration;
pub use launch::Owner;
pub use results::signature_view;
pub use validate::parse_hash;

/// A refused or failed service call: a stable code (with its HTTP status)
/// and a message for people. Never carries internals or secrets: internal
/// causes are logged and answered as "internal error".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServiceError {
    /// The stable code.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl ServiceError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    /// `not_found`: "`what` not found".
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }
    /// `internal`, logging the real cause and returning a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::PartyIdTaken => Self::new(
                ErrorCode::Conflict,
                "party id already registered with another key",
            ),
            StoreError::IdentityTaken => {
                Self::new(ErrorCode::Conflict, "identity key already registered")
            }
            StoreError::SlotBound => Self::new(
                ErrorCode::TokenBound,
                "this join token is bound to another identity",
            ),
            StoreError::PartyBound => Self::new(
                ErrorCode::PartyBound,
                "the party is bound to another identity key",
            ),
            StoreError::RequestIdReused => Self::new(
                ErrorCode::RequestIdReused,
                "request id already used for this account",
            ),
            StoreError::KeyInUse => Self::new(
                ErrorCode::IdentityInUse,
                "this identity key belongs to another party",
            ),
            StoreError::TooManySessions => Self::new(
                ErrorCode::TooManySessions,
                "this API key has as many open sessions as it may; wait for one to end",
            ),
            e @ (StoreError::Open(_) | StoreError::Db(_) | StoreError::Malformed(_)) => {
                Self::internal(e)
            }
        }
    }
}

/// `unknown_account`: no such account in the caller's tenant.
pub fn unknown_account() -> ServiceError {
    ServiceError::new(ErrorCode::UnknownAccount, "account not found")
}
