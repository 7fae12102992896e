//! What only a server party does around a session: it fetches a session's
//! input from its store (primes from the pool or generated, aux info, a key
//! share with the group's multiexp tables, a presignature deleted before
//! use) and keeps the output (sealed share, presignature).

use party_core::descriptor::{SessionDescriptor, SessionKind};
use party_core::host::InputRequest;
use party_core::primes::PrimeSet;
use party_core::seal::{Provenance, SealError};
use party_core::session::{AuxSource, SessionInput, SessionOutput};
use tokio::sync::mpsc::UnboundedSender;

use crate::priority::{scheduler, Lane};
use crate::{PartyState, PrimeSource};

/// Fetches the input the session machine asked for, for a session of
/// `lane` (a group's multiexp tables are built in it), and whether it was
/// made from PUBLIC test data (what the session stores from it is marked
/// so). `percent` receives the progress of a prime generation.
pub(crate) async fn fetch(
    state: &PartyState,
    session_id: uuid::Uuid,
    request: InputRequest,
    lane: Lane,
    percent: UnboundedSender<u8>,
) -> Result<(SessionInput, Provenance), String> {
    let store = &state.store;
    match request {
        InputRequest::Primes => {
            let (primes, provenance) = obtain_primes(state, session_id, percent).await?;
            Ok((
                SessionInput::Keygen(AuxSource::Generate(primes)),
                provenance,
            ))
        }
        InputRequest::AuxInfo {
            group_id,
            fingerprint: Some(fingerprint),
            ..
        } => match store
            .aux_info_named_marked(&group_id, &fingerprint)
            .await
            .map_err(|e| e.to_string())?
        {
            Some((aux, provenance)) => Ok((
                SessionInput::Keygen(AuxSource::Existing(Box::new(aux))),
                provenance,
            )),
            None => Err(format!(
                "{}: this party holds no aux info {} of this party group",
                party_core::aux_fingerprint::AUX_INFO_MISSING,
                hex::encode(fingerprint)
            )),
        },
        InputRequest::AuxInfo {
            group_id,
            parties,
            index,
            fingerprint: None,
        } => {
            let marked = store
                .aux_info_marked(&group_id)
                .await
                .map_err(|e| e.to_string())?;
            let (aux, provenance) = match marked {
                Some(a) => a,
                None => match &state.config.insecure_test_aux {
                    Some(dir) => {
                        refuse_test_data_unless_accepted(state)?;
                        let aux = load_test_aux(dir, parties, index)?;
                        store
                            .put_aux_info_as(&group_id, &aux, Provenance::TestData)
                            .await
                            .map_err(|e| e.to_string())?;
                        (aux, Provenance::TestData)
                    }
                    None => return Err("no aux info stored for this party group".to_string()),
                },
            };
            Ok((
                SessionInput::Keygen(AuxSource::Existing(Box::new(aux))),
                provenance,
            ))
        }
        InputRequest::Share { account_id } => match store
            .key_share_marked(&account_id)
            .await
            .map_err(|e| e.to_string())?
        {
            Some((share, provenance)) => Ok((
                SessionInput::Share(Box::new(state.tables.accelerate(share, lane).await)),
                provenance,
            )),
            None => Err(format!("this party holds no share of account {account_id}")),
        },
        InputRequest::Presignature {
            presignature_id,
            account_id,
        } => {
            // Deleted from the store here, before any partial signature
            // exists: a presignature is used once, whatever happens next.
            match store
                .take_presignature_marked(&presignature_id.to_string(), &account_id)
                .await
                .map_err(|e| e.to_string())?
            {
                Some((p, provenance)) => Ok((SessionInput::Presignature(Box::new(p)), provenance)),
                None => Err(format!(
                    "presignature {presignature_id} is unknown to this party or already used"
                )),
            }
        }
        _ => Err("this party cannot supply the input the session needs".to_string()),
    }
}

/// A build that does not accept test data refuses to use it: the session
/// fails with the typed reason instead of sealing public secrets.
fn refuse_test_data_unless_accepted(state: &PartyState) -> Result<(), String> {
    if state.store.accepts_test_data() {
        Ok(())
    } else {
        Err(SealError::TestData.to_string())
    }
}

async fn obtain_primes(
    state: &PartyState,
    session_id: uuid::Uuid,
    percent: UnboundedSender<u8>,
) -> Result<(PrimeSet, Provenance), String> {
    match &state.config.primes {
        PrimeSource::InsecureTestData { dir, index } => {
            refuse_test_data_unless_accepted(state)?;
            tracing::warn!(party_id = %state.config.party_id, "INSECURE: using PUBLIC test primes");
            Ok((load_test_primes(dir, *index)?, Provenance::TestData))
        }
        PrimeSource::Generate { threads, .. } => {
            // One prime set at a time per party: a second keygen waits here,
            // then finds the pool restocked or generates its own.
            let _one_set = state.prime_set.lock().await;
            // The refill pauses from here on and hands over what it found.
            let (_demand, partial) = state.demand_primes();
            if let Some(p) = state
                .store
                .take_primes_marked()
                .await
                .map_err(|e| e.to_string())?
            {
                // Not needed after all: give the found primes back.
                state.return_primes(partial);
                return Ok(p);
            }
            tracing::info!(party_id = %state.config.party_id, %session_id, "generating 4 safe primes (minutes with pure-Rust integers)");
            let _ = percent.send(u8::try_from(partial.len() * 25).unwrap_or(100));
            let threads = *threads;
            let started = std::time::Instant::now();
            let party_id = state.config.party_id.clone();
            // A keygen waits for these: foreground work, which background
            // steps yield to while it runs.
            let _foreground = scheduler().foreground();
            let primes = tokio::task::spawn_blocking(move || {
                partial.finish_parallel(threads, |done| {
                    tracing::info!(%party_id, %session_id, "safe prime {done}/4 found");
                    let _ = percent.send(u8::try_from(done * 25).unwrap_or(100));
                })
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            tracing::info!(party_id = %state.config.party_id, %session_id, elapsed = ?started.elapsed(), "primes ready");
            Ok((primes, Provenance::Production))
        }
    }
}

/// Keeps a session's output: the sealed key share (and new aux info), the
/// presignature. A signature needs nothing kept. `provenance` is the
/// input's: what was made from test data is sealed marked as such.
pub(crate) async fn keep(
    state: &PartyState,
    d: &SessionDescriptor,
    output: SessionOutput,
    provenance: Provenance,
) -> Result<(), String> {
    let session_id = d.session_id;
    match output {
        SessionOutput::Keygen {
            share,
            public_key,
            new_aux_info,
        } => {
            let account_id = session_id.to_string();
            let group = d.group_id();
            let policy = match &d.kind {
                SessionKind::Keygen { policy, .. } => policy.as_ref(),
                _ => None,
            };
            state
                .store
                .put_keygen_result(
                    &account_id,
                    &public_key,
                    &share,
                    policy,
                    new_aux_info.as_deref().map(|a| (group.as_str(), a)),
                    provenance,
                )
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(party_id = %state.config.party_id, %session_id, "key share sealed and stored");
        }
        SessionOutput::AuxInfo(aux) => {
            let group = d.group_id();
            let stored = state
                .store
                .put_aux_version(&group, &session_id.to_string(), &aux, provenance)
                .await;
            party_core::primes::wipe_aux_info(*aux);
            let fingerprint = stored.map_err(|e| e.to_string())?;
            tracing::info!(party_id = %state.config.party_id, %session_id, fingerprint = %hex::encode(fingerprint), "new aux info of the group stored beside the current one");
        }
        SessionOutput::Signature(_) => {}
        SessionOutput::Presignature(p) => {
            state
                .store
                .put_presignature_as(&p, provenance)
                .await
                .map_err(|e| e.to_string())?;
        }
        _ => return Err("unexpected session output".to_string()),
    }
    Ok(())
}

fn read_test_json(dir: &std::path::Path, name: &str) -> Result<serde_json::Value, String> {
    let text =
        std::fs::read_to_string(dir.join(name)).map_err(|e| format!("test data {name}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("test data {name}: {e}"))
}

fn load_test_primes(dir: &std::path::Path, index: usize) -> Result<PrimeSet, String> {
    let v = read_test_json(dir, "primes.json")?;
    let h = v["parties"][index]
        .as_str()
        .ok_or("no test primes for this index".to_string())?;
    let bytes = hex::decode(h).map_err(|e| e.to_string())?;
    PrimeSet::from_bytes(&bytes).map_err(|e| e.to_string())
}

fn load_test_aux(dir: &std::path::Path, n: u16, index: u16) -> Result<party_core::AuxInfo, String> {
    let v = read_test_json(dir, &format!("aux-n{n}.json"))?;
    let h = v["aux"][usize::from(index)]
        .as_str()
        .ok_or("no test aux info for this group size".to_string())?;
    let bytes = hex::decode(h).map_err(|e| e.to_string())?;
    party_core::codec::decode(&bytes).map_err(|e| e.to_string())
}
