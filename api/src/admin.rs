//! The admin API of the coordinator (`/api/v1/mpc/admin/...`): API keys,
//! each of one tenant and with [`Scope`]s.
//!
//! A key sees only its tenant's accounts and sessions. Admin keys manage the
//! keys of their own tenant; admin keys of the default tenant (the
//! operator's, e.g. the bootstrap key of `mpc dev`) also create, list and
//! revoke the keys of other tenants, which is how a tenant gets its first
//! key. Operator keys also enrol server parties ([`PartyEnrol`]): the
//! identity key each party id may register with.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The tenant of the bootstrap keys and of every row made before tenants
/// existed.
pub const DEFAULT_TENANT: &str = "default";

/// What an API key may do.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// `GET` accounts and sessions (and wait on them).
    Read,
    /// `POST /keygen`.
    Keygen,
    /// `POST /sign`.
    Sign,
    /// The admin API: create, list and revoke API keys.
    Admin,
}

impl Scope {
    /// Every scope, in order.
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Keygen, Scope::Sign, Scope::Admin];

    /// The stable name (as stored and sent).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Keygen => "keygen",
            Self::Sign => "sign",
            Self::Admin => "admin",
        }
    }

    /// Parses [`Scope::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "read" => Self::Read,
            "keygen" => Self::Keygen,
            "sign" => Self::Sign,
            "admin" => Self::Admin,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /api/v1/mpc/admin/keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyCreate {
    /// A name for people (1..=128 printable characters).
    pub name: String,
    /// At least one scope.
    pub scopes: Vec<Scope>,
    /// The key's tenant (1..=64 of `a-z 0-9 - _`); the caller's own when
    /// absent. Only admin keys of the default tenant name another one.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// The answer to `POST /api/v1/mpc/admin/keys`: the only time the key is
/// shown (the coordinator stores its hash). `Debug` hides the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyCreated {
    /// The key's id (for listing and revoking).
    pub id: String,
    /// The key itself: shown once, never stored.
    pub key: String,
    /// Its name.
    pub name: String,
    /// Its tenant.
    pub tenant: String,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// Unix seconds.
    pub created_at: u64,
}

impl std::fmt::Debug for ApiKeyCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyCreated")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .field("name", &self.name)
            .field("tenant", &self.tenant)
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// An API key as listed: never the key or its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Tenant.
    pub tenant: String,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; absent while the key is valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

/// `GET /api/v1/mpc/admin/keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyList {
    /// Oldest first.
    pub keys: Vec<ApiKeyView>,
}

/// `?tenant=T` on `GET /admin/keys`: only that tenant's keys (admin keys of
/// the default tenant; others see their own tenant's keys only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeyListQuery {
    /// Only this tenant's keys.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// `?inconsistent=true` on `GET /admin/aux-groups`: only the party groups
/// whose parties were found holding different aux info.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuxGroupQuery {
    /// Only inconsistent groups.
    #[serde(default)]
    pub inconsistent: bool,
}

/// A party group's aux info, as the coordinator knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuxGroupView {
    /// The party group (hex SHA-256 of its parties, ids and keys, at their
    /// keygen indices).
    pub group_id: String,
    /// `ready` (aux info agreed), `generating` (a keygen holds the group's
    /// claim) or `inconsistent` (parties reported different aux info; no
    /// keygen of the group is created).
    pub state: String,
    /// The fingerprint of the aux info every party reported (hex), where
    /// known.
    pub fingerprint: Option<String>,
    /// The keygen that generated the aux info, is generating it, or found
    /// the group inconsistent.
    pub session_id: String,
}

/// `GET /api/v1/mpc/admin/aux-groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuxGroupList {
    /// Inconsistent groups first, then the others by group id.
    pub groups: Vec<AuxGroupView>,
}

/// `PUT /api/v1/mpc/admin/parties/{party_id}`: the operator enrols a server
/// party, pinning its identity key (and optionally its X25519 key). Only a
/// party registering with this key is accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartyEnrol {
    /// The party's Ed25519 identity key, 64 hex digits (`mpc party
    /// --print-identity` prints it).
    pub ed25519: String,
    /// Its X25519 key, 64 hex digits; when given, a registration must carry
    /// exactly this one.
    #[serde(default)]
    pub x25519: Option<String>,
}

/// An enrolled server party.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartyEnrolment {
    /// Party id.
    pub party_id: String,
    /// The enrolled Ed25519 identity key, hex.
    pub ed25519: String,
    /// The pinned X25519 key, hex, if one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x25519: Option<String>,
    /// Unix seconds.
    pub enrolled_at: u64,
    /// Who enrolled it: an API key id (`migration` for parties registered
    /// before enrolment existed).
    pub enrolled_by: String,
    /// Unix seconds; absent while the enrolment is in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
    /// Whether the party has registered (with the enrolled key).
    pub registered: bool,
}

/// `GET /api/v1/mpc/admin/parties`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartyEnrolmentList {
    /// By party id.
    pub parties: Vec<PartyEnrolment>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn scopes_have_stable_names() {
        for s in Scope::ALL {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::String(s.as_str().into())
            );
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        assert!(serde_json::from_str::<Scope>("\"root\"").is_err());
    }

    #[test]
    fn a_created_key_is_not_in_its_debug_output() {
        let c = ApiKeyCreated {
            id: "id".into(),
            key: "mpc_secret".into(),
            name: "n".into(),
            tenant: DEFAULT_TENANT.into(),
            scopes: vec![Scope::Read],
            created_at: 1,
        };
        assert!(!format!("{c:?}").contains("mpc_secret"));
    }

    #[test]
    fn key_requests_refuse_unknown_fields() {
        let r = serde_json::from_str::<ApiKeyCreate>(
            r#"{"name":"n","scopes":["read"],"key_sha256":"00"}"#,
        );
        assert!(r.is_err());
    }
}
