//! Every kind of forged, altered or replayed input is rejected with its typed
//! error, names the claimed sender, and leaves the session able to finish.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use party_core::descriptor::{DescriptorError, SessionKind};
use party_core::envelope::{Channel, EnvelopeError, Stage};
use party_core::identity::{CoordinatorKey, PartyIdentity};
use party_core::seal::{MasterKey, RecordContext, RecordKind, SealError};
use party_core::session::{AuxSource, PartySession, SessionError, SessionInput};
use party_core::KeyShare;
use rand_core::OsRng;
use uuid::Uuid;

/// Channels of the parties of one session, their signed session keys
/// exchanged (each party's first frame, sequence number 0).
fn channels(session_id: Uuid, eid: [u8; 32], ids: &[PartyIdentity]) -> Vec<Channel> {
    let peers: Vec<_> = ids.iter().map(|i| i.public()).collect();
    let mut ch: Vec<Channel> = ids
        .iter()
        .enumerate()
        .map(|(k, id)| Channel::new(session_id, eid, k as u16, id.clone(), peers.clone()))
        .collect();
    exchange_keys(&mut ch);
    ch
}

/// Every channel's session key frame, opened by every other channel.
fn exchange_keys(ch: &mut [Channel]) {
    let frames: Vec<Vec<u8>> = ch
        .iter_mut()
        .map(|c| c.session_key_frame().unwrap())
        .collect();
    for (from, frame) in frames.iter().enumerate() {
        for (to, c) in ch.iter_mut().enumerate() {
            if to != from {
                let inbound = c.open(frame).unwrap();
                assert_eq!(
                    (inbound.stage, inbound.sender),
                    (Stage::SessionKey, from as u16)
                );
            }
        }
    }
}

fn ids(n: usize) -> Vec<PartyIdentity> {
    (0..n)
        .map(|_| PartyIdentity::generate(&mut OsRng))
        .collect()
}

#[test]
fn p2p_roundtrip_and_flipped_ciphertext_byte() {
    let ids = ids(3);
    let mut ch = channels(Uuid::new_v4(), [7; 32], &ids);
    let frame = ch[0].seal_p2p(Stage::Sign, 1, b"secret share").unwrap();
    assert!(
        !frame.windows(12).any(|w| w == b"secret share"),
        "p2p payload is not in the clear"
    );
    let mut flipped = frame.clone();
    let last = flipped.len() - 20;
    flipped[last] ^= 0x01;
    assert_eq!(
        ch[1].open(&flipped),
        Err(EnvelopeError::DecryptFailed { sender: 0 })
    );
    let ok = ch[1].open(&frame).unwrap();
    assert_eq!(ok.payload, b"secret share");
    assert_eq!((ok.sender, ok.broadcast), (0, false));
    // Another party cannot read or accept it.
    assert_eq!(
        ch[2].open(&frame),
        Err(EnvelopeError::NotForUs {
            sender: 0,
            recipient: 1
        })
    );
}

#[test]
fn recipient_field_rewritten_fails_decryption() {
    let ids = ids(3);
    let mut ch = channels(Uuid::new_v4(), [7; 32], &ids);
    let mut frame = ch[0].seal_p2p(Stage::Sign, 1, b"for party 1").unwrap();
    frame[20..22].copy_from_slice(&2u16.to_be_bytes());
    assert_eq!(
        ch[2].open(&frame),
        Err(EnvelopeError::DecryptFailed { sender: 0 })
    );
}

#[test]
fn frame_from_another_session_is_rejected() {
    let ids = ids(3);
    let mut a = channels(Uuid::new_v4(), [1; 32], &ids);
    let mut b = channels(Uuid::new_v4(), [2; 32], &ids);
    let frame = b[0].seal_broadcast(Stage::Keygen, b"hello").unwrap();
    assert_eq!(
        a[1].open(&frame),
        Err(EnvelopeError::WrongSession { sender: 0 })
    );
    // Same session id but a different execution id (another descriptor): the
    // signature covers the execution id.
    let sid = Uuid::new_v4();
    let mut c = channels(sid, [3; 32], &ids);
    let mut d = channels(sid, [4; 32], &ids);
    let frame = d[0].seal_broadcast(Stage::Keygen, b"hello").unwrap();
    assert_eq!(
        c[1].open(&frame),
        Err(EnvelopeError::BadSignature { sender: 0 })
    );
    let frame = d[0].seal_p2p(Stage::Keygen, 1, b"hello").unwrap();
    assert_eq!(
        c[1].open(&frame),
        Err(EnvelopeError::DecryptFailed { sender: 0 })
    );
}

#[test]
fn spoofed_sender_is_rejected() {
    let ids = ids(3);
    let sid = Uuid::new_v4();
    let mut ch = channels(sid, [9; 32], &ids);
    // Party 0 signs, then claims to be party 2.
    let mut frame = ch[0]
        .seal_broadcast(Stage::Keygen, b"i am party 2")
        .unwrap();
    frame[18..20].copy_from_slice(&2u16.to_be_bytes());
    assert_eq!(
        ch[1].open(&frame),
        Err(EnvelopeError::BadSignature { sender: 2 })
    );
    let mut frame = ch[0].seal_p2p(Stage::Keygen, 1, b"i am party 2").unwrap();
    frame[18..20].copy_from_slice(&2u16.to_be_bytes());
    assert_eq!(
        ch[1].open(&frame),
        Err(EnvelopeError::DecryptFailed { sender: 2 })
    );
    // A sender index outside the session.
    let mut frame = ch[0].seal_broadcast(Stage::Keygen, b"x").unwrap();
    frame[18..20].copy_from_slice(&7u16.to_be_bytes());
    assert_eq!(
        ch[1].open(&frame),
        Err(EnvelopeError::UnknownSender { sender: 7 })
    );
    // An outsider with its own key, using a participant's index.
    let outsider = PartyIdentity::generate(&mut OsRng);
    let mut peers: Vec<_> = ids.iter().map(|i| i.public()).collect();
    peers[0] = outsider.public();
    let mut fake = Channel::new(sid, [9; 32], 0, outsider, peers);
    let frame = fake.seal_broadcast(Stage::Keygen, b"let me in").unwrap();
    assert_eq!(
        ch[1].open(&frame),
        Err(EnvelopeError::BadSignature { sender: 0 })
    );
    // It learns party 1's (public) session key, but party 1 agreed its key
    // with the real party 0's.
    fake.open(&ch[1].session_key_frame().unwrap()).unwrap();
    let frame = fake.seal_p2p(Stage::Keygen, 1, b"let me in").unwrap();
    assert_eq!(
        ch[1].open(&frame),
        Err(EnvelopeError::DecryptFailed { sender: 0 })
    );
}

#[test]
fn replayed_frame_is_rejected() {
    let ids = ids(3);
    let mut ch = channels(Uuid::new_v4(), [5; 32], &ids);
    let b = ch[0].seal_broadcast(Stage::Sign, b"round 1").unwrap();
    let p = ch[0].seal_p2p(Stage::Sign, 1, b"round 2").unwrap();
    assert!(ch[1].open(&b).is_ok());
    assert!(ch[1].open(&p).is_ok());
    // (sequence number 0 was party 0's session key)
    assert_eq!(
        ch[1].open(&b),
        Err(EnvelopeError::Replayed { sender: 0, seq: 1 })
    );
    assert_eq!(
        ch[1].open(&p),
        Err(EnvelopeError::Replayed { sender: 0, seq: 2 })
    );
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let ids = ids(2);
    let mut ch = channels(Uuid::new_v4(), [5; 32], &ids);
    let good = ch[0].seal_broadcast(Stage::Sign, b"payload").unwrap();
    for cut in 0..good.len() {
        assert!(ch[1].open(&good[..cut]).is_err(), "truncated at {cut}");
    }
    let mut bad_version = good.clone();
    bad_version[0] = 9;
    assert_eq!(
        ch[1].open(&bad_version),
        Err(EnvelopeError::UnsupportedVersion(9))
    );
    let mut bad_stage = good.clone();
    bad_stage[17] = 200;
    assert!(matches!(
        ch[1].open(&bad_stage),
        Err(EnvelopeError::Malformed(_))
    ));
    let mut huge = good.clone();
    huge[30..34].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        ch[1].open(&huge),
        Err(EnvelopeError::TooLarge { sender: 0, .. })
    ));
    let mut extra = good;
    extra.push(0);
    assert!(matches!(
        ch[1].open(&extra),
        Err(EnvelopeError::Malformed(_))
    ));
}

#[test]
fn descriptor_not_signed_by_coordinator_is_refused() {
    let f = Fixture::new(3);
    let d = f.descriptor(
        SessionKind::Keygen {
            generate_aux: false,
            policy: None,
            aux_fingerprint: None,
        },
        2,
        &[0, 1, 2],
    );
    let rogue = CoordinatorKey::generate(&mut OsRng);
    let signed = d.sign(&rogue).unwrap();
    assert_eq!(
        signed.verify(&f.coordinator.public()).unwrap_err(),
        DescriptorError::NotSignedByCoordinator
    );
}

#[test]
fn descriptor_altered_after_signing_is_refused() {
    let f = Fixture::new(3);
    let hash = random_hash();
    let d = f.descriptor(
        SessionKind::Sign {
            account_id: "acct-1".into(),
            message_hash: hash,
            derivation_path: vec![],
        },
        2,
        &[0, 1],
    );
    let signed = f.sign_descriptor(d);
    let coord = f.coordinator.public();
    assert!(signed.verify(&coord).is_ok());

    let mut other_hash = signed.clone();
    if let SessionKind::Sign { message_hash, .. } = &mut other_hash.descriptor.kind {
        message_hash[0] ^= 1;
    }
    let mut other_signer = signed.clone();
    other_signer.descriptor.participants[1].identity = f.parties[2].public();
    let mut later_deadline = signed.clone();
    later_deadline.descriptor.expires_at += 1;
    let mut other_t = signed.clone();
    other_t.descriptor.threshold = 1;
    for altered in [other_hash, other_signer, later_deadline, other_t] {
        assert_eq!(
            altered.verify(&coord).unwrap_err(),
            DescriptorError::NotSignedByCoordinator
        );
        assert_ne!(
            altered.descriptor.execution_id(),
            signed.descriptor.execution_id()
        );
    }
}

#[test]
fn expired_descriptor_and_outsider_are_refused() {
    let f = Fixture::new(3);
    let mut d = f.descriptor(
        SessionKind::Keygen {
            generate_aux: false,
            policy: None,
            aux_fingerprint: None,
        },
        2,
        &[0, 1, 2],
    );
    d.expires_at = now() - 1;
    let verified = f
        .sign_descriptor(d)
        .verify(&f.coordinator.public())
        .unwrap();
    let err = PartySession::new(
        verified,
        f.parties[0].clone(),
        SessionInput::Keygen(AuxSource::Existing(Box::new(test_aux(3, 0)))),
        now(),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        SessionError::Descriptor(DescriptorError::Expired)
    ));

    let d = f.descriptor(
        SessionKind::Keygen {
            generate_aux: false,
            policy: None,
            aux_fingerprint: None,
        },
        2,
        &[0, 1, 2],
    );
    let verified = f
        .sign_descriptor(d)
        .verify(&f.coordinator.public())
        .unwrap();
    let err = PartySession::new(
        verified,
        PartyIdentity::generate(&mut OsRng),
        SessionInput::Keygen(AuxSource::Existing(Box::new(test_aux(3, 0)))),
        now(),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        SessionError::Descriptor(DescriptorError::NotAParticipant)
    ));
}

#[test]
fn invalid_descriptors_cannot_be_signed() {
    let f = Fixture::new(3);
    let mut dup = f.descriptor(
        SessionKind::Keygen {
            generate_aux: false,
            policy: None,
            aux_fingerprint: None,
        },
        2,
        &[0, 1, 2],
    );
    dup.participants[2] = dup.participants[1].clone();
    dup.participants[2].keygen_index = 2;
    assert!(matches!(
        dup.sign(&f.coordinator),
        Err(DescriptorError::DuplicateParticipant(_))
    ));
    let too_few = f.descriptor(
        SessionKind::Sign {
            account_id: "a".into(),
            message_hash: [1; 32],
            derivation_path: vec![],
        },
        2,
        &[0],
    );
    assert!(matches!(
        too_few.sign(&f.coordinator),
        Err(DescriptorError::WrongParticipantCount {
            expected: 2,
            got: 1
        })
    ));
    let bad_t = f.descriptor(
        SessionKind::Keygen {
            generate_aux: false,
            policy: None,
            aux_fingerprint: None,
        },
        4,
        &[0, 1, 2],
    );
    assert!(matches!(
        bad_t.sign(&f.coordinator),
        Err(DescriptorError::InvalidThreshold { .. })
    ));
    let hd = f.descriptor(
        SessionKind::Sign {
            account_id: "a".into(),
            message_hash: [1; 32],
            derivation_path: vec![0, 1],
        },
        2,
        &[0, 1],
    );
    assert_eq!(
        hd.sign(&f.coordinator).unwrap_err(),
        DescriptorError::DerivationUnsupported
    );
}

#[test]
fn session_drops_forged_frames_and_still_completes() {
    let f = Fixture::new(3);
    let shares = f.keygen(2);
    let hash = random_hash();
    let signed = f.sign_descriptor(f.descriptor(
        SessionKind::Sign {
            account_id: "acct".into(),
            message_hash: hash,
            derivation_path: vec![],
        },
        2,
        &[0, 2],
    ));
    let mut sessions = f.sessions(&signed, |k| {
        SessionInput::Share(Box::new(shares[usize::from(k)].clone()))
    });
    let mut to_1 = sessions[0].start().unwrap().frames;
    let mut to_0 = sessions[1].start().unwrap().frames;
    // Inject, before the honest frames: a flipped copy, a spoofed-sender copy,
    // and a frame from another session.
    let honest = to_1[0].clone();
    let mut flipped = honest.clone();
    let n = flipped.len();
    flipped[n - 1] ^= 0x80;
    let mut spoofed = honest.clone();
    spoofed[18..20].copy_from_slice(&1u16.to_be_bytes());
    let mut foreign = honest.clone();
    foreign[1] ^= 0xFF;
    for bad in [flipped, spoofed, foreign] {
        let err = sessions[1].handle_frame(&bad).unwrap_err();
        assert!(!err.is_fatal(), "{err}");
        assert!(matches!(err, SessionError::Frame(_)));
    }
    // Honest delivery, with every frame replayed once.
    let mut outputs = vec![None, None];
    while outputs.iter().any(Option::is_none) {
        let mut next_1 = Vec::new();
        let mut next_0 = Vec::new();
        for fr in to_1.drain(..) {
            let p = sessions[1].handle_frame(&fr).unwrap();
            assert!(matches!(
                sessions[1].handle_frame(&fr),
                Err(SessionError::Frame(EnvelopeError::Replayed {
                    sender: 0,
                    ..
                })) | Err(SessionError::Finished)
            ));
            next_0.extend(p.frames);
            outputs[1] = outputs[1].take().or(p.output);
        }
        for fr in to_0.drain(..) {
            let p = sessions[0].handle_frame(&fr).unwrap();
            next_1.extend(p.frames);
            outputs[0] = outputs[0].take().or(p.output);
        }
        assert!(!next_0.is_empty() || !next_1.is_empty() || outputs.iter().all(Option::is_some));
        to_1 = next_1;
        to_0 = next_0;
    }
    for s in signatures(outputs.into_iter().flatten().collect()) {
        assert_valid_signature(&s, &hash, &public_key(&shares[0]));
    }
}

#[test]
fn sealed_share_opens_only_for_its_party_account_and_kind() {
    let f = Fixture::new(3);
    let shares = f.keygen(2);
    let key = MasterKey::generate();
    let ctx = RecordContext {
        party_id: "server-party-1",
        account_id: "acct-A",
        kind: RecordKind::KeyShare,
    };
    let sealed = key.seal_value(ctx, &shares[0]).unwrap();
    let plain = party_core::codec::encode(&shares[0]).unwrap();
    assert!(
        !sealed
            .windows(32)
            .any(|w| plain.windows(32).any(|p| p == w)),
        "no plaintext share bytes in the sealed record"
    );
    let opened: KeyShare = key.open_value(ctx, &sealed).unwrap();
    assert_eq!(public_key(&opened), public_key(&shares[0]));
    assert_eq!(party_core::codec::encode(&opened).unwrap(), plain);

    let other_account = RecordContext {
        account_id: "acct-B",
        ..ctx
    };
    let other_party = RecordContext {
        party_id: "server-party-2",
        ..ctx
    };
    let other_kind = RecordContext {
        kind: RecordKind::AuxInfo,
        ..ctx
    };
    assert_eq!(
        key.open(other_account, &sealed).unwrap_err(),
        SealError::OpenFailed
    );
    assert_eq!(
        key.open(other_party, &sealed).unwrap_err(),
        SealError::OpenFailed
    );
    assert!(matches!(
        key.open(other_kind, &sealed).unwrap_err(),
        SealError::KindMismatch { .. }
    ));
    assert_eq!(
        MasterKey::generate().open(ctx, &sealed).unwrap_err(),
        SealError::OpenFailed
    );
    let mut tampered = sealed.clone();
    tampered[20] ^= 1;
    assert_eq!(key.open(ctx, &tampered).unwrap_err(), SealError::OpenFailed);
    assert_eq!(
        key.open(ctx, &sealed[..10]).unwrap_err(),
        SealError::Malformed
    );
    // Two seals of the same share never share a nonce.
    let again = key.seal_value(ctx, &shares[0]).unwrap();
    assert_ne!(sealed[2..14], again[2..14]);
}

#[test]
fn sealed_primes_roundtrip_and_secrets_are_redacted() {
    let key = MasterKey::generate();
    let primes = test_primes(0);
    let ctx = RecordContext {
        party_id: "p1",
        account_id: "",
        kind: RecordKind::Primes,
    };
    let sealed = key.seal_primes(ctx, &primes).unwrap();
    let back = key.open_primes(ctx, &sealed).unwrap();
    assert_eq!(back.to_bytes().unwrap(), primes.to_bytes().unwrap());

    let id = PartyIdentity::generate(&mut OsRng);
    let secret_hex = hex::encode(id.secret_bytes().as_ref());
    let key_hex = key.to_hex().to_string();
    for dbg in [format!("{id:?}"), format!("{key:?}"), format!("{primes:?}")] {
        assert!(
            !dbg.contains(&secret_hex) && !dbg.contains(&key_hex),
            "{dbg}"
        );
        assert!(dbg.contains("redacted"), "{dbg}");
    }
    assert!(!format!("{key:?}").contains(&key_hex[..16]));
}

#[test]
fn wrong_inputs_are_refused_before_anything_runs() {
    let f = Fixture::new(3);
    let shares = f.keygen(2);
    let signed = f.sign_descriptor(f.descriptor(
        SessionKind::Sign {
            account_id: "acct".into(),
            message_hash: [3; 32],
            derivation_path: vec![],
        },
        2,
        &[0, 1],
    ));
    let verified = signed.verify(&f.coordinator.public()).unwrap();
    // Party 1 brings party 2's share.
    let err = PartySession::new(
        verified.clone(),
        f.parties[0].clone(),
        SessionInput::Share(Box::new(shares[1].clone())),
        now(),
    )
    .unwrap_err();
    assert!(matches!(err, SessionError::InputMismatch(_)));
    // A keygen input to a sign session.
    let err = PartySession::new(
        verified,
        f.parties[0].clone(),
        SessionInput::Keygen(AuxSource::Existing(Box::new(test_aux(3, 0)))),
        now(),
    )
    .unwrap_err();
    assert!(matches!(err, SessionError::InputMismatch(_)));
}
