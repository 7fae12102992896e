//! Replays every file of `fuzz/corpus/<target>/` (seeds made from real
//! encodings, and every crasher the fuzzer found) through the target's body:
//! none may panic. Cheap enough for every CI run; the fuzzing itself is
//! `scripts/fuzz`.
//!
//! The seeds are written by the ignored `write_seed_corpus` (by hand only):
//!
//! ```sh
//! MPC_WRITE_CORPUS=1 cargo test -p fuzz-targets --test corpus -- --ignored write_seed_corpus
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use fuzz_targets::fixed;
use fuzz_targets::network::{join_pieces, policy};
use party_core::authz::{statement_of, Approval, ApprovedMessage, Authorization};
use party_core::descriptor::{MessageDigest, SessionDescriptor, SessionKind};
use party_core::driver;
use party_core::envelope::Stage;
use party_core::seal::RecordKind;
use party_core::signature::RecoverableSignature;
use party_core::wire::{
    control_message, join_message, ClientToRouter, Invitation, Report, ReportBody, RouterToClient,
    SignedReport,
};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

#[test]
fn every_corpus_file_replays_without_a_panic() {
    let mut files = 0usize;
    for (name, body) in fuzz_targets::TARGETS {
        let dir = corpus_dir().join(name);
        let entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (every target keeps a corpus)", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        assert!(!entries.is_empty(), "{name}: empty corpus");
        for path in entries {
            let data = std::fs::read(&path).unwrap();
            if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
                panic!("{name} panicked on {}", path.display());
            }
            files += 1;
        }
    }
    // No directory without a target (a renamed target would stop replaying).
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let name = entry.unwrap().file_name();
        let name = name.to_string_lossy();
        assert!(
            fuzz_targets::target(&name).is_some(),
            "fuzz/corpus/{name} has no target"
        );
    }
    eprintln!("replayed {files} corpus files");
}

/// The fuzz crate has one binary per target, each calling its body.
#[test]
fn every_target_has_a_fuzz_binary() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    let manifest = std::fs::read_to_string(dir.join("../Cargo.toml")).unwrap();
    for (name, _) in fuzz_targets::TARGETS {
        let src = std::fs::read_to_string(dir.join(format!("{name}.rs")))
            .unwrap_or_else(|e| panic!("fuzz/fuzz_targets/{name}.rs: {e}"));
        assert!(
            src.contains(&format!("fuzz_targets::{name}(")),
            "fuzz/fuzz_targets/{name}.rs calls its body"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml lists {name}"
        );
    }
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(corpus_dir().join(target).join(format!("seed-{name}"))).unwrap()
}

/// The seeds are real encodings that pass each target's first checks, so
/// the fuzzer starts from inside the decoders, not at their front door.
#[test]
fn seeds_reach_past_the_first_checks() {
    use fuzz_targets::network::pieces;
    use party_core::descriptor::SignedDescriptor;
    use party_core::seal::RecordContext;
    // A peer's session key and a signed broadcast open.
    let frames = seed("envelope_frame", "key-then-broadcast");
    let mut ch0 = fixed::channel(0);
    for f in pieces(&frames) {
        ch0.open(f).unwrap();
    }
    // Real DKG messages are accepted by the driver.
    let eid = fixed::keygen_descriptor().execution_id();
    let mut dkg = driver::keygen(&eid, 0, 2, fixed::PARTIES);
    dkg.run().unwrap();
    let msgs = seed("protocol_message", "dkg-round1");
    for m in pieces(&msgs) {
        dkg.handle(1 + u16::from(m[0] & 1), m[0] & 2 != 0, &m[1..])
            .unwrap();
        dkg.run().unwrap();
    }
    // The approved descriptor verifies and passes the policy.
    let signed: SignedDescriptor =
        serde_json::from_slice(&seed("descriptor_json", "sign-approved")).unwrap();
    let coordinator = fixed::coordinator().unwrap().public();
    let verified = signed.verify(&coordinator).unwrap();
    assert!(
        party_core::authz::authorize(verified.descriptor(), &policy().unwrap(), 1_900_000_000)
            .unwrap()
            .is_some()
    );
    // The handshake's signature and the reports' signatures verify.
    let hello: ClientToRouter = serde_json::from_slice(&seed("router_hello", "join")).unwrap();
    let ClientToRouter::JoinSession {
        session_id,
        identity,
        signature,
        ..
    } = hello
    else {
        panic!("a join");
    };
    party_core::identity::verify_ed25519(
        &identity.ed25519,
        &join_message(&[7; 32], &session_id),
        &signature,
    )
    .unwrap();
    for name in ["joined", "keygen", "signature", "failed"] {
        let r: SignedReport = serde_json::from_slice(&seed("report_json", name)).unwrap();
        r.verify(&fixed::identity(1).public()).unwrap();
    }
    // The sealed records open under the fixed key for their row.
    let key = fixed::master_key().unwrap();
    for name in [
        "key-share",
        "aux-info",
        "primes",
        "presignature",
        "identity",
        "policy",
    ] {
        let data = seed("sealed_record", name);
        let parts = pieces(&data[1..]);
        let ctx = RecordContext {
            party_id: std::str::from_utf8(parts[0]).unwrap(),
            account_id: std::str::from_utf8(parts[1]).unwrap(),
            kind: [
                RecordKind::KeyShare,
                RecordKind::AuxInfo,
                RecordKind::Primes,
                RecordKind::Presignature,
                RecordKind::Identity,
                RecordKind::Policy,
            ][usize::from(data[0])],
        };
        key.open(ctx, parts[2]).unwrap();
    }
}

fn write(target: &str, seed: &str, data: &[u8]) {
    let dir = corpus_dir().join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{seed}")), data).unwrap();
}

fn with(selector: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![selector];
    v.extend_from_slice(body);
    v
}

/// A sign descriptor of the fixed session, approved by the fixed policy's
/// approver (a seed that passes every check).
fn approved_sign_descriptor() -> SessionDescriptor {
    let message = b"pay 1".to_vec();
    let mut d = fixed::keygen_descriptor();
    d.kind = SessionKind::Sign {
        account_id: "acct-1".into(),
        message_hash: MessageDigest::Keccak256.hash(&message),
        derivation_path: vec![],
    };
    d.participants.truncate(2);
    d.authorization = Some(Authorization {
        request_id: "r-1".into(),
        not_after: 1_900_000_100,
        message: Some(ApprovedMessage {
            message,
            digest: MessageDigest::Keccak256,
        }),
        approvals: vec![],
    });
    let statement = statement_of(&d, &policy().unwrap())
        .unwrap()
        .unwrap()
        .to_bytes();
    let signature = fixed::identity(2).sign(&statement).to_vec();
    if let Some(a) = d.authorization.as_mut() {
        a.approvals.push(Approval {
            approver: "alice".into(),
            signature,
        });
    }
    d
}

#[test]
#[ignore = "writes the committed seed corpus; run by hand only"]
fn write_seed_corpus() {
    if std::env::var("MPC_WRITE_CORPUS").as_deref() != Ok("1") {
        eprintln!("set MPC_WRITE_CORPUS=1 to write fuzz/corpus seeds");
        return;
    }
    let coordinator = fixed::coordinator().unwrap();

    // Envelope frames from party 1 to party 0.
    let mut ch0 = fixed::channel(0);
    let mut ch1 = fixed::channel(1);
    let key1 = ch1.session_key_frame().unwrap();
    ch1.open(&ch0.session_key_frame().unwrap()).unwrap();
    let bcast = ch1.seal_broadcast(Stage::Keygen, b"a broadcast").unwrap();
    let p2p = ch1.seal_p2p(Stage::Keygen, 0, b"a p2p payload").unwrap();
    write("envelope_frame", "session-key", &join_pieces(&[&key1]));
    write(
        "envelope_frame",
        "key-then-broadcast",
        &join_pieces(&[&key1, &bcast]),
    );
    write(
        "envelope_frame",
        "key-then-p2p",
        &join_pieces(&[&key1, &p2p]),
    );

    // Real DKG round-1 messages of parties 1 and 2.
    let eid = fixed::keygen_descriptor().execution_id();
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    for sender in 1u16..=2 {
        let mut d = driver::keygen(&eid, sender, 2, fixed::PARTIES);
        for m in d.run().unwrap().outgoing {
            let flags = u8::from(sender == 2) | if m.recipient.is_none() { 2 } else { 0 };
            if m.recipient.is_none() || m.recipient == Some(0) {
                msgs.push(with(flags, &m.payload));
            }
        }
    }
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    write("protocol_message", "dkg-round1", &join_pieces(&refs));

    // Descriptors.
    let keygen = fixed::keygen_descriptor().sign(&coordinator).unwrap();
    let sign = approved_sign_descriptor().sign(&coordinator).unwrap();
    write(
        "descriptor_json",
        "keygen",
        &serde_json::to_vec(&keygen).unwrap(),
    );
    write(
        "descriptor_json",
        "sign-approved",
        &serde_json::to_vec(&sign).unwrap(),
    );

    // Router handshake.
    let nonce = [7u8; 32];
    let me = fixed::identity(0);
    let join = ClientToRouter::JoinSession {
        session_id: fixed::SESSION_ID,
        token: "join-token".into(),
        identity: me.public(),
        signature: me.sign(&join_message(&nonce, &fixed::SESSION_ID)),
    };
    let control = ClientToRouter::Control {
        party_id: "party-1".into(),
        identity: me.public(),
        signature: me.sign(&control_message(&nonce, "party-1")),
    };
    write("router_hello", "join", &serde_json::to_vec(&join).unwrap());
    write(
        "router_hello",
        "control",
        &serde_json::to_vec(&control).unwrap(),
    );
    let invitation = Invitation {
        descriptor: sign.clone(),
        join_token: "join-token".into(),
    };
    for (seed, msg) in [
        ("challenge", RouterToClient::Challenge { nonce }),
        (
            "invitation",
            RouterToClient::Invitation(Box::new(invitation.clone())),
        ),
        (
            "error",
            RouterToClient::Error {
                code: "bad_token".into(),
                message: "no".into(),
            },
        ),
    ] {
        write("router_messages", seed, &serde_json::to_vec(&msg).unwrap());
    }

    // Reports by party 1.
    let signature = RecoverableSignature {
        r: [1; 32],
        s: [2; 32],
        v: 0,
    };
    for (seed, body) in [
        ("joined", ReportBody::Joined),
        (
            "keygen",
            ReportBody::KeygenResult {
                public_key: [2; 33],
                policy_hash: Some([3; 32]),
                aux_fingerprint: Some([4; 32]),
            },
        ),
        ("signature", ReportBody::Signature { signature }),
        (
            "failed",
            ReportBody::Failed {
                reason: "timeout".into(),
                blamed: Some(2),
            },
        ),
    ] {
        let report = Report {
            session_id: fixed::SESSION_ID,
            position: 1,
            body,
        };
        let signed = SignedReport::sign(&report, &fixed::identity(1)).unwrap();
        write("report_json", seed, &serde_json::to_vec(&signed).unwrap());
    }

    // REST bodies (selector byte, JSON).
    let approver = hex::encode(fixed::identity(2).public().ed25519);
    let policy = format!(
        r#"{{"approvers":[{{"id":"alice","ed25519":"{approver}"}}],"quorum":1,"digests":["keccak256"],"max_signatures_per_hour":10}}"#
    );
    let participants =
        r#"[{"party_id":"server-party-1"},{"party_id":"server-party-2","device_type":"server"}]"#;
    let sign_body = format!(
        r#"{{"account_id":"acct-1","message":"0x706179","digest":"keccak256","participants":{participants},"request_id":"r-1","not_after":1900000000,"approvals":[{{"approver":"alice","signature":"{}"}}]}}"#,
        "ab".repeat(64)
    );
    let identity = format!(
        r#"{{"ed25519":"{}","x25519":"{}"}}"#,
        hex::encode(me.public().ed25519),
        hex::encode(me.public().x25519)
    );
    for (seed, selector, body) in [
        (
            "keygen",
            0u8,
            format!(
                r#"{{"threshold_n":3,"threshold_t":2,"participants":{participants},"policy":{policy}}}"#
            ),
        ),
        ("sign", 1, sign_body.clone()),
        (
            "sign-hash",
            1,
            format!(
                r#"{{"account_id":"a","message_hash":"{}","participants":{participants}}}"#,
                "11".repeat(32)
            ),
        ),
        (
            "policy-change",
            2,
            format!(
                r#"{{"policy":{policy},"request_id":"r-2","not_after":1900000000,"approvals":[]}}"#
            ),
        ),
        ("statement-sign", 3, sign_body),
        (
            "statement-policy",
            3,
            format!(
                r#"{{"account_id":"acct-1","policy":{policy},"request_id":"r-3","not_after":1900000000}}"#
            ),
        ),
        (
            "api-key",
            4,
            r#"{"name":"ci","scopes":["read","sign"],"tenant":"t1"}"#.to_string(),
        ),
        (
            "device-join",
            5,
            format!(
                r#"{{"join_token":"tok","identity":{identity},"signature":"{}"}}"#,
                "cd".repeat(64)
            ),
        ),
        (
            "register-party",
            6,
            format!(
                r#"{{"party_id":"server-party-1","device_type":"server","identity":{identity}}}"#
            ),
        ),
    ] {
        write("rest_json", seed, &with(selector, body.as_bytes()));
    }

    // Router internal bodies.
    let register = serde_json::json!({
        "session_id": fixed::SESSION_ID,
        "expires_at": 1_900_000_000u64,
        "participants": [
            {"position": 0, "token_sha256": "00".repeat(32), "identity": me.public()},
            {"position": 1, "token_sha256": "11".repeat(32), "identity": null},
        ],
    });
    let invite = serde_json::json!({
        "identity_ed25519": hex::encode(me.public().ed25519),
        "invitation": invitation,
    });
    write(
        "internal_json",
        "register-session",
        &with(0, &serde_json::to_vec(&register).unwrap()),
    );
    write(
        "internal_json",
        "invite",
        &with(1, &serde_json::to_vec(&invite).unwrap()),
    );

    // Stored records: the committed fixtures, sealed and opened.
    let fixtures: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../party-core/test-data/fixtures/sealed-v1.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let key = fixed::master_key().unwrap();
    for (seed, field, kind) in [
        (
            "key-share",
            &fixtures["key_shares"][0],
            RecordKind::KeyShare,
        ),
        ("aux-info", &fixtures["aux_info"], RecordKind::AuxInfo),
        ("primes", &fixtures["primes"], RecordKind::Primes),
        (
            "presignature",
            &fixtures["presignatures"][0],
            RecordKind::Presignature,
        ),
        ("identity", &fixtures["identity"], RecordKind::Identity),
        ("policy", &fixtures["policy"], RecordKind::Policy),
    ] {
        let party = field["party_id"].as_str().unwrap();
        let account = field["account_id"].as_str().unwrap();
        let sealed = hex::decode(field["sealed"].as_str().unwrap()).unwrap();
        let selector = kind as u8 - 1;
        write(
            "sealed_record",
            seed,
            &with(
                selector,
                &join_pieces(&[party.as_bytes(), account.as_bytes(), &sealed]),
            ),
        );
        let ctx = party_core::seal::RecordContext {
            party_id: party,
            account_id: account,
            kind,
        };
        let plain = key.open(ctx, &sealed).unwrap();
        write("record_decode", seed, &with(selector, &plain));
    }
}
