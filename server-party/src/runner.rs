//! Runs one invited session: verify, gather inputs, join, drive the protocol,
//! store the result, report.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use party_core::descriptor::{SessionKind, VerifiedDescriptor};
use party_core::primes::PrimeSet;
use party_core::session::{
    AuxSource, PartySession, Pump, SessionError, SessionInput, SessionOutput,
};
use party_core::wire::{join_message, ClientToRouter, Invitation, ReportBody, RouterToClient};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::{router_handshake, unix_now, HandshakeError, PartyState, PrimeSource};

/// A failure to report: reason and blamed position.
struct Failure(String, Option<u16>);

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure(s, None)
    }
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
    let Ok(position) = verified.position_of(&state.identity.public()) else {
        tracing::warn!(%party_id, %session_id, "invited to a session that does not list this party");
        return;
    };
    let expires_at = verified.descriptor().expires_at;
    let remaining = Duration::from_secs(expires_at.saturating_sub(unix_now()));
    let work = run_session(&state, verified, position, &inv.join_token);
    let outcome = match tokio::time::timeout(remaining, work).await {
        Ok(r) => r,
        Err(_) => Err(Failure(
            "deadline passed before the protocol finished".into(),
            None,
        )),
    };
    if let Err(Failure(reason, blamed)) = outcome {
        tracing::warn!(%party_id, %session_id, %reason, "session failed");
        state
            .report(
                session_id,
                position,
                ReportBody::Failed { reason, blamed },
                expires_at,
            )
            .await;
    }
}

async fn prepare_input(
    state: &PartyState,
    v: &VerifiedDescriptor,
    position: u16,
) -> Result<SessionInput, Failure> {
    let d = v.descriptor();
    let store = &state.store;
    match &d.kind {
        SessionKind::Keygen { generate_aux: true } => {
            let primes = obtain_primes(state, d.session_id, position, d.expires_at).await?;
            Ok(SessionInput::Keygen(AuxSource::Generate(primes)))
        }
        SessionKind::Keygen {
            generate_aux: false,
        } => {
            let group = d.group_id();
            let aux = match store.aux_info(&group).await.map_err(|e| e.to_string())? {
                Some(a) => a,
                None => match &state.config.insecure_test_aux {
                    Some(dir) => {
                        let aux = load_test_aux(dir, d.parties, position)?;
                        store
                            .put_aux_info(&group, &aux)
                            .await
                            .map_err(|e| e.to_string())?;
                        aux
                    }
                    None => {
                        return Err("no aux info stored for this party group".to_string().into())
                    }
                },
            };
            Ok(SessionInput::Keygen(AuxSource::Existing(Box::new(aux))))
        }
        SessionKind::Sign { account_id, .. } | SessionKind::Presign { account_id } => {
            match store
                .key_share(account_id)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(share) => Ok(SessionInput::Share(Box::new(
                    state.tables.accelerate(share).await,
                ))),
                None => Err(format!("this party holds no share of account {account_id}").into()),
            }
        }
        SessionKind::OnlineSign {
            account_id,
            presignature_id,
            ..
        } => {
            // Deleted from the store here, before any partial signature
            // exists: a presignature is used once, whatever happens next.
            match store
                .take_presignature(&presignature_id.to_string(), account_id)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(p) => Ok(SessionInput::Presignature(Box::new(p))),
                None => Err(format!(
                    "presignature {presignature_id} is unknown to this party or already used"
                )
                .into()),
            }
        }
    }
}

async fn obtain_primes(
    state: &PartyState,
    session_id: Uuid,
    position: u16,
    expires_at: u64,
) -> Result<PrimeSet, Failure> {
    match &state.config.primes {
        PrimeSource::InsecureTestData { dir, index } => {
            tracing::warn!(party_id = %state.config.party_id, "INSECURE: using PUBLIC test primes");
            load_test_primes(dir, *index)
        }
        PrimeSource::Generate { threads, .. } => {
            // The refill pauses from here on and hands over what it found.
            let (_demand, partial) = state.demand_primes();
            if let Some(p) = state.store.take_primes().await.map_err(|e| e.to_string())? {
                // Not needed after all: give the found primes back.
                state.return_primes(partial);
                return Ok(p);
            }
            tracing::info!(party_id = %state.config.party_id, %session_id, "generating 4 safe primes (minutes with pure-Rust integers)");
            let progress = |percent: u8| ReportBody::Progress {
                stage: "primes".into(),
                round: 0,
                percent: Some(percent),
            };
            let have = partial.len();
            state
                .report(
                    session_id,
                    position,
                    progress(u8::try_from(have * 25).unwrap_or(100)),
                    expires_at,
                )
                .await;
            let threads = *threads;
            let started = std::time::Instant::now();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let party_id = state.config.party_id.clone();
            let generation = tokio::task::spawn_blocking(move || {
                partial.finish_parallel(threads, |done| {
                    tracing::info!(%party_id, %session_id, "safe prime {done}/4 found");
                    let _ = tx.send(done);
                })
            });
            while let Some(done) = rx.recv().await {
                let percent = u8::try_from(done * 25).unwrap_or(100);
                state
                    .report(session_id, position, progress(percent), expires_at)
                    .await;
            }
            let primes = generation
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            tracing::info!(party_id = %state.config.party_id, %session_id, elapsed = ?started.elapsed(), "primes ready");
            Ok(primes)
        }
    }
}

fn read_test_json(dir: &std::path::Path, name: &str) -> Result<serde_json::Value, Failure> {
    let text =
        std::fs::read_to_string(dir.join(name)).map_err(|e| format!("test data {name}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| Failure(format!("test data {name}: {e}"), None))
}

fn load_test_primes(dir: &std::path::Path, index: usize) -> Result<PrimeSet, Failure> {
    let v = read_test_json(dir, "primes.json")?;
    let h = v["parties"][index]
        .as_str()
        .ok_or("no test primes for this index".to_string())?;
    let bytes = hex::decode(h).map_err(|e| e.to_string())?;
    PrimeSet::from_bytes(&bytes).map_err(|e| Failure(e.to_string(), None))
}

fn load_test_aux(
    dir: &std::path::Path,
    n: u16,
    index: u16,
) -> Result<party_core::AuxInfo, Failure> {
    let v = read_test_json(dir, &format!("aux-n{n}.json"))?;
    let h = v["aux"][usize::from(index)]
        .as_str()
        .ok_or("no test aux info for this group size".to_string())?;
    let bytes = hex::decode(h).map_err(|e| e.to_string())?;
    party_core::codec::decode(&bytes).map_err(|e| Failure(e.to_string(), None))
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Joins the session's traffic on the router in use, moving to the next
/// router and retrying with backoff until the session's deadline. A refusal
/// by a router that knows the session (bad token, closed) is final.
async fn join(
    state: &PartyState,
    session_id: Uuid,
    token: &str,
    expires_at: u64,
) -> Result<Ws, Failure> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let (index, url) = state.routers.current();
        let attempt = router_handshake(url, |nonce| ClientToRouter::JoinSession {
            session_id,
            token: token.to_string(),
            identity: state.identity.public(),
            signature: state.identity.sign(&join_message(nonce, &session_id)),
        })
        .await;
        match attempt {
            Ok((ws, RouterToClient::Joined { .. })) => return Ok(ws),
            Ok((_, other)) => return Err(format!("unexpected router reply {other:?}").into()),
            Err(HandshakeError::Refused { code, message })
                if code != "shutting_down" && code != "not_ready" =>
            {
                return Err(format!("router refused ({code}): {message}").into())
            }
            Err(e) => {
                tracing::warn!(party_id = %state.config.party_id, %session_id, error = %e, "router unavailable, trying the next");
                state.routers.failed(index);
            }
        }
        if unix_now() >= expires_at {
            return Err("no router reachable before the deadline".to_string().into());
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Sends a report without waiting for it.
fn report_in_background(
    state: &Arc<PartyState>,
    session_id: Uuid,
    position: u16,
    body: ReportBody,
    expires_at: u64,
) {
    let state = state.clone();
    tokio::spawn(async move { state.report(session_id, position, body, expires_at).await });
}

/// Joins again (through the next router if this one is gone) and resends
/// every frame sent so far, until that succeeds or the deadline passes.
async fn rejoin(
    state: &PartyState,
    session_id: Uuid,
    token: &str,
    expires_at: u64,
    sent: &[Vec<u8>],
) -> Result<Ws, Failure> {
    'attempt: loop {
        let mut ws = join(state, session_id, token, expires_at).await?;
        for frame in sent {
            if let Err(e) = ws.send(Message::binary(frame.clone())).await {
                tracing::warn!(party_id = %state.config.party_id, %session_id, error = %e, "resend failed, rejoining");
                continue 'attempt;
            }
        }
        return Ok(ws);
    }
}

fn blame(e: &SessionError) -> Option<u16> {
    match e {
        SessionError::Protocol(party_core::driver::DriverError::BadMessage { sender, .. }) => {
            Some(*sender)
        }
        SessionError::Combine { suspect } => *suspect,
        _ => None,
    }
}

/// Runs CPU-heavy protocol steps off the async threads.
async fn step(
    session: PartySession,
    f: impl FnOnce(&mut PartySession) -> Result<Pump, SessionError> + Send + 'static,
) -> Result<(PartySession, Result<Pump, SessionError>), Failure> {
    tokio::task::spawn_blocking(move || {
        let mut session = session;
        let r = f(&mut session);
        (session, r)
    })
    .await
    .map_err(|e| Failure(format!("protocol task: {e}"), None))
}

async fn run_session(
    state: &Arc<PartyState>,
    verified: VerifiedDescriptor,
    position: u16,
    token: &str,
) -> Result<(), Failure> {
    let d = verified.descriptor().clone();
    let session_id = d.session_id;
    let party_id = &state.config.party_id;
    let input = prepare_input(state, &verified, position).await?;
    let mut ws = join(state, session_id, token, d.expires_at).await?;
    // `joined` and progress reports go out beside the protocol, which never
    // waits for the coordinator's database; results are awaited (finish).
    report_in_background(
        state,
        session_id,
        position,
        ReportBody::Joined,
        d.expires_at,
    );
    tracing::info!(%party_id, %session_id, position, kind = d.kind.name(), "joined session");
    let session = PartySession::new(verified, state.identity.clone(), input, unix_now())
        .map_err(|e| Failure(e.to_string(), None))?;
    // Every frame this party sent in the session, resent after each rejoin:
    // a frame written to a router that died before logging it would
    // otherwise be lost for good. Recipients drop copies they already have
    // as replays.
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let (mut session, first) = step(session, |s| s.start()).await?;
    let mut pump = first.map_err(|e| Failure(e.to_string(), blame(&e)))?;
    let mut last_progress = None;
    loop {
        for frame in std::mem::take(&mut pump.frames) {
            sent.push(frame.clone());
            if let Err(e) = ws.send(Message::binary(frame)).await {
                tracing::warn!(%party_id, %session_id, error = %e, "send failed, rejoining");
                ws = rejoin(state, session_id, token, d.expires_at, &sent).await?;
            }
        }
        if let Some(p) = pump.progress.last() {
            let key = (p.stage, p.round);
            if last_progress != Some(key) {
                last_progress = Some(key);
                report_in_background(
                    state,
                    session_id,
                    position,
                    ReportBody::Progress {
                        stage: p.stage.name().into(),
                        round: p.round,
                        percent: None,
                    },
                    d.expires_at,
                );
            }
        }
        if let Some(output) = pump.output.take() {
            return finish(state, &d, position, output).await;
        }
        let frame = loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => break b.to_vec(),
                Some(Ok(Message::Text(t))) => {
                    if let Ok(RouterToClient::SessionClosed { .. }) = serde_json::from_str(&t) {
                        return Err("the router closed the session".to_string().into());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    // Reconnect: the router replays buffered frames; those we
                    // already have are rejected as replays and dropped.
                    tracing::warn!(%party_id, %session_id, "session connection lost, rejoining");
                    ws = rejoin(state, session_id, token, d.expires_at, &sent).await?;
                }
            }
        };
        let (s, r) = step(session, move |s| s.handle_frame(&frame)).await?;
        session = s;
        pump = match r {
            Ok(p) => p,
            Err(e) if !e.is_fatal() => {
                tracing::debug!(%party_id, %session_id, error = %e, "frame dropped");
                Pump::default()
            }
            Err(e) => return Err(Failure(e.to_string(), blame(&e))),
        };
    }
}

async fn finish(
    state: &PartyState,
    d: &party_core::descriptor::SessionDescriptor,
    position: u16,
    output: SessionOutput,
) -> Result<(), Failure> {
    let session_id = d.session_id;
    match output {
        SessionOutput::Keygen {
            share,
            public_key,
            new_aux_info,
        } => {
            let account_id = session_id.to_string();
            let group = d.group_id();
            state
                .store
                .put_keygen_result(
                    &account_id,
                    &public_key,
                    &share,
                    new_aux_info.as_deref().map(|a| (group.as_str(), a)),
                )
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(party_id = %state.config.party_id, %session_id, "key share sealed and stored");
            state
                .report(
                    session_id,
                    position,
                    ReportBody::KeygenResult { public_key },
                    d.expires_at,
                )
                .await;
        }
        SessionOutput::Signature(signature) => {
            state
                .report(
                    session_id,
                    position,
                    ReportBody::Signature { signature },
                    d.expires_at,
                )
                .await;
        }
        SessionOutput::Presignature(p) => {
            state
                .store
                .put_presignature(&p)
                .await
                .map_err(|e| e.to_string())?;
            state
                .report(
                    session_id,
                    position,
                    ReportBody::PresignatureStored,
                    d.expires_at,
                )
                .await;
        }
        _ => return Err("unexpected session output".to_string().into()),
    }
    Ok(())
}
