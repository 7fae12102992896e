//! Aux info of a party group: stored once, never replaced.
//!
//! Two tables. `aux_infos` holds one aux info per group: the PUBLIC test
//! aux info a test build loads, and the aux info of groups made before
//! fingerprints. `aux_info_versions` holds every aux info this party made
//! (a generating keygen's, an aux-info session's), one row per (group,
//! fingerprint): a keygen uses the one its descriptor names, which the
//! coordinator names only once every party of the group reported it. A
//! generating keygen that failed leaves a row nothing names (harmless), so
//! the next generation is never refused by what a failed one kept.
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
use party_core::aux_fingerprint::{aux_fingerprint, same_aux};
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

    /// The group's aux info with fingerprint `fingerprint` (named by a
    /// keygen descriptor): the group's first aux info if it is that one,
    /// else the one an aux-info session made. The fingerprint is recomputed
    /// from the opened record.
    pub async fn aux_info_named(
        &self,
        group_id: &str,
        fingerprint: &[u8; 32],
    ) -> Result<Option<AuxInfo>, StoreError> {
        Ok(self
            .aux_info_named_marked(group_id, fingerprint)
            .await?
            .map(|(a, _)| a))
    }

    /// [`Self::aux_info_named`] and whether it was made from test data.
    pub async fn aux_info_named_marked(
        &self,
        group_id: &str,
        fingerprint: &[u8; 32],
    ) -> Result<Option<(AuxInfo, Provenance)>, StoreError> {
        if let Some((first, provenance)) = self.aux_info_marked(group_id).await? {
            if aux_fingerprint(&first) == *fingerprint {
                return Ok(Some((first, provenance)));
            }
            party_core::primes::wipe_aux_info(first);
        }
        let fp = hex::encode(fingerprint);
        let Some(row) = sqlx::query(
            "SELECT sealed FROM aux_info_versions WHERE group_id = $1 AND fingerprint = $2",
        )
        .bind(group_id)
        .bind(&fp)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let id = version_context(group_id, &fp);
        let (aux, provenance): (AuxInfo, _) = self.key.open_value_checked(
            self.ctx(&id, RecordKind::AuxInfo),
            &row.get::<Vec<u8>, _>(0),
            self.accepts_test_data(),
        )?;
        if aux_fingerprint(&aux) != *fingerprint {
            party_core::primes::wipe_aux_info(aux);
            return Err(StoreError::AuxInfoConflict);
        }
        Ok(Some((aux, provenance)))
    }

    /// Keeps the aux info an aux-info session (`session_id`) made for the
    /// group, beside the group's current aux info; replaces nothing (the
    /// same aux info twice is kept once).
    pub async fn put_aux_version(
        &self,
        group_id: &str,
        session_id: &str,
        aux: &AuxInfo,
        provenance: Provenance,
    ) -> Result<[u8; 32], StoreError> {
        let mut conn = self.pool.acquire().await?;
        self.insert_aux_version(&mut conn, group_id, session_id, aux, provenance)
            .await
    }

    /// [`PartyStore::put_aux_version`] on one connection (or transaction).
    pub(super) async fn insert_aux_version(
        &self,
        conn: &mut sqlx::AnyConnection,
        group_id: &str,
        session_id: &str,
        aux: &AuxInfo,
        provenance: Provenance,
    ) -> Result<[u8; 32], StoreError> {
        let fingerprint = aux_fingerprint(aux);
        let fp = hex::encode(fingerprint);
        let id = version_context(group_id, &fp);
        let sealed = self
            .key
            .seal_value_as(self.ctx(&id, RecordKind::AuxInfo), provenance, aux)?;
        sqlx::query(
            "INSERT INTO aux_info_versions (group_id, fingerprint, session_id, sealed, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (group_id, fingerprint) DO NOTHING",
        )
        .bind(group_id)
        .bind(&fp)
        .bind(session_id)
        .bind(sealed)
        .bind(now())
        .execute(&mut *conn)
        .await?;
        Ok(fingerprint)
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

/// The sealed-record context of an aux-info version: the group and the
/// fingerprint, so a record opens only in its own row.
fn version_context(group_id: &str, fingerprint_hex: &str) -> String {
    format!("{group_id}/aux-version/{fingerprint_hex}")
}

#[cfg(test)]
#[path = "aux_tests.rs"]
mod tests;
