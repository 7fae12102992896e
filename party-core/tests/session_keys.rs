//! Identity keys and per-session ephemeral keys: forged or low-order session
//! keys are refused with typed errors, weak identity keys are refused, and a
//! recorded p2p frame of a finished session does not open with the parties'
//! identity seeds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use common::*;
use hkdf::Hkdf;
use party_core::descriptor::SessionKind;
use party_core::envelope::{Channel, EnvelopeError, FrameHeader, Stage, HEADER_LEN};
use party_core::identity::{verify_ed25519, IdentityError, PartyIdentity, PartyPublicKey};
use party_core::session::{AuxSource, PartySession, SessionError, SessionInput};
use rand_core::OsRng;
use sha2::{Digest as _, Sha256, Sha512};
use uuid::Uuid;

fn ids(n: usize) -> Vec<PartyIdentity> {
    (0..n)
        .map(|_| PartyIdentity::generate(&mut OsRng))
        .collect()
}

fn channel(sid: Uuid, eid: [u8; 32], me: u16, ids: &[PartyIdentity]) -> Channel {
    let peers = ids.iter().map(PartyIdentity::public).collect();
    Channel::new(sid, eid, me, ids[usize::from(me)].clone(), peers)
}

/// Low-order points of Curve25519 (and non-canonical encodings of them):
/// the all-zero key, 1, the order-8 points, p-1, p, p+1.
fn low_order_x25519() -> Vec<[u8; 32]> {
    let hex32 = |s: &str| -> [u8; 32] { hex::decode(s).unwrap().try_into().unwrap() };
    vec![
        [0u8; 32],
        hex32("0100000000000000000000000000000000000000000000000000000000000000"),
        hex32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        hex32("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
        hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        hex32("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        hex32("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    ]
}

#[test]
fn forged_session_keys_are_refused_and_leave_the_sender_unkeyed() {
    let ids = ids(3);
    let (sid, eid) = (Uuid::new_v4(), [4u8; 32]);
    let mut c0 = channel(sid, eid, 0, &ids);
    let mut c1 = channel(sid, eid, 1, &ids);
    c0.open(&c1.session_key_frame().unwrap()).unwrap();
    let k0 = c0.session_key_frame().unwrap();
    // A p2p frame from party 0, sealed under the key it will announce.
    let p2p = c0.seal_p2p(Stage::Keygen, 1, b"share for 1").unwrap();
    assert_eq!(
        c1.open(&p2p),
        Err(EnvelopeError::SessionKeyMissing { sender: 0 }),
        "no p2p frame opens before its sender's session key"
    );

    // The router swaps in a key of its own: the signature no longer holds.
    let mut swapped = k0.clone();
    swapped[HEADER_LEN] ^= 0x01;
    // An outsider signs a key in party 0's name.
    let outsider = PartyIdentity::generate(&mut OsRng);
    let mut as_outsider = ids.clone();
    as_outsider[0] = outsider;
    let by_outsider = channel(sid, eid, 0, &as_outsider)
        .session_key_frame()
        .unwrap();
    // Party 0's key of another descriptor with the same session id.
    let other_eid = channel(sid, [5; 32], 0, &ids).session_key_frame().unwrap();
    // Party 0's key re-labelled as party 2's.
    let mut moved = k0.clone();
    moved[18..20].copy_from_slice(&2u16.to_be_bytes());
    for (forged, sender) in [(swapped, 0), (by_outsider, 0), (other_eid, 0), (moved, 2)] {
        assert_eq!(
            c1.open(&forged),
            Err(EnvelopeError::BadSessionKey { sender })
        );
    }
    // Party 0 itself signs low-order keys (to make the agreed secret known).
    for weak in low_order_x25519() {
        let frame = c0.seal_broadcast(Stage::SessionKey, &weak).unwrap();
        assert_eq!(
            c1.open(&frame),
            Err(EnvelopeError::BadSessionKey { sender: 0 })
        );
    }
    let short = c0.seal_broadcast(Stage::SessionKey, &[9u8; 31]).unwrap();
    assert_eq!(
        c1.open(&short),
        Err(EnvelopeError::BadSessionKey { sender: 0 })
    );
    assert!(!c1.has_session_key(0), "nothing was accepted");
    assert_eq!(
        c1.open(&p2p),
        Err(EnvelopeError::SessionKeyMissing { sender: 0 })
    );

    // The genuine key: the held p2p frame now opens.
    c1.open(&k0).unwrap();
    assert_eq!(c1.open(&p2p).unwrap().payload, b"share for 1");
    // A second, different key signed by party 0 is refused; the first stays.
    let other = channel(sid, eid, 0, &ids).session_key_frame().unwrap();
    let resigned = c0
        .seal_broadcast(Stage::SessionKey, &other[HEADER_LEN..HEADER_LEN + 32])
        .unwrap();
    assert_eq!(
        c1.open(&resigned),
        Err(EnvelopeError::SessionKeyChanged { sender: 0 })
    );
    let p2p = c0.seal_p2p(Stage::Keygen, 1, b"still party 0").unwrap();
    assert_eq!(c1.open(&p2p).unwrap().payload, b"still party 0");
}

#[test]
fn a_channel_that_forgot_its_keys_opens_and_seals_no_p2p_frame() {
    let ids = ids(2);
    let (sid, eid) = (Uuid::new_v4(), [6u8; 32]);
    let mut c0 = channel(sid, eid, 0, &ids);
    let mut c1 = channel(sid, eid, 1, &ids);
    c1.open(&c0.session_key_frame().unwrap()).unwrap();
    c0.open(&c1.session_key_frame().unwrap()).unwrap();
    let first = c0.seal_p2p(Stage::Sign, 1, b"one").unwrap();
    let second = c0.seal_p2p(Stage::Sign, 1, b"two").unwrap();
    // Control: the live channel opens a frame.
    assert_eq!(c1.open(&first).unwrap().payload, b"one");
    c1.forget_keys();
    assert_eq!(
        c1.open(&second),
        Err(EnvelopeError::SessionKeyMissing { sender: 0 })
    );
    assert_eq!(
        c1.seal_p2p(Stage::Sign, 0, b"x"),
        Err(EnvelopeError::PeerKeyPending { peer: 0 })
    );
    // A key frame cannot bring them back.
    assert_eq!(
        c1.open(&c0.session_key_frame().unwrap()),
        Err(EnvelopeError::Closed)
    );
}

/// The pre-ephemeral scheme's key for `sender -> recipient`, rebuilt from the
/// recipient's identity seed and the sender's static X25519 key.
fn static_static_key(
    seed: &[u8; 32],
    peer_x25519: &[u8; 32],
    eid: &[u8; 32],
    s: u16,
    r: u16,
) -> [u8; 32] {
    let mut h = Sha512::new();
    h.update(b"mpc/identity/v1/x25519");
    h.update(seed);
    let mut x = [0u8; 32];
    x.copy_from_slice(&h.finalize()[..32]);
    let secret = x25519_dalek::StaticSecret::from(x);
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*peer_x25519));
    let hk = Hkdf::<Sha256>::new(Some(eid), shared.as_bytes());
    let mut info = b"mpc/envelope/p2p-key/v1".to_vec();
    info.extend_from_slice(&s.to_be_bytes());
    info.extend_from_slice(&r.to_be_bytes());
    let mut key = [0u8; 32];
    hk.expand(&info, &mut key).unwrap();
    key
}

fn static_public(seed: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha512::new();
    h.update(b"mpc/identity/v1/x25519");
    h.update(seed);
    let mut x = [0u8; 32];
    x.copy_from_slice(&h.finalize()[..32]);
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(x)).to_bytes()
}

#[test]
fn recorded_p2p_frames_of_a_finished_keygen_do_not_open_with_the_identity_seeds() {
    let f = Fixture::new(3);
    let signed = f.sign_descriptor(f.descriptor(
        SessionKind::Keygen {
            generate_aux: false,
            policy: None,
            aux_fingerprint: None,
        },
        2,
        &[0, 1, 2],
    ));
    let d = &signed.descriptor;
    let eid = d.execution_id();
    let sessions = f.sessions(&signed, |k| {
        SessionInput::Keygen(AuxSource::Existing(Box::new(test_aux(3, usize::from(k)))))
    });
    // Everything the router (or Redis) saw, kept past the session's end.
    let mut hub = Hub::default();
    hub.run(sessions).unwrap();
    let recorded = hub.relayed;
    let headers: Vec<FrameHeader> = recorded
        .iter()
        .map(|f| FrameHeader::parse(f).unwrap().0)
        .collect();
    let key_frames: Vec<&Vec<u8>> = recorded
        .iter()
        .zip(&headers)
        .filter(|(_, h)| h.stage == Stage::SessionKey)
        .map(|(f, _)| f)
        .collect();
    assert_eq!(key_frames.len(), 3, "one signed session key per party");
    let p2p: Vec<(&Vec<u8>, &FrameHeader)> = recorded
        .iter()
        .zip(&headers)
        .filter(|(_, h)| !h.is_broadcast())
        .collect();
    assert!(!p2p.is_empty(), "the DKG sent p2p messages");

    // The attacker holds every identity seed.
    let seeds: Vec<[u8; 32]> = f.parties.iter().map(|p| *p.secret_bytes()).collect();
    let stolen: Vec<PartyIdentity> = seeds.iter().map(PartyIdentity::from_seed).collect();
    for (k, seed) in seeds.iter().enumerate() {
        // The static-key rebuild below is the real one.
        assert_eq!(static_public(seed), f.parties[k].public().x25519);
    }
    for (frame, h) in p2p {
        // 1. The parties' own code, rebuilt from the seeds, fed every
        // recorded session key.
        let mut ch = channel(d.session_id, eid, h.recipient, &stolen);
        for kf in &key_frames {
            let _ = ch.open(kf);
        }
        assert!(ch.has_session_key(h.sender), "the recorded keys verify");
        assert_eq!(
            ch.open(frame),
            Err(EnvelopeError::DecryptFailed { sender: h.sender })
        );
        // 2. The static-static key of the old scheme, under either AAD.
        let key = static_static_key(
            &seeds[usize::from(h.recipient)],
            &f.parties[usize::from(h.sender)].public().x25519,
            &eid,
            h.sender,
            h.recipient,
        );
        let cipher = Aes256Gcm::new_from_slice(&key).unwrap();
        let body = &frame[HEADER_LEN..];
        for domain in [&b"mpc/envelope/p2p-aad/v1"[..], b"mpc/envelope/p2p-aad/v2"] {
            let mut aad = domain.to_vec();
            aad.extend_from_slice(&eid);
            aad.extend_from_slice(&frame[..HEADER_LEN]);
            let opened = cipher.decrypt(
                Nonce::from_slice(&body[..12]),
                Payload {
                    msg: &body[12..],
                    aad: &aad,
                },
            );
            assert!(opened.is_err(), "static keys open no recorded frame");
        }
    }
}

#[test]
fn a_session_refuses_a_forged_session_key_and_still_completes() {
    let f = Fixture::new(2);
    let shares = f.keygen(2);
    let hash = random_hash();
    let mut sessions = f.sign_sessions(&shares, &[0, 1], hash);
    let mut to_1 = sessions[0].start().unwrap().frames;
    let mut to_0 = sessions[1].start().unwrap().frames;
    let (h, _, _) = FrameHeader::parse(&to_1[0]).unwrap();
    assert_eq!(h.stage, Stage::SessionKey, "the session key goes first");
    let mut forged = to_1[0].clone();
    forged[HEADER_LEN + 5] ^= 0x40;
    let err = sessions[1].handle_frame(&forged).unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::Frame(EnvelopeError::BadSessionKey { sender: 0 })
        ),
        "{err}"
    );
    assert!(!err.is_fatal());
    let mut outputs = vec![None, None];
    while outputs.iter().any(Option::is_none) {
        let (mut next_0, mut next_1) = (Vec::new(), Vec::new());
        for fr in to_1.drain(..) {
            let p = sessions[1].handle_frame(&fr).unwrap();
            next_0.extend(p.frames);
            outputs[1] = outputs[1].take().or(p.output);
        }
        for fr in to_0.drain(..) {
            let p = sessions[0].handle_frame(&fr).unwrap();
            next_1.extend(p.frames);
            outputs[0] = outputs[0].take().or(p.output);
        }
        assert!(!next_0.is_empty() || !next_1.is_empty() || outputs.iter().all(Option::is_some));
        (to_0, to_1) = (next_0, next_1);
    }
    for s in signatures(outputs.into_iter().flatten().collect()) {
        assert_valid_signature(&s, &hash, &public_key(&shares[0]));
    }
}

#[test]
fn p2p_frames_before_their_senders_key_are_held_not_lost() {
    let f = Fixture::new(2);
    let shares = f.keygen(2);
    let hash = random_hash();
    let mut sessions = f.sign_sessions(&shares, &[0, 1], hash);
    let from_0 = sessions[0].start().unwrap().frames;
    let from_1 = sessions[1].start().unwrap().frames;
    // Party 0 gets party 1's key: its held round-1 p2p message goes out now.
    let released = sessions[0].handle_frame(&from_1[0]).unwrap().frames;
    let p2p: Vec<_> = released
        .into_iter()
        .filter(|f| !FrameHeader::parse(f).unwrap().0.is_broadcast())
        .collect();
    assert_eq!(p2p.len(), 1, "the p2p payload held for party 1");
    // Party 1 receives it before party 0's key (reordered): held, then
    // opened when the key arrives.
    assert!(sessions[1].handle_frame(&p2p[0]).unwrap().frames.is_empty());
    sessions[1].handle_frame(&from_0[0]).unwrap();
    // Opened, not dropped: a second copy is now a replay.
    assert!(matches!(
        sessions[1].handle_frame(&p2p[0]),
        Err(SessionError::Frame(EnvelopeError::Replayed {
            sender: 0,
            ..
        }))
    ));
}

#[test]
fn weak_identity_keys_are_refused() {
    let good = PartyIdentity::generate(&mut OsRng).public();
    good.validate().unwrap();
    for weak in low_order_x25519() {
        assert_eq!(
            PartyPublicKey::new(good.ed25519, weak),
            Err(IdentityError::WeakX25519Key),
            "{}",
            hex::encode(weak)
        );
    }
    // A non-canonical alias of a good key (top bit set) and a point on the
    // twist (u = 2).
    let mut alias = good.x25519;
    alias[31] |= 0x80;
    let mut twist = [0u8; 32];
    twist[0] = 2;
    for bad in [alias, twist] {
        assert_eq!(
            PartyPublicKey::new(good.ed25519, bad),
            Err(IdentityError::WeakX25519Key)
        );
    }
    // The Ed25519 identity point: small order.
    let mut neutral = [0u8; 32];
    neutral[0] = 1;
    assert_eq!(
        PartyPublicKey::new(neutral, good.x25519),
        Err(IdentityError::WeakEd25519Key)
    );
}

#[test]
fn signatures_are_verified_strictly() {
    // Under the small-order key (the neutral point), R = neutral and s = 0
    // satisfy the cofactorless equation for every message: `verify` takes
    // it, `verify_strict` does not.
    let mut key = [0u8; 32];
    key[0] = 1;
    let mut sig = [0u8; 64];
    sig[0] = 1;
    assert_eq!(
        verify_ed25519(&key, b"any message", &sig),
        Err(IdentityError::BadSignature)
    );
    let id = PartyIdentity::generate(&mut OsRng);
    verify_ed25519(&id.public().ed25519, b"m", &id.sign(b"m")).unwrap();
}

#[test]
fn a_descriptor_listing_a_low_order_x25519_key_is_refused_by_the_party() {
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
    d.participants[2].identity.x25519 = [0; 32];
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
    assert!(
        matches!(err, SessionError::InvalidIdentity { position: 2 }),
        "{err}"
    );
}

/// The device join proof covers both public keys.
#[test]
fn the_device_join_proof_covers_both_keys() {
    let id = PartyIdentity::generate(&mut OsRng);
    let sid = Uuid::new_v4();
    let sig = id.sign(&party_core::wire::device_join_message(
        &sid,
        "tok",
        &id.public(),
    ));
    let mut swapped = id.public();
    swapped.x25519 = PartyIdentity::generate(&mut OsRng).public().x25519;
    let m = party_core::wire::device_join_message(&sid, "tok", &swapped);
    assert_eq!(swapped.verify(&m, &sig), Err(IdentityError::BadSignature));
    let m = party_core::wire::device_join_message(&sid, "tok", &id.public());
    id.public().verify(&m, &sig).unwrap();
    // A v1 proof (session and token only) is not accepted as one.
    let mut v1 = b"mpc/coordinator/device-join/v1".to_vec();
    v1.extend_from_slice(sid.as_bytes());
    v1.extend_from_slice(&Sha256::digest(b"tok"));
    assert_eq!(
        id.public().verify(&m, &id.sign(&v1)),
        Err(IdentityError::BadSignature)
    );
}
