//! # party-wasm
//!
//! A thin `wasm-bindgen` adapter of [`party_core`] for browsers and JS devices
//! (Node). It does no I/O: the host (see `party-wasm/js/host.mjs`) owns the
//! WebSocket to the router and the HTTP calls to the coordinator and executes
//! the actions of a [`Host`] (`PartyHost` in JS: party-core's session
//! machine: router failover, rejoin and resends, deadline, reports), feeding
//! it what happens. [`Session`] is the bare protocol session (frames in,
//! frames out) underneath.
//!
//! Secrets cross the boundary only as bytes the host seals at once: the
//! identity seed ([`Identity::seed`]), a key share and aux info
//! ([`Session::take_output`]) and primes ([`prime_set_from_parts`]). Nothing
//! here logs, and errors never carry key material.
#![forbid(unsafe_code)]

use party_core::descriptor::{SessionKind, SignedDescriptor, VerifiedDescriptor};
use party_core::identity::{PartyIdentity, PartyPublicKey};
use party_core::primes::PrimeSet;
use party_core::seal::{MasterKey, RecordContext, RecordKind};
use party_core::session::{AuxSource, PartySession, Pump, SessionInput, SessionOutput};
use party_core::signature::{ethereum_address, RecoverableSignature};
use party_core::wire::{
    device_join_message, join_message, ClientToRouter, Report, RouterToClient, SignedReport,
};
use rand_core::OsRng;
use uuid::Uuid;
use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

mod host;
pub use host::Host;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Public identity of a party: hex Ed25519 and X25519 keys. */
export interface PublicIdentity { ed25519: string; x25519: string; }

/** What a verified descriptor asks of this party. */
export interface DescriptorInfo {
  session_id: string;
  kind: "keygen" | "sign" | "presign" | "online_sign" | "policy_change";
  /** keygen: whether aux info is generated in this session (needs primes). */
  generate_aux: boolean;
  threshold: number;
  parties: number;
  /** This party's position in the session. */
  position: number;
  /** This party's keygen index. */
  keygen_index: number;
  /** Party group of a keygen (aux info is kept per group). */
  group_id: string;
  account_id: string | null;
  /** sign: the 32-byte hash, hex. */
  message_hash: string | null;
  /** keygen: the account policy (JSON) every party stores with its share, or null. */
  policy: string | null;
  expires_at: number;
  participants: { party_id: string; keygen_index: number }[];
}

export interface ProgressEvent { stage: string; round: number; detail: string | null; finished: boolean; }

/** What one call into a session produced. */
export interface StepResult {
  /** Sealed frames to send to the router, as binary WebSocket messages. */
  frames: Uint8Array[];
  progress: ProgressEvent[];
  /** The session finished: call takeOutput(). */
  finished: boolean;
  /** A received frame was rejected (not fatal): why. */
  dropped: string | null;
}

/** What the session machine (PartyHost) asks its host to do. */
export type HostAction =
  | { type: "need_policy"; account_id: string }
  | { type: "record"; session_id: string; approved: { account_id: string; request_id: string; max_per_hour: number | null; signs: boolean } | null }
  | { type: "store_policy"; account_id: string; policy: string; policy_hash: string; previous: string }
  | { type: "need_input"; input: { kind: "primes" } | { kind: "aux_info"; group_id: string; parties: number; index: number } | { kind: "share"; account_id: string } | { kind: "presignature"; presignature_id: string; account_id: string } }
  | { type: "connect"; router: number; url: string }
  | { type: "send_text"; text: string }
  | { type: "send_frame"; frame: Uint8Array }
  | { type: "close" }
  | { type: "router_failed"; router: number }
  | { type: "joined"; router: number; rejoin: boolean }
  | { type: "progress"; stage: string; round: number; percent: number | null; detail: string | null }
  | { type: "frame_dropped"; reason: string }
  | { type: "send_report"; id: number; body: string; best_effort: boolean }
  | { type: "store_output"; result: SessionResult }
  | { type: "finished"; status: "completed" }
  | { type: "finished"; status: "failed"; reason: string; blamed: number | null; code: string | null };

/** */
export type SessionResult =
  | { kind: "keygen"; public_key: string; address: string; share: Uint8Array; aux_info: Uint8Array | null }
  | { kind: "signature"; r: string; s: string; v: number; signature: string; der: string };
"#;

fn err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn set(o: &js_sys::Object, k: &str, v: impl Into<JsValue>) -> Result<(), JsError> {
    js_sys::Reflect::set(o, &JsValue::from_str(k), &v.into())
        .map(|_| ())
        .map_err(|_| JsError::new("could not build a JS object"))
}

fn bytes(b: &[u8]) -> JsValue {
    js_sys::Uint8Array::from(b).into()
}

fn uuid(s: &str) -> Result<Uuid, JsError> {
    Uuid::parse_str(s).map_err(|_| JsError::new("invalid session id"))
}

fn public_json(p: &PartyPublicKey) -> Result<JsValue, JsError> {
    let o = js_sys::Object::new();
    set(&o, "ed25519", hex::encode(p.ed25519))?;
    set(&o, "x25519", hex::encode(p.x25519))?;
    Ok(o.into())
}

/// A party identity (Ed25519 + X25519 from one 32-byte seed).
#[wasm_bindgen]
#[derive(Debug)]
pub struct Identity {
    inner: PartyIdentity,
}

#[wasm_bindgen]
impl Identity {
    /// A fresh random identity (seed from `crypto.getRandomValues`).
    pub fn generate() -> Identity {
        Identity {
            inner: PartyIdentity::generate(&mut OsRng),
        }
    }

    /// Rebuilds an identity from its 32-byte seed.
    #[wasm_bindgen(js_name = fromSeed)]
    pub fn from_seed(seed: &[u8]) -> Result<Identity, JsError> {
        Ok(Identity {
            inner: PartyIdentity::from_secret_bytes(seed).map_err(err)?,
        })
    }

    /// The secret seed, to seal at once. Never log or send it.
    pub fn seed(&self) -> Vec<u8> {
        self.inner.secret_bytes().to_vec()
    }

    /// The public identity.
    #[wasm_bindgen(js_name = publicKey, unchecked_return_type = "PublicIdentity")]
    pub fn public_key(&self) -> Result<JsValue, JsError> {
        public_json(&self.inner.public())
    }

    /// The body of the coordinator's device join call
    /// (`POST /api/v1/mpc/sessions/{id}/join`): the token, this identity and
    /// its signature over the session, the token's hash and both of its
    /// public keys (`party_core::wire::device_join_message`, domain v2).
    #[wasm_bindgen(js_name = deviceJoinRequest)]
    pub fn device_join_request(
        &self,
        session_id: &str,
        join_token: &str,
    ) -> Result<String, JsError> {
        let id = uuid(session_id)?;
        let signature =
            self.inner
                .sign(&device_join_message(&id, join_token, &self.inner.public()));
        let body = serde_json::json!({
            "join_token": join_token,
            "identity": self.inner.public(),
            "signature": hex::encode(signature),
        });
        Ok(body.to_string())
    }

    /// The answer to the router's challenge (the first text message on
    /// `/ws`): a signed `join_session` message, as JSON text to send.
    #[wasm_bindgen(js_name = routerJoin)]
    pub fn router_join(
        &self,
        challenge_json: &str,
        session_id: &str,
        join_token: &str,
    ) -> Result<String, JsError> {
        let id = uuid(session_id)?;
        let nonce = match serde_json::from_str::<RouterToClient>(challenge_json).map_err(err)? {
            RouterToClient::Challenge { nonce } => nonce,
            _ => return Err(JsError::new("expected the router's challenge")),
        };
        let msg = ClientToRouter::JoinSession {
            session_id: id,
            token: join_token.to_string(),
            identity: self.inner.public(),
            signature: self.inner.sign(&join_message(&nonce, &id)),
        };
        serde_json::to_string(&msg).map_err(err)
    }

    /// Signs a report (`{session_id, position, body}` as JSON) for the
    /// coordinator's `POST /internal/v1/reports`; returns the request body.
    #[wasm_bindgen(js_name = signReport)]
    pub fn sign_report(&self, report_json: &str) -> Result<String, JsError> {
        let report: Report = serde_json::from_str(report_json).map_err(err)?;
        let signed = SignedReport::sign(&report, &self.inner).map_err(err)?;
        serde_json::to_string(&signed).map_err(err)
    }
}

/// Reads and verifies a signed descriptor (JSON) against the coordinator's
/// public key (hex), for the given identity.
fn verify(
    descriptor_json: &str,
    coordinator_public_key: &str,
) -> Result<VerifiedDescriptor, JsError> {
    let signed: SignedDescriptor = serde_json::from_str(descriptor_json).map_err(err)?;
    let key: [u8; 32] = hex::decode(coordinator_public_key)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| JsError::new("coordinator public key must be 32 bytes hex"))?;
    signed.verify(&key).map_err(err)
}

/// Verifies a signed descriptor and says what it asks of `identity`: the
/// host uses it to pick the session's inputs (primes, aux info or share).
#[wasm_bindgen(js_name = verifyDescriptor, unchecked_return_type = "DescriptorInfo")]
pub fn verify_descriptor(
    descriptor_json: &str,
    coordinator_public_key: &str,
    identity: &Identity,
) -> Result<JsValue, JsError> {
    let v = verify(descriptor_json, coordinator_public_key)?;
    let position = v.position_of(&identity.inner.public()).map_err(err)?;
    let d = v.descriptor();
    let o = js_sys::Object::new();
    set(&o, "session_id", d.session_id.to_string())?;
    set(&o, "kind", d.kind.name())?;
    set(
        &o,
        "generate_aux",
        matches!(
            d.kind,
            SessionKind::Keygen {
                generate_aux: true,
                ..
            }
        ),
    )?;
    set(&o, "threshold", d.threshold)?;
    set(&o, "parties", d.parties)?;
    set(&o, "position", position)?;
    let me = d.participants.get(usize::from(position));
    set(&o, "keygen_index", me.map(|p| p.keygen_index).unwrap_or(0))?;
    set(&o, "group_id", d.group_id())?;
    set(
        &o,
        "account_id",
        d.kind
            .account_id()
            .map(JsValue::from_str)
            .unwrap_or(JsValue::NULL),
    )?;
    let hash = match &d.kind {
        SessionKind::Sign { message_hash, .. } => JsValue::from_str(&hex::encode(message_hash)),
        _ => JsValue::NULL,
    };
    set(&o, "message_hash", hash)?;
    let policy = match &d.kind {
        SessionKind::Keygen {
            policy: Some(p), ..
        } => JsValue::from_str(&serde_json::to_string(p).map_err(err)?),
        _ => JsValue::NULL,
    };
    set(&o, "policy", policy)?;
    // Unix seconds fit an f64 exactly.
    #[allow(clippy::cast_precision_loss)]
    set(&o, "expires_at", d.expires_at as f64)?;
    let parts = js_sys::Array::new();
    for p in &d.participants {
        let po = js_sys::Object::new();
        set(&po, "party_id", p.party_id.as_str())?;
        set(&po, "keygen_index", p.keygen_index)?;
        parts.push(&po);
    }
    set(&o, "participants", parts)?;
    Ok(o.into())
}

/// One party's run of one session. Fed by the host's WebSocket.
#[wasm_bindgen]
#[derive(Debug)]
pub struct Session {
    inner: PartySession,
    output: Option<SessionOutput>,
}

fn now_secs(now: f64) -> u64 {
    if now.is_finite() && now > 0.0 {
        // Truncation of a positive Unix time in seconds.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = now as u64;
        n
    } else {
        0
    }
}

#[wasm_bindgen]
impl Session {
    fn create(
        descriptor_json: &str,
        coordinator_public_key: &str,
        identity: &Identity,
        input: SessionInput,
        now: f64,
    ) -> Result<Session, JsError> {
        let v = verify(descriptor_json, coordinator_public_key)?;
        let inner =
            PartySession::new(v, identity.inner.clone(), input, now_secs(now)).map_err(err)?;
        Ok(Session {
            inner,
            output: None,
        })
    }

    /// A keygen that generates aux info from this party's primes
    /// (`prime_set` from [`prime_set_from_parts`]). `now` is Unix seconds.
    #[wasm_bindgen(js_name = keygenGenerateAux)]
    pub fn keygen_generate_aux(
        descriptor_json: &str,
        coordinator_public_key: &str,
        identity: &Identity,
        prime_set: &[u8],
        now: f64,
    ) -> Result<Session, JsError> {
        let primes = PrimeSet::from_bytes(prime_set).map_err(err)?;
        Self::create(
            descriptor_json,
            coordinator_public_key,
            identity,
            SessionInput::Keygen(AuxSource::Generate(primes)),
            now,
        )
    }

    /// A keygen that reuses the party group's aux info.
    #[wasm_bindgen(js_name = keygenWithAux)]
    pub fn keygen_with_aux(
        descriptor_json: &str,
        coordinator_public_key: &str,
        identity: &Identity,
        aux_info: &[u8],
        now: f64,
    ) -> Result<Session, JsError> {
        let aux: party_core::AuxInfo = party_core::codec::decode(aux_info).map_err(err)?;
        Self::create(
            descriptor_json,
            coordinator_public_key,
            identity,
            SessionInput::Keygen(AuxSource::Existing(Box::new(aux))),
            now,
        )
    }

    /// A signing session with this party's key share.
    pub fn sign(
        descriptor_json: &str,
        coordinator_public_key: &str,
        identity: &Identity,
        share: &[u8],
        now: f64,
    ) -> Result<Session, JsError> {
        let share: party_core::KeyShare = party_core::codec::decode(share).map_err(err)?;
        Self::create(
            descriptor_json,
            coordinator_public_key,
            identity,
            SessionInput::Share(Box::new(share)),
            now,
        )
    }

    /// This party's position in the session.
    #[wasm_bindgen(getter)]
    pub fn position(&self) -> u16 {
        self.inner.position()
    }

    /// Starts the session: the first frames to send.
    #[wasm_bindgen(unchecked_return_type = "StepResult")]
    pub fn start(&mut self) -> Result<JsValue, JsError> {
        let pump = self.inner.start().map_err(err)?;
        self.step(pump, None)
    }

    /// Takes one binary frame received from the router. A rejected frame is
    /// reported in `dropped` (the session goes on); a fatal error throws.
    #[wasm_bindgen(js_name = handleFrame, unchecked_return_type = "StepResult")]
    pub fn handle_frame(&mut self, frame: &[u8]) -> Result<JsValue, JsError> {
        match self.inner.handle_frame(frame) {
            Ok(pump) => self.step(pump, None),
            Err(e) if !e.is_fatal() => self.step(Pump::default(), Some(e.to_string())),
            Err(e) => Err(err(e)),
        }
    }

    fn step(&mut self, mut pump: Pump, dropped: Option<String>) -> Result<JsValue, JsError> {
        let o = js_sys::Object::new();
        let frames = js_sys::Array::new();
        for f in &pump.frames {
            frames.push(&bytes(f));
        }
        set(&o, "frames", frames)?;
        let progress = js_sys::Array::new();
        for p in &pump.progress {
            let po = js_sys::Object::new();
            set(&po, "stage", p.stage.name())?;
            set(&po, "round", p.round)?;
            set(
                &po,
                "detail",
                p.detail.map(JsValue::from_str).unwrap_or(JsValue::NULL),
            )?;
            set(&po, "finished", p.finished)?;
            progress.push(&po);
        }
        set(&o, "progress", progress)?;
        if let Some(out) = pump.output.take() {
            self.output = Some(out);
        }
        set(&o, "finished", self.output.is_some())?;
        set(
            &o,
            "dropped",
            dropped
                .map(|d| JsValue::from_str(&d))
                .unwrap_or(JsValue::NULL),
        )?;
        Ok(o.into())
    }

    /// The session's result, once `finished`. A keygen result holds the
    /// encoded key share (and new aux info): seal them at once.
    #[wasm_bindgen(js_name = takeOutput, unchecked_return_type = "SessionResult")]
    pub fn take_output(&mut self) -> Result<JsValue, JsError> {
        let out = self
            .output
            .take()
            .ok_or_else(|| JsError::new("the session has not finished"))?;
        output_js(out)
    }
}

/// A session output as the JS `SessionResult`. A keygen result holds the
/// encoded key share (and new aux info): the host seals them at once.
fn output_js(out: SessionOutput) -> Result<JsValue, JsError> {
    let o = js_sys::Object::new();
    match out {
        SessionOutput::Keygen {
            share,
            public_key,
            new_aux_info,
        } => {
            set(&o, "kind", "keygen")?;
            set(&o, "public_key", hex::encode(public_key))?;
            set(&o, "address", ethereum_address(&public_key).map_err(err)?)?;
            let share = Zeroizing::new(party_core::codec::encode(&*share).map_err(err)?);
            set(&o, "share", bytes(&share))?;
            let aux = match new_aux_info {
                Some(a) => bytes(&Zeroizing::new(
                    party_core::codec::encode(&*a).map_err(err)?,
                )),
                None => JsValue::NULL,
            };
            set(&o, "aux_info", aux)?;
        }
        SessionOutput::Signature(sig) => signature_fields(&o, &sig)?,
        SessionOutput::Presignature(_) => set(&o, "kind", "presignature")?,
        _ => return Err(JsError::new("unexpected session output")),
    }
    Ok(o.into())
}

fn signature_fields(o: &js_sys::Object, sig: &RecoverableSignature) -> Result<(), JsError> {
    set(o, "kind", "signature")?;
    set(o, "r", hex::encode(sig.r))?;
    set(o, "s", hex::encode(sig.s))?;
    set(o, "v", sig.v)?;
    set(o, "signature", sig.to_hex65())?;
    set(o, "der", hex::encode(sig.to_der()))?;
    Ok(())
}

/// One 1536-bit safe prime, big-endian (for one Web Worker; a party needs
/// four). Minutes of CPU with the pure-Rust integers.
#[wasm_bindgen(js_name = generateSafePrime)]
pub fn generate_safe_prime() -> Vec<u8> {
    party_core::primes::generate_safe_prime(&mut OsRng).to_bytes_msf()
}

/// Checks four safe primes (sizes and safe primality) and encodes them as the
/// prime set a keygen takes. Secret: seal the result.
#[wasm_bindgen(js_name = primeSetFromParts)]
pub fn prime_set_from_parts(primes: Vec<js_sys::Uint8Array>) -> Result<Vec<u8>, JsError> {
    use party_core::cggmp24::backend::Integer;
    let ints = primes
        .iter()
        .map(|p| Integer::from_bytes_msf(&Zeroizing::new(p.to_vec())))
        .collect();
    let set = PrimeSet::from_parts(ints).map_err(err)?;
    Ok(set.to_bytes().map_err(err)?.to_vec())
}

/// Whether this module was built for tests (cargo feature
/// `insecure-test-data`). The demo page takes the PUBLIC test primes and aux
/// info its server offers only from such a build: a production build never
/// lets whoever runs the backend choose the device's Paillier key.
#[wasm_bindgen(js_name = insecureTestBuild)]
pub fn insecure_test_build() -> bool {
    cfg!(feature = "insecure-test-data")
}

/// Checks an encoded prime set (sizes and safe primality).
#[wasm_bindgen(js_name = checkPrimeSet)]
pub fn check_prime_set(prime_set: &[u8]) -> Result<(), JsError> {
    PrimeSet::from_bytes(prime_set).map(|_| ()).map_err(err)
}

fn record_kind(kind: &str) -> Result<RecordKind, JsError> {
    Ok(match kind {
        "key_share" => RecordKind::KeyShare,
        "aux_info" => RecordKind::AuxInfo,
        "primes" => RecordKind::Primes,
        "identity" => RecordKind::Identity,
        _ => return Err(JsError::new("unknown record kind")),
    })
}

/// The AES-GCM associated data of a sealed record (party-core's format), for
/// hosts that seal with WebCrypto: binds party, account, kind and version.
#[wasm_bindgen(js_name = sealAad)]
pub fn seal_aad(party_id: &str, account_id: &str, kind: &str) -> Result<Vec<u8>, JsError> {
    Ok(RecordContext {
        party_id,
        account_id,
        kind: record_kind(kind)?,
    }
    .associated_data())
}

/// Seals a record under a 32-byte master key (hosts without WebCrypto keys,
/// e.g. a Node device keeping its master key in a file).
#[wasm_bindgen(js_name = sealRecord)]
pub fn seal_record(
    master_key: &[u8],
    party_id: &str,
    account_id: &str,
    kind: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, JsError> {
    let key = MasterKey::from_bytes(master_key).map_err(err)?;
    let ctx = RecordContext {
        party_id,
        account_id,
        kind: record_kind(kind)?,
    };
    key.seal(ctx, plaintext).map_err(err)
}

/// Opens a record sealed by [`seal_record`] (or by WebCrypto in the same
/// format). Fails if the key, party, account or kind differ.
#[wasm_bindgen(js_name = openRecord)]
pub fn open_record(
    master_key: &[u8],
    party_id: &str,
    account_id: &str,
    kind: &str,
    sealed: &[u8],
) -> Result<Vec<u8>, JsError> {
    let key = MasterKey::from_bytes(master_key).map_err(err)?;
    let ctx = RecordContext {
        party_id,
        account_id,
        kind: record_kind(kind)?,
    };
    Ok(key.open(ctx, sealed).map_err(err)?.to_vec())
}

/// EIP-55 Ethereum address of a SEC1 public key (hex).
#[wasm_bindgen(js_name = ethereumAddress)]
pub fn ethereum_address_of(public_key: &str) -> Result<String, JsError> {
    let pk = hex::decode(public_key).map_err(|_| JsError::new("public key is not hex"))?;
    ethereum_address(&pk).map_err(err)
}

/// The EIP-191 `personal_sign` hash of a message: Keccak-256 of
/// `"\x19Ethereum Signed Message:\n" || len || message`, hex.
#[wasm_bindgen(js_name = personalMessageHash)]
pub fn personal_message_hash(message: &str) -> String {
    use sha3::{Digest as _, Keccak256};
    let mut h = Keccak256::new();
    h.update(format!("\x19Ethereum Signed Message:\n{}", message.len()).as_bytes());
    h.update(message.as_bytes());
    hex::encode(h.finalize())
}

/// The hash of an account policy (JSON), hex: what a party reports and
/// what a policy change names as the policy it replaces.
#[wasm_bindgen(js_name = policyHash)]
pub fn policy_hash(policy_json: &str) -> Result<String, JsError> {
    let p: party_core::authz::Policy = serde_json::from_str(policy_json).map_err(err)?;
    Ok(hex::encode(p.hash()))
}

/// The big-integer backend compiled in (`num-bigint` in the wasm build).
#[wasm_bindgen(js_name = backend)]
pub fn backend() -> String {
    party_core::active_backend().to_string()
}

/// Checks an ECDSA signature `(r, s, v)` of a 32-byte hash under a SEC1
/// public key (all hex): it verifies, `s` is low and `v` recovers the key.
#[wasm_bindgen(js_name = verifySignature)]
pub fn verify_signature(
    hash: &str,
    public_key: &str,
    r: &str,
    s: &str,
    v: u8,
) -> Result<bool, JsError> {
    let h32 = |x: &str| -> Result<[u8; 32], JsError> {
        hex::decode(x.trim_start_matches("0x"))
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| JsError::new("expected 32 bytes of hex"))
    };
    let pk = hex::decode(public_key.trim_start_matches("0x"))
        .map_err(|_| JsError::new("public key is not hex"))?;
    let (hash, r, s) = (h32(hash)?, h32(r)?, h32(s)?);
    Ok(matches!(
        RecoverableSignature::from_parts(r, s, &hash, &pk),
        Ok(sig) if sig.v == v && sig.s == s
    ))
}
