//! The party store's migrations (issue #15, "Pinned formats"): rows written
//! at each schema version, as that version wrote them, survive every later
//! migration and are read by today's store; and the SQLite and PostgreSQL
//! schemas mean the same. The sealed rows are the committed fixtures of
//! party-core (`test-data/fixtures/sealed-v1.json`: sealed for `party-1`
//! under the test master key `[0x42; 32]`), so this also checks that
//! today's store opens records sealed by an earlier build.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use mpc_db::schema::{differences, read_schema};
use mpc_db::sqlx::{self, AnyPool};
use mpc_db::testing::{migrate_first, migration_count, postgres_or_skip};
use mpc_db::{Backend, Db};
use party_core::seal::MasterKey;
use serde_json::Value;
use server_party::store::MIGRATIONS;
use server_party::PartyStore;

const WAIT: Duration = Duration::from_secs(30);

fn fixtures() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../party-core/test-data/fixtures/sealed-v1.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn sealed(record: &Value) -> Vec<u8> {
    hex::decode(record["sealed"].as_str().unwrap()).unwrap()
}

fn text<'a>(record: &'a Value, field: &str) -> &'a str {
    record[field].as_str().unwrap()
}

fn sqlite_url(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("party-migrate-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    format!("sqlite://{}", dir.join("party.db").display())
}

const ADMITTED: &str = "6b0f3c4e-2f7a-4d0e-9d53-0c8a4a1d2e10";

/// The rows the schema version `version` introduced, as that version wrote
/// them (raw SQL, the columns of that version only).
async fn write_rows_of(version: usize, pool: &AnyPool, f: &Value) {
    let account = text(&f["key_shares"][0], "account_id");
    let hex_field = |name: &str| hex::decode(f[name].as_str().unwrap()).unwrap();
    let queries = match version {
        1 => vec![
            sqlx::query("INSERT INTO identity (id, sealed) VALUES (1, $1)")
                .bind(sealed(&f["identity"])),
            sqlx::query(
                "INSERT INTO key_shares (account_id, public_key, sealed, created_at)
                 VALUES ($1, $2, $3, 1700000000)",
            )
            .bind(account)
            .bind(hex_field("public_key"))
            .bind(sealed(&f["key_shares"][0])),
            sqlx::query(
                "INSERT INTO aux_infos (group_id, sealed, created_at) VALUES ($1, $2, 1700000000)",
            )
            .bind(text(&f["aux_info"], "account_id"))
            .bind(sealed(&f["aux_info"])),
            sqlx::query("INSERT INTO primes (sealed, created_at) VALUES ($1, 1700000000)")
                .bind(sealed(&f["primes"])),
        ],
        2 => vec![sqlx::query(
            "INSERT INTO presignatures (presignature_id, account_id, sealed, created_at)
             VALUES ($1, $2, $3, 1700000001)",
        )
        .bind(f["presignature_id"].as_str().unwrap())
        .bind(account)
        .bind(sealed(&f["presignatures"][0]))],
        3 => vec![
            sqlx::query(
                "INSERT INTO policies (account_id, policy_hash, sealed, updated_at)
                 VALUES ($1, $2, $3, 1700000002)",
            )
            .bind(account)
            .bind(hex_field("policy_hash"))
            .bind(sealed(&f["policy"])),
            sqlx::query(
                "INSERT INTO admitted_sessions (session_id, kind, admitted_at)
                 VALUES ($1, 'sign', 1700000002)",
            )
            .bind(ADMITTED),
        ],
        _ => vec![],
    };
    for q in queries {
        q.execute(pool)
            .await
            .unwrap_or_else(|e| panic!("rows of v{version}: {e}"));
    }
}

async fn rows_survive_every_migration(url: String) {
    let f = fixtures();
    let count = migration_count(&url, MIGRATIONS);
    assert!(count >= 3);
    for version in 1..=count {
        let pool = migrate_first(&url, MIGRATIONS, version).await.unwrap();
        write_rows_of(version, &pool, &f).await;
        pool.close().await;
    }
    // Today's store over the migrated database.
    let key = MasterKey::from_bytes(&[0x42; 32]).unwrap();
    let store = PartyStore::open(&url, key, "party-1", WAIT).await.unwrap();
    let identity = store.load_or_create_identity().await.unwrap();
    assert_eq!(
        serde_json::to_value(identity.public()).unwrap(),
        f["identity_public"],
        "the identity written at v1 is the one loaded"
    );
    let account = text(&f["key_shares"][0], "account_id");
    let share = store
        .key_share(account)
        .await
        .unwrap()
        .expect("the v1 share");
    assert_eq!(
        hex::encode(party_core::signature::public_key_of(&share)),
        f["public_key"].as_str().unwrap()
    );
    assert_eq!(store.share_count().await.unwrap(), 1);
    assert!(store
        .aux_info(text(&f["aux_info"], "account_id"))
        .await
        .unwrap()
        .is_some());
    assert!(
        store.take_primes().await.unwrap().is_some(),
        "the v1 prime set"
    );
    let presig = store
        .take_presignature(f["presignature_id"].as_str().unwrap(), account)
        .await
        .unwrap()
        .expect("the v2 presignature");
    assert_eq!(
        presig.public_key.to_vec(),
        hex::decode(f["public_key"].as_str().unwrap()).unwrap()
    );
    let policy = store.policy(account).await.unwrap().expect("the v3 policy");
    assert_eq!(
        hex::encode(policy.hash()),
        f["policy_hash"].as_str().unwrap()
    );
    assert!(store
        .was_admitted(&ADMITTED.parse().unwrap())
        .await
        .unwrap());
}

#[tokio::test]
async fn rows_of_every_version_survive_migration_sqlite() {
    rows_survive_every_migration(sqlite_url("rows")).await;
}

#[tokio::test]
async fn rows_of_every_version_survive_migration_postgres() {
    if let Some(url) = postgres_or_skip().await {
        rows_survive_every_migration(url).await;
    }
}

/// Both migration sets, fully applied, make the same tables, columns
/// (type class, nullability, defaults), keys, unique constraints, indexes.
#[tokio::test]
async fn sqlite_and_postgres_schemas_mean_the_same() {
    let Some(pg_url) = postgres_or_skip().await else {
        return;
    };
    let sqlite = Db::open(&sqlite_url("schema"), MIGRATIONS, WAIT)
        .await
        .unwrap();
    let pg = Db::open(&pg_url, MIGRATIONS, WAIT).await.unwrap();
    let a = read_schema(sqlite.pool(), Backend::Sqlite).await.unwrap();
    let b = read_schema(pg.pool(), Backend::Postgres).await.unwrap();
    // What is compared was really read, on both.
    for s in [&a, &b] {
        assert_eq!(
            s["approved_requests"].primary_key,
            ["account_id", "request_id"]
        );
        assert!(s["approved_requests"]
            .indexes
            .iter()
            .any(|(name, _)| name == "approved_requests_rate"));
        assert!(s["primes"].columns["id"].auto);
        assert_eq!(s["key_shares"].columns["sealed"].class, "bytes");
        assert!(s["policies"].columns["admissions"].has_default);
    }
    let diff = differences(&a, &b);
    assert!(
        diff.is_empty(),
        "SQLite vs PostgreSQL:\n{}",
        diff.join("\n")
    );
}
