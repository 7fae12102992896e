//! API key management (the admin API): create, list and revoke keys, each
//! of one tenant with its scopes. An admin key manages its own tenant's
//! keys; an operator key (admin, default tenant) every tenant's.

use mpc_api::admin::{ApiKeyCreate, ApiKeyCreated, ApiKeyView, Scope};
use mpc_api::error::ErrorCode;
use zeroize::Zeroizing;

use super::ServiceError;
use crate::auth::{hash_api_key, new_api_key, Caller};
use crate::store::ApiKeyRecord;
use crate::Coordinator;

/// Longest key name.
pub const MAX_KEY_NAME: usize = 128;
/// Longest tenant id.
pub const MAX_TENANT: usize = 64;

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::new(ErrorCode::InvalidKeyRequest, message)
}

/// A tenant id: 1..=64 of `a-z 0-9 - _`.
pub fn check_tenant(t: &str) -> Result<(), ServiceError> {
    let ok = !t.is_empty()
        && t.len() <= MAX_TENANT
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "tenant must be 1..64 characters of a-z, 0-9, - and _",
        ))
    }
}

/// The tenant whose keys `caller` acts on: its own, or the one it names if
/// it is an operator key.
fn target_tenant(caller: &Caller, named: Option<&str>) -> Result<String, ServiceError> {
    match named {
        None => Ok(caller.tenant_id.clone()),
        Some(t) => {
            check_tenant(t)?;
            if t != caller.tenant_id && !caller.is_operator() {
                return Err(ServiceError::new(
                    ErrorCode::InsufficientScope,
                    "only admin keys of the default tenant manage other tenants' keys",
                ));
            }
            Ok(t.to_string())
        }
    }
}

/// A stored key as listed.
pub fn key_view(r: &ApiKeyRecord) -> ApiKeyView {
    ApiKeyView {
        id: r.id.clone(),
        name: r.name.clone(),
        tenant: r.tenant_id.clone(),
        scopes: r.scopes.clone(),
        created_at: r.created_at,
        revoked_at: r.revoked_at,
    }
}

fn unknown_key() -> ServiceError {
    ServiceError::new(ErrorCode::UnknownApiKey, "API key not found")
}

impl Coordinator {
    /// Creates a key of the caller's tenant (or, for an operator key, of the
    /// tenant it names); the answer holds the key, shown this once.
    pub async fn create_key(
        &self,
        caller: &Caller,
        req: ApiKeyCreate,
    ) -> Result<ApiKeyCreated, ServiceError> {
        let name = req.name.trim();
        if name.is_empty() || name.len() > MAX_KEY_NAME || name.chars().any(char::is_control) {
            return Err(invalid(
                "name must be 1..128 characters without control characters",
            ));
        }
        if req.scopes.is_empty() {
            return Err(invalid(format!(
                "give at least one scope of {}",
                Scope::ALL.map(Scope::as_str).join(", ")
            )));
        }
        let tenant = target_tenant(caller, req.tenant.as_deref())?;
        let key = Zeroizing::new(new_api_key());
        let rec = self
            .store()
            .insert_api_key(&hash_api_key(&key), name, &tenant, &req.scopes)
            .await?;
        tracing::info!(key_id = %rec.id, tenant = %rec.tenant_id, by = %caller.key_id, "API key created");
        Ok(ApiKeyCreated {
            id: rec.id,
            key: key.to_string(),
            name: rec.name,
            tenant: rec.tenant_id,
            scopes: rec.scopes,
            created_at: rec.created_at,
        })
    }

    /// The keys the caller manages (an operator key: every tenant's, or the
    /// one it names).
    pub async fn list_keys(
        &self,
        caller: &Caller,
        tenant: Option<&str>,
    ) -> Result<Vec<ApiKeyView>, ServiceError> {
        let scope = match tenant {
            None if caller.is_operator() => None,
            named => Some(target_tenant(caller, named)?),
        };
        Ok(self
            .store()
            .api_keys(scope.as_deref())
            .await?
            .iter()
            .map(key_view)
            .collect())
    }

    /// Revokes a key the caller manages: at once on this instance, within
    /// the key cache's TTL on every other. Another tenant's key is
    /// `unknown_api_key`, as one that does not exist.
    pub async fn revoke_key(&self, caller: &Caller, id: &str) -> Result<ApiKeyView, ServiceError> {
        let tenant = (!caller.is_operator()).then_some(caller.tenant_id.as_str());
        let rec = self
            .store()
            .revoke_api_key(id, tenant)
            .await?
            .ok_or_else(unknown_key)?;
        self.key_cache().forget_valid();
        tracing::info!(key_id = %rec.id, tenant = %rec.tenant_id, by = %caller.key_id, "API key revoked");
        Ok(key_view(&rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_short_and_plain() {
        for ok in ["default", "acme-1", "a_b", &"x".repeat(MAX_TENANT)] {
            assert!(check_tenant(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Acme", "a b", "a/b", "ü", &"x".repeat(MAX_TENANT + 1)] {
            assert_eq!(
                check_tenant(bad).map_err(|e| e.code),
                Err(ErrorCode::InvalidKeyRequest),
                "{bad}"
            );
        }
    }
}
