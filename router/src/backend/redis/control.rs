//! Control connections and invitations in Redis: invitations wait in a list
//! per party; the instance holding the party's control connection pops them.

use party_core::wire::{Invitation, RouterToClient};
use redis::AsyncCommands as _;

use super::{ttl, Inner};
use crate::backend::{invitation_expired, BackendError, MAX_QUEUED_PER_PARTY};
use crate::conn::Conn;

fn queue_key(key: &[u8; 32]) -> String {
    format!("mpc:inv:{}", hex::encode(key))
}

impl Inner {
    /// Makes `conn` this instance's control connection for `key` and hands it
    /// the invitations queued for the party; returns how many.
    pub(super) async fn attach_control(&self, key: [u8; 32], party_id: &str, conn: Conn) -> usize {
        if let Some((old, _)) = self
            .local()
            .controls
            .insert(key, (party_id.to_owned(), conn))
        {
            tracing::info!(party_id = %old, "control connection replaced");
        }
        self.drain_invitations(key).await
    }

    /// Unregisters a control connection that ended, unless replaced.
    pub(super) fn detach_control(&self, key: &[u8; 32], conn_id: u64) {
        let mut local = self.local();
        if local
            .controls
            .get(key)
            .is_some_and(|(_, c)| c.id == conn_id)
        {
            local.controls.remove(key);
        }
    }

    /// Queues an invitation for a party and tells every instance; the one
    /// holding the party's control connection hands it over. True when that
    /// is this instance (delivered now).
    pub(super) async fn invite(
        &self,
        key: [u8; 32],
        invitation: &Invitation,
    ) -> Result<bool, BackendError> {
        let list = queue_key(&key);
        let json = serde_json::to_string(invitation).unwrap_or_default();
        let keep = isize::try_from(MAX_QUEUED_PER_PARTY).unwrap_or(isize::MAX);
        let mut con = self.con()?;
        let _: () = redis::pipe()
            .atomic()
            .rpush(&list, json)
            .ignore()
            .ltrim(&list, -keep, -1)
            .ignore()
            .expire(&list, ttl(invitation.descriptor.descriptor.expires_at))
            .ignore()
            .publish(format!("mpc:i:{}", hex::encode(key)), "")
            .ignore()
            .query_async(&mut con)
            .await?;
        if self.local().controls.contains_key(&key) {
            self.drain_invitations(key).await;
            return Ok(true);
        }
        Ok(false)
    }

    /// Pops the party's queued invitations onto its local control connection;
    /// returns how many it delivered.
    pub(super) async fn drain_invitations(&self, key: [u8; 32]) -> usize {
        let list = queue_key(&key);
        let Ok(mut con) = self.con() else { return 0 };
        let mut delivered = 0;
        loop {
            let popped: Result<Option<String>, _> = con.lpop(&list, None).await;
            let json = match popped {
                Ok(Some(j)) => j,
                Ok(None) => return delivered,
                Err(e) => {
                    tracing::warn!(error = %e, "invitation queue unreadable");
                    return delivered;
                }
            };
            let Ok(inv) = serde_json::from_str::<Invitation>(&json) else {
                continue;
            };
            if invitation_expired(&inv, crate::now_unix()) {
                continue;
            }
            let session_id = inv.descriptor.descriptor.session_id;
            let sent = match self.local().controls.get(&key) {
                Some((party_id, conn)) => {
                    let ok = conn.send_json(&RouterToClient::Invitation(Box::new(inv)));
                    if ok {
                        tracing::info!(%party_id, %session_id, "invitation delivered");
                    }
                    ok
                }
                None => false,
            };
            if !sent {
                // The connection went away: put it back for the next one.
                let _: Result<i64, _> = con.lpush(&list, json).await;
                return delivered;
            }
            delivered += 1;
        }
    }
}
