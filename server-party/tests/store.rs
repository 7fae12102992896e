//! The party store: identity survives reopening, the prime pool hands each
//! set out once, nothing opens under another master key, records made from
//! PUBLIC test data are marked and open only where test data is accepted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use party_core::primes::PrimeSet;
use party_core::seal::{MasterKey, Provenance, RecordContext, RecordError, RecordKind, SealError};
use server_party::store::StoreError;
use server_party::PartyStore;
use sqlx::Row as _;
use std::time::Duration;

fn test_primes(i: usize) -> PrimeSet {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../party-core/test-data/primes.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir).unwrap()).unwrap();
    PrimeSet::from_bytes(&hex::decode(v["parties"][i].as_str().unwrap()).unwrap()).unwrap()
}

const WAIT: Duration = Duration::from_secs(30);

fn sqlite_url(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("party-store-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    format!("sqlite://{}", dir.join("party.db").display())
}

/// Runs `body` on a fresh SQLite database and a fresh PostgreSQL database
/// (PostgreSQL is skipped with a printed reason outside CI when it is down).
macro_rules! on_both_backends {
    ($sqlite:ident, $postgres:ident, $body:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $body(sqlite_url(stringify!($body))).await;
        }
        #[tokio::test]
        async fn $postgres() {
            if let Some(url) = mpc_db::testing::postgres_or_skip().await {
                $body(url).await;
            }
        }
    };
}

on_both_backends!(
    identity_sqlite,
    identity_postgres,
    identity_survives_reopen_and_needs_the_master_key
);
on_both_backends!(
    pool_sqlite,
    pool_postgres,
    the_prime_pool_hands_out_each_set_once
);
on_both_backends!(
    test_data_sqlite,
    test_data_postgres,
    test_data_records_are_marked_and_refused_where_test_data_is_not_accepted
);
on_both_backends!(
    race_sqlite,
    race_postgres,
    concurrent_takers_never_share_a_prime_set
);

async fn identity_survives_reopen_and_needs_the_master_key(url: String) {
    let key = MasterKey::generate();
    let store = PartyStore::open(&url, key.clone(), "p1", WAIT)
        .await
        .unwrap();
    let id = store.load_or_create_identity().await.unwrap();
    store.pool().close().await;
    let store = PartyStore::open(&url, key, "p1", WAIT).await.unwrap();
    assert_eq!(
        store.load_or_create_identity().await.unwrap().public(),
        id.public()
    );
    store.pool().close().await;
    let wrong = PartyStore::open(&url, MasterKey::generate(), "p1", WAIT)
        .await
        .unwrap();
    assert!(
        wrong.load_or_create_identity().await.is_err(),
        "another master key opens nothing"
    );
}

async fn the_prime_pool_hands_out_each_set_once(url: String) {
    let store = PartyStore::open(&url, MasterKey::generate(), "p1", WAIT)
        .await
        .unwrap();
    assert!(store.take_primes().await.unwrap().is_none());
    store.put_primes(&test_primes(0)).await.unwrap();
    store.put_primes(&test_primes(1)).await.unwrap();
    assert_eq!(store.prime_count().await.unwrap(), 2);
    let a = store.take_primes().await.unwrap().unwrap();
    let b = store.take_primes().await.unwrap().unwrap();
    assert_eq!(
        a.to_bytes().unwrap(),
        test_primes(0).to_bytes().unwrap(),
        "oldest first"
    );
    assert_eq!(b.to_bytes().unwrap(), test_primes(1).to_bytes().unwrap());
    assert!(store.take_primes().await.unwrap().is_none());
    assert_eq!(store.prime_count().await.unwrap(), 0);
}

async fn concurrent_takers_never_share_a_prime_set(url: String) {
    let store = PartyStore::open(&url, MasterKey::generate(), "p1", WAIT)
        .await
        .unwrap();
    store.put_primes(&test_primes(0)).await.unwrap();
    store.put_primes(&test_primes(1)).await.unwrap();
    let takers: Vec<_> = (0..8)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.take_primes().await.unwrap() })
        })
        .collect();
    let mut got = Vec::new();
    for t in takers {
        if let Some(p) = t.await.unwrap() {
            got.push(p.to_bytes().unwrap().to_vec());
        }
    }
    got.sort();
    let mut want = vec![
        test_primes(0).to_bytes().unwrap().to_vec(),
        test_primes(1).to_bytes().unwrap().to_vec(),
    ];
    want.sort();
    assert_eq!(got, want, "each set handed out exactly once");
    assert_eq!(store.prime_count().await.unwrap(), 0);
}

/// A real 2-of-3 key share (the pinned fixture's, opened under its key).
fn fixture_share() -> party_core::KeyShare {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../party-core/test-data/fixtures/sealed-v1.json"
    );
    let f: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let r = &f["key_shares"][0];
    let ctx = RecordContext {
        party_id: r["party_id"].as_str().unwrap(),
        account_id: r["account_id"].as_str().unwrap(),
        kind: RecordKind::KeyShare,
    };
    MasterKey::from_bytes(&[0x42; 32])
        .unwrap()
        .open_value(ctx, &hex::decode(r["sealed"].as_str().unwrap()).unwrap())
        .unwrap()
}

/// The PUBLIC test aux info of party 0 of 3.
fn public_test_aux() -> party_core::AuxInfo {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../party-core/test-data/aux-n3.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    party_core::codec::decode(&hex::decode(v["aux"][0].as_str().unwrap()).unwrap()).unwrap()
}

/// Whether `r` is the typed test-data refusal (secrets have no `Debug`:
/// anything else is named, not printed).
fn is_test_data_refusal<T>(r: Result<T, StoreError>) -> bool {
    match r {
        Err(e @ StoreError::Record(RecordError::Seal(SealError::TestData))) => {
            assert!(e.to_string().contains("made from public test data"), "{e}");
            true
        }
        Err(e) => panic!("expected the test-data refusal, got {e}"),
        Ok(_) => panic!("a test-data record opened where test data is not accepted"),
    }
}

async fn sealed_of(store: &PartyStore, sql: &str, id: &str) -> Vec<u8> {
    sqlx::query(sql)
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get::<Vec<u8>, _>(0)
}

async fn test_data_records_are_marked_and_refused_where_test_data_is_not_accepted(url: String) {
    let store = PartyStore::open(&url, MasterKey::generate(), "p1", WAIT)
        .await
        .unwrap();
    // This test build accepts test data (the crate's tests have the feature).
    assert!(store.accepts_test_data());
    let share = fixture_share();
    let pk = party_core::signature::public_key_of(&share);
    // A keygen made with test aux info: share and aux info marked. Another
    // one made for real: unmarked.
    store
        .put_keygen_result(
            "acct-test",
            &pk,
            &share,
            None,
            Some(("group-test", &public_test_aux())),
            Provenance::TestData,
        )
        .await
        .unwrap();
    store
        .put_keygen_result("acct-real", &pk, &share, None, None, Provenance::Production)
        .await
        .unwrap();
    store
        .put_primes_as(&test_primes(0), Provenance::TestData)
        .await
        .unwrap();
    const SHARE: &str = "SELECT sealed FROM key_shares WHERE account_id = $1";
    // A keygen's new aux info is kept as a version of the group's aux info.
    const AUX: &str = "SELECT sealed FROM aux_info_versions WHERE group_id = $1";
    let fp = party_core::aux_fingerprint::aux_fingerprint(&public_test_aux());
    assert_eq!(
        sealed_of(&store, SHARE, "acct-test").await[1],
        RecordKind::KeyShare as u8 | 0x80
    );
    assert_eq!(
        sealed_of(&store, AUX, "group-test").await[1],
        RecordKind::AuxInfo as u8 | 0x80
    );
    assert_eq!(
        sealed_of(&store, SHARE, "acct-real").await[1],
        RecordKind::KeyShare as u8
    );
    // With test data accepted they open, and say what they are.
    let (_, p) = store.key_share_marked("acct-test").await.unwrap().unwrap();
    assert_eq!(p, Provenance::TestData);
    let (_, p) = store
        .aux_info_named_marked("group-test", &fp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p, Provenance::TestData);
    let (_, p) = store.key_share_marked("acct-real").await.unwrap().unwrap();
    assert_eq!(p, Provenance::Production);

    // What a production build does: typed refusals; production records
    // still open; the refused records are left as they were.
    store.set_accept_test_data(false);
    assert!(!store.accepts_test_data());
    let before = sealed_of(&store, SHARE, "acct-test").await;
    assert!(is_test_data_refusal(store.key_share("acct-test").await));
    assert!(is_test_data_refusal(
        store.aux_info_named("group-test", &fp).await
    ));
    assert!(store.key_share("acct-real").await.unwrap().is_some());
    assert_eq!(sealed_of(&store, SHARE, "acct-test").await, before);
    // A pooled public prime set is never handed out (the row is taken out
    // of the pool before it is opened, so it is gone, unused).
    assert!(is_test_data_refusal(store.take_primes().await));
    assert_eq!(store.prime_count().await.unwrap(), 0);

    // Clearing the mark in the database does not make a production
    // record: it no longer opens at all.
    let mut unmarked = before.clone();
    unmarked[1] &= 0x7f;
    sqlx::query("UPDATE key_shares SET sealed = $1 WHERE account_id = $2")
        .bind(unmarked)
        .bind("acct-test")
        .execute(store.pool())
        .await
        .unwrap();
    for accept in [false, true] {
        store.set_accept_test_data(accept);
        match store.key_share("acct-test").await {
            Err(StoreError::Record(RecordError::Seal(SealError::OpenFailed))) => {}
            Err(e) => panic!("an unmarked test-data share failed otherwise: {e}"),
            Ok(_) => panic!("an unmarked test-data share opened"),
        }
    }
    // A test build opens the test aux info again: nothing was lost.
    assert!(store
        .aux_info_named("group-test", &fp)
        .await
        .unwrap()
        .is_some());
}
