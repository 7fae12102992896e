//! A compromised coordinator: it holds the coordinator's descriptor-signing
//! key and the router access a coordinator has, and nothing else (no
//! approver key). It signs descriptors itself, registers them at the router's
//! internal API and invites real server parties exactly as
//! `coordinator/src/router_client.rs` does, and collects the parties' signed
//! reports on a report endpoint of its own. The router is the real one; the
//! test reads the frames it relayed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use coordinator::router_client::{RouterClient, Slot};
use party_core::authz::Authorization;
use party_core::descriptor::{
    CurveName, Participant, SessionDescriptor, SessionKind, SignedDescriptor, DESCRIPTOR_VERSION,
};
use party_core::identity::CoordinatorKey;
use party_core::wire::{Invitation, Report, ReportBody, SignedReport};
use server_party::{PartyConfig, PrimeSource, ServerParty};
use sha2::{Digest as _, Sha256};
use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

use crate::common::{test_data, TempDir};

/// What the rogue coordinator's report endpoint received.
#[derive(Default)]
struct Inbox {
    reports: Mutex<Vec<SignedReport>>,
    changed: Notify,
}

async fn take_report(
    State(inbox): State<Arc<Inbox>>,
    axum::Json(r): axum::Json<SignedReport>,
) -> StatusCode {
    inbox
        .reports
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(r);
    inbox.changed.notify_waiters();
    StatusCode::OK
}

/// Session ids of every frame the router relayed, counted.
type FrameCounts = Arc<Mutex<HashMap<Uuid, usize>>>;

/// Router, three real server parties, and the rogue coordinator.
pub struct World {
    pub key: CoordinatorKey,
    pub router: RouterClient,
    pub parties: Vec<ServerParty>,
    tap_router: router::Router,
    inbox: Arc<Inbox>,
    frames: FrameCounts,
    lagged: Arc<std::sync::atomic::AtomicBool>,
    stops: Vec<oneshot::Sender<()>>,
    _dir: TempDir,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl World {
    /// Starts the router, a report endpoint and `n` server parties (public
    /// test aux info, so a keygen is a DKG only; one public prime set in
    /// each party's pool, to count).
    pub async fn start(name: &str, n: usize) -> Self {
        let dir = TempDir::new(name);
        let mut stops = Vec::new();

        let listeners = router::Listeners {
            public: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            internal: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let router_addr = listeners.public.local_addr().unwrap();
        let router_internal = listeners.internal.local_addr().unwrap();
        // The router's internal credential: what a coordinator holds (the
        // rogue coordinator of this test has it too).
        let router_token = coordinator::auth::new_api_key();
        let router = router::Router::new(router::RouterConfig::new(router_token.clone())).unwrap();
        let frames: FrameCounts = Arc::default();
        let lagged = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tap = router.subscribe_frames();
        let (f, l) = (frames.clone(), lagged.clone());
        tokio::spawn(async move {
            loop {
                match tap.recv().await {
                    Ok((session, _)) => *lock(&f).entry(session).or_default() += 1,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        l.store(true, std::sync::atomic::Ordering::SeqCst)
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let (tx, rx) = oneshot::channel::<()>();
        stops.push(tx);
        let tap_router = router.clone();
        tokio::spawn(router.serve(listeners, async move {
            let _ = rx.await;
        }));

        let inbox = Arc::new(Inbox::default());
        let app = axum::Router::new()
            .route("/internal/v1/parties", post(|| async { StatusCode::OK }))
            .route("/internal/v1/reports", post(take_report))
            .with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let coordinator_url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        stops.push(tx);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });

        let key = CoordinatorKey::generate(&mut rand_core::OsRng);
        let pg = dir.postgres_urls().await.cloned();
        let mut parties = Vec::new();
        for k in 1..=n {
            let pdir = dir.0.join(format!("party-{k}"));
            std::fs::create_dir_all(&pdir).unwrap();
            let config = PartyConfig {
                party_id: format!("server-party-{k}"),
                database_url: match &pg {
                    Some(urls) => urls[k].clone(),
                    None => format!("sqlite://{}", pdir.join("party.db").display()),
                },
                master_key: party_core::seal::MasterKey::generate(),
                coordinator_urls: vec![coordinator_url.clone()],
                coordinator_public_key: key.public(),
                router_ws_urls: vec![format!("ws://{router_addr}/ws")],
                // Only taken from the pool (which holds one public set); a
                // keygen here reuses the public test aux info.
                primes: PrimeSource::Generate {
                    threads: 1,
                    pool_target: 0,
                },
                insecure_test_aux: Some(test_data()),
                limits: Default::default(),
                client_tls: None,
            };
            let party = ServerParty::open(config).await.unwrap();
            party
                .store()
                .put_primes(&crate::test_primes(k - 1))
                .await
                .unwrap();
            let p = party.clone();
            let (tx, rx) = oneshot::channel::<()>();
            stops.push(tx);
            tokio::spawn(p.run(async move {
                let _ = rx.await;
            }));
            parties.push(party);
        }
        Self {
            key,
            router: RouterClient::new(&[format!("http://{router_internal}")], &router_token),
            parties,
            tap_router,
            inbox,
            frames,
            lagged,
            stops,
            _dir: dir,
        }
    }

    /// Party `k` (0-based) as participant with keygen index `k`.
    pub fn participant(&self, k: usize) -> Participant {
        Participant {
            party_id: format!("server-party-{}", k + 1),
            keygen_index: u16::try_from(k).unwrap(),
            identity: self.parties[k].public_identity(),
        }
    }

    /// A descriptor for parties `ids` (0-based), t = 2 of n = 3.
    pub fn descriptor(
        &self,
        kind: SessionKind,
        ids: &[usize],
        authorization: Option<Authorization>,
    ) -> SessionDescriptor {
        SessionDescriptor {
            version: DESCRIPTOR_VERSION,
            session_id: Uuid::new_v4(),
            kind,
            curve: CurveName::Secp256k1,
            threshold: 2,
            parties: u16::try_from(self.parties.len()).unwrap(),
            participants: ids.iter().map(|k| self.participant(*k)).collect(),
            expires_at: crate::unix_now() + 120,
            authorization,
        }
    }

    /// Signs `d` with the coordinator key and delivers it: the session's slots
    /// registered at the router, each party invited `copies` times at once.
    pub async fn deliver(&self, d: SessionDescriptor, copies: usize) -> SignedDescriptor {
        let signed = d.sign(&self.key).unwrap();
        self.redeliver(&signed, copies).await;
        signed
    }

    /// Delivers an already signed descriptor again, with fresh join tokens.
    /// A router that refuses to register the session id again (it was
    /// closed) does not stop the invitations: a rogue coordinator sends them
    /// anyway.
    pub async fn redeliver(&self, signed: &SignedDescriptor, copies: usize) {
        let d = &signed.descriptor;
        let tokens: Vec<String> = d
            .participants
            .iter()
            .map(|_| hex::encode(crate::random_bytes()))
            .collect();
        let slots = tokens
            .iter()
            .enumerate()
            .map(|(pos, t)| Slot {
                position: u16::try_from(pos).unwrap(),
                token_sha256: hex::encode(Sha256::digest(t.as_bytes())),
                identity: Some(d.participants[pos].identity),
            })
            .collect();
        let _ = self
            .router
            .register_session(d.session_id, d.expires_at, slots)
            .await;
        let invites = d.participants.iter().zip(&tokens).flat_map(|(p, t)| {
            let inv = Invitation {
                descriptor: signed.clone(),
                join_token: t.clone(),
            };
            (0..copies).map(move |_| (p.identity, inv.clone()))
        });
        let sends: Vec<_> = invites
            .map(|(id, inv)| {
                let r = self.router.clone();
                tokio::spawn(async move { r.invite(&id, &inv).await })
            })
            .collect();
        for s in sends {
            s.await.unwrap().unwrap();
        }
    }

    /// The session's reports, verified with the reporting participant's
    /// identity key.
    pub fn reports(&self, d: &SessionDescriptor) -> Vec<Report> {
        lock(&self.inbox.reports)
            .iter()
            .filter_map(|r| {
                let peek = r.peek()?;
                if peek.session_id != d.session_id {
                    return None;
                }
                let p = d.participants.get(usize::from(peek.position))?;
                Some(r.verify(&p.identity).expect("report signed by its party"))
            })
            .collect()
    }

    /// Waits until every participant sent `per_party` final reports for the
    /// session (a result, a refusal or a failure), then returns them by
    /// position.
    pub async fn finals(&self, d: &SessionDescriptor, per_party: usize) -> Vec<Vec<ReportBody>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let changed = self.inbox.changed.notified();
            let mut by_position = vec![Vec::new(); d.participants.len()];
            for r in self.reports(d) {
                if !matches!(r.body, ReportBody::Joined | ReportBody::Progress { .. }) {
                    by_position[usize::from(r.position)].push(r.body);
                }
            }
            if by_position.iter().all(|b| b.len() >= per_party) {
                return by_position;
            }
            assert!(
                tokio::time::timeout_at(deadline, changed).await.is_ok(),
                "session {}: parties did not all report: {by_position:?}",
                d.session_id
            );
        }
    }

    /// Waits for the first final report of the participant at `position`.
    pub async fn final_of(&self, d: &SessionDescriptor, position: u16) -> ReportBody {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let changed = self.inbox.changed.notified();
            if let Some(r) = self.reports(d).into_iter().find(|r| {
                r.position == position
                    && !matches!(r.body, ReportBody::Joined | ReportBody::Progress { .. })
            }) {
                return r.body;
            }
            assert!(
                tokio::time::timeout_at(deadline, changed).await.is_ok(),
                "session {}: position {position} did not report",
                d.session_id
            );
        }
    }

    /// Frames the router relayed for the session.
    pub fn frames(&self, session_id: Uuid) -> usize {
        assert!(
            !self.lagged.load(std::sync::atomic::Ordering::SeqCst),
            "the frame tap lost frames"
        );
        lock(&self.frames).get(&session_id).copied().unwrap_or(0)
    }

    /// Whether any party joined the session (a `joined` report).
    pub fn anyone_joined(&self, d: &SessionDescriptor) -> bool {
        self.reports(d)
            .iter()
            .any(|r| matches!(r.body, ReportBody::Joined))
    }

    /// A new subscription to the frames the router relays from now on.
    pub fn tap(&self) -> tokio::sync::broadcast::Receiver<(Uuid, Vec<u8>)> {
        self.tap_router.subscribe_frames()
    }

    pub async fn stop(mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
    }
}
