//! The session's side of the ephemeral key exchange: p2p payloads held for a
//! peer until its session key arrives, and p2p frames held until their
//! sender's key does.

use crate::envelope::FrameHeader;

use super::{PartySession, Pump, SessionError};

impl PartySession {
    /// A peer's session key arrived: seal what was held for it, then open
    /// the frames it sent before its key reached us.
    pub(super) fn session_key_arrived(
        &mut self,
        peer: u16,
        pump: &mut Pump,
    ) -> Result<(), SessionError> {
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_out)
            .into_iter()
            .partition(|(_, to, _)| *to == peer);
        self.pending_out = waiting;
        for (stage, to, payload) in ready {
            pump.frames
                .push(self.channel.seal_p2p(stage, to, &payload)?);
        }
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|f| matches!(FrameHeader::parse(f), Ok((h, _, _)) if h.sender == peer));
        self.held = others;
        for frame in mine {
            if self.finished {
                break;
            }
            // A held frame that does not open now is dropped like any
            // rejected frame.
            if let Ok(inbound) = self.channel.open(&frame) {
                self.dispatch(inbound, pump)?;
            }
        }
        Ok(())
    }
}
