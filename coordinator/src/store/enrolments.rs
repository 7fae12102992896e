//! Party enrolments (party id → the identity key an operator allowed it to
//! register with) and the nonces of signed party requests.

use mpc_db::sqlx::{self, Row as _};

use super::{i, now, u, Store, StoreError};

/// An enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentRecord {
    /// Party id.
    pub party_id: String,
    /// The enrolled Ed25519 identity key.
    pub ed25519: [u8; 32],
    /// The pinned X25519 key, if any.
    pub x25519: Option<[u8; 32]>,
    /// Unix seconds.
    pub enrolled_at: u64,
    /// The API key id that enrolled it (`migration` for parties registered
    /// before enrolment existed).
    pub enrolled_by: String,
    /// Unix seconds, once revoked.
    pub revoked_at: Option<u64>,
}

impl EnrolmentRecord {
    /// Whether the enrolment is in force.
    pub fn active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

const COLUMNS: &str = "party_id, ed25519, x25519, enrolled_at, enrolled_by, revoked_at";

fn record(r: &sqlx::any::AnyRow) -> Result<EnrolmentRecord, StoreError> {
    let ed25519 = r
        .get::<Vec<u8>, _>(1)
        .try_into()
        .map_err(|_| StoreError::Malformed("enrolled ed25519 key"))?;
    let x25519 = r
        .get::<Option<Vec<u8>>, _>(2)
        .map(|x| x.try_into())
        .transpose()
        .map_err(|_| StoreError::Malformed("enrolled x25519 key"))?;
    Ok(EnrolmentRecord {
        party_id: r.get(0),
        ed25519,
        x25519,
        enrolled_at: u(r.get(3)),
        enrolled_by: r.get(4),
        revoked_at: r.get::<Option<i64>, _>(5).map(u),
    })
}

impl Store {
    /// Enrols a party (or replaces its enrolment, in force again).
    pub async fn enrol_party(
        &self,
        party_id: &str,
        ed25519: [u8; 32],
        x25519: Option<[u8; 32]>,
        by: &str,
    ) -> Result<EnrolmentRecord, StoreError> {
        sqlx::query(
            "INSERT INTO party_enrolments (party_id, ed25519, x25519, enrolled_at, enrolled_by, revoked_at)
             VALUES ($1, $2, $3, $4, $5, NULL)
             ON CONFLICT (party_id) DO UPDATE SET ed25519 = excluded.ed25519,
               x25519 = excluded.x25519, enrolled_at = excluded.enrolled_at,
               enrolled_by = excluded.enrolled_by, revoked_at = NULL",
        )
        .bind(party_id)
        .bind(ed25519.to_vec())
        .bind(x25519.map(|x| x.to_vec()))
        .bind(i(now()))
        .bind(by)
        .execute(&self.pool)
        .await?;
        self.enrolment(party_id)
            .await?
            .ok_or(StoreError::Malformed("enrolment just written"))
    }

    /// A party's enrolment (in force or revoked).
    pub async fn enrolment(&self, party_id: &str) -> Result<Option<EnrolmentRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM party_enrolments WHERE party_id = $1"
        ))
        .bind(party_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record).transpose()
    }

    /// Every enrolment, by party id.
    pub async fn enrolments(&self) -> Result<Vec<EnrolmentRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM party_enrolments ORDER BY party_id"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(record)
        .collect()
    }

    /// Revokes a party's enrolment; `None` when it has none. Revoking again
    /// keeps the first revocation time.
    pub async fn revoke_enrolment(
        &self,
        party_id: &str,
    ) -> Result<Option<EnrolmentRecord>, StoreError> {
        sqlx::query(
            "UPDATE party_enrolments SET revoked_at = $1 WHERE party_id = $2 AND revoked_at IS NULL",
        )
        .bind(i(now()))
        .bind(party_id)
        .execute(&self.pool)
        .await?;
        self.enrolment(party_id).await
    }

    /// Records a signed request's nonce, kept until `expires_at` (when the
    /// request could no longer be fresh); `false` when the party already
    /// used it. Forgets expired nonces on the way.
    pub async fn use_request_nonce(
        &self,
        party_id: &str,
        nonce: &[u8; 16],
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let now = now();
        sqlx::query("DELETE FROM party_request_nonces WHERE expires_at < $1")
            .bind(i(now))
            .execute(&self.pool)
            .await?;
        let r = sqlx::query(
            "INSERT INTO party_request_nonces (party_id, nonce, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(party_id)
        .bind(nonce.to_vec())
        .bind(i(expires_at))
        .execute(&self.pool)
        .await;
        match r {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
