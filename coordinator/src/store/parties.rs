//! Registered parties (party id ↔ identity keys) and aux-info party groups.

use mpc_db::sqlx::{self, Row as _};
use party_core::identity::PartyPublicKey;

use super::{i, now, DeviceType, Store, StoreError};

/// A registered party.
#[derive(Debug, Clone)]
pub struct PartyRecord {
    /// Party id.
    pub party_id: String,
    /// A server party, or a device type.
    pub device_type: DeviceType,
    /// Identity.
    pub identity: PartyPublicKey,
}

impl Store {
    /// Registers a party; the same id with another key is
    /// [`StoreError::PartyIdTaken`], the same key under another id
    /// [`StoreError::IdentityTaken`].
    pub async fn register_party(
        &self,
        party_id: &str,
        device_type: DeviceType,
        identity: PartyPublicKey,
    ) -> Result<(), StoreError> {
        if let Some(existing) = self.party(party_id).await? {
            if existing.identity == identity {
                return Ok(());
            }
            return Err(StoreError::PartyIdTaken);
        }
        sqlx::query("INSERT INTO parties (party_id, device_type, ed25519, x25519, registered_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(party_id)
            .bind(device_type.as_str())
            .bind(identity.ed25519.to_vec())
            .bind(identity.x25519.to_vec())
            .bind(i(now()))
            .execute(&self.pool)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::IdentityTaken,
                e => StoreError::Db(e),
            })?;
        Ok(())
    }

    /// The device type of a registered party; `server` for a party id not
    /// registered (yet).
    pub async fn device_type_of(&self, party_id: &str) -> Result<DeviceType, StoreError> {
        Ok(self
            .party(party_id)
            .await?
            .map_or(DeviceType::Server, |r| r.device_type))
    }

    /// A registered party.
    pub async fn party(&self, party_id: &str) -> Result<Option<PartyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT party_id, device_type, ed25519, x25519 FROM parties WHERE party_id = $1",
        )
        .bind(party_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let device_type = DeviceType::parse(&r.get::<String, _>(1))
            .ok_or(StoreError::Malformed("party device type"))?;
        let identity = (|| {
            Some(PartyPublicKey {
                ed25519: r.get::<Vec<u8>, _>(2).try_into().ok()?,
                x25519: r.get::<Vec<u8>, _>(3).try_into().ok()?,
            })
        })();
        Ok(identity.map(|identity| PartyRecord {
            party_id: r.get(0),
            device_type,
            identity,
        }))
    }

    /// Whether aux info exists for a party group.
    pub async fn aux_group_exists(&self, group_id: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM aux_groups WHERE group_id = $1")
            .bind(group_id)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }
}
