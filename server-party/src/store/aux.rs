//! Aux info of a party group: stored once, never replaced.
//!
//! Every later wallet of a group is made with the aux info the party holds
//! for it, and a wallet whose parties hold aux info of different runs
//! completes its keygen but can never sign. So a party keeps the first aux
//! info it stored for a group: `INSERT ... ON CONFLICT DO NOTHING`, then,
//! if a row was already there, the new one must be the same aux info (same
//! public part, same secret primes) or the write is refused with
//! [`StoreError::AuxInfoConflict`] (in a keygen's transaction: nothing of
//! that keygen is kept, and the session fails with the code).

use mpc_db::sqlx::{self, Row as _};
use party_core::aux_fingerprint::same_aux;
use party_core::seal::{Provenance, RecordKind};
use party_core::AuxInfo;

use super::{now, PartyStore, StoreError};

impl PartyStore {
    /// Aux info of a party group, opened and validated.
    pub async fn aux_info(&self, group_id: &str) -> Result<Option<AuxInfo>, StoreError> {
        Ok(self.aux_info_marked(group_id).await?.map(|(a, _)| a))
    }

    /// [`Self::aux_info`] and whether it was made from test data.
    pub async fn aux_info_marked(
        &self,
        group_id: &str,
    ) -> Result<Option<(AuxInfo, Provenance)>, StoreError> {
        self.open_row(
            "SELECT sealed FROM aux_infos WHERE group_id = $1",
            group_id,
            RecordKind::AuxInfo,
        )
        .await
    }

    /// Stores aux info for a group. Kept if the same aux info is already
    /// there; refused ([`StoreError::AuxInfoConflict`]) if another one is.
    pub async fn put_aux_info(&self, group_id: &str, aux: &AuxInfo) -> Result<(), StoreError> {
        self.put_aux_info_as(group_id, aux, Provenance::Production)
            .await
    }

    /// [`Self::put_aux_info`], the record marked with its provenance (test
    /// aux info, or aux info made from test primes, is marked).
    pub async fn put_aux_info_as(
        &self,
        group_id: &str,
        aux: &AuxInfo,
        provenance: Provenance,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        self.insert_aux(&mut conn, group_id, aux, provenance).await
    }

    /// The never-replace rule on one connection (or transaction).
    pub(super) async fn insert_aux(
        &self,
        conn: &mut sqlx::AnyConnection,
        group_id: &str,
        aux: &AuxInfo,
        provenance: Provenance,
    ) -> Result<(), StoreError> {
        let ctx = self.ctx(group_id, RecordKind::AuxInfo);
        let sealed = self.key.seal_value_as(ctx, provenance, aux)?;
        let inserted = sqlx::query(
            "INSERT INTO aux_infos (group_id, sealed, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (group_id) DO NOTHING",
        )
        .bind(group_id)
        .bind(sealed)
        .bind(now())
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(());
        }
        let row = sqlx::query("SELECT sealed FROM aux_infos WHERE group_id = $1")
            .bind(group_id)
            .fetch_one(&mut *conn)
            .await?;
        let (stored, _): (AuxInfo, _) = self.key.open_value_checked(
            self.ctx(group_id, RecordKind::AuxInfo),
            &row.get::<Vec<u8>, _>(0),
            self.accepts_test_data(),
        )?;
        if same_aux(&stored, aux) {
            Ok(())
        } else {
            Err(StoreError::AuxInfoConflict)
        }
    }
}

#[cfg(test)]
#[path = "aux_tests.rs"]
mod tests;
