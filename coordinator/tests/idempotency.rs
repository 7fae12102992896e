//! Idempotency keys at the store: a claim left without an answer (its
//! request died with its process) is taken over after the lease, an
//! answered key never is, and expired keys are forgotten. Times are given
//! explicitly, so nothing waits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use coordinator::store::now;
use uuid::Uuid;

#[tokio::test]
async fn an_abandoned_claim_is_taken_over_after_its_lease_and_an_answered_one_never() {
    let Some(app) = common::setup(|_| {}).await else {
        return;
    };
    let store = app.c.store();
    let t = now();
    // A claim made 120 s ago that never got its answer.
    assert!(store
        .claim_idempotency_key("k-abandoned", "fp", t - 120, 0, 0)
        .await
        .unwrap());
    // Within its lease (60 s) nobody else may claim it...
    assert!(!store
        .claim_idempotency_key("k-abandoned", "fp", t, 0, t - 200)
        .await
        .unwrap());
    // ...past it, the next request takes it over.
    assert!(store
        .claim_idempotency_key("k-abandoned", "fp", t, 0, t - 60)
        .await
        .unwrap());

    // An answered key is never taken over, however old its claim.
    assert!(store
        .claim_idempotency_key("k-answered", "fp", t - 3600, 0, 0)
        .await
        .unwrap());
    store
        .finish_idempotency_key("k-answered", Uuid::new_v4(), vec![1, 2, 3])
        .await
        .unwrap();
    assert!(!store
        .claim_idempotency_key("k-answered", "fp", t, 0, t - 60)
        .await
        .unwrap());
    let row = store.idempotency_key("k-answered").await.unwrap().unwrap();
    assert_eq!(row.sealed_answer.as_deref(), Some(&[1u8, 2, 3][..]));

    // Past the retention every key is forgotten, answered or not.
    assert!(store
        .claim_idempotency_key("k-new", "fp", t, t + 1, 0)
        .await
        .unwrap());
    assert!(store.idempotency_key("k-answered").await.unwrap().is_none());
    assert!(store
        .idempotency_key("k-abandoned")
        .await
        .unwrap()
        .is_none());
}
