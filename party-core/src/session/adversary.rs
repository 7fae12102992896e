//! TEST-ONLY deviating parties (cargo feature `adversary`, enabled only by
//! this crate's own tests through its dev-dependency on itself; no service
//! enables it).
//!
//! A deviating party is an authenticated participant: it holds its identity
//! and session keys, so what it can change is the plaintext of its own
//! protocol messages before they are sealed (signed for a broadcast,
//! encrypted for p2p). [`PartySession::deviate`] installs a [`Deviation`]
//! that sees each batch of outgoing messages the protocol produced (one
//! protocol step of one stage) and may rewrite, drop or add messages. A
//! broadcast can be restricted to some recipients ([`Crafted::only_to`]),
//! which is how an equivocating party (with a router that relays what it is
//! told) sends different broadcast content to different parties; a host or
//! test router asks [`PartySession::deliver_only`] for each frame.

use std::collections::HashMap;

use crate::driver::OutgoingMessage;
use crate::envelope::{FrameHeader, Stage};

use super::PartySession;

/// One outgoing protocol message of a deviating party, before sealing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crafted {
    /// Recipient position, `None` for broadcast.
    pub recipient: Option<u16>,
    /// Encoded protocol message (CBOR of the library's message type).
    pub payload: Vec<u8>,
    /// For a broadcast: deliver the sealed frame only to these positions.
    pub only_to: Option<Vec<u16>>,
}

impl From<OutgoingMessage> for Crafted {
    fn from(m: OutgoingMessage) -> Self {
        Self {
            recipient: m.recipient,
            payload: m.payload,
            only_to: None,
        }
    }
}

/// A party's deviation from the protocol.
pub trait Deviation: Send {
    /// Rewrites one batch of outgoing messages of `stage`; `batch` counts
    /// the stage's non-empty batches from 0 (the protocol's sending rounds).
    fn outgoing(&mut self, stage: Stage, batch: usize, messages: &mut Vec<Crafted>);
}

impl<F> Deviation for F
where
    F: FnMut(Stage, usize, &mut Vec<Crafted>) + Send,
{
    fn outgoing(&mut self, stage: Stage, batch: usize, messages: &mut Vec<Crafted>) {
        self(stage, batch, messages)
    }
}

/// A session's deviation and the delivery restrictions it asked for.
#[derive(Default)]
pub(super) struct Adversary {
    deviation: Option<Box<dyn Deviation>>,
    batches: HashMap<Stage, usize>,
    /// Sequence number of a restricted frame → its recipients.
    routes: HashMap<u64, Vec<u16>>,
}

impl Adversary {
    /// The batch as the deviation rewrote it (unchanged without one).
    pub(super) fn rewrite(&mut self, stage: Stage, outgoing: Vec<OutgoingMessage>) -> Vec<Crafted> {
        let mut crafted: Vec<Crafted> = outgoing.into_iter().map(Crafted::from).collect();
        if crafted.is_empty() {
            return crafted;
        }
        if let Some(d) = self.deviation.as_mut() {
            let batch = self.batches.entry(stage).or_insert(0);
            d.outgoing(stage, *batch, &mut crafted);
            *batch += 1;
        }
        crafted
    }

    /// Records the delivery restriction of a sealed frame.
    pub(super) fn sealed(&mut self, frame: &[u8], message: &Crafted) {
        if let (Some(only), Ok((header, _, _))) = (&message.only_to, FrameHeader::parse(frame)) {
            self.routes.insert(header.seq, only.clone());
        }
    }
}

impl PartySession {
    /// TEST-ONLY: makes this party deviate from the protocol.
    pub fn deviate(&mut self, deviation: impl Deviation + 'static) {
        self.adversary.deviation = Some(Box::new(deviation));
    }

    /// TEST-ONLY: the recipients a frame of this party (by its sequence
    /// number) is restricted to, if its deviation restricted it.
    pub fn deliver_only(&self, seq: u64) -> Option<&[u16]> {
        self.adversary.routes.get(&seq).map(Vec::as_slice)
    }
}
