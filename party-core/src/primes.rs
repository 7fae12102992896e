//! Safe primes for aux info generation.
//!
//! Aux info needs four 1536-bit safe primes per party. Generating them is the
//! slowest step of a first keygen (minutes with pure-Rust integers), so hosts
//! generate them ahead of time, seal them ([`crate::seal`]) and keep a pool.
//!
//! The primes are the Paillier secret key to be: [`PrimeSet`] and
//! [`PartialPrimes`] are `Zeroize + ZeroizeOnDrop`, and so are the byte forms
//! they pass through. Neither cggmp24 nor fast-paillier zeroizes its big
//! integers (their `Integer` has no `Zeroize`, and the library's
//! `DecryptionKey` and aux info keep `p`, `q` unwiped), and this crate
//! forbids `unsafe`, so [`wipe`] clears an integer through its own safe API:
//! every bit set to zero in place, least significant first (so the limb
//! buffer is never shrunk while it still holds secret limbs), then
//! `black_box` so the stores are not optimised away. That is best effort: a
//! copy the big-integer library made internally (a reallocation while
//! computing) is out of reach.

use std::fmt;

use cggmp24::backend::Integer;
use cggmp24::key_refresh::PregeneratedPrimes;
use cggmp24::security_level::SecurityLevel;
use rand_core::{CryptoRng, OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::Level;

/// Why a set of primes was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrimeError {
    /// A number has the wrong size for the security level.
    #[error("prime {index} has the wrong size for the security level")]
    WrongSize {
        /// Position of the offending number (0..4).
        index: usize,
    },
    /// A number is not a safe prime.
    #[error("number {index} is not a safe prime")]
    NotSafePrime {
        /// Position of the offending number (0..4).
        index: usize,
    },
    /// The stored record could not be decoded.
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
}

/// Overwrites a non-negative integer with zero in place (see the module
/// documentation for what this does and does not reach).
pub fn wipe(x: &mut Integer) {
    let bits = u32::try_from(x.significant_bits()).unwrap_or(u32::MAX);
    for i in 0..bits {
        x.set_bit(i, false);
    }
    std::hint::black_box(&*x);
}

/// Wipes the Paillier primes `p`, `q` of aux info this party owns and no
/// longer needs (the library's types do not do it themselves).
pub fn wipe_aux_info(aux: crate::AuxInfo) {
    let mut dirty = aux.into_inner();
    wipe(&mut dirty.p);
    wipe(&mut dirty.q);
}

/// Wipes the Paillier primes of a key share this party owns and no longer
/// needs (its secret scalar zeroizes itself on drop).
pub fn wipe_key_share(share: crate::KeyShare) {
    let mut dirty = share.into_inner();
    wipe(&mut dirty.aux.p);
    wipe(&mut dirty.aux.q);
}

fn zeros() -> [Integer; 4] {
    std::array::from_fn(|_| Integer::zero())
}

/// Four safe primes, the secret input of one party's aux info.
///
/// Only constructed through [`PrimeSet::generate`] or validated decoding;
/// `Debug` never prints the numbers; wiped when dropped.
#[derive(Clone)]
pub struct PrimeSet([Integer; 4]);

impl Zeroize for PrimeSet {
    fn zeroize(&mut self) {
        self.0.iter_mut().for_each(wipe);
    }
}

impl Drop for PrimeSet {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for PrimeSet {}

impl fmt::Debug for PrimeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrimeSet(<redacted>)")
    }
}

/// Serialized form: the four primes as big-endian bytes.
#[derive(Serialize, Deserialize)]
struct PrimeSetRecord {
    primes: Vec<serde_bytes_vec::Bytes>,
}

mod serde_bytes_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    /// A byte string encoded as a CBOR byte string (a prime: wiped on drop).
    pub struct Bytes(pub Vec<u8>);
    impl Drop for Bytes {
        fn drop(&mut self) {
            zeroize::Zeroize::zeroize(&mut self.0);
        }
    }
    impl Serialize for Bytes {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }
    impl<'de> Deserialize<'de> for Bytes {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Bytes;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                    Ok(Bytes(v.to_vec()))
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                    Ok(Bytes(v))
                }
            }
            d.deserialize_bytes(V)
        }
    }
}

impl PrimeSet {
    /// Generates four safe primes one after another, calling `progress(done)`
    /// after each. Minutes of CPU with num-bigint; see [`PrimeSet::generate_parallel`].
    pub fn generate(
        rng: &mut (impl RngCore + CryptoRng),
        mut progress: impl FnMut(usize),
    ) -> Result<Self, PrimeError> {
        let mut primes = Vec::with_capacity(4);
        for done in 1..=4 {
            primes.push(generate_safe_prime(rng));
            progress(done);
        }
        Self::from_vec(primes)
    }

    /// Generates the four primes on up to `threads` OS threads (native
    /// hosts), calling `progress(done)` as each prime is found.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn generate_parallel(
        threads: usize,
        progress: impl Fn(usize) + Sync,
    ) -> Result<Self, PrimeError> {
        PartialPrimes::default().finish_parallel(threads, progress)
    }

    /// Builds a set from four numbers, after the library's size check and a
    /// safe-primality check of each.
    pub fn from_parts(primes: Vec<Integer>) -> Result<Self, PrimeError> {
        Self::from_vec(primes)
    }

    fn from_vec(primes: Vec<Integer>) -> Result<Self, PrimeError> {
        let arr: [Integer; 4] = primes.try_into().map_err(|mut v: Vec<Integer>| {
            v.iter_mut().for_each(wipe);
            PrimeError::WrongSize { index: 0 }
        })?;
        // Wiped on every path from here.
        let set = Self(arr);
        for (index, p) in set.0.iter().enumerate() {
            if p.significant_bits() != u64::from(Level::RSA_PRIME_BITLEN) {
                return Err(PrimeError::WrongSize { index });
            }
        }
        for (index, p) in set.0.iter().enumerate() {
            if !is_safe_prime(p) {
                return Err(PrimeError::NotSafePrime { index });
            }
        }
        // The library's own size check, on a copy that is wiped at once.
        let (accepted, mut copy) = match PregeneratedPrimes::<Level>::try_from(set.0.clone()) {
            Ok(p) => (true, p.into_primes()),
            Err(arr) => (false, arr),
        };
        copy.iter_mut().for_each(wipe);
        if !accepted {
            return Err(PrimeError::WrongSize { index: 0 });
        }
        Ok(set)
    }

    /// Encodes the primes (secret: seal the result before storing it).
    pub fn to_bytes(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, crate::codec::CodecError> {
        let record = PrimeSetRecord {
            primes: self
                .0
                .iter()
                .map(|p| serde_bytes_vec::Bytes(p.to_bytes_msf()))
                .collect(),
        };
        crate::codec::encode(&record).map(zeroize::Zeroizing::new)
    }

    /// Decodes and validates primes: sizes, and that each is a safe prime.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PrimeError> {
        let record: PrimeSetRecord = crate::codec::decode(bytes)?;
        Self::from_vec(
            record
                .primes
                .iter()
                .map(|b| Integer::from_bytes_msf(&b.0))
                .collect(),
        )
    }

    /// The primes as the protocol library takes them (which does not wipe
    /// them: from here they are the library's).
    pub(crate) fn into_inner(mut self) -> Result<PregeneratedPrimes<Level>, PrimeError> {
        let primes = std::mem::replace(&mut self.0, zeros());
        PregeneratedPrimes::<Level>::try_from(primes).map_err(|mut arr| {
            arr.iter_mut().for_each(wipe);
            PrimeError::WrongSize { index: 0 }
        })
    }
}

/// Safe primes found so far towards one [`PrimeSet`]: a background task can
/// build a set one prime at a time (pausing between primes), and whoever
/// needs a set at once takes what it has and finds only the rest.
/// Secret: `Debug` shows only the count; wiped when dropped.
#[derive(Default)]
pub struct PartialPrimes(Vec<Integer>);

impl Zeroize for PartialPrimes {
    fn zeroize(&mut self) {
        self.0.iter_mut().for_each(wipe);
        self.0.clear();
    }
}

impl Drop for PartialPrimes {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for PartialPrimes {}

impl fmt::Debug for PartialPrimes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartialPrimes({} of 4)", self.0.len())
    }
}

impl PartialPrimes {
    /// How many primes are found (0 to 4).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is found yet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Finds one more safe prime (blocking; seconds, varying widely), unless
    /// four are there.
    pub fn find_one(&mut self) {
        if self.0.len() < 4 {
            self.0.push(generate_safe_prime(&mut OsRng));
        }
    }

    /// Moves the primes of `other` into this one (up to four in all).
    pub fn absorb(&mut self, mut other: PartialPrimes) {
        while self.0.len() < 4 {
            let Some(p) = other.0.pop() else { break };
            self.0.push(p);
        }
        // `other` is wiped as it drops, with whatever did not fit.
    }

    /// The set, if four primes are found (validated like any set).
    pub fn into_set(mut self) -> Result<PrimeSet, PrimeError> {
        PrimeSet::from_vec(std::mem::take(&mut self.0))
    }

    /// Finds the missing primes on up to `threads` OS threads (native hosts),
    /// calling `progress(found)` as each is found (counting those already
    /// there), and returns the set.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn finish_parallel(
        mut self,
        threads: usize,
        progress: impl Fn(usize) + Sync,
    ) -> Result<PrimeSet, PrimeError> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Mutex;
        let have = self.0.len().min(4);
        let threads = threads.clamp(1, 4 - have.min(3));
        let claimed = AtomicUsize::new(have);
        let found = Mutex::new(std::mem::take(&mut self.0));
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    while claimed.fetch_add(1, Ordering::SeqCst) < 4 {
                        let p = generate_safe_prime(&mut OsRng);
                        if let Ok(mut f) = found.lock() {
                            f.push(p);
                            progress(f.len());
                        }
                    }
                });
            }
        });
        // A poisoned lock still holds the primes: take them either way.
        let primes = found.into_inner().unwrap_or_else(|e| e.into_inner());
        PrimeSet::from_vec(primes)
    }
}

/// One safe prime of the size the security level needs
/// ([`sieve_safe_prime`]).
pub fn generate_safe_prime(rng: &mut impl RngCore) -> Integer {
    sieve_safe_prime(rng, Level::RSA_PRIME_BITLEN)
}

/// Odd primes below 2^16, the sieve's divisors.
fn small_primes() -> &'static [u32] {
    static PRIMES: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
    PRIMES.get_or_init(|| {
        const LIMIT: usize = 1 << 16;
        let mut composite = vec![false; LIMIT];
        let mut out = Vec::new();
        for i in 3..LIMIT {
            if i % 2 == 1 && !composite[i] {
                out.push(i as u32);
                let mut j = i * i;
                while j < LIMIT {
                    composite[j] = true;
                    j += i;
                }
            }
        }
        out
    })
}

/// Candidates per sieve window (`q = q0 + 2k`, `k < WINDOW`).
const WINDOW: usize = 1 << 18;

/// A random safe prime `p = 2q + 1` of exactly `bits` bits, found by an
/// incremental sieve (as OpenSSL and Go do for safe primes):
///
/// - draw a random odd `q0` of `bits - 1` bits and sieve a window of
///   candidates `q = q0 + 2k` at once, striking every `k` for which `q` *or*
///   `p = 2q + 1` has a divisor below 2^16 (two residues per small prime,
///   then stepping through the window);
/// - on each survivor, a base-2 Fermat test on `q` and then on `p` (one
///   modular exponentiation each; almost every composite fails the first);
/// - only a pair that passes both gets the full probabilistic test (25
///   rounds) on `q` and `p`.
///
/// fast-paillier's generator draws a fresh number per try, sieves `q` and
/// `p` by 135 small primes, and runs all 25 rounds on `q` before it looks at
/// `p`, which nearly always fails; this finds the same kind of prime several
/// times faster. Every prime set is validated again before use
/// ([`PrimeSet`]: size and safe primality).
///
/// `bits` below 18 are raised to 18 (smaller candidates would be struck
/// by the sieve as their own divisors).
pub fn sieve_safe_prime(rng: &mut impl RngCore, bits: u32) -> Integer {
    let bits = bits.max(18);
    use cggmp24::backend::IsPrime;
    let two = Integer::from(2u32);
    let one = Integer::one();
    let primes = small_primes();
    loop {
        // q0: `bits - 1` bits, top bit set, odd.
        let mut q0 = Integer::random_bits(bits - 1, rng);
        q0.set_bit(bits - 2, true);
        q0.set_bit(0, true);
        let mut struck = vec![false; WINDOW];
        for &sp in primes {
            let r = u64::from(q0.mod_u(sp));
            let sp64 = u64::from(sp);
            // q0 + 2k ≡ 0 (mod sp)  <=>  k ≡ -r / 2
            // 2(q0 + 2k) + 1 ≡ 0    <=>  k ≡ -(2r + 1) / 4
            let inv2 = sp64 / 2 + 1; // 2 * inv2 = sp + 1 ≡ 1 (sp odd)
            let inv4 = inv2 * inv2 % sp64;
            let k_q = (sp64 - r) % sp64 * inv2 % sp64;
            let k_p = (sp64 - (2 * r + 1) % sp64) % sp64 * inv4 % sp64;
            for start in [k_q, k_p] {
                let mut k = start as usize;
                while k < WINDOW {
                    // A candidate equal to the small prime itself cannot
                    // occur: q has `bits - 1` >= 17 bits.
                    struck[k] = true;
                    k += sp as usize;
                }
            }
        }
        for (k, _) in struck.iter().enumerate().filter(|(_, s)| !**s) {
            let q = &q0 + Integer::from(u32::try_from(2 * k).unwrap_or(u32::MAX));
            if q.significant_bits() != u64::from(bits - 1) {
                break; // ran past the size: draw again
            }
            let q_minus_1 = &q - &one;
            if two.pow_mod_ref(&q_minus_1, &q).as_ref() != Some(&one) {
                continue;
            }
            let p = (q.clone() << 1u32) + &one;
            let p_minus_1 = &p - &one;
            if two.pow_mod_ref(&p_minus_1, &p).as_ref() != Some(&one) {
                continue;
            }
            if q.is_probably_prime(25, rng) != IsPrime::No
                && p.is_probably_prime(25, rng) != IsPrime::No
            {
                // q0 and q give p away.
                let (mut q, mut q0) = (q, q0);
                wipe(&mut q);
                wipe(&mut q0);
                return p;
            }
        }
    }
}

/// `p` and `(p-1)/2` are both (probable) primes.
fn is_safe_prime(p: &Integer) -> bool {
    use cggmp24::backend::IsPrime;
    let mut rng = OsRng;
    if p.is_probably_prime(25, &mut rng) == IsPrime::No {
        return false;
    }
    // p is odd, so (p - 1) / 2 == p >> 1.
    let mut bytes = Zeroizing::new(p.to_bytes_msf());
    let mut carry = 0u8;
    for b in bytes.iter_mut() {
        let next = *b & 1;
        *b = (*b >> 1) | (carry << 7);
        carry = next;
    }
    let mut q = Integer::from_bytes_msf(&bytes);
    let prime = q.is_probably_prime(25, &mut rng) != IsPrime::No;
    wipe(&mut q);
    prime
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sieve_finds_safe_primes_of_the_exact_size() {
        for bits in [64u32, 128, 256] {
            for _ in 0..3 {
                let p = sieve_safe_prime(&mut OsRng, bits);
                assert_eq!(p.significant_bits(), u64::from(bits));
                assert!(is_safe_prime(&p), "{bits}-bit result is not a safe prime");
            }
        }
    }

    #[test]
    fn wipe_leaves_zero_and_prime_sets_wipe_their_numbers() {
        let mut p = sieve_safe_prime(&mut OsRng, 256);
        assert!(p.significant_bits() > 0);
        wipe(&mut p);
        assert_eq!(p, Integer::zero());
        let mut partial = PartialPrimes::default();
        partial.0.push(sieve_safe_prime(&mut OsRng, 128));
        partial.zeroize();
        assert!(partial.is_empty());
        // A set of the wrong size is refused (and wiped on the way out).
        let small: Vec<Integer> = (0..4).map(|_| sieve_safe_prime(&mut OsRng, 64)).collect();
        assert!(matches!(
            PrimeSet::from_parts(small),
            Err(PrimeError::WrongSize { index: 0 })
        ));
    }

    #[test]
    fn small_primes_are_the_odd_primes_below_2_16() {
        let ps = small_primes();
        assert_eq!(&ps[..6], &[3, 5, 7, 11, 13, 17]);
        // pi(2^16) = 6542 primes, minus 2.
        assert_eq!(ps.len(), 6541);
        assert_eq!(ps.last(), Some(&65521));
    }
}
