//! The append-only session event log (`session_events`; triggers refuse
//! updates and deletes).

use mpc_db::sqlx::{self, Row as _};
use uuid::Uuid;

use super::{i, now, Store, StoreError, Tx};

impl Store {
    /// A session's event log.
    pub async fn events(&self, id: Uuid) -> Result<Vec<serde_json::Value>, StoreError> {
        let rows = sqlx::query("SELECT at, kind, position, detail FROM session_events WHERE session_id = $1 ORDER BY id")
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "at": r.get::<i64, _>(0),
                    "kind": r.get::<String, _>(1),
                    "position": r.get::<Option<i64>, _>(2),
                    "detail": serde_json::from_str::<serde_json::Value>(&r.get::<String, _>(3)).unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Appends an event.
    pub async fn log_event(
        &self,
        id: Uuid,
        kind: &str,
        position: Option<u16>,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        event(&mut tx, id, kind, position, detail).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Appends an event inside the caller's transaction.
pub(super) async fn event(
    tx: &mut Tx<'_>,
    id: Uuid,
    kind: &str,
    position: Option<u16>,
    detail: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO session_events (session_id, at, kind, position, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(id.to_string())
        .bind(i(now()))
        .bind(kind)
        .bind(position.map(i64::from))
        .bind(detail.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
