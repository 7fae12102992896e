//! Cost of each protocol step for the compiled backend, all parties on one
//! thread (so times are CPU cost), through the envelope layer.
//!
//! ```text
//! cargo bench -p party-core --bench protocols                       # num-bigint
//! cargo bench -p party-core --bench protocols --no-default-features \
//!     --features backend-gmp --target-dir target/gmp                  # GMP
//! BENCH_PRIME_PARTIES=0 ... # skip the (minutes-long) real prime generation
//! ```
//! Prime generation and aux info are real: fresh safe primes, the real aux
//! info protocol (with the TEST-ONLY primes as input, so the aux timing does
//! not wait for prime generation).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use party_core::descriptor::{MessageDigest, SessionKind};
use party_core::primes::PrimeSet;
use party_core::session::{AuxSource, SessionInput, SessionOutput};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn seq() -> Hub {
    Hub {
        sequential: true,
        ..Hub::default()
    }
}

/// Times one full 2-of-3 signing by parties 0 and 2 with `shares`; the
/// signature is checked with k256.
fn full_sign(f: &Fixture, shares: &[party_core::KeyShare]) -> Duration {
    let hash = random_hash();
    let sessions = f.sign_sessions(shares, &[0, 2], hash);
    let t = Instant::now();
    let sigs = signatures(seq().run(sessions).unwrap());
    let elapsed = t.elapsed();
    assert_valid_signature(&sigs[0], &hash, &public_key(&shares[0]));
    elapsed
}

fn main() {
    // `cargo test --all-targets` runs this binary without `--bench`: timing is
    // not a test, so only `cargo bench` measures.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("protocols benchmark: run it with `cargo bench`");
        return;
    }
    let backend = party_core::active_backend();
    let prime_parties: usize = std::env::var("BENCH_PRIME_PARTIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut rows: Vec<(&str, Duration)> = Vec::new();

    // One safe prime: this crate's sieve against fast-paillier's generator
    // (mean of BENCH_PRIME_SAMPLES each; the time to find a prime varies a
    // lot between draws).
    let samples: u32 = std::env::var("BENCH_PRIME_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if samples > 0 {
        let bits = 1536;
        let t = Instant::now();
        for _ in 0..samples {
            party_core::primes::sieve_safe_prime(&mut rand_core::OsRng, bits);
        }
        rows.push(("one safe prime, sieve (mean)", t.elapsed() / samples));
        let t = Instant::now();
        for _ in 0..samples {
            party_core::cggmp24::backend::Integer::generate_safe_prime(&mut rand_core::OsRng, bits);
        }
        rows.push((
            "one safe prime, fast-paillier (mean)",
            t.elapsed() / samples,
        ));
    }

    if prime_parties > 0 {
        let t = Instant::now();
        for _ in 0..prime_parties {
            PrimeSet::generate(&mut rand_core::OsRng, |_| {}).unwrap();
        }
        rows.push((
            "four safe primes, per party (1 core)",
            t.elapsed() / prime_parties as u32,
        ));
    }

    // Aux info, 3 parties, real protocol, sequential: per party = total / 3.
    let f = Fixture::new(3);
    let signed = f.sign_descriptor(f.descriptor(
        SessionKind::Keygen {
            generate_aux: true,
            policy: None,
            aux_fingerprint: None,
        },
        2,
        &[0, 1, 2],
    ));
    let sessions = f.sessions(&signed, |k| {
        SessionInput::Keygen(AuxSource::Generate(test_primes(usize::from(k))))
    });
    let t = Instant::now();
    let out = seq().run(sessions).unwrap();
    rows.push(("aux info + DKG 2-of-3, per party", t.elapsed() / 3));
    let shares: Vec<_> = out
        .into_iter()
        .map(|o| match o {
            SessionOutput::Keygen { share, .. } => *share,
            _ => unreachable!(),
        })
        .collect();

    // DKG only (aux reused).
    let mut dkg = Vec::new();
    for _ in 0..reps {
        let signed = f.sign_descriptor(f.descriptor(
            SessionKind::Keygen {
                generate_aux: false,
                policy: None,
                aux_fingerprint: None,
            },
            2,
            &[0, 1, 2],
        ));
        let sessions = f.sessions(&signed, |k| {
            SessionInput::Keygen(AuxSource::Existing(Box::new(test_aux(3, usize::from(k)))))
        });
        let t = Instant::now();
        seq().run(sessions).unwrap();
        dkg.push(t.elapsed());
    }
    rows.push(("DKG 2-of-3, all parties", median(dkg)));

    // Multiexp tables (accel): built once per group, attached per session.
    let t = Instant::now();
    let tables = party_core::accel::MultiexpTables::build(&shares[0].aux).expect("tables");
    rows.push(("multiexp tables of a 3-party group", t.elapsed()));
    let fast_shares: Vec<_> = shares
        .iter()
        .map(|s| tables.attach(s).expect("attach"))
        .collect();
    let fast: Vec<Duration> = (0..reps).map(|_| full_sign(&f, &fast_shares)).collect();
    rows.push(("full signing with tables, both parties", median(fast)));

    let mut full = Vec::new();
    let mut pre = Vec::new();
    let mut online = Vec::new();
    for _ in 0..reps {
        full.push(full_sign(&f, &shares));

        let signed = f.sign_descriptor(f.descriptor(
            SessionKind::Presign {
                account_id: "bench".into(),
            },
            2,
            &[0, 2],
        ));
        let id = signed.descriptor.session_id;
        let sessions = f.sessions(&signed, |k| {
            SessionInput::Share(Box::new(shares[usize::from(k)].clone()))
        });
        let t = Instant::now();
        let presigs: Vec<_> = seq()
            .run(sessions)
            .unwrap()
            .into_iter()
            .map(|o| match o {
                SessionOutput::Presignature(p) => p,
                _ => unreachable!(),
            })
            .collect();
        pre.push(t.elapsed());
        let signed = f.sign_descriptor(f.descriptor(
            SessionKind::OnlineSign {
                account_id: "bench".into(),
                presignature_id: id,
                message: b"bench message".to_vec(),
                digest: MessageDigest::Sha256,
            },
            2,
            &[0, 2],
        ));
        let mut presigs = presigs.into_iter();
        let sessions = f.sessions(&signed, |_| {
            SessionInput::Presignature(presigs.next().unwrap())
        });
        let t = Instant::now();
        seq().run(sessions).unwrap();
        online.push(t.elapsed());
    }
    rows.push(("full signing 2-of-3, both parties", median(full)));
    rows.push(("presignature 2-of-3, both parties", median(pre)));
    rows.push(("online signing from presignatures", median(online)));

    println!("\nbackend: {backend} (release, one thread, through the envelope layer)");
    println!("{:<40} {:>12}", "step", "time");
    for (name, d) in &rows {
        println!("{name:<40} {:>12.3?}", d);
    }
    let json: serde_json::Map<String, serde_json::Value> = rows
        .iter()
        .map(|(k, d)| (k.to_string(), serde_json::json!(d.as_secs_f64())))
        .collect();
    println!(
        "{}",
        serde_json::json!({ "backend": backend, "seconds": json })
    );
}
