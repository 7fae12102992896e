//! [`PartyHost`]: the state machine itself.

use std::collections::VecDeque;

use super::reports::{Persistence, Reports, Send, Settled};
use super::router::{Link, Routers};
use super::{
    Action, Admission, HostConfig, HostError, InputRequest, Outcome, ProgressInfo, ReportOutcome,
    UserApproved, REPORT_GRACE_MS,
};
use crate::authz::{authorize, AuthzError, Policy};
use crate::descriptor::{SessionKind, VerifiedDescriptor};
use crate::identity::PartyIdentity;
use crate::session::{PartySession, Pump, SessionError, SessionInput, SessionOutput};
use crate::wire::{join_message, ClientToRouter, Report, ReportBody, RouterToClient, SignedReport};

/// Router error codes after which another router (or a later attempt) may
/// accept the join; every other refusal is final.
const TRANSIENT_REFUSALS: [&str; 2] = ["shutting_down", "not_ready"];

#[derive(Debug)]
enum Phase {
    /// Waiting for the stored policy or for the admission record.
    Admission,
    /// Waiting for the host's input.
    Input,
    /// The protocol runs (or waits for the router).
    Running,
    /// The output was handed to the host to keep; its report follows.
    Storing(ReportBody),
    /// The final report (result or failure) is out.
    Reporting(Outcome),
    /// Over.
    Done,
}

/// One party's session, from the verified descriptor to the final report.
/// See the [module documentation](super).
pub struct PartyHost {
    descriptor: VerifiedDescriptor,
    identity: PartyIdentity,
    position: u16,
    join_token: String,
    phase: Phase,
    session: Option<PartySession>,
    routers: Routers,
    /// Every frame sent in this session, resent after each rejoin.
    sent: Vec<Vec<u8>>,
    /// The last progress step reported.
    last_progress: Option<(String, u16, Option<u8>)>,
    reports: Reports,
    /// The session's deadline, Unix ms.
    deadline: u64,
    actions: VecDeque<Action>,
    /// The policy admission checked against (kept for a policy change).
    stored_policy: Option<Policy>,
}

impl std::fmt::Debug for PartyHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyHost")
            .field("session_id", &self.descriptor.descriptor().session_id)
            .field("position", &self.position)
            .field("phase", &self.phase)
            .field("link", &self.routers.link)
            .field("sent", &self.sent.len())
            .finish_non_exhaustive()
    }
}

fn request_for(d: &VerifiedDescriptor, position: u16) -> Option<InputRequest> {
    let desc = d.descriptor();
    Some(match &desc.kind {
        SessionKind::Keygen {
            generate_aux: true, ..
        }
        | SessionKind::AuxInfo {} => InputRequest::Primes,
        SessionKind::Keygen {
            generate_aux: false,
            aux_fingerprint,
            ..
        } => InputRequest::AuxInfo {
            group_id: desc.group_id(),
            parties: desc.parties,
            index: position,
            fingerprint: *aux_fingerprint,
        },
        SessionKind::Sign { account_id, .. } | SessionKind::Presign { account_id } => {
            InputRequest::Share {
                account_id: account_id.clone(),
            }
        }
        SessionKind::OnlineSign {
            account_id,
            presignature_id,
            ..
        } => InputRequest::Presignature {
            presignature_id: *presignature_id,
            account_id: account_id.clone(),
        },
        SessionKind::PolicyChange { .. } => return None,
    })
}

/// Whether the descriptor signs exactly what the user approved.
fn matches_approved(d: &VerifiedDescriptor, approved: &UserApproved) -> bool {
    match (&d.descriptor().kind, approved) {
        (SessionKind::Sign { message_hash, .. }, UserApproved::Hash(h)) => message_hash == h,
        (SessionKind::Sign { message_hash, .. }, UserApproved::Message { message, digest }) => {
            digest.hash(message) == *message_hash
        }
        (
            SessionKind::OnlineSign {
                message, digest, ..
            },
            UserApproved::Message {
                message: m,
                digest: g,
            },
        ) => message == m && digest == g,
        _ => false,
    }
}

impl PartyHost {
    /// Takes an invitation's verified descriptor. Queues the input request
    /// ([`Action::NeedInput`]). `now` is Unix milliseconds.
    pub fn new(
        descriptor: VerifiedDescriptor,
        identity: PartyIdentity,
        config: HostConfig,
        now: u64,
    ) -> Result<Self, HostError> {
        let position = descriptor.position_of(&identity.public())?;
        if config.router_urls.is_empty() {
            return Err(HostError::NoRouter);
        }
        let deadline = descriptor.descriptor().expires_at.saturating_mul(1000);
        let mut host = Self {
            identity,
            position,
            join_token: config.join_token,
            phase: Phase::Admission,
            session: None,
            routers: Routers::new(config.router_urls, config.first_router),
            sent: Vec::new(),
            last_progress: None,
            reports: Reports::new(
                config.coordinators,
                deadline.saturating_add(REPORT_GRACE_MS),
            ),
            deadline,
            actions: VecDeque::new(),
            stored_policy: None,
            descriptor,
        };
        host.tick(now);
        if let Some(approved) = &config.approved {
            if !matches_approved(&host.descriptor, approved) {
                host.refuse(&AuthzError::NotWhatWasApproved);
                return Ok(host);
            }
        }
        match &host.descriptor.descriptor().kind {
            SessionKind::Sign { account_id, .. }
            | SessionKind::OnlineSign { account_id, .. }
            | SessionKind::PolicyChange { account_id, .. } => {
                let account_id = account_id.clone();
                host.actions.push_back(Action::NeedPolicy { account_id });
            }
            SessionKind::Keygen { .. } | SessionKind::Presign { .. } | SessionKind::AuxInfo {} => {
                host.provide_policy(None, now);
            }
        }
        Ok(host)
    }

    /// The host's answer to [`Action::NeedPolicy`]: this party's own stored
    /// policy of the account (`None`: the account has none). The approvals
    /// are checked against it; then the admission is to be recorded.
    pub fn provide_policy(&mut self, policy: Option<Policy>, now: u64) {
        self.tick(now);
        if !matches!(self.phase, Phase::Admission) {
            return;
        }
        let d = self.descriptor.descriptor();
        let approved = match (&policy, &d.kind) {
            (None, SessionKind::PolicyChange { .. }) => Err(AuthzError::PolicyChangeRefused(
                "this party holds no policy for the account".to_string(),
            )),
            (None, _) => Ok(None),
            (Some(p), _) => authorize(d, p, now / 1000),
        };
        match approved {
            Ok(approved) => {
                self.stored_policy = policy;
                self.actions.push_back(Action::Record(Admission {
                    session_id: d.session_id,
                    approved,
                }));
            }
            Err(e) => self.refuse(&e),
        }
    }

    /// The host's answer to [`Action::Record`]: recorded, or refused (a
    /// seen session, a used request id, the rate limit).
    pub fn admission_recorded(&mut self, result: Result<(), AuthzError>, now: u64) {
        self.tick(now);
        if !matches!(self.phase, Phase::Admission) {
            return;
        }
        if let Err(e) = result {
            self.refuse(&e);
            return;
        }
        if let SessionKind::PolicyChange { account_id, policy } = &self.descriptor.descriptor().kind
        {
            let Some(previous) = self.stored_policy.as_ref().map(Policy::hash) else {
                self.fail("no stored policy".to_string(), None, now);
                return;
            };
            self.phase = Phase::Storing(ReportBody::PolicyChanged {
                policy_hash: policy.hash(),
            });
            self.actions.push_back(Action::StorePolicy {
                account_id: account_id.clone(),
                policy: policy.clone(),
                previous,
            });
            return;
        }
        match request_for(&self.descriptor, self.position) {
            Some(request) => {
                self.phase = Phase::Input;
                self.actions.push_back(Action::NeedInput(request));
            }
            None => self.fail("the session needs no input".to_string(), None, now),
        }
    }

    /// This party's position in the session.
    pub fn position(&self) -> u16 {
        self.position
    }

    /// The verified descriptor.
    pub fn descriptor(&self) -> &VerifiedDescriptor {
        &self.descriptor
    }

    /// Whether the session is over ([`Action::Finished`] was queued).
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// The next action to execute, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to call [`PartyHost::tick`] next (Unix ms), if anything waits
    /// for time.
    pub fn wake_at(&self) -> Option<u64> {
        let deadline = matches!(self.phase, Phase::Admission | Phase::Input | Phase::Running)
            .then_some(self.deadline);
        let backoff = match self.routers.link {
            Link::Backoff(t) => Some(t),
            _ => None,
        };
        let reports = (!self.is_finished())
            .then(|| self.reports.wake_at())
            .flatten();
        [deadline, backoff, reports].into_iter().flatten().min()
    }

    /// Time passed: fails the session at its deadline, reconnects after a
    /// backoff, resends reports whose retry time came.
    pub fn tick(&mut self, now: u64) {
        if self.is_finished() {
            return;
        }
        if matches!(self.phase, Phase::Admission | Phase::Input | Phase::Running)
            && now >= self.deadline
        {
            let reason = if self.routers.link != Link::Joined && self.routers.failures > 0 {
                "no router reachable before the deadline"
            } else {
                "deadline passed before the protocol finished"
            };
            self.fail(reason.to_string(), None, now);
        }
        if let Link::Backoff(t) = self.routers.link {
            if t <= now && matches!(self.phase, Phase::Running) {
                self.connect();
            }
        }
        for send in self.reports.due(now) {
            self.send_report(send);
        }
    }

    /// The host's answer to [`Action::NeedInput`].
    pub fn provide_input(&mut self, input: SessionInput, now: u64) {
        self.tick(now);
        if !matches!(self.phase, Phase::Input) {
            return;
        }
        let session = PartySession::new(
            self.descriptor.clone(),
            self.identity.clone(),
            input,
            now / 1000,
        );
        match session {
            Ok(s) => {
                self.session = Some(s);
                self.phase = Phase::Running;
                self.connect();
            }
            Err(e) => self.fail(e.to_string(), None, now),
        }
    }

    /// The host could not supply the input (nothing stored, store failure).
    pub fn input_failed(&mut self, reason: String, now: u64) {
        self.tick(now);
        if matches!(self.phase, Phase::Input) {
            self.fail(reason, None, now);
        }
    }

    /// Progress while the host gathers the input (e.g. primes found).
    pub fn input_progress(&mut self, stage: &str, percent: u8, now: u64) {
        self.tick(now);
        if matches!(self.phase, Phase::Input) {
            self.progress(stage.to_string(), 0, Some(percent), None);
        }
    }

    /// The session connection closed or could not be opened.
    pub fn connection_closed(&mut self, now: u64) {
        self.tick(now);
        if self.routers.open() {
            self.lost(now);
        }
    }

    /// A text message on the session connection.
    pub fn text_received(&mut self, text: &str, now: u64) {
        self.tick(now);
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        let msg = serde_json::from_str::<RouterToClient>(text);
        match (self.routers.link, msg) {
            (Link::Connecting, Ok(RouterToClient::Challenge { nonce })) => {
                let session_id = self.descriptor.descriptor().session_id;
                let join = ClientToRouter::JoinSession {
                    session_id,
                    token: self.join_token.clone(),
                    identity: self.identity.public(),
                    signature: self.identity.sign(&join_message(&nonce, &session_id)),
                };
                match serde_json::to_string(&join) {
                    Ok(text) => {
                        self.routers.link = Link::Answered;
                        self.actions.push_back(Action::SendText(text));
                    }
                    Err(e) => self.fail(e.to_string(), None, now),
                }
            }
            (Link::Connecting, _) => self.lost_with_close(now),
            (Link::Answered, Ok(RouterToClient::Joined { .. })) => self.joined(now),
            (Link::Answered, Ok(RouterToClient::Error { code, message })) => {
                if TRANSIENT_REFUSALS.contains(&code.as_str()) {
                    self.lost_with_close(now);
                } else {
                    self.fail(format!("router refused ({code}): {message}"), None, now);
                }
            }
            (Link::Answered, Ok(other)) => {
                self.fail(format!("unexpected router reply {other:?}"), None, now);
            }
            (Link::Answered, Err(_)) => self.lost_with_close(now),
            (Link::Joined, Ok(RouterToClient::SessionClosed { .. })) => {
                self.fail("the router closed the session".to_string(), None, now);
            }
            _ => {}
        }
    }

    /// A binary frame on the session connection (protocol work: CPU-heavy).
    pub fn frame_received(&mut self, frame: &[u8], now: u64) {
        self.tick(now);
        if !matches!(self.phase, Phase::Running) || self.routers.link != Link::Joined {
            return;
        }
        let Some(session) = self.session.as_mut() else {
            return;
        };
        match session.handle_frame(frame) {
            Ok(pump) => self.apply(pump, now),
            Err(e) if !e.is_fatal() => self.actions.push_back(Action::FrameDropped(e.to_string())),
            Err(e) => self.fail_session(&e, now),
        }
    }

    /// The host kept the output ([`Action::StoreOutput`]).
    pub fn output_stored(&mut self, now: u64) {
        self.tick(now);
        let Phase::Storing(body) =
            std::mem::replace(&mut self.phase, Phase::Reporting(Outcome::Completed))
        else {
            return;
        };
        self.report(body, Persistence::Final);
    }

    /// The host could not keep the output.
    pub fn output_store_failed(&mut self, reason: String, now: u64) {
        self.tick(now);
        if matches!(self.phase, Phase::Storing(_)) {
            self.fail(reason, None, now);
        }
    }

    /// The host could not carry out a step (e.g. a protocol task it ran
    /// died): the session fails with `reason` and a failure report.
    pub fn host_failed(&mut self, reason: String, now: u64) {
        self.tick(now);
        self.fail(reason, None, now);
    }

    /// The outcome of one [`Action::SendReport`].
    pub fn report_result(&mut self, id: u64, outcome: ReportOutcome, now: u64) {
        if self.is_finished() {
            return;
        }
        if self.reports.outcome(id, outcome, now) == Settled::Final {
            if let Phase::Reporting(o) = std::mem::replace(&mut self.phase, Phase::Done) {
                self.actions.push_back(Action::Finished(o));
            }
        }
        self.tick(now);
    }

    fn connect(&mut self) {
        let (router, url) = self.routers.connect();
        self.actions.push_back(Action::Connect { router, url });
    }

    fn lost_with_close(&mut self, now: u64) {
        self.actions.push_back(Action::CloseConnection);
        self.lost(now);
    }

    fn lost(&mut self, now: u64) {
        let (router, at_once) = self.routers.lost(now);
        self.actions.push_back(Action::RouterFailed { router });
        if at_once {
            self.connect();
        }
    }

    fn joined(&mut self, now: u64) {
        let (router, _) = self.routers.current();
        let rejoin = self.routers.ever_joined;
        self.routers.joined();
        self.routers.ever_joined = true;
        self.actions.push_back(Action::Joined { router, rejoin });
        if rejoin {
            // A frame written to a router that died before logging it would
            // otherwise be lost for good.
            for frame in &self.sent {
                self.actions.push_back(Action::SendFrame(frame.clone()));
            }
            return;
        }
        self.report(ReportBody::Joined, Persistence::Retried);
        let Some(session) = self.session.as_mut() else {
            return;
        };
        match session.start() {
            Ok(pump) => self.apply(pump, now),
            Err(e) => self.fail_session(&e, now),
        }
    }

    fn apply(&mut self, mut pump: Pump, _now: u64) {
        for frame in std::mem::take(&mut pump.frames) {
            self.sent.push(frame.clone());
            self.actions.push_back(Action::SendFrame(frame));
        }
        // Every round that began in this step, in order (a step that
        // sends round r's messages also begins round r + 1): each is one
        // progress report and one place a test kill point can name.
        for p in std::mem::take(&mut pump.progress) {
            self.progress(p.stage.name().to_string(), p.round, None, p.detail);
        }
        if let Some(output) = pump.output.take() {
            let body = match &output {
                SessionOutput::Keygen {
                    public_key, share, ..
                } => ReportBody::KeygenResult {
                    public_key: *public_key,
                    aux_fingerprint: Some(crate::aux_fingerprint::aux_fingerprint(&share.aux)),
                    policy_hash: match &self.descriptor.descriptor().kind {
                        SessionKind::Keygen {
                            policy: Some(p), ..
                        } => Some(p.hash()),
                        _ => None,
                    },
                },
                SessionOutput::Signature(signature) => ReportBody::Signature {
                    signature: *signature,
                },
                SessionOutput::Presignature(_) => ReportBody::PresignatureStored,
                SessionOutput::AuxInfo(aux) => ReportBody::AuxInfoStored {
                    aux_fingerprint: crate::aux_fingerprint::aux_fingerprint(aux),
                },
            };
            self.close();
            self.session = None;
            self.phase = Phase::Storing(body);
            self.actions.push_back(Action::StoreOutput(output));
        }
    }

    fn progress(
        &mut self,
        stage: String,
        round: u16,
        percent: Option<u8>,
        detail: Option<&'static str>,
    ) {
        let key = (stage, round, percent);
        if self.last_progress.as_ref() == Some(&key) {
            return;
        }
        let (stage, round, percent) = key.clone();
        self.last_progress = Some(key);
        self.actions.push_back(Action::Progress(ProgressInfo {
            stage: stage.clone(),
            round,
            percent,
            detail,
        }));
        self.report(
            ReportBody::Progress {
                stage,
                round,
                percent,
            },
            Persistence::BestEffort,
        );
    }

    fn close(&mut self) {
        if self.routers.open() {
            self.actions.push_back(Action::CloseConnection);
        }
        self.routers.link = Link::Idle;
    }

    fn fail_session(&mut self, e: &SessionError, now: u64) {
        self.fail(e.to_string(), e.culprit(), now);
    }

    /// Refuses the session before it started: a report with the typed
    /// reason; nothing is recorded, no connection opened, no frame sent.
    fn refuse(&mut self, e: &AuthzError) {
        self.refuse_with(e.code().to_string(), e.to_string());
    }

    /// The host refuses the session before it started, with a stable code
    /// and a reason (no secrets): e.g. a server party at its session bound
    /// (`party_busy`). Only before admission: nothing was asked of the host
    /// yet that matters (a pending policy read is dropped), nothing is
    /// recorded, no connection opened, no frame sent; the refusal report is
    /// the session's only action. Later it does nothing.
    pub fn host_refused(&mut self, code: &str, reason: String, now: u64) {
        self.tick(now);
        if !matches!(self.phase, Phase::Admission) {
            return;
        }
        self.actions.clear();
        self.refuse_with(code.to_string(), reason);
    }

    fn refuse_with(&mut self, code: String, reason: String) {
        if matches!(self.phase, Phase::Reporting(_) | Phase::Done) {
            return;
        }
        self.phase = Phase::Reporting(Outcome::Failed {
            reason: format!("refused ({code}): {reason}"),
            blamed: None,
        });
        self.report(ReportBody::Refused { code, reason }, Persistence::Final);
    }

    /// Ends the session with a failure report (retried like a result).
    fn fail(&mut self, reason: String, blamed: Option<u16>, _now: u64) {
        if matches!(self.phase, Phase::Reporting(_) | Phase::Done) {
            return;
        }
        self.close();
        self.session = None;
        self.phase = Phase::Reporting(Outcome::Failed {
            reason: reason.clone(),
            blamed,
        });
        self.report(ReportBody::Failed { reason, blamed }, Persistence::Final);
    }

    fn report(&mut self, body: ReportBody, persistence: Persistence) {
        let report = Report {
            session_id: self.descriptor.descriptor().session_id,
            position: self.position,
            body,
        };
        let signed =
            SignedReport::sign(&report, &self.identity).and_then(|s| serde_json::to_string(&s));
        match signed {
            Ok(body) => {
                let send = self.reports.push(body, persistence);
                self.send_report(send);
            }
            // Unreachable for these types; a final report that cannot be
            // written still ends the session.
            Err(_) if persistence == Persistence::Final => self.finish_now(),
            Err(_) => {}
        }
    }

    fn finish_now(&mut self) {
        if let Phase::Reporting(o) = std::mem::replace(&mut self.phase, Phase::Done) {
            self.actions.push_back(Action::Finished(o));
        }
    }

    fn send_report(&mut self, send: Send) {
        self.actions.push_back(Action::SendReport {
            id: send.id,
            body: send.body,
            best_effort: send.best_effort,
        });
    }
}
