//! Test helpers: TEST-ONLY primes and aux info, descriptors, and an in-memory
//! hub that routes sealed frames between party sessions.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use party_core::descriptor::{
    CurveName, Participant, SessionDescriptor, SessionKind, SignedDescriptor, DESCRIPTOR_VERSION,
};
use party_core::envelope::FrameHeader;
use party_core::identity::{CoordinatorKey, PartyIdentity};
use party_core::primes::PrimeSet;
use party_core::session::{AuxSource, PartySession, SessionError, SessionInput, SessionOutput};
use party_core::signature::RecoverableSignature;
use party_core::{AuxInfo, KeyShare};
use rand_core::OsRng;
use uuid::Uuid;

const TEST_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/test-data");

fn read_json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(format!("{TEST_DATA}/{name}")).unwrap_or_else(|e| {
        panic!(
            "missing {name}: run `cargo run --release -p party-core --example gen_test_data` ({e})"
        )
    });
    serde_json::from_str(&text).unwrap()
}

/// The TEST-ONLY prime set of party `i`.
pub fn test_primes(i: usize) -> PrimeSet {
    let v = read_json("primes.json");
    let hex_str = v["parties"][i].as_str().unwrap();
    PrimeSet::from_bytes(&hex::decode(hex_str).unwrap()).unwrap()
}

/// TEST-ONLY aux info of party `i` in a group of `n` (n = 2, 3 or 5).
pub fn test_aux(n: usize, i: usize) -> AuxInfo {
    let v = read_json(&format!("aux-n{n}.json"));
    let hex_str = v["aux"][i].as_str().unwrap();
    party_core::codec::decode(&hex::decode(hex_str).unwrap()).unwrap()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A coordinator and `n` party identities.
pub struct Fixture {
    pub coordinator: CoordinatorKey,
    pub parties: Vec<PartyIdentity>,
}

impl Fixture {
    pub fn new(n: usize) -> Self {
        Self {
            coordinator: CoordinatorKey::generate(&mut OsRng),
            parties: (0..n)
                .map(|_| PartyIdentity::generate(&mut OsRng))
                .collect(),
        }
    }

    /// A descriptor listing the parties with these keygen indices, in order.
    pub fn descriptor(
        &self,
        kind: SessionKind,
        t: u16,
        keygen_indices: &[u16],
    ) -> SessionDescriptor {
        SessionDescriptor {
            version: DESCRIPTOR_VERSION,
            session_id: Uuid::new_v4(),
            kind,
            curve: CurveName::Secp256k1,
            threshold: t,
            parties: self.parties.len() as u16,
            participants: keygen_indices
                .iter()
                .map(|&k| Participant {
                    party_id: format!("party-{}", k + 1),
                    keygen_index: k,
                    identity: self.parties[usize::from(k)].public(),
                })
                .collect(),
            expires_at: now() + 600,
            authorization: None,
        }
    }

    pub fn sign_descriptor(&self, d: SessionDescriptor) -> SignedDescriptor {
        d.sign(&self.coordinator).unwrap()
    }

    /// Sessions for every participant of `signed`, with inputs from `input(keygen_index)`.
    pub fn sessions(
        &self,
        signed: &SignedDescriptor,
        mut input: impl FnMut(u16) -> SessionInput,
    ) -> Vec<PartySession> {
        let verified = signed.verify(&self.coordinator.public()).unwrap();
        signed
            .descriptor
            .participants
            .iter()
            .map(|p| {
                PartySession::new(
                    verified.clone(),
                    self.parties[usize::from(p.keygen_index)].clone(),
                    input(p.keygen_index),
                    now(),
                )
                .unwrap()
            })
            .collect()
    }

    /// DKG with the TEST-ONLY aux info of a group of n: shares in keygen order.
    pub fn keygen(&self, t: u16) -> Vec<KeyShare> {
        let n = self.parties.len();
        let indices: Vec<u16> = (0..n as u16).collect();
        let signed = self.sign_descriptor(self.descriptor(
            SessionKind::Keygen {
                generate_aux: false,
                policy: None,
                aux_fingerprint: None,
            },
            t,
            &indices,
        ));
        let sessions = self.sessions(&signed, |k| {
            SessionInput::Keygen(AuxSource::Existing(Box::new(test_aux(n, usize::from(k)))))
        });
        let outputs = Hub::default().run(sessions).unwrap();
        let shares: Vec<KeyShare> = outputs
            .into_iter()
            .map(|o| match o {
                SessionOutput::Keygen {
                    share,
                    new_aux_info,
                    ..
                } => {
                    assert!(new_aux_info.is_none(), "existing aux info must be reused");
                    *share
                }
                other => panic!("unexpected output {other:?}"),
            })
            .collect();
        let pk = shares[0].shared_public_key;
        assert!(
            shares.iter().all(|s| s.shared_public_key == pk),
            "all parties agree on the key"
        );
        shares
    }

    /// Full signing of `hash` by the parties with these keygen indices.
    pub fn sign(
        &self,
        shares: &[KeyShare],
        signers: &[u16],
        hash: [u8; 32],
    ) -> Vec<RecoverableSignature> {
        signatures(
            Hub::default()
                .run(self.sign_sessions(shares, signers, hash))
                .unwrap(),
        )
    }

    /// The sessions of a full signing of `hash` by the parties with these
    /// keygen indices, ready to run.
    pub fn sign_sessions(
        &self,
        shares: &[KeyShare],
        signers: &[u16],
        hash: [u8; 32],
    ) -> Vec<PartySession> {
        let t = shares[0].min_signers();
        let account = "acct-test".to_string();
        let signed = self.sign_descriptor(self.descriptor(
            SessionKind::Sign {
                account_id: account,
                message_hash: hash,
                derivation_path: vec![],
            },
            t,
            signers,
        ));
        self.sessions(&signed, |k| {
            SessionInput::Share(Box::new(shares[usize::from(k)].clone()))
        })
    }
}

use cggmp24::key_share::AnyKeyShare as _;
use party_core::cggmp24;

pub fn signatures(outputs: Vec<SessionOutput>) -> Vec<RecoverableSignature> {
    outputs
        .into_iter()
        .map(|o| match o {
            SessionOutput::Signature(s) => s,
            other => panic!("unexpected output {other:?}"),
        })
        .collect()
}

/// Independent check with `k256`: the signature verifies under the public
/// key, is low-s, and `v` recovers exactly that key.
pub fn assert_valid_signature(sig: &RecoverableSignature, hash: &[u8; 32], public_key: &[u8]) {
    let vk = VerifyingKey::from_sec1_bytes(public_key).unwrap();
    let mut rs = [0u8; 64];
    rs[..32].copy_from_slice(&sig.r);
    rs[32..].copy_from_slice(&sig.s);
    let k_sig = Signature::from_slice(&rs).unwrap();
    assert!(k_sig.normalize_s().is_none(), "s must be low");
    vk.verify_prehash(hash, &k_sig)
        .expect("k256 verifies the signature");
    let recovered =
        VerifyingKey::recover_from_prehash(hash, &k_sig, RecoveryId::from_byte(sig.v).unwrap())
            .unwrap();
    assert_eq!(recovered, vk, "v recovers the account public key");
    // DER and 65-byte forms carry the same r, s, v.
    assert_eq!(Signature::from_der(&sig.to_der()).unwrap(), k_sig);
    let b65 = sig.to_bytes65();
    assert_eq!(&b65[..64], &rs[..]);
    assert_eq!(b65[64], sig.v);
}

pub fn public_key(share: &KeyShare) -> [u8; 33] {
    party_core::signature::public_key_of(share)
}

/// Frames a party produced and its output, if it finished.
type Delivered = (Vec<Vec<u8>>, Option<SessionOutput>);

/// Routes sealed frames between sessions as the router would: by header only.
/// Each party's work runs on its own thread per delivery round.
#[derive(Default)]
pub struct Hub {
    /// Every frame relayed, as the router saw it.
    pub relayed: Vec<Vec<u8>>,
    /// Run all parties on the calling thread (to measure CPU cost per party).
    pub sequential: bool,
}

impl Hub {
    pub fn run(
        &mut self,
        mut sessions: Vec<PartySession>,
    ) -> Result<Vec<SessionOutput>, SessionError> {
        let n = sessions.len();
        let mut inboxes: Vec<VecDeque<Vec<u8>>> = vec![VecDeque::new(); n];
        let mut outputs: Vec<Option<SessionOutput>> = (0..n).map(|_| None).collect();
        let mut started = false;
        let sequential = self.sequential;
        loop {
            let results: Vec<Result<Delivered, SessionError>> = std::thread::scope(|s| {
                let handles: Vec<_> = sessions
                    .iter_mut()
                    .zip(inboxes.iter_mut())
                    .map(|(session, inbox)| {
                        let mut work = move || {
                            let mut frames = Vec::new();
                            let mut output = None;
                            if !started {
                                let p = session.start()?;
                                frames.extend(p.frames);
                                output = output.or(p.output);
                            }
                            while let Some(f) = inbox.pop_front() {
                                let p = session.handle_frame(&f)?;
                                frames.extend(p.frames);
                                output = output.or(p.output);
                            }
                            Ok((frames, output))
                        };
                        if sequential {
                            Err(work())
                        } else {
                            Ok(s.spawn(work))
                        }
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| match h {
                        Err(done) => done,
                        Ok(h) => h.join().unwrap(),
                    })
                    .collect()
            });
            started = true;
            let mut any = false;
            for (from, r) in results.into_iter().enumerate() {
                let (frames, output) = r?;
                if let Some(o) = output {
                    outputs[from] = Some(o);
                }
                for f in frames {
                    any = true;
                    let (h, _, _) = FrameHeader::parse(&f).unwrap();
                    assert_eq!(usize::from(h.sender), from);
                    for (to, inbox) in inboxes.iter_mut().enumerate() {
                        if to != from && (h.is_broadcast() || usize::from(h.recipient) == to) {
                            inbox.push_back(f.clone());
                        }
                    }
                    self.relayed.push(f);
                }
            }
            if outputs.iter().all(Option::is_some) {
                return Ok(outputs.into_iter().flatten().collect());
            }
            assert!(
                any || inboxes.iter().any(|i| !i.is_empty()),
                "protocol stalled"
            );
        }
    }
}

pub fn random_hash() -> [u8; 32] {
    let mut h = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut OsRng, &mut h);
    h
}
