//! The real aux info protocol (from TEST-ONLY primes), then a DKG reusing it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use party_core::aux_fingerprint::aux_fingerprint;
use party_core::descriptor::SessionKind;
use party_core::session::{AuxSource, PartySession, SessionError, SessionInput, SessionOutput};

#[test]
fn keygen_with_aux_generation_then_reuse_for_a_second_wallet() {
    let f = Fixture::new(2);
    let signed = f.sign_descriptor(f.descriptor(
        SessionKind::Keygen {
            generate_aux: true,
            policy: None,
            aux_fingerprint: None,
        },
        2,
        &[0, 1],
    ));
    let sessions = f.sessions(&signed, |k| {
        SessionInput::Keygen(AuxSource::Generate(test_primes(usize::from(k))))
    });
    let mut shares = Vec::new();
    let mut auxes = Vec::new();
    for out in Hub::default().run(sessions).unwrap() {
        let SessionOutput::Keygen {
            share,
            new_aux_info,
            ..
        } = out
        else {
            panic!("unexpected output");
        };
        shares.push(*share);
        auxes.push(new_aux_info.expect("aux info generated in this session is returned"));
    }
    let hash = random_hash();
    for s in f.sign(&shares, &[0, 1], hash) {
        assert_valid_signature(&s, &hash, &public_key(&shares[0]));
    }

    // Second wallet of the same group: DKG only, with the stored aux info.
    let signed = f.sign_descriptor(f.descriptor(
        SessionKind::Keygen {
            generate_aux: false,
            policy: None,
            aux_fingerprint: None,
        },
        2,
        &[0, 1],
    ));
    let mut auxes = auxes.into_iter();
    let sessions = f.sessions(&signed, |_| {
        SessionInput::Keygen(AuxSource::Existing(auxes.next().unwrap()))
    });
    let second: Vec<_> = Hub::default()
        .run(sessions)
        .unwrap()
        .into_iter()
        .map(|o| match o {
            SessionOutput::Keygen {
                share,
                new_aux_info,
                ..
            } => {
                assert!(new_aux_info.is_none());
                *share
            }
            _ => panic!("unexpected output"),
        })
        .collect();
    assert_ne!(public_key(&second[0]), public_key(&shares[0]), "a new key");
    let hash = random_hash();
    for s in f.sign(&second, &[1, 0], hash) {
        assert_valid_signature(&s, &hash, &public_key(&second[0]));
    }
}

/// A keygen names the aux info to use by fingerprint: a party whose aux
/// info has another fingerprint is refused before anything is sent; with
/// the named one the wallet signs and its shares carry that aux info. (The
/// aux-info session that makes new aux info runs end to end, with real aux
/// info generation, in `mpc/tests/aux_agreement.rs`.)
#[test]
fn a_keygen_uses_only_the_aux_info_it_names() {
    let f = Fixture::new(2);
    let auxes: Vec<_> = (0..2).map(|k| Box::new(test_aux(2, k))).collect();
    let fp = aux_fingerprint(&auxes[0]);
    assert_eq!(aux_fingerprint(&auxes[1]), fp, "one run, one fingerprint");
    let named = |fingerprint| {
        f.sign_descriptor(f.descriptor(
            SessionKind::Keygen {
                generate_aux: false,
                policy: None,
                aux_fingerprint: Some(fingerprint),
            },
            2,
            &[0, 1],
        ))
    };
    // Named other aux info than the party holds: refused at once.
    let other = named(aux_fingerprint(&test_aux(3, 0)));
    let verified = other.verify(&f.coordinator.public()).unwrap();
    let refused = PartySession::new(
        verified,
        f.parties[0].clone(),
        SessionInput::Keygen(AuxSource::Existing(auxes[0].clone())),
        now(),
    );
    assert!(
        matches!(&refused, Err(SessionError::InputMismatch(m)) if m.contains("names")),
        "{refused:?}"
    );

    let mut given = auxes.into_iter();
    let sessions = f.sessions(&named(fp), |_| {
        SessionInput::Keygen(AuxSource::Existing(given.next().unwrap()))
    });
    let shares: Vec<_> = Hub::default()
        .run(sessions)
        .unwrap()
        .into_iter()
        .map(|o| match o {
            SessionOutput::Keygen { share, .. } => *share,
            _ => panic!("unexpected output"),
        })
        .collect();
    assert_eq!(aux_fingerprint(&shares[0].aux), fp);
    let hash = random_hash();
    for s in f.sign(&shares, &[0, 1], hash) {
        assert_valid_signature(&s, &hash, &public_key(&shares[0]));
    }
}
