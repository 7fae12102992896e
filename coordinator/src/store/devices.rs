//! Device parties (issue #4): device slots, pending descriptors, token
//! binding. Tables from migrations/0002_devices.sql. Portable SQL: `$n`
//! placeholders, no SQLite-only syntax.

use mpc_db::sqlx::{self, Row as _};
use party_core::identity::PartyPublicKey;
use uuid::Uuid;

use super::events::event;
use super::sessions::insert_session_rows;
use super::{i, now, u16_, DeviceType, NewSession, Store, StoreError};

/// A device party's slot in a session.
#[derive(Debug, Clone)]
pub struct DeviceSlot {
    /// Position in the session.
    pub position: u16,
    /// Party id.
    pub party_id: String,
    /// `browser`, `mobile`, ...
    pub device_type: DeviceType,
    /// The identity the slot is bound to (known in advance for a registered
    /// device, else set when the device first presents its join token).
    pub identity: Option<PartyPublicKey>,
}

/// A device slot with its join-token hash, for the join check.
#[derive(Debug, Clone)]
pub struct DeviceSlotRow {
    /// The slot.
    pub slot: DeviceSlot,
    /// SHA-256 of the slot's join token.
    pub token_sha256: Vec<u8>,
}

fn public_from_hex(ed: Option<String>, x: Option<String>) -> Option<PartyPublicKey> {
    Some(PartyPublicKey {
        ed25519: hex::decode(ed?).ok()?.try_into().ok()?,
        x25519: hex::decode(x?).ok()?.try_into().ok()?,
    })
}

impl Store {
    /// Inserts a session with device slots in one transaction; `pending` is
    /// the unsigned descriptor of a keygen still waiting for device keys.
    pub async fn insert_device_session(
        &self,
        s: NewSession<'_>,
        devices: &[DeviceSlot],
        pending: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_session_rows(&mut tx, &s).await?;
        for d in devices {
            sqlx::query(
                "INSERT INTO device_slots (session_id, position, party_id, device_type, ed25519, x25519, bound_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(s.row.session_id.to_string())
            .bind(i64::from(d.position))
            .bind(&d.party_id)
            .bind(d.device_type.as_str())
            .bind(d.identity.map(|k| hex::encode(k.ed25519)))
            .bind(d.identity.map(|k| hex::encode(k.x25519)))
            .bind(d.identity.map(|_| i(now())))
            .execute(&mut *tx)
            .await?;
        }
        if let Some(descriptor) = pending {
            sqlx::query("INSERT INTO pending_descriptors (session_id, descriptor) VALUES ($1, $2)")
                .bind(s.row.session_id.to_string())
                .bind(descriptor)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A session's device slots with their token hashes.
    pub async fn device_slots(&self, id: Uuid) -> Result<Vec<DeviceSlotRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.position, d.party_id, d.device_type, d.ed25519, d.x25519, p.token_sha256
             FROM device_slots d JOIN session_participants p
               ON p.session_id = d.session_id AND p.position = d.position
             WHERE d.session_id = $1 ORDER BY d.position",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeviceSlotRow {
                    slot: DeviceSlot {
                        position: u16_(r.get(0)),
                        party_id: r.get(1),
                        device_type: DeviceType::parse(&r.get::<String, _>(2))
                            .ok_or(StoreError::Malformed("device slot type"))?,
                        identity: public_from_hex(r.get(3), r.get(4)),
                    },
                    token_sha256: r.get(5),
                })
            })
            .collect()
    }

    /// Binds a device slot to an identity, registering the device party
    /// (party id ↔ key) on its first use; all or nothing. Binding again with
    /// the same identity is a no-op.
    pub async fn bind_device(
        &self,
        id: Uuid,
        slot: &DeviceSlot,
        identity: PartyPublicKey,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let bound = sqlx::query(
            "SELECT ed25519, x25519 FROM device_slots WHERE session_id = $1 AND position = $2",
        )
        .bind(id.to_string())
        .bind(i64::from(slot.position))
        .fetch_optional(&mut *tx)
        .await?
        .and_then(|r| public_from_hex(r.get(0), r.get(1)));
        if let Some(bound) = bound {
            return if bound == identity {
                Ok(())
            } else {
                Err(StoreError::SlotBound)
            };
        }
        let party = sqlx::query("SELECT ed25519, x25519 FROM parties WHERE party_id = $1")
            .bind(&slot.party_id)
            .fetch_optional(&mut *tx)
            .await?;
        match party {
            Some(r) => {
                let ed: Vec<u8> = r.get(0);
                let x: Vec<u8> = r.get(1);
                if ed != identity.ed25519 || x != identity.x25519 {
                    return Err(StoreError::PartyBound);
                }
            }
            None => {
                let taken = sqlx::query("SELECT 1 FROM parties WHERE ed25519 = $1")
                    .bind(identity.ed25519.to_vec())
                    .fetch_optional(&mut *tx)
                    .await?;
                if taken.is_some() {
                    return Err(StoreError::KeyInUse);
                }
                sqlx::query(
                    "INSERT INTO parties (party_id, device_type, ed25519, x25519, registered_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(&slot.party_id)
                .bind(slot.device_type.as_str())
                .bind(identity.ed25519.to_vec())
                .bind(identity.x25519.to_vec())
                .bind(i(now()))
                .execute(&mut *tx)
                .await?;
            }
        }
        let changed = sqlx::query(
            "UPDATE device_slots SET ed25519 = $1, x25519 = $2, bound_at = $3
             WHERE session_id = $4 AND position = $5 AND ed25519 IS NULL",
        )
        .bind(hex::encode(identity.ed25519))
        .bind(hex::encode(identity.x25519))
        .bind(i(now()))
        .bind(id.to_string())
        .bind(i64::from(slot.position))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            // Another request bound it first; it may have been this identity.
            tx.rollback().await?;
            let again = self.device_slots(id).await?;
            return match again.iter().find(|d| d.slot.position == slot.position) {
                Some(d) if d.slot.identity == Some(identity) => Ok(()),
                _ => Err(StoreError::SlotBound),
            };
        }
        event(
            &mut tx,
            id,
            "device_bound",
            Some(slot.position),
            &serde_json::json!({ "party_id": slot.party_id, "ed25519": hex::encode(identity.ed25519) }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The join-token hashes of a session's slots, in position order.
    pub async fn session_token_hashes(&self, id: Uuid) -> Result<Vec<[u8; 32]>, StoreError> {
        let rows = sqlx::query(
            "SELECT token_sha256 FROM session_participants WHERE session_id = $1 ORDER BY position",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.get::<Vec<u8>, _>(0).try_into().unwrap_or([0; 32]))
            .collect())
    }

    /// Replaces a slot's join-token hash (server slots of a pending keygen
    /// get their tokens when the session is launched).
    pub async fn set_token_hash(
        &self,
        id: Uuid,
        position: u16,
        hash: &[u8; 32],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE session_participants SET token_sha256 = $1 WHERE session_id = $2 AND position = $3",
        )
        .bind(hash.to_vec())
        .bind(id.to_string())
        .bind(i64::from(position))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The unsigned descriptor of a keygen waiting for device keys.
    pub async fn pending_descriptor(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query("SELECT descriptor FROM pending_descriptors WHERE session_id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.get(0)),
        )
    }

    /// Stores the signed descriptor of a session that was waiting for device
    /// keys, once: returns whether this call did it (so one caller registers
    /// the session with the router and invites the server parties).
    pub async fn launch_pending(
        &self,
        id: Uuid,
        signed_descriptor: &str,
        group_id: &str,
        generate_aux: bool,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE sessions SET descriptor = $1, group_id = $2, generate_aux = $3, updated_at = $4
             WHERE session_id = $5 AND descriptor = '' AND status = 'waiting'",
        )
        .bind(signed_descriptor)
        .bind(group_id)
        .bind(i64::from(generate_aux))
        .bind(i(now()))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 1 {
            event(
                &mut tx,
                id,
                "descriptor_signed",
                None,
                &serde_json::json!({}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }
}
