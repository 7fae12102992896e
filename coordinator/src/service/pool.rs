//! The presignature pool's refill policy: keep `presign_pool` presignatures
//! ready per signer set of every account held by server parties only, with
//! at most `presign_concurrency` presign sessions running over all
//! coordinator instances, and a rest for signer sets whose sessions keep
//! failing.
//!
//! Foreground before background: a signer set with a party in an open
//! session that a caller waits for (keygen, signing, a policy change) gets
//! no new presign session until that session ends (its end wakes the
//! refill). The refill runs in its own task and never holds up the
//! creation of such a session; a presign already running when one is
//! created goes on, and the parties run its steps at the lowest priority
//! (server-party's `priority` module).

use super::ServiceError;
use crate::store::{now, AccountParty, DeviceType};
use crate::Coordinator;

/// Failed presign sessions of one signer set within
/// [`PRESIGN_FAILURE_WINDOW`] seconds that pause its refill.
const PRESIGN_FAILURES_TO_REST: i64 = 3;
/// Seconds the refill looks back for failed presign sessions.
const PRESIGN_FAILURE_WINDOW: u64 = 60;

/// A signer set as stored: party ids in keygen-index order, comma-separated.
pub(crate) fn signers_key(signers: &[&AccountParty]) -> String {
    signers
        .iter()
        .map(|a| a.party_id.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Every `k`-element subset of `items`, each in the order of `items`.
fn subsets<'a, T>(items: &[&'a T], k: usize) -> Vec<Vec<&'a T>> {
    if k == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for (i, first) in items.iter().enumerate() {
        let rest = items.get(i + 1..).unwrap_or_default();
        for mut tail in subsets(rest, k - 1) {
            tail.insert(0, *first);
            out.push(tail);
        }
    }
    out
}

impl Coordinator {
    /// Keeps `presign_pool` presignatures ready for every signer set of every
    /// account held by server parties only, starting at most
    /// `presign_concurrency` presign sessions at a time (over all
    /// coordinator instances, counted in the database).
    pub async fn refill_presignatures(&self) -> Result<(), ServiceError> {
        let target = i64::try_from(self.presign_pool()).unwrap_or(0);
        let max_running = i64::try_from(self.config().presign_concurrency).unwrap_or(0);
        if target == 0 || max_running == 0 {
            return Ok(());
        }
        let mut running = self.store().running_presigns().await?;
        if running >= max_running {
            return Ok(());
        }
        let busy = self.store().parties_in_foreground().await?;
        for account in self.store().accounts(1000).await? {
            if running >= max_running {
                return Ok(());
            }
            let mut servers_only = true;
            // Parties whose enrolment was revoked: no signer set with one.
            let mut revoked = Vec::new();
            for p in &account.parties {
                let device_type = self
                    .store()
                    .party(&p.party_id)
                    .await?
                    .map(|r| r.device_type);
                servers_only &= device_type == Some(DeviceType::Server);
                if self.ensure_enrolled(&p.party_id).await.is_err() {
                    revoked.push(p.party_id.as_str());
                }
            }
            if !servers_only {
                continue;
            }
            let mut parties: Vec<&AccountParty> = account.parties.iter().collect();
            parties.sort_by_key(|p| p.keygen_index);
            for set in subsets(&parties, usize::from(account.threshold_t)) {
                if running >= max_running {
                    return Ok(());
                }
                if set
                    .iter()
                    .any(|p| busy.contains(&p.party_id) || revoked.contains(&p.party_id.as_str()))
                {
                    continue;
                }
                let key = signers_key(&set);
                let (available, in_flight) = self
                    .store()
                    .presignature_stock(&account.account_id, &key)
                    .await?;
                // A signer set whose presign sessions keep failing (a party
                // down, a share missing) rests a while instead of failing
                // one session after another.
                if available + in_flight < target
                    && self
                        .store()
                        .recent_presign_failures(
                            &account.account_id,
                            &key,
                            now().saturating_sub(PRESIGN_FAILURE_WINDOW),
                        )
                        .await?
                        < PRESIGN_FAILURES_TO_REST
                {
                    self.create_presign(&account, &set).await?;
                    running += 1;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_keep_the_order_of_their_items() {
        let items = [1, 2, 3];
        let refs: Vec<&i32> = items.iter().collect();
        let got: Vec<Vec<i32>> = subsets(&refs, 2)
            .into_iter()
            .map(|s| s.into_iter().copied().collect())
            .collect();
        assert_eq!(got, vec![vec![1, 2], vec![1, 3], vec![2, 3]]);
    }
}
