//! The party store: identity survives reopening, the prime pool hands each
//! set out once, nothing opens under another master key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use party_core::primes::PrimeSet;
use party_core::seal::MasterKey;
use server_party::PartyStore;
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
