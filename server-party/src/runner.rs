//! Runs one invited session: a tokio/tungstenite shell over party-core's
//! session machine ([`party_core::host::PartyHost`]), which decides what to
//! do (join which router, resend, report, give up); this module does it
//! (WebSocket, HTTP, store, timers) and feeds the results back.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use party_core::authz::Policy;
use party_core::host::{Action, HostConfig, Outcome, PartyHost};
use party_core::seal::Provenance;
use party_core::wire::Invitation;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::priority::{scheduler, Lane, WorkError};
use crate::queue::{Admit, PARTY_BUSY};
use crate::store::AdmissionError;
use crate::{inputs, unix_now_ms, PartyState};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long opening a router connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a normal close may take before the connection is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Results of the shell's background work, fed to the machine.
enum Event {
    /// A connection attempt (by attempt number) finished.
    Connected(u64, Result<Box<Ws>, String>),
    /// The session's input and its provenance, or why there is none.
    Input(Result<(party_core::session::SessionInput, Provenance), String>),
    /// Percent of a prime generation done.
    InputProgress(u8),
    /// The output was kept, or why not.
    Stored(Result<(), String>),
    /// What became of a report.
    Report(u64, party_core::host::ReportOutcome),
    /// The account's stored policy, or why it could not be read.
    Policy(Result<Option<Policy>, String>),
    /// The admission was recorded, or refused, or the store failed.
    Recorded(Result<(), AdmissionError>),
}

/// Handles one invitation end to end. Never panics; every failure after the
/// descriptor was verified is reported to the coordinator.
pub async fn run_invitation(state: Arc<PartyState>, inv: Invitation) {
    let party_id = state.config.party_id.clone();
    let session_id = inv.descriptor.descriptor.session_id;
    let verified = match inv.descriptor.verify(&state.config.coordinator_public_key) {
        Ok(v) => v,
        Err(e) => {
            // Not from our coordinator: say nothing to anyone.
            tracing::warn!(%party_id, %session_id, error = %e, "invitation refused");
            return;
        }
    };
    let verified_kind = verified.descriptor().kind.name();
    let config = HostConfig {
        router_urls: state.config.router_ws_urls.clone(),
        first_router: state.routers.current().0,
        join_token: inv.join_token,
        coordinators: state.coordinators.len(),
        approved: None,
    };
    let mut host = match PartyHost::new(verified, state.identity.clone(), config, unix_now_ms()) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(%party_id, %session_id, error = %e, "invited to a session that does not list this party");
            return;
        }
    };
    let kind = verified_kind;
    let lane = Lane::of(&host.descriptor().descriptor().kind);
    // The bounded queue: over it, the session is refused at once (the
    // refusal report is its only action) instead of waiting out its
    // deadline. The ticket holds the session's place until it ends.
    let _ticket = match state.queue.try_admit(session_id, lane) {
        Admit::Admitted(ticket) => Some(ticket),
        Admit::Busy(reason) => {
            tracing::warn!(%party_id, %session_id, kind, %reason, "session refused: party busy");
            metrics::counter!("mpc_party_sessions_refused_busy_total", "party" => party_id.clone(), "kind" => kind).increment(1);
            host.host_refused(PARTY_BUSY, reason, unix_now_ms());
            None
        }
        // A second copy of a session this party runs: it takes no place
        // and goes on to the admission record, which refuses it as a
        // replay (`session_replayed`), as before the queue.
        Admit::Duplicate => None,
    };
    let started = std::time::Instant::now();
    let party = state.config.party_id.clone();
    metrics::gauge!("mpc_party_sessions_active", "party" => party.clone()).increment(1.0);
    let (tx, rx) = mpsc::unbounded_channel();
    let shell = Shell {
        state,
        session_id,
        host: Some(Box::new(host)),
        lane,
        ws: None,
        attempt: 0,
        tx,
        rx,
        tasks: tokio::task::JoinSet::new(),
        checked_policy: None,
        provenance: Provenance::Production,
    };
    let outcome = shell.run().await;
    metrics::gauge!("mpc_party_sessions_active", "party" => party.clone()).decrement(1.0);
    let labels = [
        ("party", party),
        ("kind", kind.to_owned()),
        ("outcome", outcome.to_owned()),
    ];
    metrics::counter!("mpc_party_sessions_total", &labels).increment(1);
    metrics::histogram!("mpc_party_session_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
}

struct Shell {
    state: Arc<PartyState>,
    session_id: Uuid,
    /// `None` only while a protocol step runs on a blocking thread.
    host: Option<Box<PartyHost>>,
    /// Where the session's protocol steps run: background (presign) steps
    /// yield to foreground ones ([`crate::priority`]).
    lane: Lane,
    ws: Option<Box<Ws>>,
    /// Number of the connection attempt in use; results of older ones are
    /// dropped.
    attempt: u64,
    tx: mpsc::UnboundedSender<Event>,
    rx: mpsc::UnboundedReceiver<Event>,
    /// Background work of this session, aborted when it ends.
    tasks: tokio::task::JoinSet<()>,
    /// Hash of the stored policy handed to the machine, which it checked the
    /// approvals against; the admission is recorded only if it is still the
    /// account's policy.
    checked_policy: Option<[u8; 32]>,
    /// Whether the session's input was made from PUBLIC test data: its
    /// output is sealed marked the same.
    provenance: Provenance,
}

/// The next message of the connection, or never without one.
async fn next_message(
    ws: &mut Option<Box<Ws>>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

impl Shell {
    /// Runs the session; returns its outcome for the metrics (`completed`,
    /// `failed`, or `abandoned` when the shell stopped without one).
    async fn run(mut self) -> &'static str {
        loop {
            if let Some(outcome) = self.execute().await {
                self.close_ws();
                return outcome;
            }
            while self.tasks.try_join_next().is_some() {}
            let Some(host) = self.host.as_ref() else {
                return "abandoned";
            };
            let wake = host.wake_at().map(|at| {
                tokio::time::Instant::now()
                    + Duration::from_millis(at.saturating_sub(unix_now_ms()))
            });
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = self.rx.recv() => match event {
                    Some(event) => self.handle(event),
                    None => return "abandoned",
                },
                msg = next_message(&mut self.ws) => self.on_message(msg).await,
                () = sleep => self.with_host(|h| h.tick(unix_now_ms())),
            }
        }
    }

    fn with_host(&mut self, f: impl FnOnce(&mut PartyHost)) {
        if let Some(h) = self.host.as_mut() {
            f(h);
        }
    }

    /// Runs a machine call that may do protocol work off the async threads,
    /// in the session's lane.
    async fn blocking(&mut self, f: impl FnOnce(&mut PartyHost) + Send + 'static) {
        let Some(mut host) = self.host.take() else {
            return;
        };
        let ran: Result<_, WorkError> = scheduler()
            .step(self.lane, move || {
                let panicked =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut host)))
                        .is_err();
                (host, panicked)
            })
            .await;
        match ran {
            Ok((mut host, panicked)) => {
                if panicked {
                    host.host_failed("protocol task panicked".to_string(), unix_now_ms());
                }
                self.host = Some(host);
            }
            Err(e) => {
                tracing::error!(party_id = %self.state.config.party_id, session_id = %self.session_id, error = %e, "protocol task failed");
            }
        }
    }

    async fn on_message(
        &mut self,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) {
        match msg {
            Some(Ok(Message::Text(t))) => {
                let text = crate::router_guard::capped_router_message(&t).into_owned();
                self.blocking(move |h| h.text_received(&text, unix_now_ms()))
                    .await;
            }
            Some(Ok(Message::Binary(b))) => {
                self.blocking(move |h| h.frame_received(&b, unix_now_ms()))
                    .await;
            }
            Some(Ok(Message::Close(_)) | Err(_)) | None => {
                tracing::warn!(party_id = %self.state.config.party_id, session_id = %self.session_id, "session connection lost");
                self.ws = None;
                self.with_host(|h| h.connection_closed(unix_now_ms()));
            }
            Some(Ok(_)) => {}
        }
    }

    fn handle(&mut self, event: Event) {
        let now = unix_now_ms();
        match event {
            Event::Connected(attempt, result) if attempt == self.attempt => match result {
                Ok(ws) => self.ws = Some(ws),
                Err(e) => {
                    tracing::warn!(party_id = %self.state.config.party_id, session_id = %self.session_id, error = %e, "router unavailable, trying the next");
                    self.with_host(|h| h.connection_closed(now));
                }
            },
            Event::Connected(..) => {}
            Event::Input(Ok((input, provenance))) => {
                self.provenance = provenance;
                self.with_host(|h| h.provide_input(input, now));
            }
            Event::Input(Err(reason)) => self.with_host(|h| h.input_failed(reason, now)),
            Event::InputProgress(p) => self.with_host(|h| h.input_progress("primes", p, now)),
            Event::Stored(Ok(())) => self.with_host(|h| h.output_stored(now)),
            Event::Stored(Err(reason)) => self.with_host(|h| h.output_store_failed(reason, now)),
            Event::Report(id, outcome) => self.with_host(|h| h.report_result(id, outcome, now)),
            Event::Policy(Ok(policy)) => {
                self.checked_policy = policy.as_ref().map(Policy::hash);
                self.with_host(|h| h.provide_policy(policy, now));
            }
            // A store failure fails the session; it never admits it.
            Event::Policy(Err(reason)) => self.with_host(|h| h.host_failed(reason, now)),
            Event::Recorded(Ok(())) => self.with_host(|h| h.admission_recorded(Ok(()), now)),
            Event::Recorded(Err(AdmissionError::Refused(e))) => {
                self.with_host(|h| h.admission_recorded(Err(e), now));
            }
            Event::Recorded(Err(e)) => self.with_host(|h| h.host_failed(e.to_string(), now)),
        }
    }

    /// Drops the session connection with a normal close (1000), which tells
    /// the router the party left on purpose (an abrupt end is watched as a
    /// possible disconnect). The close is sent in the background, briefly.
    fn close_ws(&mut self) {
        if let Some(mut ws) = self.ws.take() {
            tokio::spawn(async move {
                let frame = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, Ws::close(&mut ws, Some(frame))).await;
            });
        }
    }

    async fn send(&mut self, msg: Message) {
        let Some(ws) = self.ws.as_mut() else {
            // Lost already: the machine resends after the rejoin.
            return;
        };
        if let Err(e) = ws.send(msg).await {
            tracing::warn!(party_id = %self.state.config.party_id, session_id = %self.session_id, error = %e, "send failed, rejoining");
            self.ws = None;
            self.with_host(|h| h.connection_closed(unix_now_ms()));
        }
    }

    /// Executes the machine's actions; the outcome once the session is over.
    async fn execute(&mut self) -> Option<&'static str> {
        let party_id = self.state.config.party_id.clone();
        let session_id = self.session_id;
        loop {
            let action = self.host.as_mut().and_then(|h| h.poll_action())?;
            match action {
                Action::NeedPolicy { account_id } => {
                    let (state, tx) = (self.state.clone(), self.tx.clone());
                    self.tasks.spawn(async move {
                        let r = state.store.policy(&account_id).await;
                        let _ = tx.send(Event::Policy(r.map_err(|e| e.to_string())));
                    });
                }
                Action::Record(admission) => {
                    let (state, tx) = (self.state.clone(), self.tx.clone());
                    let Some(kind) = self
                        .host
                        .as_ref()
                        .map(|h| h.descriptor().descriptor().kind.name())
                    else {
                        return Some("abandoned");
                    };
                    let checked = self.checked_policy;
                    self.tasks.spawn(async move {
                        let r = state
                            .store
                            .record_admission(&admission, kind, checked.as_ref())
                            .await;
                        if let Err(e) = &r {
                            tracing::warn!(party_id = %state.config.party_id, %session_id, error = %e, "admission not recorded");
                        }
                        let _ = tx.send(Event::Recorded(r));
                    });
                }
                Action::StorePolicy {
                    account_id,
                    policy,
                    previous,
                } => {
                    let (state, tx) = (self.state.clone(), self.tx.clone());
                    self.tasks.spawn(async move {
                        let r = state
                            .store
                            .replace_policy(&account_id, &policy, &previous)
                            .await
                            .map_err(|e| e.to_string());
                        if r.is_ok() {
                            tracing::info!(party_id = %state.config.party_id, %session_id, %account_id, "account policy replaced");
                        }
                        let _ = tx.send(Event::Stored(r));
                    });
                }
                Action::NeedInput(request) => {
                    let (state, tx, lane) = (self.state.clone(), self.tx.clone(), self.lane);
                    self.tasks.spawn(async move {
                        let (ptx, mut prx) = mpsc::unbounded_channel();
                        let fetch = inputs::fetch(&state, session_id, request, lane, ptx);
                        tokio::pin!(fetch);
                        let input = loop {
                            tokio::select! {
                                r = &mut fetch => break r,
                                Some(p) = prx.recv() => { let _ = tx.send(Event::InputProgress(p)); }
                            }
                        };
                        while let Ok(p) = prx.try_recv() {
                            let _ = tx.send(Event::InputProgress(p));
                        }
                        let _ = tx.send(Event::Input(input));
                    });
                }
                Action::Connect { url, .. } => {
                    self.close_ws();
                    self.attempt += 1;
                    let (attempt, tx) = (self.attempt, self.tx.clone());
                    let tls = self.state.tls.clone();
                    self.tasks.spawn(async move {
                        // No Nagle: protocol rounds are small frames that must
                        // go out at once (with Nagle and delayed ACKs each
                        // round waited ~40 ms).
                        let r = tokio::time::timeout(
                            CONNECT_TIMEOUT,
                            crate::connect_ws(&url, &tls, crate::SESSION_MAX_MESSAGE_BYTES),
                        )
                        .await
                        .map_err(|_| "router connection timed out".to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()))
                        .map(Box::new);
                        let _ = tx.send(Event::Connected(attempt, r));
                    });
                }
                Action::SendText(t) => self.send(Message::text(t)).await,
                Action::SendFrame(f) => self.send(Message::binary(f)).await,
                Action::CloseConnection => {
                    self.attempt += 1;
                    self.close_ws();
                }
                Action::RouterFailed { router } => self.state.routers.failed(router),
                Action::Joined { router, rejoin } => {
                    let position = self.host.as_ref().map(|h| h.position());
                    tracing::info!(%party_id, %session_id, ?position, router, rejoin, "joined session");
                }
                Action::Progress(p) => {
                    tracing::debug!(%party_id, %session_id, stage = %p.stage, round = p.round, "progress");
                    crate::kill_point::reached_round(&p.stage, p.round);
                }
                Action::FrameDropped(reason) => {
                    tracing::debug!(%party_id, %session_id, %reason, "frame dropped");
                }
                Action::SendReport {
                    id,
                    body,
                    best_effort,
                } => {
                    let (state, tx) = (self.state.clone(), self.tx.clone());
                    self.tasks.spawn(async move {
                        let outcome = state.post_report(session_id, body, best_effort).await;
                        let _ = tx.send(Event::Report(id, outcome));
                    });
                }
                Action::StoreOutput(output) => {
                    let (state, tx) = (self.state.clone(), self.tx.clone());
                    let Some(d) = self
                        .host
                        .as_ref()
                        .map(|h| h.descriptor().descriptor().clone())
                    else {
                        return Some("abandoned");
                    };
                    let provenance = self.provenance;
                    self.tasks.spawn(async move {
                        let r = inputs::keep(&state, &d, output, provenance).await;
                        let _ = tx.send(Event::Stored(r));
                    });
                }
                Action::Finished(Outcome::Completed) => {
                    tracing::info!(%party_id, %session_id, "session completed");
                    return Some("completed");
                }
                Action::Finished(Outcome::Failed { reason, blamed }) => {
                    tracing::warn!(%party_id, %session_id, %reason, ?blamed, "session failed");
                    return Some("failed");
                }
                _ => {}
            }
        }
    }
}
