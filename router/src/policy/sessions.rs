//! Sessions: registration, joins, frames, closing and expiry.

use axum::body::Bytes;
use party_core::envelope::{FrameHeader, BROADCAST};
use party_core::wire::RouterToClient;
use subtle::{Choice, ConstantTimeEq};
use uuid::Uuid;

use super::{JoinError, JoinRequest, Joined, RelayError};
use crate::backend::{BackendError, LogEntry, Registration, Slot};
use crate::conn::Conn;
use crate::{metrics, Router};

/// The slot whose token hash is `token_sha256`, comparing against every slot
/// in constant time without stopping early.
fn find_slot(slots: &[Slot], token_sha256: &[u8; 32]) -> Option<usize> {
    let mut found: Option<usize> = None;
    for (i, slot) in slots.iter().enumerate() {
        let eq: Choice = slot.token_sha256.ct_eq(token_sha256);
        if bool::from(eq) && found.is_none() {
            found = Some(i);
        }
    }
    found
}

impl Router {
    /// Registers a session. An id is registered once: see
    /// [`Registration`] for what another registration of it gets.
    pub(crate) async fn register_session(
        &self,
        session_id: Uuid,
        expires_at: u64,
        slots: Vec<Slot>,
    ) -> Result<Registration, BackendError> {
        let outcome = self
            .backend()
            .register(session_id, expires_at, slots)
            .await?;
        match outcome {
            Registration::Fresh => metrics::session_registered(),
            Registration::Identical => {}
            Registration::Conflict => metrics::registration_refused("conflict"),
            Registration::Closed => metrics::registration_refused("session_closed"),
        }
        Ok(outcome)
    }

    /// Admits `conn` to a session. The checks, in order: the session exists
    /// and its deadline has not passed; the token hash is one of its slots';
    /// the slot is not bound to another identity; the signature verifies.
    /// Then the slot is bound to the identity (set once: of two identities
    /// racing for an unbound slot one wins, the other gets `token_bound`),
    /// `Joined` is queued on `conn` and it becomes the position's live
    /// connection, replaying the log for it.
    pub(crate) async fn join(
        &self,
        req: &JoinRequest,
        now: u64,
        conn: Conn,
    ) -> Result<Joined, JoinError> {
        let joined = self.admit(req, now, conn).await;
        if let Err(e) = &joined {
            metrics::join_refused(e.code());
        }
        joined
    }

    async fn admit(&self, req: &JoinRequest, now: u64, conn: Conn) -> Result<Joined, JoinError> {
        let backend = self.backend();
        let session_id = req.session_id;
        let record = backend
            .session(session_id)
            .await?
            .ok_or(JoinError::UnknownSession)?;
        if now >= record.expires_at {
            return Err(JoinError::Expired);
        }
        let index = find_slot(&record.slots, &req.token_sha256).ok_or(JoinError::BadToken)?;
        let position = u16::try_from(index).map_err(|_| JoinError::BadToken)?;
        let bound = record.slots.get(index).and_then(|s| s.identity);
        if bound.is_some_and(|b| b != req.identity) {
            return Err(JoinError::TokenBound);
        }
        if !req.signature_ok {
            return Err(JoinError::BadSignature);
        }
        if bound.is_none() {
            match backend
                .bind(session_id, position, req.identity, record.expires_at)
                .await?
            {
                Some(winner) if winner == req.identity => {}
                Some(_) => return Err(JoinError::TokenBound),
                None => return Err(JoinError::UnknownSession),
            }
        }
        let shape = record.shape();
        conn.send_json(&RouterToClient::Joined {
            session_id,
            position,
        });
        if !backend.attach(session_id, position, shape, conn).await? {
            return Err(JoinError::UnknownSession);
        }
        Ok(Joined {
            position,
            parties: shape.parties,
        })
    }

    /// Relays a frame that arrived on connection `conn_id` of `joined`'s
    /// position: it must fit the frame limit, parse, name this session and
    /// this sender.
    pub(crate) async fn relay_frame(
        &self,
        session_id: Uuid,
        joined: Joined,
        conn_id: u64,
        frame: Bytes,
    ) -> Result<(), RelayError> {
        let len = frame.len();
        let relayed = async {
            if len > self.config().max_frame_bytes {
                return Err(RelayError::TooLarge);
            }
            let header = match FrameHeader::parse(&frame) {
                Ok((header, _, _)) => header,
                Err(e) => return Err(RelayError::Malformed(e.to_string())),
            };
            if header.session_id != session_id {
                return Err(RelayError::WrongSession);
            }
            if header.sender != joined.position {
                return Err(RelayError::SpoofedSender(header.sender));
            }
            let entry = LogEntry {
                session_id,
                sender: joined.position,
                recipient: header.recipient,
                frame,
            };
            self.relay(entry, joined.parties, conn_id).await
        }
        .await;
        match &relayed {
            Ok(()) => metrics::frame_relayed(len),
            Err(e) => metrics::frame_dropped(e.reason()),
        }
        relayed
    }

    /// Appends a frame (header already checked) to its session's log: its
    /// recipient must be another position of the session (or everyone), and
    /// the backend refuses it if its connection was replaced or the log
    /// would pass `max_session_bytes`.
    pub(crate) async fn relay(
        &self,
        entry: LogEntry,
        parties: u16,
        conn_id: u64,
    ) -> Result<(), RelayError> {
        let recipient = entry.recipient;
        if recipient != BROADCAST && (recipient == entry.sender || recipient >= parties) {
            return Err(RelayError::BadRecipient(recipient));
        }
        let max = self.config().max_session_bytes;
        self.backend()
            .append(entry, conn_id, max, self.tap())
            .await
            .map_err(RelayError::Unavailable)?
            .map_err(RelayError::from)
    }

    /// Ends a session; false if it was unknown.
    pub(crate) async fn close_session(&self, session_id: Uuid) -> Result<bool, BackendError> {
        let closed = self.backend().close(session_id).await?;
        if closed {
            metrics::session_closed();
        }
        Ok(closed)
    }

    /// Ends the sessions past their deadline; returns their ids.
    pub(crate) fn expire(&self, now: u64) -> Vec<Uuid> {
        let expired = self.backend().expire(now);
        metrics::sessions_expired(expired.len());
        expired
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::conn::Outbound;
    use crate::RouterConfig;
    use party_core::identity::PartyPublicKey;
    use tokio::sync::mpsc::UnboundedReceiver;

    fn key(b: u8) -> PartyPublicKey {
        PartyPublicKey {
            ed25519: [b; 32],
            x25519: [b; 32],
        }
    }

    async fn router_with(slots: usize, expires_at: u64) -> (Router, Uuid) {
        let mut config = RouterConfig::new("t");
        config.max_session_bytes = 1000;
        let router = Router::new(config).unwrap();
        let id = Uuid::from_bytes([1; 16]);
        let slots = (0..slots)
            .map(|i| Slot {
                token_sha256: [u8::try_from(i).unwrap(); 32],
                identity: None,
            })
            .collect();
        assert_eq!(
            router
                .register_session(id, expires_at, slots)
                .await
                .unwrap(),
            Registration::Fresh
        );
        (router, id)
    }

    fn req(id: Uuid, token: u8, identity: u8, signature_ok: bool) -> JoinRequest {
        JoinRequest {
            session_id: id,
            token_sha256: [token; 32],
            identity: key(identity),
            signature_ok,
        }
    }

    async fn join(r: &Router, req: JoinRequest, now: u64, conn_id: u64) -> Result<u16, String> {
        let (c, _rx) = Conn::new(conn_id);
        r.join(&req, now, c)
            .await
            .map(|j| j.position)
            .map_err(|e| e.code().to_owned())
    }

    fn drain(rx: &mut UnboundedReceiver<Outbound>) -> Vec<Outbound> {
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            out.push(m);
        }
        out
    }

    #[tokio::test]
    async fn expiry_is_checked_against_now() {
        let (r, id) = router_with(2, 100).await;
        assert_eq!(
            join(&r, req(id, 0, 1, true), 100, 1).await,
            Err("expired".into())
        );
        assert_eq!(join(&r, req(id, 0, 1, true), 99, 2).await, Ok(0));
        assert_eq!(r.expire(99), Vec::<Uuid>::new());
        assert_eq!(r.expire(100), vec![id]);
        // Counted in the expired-sessions series.
        let text = mpc_telemetry::render();
        let expired = text
            .lines()
            .find_map(|l| l.strip_prefix("mpc_router_sessions_expired_total "))
            .and_then(|v| v.parse::<f64>().ok());
        assert!(expired.is_some_and(|n| n >= 1.0), "{text}");
        assert_eq!(
            join(&r, req(id, 0, 1, true), 50, 3).await,
            Err("unknown_session".into())
        );
    }

    #[tokio::test]
    async fn token_checks_come_before_the_signature() {
        let (r, id) = router_with(2, 100).await;
        assert_eq!(
            join(&r, req(id, 9, 1, false), 0, 1).await,
            Err("bad_token".into())
        );
        assert_eq!(
            join(&r, req(id, 1, 1, false), 0, 2).await,
            Err("bad_signature".into())
        );
        // A refused signature does not bind the slot.
        assert_eq!(join(&r, req(id, 1, 2, true), 0, 3).await, Ok(1));
        assert_eq!(
            join(&r, req(id, 1, 1, true), 0, 4).await,
            Err("token_bound".into())
        );
    }

    #[tokio::test]
    async fn buffer_limit_and_recipients() {
        let (r, id) = router_with(2, 100).await;
        let (c, mut rx) = Conn::new(1);
        let joined = r.join(&req(id, 0, 1, true), 0, c).await.unwrap();
        assert_eq!(
            joined,
            Joined {
                position: 0,
                parties: 2
            }
        );
        let entry = |recipient: u16, frame: Bytes| LogEntry {
            session_id: id,
            sender: 0,
            recipient,
            frame,
        };
        let x = || Bytes::from_static(b"x");
        let r0 = r.relay(entry(0, x()), 2, 1).await;
        assert!(matches!(r0, Err(RelayError::BadRecipient(0))), "{r0:?}");
        let r2 = r.relay(entry(2, x()), 2, 1).await;
        assert!(matches!(r2, Err(RelayError::BadRecipient(2))), "{r2:?}");
        let replaced = r.relay(entry(1, x()), 2, 7).await;
        assert!(
            matches!(replaced, Err(RelayError::Replaced)),
            "{replaced:?}"
        );
        let fits = r.relay(entry(1, Bytes::from(vec![0u8; 1000])), 2, 1).await;
        assert!(fits.is_ok(), "{fits:?}");
        let full = r.relay(entry(1, x()), 2, 1).await;
        assert!(matches!(full, Err(RelayError::BufferFull)), "{full:?}");
        // Only Joined reached the sender itself.
        assert_eq!(drain(&mut rx).len(), 1);
    }
}
