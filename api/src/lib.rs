//! # mpc-api
//!
//! Every request and response that crosses a process boundary, as plain
//! serde types with `utoipa` schemas, and no HTTP framework:
//!
//! - [`error`] — the one error body `{"error", "code"}` and [`error::ErrorCode`],
//!   a stable code per failure, with its HTTP status.
//! - [`rest`] — the public REST API of the coordinator (`/api/v1/mpc/...`).
//! - [`admin`] — its admin API: tenant-scoped API keys and their scopes.
//! - [`party`] — what parties send the coordinator (registration, device join).
//! - [`router`] — the router's internal API (sessions, invitations) that
//!   coordinators call.
//!
//! The coordinator serves the OpenAPI document built from these types; the
//! TypeScript types of the JS host and the demo are generated from it.
#![forbid(unsafe_code)]

pub mod admin;
pub mod error;
pub mod party;
pub mod rest;
pub mod router;
