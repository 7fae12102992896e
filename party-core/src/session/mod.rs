//! A party's whole session: verified descriptor + secure channel + drivers.
//!
//! [`PartySession`] is what hosts run. It is created from a
//! [`VerifiedDescriptor`] (so from a descriptor signed by the coordinator),
//! takes sealed frames in ([`PartySession::handle_frame`]) and gives sealed
//! frames, progress and finally a [`SessionOutput`] out ([`Pump`]). A keygen
//! that generates aux info runs two stages (aux info, then DKG) over the same
//! channel; frames of a later stage that arrive early are kept until it starts.
//!
//! A session with p2p messages opens with this party's signed ephemeral key
//! ([`crate::envelope::Stage::SessionKey`]), sent with the first round's
//! messages. A p2p payload for a peer whose key has not arrived is held and
//! sealed the moment it does; a p2p frame that arrives before its sender's key
//! is held (up to [`MAX_HELD_FRAMES`]) and opened then. Broadcast-only
//! sessions (online signing) send no key and never wait. When the session
//! ends the ephemeral secret and the derived keys are forgotten (zeroized).

#[cfg(feature = "adversary")]
mod adversary;
mod io;
mod keys;
mod online;

use std::collections::VecDeque;

use cggmp24::key_share::AnyKeyShare as _;
use cggmp24::signing::PartialSignature;
use zeroize::Zeroizing;

#[cfg(feature = "adversary")]
pub use adversary::{Crafted, Deviation};
pub use io::{AuxSource, Pump, SessionError, SessionInput, SessionOutput, MAX_HELD_FRAMES};
pub use online::StoredPresignature;

use crate::descriptor::{SessionKind, VerifiedDescriptor};
use crate::driver::{self, DriverError, StageDriver, StageOutput, Step};
use crate::envelope::{Channel, EnvelopeError, Inbound, Stage};
use crate::identity::PartyIdentity;
use crate::signature::{public_key_of, RecoverableSignature};
use crate::{AuxInfo, Curve, KeyShare};
use online::{message_data, OnlineState};

enum Plan {
    /// Run DKG once aux info is known.
    KeygenAfterAux,
    /// Nothing after the current stage.
    Done,
}

/// One party's run of one session.
pub struct PartySession {
    descriptor: VerifiedDescriptor,
    channel: Channel,
    me: u16,
    current: Option<Box<dyn StageDriver>>,
    online: Option<OnlineState>,
    plan: Plan,
    early: VecDeque<Inbound>,
    aux: Option<Box<AuxInfo>>,
    aux_is_new: bool,
    share: Option<Box<KeyShare>>,
    finished: bool,
    /// p2p payloads waiting for their recipient's session key.
    pending_out: Vec<(Stage, u16, Zeroizing<Vec<u8>>)>,
    /// p2p frames that arrived before their sender's session key.
    held: Vec<Vec<u8>>,
    /// TEST-ONLY: this party's deviation from the protocol.
    #[cfg(feature = "adversary")]
    adversary: adversary::Adversary,
}

impl std::fmt::Debug for PartySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartySession")
            .field("session_id", &self.descriptor.descriptor().session_id)
            .field("me", &self.me)
            .field("stage", &self.current.as_ref().map(|d| d.stage()))
            .finish_non_exhaustive()
    }
}

impl Drop for PartySession {
    /// The Paillier primes this session still holds (its copy of the share
    /// or aux info) are wiped; the channel's keys zeroize themselves.
    fn drop(&mut self) {
        if let Some(aux) = self.aux.take() {
            crate::primes::wipe_aux_info(*aux);
        }
        if let Some(share) = self.share.take() {
            crate::primes::wipe_key_share(*share);
        }
    }
}

impl PartySession {
    /// Prepares this party's side of a session. `now` (Unix seconds) is
    /// checked against the descriptor's deadline.
    pub fn new(
        descriptor: VerifiedDescriptor,
        identity: PartyIdentity,
        input: SessionInput,
        now: u64,
    ) -> Result<Self, SessionError> {
        descriptor.check_not_expired(now)?;
        let me = descriptor.position_of(&identity.public())?;
        let d = descriptor.descriptor().clone();
        for (k, p) in d.participants.iter().enumerate() {
            if p.identity.validate().is_err() {
                return Err(SessionError::InvalidIdentity {
                    position: u16::try_from(k).unwrap_or(u16::MAX),
                });
            }
        }
        let eid = descriptor.execution_id();
        let channel = Channel::new(
            d.session_id,
            eid,
            me,
            identity,
            d.participants.iter().map(|p| p.identity).collect(),
        );
        let keygen_indices: Vec<u16> = d.participants.iter().map(|p| p.keygen_index).collect();
        let my_keygen_index = keygen_indices[usize::from(me)];
        let mut session = Self {
            descriptor,
            channel,
            me,
            current: None,
            online: None,
            plan: Plan::Done,
            early: VecDeque::new(),
            aux: None,
            aux_is_new: false,
            share: None,
            finished: false,
            pending_out: Vec::new(),
            held: Vec::new(),
            #[cfg(feature = "adversary")]
            adversary: adversary::Adversary::default(),
        };
        let check_share = |share: &KeyShare| -> Result<(), SessionError> {
            if share.i != my_keygen_index {
                return Err(SessionError::InputMismatch(
                    "key share index differs from the descriptor",
                ));
            }
            if share.n() != d.parties || share.min_signers() != d.threshold {
                return Err(SessionError::InputMismatch(
                    "key share t/n differ from the descriptor",
                ));
            }
            Ok(())
        };
        match (&d.kind, input) {
            (SessionKind::AuxInfo {}, SessionInput::Keygen(AuxSource::Generate(primes))) => {
                session.current = Some(driver::aux_info(&eid, me, d.parties, primes));
            }
            (
                SessionKind::Keygen {
                    generate_aux,
                    aux_fingerprint,
                    ..
                },
                SessionInput::Keygen(aux),
            ) => {
                match (generate_aux, aux) {
                    (true, AuxSource::Generate(primes)) => {
                        session.current = Some(driver::aux_info(&eid, me, d.parties, primes));
                        session.plan = Plan::KeygenAfterAux;
                    }
                    (false, AuxSource::Existing(aux)) => {
                        if aux.N.len() != usize::from(d.parties) {
                            return Err(SessionError::InputMismatch(
                                "aux info is for another party group",
                            ));
                        }
                        // The aux info the coordinator named (the one every
                        // party of the group reported), checked here, not
                        // only by the host's store lookup.
                        if let Some(named) = aux_fingerprint {
                            if crate::aux_fingerprint::aux_fingerprint(&aux) != *named {
                                return Err(SessionError::InputMismatch(
                                    "aux info is not the one the descriptor names",
                                ));
                            }
                        }
                        session.aux = Some(aux);
                        session.current = Some(driver::keygen(&eid, me, d.threshold, d.parties));
                    }
                    _ => {
                        return Err(SessionError::InputMismatch(
                            "aux source does not match the descriptor",
                        ))
                    }
                }
            }
            (SessionKind::Sign { message_hash, .. }, SessionInput::Share(share)) => {
                check_share(&share)?;
                session.current = Some(driver::sign(
                    &eid,
                    me,
                    keygen_indices,
                    (*share).clone(),
                    *message_hash,
                ));
                session.share = Some(share);
            }
            (SessionKind::Presign { .. }, SessionInput::Share(share)) => {
                check_share(&share)?;
                session.current = Some(driver::presign(&eid, me, keygen_indices, (*share).clone()));
                session.share = Some(share);
            }
            (
                SessionKind::OnlineSign {
                    account_id,
                    presignature_id,
                    message,
                    digest,
                },
                SessionInput::Presignature(p),
            ) => {
                if p.presignature_id != *presignature_id
                    || p.account_id != *account_id
                    || p.keygen_indices != keygen_indices
                    || p.position != me
                {
                    return Err(SessionError::InputMismatch(
                        "presignature does not match the descriptor",
                    ));
                }
                let (data, hash) = message_data(message, *digest);
                session.online = Some(OnlineState {
                    presignature: *p,
                    data,
                    hash,
                    partials: vec![None; keygen_indices.len()],
                });
            }
            _ => {
                return Err(SessionError::InputMismatch(
                    "input kind does not match the session kind",
                ))
            }
        }
        Ok(session)
    }

    /// This party's position in the session.
    pub fn position(&self) -> u16 {
        self.me
    }

    /// The verified descriptor.
    pub fn descriptor(&self) -> &VerifiedDescriptor {
        &self.descriptor
    }

    /// Starts the session: the first messages to send.
    pub fn start(&mut self) -> Result<Pump, SessionError> {
        if let Some(online) = self.online.as_mut() {
            // The caller removed the presignature from its store before
            // creating this session; the partial signature leaves only now.
            let partial = online
                .presignature
                .presignature
                .clone()
                .issue_partial_signature(online.data);
            online.partials[usize::from(self.me)] = Some(partial);
            let payload = crate::codec::encode(&partial).map_err(|_| DriverError::Misuse {
                stage: Stage::Online.name(),
                reason: "could not encode the partial signature",
            })?;
            let mut pump = Pump {
                frames: self.seal_online(payload)?,
                // The one round: the partial signature is out.
                progress: vec![crate::driver::Progress {
                    stage: Stage::Online,
                    round: 1,
                    detail: Some("partial signature"),
                    finished: false,
                }],
                ..Pump::default()
            };
            self.try_combine(&mut pump)?;
            return Ok(pump);
        }
        // The signed ephemeral key goes first, with the first round.
        let mut pump = Pump {
            frames: vec![self.channel.session_key_frame()?],
            ..Pump::default()
        };
        self.advance(&mut pump)?;
        Ok(pump)
    }

    /// Seals this party's partial signature (online signing).
    fn seal_online(&mut self, payload: Vec<u8>) -> Result<Vec<Vec<u8>>, SessionError> {
        let out = vec![driver::OutgoingMessage {
            recipient: None,
            payload,
        }];
        #[cfg(feature = "adversary")]
        let out = self.adversary.rewrite(Stage::Online, out);
        let mut frames = Vec::with_capacity(out.len());
        for m in out {
            let frame = self.channel.seal_broadcast(Stage::Online, &m.payload)?;
            #[cfg(feature = "adversary")]
            self.adversary.sealed(&frame, &m);
            frames.push(frame);
        }
        Ok(frames)
    }

    /// Takes one frame from the router. A rejected frame returns
    /// [`SessionError::Frame`] and leaves the session as it was.
    pub fn handle_frame(&mut self, frame: &[u8]) -> Result<Pump, SessionError> {
        if self.finished {
            return Err(SessionError::Finished);
        }
        let inbound = match self.channel.open(frame) {
            Ok(inbound) => inbound,
            Err(EnvelopeError::SessionKeyMissing { .. }) if self.held.len() < MAX_HELD_FRAMES => {
                self.held.push(frame.to_vec());
                return Ok(Pump::default());
            }
            Err(e) => return Err(e.into()),
        };
        let mut pump = Pump::default();
        self.dispatch(inbound, &mut pump)?;
        Ok(pump)
    }

    fn dispatch(&mut self, inbound: Inbound, pump: &mut Pump) -> Result<(), SessionError> {
        if inbound.stage == Stage::SessionKey {
            return self.session_key_arrived(inbound.sender, pump);
        }
        if let Some(online) = self.online.as_mut() {
            if inbound.stage != Stage::Online || !inbound.broadcast {
                return Ok(());
            }
            let partial: PartialSignature<Curve> =
                crate::codec::decode(&inbound.payload).map_err(|_| DriverError::BadMessage {
                    stage: Stage::Online.name(),
                    sender: inbound.sender,
                })?;
            online.partials[usize::from(inbound.sender)] = Some(partial);
            return self.try_combine(pump);
        }
        let current_stage = self.current.as_ref().map(|d| d.stage());
        if Some(inbound.stage) == current_stage {
            if let Some(driver) = self.current.as_mut() {
                driver.handle(inbound.sender, inbound.broadcast, &inbound.payload)?;
            }
            self.advance(pump)?;
        } else if matches!(self.plan, Plan::KeygenAfterAux) && inbound.stage == Stage::Keygen {
            self.early.push_back(inbound);
        }
        // Frames of a finished stage are late duplicates of nothing we need.
        Ok(())
    }

    /// The session is over (output or failure): the ephemeral secret and
    /// every key derived from it are forgotten, held payloads wiped.
    fn finish(&mut self) {
        self.finished = true;
        self.channel.forget_keys();
        self.pending_out.clear();
        self.held.clear();
    }

    fn advance(&mut self, pump: &mut Pump) -> Result<(), SessionError> {
        loop {
            let Some(driver) = self.current.as_mut() else {
                return Ok(());
            };
            let stage = driver.stage();
            let Step {
                outgoing,
                progress,
                output,
            } = match driver.run() {
                Ok(step) => step,
                Err(e) => {
                    self.finish();
                    return Err(e.into());
                }
            };
            pump.progress.extend(progress);
            #[cfg(feature = "adversary")]
            let outgoing = self.adversary.rewrite(stage, outgoing);
            for out in outgoing {
                let frame = match out.recipient {
                    None => self.channel.seal_broadcast(stage, &out.payload)?,
                    Some(to) if self.channel.has_session_key(to) => {
                        self.channel.seal_p2p(stage, to, &out.payload)?
                    }
                    Some(to) => {
                        self.pending_out
                            .push((stage, to, Zeroizing::new(out.payload)));
                        continue;
                    }
                };
                #[cfg(feature = "adversary")]
                self.adversary.sealed(&frame, &out);
                pump.frames.push(frame);
            }
            let Some(output) = output else {
                return Ok(());
            };
            self.current = None;
            match output {
                StageOutput::AuxInfo(aux)
                    if matches!(self.descriptor.descriptor().kind, SessionKind::AuxInfo {}) =>
                {
                    self.finish();
                    pump.output = Some(SessionOutput::AuxInfo(aux));
                }
                StageOutput::AuxInfo(aux) => {
                    self.aux = Some(aux);
                    self.aux_is_new = true;
                    if let Plan::KeygenAfterAux = self.plan {
                        self.plan = Plan::Done;
                        let d = self.descriptor.descriptor();
                        let mut next = driver::keygen(
                            &self.descriptor.execution_id(),
                            self.me,
                            d.threshold,
                            d.parties,
                        );
                        while let Some(m) = self.early.pop_front() {
                            next.handle(m.sender, m.broadcast, &m.payload)?;
                        }
                        self.current = Some(next);
                    }
                }
                StageOutput::Keygen(incomplete) => {
                    let aux = self.aux.take().ok_or(SessionError::InputMismatch(
                        "aux info missing at keygen end",
                    ))?;
                    let share = KeyShare::from_parts((*incomplete, (*aux).clone()));
                    let new_aux_info = if self.aux_is_new {
                        Some(aux)
                    } else {
                        crate::primes::wipe_aux_info(*aux);
                        None
                    };
                    let share = share.map_err(|_| {
                        SessionError::InputMismatch("aux info does not fit the DKG output")
                    })?;
                    let public_key = public_key_of(&share);
                    self.finish();
                    pump.output = Some(SessionOutput::Keygen {
                        share: Box::new(share),
                        public_key,
                        new_aux_info,
                    });
                }
                StageOutput::Signature(sig) => {
                    let SessionKind::Sign { message_hash, .. } = &self.descriptor.descriptor().kind
                    else {
                        return Err(SessionError::InputMismatch(
                            "signature from a non-sign session",
                        ));
                    };
                    let share = self
                        .share
                        .as_ref()
                        .ok_or(SessionError::InputMismatch("share missing"))?;
                    let sig = RecoverableSignature::from_cggmp(
                        &sig,
                        message_hash,
                        &public_key_of(share),
                    )?;
                    self.finish();
                    pump.output = Some(SessionOutput::Signature(sig));
                }
                StageOutput::Presignature(p) => {
                    let (presignature, public) = *p;
                    let d = self.descriptor.descriptor();
                    let share = self
                        .share
                        .as_ref()
                        .ok_or(SessionError::InputMismatch("share missing"))?;
                    let stored = StoredPresignature {
                        presignature_id: d.session_id,
                        account_id: d.kind.account_id().unwrap_or_default().to_owned(),
                        public_key: public_key_of(share),
                        keygen_indices: d.participants.iter().map(|p| p.keygen_index).collect(),
                        position: self.me,
                        presignature,
                        gamma: public.Gamma,
                        commitments: public
                            .commitments
                            .iter()
                            .map(|c| (c.tilde_Delta, c.tilde_S))
                            .collect(),
                    };
                    self.finish();
                    pump.output = Some(SessionOutput::Presignature(Box::new(stored)));
                }
            }
            if self.finished {
                return Ok(());
            }
        }
    }
}
