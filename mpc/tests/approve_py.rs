//! `docs/examples/approve.py`, the Python approver example, against
//! party-core: its statement bytes are party-core's for the same request,
//! and its Ed25519 and P-256 approvals verify as the policy's approvers'
//! (`party_core::authz::Approver::verifies`), over that statement only.
//!
//! Needs python3 with `cryptography`; without them the test says so and
//! passes, except under CI=true where it fails (.ci/run installs both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use mpc::cli::approve::{statement, Signed};
use mpc::cli::approver::ApproverKey;
use party_core::authz::{Approver, Payload, Policy};
use party_core::descriptor::MessageDigest;

const ACCOUNT: &str = "4f3c2a9e-acct";
const NOT_AFTER: u64 = 1_900_000_000;

fn script() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/examples/approve.py"
    ))
}

/// Whether python3 and `cryptography` are here; under CI they must be.
fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: python3 with the `cryptography` package is required (.ci/run installs it)"
        );
        eprintln!(
            "SKIPPED: python3 or its `cryptography` package is missing \
             (pip install cryptography); docs/examples/approve.py was not tested"
        );
    }
    ok
}

fn run(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-B")
        .arg(script())
        .args(["--account", ACCOUNT, "--not-after", &NOT_AFTER.to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "approve.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn key(dir: &Path, name: &str, p256: bool) -> (ApproverKey, String) {
    let path = dir.join(format!("{name}.pem"));
    let key = ApproverKey::generate(p256);
    key.write_new(&path).unwrap();
    (key, path.to_str().unwrap().to_string())
}

#[test]
fn the_python_example_builds_party_cores_statement_and_its_approvals_verify() {
    if !python_ready() {
        return;
    }
    let dir = Dir(std::env::temp_dir().join(format!("mpc-approve-py-{}", uuid::Uuid::new_v4())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let (alice, alice_pem) = key(&dir.0, "alice", false);
    let (bob, bob_pem) = key(&dir.0, "bob", true);
    let alice_approver = alice.approver("alice").unwrap();
    let bob_approver = bob.approver("bob").unwrap();

    // A new policy, with bob's P-256 key given uncompressed: the script
    // must hash the canonical (compressed) form, as party-core does.
    let ApproverKey::P256(bob_signing) = &bob else {
        panic!("p256")
    };
    let policy_json = serde_json::json!({
        "approvers": [
            {"id": "bob", "p256": hex::encode(bob_signing.verifying_key().to_encoded_point(false).as_bytes())},
            {"id": "alice", "ed25519": alice.public_hex().1},
        ],
        "quorum": 2,
        "digests": ["sha256", "keccak256"],
        "allow_bare_hash": true,
        "max_signatures_per_hour": 70000,
    });
    let policy_path = dir.0.join("policy.json");
    std::fs::write(&policy_path, policy_json.to_string()).unwrap();
    let policy: Policy = serde_json::from_value(policy_json).unwrap();
    policy.validate().unwrap();
    let policy_file = policy_path.to_str().unwrap().to_string();

    let text = "pay 10 USDC to bob, ünïcode ✓";
    let policy_hash = policy.hash();
    // What to pass the script, and party-core's statement for a request id.
    type Expected = Box<dyn Fn(&str) -> Vec<u8>>;
    let cases: Vec<(Vec<String>, Expected)> = vec![
        (
            vec!["--message-text".into(), text.into()],
            Box::new(move |rid| {
                let signed = Signed::Message {
                    digest: MessageDigest::Keccak256,
                    message: text.as_bytes().to_vec(),
                };
                statement(ACCOUNT, signed.payload(), rid, NOT_AFTER)
            }),
        ),
        (
            vec![
                "--message".into(),
                "0x00ff10".into(),
                "--digest".into(),
                "sha256".into(),
            ],
            Box::new(|rid| {
                let payload = Payload::Message {
                    digest: MessageDigest::Sha256,
                    message: &[0x00, 0xff, 0x10],
                };
                statement(ACCOUNT, payload, rid, NOT_AFTER)
            }),
        ),
        (
            vec!["--hash".into(), "cd".repeat(32)],
            Box::new(|rid| statement(ACCOUNT, Payload::Hash(&[0xcd; 32]), rid, NOT_AFTER)),
        ),
        (
            vec!["--policy-change".into(), policy_file],
            Box::new(move |rid| statement(ACCOUNT, Payload::Policy(policy_hash), rid, NOT_AFTER)),
        ),
    ];
    for (what, expected) in cases {
        let mut args: Vec<&str> = what.iter().map(String::as_str).collect();
        args.extend(["--request-id", "pay-0001"]);
        let (expected, other) = (expected("pay-0001"), expected("pay-0002"));
        assert_ne!(expected, other);

        let mut only = args.clone();
        only.push("--statement-only");
        assert_eq!(run(&only).trim(), hex::encode(&expected), "{what:?}");

        for (id, pem, approver) in [
            ("alice", &alice_pem, &alice_approver),
            ("bob", &bob_pem, &bob_approver),
        ] {
            let mut signing = args.clone();
            signing.extend(["--key", pem.as_str(), "--approver", id]);
            let approval: serde_json::Value = serde_json::from_str(&run(&signing)).unwrap();
            assert_eq!(approval["approver"], id);
            let signature = hex::decode(approval["signature"].as_str().unwrap()).unwrap();
            assert!(
                approver.verifies(&expected, &signature),
                "{id}'s approval of {what:?} does not verify"
            );
            // Over that statement only.
            assert!(!approver.verifies(&other, &signature));
            // Approvals are what party-core's serde takes.
            let _: party_core::authz::Approval = serde_json::from_value(approval).unwrap();
        }
    }
    // Keys are not interchangeable: alice's signature is not bob's.
    let wrong = Approver {
        id: "bob".into(),
        key: bob_approver.key.clone(),
    };
    let approval: serde_json::Value = serde_json::from_str(&run(&[
        "--hash",
        &"cd".repeat(32),
        "--request-id",
        "pay-0001",
        "--key",
        &alice_pem,
        "--approver",
        "bob",
    ]))
    .unwrap();
    let signature = hex::decode(approval["signature"].as_str().unwrap()).unwrap();
    assert!(!wrong.verifies(
        &statement(ACCOUNT, Payload::Hash(&[0xcd; 32]), "pay-0001", NOT_AFTER),
        &signature
    ));
}
