//! One party of one session, speaking over stdin/stdout. Used by the
//! cross-backend test (a GMP build of this example co-signs with a num-bigint
//! party) and handy for poking at the protocol by hand.
//!
//! stdin:  one JSON setup line, then one hex frame per line.
//! stdout: `backend <name>`, then `frame <hex>` lines, then `done <json>`
//!         (public key, sealed share, signature), or `error <text>`.

use std::io::{BufRead, Write};

use party_core::descriptor::SignedDescriptor;
use party_core::identity::PartyIdentity;
use party_core::primes::PrimeSet;
use party_core::seal::{MasterKey, RecordContext, RecordKind};
use party_core::session::{AuxSource, PartySession, SessionInput, SessionOutput};
use party_core::KeyShare;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Setup {
    descriptor: SignedDescriptor,
    #[serde(with = "hex::serde")]
    coordinator: [u8; 32],
    identity_seed: String,
    master_key: String,
    party_id: String,
    account_id: String,
    /// Hex primes (keygen with aux generation) ...
    primes: Option<String>,
    /// ... or a sealed key share (signing).
    sealed_share: Option<String>,
}

fn main() {
    if let Err(e) = run() {
        println!("error {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let setup: Setup = serde_json::from_str(&lines.next().ok_or("no setup line")??)?;
    let key = MasterKey::from_hex(&setup.master_key)?;
    let identity = PartyIdentity::from_secret_bytes(&hex::decode(&setup.identity_seed)?)?;
    let ctx = RecordContext {
        party_id: &setup.party_id,
        account_id: &setup.account_id,
        kind: RecordKind::KeyShare,
    };
    let input = match (setup.primes, setup.sealed_share) {
        (Some(p), None) => {
            SessionInput::Keygen(AuxSource::Generate(PrimeSet::from_bytes(&hex::decode(p)?)?))
        }
        (None, Some(s)) => {
            SessionInput::Share(Box::new(key.open_value::<KeyShare>(ctx, &hex::decode(s)?)?))
        }
        _ => return Err("give exactly one of primes and sealed_share".into()),
    };
    let verified = setup.descriptor.verify(&setup.coordinator)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut session = PartySession::new(verified, identity, input, now)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "backend {}", party_core::active_backend())?;
    let mut pump = session.start()?;
    loop {
        for f in &pump.frames {
            writeln!(out, "frame {}", hex::encode(f))?;
        }
        out.flush()?;
        if let Some(output) = pump.output.take() {
            let result = match output {
                SessionOutput::Keygen {
                    share, public_key, ..
                } => serde_json::json!({
                    "public_key": hex::encode(public_key),
                    "sealed_share": hex::encode(key.seal_value(ctx, &*share)?),
                }),
                SessionOutput::Signature(sig) => serde_json::json!({ "signature": sig }),
                _ => return Err("unexpected output".into()),
            };
            writeln!(out, "done {result}")?;
            return Ok(());
        }
        let line = lines
            .next()
            .ok_or("stdin closed before the session ended")??;
        pump = match session.handle_frame(&hex::decode(line.trim())?) {
            Ok(p) => p,
            Err(e) if !e.is_fatal() => {
                eprintln!("dropped frame: {e}");
                Default::default()
            }
            Err(e) => return Err(e.into()),
        };
    }
}
