//! The coordinator's database and session state machine. No HTTP here: every
//! call answers a [`StoreError`], and the service layer decides what a caller
//! sees.
//!
//! Every status change is an `UPDATE ... WHERE status IN (open states)`, so a
//! terminal state is written once whatever the order or repetition of party
//! reports; the account of a keygen is inserted in the same transaction as the
//! session's completion. `session_events` is append-only (triggers refuse
//! updates and deletes).
//!
//! - [`keys`] — API keys (hashes, tenants, scopes, revocation) and the
//!   per-key request windows of the rate limit.
//! - [`parties`] — registered parties and aux-info party groups.
//! - [`enrolments`] — the identity key an operator enrolled per server
//!   party, and the nonces of signed party requests.
//! - [`accounts`] — accounts (distributed keys).
//! - [`aux`] — aux-info agreement: the exclusive claim on a group's aux
//!   generation, agreed fingerprints, inconsistent groups.
//! - [`sessions`] — sessions, participants, joins, progress, party results.
//! - [`outcomes`] — the terminal states, each written once.
//! - [`blame`] — failure reports kept as evidence; who is named and when.
//! - [`presignatures`] — the presignature pool.
//! - [`devices`] — device slots, pending descriptors, token binding.
//! - [`events`] — the append-only event log.
//! - [`idempotency`] — idempotency keys; the gauges of `/metrics`.
//!
//! Kinds, statuses and device types are typed ([`SessionKind`],
//! [`SessionStatus`], [`DeviceType`]) and parsed where a row is read; the
//! columns hold their stable names.

pub mod accounts;
pub mod aux;
pub mod blame;
pub mod devices;
pub mod enrolments;
pub mod events;
pub mod idempotency;
pub mod keys;
pub mod outcomes;
pub mod parties;
pub mod presignatures;
pub mod sessions;

use std::time::{SystemTime, UNIX_EPOCH};

use mpc_db::sqlx::{self, AnyPool};
use mpc_db::{Db, Migrations};
use uuid::Uuid;

pub use accounts::{Account, AccountParty};
pub use aux::{AuxClaim, AuxGroupRow, AuxGroupState, AuxRecord};
pub use devices::{DeviceSlot, DeviceSlotRow};
pub use enrolments::EnrolmentRecord;
pub use keys::{hash_api_key, ApiKeyRecord};
pub use mpc_api::rest::{DeviceType, SessionKind, SessionStatus};
pub use parties::PartyRecord;
pub use sessions::{NewSession, ParticipantRow, PartyResult, SessionQuota, SessionRow};

/// Store failures: the database, or a domain conflict the caller maps to its
/// own answer. Messages carry no secrets (API keys are never passed in).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("database: {0}")]
    Open(#[from] mpc_db::DbError),
    /// A query failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A party id registered again with another identity key.
    #[error("party id already registered with another key")]
    PartyIdTaken,
    /// An identity key registered again under another party id.
    #[error("identity key already registered")]
    IdentityTaken,
    /// A device slot already bound to another identity.
    #[error("the slot is bound to another identity")]
    SlotBound,
    /// A device party id already bound to another identity key.
    #[error("the party is bound to another identity key")]
    PartyBound,
    /// A device identity key already registered under another party id.
    #[error("the identity key belongs to another party")]
    KeyInUse,
    /// The creating API key has as many open sessions as its quota allows.
    #[error("too many open sessions for this API key")]
    TooManySessions,
    /// The approval request id was already spent for the account.
    #[error("request id already used for this account")]
    RequestIdReused,
    /// A stored value that does not parse (written by something else).
    #[error("malformed {0} in the database")]
    Malformed(&'static str),
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn u16_(v: i64) -> u16 {
    u16::try_from(v).unwrap_or(0)
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// The open statuses, for `status IN ...`.
const OPEN: &str = "('waiting','in_progress')";

/// The coordinator's schema, per backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
    postgres: &sqlx::migrate!("./migrations/postgres"),
};

/// The database (SQLite or PostgreSQL, by URL).
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    pool: AnyPool,
    /// Sessions this instance moved to a terminal state (long-poll wakeups).
    ended: tokio::sync::broadcast::Sender<Uuid>,
}

impl Store {
    /// A store whose pool connects on first use; migrations run in the
    /// background with backoff ([`Store::db`] says when they are done).
    pub fn open_lazy(url: &str) -> Result<Self, StoreError> {
        let db = Db::open_lazy(url, MIGRATIONS)?;
        Ok(Self {
            pool: db.pool().clone(),
            db,
            ended: tokio::sync::broadcast::channel(1024).0,
        })
    }

    /// The pool (tests inspect the database through it).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Ids of the sessions this instance ends from now on, as they end.
    /// (Another instance's endings are seen by reading the database.)
    pub fn subscribe_ended(&self) -> tokio::sync::broadcast::Receiver<Uuid> {
        self.ended.subscribe()
    }

    /// The database handle (backend, readiness).
    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// Serialises transactions on one session: the first statement writes the
/// session's row, which PostgreSQL locks until commit (SQLite takes its
/// database write lock). Without it, two coordinator instances recording the
/// last two party reports at once would each read the other's report as
/// missing (read committed), and neither would complete the session.
async fn lock_session(tx: &mut Tx<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET updated_at = $1 WHERE session_id = $2")
        .bind(i(now()))
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
