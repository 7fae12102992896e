//! Sans-I/O drivers: one CGGMP24 protocol run as "bytes in, bytes out".
//!
//! The protocol library defines each protocol as an `async fn` over a
//! stream of incoming and a sink of outgoing messages. A driver owns that
//! future together with everything it borrows (execution ID, key share,
//! tracer), connects it to an in-memory mailbox, and polls it until it needs
//! a message it does not have (yield points inside long computations are
//! polled through). The driver is `Send + 'static`, so a tokio
//! task or a browser event handler can keep it between messages. A host:
//! 1. feeds every authenticated message with [`StageDriver::handle`];
//! 2. calls [`StageDriver::run`], which advances the protocol as far as the
//!    messages allow and returns what to send, progress, and at the end the
//!    output.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll as TaskPoll, Wake, Waker};

use cggmp24::progress::{Event, Tracer};
use cggmp24::round_based::{Incoming, MessageDestination, MessageType, MpcParty, Outgoing};
use cggmp24::signing::{Presignature, PresignaturePublicData};
use cggmp24::{ExecutionId, Signature};
use futures::{Sink, Stream};
use rand_core::OsRng;
use serde::{de::DeserializeOwned, Serialize};
use sha2::Sha256;

use crate::envelope::Stage;
use crate::primes::PrimeSet;
use crate::{AuxInfo, Curve, IncompleteKeyShare, KeyShare, Level};

/// Why a protocol run failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriverError {
    /// A peer's payload is not a message of this protocol.
    #[error("party {sender} sent an undecodable {stage} message")]
    BadMessage {
        /// protocol stage
        stage: &'static str,
        /// sender position
        sender: u16,
    },
    /// The protocol aborted (invalid proof, inconsistent broadcast, ...)
    /// without naming a culprit.
    #[error("{stage} failed: {reason}")]
    Protocol {
        /// protocol stage
        stage: &'static str,
        /// library's reason
        reason: String,
    },
    /// The protocol library aborted and blamed these parties (their
    /// positions in the session, ascending) for it: an invalid proof, a
    /// decommitment that does not match, an inconsistent share or broadcast.
    #[error("{stage} aborted by party {}: {reason}", culprits_text(.culprits))]
    Aborted {
        /// protocol stage
        stage: &'static str,
        /// positions of the blamed parties (never empty)
        culprits: Vec<u16>,
        /// library's reason
        reason: String,
    },
    /// The driver was used after it finished, or an internal invariant broke.
    #[error("{stage} driver misuse: {reason}")]
    Misuse {
        /// protocol stage
        stage: &'static str,
        /// what went wrong
        reason: &'static str,
    },
}

fn culprits_text(culprits: &[u16]) -> String {
    culprits
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl DriverError {
    /// The party the failure is blamed on (the first culprit the library
    /// named, or the sender of an undecodable message), if any.
    pub fn culprit(&self) -> Option<u16> {
        match self {
            DriverError::BadMessage { sender, .. } => Some(*sender),
            DriverError::Aborted { culprits, .. } => culprits.first().copied(),
            _ => None,
        }
    }
}

/// A progress event: which stage, which round, optional names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Protocol stage.
    pub stage: Stage,
    /// 1-based round counter within the stage (0 before the first round).
    pub round: u16,
    /// Round or step name reported by the library, if any.
    pub detail: Option<&'static str>,
    /// Whether the stage finished.
    pub finished: bool,
}

/// The result of one stage.
#[non_exhaustive]
pub enum StageOutput {
    /// Aux info of this party.
    AuxInfo(Box<AuxInfo>),
    /// DKG output (needs aux info to become a [`KeyShare`]).
    Keygen(Box<IncompleteKeyShare>),
    /// A signature (not yet normalised or checked by the caller).
    Signature(Signature<Curve>),
    /// A presignature and the public data to combine partial signatures.
    Presignature(Box<(Presignature<Curve>, PresignaturePublicData<Curve>)>),
}

impl std::fmt::Debug for StageOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StageOutput::AuxInfo(_) => "StageOutput::AuxInfo(<redacted>)",
            StageOutput::Keygen(_) => "StageOutput::Keygen(<redacted>)",
            StageOutput::Signature(_) => "StageOutput::Signature",
            StageOutput::Presignature(_) => "StageOutput::Presignature(<redacted>)",
        })
    }
}

/// A message to send: to one party (`Some(position)`) or to all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Recipient position, `None` for broadcast.
    pub recipient: Option<u16>,
    /// Encoded protocol message.
    pub payload: Vec<u8>,
}

/// What one call to [`StageDriver::run`] produced.
#[derive(Debug, Default)]
pub struct Step {
    /// Messages to send, in order.
    pub outgoing: Vec<OutgoingMessage>,
    /// Progress since the last call.
    pub progress: Vec<Progress>,
    /// The stage's output, once it finished.
    pub output: Option<StageOutput>,
}

/// One protocol run, driven by bytes.
pub trait StageDriver: Send {
    /// The stage this driver runs.
    fn stage(&self) -> Stage;
    /// Queues an authenticated message from `sender`.
    fn handle(&mut self, sender: u16, broadcast: bool, payload: &[u8]) -> Result<(), DriverError>;
    /// Advances the protocol as far as queued messages allow.
    fn run(&mut self) -> Result<Step, DriverError>;
}

#[derive(Clone)]
struct ProgressLog {
    stage: Stage,
    events: Arc<Mutex<(u16, Vec<Progress>)>>,
}

impl ProgressLog {
    fn new(stage: Stage) -> Self {
        Self {
            stage,
            events: Arc::new(Mutex::new((0, Vec::new()))),
        }
    }
    fn drain(&self) -> Vec<Progress> {
        match self.events.lock() {
            Ok(mut g) => std::mem::take(&mut g.1),
            Err(_) => Vec::new(),
        }
    }
}

impl Tracer for ProgressLog {
    fn trace_event(&mut self, event: Event) {
        let Ok(mut g) = self.events.lock() else {
            return;
        };
        let (round, detail, finished) = match event {
            Event::RoundBegins { name } => {
                g.0 += 1;
                (g.0, name, false)
            }
            Event::Stage { name } => (g.0, Some(name), false),
            Event::ProtocolEnds => (g.0, None, true),
            _ => return,
        };
        let stage = self.stage;
        g.1.push(Progress {
            stage,
            round,
            detail,
            finished,
        });
    }
}

/// Records that the protocol woke itself (a yield point).
struct WakeFlag(AtomicBool);

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

type BoxedProtocol = Pin<Box<dyn Future<Output = Result<StageOutput, DriverError>> + Send>>;

/// Messages shared between the driver and the protocol future.
struct Mailbox<M> {
    inbox: VecDeque<Incoming<M>>,
    outbox: Vec<Outgoing<M>>,
}

type SharedMailbox<M> = Arc<Mutex<Mailbox<M>>>;

/// The protocol's incoming stream: pending whenever the inbox is empty.
struct Inbox<M>(SharedMailbox<M>);

impl<M> Stream for Inbox<M> {
    type Item = Result<Incoming<M>, std::convert::Infallible>;
    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> TaskPoll<Option<Self::Item>> {
        match self.0.lock() {
            Ok(mut g) => match g.inbox.pop_front() {
                Some(m) => TaskPoll::Ready(Some(Ok(m))),
                None => TaskPoll::Pending,
            },
            // A poisoned lock ends the stream; the protocol then fails cleanly.
            Err(_) => TaskPoll::Ready(None),
        }
    }
}

/// The protocol's outgoing sink: always ready, collects messages.
struct Outbox<M>(SharedMailbox<M>);

impl<M> Sink<Outgoing<M>> for Outbox<M> {
    type Error = std::convert::Infallible;
    fn poll_ready(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> TaskPoll<Result<(), Self::Error>> {
        TaskPoll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, item: Outgoing<M>) -> Result<(), Self::Error> {
        if let Ok(mut g) = self.0.lock() {
            g.outbox.push(item);
        }
        Ok(())
    }
    fn poll_flush(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> TaskPoll<Result<(), Self::Error>> {
        TaskPoll::Ready(Ok(()))
    }
    fn poll_close(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> TaskPoll<Result<(), Self::Error>> {
        TaskPoll::Ready(Ok(()))
    }
}

type Party<M> = MpcParty<M, (Inbox<M>, Outbox<M>)>;

struct CggmpDriver<M> {
    stage: Stage,
    protocol: Option<BoxedProtocol>,
    mailbox: SharedMailbox<M>,
    next_id: u64,
    progress: ProgressLog,
}

impl<M> StageDriver for CggmpDriver<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    fn stage(&self) -> Stage {
        self.stage
    }

    fn handle(&mut self, sender: u16, broadcast: bool, payload: &[u8]) -> Result<(), DriverError> {
        let stage = self.stage.name();
        let msg: M =
            crate::codec::decode(payload).map_err(|_| DriverError::BadMessage { stage, sender })?;
        let incoming = Incoming {
            id: self.next_id,
            sender,
            msg_type: if broadcast {
                MessageType::Broadcast
            } else {
                MessageType::P2P
            },
            msg,
        };
        self.next_id += 1;
        self.mailbox
            .lock()
            .map_err(|_| DriverError::Misuse {
                stage,
                reason: "mailbox poisoned",
            })?
            .inbox
            .push_back(incoming);
        Ok(())
    }

    fn run(&mut self) -> Result<Step, DriverError> {
        let stage = self.stage.name();
        let Some(protocol) = self.protocol.as_mut() else {
            return Err(DriverError::Misuse {
                stage,
                reason: "protocol already finished",
            });
        };
        // The protocol waits either for an incoming message (the inbox then
        // returns Pending without waking) or yields during long computations
        // (the yield wakes the waker at once). Poll again after each yield, so
        // a Pending that ends the loop means "needs a message".
        let woken = Arc::new(WakeFlag(AtomicBool::new(false)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let polled = loop {
            match protocol.as_mut().poll(&mut cx) {
                TaskPoll::Pending if woken.0.swap(false, Ordering::SeqCst) => continue,
                other => break other,
            }
        };
        let mut step = Step::default();
        let outgoing = std::mem::take(
            &mut self
                .mailbox
                .lock()
                .map_err(|_| DriverError::Misuse {
                    stage,
                    reason: "mailbox poisoned",
                })?
                .outbox,
        );
        for out in outgoing {
            let recipient = match out.recipient {
                MessageDestination::AllParties => None,
                MessageDestination::OneParty(p) => Some(p),
            };
            let payload = crate::codec::encode(&out.msg).map_err(|_| DriverError::Misuse {
                stage,
                reason: "could not encode an outgoing message",
            })?;
            step.outgoing.push(OutgoingMessage { recipient, payload });
        }
        if let TaskPoll::Ready(result) = polled {
            self.protocol = None;
            step.output = Some(result?);
        }
        step.progress = self.progress.drain();
        Ok(step)
    }
}

fn sub_execution_id(eid: &[u8; 32], stage: Stage) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = Sha256::new();
    h.update(b"mpc/stage-execution-id/v1");
    h.update(eid);
    h.update([stage as u8]);
    h.finalize().into()
}

/// Maps a protocol library error to a [`DriverError`], keeping its culprits.
///
/// cggmp24's error types keep the blamed parties in private enums
/// (`AbortBlame { faulty_party, .. }` lists, `parties: [..]` lists); the
/// only public view of them is
/// the error's `Debug` form, which is read here. The reason is the error's
/// `Display` chain (no secrets: proofs and indices only).
fn protocol_error<E>(stage: Stage, e: E) -> DriverError
where
    E: std::error::Error,
{
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    let culprits = culprits_in(&format!("{e:?}"));
    let stage = stage.name();
    if culprits.is_empty() {
        DriverError::Protocol { stage, reason }
    } else {
        DriverError::Aborted {
            stage,
            culprits,
            reason,
        }
    }
}

/// Reads the blamed party indices from the `Debug` form of a cggmp24 abort:
/// `faulty_party: N` and `parties: [N, ..]`, the parties whose own message
/// failed a check (a proof, a decommitment, a Feldman share).
///
/// A failed reliability check (`...NotReliable(..)`, the echo round of
/// reliable broadcast) names nobody: cggmp24 lists there the parties whose
/// echo *differs from ours*, which are honest whenever the equivocator sent
/// us the odd message. Blaming them would let one equivocating party get an
/// honest one named, so such an abort has no culprit.
fn culprits_in(debug: &str) -> Vec<u16> {
    if debug.contains("NotReliable") {
        return Vec::new();
    }
    let mut found = Vec::new();
    let number_at = |s: &str| -> Option<u16> {
        let digits: String = s
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    for (i, _) in debug.match_indices("faulty_party:") {
        found.extend(number_at(&debug[i + "faulty_party:".len()..]));
    }
    for (i, _) in debug.match_indices("parties: [") {
        let rest = &debug[i + "parties: [".len()..];
        let list = rest.split(']').next().unwrap_or_default();
        found.extend(list.split(',').filter_map(number_at));
    }
    found.sort_unstable();
    found.dedup();
    found
}

fn boxed<M, F>(
    stage: Stage,
    progress: ProgressLog,
    protocol: impl FnOnce(Party<M>) -> F,
) -> Box<dyn StageDriver>
where
    M: Serialize + DeserializeOwned + Send + 'static,
    F: Future<Output = Result<StageOutput, DriverError>> + Send + 'static,
{
    let mailbox = Arc::new(Mutex::new(Mailbox {
        inbox: VecDeque::new(),
        outbox: Vec::new(),
    }));
    let party = MpcParty::connected((Inbox(mailbox.clone()), Outbox(mailbox.clone())));
    Box::new(CggmpDriver {
        stage,
        protocol: Some(Box::pin(protocol(party))),
        mailbox,
        next_id: 0,
        progress,
    })
}

/// Aux info generation for party `i` of `n` from pregenerated primes.
pub fn aux_info(eid: &[u8; 32], i: u16, n: u16, primes: PrimeSet) -> Box<dyn StageDriver> {
    let stage = Stage::AuxInfo;
    let eid = sub_execution_id(eid, stage);
    let progress = ProgressLog::new(stage);
    let mut tracer = progress.clone();
    let protocol = move |party| async move {
        let primes = primes.into_inner().map_err(|_| DriverError::Misuse {
            stage: stage.name(),
            reason: "the primes do not fit the security level",
        })?;
        cggmp24::aux_info_gen::<Level>(ExecutionId::new(&eid), i, n, primes)
            .set_progress_tracer(&mut tracer)
            .start(&mut OsRng, party)
            .await
            .map(|aux| StageOutput::AuxInfo(Box::new(aux)))
            .map_err(|e| protocol_error(stage, e))
    };
    boxed::<cggmp24::key_refresh::msg::Msg<Sha256, Level>, _>(stage, progress, protocol)
}

/// Threshold DKG for party `i` of `n` with threshold `t`.
pub fn keygen(eid: &[u8; 32], i: u16, t: u16, n: u16) -> Box<dyn StageDriver> {
    let stage = Stage::Keygen;
    let eid = sub_execution_id(eid, stage);
    let progress = ProgressLog::new(stage);
    let mut tracer = progress.clone();
    let protocol = move |party| async move {
        cggmp24::keygen::<Curve>(ExecutionId::new(&eid), i, n)
            .set_security_level::<Level>()
            .set_threshold(t)
            .set_progress_tracer(&mut tracer)
            .start(&mut OsRng, party)
            .await
            .map(|share| StageOutput::Keygen(Box::new(share)))
            .map_err(|e| protocol_error(stage, e))
    };
    boxed::<cggmp24::keygen::ThresholdMsg<Curve, Level, Sha256>, _>(stage, progress, protocol)
}

/// Full signing of a 32-byte hash by signer `i` (position among the signers).
/// `keygen_indices[j]` is signer j's index at keygen.
pub fn sign(
    eid: &[u8; 32],
    i: u16,
    keygen_indices: Vec<u16>,
    share: KeyShare,
    message_hash: [u8; 32],
) -> Box<dyn StageDriver> {
    signing(eid, i, keygen_indices, share, Some(message_hash))
}

/// Presignature generation by signer `i`.
pub fn presign(
    eid: &[u8; 32],
    i: u16,
    keygen_indices: Vec<u16>,
    share: KeyShare,
) -> Box<dyn StageDriver> {
    signing(eid, i, keygen_indices, share, None)
}

fn signing(
    eid: &[u8; 32],
    i: u16,
    keygen_indices: Vec<u16>,
    share: KeyShare,
    message_hash: Option<[u8; 32]>,
) -> Box<dyn StageDriver> {
    let stage = if message_hash.is_some() {
        Stage::Sign
    } else {
        Stage::Presign
    };
    let eid = sub_execution_id(eid, stage);
    let progress = ProgressLog::new(stage);
    let mut tracer = progress.clone();
    let protocol = move |party| async move {
        let builder = cggmp24::signing(ExecutionId::new(&eid), i, &keygen_indices, &share)
            .set_progress_tracer(&mut tracer);
        match message_hash {
            Some(hash) => {
                let data = cggmp24::PrehashedDataToSign::from_scalar(
                    generic_ec::Scalar::<Curve>::from_be_bytes_mod_order(hash),
                );
                builder
                    .sign(&mut OsRng, party, &data)
                    .await
                    .map(StageOutput::Signature)
            }
            None => builder
                .generate_presignature(&mut OsRng, party)
                .await
                .map(|p| StageOutput::Presignature(Box::new(p))),
        }
        .map_err(|e| protocol_error(stage, e))
    };
    boxed::<cggmp24::signing::msg::Msg<Curve, Sha256>, _>(stage, progress, protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn culprits_are_read_from_every_blame_form() {
        let blame = "KeygenError(Aborted(InvalidSchnorrProof([AbortBlame { faulty_party: 2, data_message: 5, proof_message: 9 }, AbortBlame { faulty_party: 0, data_message: 1, proof_message: 3 }])))";
        assert_eq!(culprits_in(blame), vec![0, 2]);
        let feldman = "KeygenError(Aborted(FeldmanVerificationFailed { parties: [1, 3] }))";
        assert_eq!(culprits_in(feldman), vec![1, 3]);
        // A failed echo check lists the parties whose echo differs from
        // ours: not culprits (an equivocator makes honest parties differ).
        let reliable = "KeygenError(Aborted(Round1NotReliable([(4, 17), (1, 2)])))";
        assert!(culprits_in(reliable).is_empty());
        let reliable_blame = "SigningError(Aborted(Round1aNotReliable([AbortBlame { faulty_party: 2, data_message: 5, proof_message: 5 }])))";
        assert!(culprits_in(reliable_blame).is_empty());
        assert!(culprits_in("SigningError(Aborted(MismatchedDelta))").is_empty());
        assert!(culprits_in("parties: []").is_empty());
    }

    #[test]
    fn a_library_abort_keeps_its_culprit() {
        #[derive(Debug, thiserror::Error)]
        #[error("signing protocol failed")]
        struct Fake(Vec<AbortLike>);
        #[derive(Debug)]
        #[allow(dead_code)]
        struct AbortLike {
            faulty_party: u16,
        }
        let e = protocol_error(Stage::Sign, Fake(vec![AbortLike { faulty_party: 1 }]));
        assert_eq!(e.culprit(), Some(1));
        assert!(matches!(e, DriverError::Aborted { ref culprits, .. } if culprits == &[1]));
        assert_eq!(
            e.to_string(),
            "sign aborted by party 1: signing protocol failed"
        );
        let plain = protocol_error(Stage::Sign, Fake(vec![]));
        assert_eq!(plain.culprit(), None);
        assert!(matches!(plain, DriverError::Protocol { .. }));
    }
}
