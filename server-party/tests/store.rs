//! The party store: identity survives reopening, the prime pool hands each
//! set out once, nothing opens under another master key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use party_core::primes::PrimeSet;
use party_core::seal::MasterKey;
use server_party::PartyStore;

fn test_primes(i: usize) -> PrimeSet {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../party-core/test-data/primes.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir).unwrap()).unwrap();
    PrimeSet::from_bytes(&hex::decode(v["parties"][i].as_str().unwrap()).unwrap()).unwrap()
}

fn db_url(name: &str) -> (String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("party-store-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    (format!("sqlite://{}", dir.join("party.db").display()), dir)
}

#[tokio::test]
async fn identity_survives_reopen_and_needs_the_master_key() {
    let (url, dir) = db_url("identity");
    let key = MasterKey::generate();
    let store = PartyStore::open(&url, key.clone(), "p1").await.unwrap();
    let id = store.load_or_create_identity().await.unwrap();
    store.pool().close().await;
    let store = PartyStore::open(&url, key, "p1").await.unwrap();
    assert_eq!(
        store.load_or_create_identity().await.unwrap().public(),
        id.public()
    );
    store.pool().close().await;
    let wrong = PartyStore::open(&url, MasterKey::generate(), "p1")
        .await
        .unwrap();
    assert!(
        wrong.load_or_create_identity().await.is_err(),
        "another master key opens nothing"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_prime_pool_hands_out_each_set_once() {
    let (url, dir) = db_url("pool");
    let store = PartyStore::open(&url, MasterKey::generate(), "p1")
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
    let _ = std::fs::remove_dir_all(dir);
}
