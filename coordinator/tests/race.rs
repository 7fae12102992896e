//! Completion is recorded exactly once, even when many reports race through
//! two coordinator instances sharing one database. Runs on SQLite and on
//! PostgreSQL (skipped with a printed reason outside CI when it is down).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use coordinator::store::{
    Account, DeviceType, NewSession, PartyResult, SessionKind, SessionRow, SessionStatus, Store,
};
use mpc_api::rest::SessionResult;
use mpc_db::sqlx::{self, Row as _};
use uuid::Uuid;

async fn open(url: &str) -> Store {
    let s = Store::open_lazy(url).unwrap();
    s.db().wait_ready(Duration::from_secs(30)).await.unwrap();
    s
}

fn row(kind: SessionKind) -> SessionRow {
    SessionRow {
        session_id: Uuid::new_v4(),
        tenant_id: "default".into(),
        kind,
        status: SessionStatus::Waiting,
        threshold_t: 2,
        threshold_n: 3,
        account_id: None,
        message_hash: None,
        descriptor: "{}".into(),
        group_id: Some("g".into()),
        generate_aux: false,
        result: None,
        error: None,
        error_code: None,
        blamed_party: None,
        accusations: Vec::new(),
        created_at: coordinator::store::now(),
        expires_at: coordinator::store::now() + 600,
    }
}

async fn insert(store: &Store, r: &SessionRow) {
    store
        .insert_session(NewSession {
            row: r,
            participants: (0..3u16)
                .map(|p| (p, format!("p{p}"), DeviceType::Server, [p as u8; 32]))
                .collect(),
            quota: None,
            request_id: None,
        })
        .await
        .unwrap();
}

async fn count(store: &Store, sql: &str, id: &str) -> i64 {
    sqlx::query(sql)
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0)
}

/// 2 instances × 16 tasks race to complete one keygen (and a few to fail
/// it): exactly one wins, one account exists, one terminal event is logged.
async fn keygen_completion_is_recorded_once(url: String) {
    let a = open(&url).await;
    let b = open(&url).await;
    let r = row(SessionKind::Keygen);
    insert(&a, &r).await;
    let id = r.session_id;
    let account = Account {
        account_id: id.to_string(),
        public_key: "02".to_string() + &"11".repeat(32),
        address: "0x0000000000000000000000000000000000000001".into(),
        threshold_t: 2,
        threshold_n: 3,
        parties: Vec::new(),
        keygen_session_id: id.to_string(),
        created_at: coordinator::store::now(),
        policy: None,
    };
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let account = account.clone();
        tasks.push(tokio::spawn(async move {
            if i % 8 == 7 {
                store.fail(id, "racing failure", None).await.unwrap()
            } else {
                store
                    .complete_keygen(
                        id,
                        &account,
                        Some(coordinator::store::AuxRecord {
                            group_id: "g",
                            generated: true,
                            fingerprint: Some("ab"),
                        }),
                    )
                    .await
                    .unwrap()
            }
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one transition to a terminal state");
    let sid = id.to_string();
    let status = a.session(id).await.unwrap().unwrap().status;
    assert!(
        status == SessionStatus::Completed || status == SessionStatus::Failed,
        "{status:?}"
    );
    let accounts = count(
        &a,
        "SELECT COUNT(*) FROM accounts WHERE account_id = $1",
        &sid,
    )
    .await;
    assert_eq!(accounts, i64::from(status == SessionStatus::Completed));
    let terminal = count(
        &a,
        "SELECT COUNT(*) FROM session_events WHERE session_id = $1 AND kind IN ('completed','failed','expired')",
        &sid,
    )
    .await;
    assert_eq!(terminal, 1, "one terminal event");
}

/// Party results race too: each position's first result is kept, once.
async fn party_results_are_recorded_once(url: String) {
    let a = open(&url).await;
    let b = open(&url).await;
    let r = row(SessionKind::Sign);
    insert(&a, &r).await;
    let id = r.session_id;
    let mut tasks = Vec::new();
    for i in 0..24u16 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .set_party_result(
                    id,
                    i % 3,
                    &PartyResult::Keygen {
                        public_key: format!("attempt {i}"),
                        policy_hash: None,
                        aux_fingerprint: None,
                    },
                )
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let events = count(
        &a,
        "SELECT COUNT(*) FROM session_events WHERE session_id = $1 AND kind = 'party_result'",
        &id.to_string(),
    )
    .await;
    assert_eq!(events, 3, "one result per position");
    // And the completion itself, raced from both instances.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .complete(
                    id,
                    &SessionResult {
                        account_id: Some(format!("by {i}")),
                        ..SessionResult::default()
                    },
                )
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
    assert!(
        !a.fail(id, "too late", None).await.unwrap(),
        "a terminal state is final"
    );
    assert!(a.expire_overdue(u64::MAX / 2).await.unwrap().is_empty());
}

/// The last party results of a session arrive at once, one per position,
/// through different instances: the caller recording the last one must see
/// all of them (that is what triggers completion). Many rounds, so the
/// interleavings that lose a completion under read committed show up.
async fn the_last_result_sees_all_results(url: String) {
    let a = open(&url).await;
    let b = open(&url).await;
    for round in 0..40 {
        let r = row(SessionKind::Sign);
        insert(&a, &r).await;
        let id = r.session_id;
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(3));
        let mut tasks = Vec::new();
        for position in 0..3u16 {
            let store = if (round + position) % 2 == 0 {
                a.clone()
            } else {
                b.clone()
            };
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store
                    .set_party_result(
                        id,
                        position,
                        &PartyResult::Keygen {
                            public_key: format!("p {position}"),
                            policy_hash: None,
                            aux_fingerprint: None,
                        },
                    )
                    .await
                    .unwrap()
            }));
        }
        let mut someone_saw_all = false;
        for t in tasks {
            someone_saw_all |= t.await.unwrap().iter().all(Option::is_some);
        }
        assert!(someone_saw_all, "round {round}: no caller saw every result");
    }
}

fn sqlite_url() -> String {
    let dir = std::env::temp_dir().join(format!("coord-race-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    format!("sqlite://{}", dir.join("c.db").display())
}

macro_rules! on_both_backends {
    ($sqlite:ident, $postgres:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $sqlite() {
            $body(sqlite_url()).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $postgres() {
            if let Some(url) = mpc_db::testing::postgres_or_skip().await {
                $body(url).await;
            }
        }
    };
}

on_both_backends!(
    keygen_race_sqlite,
    keygen_race_postgres,
    keygen_completion_is_recorded_once
);
on_both_backends!(
    results_race_sqlite,
    results_race_postgres,
    party_results_are_recorded_once
);
on_both_backends!(
    last_result_sqlite,
    last_result_postgres,
    the_last_result_sees_all_results
);
