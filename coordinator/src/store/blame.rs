//! Failure reports kept as evidence, and the rule that turns them into a
//! named culprit.
//!
//! A party's failure report is its own view of what went wrong: a deviating
//! party can sign a report that blames an honest one as easily as an honest
//! party can report the deviant. So `sessions.blamed_party` is never set
//! from one report. Every report is kept (`sessions.accusations`, one entry
//! per reporter, in arrival order) and [`verdict`] names a party only when
//! enough independent reporters agree on it and no other reporter
//! disagrees.

use mpc_api::rest::Accusation;
use mpc_db::json_column;
use mpc_db::sqlx::{self, Row as _};
use uuid::Uuid;

use super::events::event;
use super::{lock_session, SessionStatus, Store, StoreError};

/// Longest reason kept from one report (a report is the sender's text).
pub const MAX_REASON_CHARS: usize = 512;

/// How many agreeing reporters (other than the accused) name a culprit in a
/// session of threshold `t`: `max(2, t)`. The trust model allows up to
/// `t - 1` colluding parties, so `t` agreeing reporters include at least one
/// honest party, and an honest party blames only whom the protocol library
/// identified; two at least, so one party's word never suffices.
pub fn quorum(t: u16) -> usize {
    usize::from(t).max(2)
}

/// The party the accusations identify, if they do: a party `X` named by at
/// least `quorum` reporters other than `X`, where no reporter other than `X`
/// names another party (that is a dissent, and then nobody is named). A
/// report that names nobody abstains: an honest party whose session the
/// router closed after the first failure, or whose protocol aborted without
/// a culprit (an equivocation), has no view of who deviated.
pub fn verdict(accusations: &[Accusation], quorum: usize) -> Option<String> {
    let mut candidates: Vec<&str> = accusations
        .iter()
        .filter_map(|a| a.accused.as_deref())
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    candidates.into_iter().find_map(|x| {
        let views: Vec<&str> = accusations
            .iter()
            .filter(|a| a.reporter != x)
            .filter_map(|a| a.accused.as_deref())
            .collect();
        (views.len() >= quorum.max(1) && views.iter().all(|v| *v == x)).then(|| x.to_string())
    })
}

/// Reads a stored accusation list (absent or unreadable: none).
pub(super) fn accusations_of(v: Option<serde_json::Value>) -> Vec<Accusation> {
    v.and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

impl Store {
    /// Keeps a party's failure report as evidence (once per reporter) and,
    /// if the session has failed and no party is blamed yet, names the party
    /// the accusations now identify ([`verdict`]). Returns the party this
    /// call named.
    pub async fn accuse(
        &self,
        id: Uuid,
        accusation: Accusation,
        quorum: usize,
    ) -> Result<Option<String>, StoreError> {
        let mut accusation = accusation;
        if accusation.reason.chars().count() > MAX_REASON_CHARS {
            accusation.reason = accusation.reason.chars().take(MAX_REASON_CHARS).collect();
        }
        let mut tx = self.pool.begin().await?;
        lock_session(&mut tx, id).await?;
        let Some(row) = sqlx::query(
            "SELECT status, blamed_party, accusations FROM sessions WHERE session_id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        else {
            tx.rollback().await?;
            return Ok(None);
        };
        let status = SessionStatus::parse(&row.get::<String, _>(0))
            .ok_or(StoreError::Malformed("session status"))?;
        let blamed: Option<String> = row.get(1);
        let mut list = accusations_of(json_column(&row, 2));
        if list.iter().any(|a| a.reporter == accusation.reporter) {
            tx.rollback().await?;
            return Ok(None);
        }
        let detail = serde_json::to_value(&accusation)
            .map_err(|_| StoreError::Malformed("accusation to store"))?;
        list.push(accusation);
        let named = match (status, blamed) {
            (SessionStatus::Failed, None) => verdict(&list, quorum),
            _ => None,
        };
        let text = serde_json::to_string(&list)
            .map_err(|_| StoreError::Malformed("accusations to store"))?;
        sqlx::query(
            "UPDATE sessions SET accusations = $1, blamed_party = COALESCE(blamed_party, $2)
             WHERE session_id = $3",
        )
        .bind(text)
        .bind(named.clone())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        event(&mut tx, id, "accusation", None, &detail).await?;
        if let Some(party) = &named {
            let detail = serde_json::json!({ "blamed_party": party, "by": "agreeing reports" });
            event(&mut tx, id, "blamed", None, &detail).await?;
        }
        tx.commit().await?;
        Ok(named)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(reporter: &str, accused: Option<&str>) -> Accusation {
        Accusation {
            reporter: reporter.into(),
            accused: accused.map(Into::into),
            reason: "r".into(),
        }
    }

    #[test]
    fn one_report_never_names_anyone() {
        assert_eq!(verdict(&[acc("a", Some("b"))], 2), None);
        // the accused's own report does not count for or against it
        assert_eq!(
            verdict(&[acc("a", Some("b")), acc("b", Some("a"))], 2),
            None
        );
    }

    #[test]
    fn agreeing_independent_reporters_name_the_culprit() {
        let list = [acc("a", Some("x")), acc("b", Some("x"))];
        assert_eq!(verdict(&list, 2).as_deref(), Some("x"));
        // the culprit's counter-accusation changes nothing
        let list = [
            acc("x", Some("a")),
            acc("a", Some("x")),
            acc("b", Some("x")),
        ];
        assert_eq!(verdict(&list, 2).as_deref(), Some("x"));
        // below the quorum of a higher threshold: unidentified
        assert_eq!(verdict(&list, 3), None);
    }

    #[test]
    fn a_dissenting_reporter_keeps_it_unidentified() {
        // naming nobody abstains
        let named_nobody = [acc("a", Some("x")), acc("b", Some("x")), acc("c", None)];
        assert_eq!(verdict(&named_nobody, 2).as_deref(), Some("x"));
        assert_eq!(verdict(&[acc("a", Some("x")), acc("c", None)], 2), None);
        let other = [
            acc("a", Some("x")),
            acc("b", Some("x")),
            acc("c", Some("b")),
        ];
        assert_eq!(verdict(&other, 2), None);
        // two liars against an honest party that named the real culprit
        let framed = [
            acc("l1", Some("h")),
            acc("l2", Some("h")),
            acc("h", Some("l1")),
        ];
        assert_eq!(verdict(&framed, 2).as_deref(), Some("h"));
        // ...which is why the quorum is max(2, t): with t = 3 (up to two
        // colluders) the same two reports name nobody.
        assert_eq!(verdict(&framed, quorum(3)), None);
    }

    #[test]
    fn quorum_is_at_least_two_and_at_least_t() {
        assert_eq!(quorum(1), 2);
        assert_eq!(quorum(2), 2);
        assert_eq!(quorum(3), 3);
    }
}
