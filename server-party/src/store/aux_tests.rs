//! Aux info is never replaced, on both backends: the same aux info again is
//! accepted, any other one (another run, or another party's of the same run)
//! is refused with the typed error and the stored one stays.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use mpc_db::sqlx::Row as _;
use party_core::aux_fingerprint::{aux_fingerprint, same_aux};
use party_core::seal::{MasterKey, Provenance};
use party_core::AuxInfo;
use uuid::Uuid;

use crate::store::{PartyStore, StoreError};

fn sqlite_url(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("party-aux-{name}-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    format!("sqlite://{}", dir.join("party.db").display())
}

/// PUBLIC test aux info of party `index` of the test group of `n`.
fn test_aux(n: u16, index: usize) -> AuxInfo {
    let path = format!(
        "{}/../party-core/test-data/aux-n{n}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    party_core::codec::decode(&hex::decode(v["aux"][index].as_str().unwrap()).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_aux_info_is_never_replaced_sqlite() {
    a_different_aux_info_is_refused_and_the_old_one_kept(sqlite_url("replace")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_aux_info_is_never_replaced_postgres() {
    if let Some(url) = mpc_db::testing::postgres_or_skip().await {
        a_different_aux_info_is_refused_and_the_old_one_kept(url).await;
    }
}

async fn a_different_aux_info_is_refused_and_the_old_one_kept(url: String) {
    let store = PartyStore::open(&url, MasterKey::generate(), "p1", Duration::from_secs(30))
        .await
        .unwrap();
    let group = "group-a";
    let first = test_aux(3, 0);
    store.put_aux_info(group, &first).await.unwrap();
    // The same aux info again (a retried write) is fine.
    store.put_aux_info(group, &first).await.unwrap();

    // Another run's aux info, and another party's aux info of the same run
    // (same fingerprint, other secret primes): both refused.
    for other in [test_aux(2, 0), test_aux(3, 1)] {
        match store.put_aux_info(group, &other).await {
            Err(e @ StoreError::AuxInfoConflict) => {
                assert!(e.to_string().starts_with("aux_info_conflict"), "{e}");
            }
            r => panic!("expected aux_info_conflict, got {r:?}"),
        }
        let kept = store.aux_info(group).await.unwrap().unwrap();
        assert!(same_aux(&kept, &first), "the stored aux info stays");
        assert_eq!(aux_fingerprint(&kept), aux_fingerprint(&first));
    }
    let rows: i64 = mpc_db::sqlx::query("SELECT COUNT(*) FROM aux_infos")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    // Another group is another row.
    store
        .put_aux_info("group-b", &test_aux(2, 0))
        .await
        .unwrap();
    assert!(same_aux(
        &store.aux_info("group-b").await.unwrap().unwrap(),
        &test_aux(2, 0)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aux_info_versions_are_kept_beside_and_bound_to_their_row_sqlite() {
    versions_are_kept_beside_and_bound_to_their_row(sqlite_url("versions")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aux_info_versions_are_kept_beside_and_bound_to_their_row_postgres() {
    if let Some(url) = mpc_db::testing::postgres_or_skip().await {
        versions_are_kept_beside_and_bound_to_their_row(url).await;
    }
}

/// An aux-info session's aux info is kept beside the group's first (which
/// stays), found by its fingerprint; a row moved to another fingerprint or
/// another group does not open.
async fn versions_are_kept_beside_and_bound_to_their_row(url: String) {
    let store = PartyStore::open(&url, MasterKey::generate(), "p1", Duration::from_secs(30))
        .await
        .unwrap();
    let (group, first, new) = ("group-a", test_aux(3, 0), test_aux(2, 0));
    let (fp_first, fp_new) = (aux_fingerprint(&first), aux_fingerprint(&new));
    store.put_aux_info(group, &first).await.unwrap();
    assert!(store
        .aux_info_named(group, &fp_new)
        .await
        .unwrap()
        .is_none());

    assert_eq!(
        store
            .put_aux_version(group, "s1", &new, Provenance::Production)
            .await
            .unwrap(),
        fp_new
    );
    // Again (a retried write): kept once.
    store
        .put_aux_version(group, "s1", &new, Provenance::Production)
        .await
        .unwrap();
    let named = store.aux_info_named(group, &fp_new).await.unwrap().unwrap();
    assert!(same_aux(&named, &new));
    let named = store
        .aux_info_named(group, &fp_first)
        .await
        .unwrap()
        .unwrap();
    assert!(same_aux(&named, &first), "the first is found by its own");
    assert!(
        same_aux(&store.aux_info(group).await.unwrap().unwrap(), &first),
        "the group's first aux info is not replaced"
    );

    // Moved to another fingerprint, or to another group: refused.
    let other = hex::encode([9u8; 32]);
    mpc_db::sqlx::query("UPDATE aux_info_versions SET fingerprint = $1")
        .bind(&other)
        .execute(store.pool())
        .await
        .unwrap();
    assert!(matches!(
        store.aux_info_named(group, &[9u8; 32]).await,
        Err(StoreError::Record(_))
    ));
    mpc_db::sqlx::query("UPDATE aux_info_versions SET fingerprint = $1, group_id = 'group-b'")
        .bind(hex::encode(fp_new))
        .execute(store.pool())
        .await
        .unwrap();
    assert!(matches!(
        store.aux_info_named("group-b", &fp_new).await,
        Err(StoreError::Record(_))
    ));
}
