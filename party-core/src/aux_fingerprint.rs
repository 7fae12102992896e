//! The fingerprint of a party group's aux info: what every party of one aux
//! info run holds in common.
//!
//! Aux info has a secret part (the party's own Paillier primes `p`, `q`) and
//! a public part that every party of the run holds identically: each
//! party's Paillier modulus `N_j` and ring-Pedersen parameters
//! `(N̂_j, s_j, t_j)`, in party (keygen index) order. Two parties whose
//! fingerprints differ hold aux info from different runs, and a key made
//! with them completes its DKG but can never sign. Every party reports the
//! fingerprint of the aux info its new share carries with its keygen result,
//! and the coordinator completes a keygen only when all of them agree
//! (docs/architecture.md, "Aux-info agreement").
//!
//! `SHA-256("mpc/aux-fingerprint/v1" || n:u16be || for each party j in
//! order: len||N_j || len||N̂_j || len||s_j || len||t_j)`, each integer as
//! its big-endian magnitude with a u32be length. Secret values and the
//! optional precomputed tables (`multiexp`, `crt`) take no part.

use cggmp24::backend::Integer;
use cggmp24::key_share::DirtyAuxInfo;
use sha2::{Digest as _, Sha256};

use crate::Level;

/// Domain tag of the fingerprint; a new encoding gets a new tag.
pub const AUX_FINGERPRINT_DOMAIN: &[u8] = b"mpc/aux-fingerprint/v1";

/// The first word of the failure a party reports when a keygen names aux
/// info of its group that it does not hold: the coordinator records the
/// group as inconsistent (to be repaired by an aux-info session).
pub const AUX_INFO_MISSING: &str = "aux_info_missing";

/// The fingerprint of the public part of `aux` (the same for every party of
/// one aux info run).
pub fn aux_fingerprint(aux: &DirtyAuxInfo<Level>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(AUX_FINGERPRINT_DOMAIN);
    let n = u16::try_from(aux.pedersen_params.len()).unwrap_or(u16::MAX);
    h.update(n.to_be_bytes());
    let absent = Integer::zero();
    for (j, params) in aux.pedersen_params.iter().enumerate() {
        // A valid aux info has one N per party; a missing one hashes as 0
        // (and then differs from any valid aux info's fingerprint).
        let n_j = aux.N.get(j).unwrap_or(&absent);
        for x in [n_j, &params.hat_N, &params.s, &params.t] {
            let bytes = x.to_bytes_msf();
            h.update(u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
            h.update(&bytes);
        }
    }
    h.finalize().into()
}

/// Whether `a` and `b` are the same aux info of the same party: the same
/// public part (fingerprint) and the same secret primes.
pub fn same_aux(a: &DirtyAuxInfo<Level>, b: &DirtyAuxInfo<Level>) -> bool {
    aux_fingerprint(a) == aux_fingerprint(b) && a.p == b.p && a.q == b.q
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::AuxInfo;

    fn test_aux(n: u16, index: usize) -> AuxInfo {
        let path = format!("{}/test-data/aux-n{n}.json", env!("CARGO_MANIFEST_DIR"));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let bytes = hex::decode(v["aux"][index].as_str().unwrap()).unwrap();
        crate::codec::decode(&bytes).unwrap()
    }

    #[test]
    fn every_party_of_one_run_has_the_same_fingerprint() {
        let fps: Vec<_> = (0..3).map(|i| aux_fingerprint(&test_aux(3, i))).collect();
        assert!(fps.iter().all(|f| *f == fps[0]));
        // Another run (here: another group size) differs.
        assert_ne!(aux_fingerprint(&test_aux(2, 0)), fps[0]);
    }

    #[test]
    fn the_fingerprint_covers_every_public_value_and_ignores_tables() {
        let aux = test_aux(3, 0);
        let base = aux_fingerprint(&aux);
        for field in 0..4 {
            let mut other = (*aux).clone();
            let p = &mut other.pedersen_params[2];
            match field {
                0 => other.N[2] = other.N[2].clone() + Integer::one(),
                1 => p.hat_N = p.hat_N.clone() + Integer::one(),
                2 => p.s = p.s.clone() + Integer::one(),
                _ => p.t = p.t.clone() + Integer::one(),
            }
            assert_ne!(aux_fingerprint(&other), base, "field {field}");
        }
        let mut swapped = (*aux).clone();
        swapped.pedersen_params.swap(0, 1);
        swapped.N.swap(0, 1);
        assert_ne!(aux_fingerprint(&swapped), base, "party order counts");
        // The secret primes take no part.
        let mut secret = (*aux).clone();
        secret.p = Integer::one();
        assert_eq!(aux_fingerprint(&secret), base);
    }

    #[test]
    fn same_aux_needs_the_same_secret_primes_too() {
        let (a, b) = (test_aux(3, 0), test_aux(3, 1));
        assert!(same_aux(&a, &a));
        assert!(
            !same_aux(&a, &b),
            "another party's aux info of the same run"
        );
        assert!(!same_aux(&a, &test_aux(2, 0)));
    }

    /// Pins the encoding: a change of it must come with a new domain tag.
    /// The value was computed independently of this code (a few lines of
    /// Python decoding the test data's CBOR and hashing the same layout).
    #[test]
    fn known_answer() {
        let fp = aux_fingerprint(&test_aux(3, 0));
        assert_eq!(hex::encode(fp), KNOWN_N3);
    }

    const KNOWN_N3: &str = "313a3ecb24e71131f0f894046eb26d18f6ad17777bcc8c6755a1ec266c28f3b8";
}
