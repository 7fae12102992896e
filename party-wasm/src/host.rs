//! [`Host`] (`PartyHost` in JS): party-core's session machine
//! ([`party_core::host::PartyHost`]) for the JS host, which executes its
//! actions (WebSocket, timers, fetch) and feeds it events. Times are Unix
//! milliseconds (`Date.now()`).

use party_core::authz::{AuthzError, Policy};
use party_core::descriptor::MessageDigest;
use party_core::host::{
    Action, Admission, HostConfig, InputRequest, Outcome, PartyHost, ReportOutcome, UserApproved,
};
use party_core::primes::PrimeSet;
use party_core::session::{AuxSource, SessionInput};
use party_core::wire::{ReportBody, SignedReport};
use serde::Deserialize;
use wasm_bindgen::prelude::*;

use crate::{bytes, err, output_js, set, verify, Identity};

fn ms(now: f64) -> u64 {
    if now.is_finite() && now > 0.0 {
        // Truncation of a positive Unix time in milliseconds.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = now as u64;
        n
    } else {
        0
    }
}

/// One party's session: inputs, router connection and failover, resends,
/// deadline, reports. See `party-wasm/js/host.mjs` for the I/O shell.
#[wasm_bindgen(js_name = PartyHost)]
#[derive(Debug)]
pub struct Host {
    inner: PartyHost,
    /// The typed code of this party's refusal, once it reported one.
    refused: Option<String>,
}

/// What the user approved, as the JS host passes it (JSON): `{"hash": hex}`
/// or `{"message": hex, "digest": "keccak256" | "sha256"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovedJs {
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    digest: Option<MessageDigest>,
}

fn hex_of(s: &str) -> Option<Vec<u8>> {
    hex::decode(s.strip_prefix("0x").unwrap_or(s)).ok()
}

/// Reads what the user approved (`approved_json`, see [`ApprovedJs`]).
fn parse_approved(json: &str) -> Result<UserApproved, String> {
    let a: ApprovedJs = serde_json::from_str(json).map_err(|e| format!("approved: {e}"))?;
    match (a.hash, a.message, a.digest) {
        (Some(h), None, None) => hex_of(&h)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(UserApproved::Hash)
            .ok_or_else(|| "approved.hash must be 32 bytes of hex".to_string()),
        (None, Some(m), Some(digest)) => Ok(UserApproved::Message {
            message: hex_of(&m).ok_or_else(|| "approved.message must be hex".to_string())?,
            digest,
        }),
        _ => Err("approved is {hash} or {message, digest}, nothing else".to_string()),
    }
}

/// A refusal code from the JS host's admission record (`admissionRecorded`)
/// back to the typed error. Only the refusals a record can make.
fn record_refusal(code: &str) -> Option<AuthzError> {
    Some(match code {
        "session_replayed" => AuthzError::SessionReplayed,
        "request_id_reused" => AuthzError::RequestIdReused,
        "signing_rate_limited" => AuthzError::RateLimited,
        _ => return None,
    })
}

/// The code of a `Refused` report body, if `body` (a signed report) is one.
fn refused_code(body: &str) -> Option<String> {
    let signed: SignedReport = serde_json::from_str(body).ok()?;
    match signed.peek()?.body {
        ReportBody::Refused { code, .. } => Some(code),
        _ => None,
    }
}

fn request_js(r: &InputRequest) -> Result<JsValue, JsError> {
    let o = js_sys::Object::new();
    match r {
        InputRequest::Primes => set(&o, "kind", "primes")?,
        InputRequest::AuxInfo {
            group_id,
            parties,
            index,
            fingerprint,
        } => {
            set(&o, "kind", "aux_info")?;
            set(&o, "group_id", group_id.as_str())?;
            set(&o, "parties", *parties)?;
            set(&o, "index", *index)?;
            // The group's agreed aux info (checked by the session itself:
            // other aux info fails it before anything is sent).
            let fingerprint = match fingerprint {
                Some(f) => JsValue::from_str(&hex::encode(f)),
                None => JsValue::NULL,
            };
            set(&o, "fingerprint", fingerprint)?;
        }
        InputRequest::Share { account_id } => {
            set(&o, "kind", "share")?;
            set(&o, "account_id", account_id.as_str())?;
        }
        InputRequest::Presignature {
            presignature_id,
            account_id,
        } => {
            set(&o, "kind", "presignature")?;
            set(&o, "presignature_id", presignature_id.to_string())?;
            set(&o, "account_id", account_id.as_str())?;
        }
        _ => set(&o, "kind", "unknown")?,
    }
    Ok(o.into())
}

fn opt<T: Into<JsValue>>(v: Option<T>) -> JsValue {
    v.map(Into::into).unwrap_or(JsValue::NULL)
}

// Report ids and router indices are small: exact in an f64.
#[allow(clippy::cast_precision_loss)]
fn action_js(a: Action, refused: Option<&str>) -> Result<JsValue, JsError> {
    let o = js_sys::Object::new();
    let kind = |o: &js_sys::Object, k: &str| set(o, "type", k);
    match a {
        Action::NeedPolicy { account_id } => {
            kind(&o, "need_policy")?;
            set(&o, "account_id", account_id)?;
        }
        Action::Record(Admission {
            session_id,
            approved,
        }) => {
            kind(&o, "record")?;
            set(&o, "session_id", session_id.to_string())?;
            let a = match approved {
                Some(a) => {
                    let ao = js_sys::Object::new();
                    set(&ao, "account_id", a.account_id)?;
                    set(&ao, "request_id", a.request_id)?;
                    set(&ao, "max_per_hour", opt(a.max_per_hour))?;
                    set(&ao, "signs", a.signs)?;
                    ao.into()
                }
                None => JsValue::NULL,
            };
            set(&o, "approved", a)?;
        }
        Action::StorePolicy {
            account_id,
            policy,
            previous,
        } => {
            kind(&o, "store_policy")?;
            set(&o, "account_id", account_id)?;
            set(&o, "policy", serde_json::to_string(&policy).map_err(err)?)?;
            set(&o, "policy_hash", hex::encode(policy.hash()))?;
            set(&o, "previous", hex::encode(previous))?;
        }
        Action::NeedInput(r) => {
            kind(&o, "need_input")?;
            set(&o, "input", request_js(&r)?)?;
        }
        Action::Connect { router, url } => {
            kind(&o, "connect")?;
            set(&o, "router", router as f64)?;
            set(&o, "url", url)?;
        }
        Action::SendText(t) => {
            kind(&o, "send_text")?;
            set(&o, "text", t)?;
        }
        Action::SendFrame(f) => {
            kind(&o, "send_frame")?;
            set(&o, "frame", bytes(&f))?;
        }
        Action::CloseConnection => kind(&o, "close")?,
        Action::RouterFailed { router } => {
            kind(&o, "router_failed")?;
            set(&o, "router", router as f64)?;
        }
        Action::Joined { router, rejoin } => {
            kind(&o, "joined")?;
            set(&o, "router", router as f64)?;
            set(&o, "rejoin", rejoin)?;
        }
        Action::Progress(p) => {
            kind(&o, "progress")?;
            set(&o, "stage", p.stage)?;
            set(&o, "round", p.round)?;
            set(&o, "percent", opt(p.percent))?;
            set(&o, "detail", opt(p.detail))?;
        }
        Action::FrameDropped(reason) => {
            kind(&o, "frame_dropped")?;
            set(&o, "reason", reason)?;
        }
        Action::SendReport {
            id,
            body,
            best_effort,
        } => {
            kind(&o, "send_report")?;
            set(&o, "id", id as f64)?;
            set(&o, "body", body)?;
            set(&o, "best_effort", best_effort)?;
        }
        Action::StoreOutput(out) => {
            kind(&o, "store_output")?;
            set(&o, "result", output_js(out)?)?;
        }
        Action::Finished(Outcome::Completed) => {
            kind(&o, "finished")?;
            set(&o, "status", "completed")?;
        }
        Action::Finished(Outcome::Failed { reason, blamed }) => {
            kind(&o, "finished")?;
            set(&o, "status", "failed")?;
            set(&o, "reason", reason)?;
            set(&o, "blamed", opt(blamed))?;
            set(&o, "code", opt(refused))?;
        }
        _ => kind(&o, "unknown")?,
    }
    Ok(o.into())
}

#[wasm_bindgen(js_class = PartyHost)]
impl Host {
    /// Verifies the descriptor against the coordinator key and starts the
    /// session machine for `identity` (which the descriptor must list).
    /// `router_urls` in order of preference; `coordinators`: how many
    /// coordinator URLs the host rotates through. `approved_json`: what the
    /// user approved, `{"hash": hex}` or `{"message": hex, "digest":
    /// "keccak256" | "sha256"}`; a descriptor signing anything else is
    /// refused (`not_what_was_approved`) before any connection.
    #[wasm_bindgen(constructor)]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        descriptor_json: &str,
        coordinator_public_key: &str,
        identity: &Identity,
        router_urls: Vec<String>,
        join_token: &str,
        coordinators: u32,
        now: f64,
        approved_json: Option<String>,
    ) -> Result<Host, JsError> {
        let v = verify(descriptor_json, coordinator_public_key)?;
        let approved = approved_json
            .as_deref()
            .map(parse_approved)
            .transpose()
            .map_err(|e| JsError::new(&e))?;
        let config = HostConfig {
            router_urls,
            first_router: 0,
            join_token: join_token.to_string(),
            coordinators: usize::try_from(coordinators).unwrap_or(1),
            approved,
        };
        let inner = PartyHost::new(v, identity.inner.clone(), config, ms(now)).map_err(err)?;
        Ok(Host {
            inner,
            refused: None,
        })
    }

    /// The answer to a `need_policy` action: this device's own stored policy
    /// of the account (JSON, as stored from the keygen descriptor or a
    /// policy change), or null when it holds none. A stored policy that does
    /// not read or validate fails the session (never treated as none).
    #[wasm_bindgen(js_name = providePolicy)]
    pub fn provide_policy(&mut self, policy_json: Option<String>, now: f64) {
        let policy = match policy_json.as_deref().map(serde_json::from_str::<Policy>) {
            None => None,
            Some(Ok(p)) if p.validate().is_ok() => Some(p),
            Some(_) => {
                self.inner
                    .host_failed("the stored policy is unreadable".to_string(), ms(now));
                return;
            }
        };
        self.inner.provide_policy(policy, ms(now));
    }

    /// The answer to a `record` action: null once the admission is recorded
    /// durably, or the refusal's code (`session_replayed`,
    /// `request_id_reused`, `signing_rate_limited`). Throws on another code.
    #[wasm_bindgen(js_name = admissionRecorded)]
    pub fn admission_recorded(&mut self, refusal: Option<String>, now: f64) -> Result<(), JsError> {
        let result = match refusal.as_deref() {
            None => Ok(()),
            Some(code) => Err(record_refusal(code)
                .ok_or_else(|| JsError::new("unknown admission refusal code"))?),
        };
        self.inner.admission_recorded(result, ms(now));
        Ok(())
    }

    /// The host could not carry out a step (e.g. its store failed): the
    /// session fails with `reason`.
    #[wasm_bindgen(js_name = hostFailed)]
    pub fn host_failed(&mut self, reason: &str, now: f64) {
        self.inner.host_failed(reason.to_string(), ms(now));
    }

    /// This party's position in the session.
    #[wasm_bindgen(getter)]
    pub fn position(&self) -> u16 {
        self.inner.position()
    }

    /// The input asked for by a `need_input` action: `kind` is the
    /// request's (`primes`: a prime set from `primeSetFromParts`;
    /// `aux_info`; `share`), `input` the encoded secret.
    #[wasm_bindgen(js_name = provideInput)]
    pub fn provide_input(&mut self, kind: &str, input: &[u8], now: f64) -> Result<(), JsError> {
        let input = match kind {
            "primes" => SessionInput::Keygen(AuxSource::Generate(
                PrimeSet::from_bytes(input).map_err(err)?,
            )),
            "aux_info" => {
                let aux: party_core::AuxInfo = party_core::codec::decode(input).map_err(err)?;
                SessionInput::Keygen(AuxSource::Existing(Box::new(aux)))
            }
            "share" => {
                let share: party_core::KeyShare = party_core::codec::decode(input).map_err(err)?;
                SessionInput::Share(Box::new(share))
            }
            _ => return Err(JsError::new("this host cannot supply that input")),
        };
        self.inner.provide_input(input, ms(now));
        Ok(())
    }

    /// The input cannot be supplied: the session fails with `reason`.
    #[wasm_bindgen(js_name = inputFailed)]
    pub fn input_failed(&mut self, reason: &str, now: f64) {
        self.inner.input_failed(reason.to_string(), ms(now));
    }

    /// Progress while gathering the input (e.g. `primes`, percent).
    #[wasm_bindgen(js_name = inputProgress)]
    pub fn input_progress(&mut self, stage: &str, percent: u8, now: f64) {
        self.inner.input_progress(stage, percent, ms(now));
    }

    /// A text message on the session connection.
    #[wasm_bindgen(js_name = textReceived)]
    pub fn text_received(&mut self, text: &str, now: f64) {
        self.inner.text_received(text, ms(now));
    }

    /// A binary frame on the session connection.
    #[wasm_bindgen(js_name = frameReceived)]
    pub fn frame_received(&mut self, frame: &[u8], now: f64) {
        self.inner.frame_received(frame, ms(now));
    }

    /// The session connection closed or could not be opened.
    #[wasm_bindgen(js_name = connectionClosed)]
    pub fn connection_closed(&mut self, now: f64) {
        self.inner.connection_closed(ms(now));
    }

    /// The output of a `store_output` action was kept.
    #[wasm_bindgen(js_name = outputStored)]
    pub fn output_stored(&mut self, now: f64) {
        self.inner.output_stored(ms(now));
    }

    /// The output could not be kept: the session fails with `reason`.
    #[wasm_bindgen(js_name = outputStoreFailed)]
    pub fn output_store_failed(&mut self, reason: &str, now: f64) {
        self.inner.output_store_failed(reason.to_string(), ms(now));
    }

    /// What became of a `send_report` action: `delivered` (2xx), `refused`
    /// (4xx) or `unavailable` (network error, timeout, 5xx).
    #[wasm_bindgen(js_name = reportResult)]
    pub fn report_result(&mut self, id: f64, outcome: &str, now: f64) -> Result<(), JsError> {
        let outcome = match outcome {
            "delivered" => ReportOutcome::Delivered,
            "refused" => ReportOutcome::Refused,
            "unavailable" => ReportOutcome::Unavailable,
            _ => return Err(JsError::new("unknown report outcome")),
        };
        self.inner.report_result(ms(id), outcome, ms(now));
        Ok(())
    }

    /// Time passed (call at `wakeAt()`).
    pub fn tick(&mut self, now: f64) {
        self.inner.tick(ms(now));
    }

    /// When to call `tick` next (Unix ms), or null.
    #[wasm_bindgen(js_name = wakeAt)]
    // Unix milliseconds are exact in an f64.
    #[allow(clippy::cast_precision_loss)]
    pub fn wake_at(&self) -> Option<f64> {
        self.inner.wake_at().map(|t| t as f64)
    }

    /// The actions queued since the last call, in order.
    #[wasm_bindgen(js_name = takeActions, unchecked_return_type = "HostAction[]")]
    pub fn take_actions(&mut self) -> Result<js_sys::Array, JsError> {
        let out = js_sys::Array::new();
        while let Some(a) = self.inner.poll_action() {
            if let Action::SendReport { body, .. } = &a {
                if let Some(code) = refused_code(body) {
                    self.refused = Some(code);
                }
            }
            out.push(&action_js(a, self.refused.as_deref())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use party_core::identity::PartyIdentity;
    use party_core::wire::Report;
    use rand_core::OsRng;

    #[test]
    fn the_approval_is_a_hash_or_a_message_with_its_digest_and_nothing_else() {
        let h = "11".repeat(32);
        assert_eq!(
            parse_approved(&format!(r#"{{"hash":"0x{h}"}}"#)),
            Ok(UserApproved::Hash([0x11; 32]))
        );
        assert_eq!(
            parse_approved(r#"{"message":"6869","digest":"keccak256"}"#),
            Ok(UserApproved::Message {
                message: b"hi".to_vec(),
                digest: MessageDigest::Keccak256
            })
        );
        for bad in [
            r#"{}"#.to_string(),
            r#"{"hash":"11"}"#.to_string(),
            r#"{"message":"6869"}"#.to_string(),
            r#"{"message":"zz","digest":"sha256"}"#.to_string(),
            r#"{"message":"6869","digest":"md5"}"#.to_string(),
            format!(r#"{{"hash":"{h}","message":"6869","digest":"sha256"}}"#),
            format!(r#"{{"hash":"{h}","path":[1]}}"#),
        ] {
            assert!(parse_approved(&bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn only_the_refusals_a_record_can_make_map_back_to_typed_errors() {
        for e in [
            AuthzError::SessionReplayed,
            AuthzError::RequestIdReused,
            AuthzError::RateLimited,
        ] {
            assert_eq!(record_refusal(e.code()), Some(e));
        }
        // A store cannot claim the approvals are fine or forge another verdict.
        for code in ["not_what_was_approved", "approval_quorum_not_met", "", "ok"] {
            assert_eq!(record_refusal(code), None, "{code}");
        }
    }

    #[test]
    fn a_refused_report_yields_its_code_and_other_reports_none() {
        let id = PartyIdentity::generate(&mut OsRng);
        let body = |body| {
            let report = Report {
                session_id: uuid::Uuid::from_u128(7),
                position: 0,
                body,
            };
            serde_json::to_string(&SignedReport::sign(&report, &id).unwrap()).unwrap()
        };
        let refused = body(ReportBody::Refused {
            code: "not_what_was_approved".into(),
            reason: "the session does not sign what the user approved".into(),
        });
        assert_eq!(
            refused_code(&refused).as_deref(),
            Some("not_what_was_approved")
        );
        let failed = body(ReportBody::Failed {
            reason: "refused (not_what_was_approved)".into(),
            blamed: None,
        });
        assert_eq!(refused_code(&failed), None);
        assert_eq!(refused_code("not json"), None);
    }
}
