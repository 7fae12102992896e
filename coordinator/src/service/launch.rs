//! Launching a signed session: its slots registered with the router, its
//! server parties invited over their control connections.

use std::sync::Arc;

use mpc_api::error::ErrorCode;
use party_core::descriptor::SignedDescriptor;
use party_core::wire::Invitation;
use uuid::Uuid;

use super::ServiceError;
use crate::router_client::Slot;
use crate::Coordinator;

fn router_unavailable() -> ServiceError {
    ServiceError::new(ErrorCode::RouterUnavailable, "router unavailable")
}

impl Coordinator {
    /// Registers a signed session with the router and invites its server
    /// parties (`server_tokens[pos]` is `Some` for a server party). On
    /// failure the session is failed and `router_unavailable` returned. The
    /// descriptor is kept in the cache for the session's reports.
    pub(super) async fn launch(
        &self,
        signed: SignedDescriptor,
        token_hashes: &[[u8; 32]],
        server_tokens: &[Option<String>],
    ) -> Result<(), ServiceError> {
        let signed = Arc::new(signed);
        let session_id = signed.descriptor.session_id;
        self.descriptors().insert(session_id, signed.clone());
        let participants = &signed.descriptor.participants;
        let slots = participants
            .iter()
            .zip(token_hashes)
            .enumerate()
            .map(|(pos, (p, h))| Slot {
                position: u16::try_from(pos).unwrap_or(u16::MAX),
                token_sha256: hex::encode(h),
                identity: Some(p.identity),
            })
            .collect();
        if let Err(e) = self
            .router()
            .register_session(session_id, signed.descriptor.expires_at, slots)
            .await
        {
            self.store()
                .fail(session_id, &format!("router unavailable: {e}"), None)
                .await?;
            self.descriptors().remove(session_id);
            return Err(router_unavailable());
        }
        for (p, token) in participants.iter().zip(server_tokens) {
            let Some(token) = token else { continue };
            let invitation = Invitation {
                descriptor: SignedDescriptor::clone(&signed),
                join_token: token.clone(),
            };
            if let Err(e) = self.router().invite(&p.identity, &invitation).await {
                self.store()
                    .fail(
                        session_id,
                        &format!("could not invite {}: {e}", p.party_id),
                        None,
                    )
                    .await?;
                self.close_session(session_id);
                return Err(router_unavailable());
            }
        }
        Ok(())
    }

    /// A session ended: the router drops it (best effort, in the background)
    /// and the descriptor cache forgets it.
    pub(crate) fn close_session(&self, session_id: Uuid) {
        self.descriptors().remove(session_id);
        self.router().close_session(session_id);
    }
}
