//! The party's own database of sealed records; the authorization records
//! (policies, admissions) are in [`authz`], the never-replaced aux info in
//! [`aux`].

mod authz;
mod aux;

pub use authz::AdmissionError;

use mpc_db::sqlx::{self, AnyPool, Row};
use mpc_db::{Db, DbError, Migrations};
use party_core::authz::Policy;
use party_core::identity::PartyIdentity;
use party_core::primes::PrimeSet;
use party_core::seal::{MasterKey, Provenance, RecordContext, RecordError, RecordKind};
use party_core::session::StoredPresignature;
use party_core::{AuxInfo, KeyShare};

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Database error.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Open(#[from] DbError),
    /// A record failed to open or validate.
    #[error("sealed record: {0}")]
    Record(#[from] RecordError),
    /// A stored policy does not validate or does not match its recorded hash.
    #[error("the stored policy is invalid or does not match its hash")]
    PolicyCorrupt,
    /// The stored policy is no longer the one a change was approved under.
    #[error("the account's stored policy is not the one the change was approved under")]
    PolicyConflict,
    /// The party group already has other aux info; it is never replaced.
    #[error(
        "{}: this party group already holds other aux info; nothing was stored",
        AUX_INFO_CONFLICT
    )]
    AuxInfoConflict,
}

/// The stable code of [`StoreError::AuxInfoConflict`] (first word of the
/// failure reason the party reports).
pub const AUX_INFO_CONFLICT: &str = "aux_info_conflict";

/// Sealed storage of one party.
#[derive(Clone)]
pub struct PartyStore {
    db: Db,
    pool: AnyPool,
    key: MasterKey,
    party_id: String,
    /// Whether records made from PUBLIC test data open: only in builds with
    /// the `insecure-test-data` feature (see [`PartyStore::accepts_test_data`]).
    /// Shared by the store's clones.
    accept_test_data: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Whether this build accepts records made from PUBLIC test data: builds
/// with the `insecure-test-data` feature (the test suite's, `mpc`'s
/// `insecure-test-data`) do; every release build does not.
pub const BUILD_ACCEPTS_TEST_DATA: bool = cfg!(feature = "insecure-test-data");

impl std::fmt::Debug for PartyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyStore")
            .field("party_id", &self.party_id)
            .finish_non_exhaustive()
    }
}

/// The party store's schema, per backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
    postgres: &sqlx::migrate!("./migrations/postgres"),
};

const PRIME_POOL: &str = "prime-pool";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl PartyStore {
    /// Opens the database (`sqlite://` creates the file, `postgres://` must
    /// exist) and migrates it, waiting up to `wait` for the server to answer.
    pub async fn open(
        url: &str,
        key: MasterKey,
        party_id: &str,
        wait: std::time::Duration,
    ) -> Result<Self, StoreError> {
        let db = Db::open(url, MIGRATIONS, wait).await?;
        Ok(Self {
            pool: db.pool().clone(),
            db,
            key,
            party_id: party_id.to_string(),
            accept_test_data: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(
                BUILD_ACCEPTS_TEST_DATA,
            )),
        })
    }

    /// Whether this store opens (and this party uses) records and inputs
    /// made from PUBLIC test data. False in every build without the
    /// `insecure-test-data` feature: such a record is refused with
    /// [`party_core::seal::SealError::TestData`].
    pub fn accepts_test_data(&self) -> bool {
        self.accept_test_data
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// TEST BUILDS ONLY: set whether test-data records open (for this store
    /// and its clones, the running party's included), e.g. `false` to see
    /// what a production build does with them. Release builds have no such
    /// switch: there it is always false.
    #[cfg(feature = "insecure-test-data")]
    pub fn set_accept_test_data(&self, accept: bool) {
        self.accept_test_data
            .store(accept, std::sync::atomic::Ordering::Relaxed);
    }

    /// The pool (tests inspect stored bytes through it).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the database answers (for readiness).
    pub async fn ping(&self) -> bool {
        self.db.ping().await
    }

    fn ctx<'a>(&'a self, account_id: &'a str, kind: RecordKind) -> RecordContext<'a> {
        RecordContext {
            party_id: &self.party_id,
            account_id,
            kind,
        }
    }

    /// Loads the party's identity, creating and sealing one on first start.
    pub async fn load_or_create_identity(&self) -> Result<PartyIdentity, StoreError> {
        let ctx = self.ctx("", RecordKind::Identity);
        if let Some(row) = sqlx::query("SELECT sealed FROM identity WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?
        {
            let seed = self
                .key
                .open(ctx, &row.get::<Vec<u8>, _>(0))
                .map_err(RecordError::from)?;
            return PartyIdentity::from_secret_bytes(&seed).map_err(|_| {
                StoreError::Record(RecordError::Seal(party_core::seal::SealError::Malformed))
            });
        }
        let identity = PartyIdentity::generate(&mut rand_core::OsRng);
        let sealed = self
            .key
            .seal(ctx, identity.secret_bytes().as_ref())
            .map_err(RecordError::from)?;
        sqlx::query("INSERT INTO identity (id, sealed) VALUES (1, $1)")
            .bind(sealed)
            .execute(&self.pool)
            .await?;
        Ok(identity)
    }

    /// The key share of an account, opened and validated.
    pub async fn key_share(&self, account_id: &str) -> Result<Option<KeyShare>, StoreError> {
        Ok(self.key_share_marked(account_id).await?.map(|(s, _)| s))
    }

    /// [`Self::key_share`] and whether it was made from test data.
    pub async fn key_share_marked(
        &self,
        account_id: &str,
    ) -> Result<Option<(KeyShare, Provenance)>, StoreError> {
        self.open_row(
            "SELECT sealed FROM key_shares WHERE account_id = $1",
            account_id,
            RecordKind::KeyShare,
        )
        .await
    }

    /// Fetches the sealed column selected by `sql` for `id` and opens it as
    /// a `kind` record of that id (a test-data record only where accepted).
    async fn open_row<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        id: &str,
        kind: RecordKind,
    ) -> Result<Option<(T, Provenance)>, StoreError> {
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(self.key.open_value_checked(
                self.ctx(id, kind),
                &r.get::<Vec<u8>, _>(0),
                self.accepts_test_data(),
            )?)),
        }
    }

    /// Stores a finished keygen in one transaction: the share, the account's
    /// policy when the keygen descriptor has one, and the aux info when it
    /// was generated in that session. Nothing is written before the keygen
    /// finished, so no half-made share exists. New aux info is kept as a
    /// version of the group's aux info (`store::aux`), replacing nothing.
    /// `provenance`: whether the share (and the new aux info) were made
    /// from test data; the records are marked so.
    pub async fn put_keygen_result(
        &self,
        account_id: &str,
        public_key: &[u8; 33],
        share: &KeyShare,
        policy: Option<&Policy>,
        new_aux: Option<(&str, &AuxInfo)>,
        provenance: Provenance,
    ) -> Result<(), StoreError> {
        let sealed_policy = match policy {
            Some(p) => {
                p.validate().map_err(|_| StoreError::PolicyCorrupt)?;
                Some(self.seal_policy(account_id, p)?)
            }
            None => None,
        };
        let sealed_share = self.key.seal_value_as(
            self.ctx(account_id, RecordKind::KeyShare),
            provenance,
            share,
        )?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO key_shares (account_id, public_key, sealed, created_at) VALUES ($1, $2, $3, $4)")
            .bind(account_id)
            .bind(public_key.to_vec())
            .bind(sealed_share)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        if let Some((sealed, hash)) = sealed_policy {
            sqlx::query(
                "INSERT INTO policies (account_id, policy_hash, sealed, updated_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(account_id)
            .bind(hash.to_vec())
            .bind(sealed)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        }
        if let Some((group, aux)) = new_aux {
            // Kept beside any other aux info of the group (never replaced),
            // named by its fingerprint in the group's later keygens.
            self.insert_aux_version(&mut tx, group, account_id, aux, provenance)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Takes one prime set out of the pool. The row is deleted before the
    /// set is returned, and only the caller whose DELETE removed it gets it, so
    /// a set is never used for two groups even by concurrent takers.
    pub async fn take_primes(&self) -> Result<Option<PrimeSet>, StoreError> {
        Ok(self.take_primes_marked().await?.map(|(p, _)| p))
    }

    /// [`Self::take_primes`] and whether the set is test data.
    pub async fn take_primes_marked(&self) -> Result<Option<(PrimeSet, Provenance)>, StoreError> {
        loop {
            let row = sqlx::query("SELECT id, sealed FROM primes ORDER BY id LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let id: i64 = row.get(0);
            let deleted = sqlx::query("DELETE FROM primes WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected();
            if deleted == 1 {
                let primes = self.key.open_primes_checked(
                    self.ctx(PRIME_POOL, RecordKind::Primes),
                    &row.get::<Vec<u8>, _>(1),
                    self.accepts_test_data(),
                )?;
                return Ok(Some(primes));
            }
            // Another taker won this row; try the next one.
        }
    }

    /// Adds a prime set to the pool.
    pub async fn put_primes(&self, primes: &PrimeSet) -> Result<(), StoreError> {
        self.put_primes_as(primes, Provenance::Production).await
    }

    /// Adds a prime set to the pool, marked with its provenance.
    pub async fn put_primes_as(
        &self,
        primes: &PrimeSet,
        provenance: Provenance,
    ) -> Result<(), StoreError> {
        let sealed = self.key.seal_primes_as(
            self.ctx(PRIME_POOL, RecordKind::Primes),
            provenance,
            primes,
        )?;
        sqlx::query("INSERT INTO primes (sealed, created_at) VALUES ($1, $2)")
            .bind(sealed)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a presignature under its id (the presign session id); the
    /// sealed record is bound to that id.
    pub async fn put_presignature(&self, p: &StoredPresignature) -> Result<(), StoreError> {
        self.put_presignature_as(p, Provenance::Production).await
    }

    /// Stores a presignature, marked with its provenance (that of the
    /// share it was made with).
    pub async fn put_presignature_as(
        &self,
        p: &StoredPresignature,
        provenance: Provenance,
    ) -> Result<(), StoreError> {
        let id = p.presignature_id.to_string();
        let sealed =
            self.key
                .seal_value_as(self.ctx(&id, RecordKind::Presignature), provenance, p)?;
        sqlx::query(
            "INSERT INTO presignatures (presignature_id, account_id, sealed, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(&p.account_id)
        .bind(sealed)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes a presignature out for its one use: the row is deleted first,
    /// and only the caller whose DELETE removed it gets it, so two sessions
    /// naming the same presignature, concurrent or after a restart, never
    /// both use it. `None`: unknown, or already used.
    pub async fn take_presignature(
        &self,
        presignature_id: &str,
        account_id: &str,
    ) -> Result<Option<StoredPresignature>, StoreError> {
        Ok(self
            .take_presignature_marked(presignature_id, account_id)
            .await?
            .map(|(p, _)| p))
    }

    /// [`Self::take_presignature`] and whether it was made from test data.
    pub async fn take_presignature_marked(
        &self,
        presignature_id: &str,
        account_id: &str,
    ) -> Result<Option<(StoredPresignature, Provenance)>, StoreError> {
        let row = sqlx::query(
            "SELECT sealed FROM presignatures WHERE presignature_id = $1 AND account_id = $2",
        )
        .bind(presignature_id)
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let deleted = sqlx::query("DELETE FROM presignatures WHERE presignature_id = $1")
            .bind(presignature_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if deleted != 1 {
            return Ok(None);
        }
        let p = self.key.open_value_checked(
            self.ctx(presignature_id, RecordKind::Presignature),
            &row.get::<Vec<u8>, _>(0),
            self.accepts_test_data(),
        )?;
        Ok(Some(p))
    }

    /// Number of presignatures held for an account.
    pub async fn presignature_count(&self, account_id: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT COUNT(*) FROM presignatures WHERE account_id = $1")
                .bind(account_id)
                .fetch_one(&self.pool)
                .await?
                .get(0),
        )
    }

    /// Number of prime sets in the pool.
    pub async fn prime_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM primes")
            .fetch_one(&self.pool)
            .await?
            .get(0))
    }

    /// Number of accounts this party holds a share of.
    pub async fn share_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM key_shares")
            .fetch_one(&self.pool)
            .await?
            .get(0))
    }
}
