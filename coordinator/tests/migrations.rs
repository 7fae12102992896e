//! The coordinator's migrations (issue #15, "Pinned formats"): rows written
//! at each schema version, with that version's columns only, survive every
//! later migration and are read by today's coordinator (through its store
//! and its REST API with an API key made at the first version); and the
//! SQLite and PostgreSQL schemas mean the same.
//!
//! The JSON inside the rows (descriptor, parties, results) is in today's
//! formats: the schema, not those formats, is what the first version pins
//! here (the wire formats are pinned by party-core/tests/formats.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use coordinator::fake_router::FakeRouter;
use coordinator::store::{hash_api_key, MIGRATIONS};
use coordinator::{Coordinator, CoordinatorConfig};
use mpc_db::schema::{differences, read_schema};
use mpc_db::sqlx::{self, AnyPool};
use mpc_db::testing::{migrate_first, migration_count, postgres_or_skip};
use mpc_db::{Backend, Db};
use party_core::identity::{CoordinatorKey, PartyIdentity};
use serde_json::{json, Value};
use tower::ServiceExt as _;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);
const API_KEY: &str = "mpc_key_made_by_the_first_version";
const GROUP7_FINGERPRINT: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
const ACCOUNT: &str = "4f1c9a52-7f0e-4c1b-8f7e-1d2a3b4c5d6e";
const PRESIGN: &str = "0d1e2f30-4152-4637-8899-aabbccddeeff";
/// The 2-of-3 key of party-core's fixtures.
fn public_key() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../party-core/test-data/fixtures/sealed-v1.json"
    );
    let f: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    hex::decode(f["public_key"].as_str().unwrap()).unwrap()
}

fn identity(k: u8) -> PartyIdentity {
    PartyIdentity::from_seed(&[k; 32])
}

fn sqlite_url(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("coord-migrate-{name}-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    format!("sqlite://{}", dir.join("c.db").display())
}

fn account_parties() -> String {
    let parties: Vec<Value> = (1u8..=3)
        .map(|k| {
            json!({
                "party_id": format!("server-party-{k}"),
                "keygen_index": k - 1,
                "identity": identity(k).public(),
            })
        })
        .collect();
    serde_json::to_string(&parties).unwrap()
}

/// The rows the schema version `version` introduced, as that version wrote
/// them (raw SQL, that version's columns only).
async fn write_rows_of(version: usize, pool: &AnyPool) {
    let pk = public_key();
    let address = party_core::signature::ethereum_address(&pk).unwrap();
    let result = json!({"account_id": ACCOUNT, "public_key": hex::encode(&pk), "address": address})
        .to_string();
    let mut queries = Vec::new();
    match version {
        1 => {
            queries.push(
                sqlx::query(
                    "INSERT INTO api_keys (id, key_sha256, label, created_at)
                     VALUES ('key-1', $1, 'made at v1', 1700000000)",
                )
                .bind(hash_api_key(API_KEY).to_vec()),
            );
            for k in 1u8..=3 {
                let p = identity(k).public();
                queries.push(
                    sqlx::query(
                        "INSERT INTO parties (party_id, device_type, ed25519, x25519, registered_at)
                         VALUES ($1, 'server', $2, $3, 1700000000)",
                    )
                    .bind(format!("server-party-{k}"))
                    .bind(p.ed25519.to_vec())
                    .bind(p.x25519.to_vec()),
                );
            }
            queries.push(
                sqlx::query(
                    "INSERT INTO sessions (session_id, kind, status, threshold_t, threshold_n,
                     descriptor, group_id, generate_aux, result, created_at, updated_at, expires_at)
                     VALUES ($1, 'keygen', 'completed', 2, 3, '{}', 'group-1', 1, $2,
                     1700000000, 1700000005, 1700000120)",
                )
                .bind(ACCOUNT)
                .bind(result),
            );
            for k in 1u8..=3 {
                queries.push(
                    sqlx::query(
                        "INSERT INTO session_participants (session_id, position, party_id,
                         device_type, token_sha256, joined, result)
                         VALUES ($1, $2, $3, 'server', $4, 1, $5)",
                    )
                    .bind(ACCOUNT)
                    .bind(i64::from(k - 1))
                    .bind(format!("server-party-{k}"))
                    .bind(vec![k; 32])
                    .bind(json!({"public_key": hex::encode(&pk)}).to_string()),
                );
            }
            queries.push(
                sqlx::query(
                    "INSERT INTO session_events (session_id, at, kind, position, detail)
                     VALUES ($1, 1700000005, 'completed', NULL, '{}')",
                )
                .bind(ACCOUNT),
            );
            queries.push(
                sqlx::query(
                    "INSERT INTO accounts (account_id, public_key, address, threshold_t,
                     threshold_n, parties, keygen_session_id, created_at)
                     VALUES ($1, $2, $3, 2, 3, $4, $1, 1700000005)",
                )
                .bind(ACCOUNT)
                .bind(pk.clone())
                .bind(address)
                .bind(account_parties()),
            );
            queries.push(sqlx::query(
                "INSERT INTO aux_groups (group_id, session_id, created_at)
                 VALUES ('group-1', $1, 1700000005)",
            ).bind(ACCOUNT));
        }
        3 => queries.push(
            sqlx::query(
                "INSERT INTO presignatures (presignature_id, account_id, signers, status, created_at)
                 VALUES ($1, $2, 'server-party-1,server-party-2', 'available', 1700000010)",
            )
            .bind(PRESIGN)
            .bind(ACCOUNT),
        ),
        7 => {
            queries.push(sqlx::query(
                "INSERT INTO aux_groups (group_id, session_id, created_at, fingerprint)
                 VALUES ('group-7', $1, 1700000020, $2)",
            ).bind(ACCOUNT).bind(GROUP7_FINGERPRINT));
            queries.push(sqlx::query(
                "INSERT INTO aux_inconsistent (group_id, session_id, detected_at)
                 VALUES ('group-bad', $1, 1700000021)",
            ).bind(ACCOUNT));
            queries.push(sqlx::query(
                "INSERT INTO aux_claims (group_id, session_id, expires_at, created_at)
                 VALUES ('group-new', $1, 4000000000, 1700000022)",
            ).bind(ACCOUNT));
        }
        8 => queries.push(
            sqlx::query("UPDATE sessions SET accusations = $1 WHERE session_id = $2")
                .bind(
                    json!([{"reporter": "server-party-1", "accused": "server-party-2", "reason": "bad proof"}])
                        .to_string(),
                )
                .bind(ACCOUNT),
        ),
        _ => {}
    }
    for q in queries {
        q.execute(pool)
            .await
            .unwrap_or_else(|e| panic!("rows of v{version}: {e}"));
    }
}

async fn rows_survive_every_migration(url: String) {
    let count = migration_count(&url, MIGRATIONS);
    assert!(count >= 6);
    for version in 1..=count {
        let pool = migrate_first(&url, MIGRATIONS, version).await.unwrap();
        write_rows_of(version, &pool).await;
        pool.close().await;
    }
    // Today's coordinator over the migrated database.
    let config = CoordinatorConfig::new(
        url,
        CoordinatorKey::from_secret_bytes(&[0x33; 32]).unwrap(),
        "http://127.0.0.1:1",
    );
    let c = Coordinator::with_router(config, Arc::new(FakeRouter::new())).unwrap();
    c.wait_ready(WAIT).await.unwrap();
    let store = c.store();
    let key = store
        .api_key_by_hash(&hash_api_key(API_KEY))
        .await
        .unwrap()
        .expect("the v1 key");
    assert_eq!(
        key.tenant_id, "default",
        "keys from before tenants: default tenant"
    );
    assert_eq!(key.scopes.len(), 4, "keys from before scopes: every scope");
    let account = store
        .account(ACCOUNT)
        .await
        .unwrap()
        .expect("the v1 account");
    assert_eq!(account.public_key, hex::encode(public_key()));
    assert_eq!(account.parties.len(), 3, "the parties JSON still reads");
    assert!(account.policy.is_none());
    let session = store
        .session(ACCOUNT.parse().unwrap())
        .await
        .unwrap()
        .expect("the v1 session");
    assert_eq!(session.tenant_id, "default");
    assert_eq!(
        session.result.and_then(|r| r.public_key),
        Some(hex::encode(public_key()))
    );
    assert_eq!(
        store.participants(session.session_id).await.unwrap().len(),
        3
    );
    assert_eq!(store.events(session.session_id).await.unwrap().len(), 1);
    assert_eq!(store.presignatures_available(ACCOUNT).await.unwrap(), 1);
    // A group whose aux info was made before fingerprints were reported
    // (v1 row, before 0007): ready, fingerprint unknown, so its next keygen
    // reuses it and records the parties' fingerprint.
    assert_eq!(
        store.aux_group_state("group-1").await.unwrap(),
        coordinator::store::AuxGroupState::Ready { fingerprint: None }
    );
    // Rows of 0007 (aux agreement) and 0008 (accusations).
    assert_eq!(
        store.aux_group_state("group-7").await.unwrap(),
        coordinator::store::AuxGroupState::Ready {
            fingerprint: Some(GROUP7_FINGERPRINT.to_string())
        }
    );
    assert_eq!(
        store.aux_group_state("group-bad").await.unwrap(),
        coordinator::store::AuxGroupState::Inconsistent
    );
    let listed = store.aux_groups(false).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|g| g.group_id == "group-new" && g.state == "generating"),
        "{listed:?}"
    );
    let accused = store
        .session(ACCOUNT.parse().unwrap())
        .await
        .unwrap()
        .unwrap()
        .accusations;
    assert_eq!(accused.len(), 1);
    assert_eq!(accused[0].accused.as_deref(), Some("server-party-2"));
    // Server parties registered before enrolment existed are enrolled with
    // the keys they registered (0009), so an upgrade keeps them working.
    for k in 1u8..=3 {
        let e = store
            .enrolment(&format!("server-party-{k}"))
            .await
            .unwrap()
            .expect("enrolled by 0009");
        assert!(e.active());
        assert_eq!(e.ed25519, identity(k).public().ed25519);
        assert_eq!(e.x25519, Some(identity(k).public().x25519));
        assert_eq!(e.enrolled_by, "migration");
    }
    // And through the REST API, with the key made at v1.
    let req = Request::builder()
        .uri(format!("/api/v1/mpc/accounts/{ACCOUNT}"))
        .header("x-api-key", API_KEY)
        .body(Body::empty())
        .unwrap();
    let resp = c.app().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["public_key"], hex::encode(public_key()));
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
/// (type class, nullability, defaults), keys, unique constraints, indexes
/// and triggers.
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
        assert!(s["api_keys"]
            .unique
            .contains(&vec!["key_sha256".to_string()]));
        assert!(s["sessions"]
            .indexes
            .iter()
            .any(|(name, cols)| name == "sessions_open" && cols == &["status", "expires_at"]));
        assert_eq!(
            s["session_participants"].primary_key,
            ["session_id", "position"]
        );
        assert!(s["session_events"].columns["id"].auto);
        assert_eq!(s["session_events"].triggers.len(), 2);
        assert!(s["accounts"].columns["tenant_id"].has_default);
        assert!(!s["sessions"].columns["account_id"].not_null);
    }
    let diff = differences(&a, &b);
    assert!(
        diff.is_empty(),
        "SQLite vs PostgreSQL:\n{}",
        diff.join("\n")
    );
}
