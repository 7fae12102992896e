//! The authorization records on both backends: the policy is sealed to its
//! party and account and replaced only by compare and swap; an admission is
//! refused by the database's constraints (seen session, used request id, rate
//! limit) with nothing recorded, also under concurrent delivery.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use mpc_db::sqlx::{self, Row as _};
use party_core::authz::{Approved, Approver, Policy};
use party_core::descriptor::MessageDigest;
use party_core::host::Admission;
use party_core::identity::PartyIdentity;
use party_core::seal::MasterKey;
use uuid::Uuid;

use super::AdmissionError;
use crate::store::{PartyStore, StoreError};

const WAIT: Duration = Duration::from_secs(30);

fn sqlite_url(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("party-authz-{name}-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    format!("sqlite://{}", dir.join("party.db").display())
}

macro_rules! on_both_backends {
    ($sqlite:ident, $postgres:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $body(sqlite_url(stringify!($body))).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            if let Some(url) = mpc_db::testing::postgres_or_skip().await {
                $body(url).await;
            }
        }
    };
}

on_both_backends!(
    policy_sqlite,
    policy_postgres,
    policy_is_sealed_to_its_account
);
on_both_backends!(
    cas_sqlite,
    cas_postgres,
    policy_is_replaced_only_by_compare_and_swap
);
on_both_backends!(
    refusals_sqlite,
    refusals_postgres,
    admissions_refused_record_nothing
);
on_both_backends!(
    race_sqlite,
    race_postgres,
    concurrent_deliveries_admit_exactly_once
);

fn approver(id: &str) -> Approver {
    let key = PartyIdentity::generate(&mut rand_core::OsRng)
        .public()
        .ed25519;
    Approver::parse(id.to_string(), Some(&hex::encode(key)), None).unwrap()
}

fn policy(quorum: u16, max: Option<u32>) -> Policy {
    Policy {
        approvers: vec![approver("alice"), approver("bob")],
        quorum,
        digests: vec![MessageDigest::Keccak256],
        allow_bare_hash: false,
        max_signatures_per_hour: max,
    }
}

async fn open(url: &str, party: &str) -> PartyStore {
    PartyStore::open(url, MasterKey::generate(), party, WAIT)
        .await
        .unwrap()
}

impl PartyStore {
    /// What a keygen with a policy writes beside the share.
    async fn insert_policy(&self, account_id: &str, p: &Policy) {
        let (sealed, hash) = self.seal_policy(account_id, p).unwrap();
        sqlx::query(
            "INSERT INTO policies (account_id, policy_hash, sealed, updated_at) VALUES ($1, $2, $3, 0)",
        )
        .bind(account_id)
        .bind(hash.to_vec())
        .bind(sealed)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .unwrap()
            .get(0)
    }
}

fn sign_admission(account: &str, request: &str, max: Option<u32>) -> Admission {
    Admission {
        session_id: Uuid::new_v4(),
        approved: Some(Approved {
            account_id: account.to_string(),
            request_id: request.to_string(),
            max_per_hour: max,
            signs: true,
        }),
    }
}

fn refused(r: Result<(), AdmissionError>) -> &'static str {
    match r {
        Err(AdmissionError::Refused(e)) => e.code(),
        other => panic!("expected a typed refusal, got {other:?}"),
    }
}

async fn policy_is_sealed_to_its_account(url: String) {
    let store = open(&url, "p1").await;
    let p = policy(2, Some(10));
    store.insert_policy("acct-a", &p).await;
    assert_eq!(store.policy("acct-a").await.unwrap(), Some(p.clone()));
    assert_eq!(store.policy("acct-b").await.unwrap(), None);

    // The sealed row copied to another account does not open there.
    sqlx::query(
        "INSERT INTO policies (account_id, policy_hash, sealed, updated_at)
         SELECT 'acct-b', policy_hash, sealed, updated_at FROM policies WHERE account_id = 'acct-a'",
    )
    .execute(&store.pool)
    .await
    .unwrap();
    assert!(matches!(
        store.policy("acct-b").await,
        Err(StoreError::Record(_))
    ));

    // A hash column that does not match the sealed policy is refused.
    sqlx::query("UPDATE policies SET policy_hash = $1 WHERE account_id = 'acct-a'")
        .bind(vec![7u8; 32])
        .execute(&store.pool)
        .await
        .unwrap();
    assert!(matches!(
        store.policy("acct-a").await,
        Err(StoreError::PolicyCorrupt)
    ));
}

async fn policy_is_replaced_only_by_compare_and_swap(url: String) {
    let store = open(&url, "p1").await;
    let (old, new) = (policy(2, None), policy(1, None));
    store.insert_policy("acct", &old).await;
    // A change approved under another policy than the stored one.
    assert!(matches!(
        store.replace_policy("acct", &new, &new.hash()).await,
        Err(StoreError::PolicyConflict)
    ));
    assert_eq!(store.policy("acct").await.unwrap(), Some(old.clone()));
    // No policy to change.
    assert!(matches!(
        store.replace_policy("other", &new, &old.hash()).await,
        Err(StoreError::PolicyConflict)
    ));
    assert_eq!(store.policy("other").await.unwrap(), None);
    store
        .replace_policy("acct", &new, &old.hash())
        .await
        .unwrap();
    assert_eq!(store.policy("acct").await.unwrap(), Some(new.clone()));
    // The same change again finds the new policy: refused.
    assert!(matches!(
        store.replace_policy("acct", &new, &old.hash()).await,
        Err(StoreError::PolicyConflict)
    ));
}

async fn admissions_refused_record_nothing(url: String) {
    let store = open(&url, "p1").await;
    let p = policy(2, Some(2));
    let h = p.hash();
    store.insert_policy("acct", &p).await;

    // A session without approvals (keygen, presign, an account without a
    // policy) is recorded once.
    let plain = Admission {
        session_id: Uuid::new_v4(),
        approved: None,
    };
    store
        .record_admission(&plain, "keygen", None)
        .await
        .unwrap();
    assert!(store.was_admitted(&plain.session_id).await.unwrap());
    assert_eq!(
        refused(store.record_admission(&plain, "keygen", None).await),
        "session_replayed"
    );

    let first = sign_admission("acct", "req-1", Some(2));
    store
        .record_admission(&first, "sign", Some(&h))
        .await
        .unwrap();
    assert_eq!(
        refused(store.record_admission(&first, "sign", Some(&h)).await),
        "session_replayed"
    );

    // Another session with a used request id: refused, its session id not
    // recorded (a later delivery is refused for the same reason).
    let reused = sign_admission("acct", "req-1", Some(2));
    assert_eq!(
        refused(store.record_admission(&reused, "sign", Some(&h)).await),
        "request_id_reused"
    );
    assert!(!store.was_admitted(&reused.session_id).await.unwrap());
    // The same request id for another account is that account's own.
    let elsewhere = sign_admission("acct2", "req-1", None);
    store.insert_policy("acct2", &p).await;
    store
        .record_admission(&elsewhere, "sign", Some(&h))
        .await
        .unwrap();

    // Rate limit 2 per hour: the second signing passes, the third is refused.
    store
        .record_admission(&sign_admission("acct", "req-2", Some(2)), "sign", Some(&h))
        .await
        .unwrap();
    let third = sign_admission("acct", "req-3", Some(2));
    assert_eq!(
        refused(store.record_admission(&third, "sign", Some(&h)).await),
        "signing_rate_limited"
    );
    assert!(!store.was_admitted(&third.session_id).await.unwrap());
    // A policy change does not sign: not counted against the rate.
    let change = Admission {
        session_id: Uuid::new_v4(),
        approved: Some(Approved {
            account_id: "acct".into(),
            request_id: "change-1".into(),
            max_per_hour: None,
            signs: false,
        }),
    };
    store
        .record_admission(&change, "policy_change", Some(&h))
        .await
        .unwrap();

    // Approvals checked against a policy that is no longer the account's.
    let stale = sign_admission("acct", "req-4", None);
    assert!(matches!(
        store.record_admission(&stale, "sign", Some(&[1; 32])).await,
        Err(AdmissionError::PolicyChanged)
    ));
    assert!(!store.was_admitted(&stale.session_id).await.unwrap());

    assert_eq!(store.count("admitted_sessions").await, 5);
    assert_eq!(store.count("approved_requests").await, 4);
}

async fn concurrent_deliveries_admit_exactly_once(url: String) {
    let store = open(&url, "p1").await;
    let p = policy(2, Some(3));
    let h = p.hash();
    store.insert_policy("acct", &p).await;

    async fn race(store: &PartyStore, admissions: Vec<Admission>, h: [u8; 32]) -> Vec<String> {
        let tasks: Vec<_> = admissions
            .into_iter()
            .map(|a| {
                let s = store.clone();
                tokio::spawn(async move {
                    match s.record_admission(&a, "sign", Some(&h)).await {
                        Ok(()) => "admitted".to_string(),
                        Err(AdmissionError::Refused(e)) => e.code().to_string(),
                        Err(e) => panic!("store failed: {e}"),
                    }
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out.sort();
        out
    }

    // One descriptor delivered eight times at once.
    let one = sign_admission("acct", "req-a", Some(3));
    let got = race(&store, vec![one.clone(); 8], h).await;
    assert_eq!(
        got.iter().filter(|c| *c == "admitted").count(),
        1,
        "{got:?}"
    );
    assert!(got
        .iter()
        .all(|c| c == "admitted" || c == "session_replayed"));

    // Eight sessions naming one request id.
    let same_request: Vec<_> = (0..8)
        .map(|_| sign_admission("acct", "req-b", Some(3)))
        .collect();
    let got = race(&store, same_request, h).await;
    assert_eq!(
        got.iter().filter(|c| *c == "admitted").count(),
        1,
        "{got:?}"
    );
    assert!(got
        .iter()
        .all(|c| c == "admitted" || c == "request_id_reused"));

    // Eight distinct signings at once under a limit of 3 with 2 used: one.
    let distinct: Vec<_> = (0..8)
        .map(|i| sign_admission("acct", &format!("req-c{i}"), Some(3)))
        .collect();
    let got = race(&store, distinct, h).await;
    assert_eq!(
        got.iter().filter(|c| *c == "admitted").count(),
        1,
        "{got:?}"
    );
    assert!(got
        .iter()
        .all(|c| c == "admitted" || c == "signing_rate_limited"));
    assert_eq!(store.count("admitted_sessions").await, 3);
}
