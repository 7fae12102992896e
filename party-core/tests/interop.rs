//! A party built with the other big-integer backend (a separate process:
//! one binary can only hold one backend) completes keygen with aux info
//! generation and signing together with this test's party.
//!
//! `MPC_INTEROP_PARTY_BIN` names the `stdio_party` example built with the
//! other backend (`.ci/run` builds it with GMP). Required when `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use common::*;
use party_core::descriptor::{SessionKind, SignedDescriptor};
use party_core::seal::MasterKey;
use party_core::session::{AuxSource, PartySession, SessionInput, SessionOutput};
use party_core::signature::RecoverableSignature;

fn other_backend_binary() -> Option<String> {
    match std::env::var("MPC_INTEROP_PARTY_BIN") {
        Ok(p) => Some(p),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but MPC_INTEROP_PARTY_BIN is not set")
        }
        Err(_) => {
            eprintln!(
                "skipping: set MPC_INTEROP_PARTY_BIN to a stdio_party built with the other backend"
            );
            None
        }
    }
}

/// Runs `local` here and party 1 in the external binary; returns both outputs.
fn run_pair(
    bin: &str,
    setup: serde_json::Value,
    mut local: PartySession,
) -> (Option<SessionOutput>, serde_json::Value, String) {
    let mut child = Command::new(bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the other-backend party");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    writeln!(stdin, "{setup}").unwrap();
    let send = |frames: Vec<Vec<u8>>, stdin: &mut std::process::ChildStdin| {
        for f in frames {
            writeln!(stdin, "{}", hex::encode(f)).unwrap();
        }
        stdin.flush().unwrap();
    };
    let pump = local.start().unwrap();
    send(pump.frames, &mut stdin);
    let mut local_out = pump.output;
    let mut backend = String::new();
    let remote_out = loop {
        let line = rx.recv().expect("other party exited early");
        if let Some(b) = line.strip_prefix("backend ") {
            backend = b.to_string();
        } else if let Some(f) = line.strip_prefix("frame ") {
            let pump = local.handle_frame(&hex::decode(f).unwrap()).unwrap();
            send(pump.frames, &mut stdin);
            local_out = local_out.or(pump.output);
        } else if let Some(done) = line.strip_prefix("done ") {
            break serde_json::from_str::<serde_json::Value>(done).unwrap();
        } else {
            panic!("other party: {line}");
        }
    };
    assert!(child.wait().unwrap().success());
    (local_out, remote_out, backend)
}

#[test]
fn parties_on_different_backends_keygen_and_sign_together() {
    let Some(bin) = other_backend_binary() else {
        return;
    };
    let f = Fixture::new(2);
    let key = MasterKey::generate();
    let setup = |signed: &SignedDescriptor, input: (&str, String)| {
        let mut v = serde_json::json!({
            "descriptor": signed,
            "coordinator": hex::encode(f.coordinator.public()),
            "identity_seed": hex::encode(f.parties[1].secret_bytes().as_ref()),
            "master_key": key.to_hex().to_string(),
            "party_id": "party-2",
            "account_id": "acct-interop",
        });
        v[input.0] = serde_json::Value::String(input.1);
        v
    };

    // Keygen with aux info generation across backends.
    let signed = f.sign_descriptor(f.descriptor(
        SessionKind::Keygen {
            generate_aux: true,
            policy: None,
            aux_fingerprint: None,
        },
        2,
        &[0, 1],
    ));
    let verified = signed.verify(&f.coordinator.public()).unwrap();
    let local = PartySession::new(
        verified,
        f.parties[0].clone(),
        SessionInput::Keygen(AuxSource::Generate(test_primes(0))),
        now(),
    )
    .unwrap();
    let primes_hex = hex::encode(test_primes(1).to_bytes().unwrap().as_slice());
    let (local_out, remote, remote_backend) =
        run_pair(&bin, setup(&signed, ("primes", primes_hex)), local);
    assert_ne!(
        remote_backend,
        party_core::active_backend(),
        "the other party uses the other backend"
    );
    let Some(SessionOutput::Keygen {
        share, public_key, ..
    }) = local_out
    else {
        panic!("local keygen did not finish");
    };
    assert_eq!(
        remote["public_key"].as_str().unwrap(),
        hex::encode(public_key)
    );

    // Signing across backends.
    let hash = random_hash();
    let signed = f.sign_descriptor(f.descriptor(
        SessionKind::Sign {
            account_id: "acct-interop".into(),
            message_hash: hash,
            derivation_path: vec![],
        },
        2,
        &[1, 0],
    ));
    let verified = signed.verify(&f.coordinator.public()).unwrap();
    let local = PartySession::new(
        verified,
        f.parties[0].clone(),
        SessionInput::Share(share),
        now(),
    )
    .unwrap();
    let sealed = remote["sealed_share"].as_str().unwrap().to_string();
    let (local_out, remote, _) = run_pair(&bin, setup(&signed, ("sealed_share", sealed)), local);
    let Some(SessionOutput::Signature(sig)) = local_out else {
        panic!("local signing did not finish");
    };
    let remote_sig: RecoverableSignature =
        serde_json::from_value(remote["signature"].clone()).unwrap();
    assert_eq!(sig, remote_sig);
    assert_valid_signature(&sig, &hash, &public_key);
}
