//! Control connections and invitations.

use party_core::wire::{Invitation, RouterToClient};

use super::{ControlError, MAX_PARTY_ID_LEN};
use crate::backend::{invitation_expired, BackendError};
use crate::conn::Conn;
use crate::Router;

impl Router {
    /// Whether a control connection may be registered.
    pub(crate) fn check_control(party_id: &str, signature_ok: bool) -> Result<(), ControlError> {
        if party_id.is_empty() || party_id.len() > MAX_PARTY_ID_LEN {
            return Err(ControlError::BadPartyId);
        }
        if !signature_ok {
            return Err(ControlError::BadSignature);
        }
        Ok(())
    }

    /// Queues `Registered` on `conn` and makes it the party's control
    /// connection, then the invitations waiting for the party; returns how
    /// many invitations it got.
    pub(crate) async fn attach_control(
        &self,
        key: [u8; 32],
        party_id: &str,
        conn: Conn,
        now: u64,
    ) -> usize {
        conn.send_json(&RouterToClient::Registered {
            party_id: party_id.to_owned(),
        });
        self.backend()
            .attach_control(key, party_id, conn, now)
            .await
    }

    /// Delivers or queues an invitation; one past its deadline is dropped.
    /// True if it went to a control connection of this instance.
    pub(crate) async fn invite(
        &self,
        key: [u8; 32],
        invitation: Invitation,
        now: u64,
    ) -> Result<bool, BackendError> {
        if invitation_expired(&invitation, now) {
            return Ok(false);
        }
        self.backend().invite(key, invitation).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_party_ids_and_signatures_are_checked() {
        assert_eq!(Router::check_control("p", true), Ok(()));
        assert_eq!(
            Router::check_control("", true),
            Err(ControlError::BadPartyId)
        );
        let long = "p".repeat(MAX_PARTY_ID_LEN + 1);
        assert_eq!(
            Router::check_control(&long, true),
            Err(ControlError::BadPartyId)
        );
        assert_eq!(
            Router::check_control("p", false),
            Err(ControlError::BadSignature)
        );
    }
}
