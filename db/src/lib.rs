//! # mpc-db
//!
//! The database plumbing the coordinator and the server parties share. One
//! sqlx `Any` pool over either backend, chosen by the URL scheme:
//!
//! - `sqlite://path` (or `sqlite::memory:`): the embedded default of `mpc dev`;
//!   the file is created if missing, WAL journal, foreign keys on.
//! - `postgres://...` / `postgresql://...`: the system of record past one
//!   machine.
//!
//! Queries are written once, in the SQL both understand (`$1` placeholders,
//! `ON CONFLICT`, integers and text and bytes only); each backend has its own
//! migration directory with the same schema meaning.
//!
//! [`Db::open_lazy`] returns at once and migrates in the background, retrying
//! with backoff until the database answers, so a service can start before its
//! database and report not-ready meanwhile ([`Db::is_ready`]).
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};

pub use sqlx;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (embedded).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The backend of a database URL, by scheme.
    pub fn of_url(url: &str) -> Result<Self, DbError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(DbError::UnsupportedUrl),
        }
    }
}

/// The migrations of one schema, one directory per backend.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    /// For SQLite.
    pub sqlite: &'static Migrator,
    /// For PostgreSQL.
    pub postgres: &'static Migrator,
}

/// Errors opening a database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL names no supported backend.
    #[error("database URL must start with sqlite:// or postgres://")]
    UnsupportedUrl,
    /// The database did not become ready in time.
    #[error("database not ready after {0:?}")]
    NotReady(Duration),
    /// sqlx.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// Migrations.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A pool, its backend and whether its migrations have run.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    ready: Readiness,
}

/// Longest pause between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Db {
    /// A pool that connects on first use, and a background task that runs the
    /// migrations, retrying with backoff until they succeed. Never waits for
    /// the database.
    pub fn open_lazy(url: &str, migrations: Migrations) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let url = match backend {
            // Create the file if it is missing.
            Backend::Sqlite if !url.contains("mode=") && !url.contains(":memory:") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let mut opts = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor as _;
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA busy_timeout = 10000",
                        "PRAGMA foreign_keys = ON",
                    ] {
                        conn.execute(pragma).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool = opts.connect_lazy(&url)?;
        let db = Db {
            pool,
            backend,
            ready: Readiness::default(),
        };
        let migrator = match backend {
            Backend::Sqlite => migrations.sqlite,
            Backend::Postgres => migrations.postgres,
        };
        let task = db.clone();
        tokio::spawn(async move { task.migrate_with_backoff(migrator).await });
        Ok(db)
    }

    /// [`Db::open_lazy`], then waits up to `wait` for the migrations.
    pub async fn open(url: &str, migrations: Migrations, wait: Duration) -> Result<Self, DbError> {
        let db = Self::open_lazy(url, migrations)?;
        db.wait_ready(wait).await?;
        Ok(db)
    }

    async fn migrate_with_backoff(&self, migrator: &'static Migrator) {
        let mut pause = Duration::from_millis(100);
        loop {
            match migrator.run(&self.pool).await {
                Ok(()) => {
                    self.ready.set();
                    tracing::info!(backend = ?self.backend, "database ready");
                    return;
                }
                Err(e) => {
                    // The error names host and database, never the password
                    // (sqlx does not print the URL).
                    tracing::warn!(backend = ?self.backend, error = %e, retry_in = ?pause, "database not ready");
                }
            }
            if self.pool.is_closed() {
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_BACKOFF);
        }
    }

    /// Waits until the migrations have run, up to `wait`.
    pub async fn wait_ready(&self, wait: Duration) -> Result<(), DbError> {
        if self.ready.wait(wait).await {
            Ok(())
        } else {
            Err(DbError::NotReady(wait))
        }
    }

    /// Whether the migrations have run (the schema is usable).
    pub fn is_ready(&self) -> bool {
        self.ready.is_set()
    }

    /// Whether the database answers now (for `/ready`).
    pub async fn ping(&self) -> bool {
        self.is_ready()
            && tokio::time::timeout(
                Duration::from_secs(2),
                sqlx::query("SELECT 1").fetch_one(&self.pool),
            )
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool (stops the migration task too).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A database URL with its password replaced by `***`, for logs and `Debug`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// A nullable JSON text column, parsed (`None` when NULL or not JSON).
pub fn json_column(r: &AnyRow, idx: usize) -> Option<serde_json::Value> {
    r.try_get::<Option<String>, _>(idx)
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok())
}

/// Unsigned from a stored `BIGINT` (negative or NULL reads as 0).
pub fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A stored `BIGINT` from an unsigned value (saturating).
pub fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub mod schema;
pub mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_backend() {
        assert_eq!(
            Backend::of_url("sqlite:///tmp/x.db").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::of_url("postgres://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::of_url("postgresql://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert!(Backend::of_url("mysql://u@h/db").is_err());
    }

    #[test]
    fn redaction_hides_only_the_password() {
        assert_eq!(
            redact_url("postgres://mpc:s3cret@db:5432/mpc"),
            "postgres://mpc:***@db:5432/mpc"
        );
        assert_eq!(redact_url("postgres://mpc@db/mpc"), "postgres://mpc@db/mpc");
        assert_eq!(redact_url("sqlite:///data/c.db"), "sqlite:///data/c.db");
    }
}

/// A flag that is set once and can be waited for (start-up readiness).
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<tokio::sync::watch::Sender<bool>>);

impl Readiness {
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.0.send_replace(true);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits up to `wait` for the flag; returns whether it is set.
    pub async fn wait(&self, wait: Duration) -> bool {
        let mut rx = self.0.subscribe();
        tokio::time::timeout(wait, rx.wait_for(|set| *set))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}
