//! The router's internal HTTP API, which coordinators call on the router's
//! internal listener (not its public WebSocket one). Every request carries
//! [`INTERNAL_TOKEN_HEADER`] with the routers' internal credential, which
//! only coordinators hold; every error is an
//! [`ErrorBody`](crate::error::ErrorBody).
//!
//! | Route | Request | Success |
//! |---|---|---|
//! | `POST /internal/v1/sessions` | [`RegisterSession`] | 201 [`SessionRegistered`] (200 for the same registration of an open session again) |
//! | `DELETE /internal/v1/sessions/{id}` | — | 204, no body |
//! | `POST /internal/v1/invitations` | [`InviteRequest`] | 202 [`InviteResponse`] |
//! | `GET /internal/v1/disconnects?after=&wait_ms=` | — | 200 [`Disconnects`] (a long poll) |
//!
//! Errors: 400 `bad_request` (malformed body or field), 401 `unauthorized`
//! (missing or wrong token), 404 `unknown_session` (`DELETE` of a session the
//! router does not know), 409 `conflict` (another registration of an open
//! session id), 410 `session_closed` (the session id was registered before
//! and its session has closed: it never runs again), 503 `unavailable` (the
//! router's shared state store does not answer).
//!
//! A party's public identity and an invitation are `party_core` types
//! (`PartyPublicKey`, `wire::Invitation`); the requests that carry them are
//! generic over them, so this crate stays free of party-core's cryptography.
//! The router and the coordinator both use them with `party_core`'s types.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Header carrying the internal API token (header names are
/// case-insensitive).
pub const INTERNAL_TOKEN_HEADER: &str = "x-internal-token";

/// `POST`: registers a session.
pub const SESSIONS_PATH: &str = "/internal/v1/sessions";

/// `POST`: delivers or queues an invitation.
pub const INVITATIONS_PATH: &str = "/internal/v1/invitations";

/// `GET`: the parties that left a session and did not come back within the
/// router's grace period (a long poll; query [`DisconnectsQuery`]).
pub const DISCONNECTS_PATH: &str = "/internal/v1/disconnects";

/// Longest `wait_ms` of a [`DisconnectsQuery`]: 30 s.
pub const MAX_DISCONNECTS_WAIT_MS: u64 = 30_000;

/// `DELETE`: ends a session.
pub fn session_path(session_id: Uuid) -> String {
    format!("{SESSIONS_PATH}/{session_id}")
}

/// `POST /internal/v1/sessions`: a session and its slots. `K` is the party's
/// public identity (`party_core::identity::PartyPublicKey`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterSession<K> {
    /// The session id (the descriptor's).
    pub session_id: Uuid,
    /// Deadline, Unix seconds: joins are refused and the session ends then.
    pub expires_at: u64,
    /// One slot per position `0..n`, in any order, without gaps or repeats;
    /// 1 to `MAX_PARTIES` of them, with distinct token hashes and identities.
    pub participants: Vec<ParticipantSlot<K>>,
}

/// A participant slot of [`RegisterSession`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParticipantSlot<K> {
    /// Position in the session.
    pub position: u16,
    /// SHA-256 of the slot's join token, 64 hex characters.
    pub token_sha256: String,
    /// The identity the slot is bound to from the start (server parties);
    /// `None` binds the slot to the first identity that joins with its token.
    pub identity: Option<K>,
}

/// 201 answer to [`RegisterSession`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRegistered {
    /// The registered session.
    pub session_id: Uuid,
}

/// `POST /internal/v1/invitations`: an invitation for a server party. `I` is
/// `party_core::wire::Invitation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest<I> {
    /// The invited party's Ed25519 identity key, 64 hex characters.
    pub identity_ed25519: String,
    /// The invitation, delivered as is.
    pub invitation: I,
}

/// 202 answer to [`InviteRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteResponse {
    /// True when the invitation went to a control connection of the party
    /// right away; false when it was queued for the party's next connection
    /// (or dropped, past its deadline).
    pub delivered: bool,
}

/// Query of `GET /internal/v1/disconnects`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisconnectsQuery {
    /// The `cursor` of the previous answer; absent: only what happens from
    /// now on. A cursor of another router (a memory-backed router that
    /// restarted) returns every notice the router still holds.
    pub after: Option<String>,
    /// How long to wait for a notice when there is none yet, at most
    /// [`MAX_DISCONNECTS_WAIT_MS`]; 0 answers at once.
    #[serde(default)]
    pub wait_ms: u64,
}

/// 200 answer of `GET /internal/v1/disconnects`: what the router observed.
/// A router is trusted for availability only: a notice is its observation
/// (a connection closed without a normal close and no new one for the
/// position within the grace period), not evidence against the party.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Disconnects {
    /// Pass as `after` to get the notices that follow these.
    pub cursor: String,
    /// In the order the router recorded them.
    pub disconnects: Vec<Disconnect>,
}

/// One party that left a session: its connection closed without a normal
/// WebSocket close and no connection for its position came back within
/// `grace_ms`, while the session was still open at the router.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Disconnect {
    /// The session.
    pub session_id: Uuid,
    /// The party's position in the session (the descriptor's order).
    pub position: u16,
    /// When its connection closed, Unix milliseconds.
    pub left_at_ms: u64,
    /// The grace period the router waited, milliseconds.
    pub grace_ms: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn register_session_matches_the_wire_format() {
        let id = Uuid::from_bytes([7; 16]);
        let body = json!({
            "session_id": id,
            "expires_at": 10,
            "participants": [{"position": 0, "token_sha256": "ab", "identity": null}],
        });
        let req: RegisterSession<serde_json::Value> = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(req.participants[0].identity, None);
        assert_eq!(serde_json::to_value(&req).unwrap(), body);
        assert_eq!(session_path(id), format!("/internal/v1/sessions/{id}"));
    }

    #[test]
    fn requests_refuse_unknown_fields() {
        let extra = json!({"session_id": Uuid::nil(), "expires_at": 1, "participants": [], "x": 1});
        assert!(serde_json::from_value::<RegisterSession<serde_json::Value>>(extra).is_err());
        let slot = json!({"session_id": Uuid::nil(), "expires_at": 1,
                          "participants": [{"position": 0, "token_sha256": "", "identity": null, "x": 1}]});
        assert!(serde_json::from_value::<RegisterSession<serde_json::Value>>(slot).is_err());
        let inv = json!({"identity_ed25519": "", "invitation": {}, "x": 1});
        assert!(serde_json::from_value::<InviteRequest<serde_json::Value>>(inv).is_err());
    }

    #[test]
    fn answers_match_the_wire_format() {
        let id = Uuid::from_bytes([1; 16]);
        assert_eq!(
            serde_json::to_value(SessionRegistered { session_id: id }).unwrap(),
            json!({"session_id": id})
        );
        assert_eq!(
            serde_json::to_value(InviteResponse { delivered: true }).unwrap(),
            json!({"delivered": true})
        );
    }
}
