//! Test databases: the suites run on SQLite by default and on PostgreSQL when
//! `MPC_TEST_DB=postgres` (URL of the server in `MPC_TEST_POSTGRES_URL`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`). Each call makes a
//! fresh, uniquely named database so tests never share state.

use std::path::Path;

use sqlx::any::AnyPoolOptions;
use sqlx::Executor as _;

use crate::Backend;

/// Default URL of the PostgreSQL server tests use.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The backend the test suite runs on (`MPC_TEST_DB`).
pub fn test_backend() -> Backend {
    match std::env::var("MPC_TEST_DB").as_deref() {
        Ok("postgres") | Ok("postgresql") => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

/// The PostgreSQL server URL tests use.
pub fn postgres_server_url() -> String {
    std::env::var("MPC_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// Whether tests that need a service must run (CI) rather than skip.
pub fn services_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Creates an empty PostgreSQL database with a unique name and returns its
/// URL. `Err` carries a reason to print when the server is unreachable.
pub async fn fresh_postgres_database() -> Result<String, String> {
    sqlx::any::install_default_drivers();
    let server = postgres_server_url();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(&server)
        .await
        .map_err(|e| format!("PostgreSQL at {server} unreachable: {e}"))?;
    let name = format!("mpc_test_{}", uuid::Uuid::new_v4().simple());
    pool.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .map_err(|e| format!("CREATE DATABASE failed: {e}"))?;
    pool.close().await;
    let base = server
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(server);
    Ok(format!("{base}/{name}"))
}

/// A fresh PostgreSQL database holding one schema per name; returns a URL per
/// schema (its `search_path` set to that schema), so several stores of one
/// test (a coordinator, its parties) share one database without sharing
/// tables. Fails the test in CI when the server is missing; else prints the
/// reason and returns `None`.
#[allow(clippy::panic)]
pub async fn postgres_schema_urls(names: &[&str]) -> Option<Vec<String>> {
    let url = postgres_or_skip().await?;
    let pool = match AnyPoolOptions::new().max_connections(1).connect(&url).await {
        Ok(p) => p,
        Err(e) => panic!("connect to the fresh test database: {e}"),
    };
    for name in names {
        if let Err(e) = pool.execute(format!("CREATE SCHEMA {name}").as_str()).await {
            panic!("CREATE SCHEMA {name}: {e}");
        }
    }
    pool.close().await;
    Some(
        names
            .iter()
            .map(|n| format!("{url}?options=-c%20search_path%3D{n}"))
            .collect(),
    )
}

/// A fresh database URL on the suite's backend: a new PostgreSQL database, or
/// `sqlite://<dir>/<file>`. Panics (tests only) when PostgreSQL is required
/// and missing; returns `None` (after printing why) when it may be skipped.
pub async fn fresh_database_url(dir: &Path, file: &str) -> Option<String> {
    match test_backend() {
        Backend::Sqlite => Some(format!("sqlite://{}", dir.join(file).display())),
        Backend::Postgres => postgres_or_skip().await,
    }
}

/// A fresh PostgreSQL database, whatever `MPC_TEST_DB` says: fails the test in
/// CI when the server is missing, else prints the reason and returns `None`.
#[allow(clippy::panic)]
pub async fn postgres_or_skip() -> Option<String> {
    match fresh_postgres_database().await {
        Ok(url) => Some(url),
        Err(reason) if services_required() => panic!("CI=true and {reason}"),
        Err(reason) => {
            eprintln!("skipped: {reason}");
            None
        }
    }
}

/// Connects to `url` (creating a SQLite file) and applies only the first
/// `count` migrations of the backend's set, as a build of that schema
/// version would have: a test then writes rows the way that version wrote
/// them, and opens the database with today's code (which applies the rest).
pub async fn migrate_first(
    url: &str,
    migrations: crate::Migrations,
    count: usize,
) -> Result<sqlx::AnyPool, crate::DbError> {
    sqlx::any::install_default_drivers();
    let backend = Backend::of_url(url)?;
    let migrator = match backend {
        Backend::Sqlite => migrations.sqlite,
        Backend::Postgres => migrations.postgres,
    };
    let url = match backend {
        Backend::Sqlite if !url.contains("mode=") => format!("{url}?mode=rwc"),
        _ => url.to_owned(),
    };
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await?;
    let first = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(
            migrator.migrations[..count.min(migrator.migrations.len())].to_vec(),
        ),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    first.run(&pool).await?;
    Ok(pool)
}

/// The number of migrations of the backend of `url`.
pub fn migration_count(url: &str, migrations: crate::Migrations) -> usize {
    match Backend::of_url(url) {
        Ok(Backend::Postgres) => migrations.postgres.migrations.len(),
        _ => migrations.sqlite.migrations.len(),
    }
}
