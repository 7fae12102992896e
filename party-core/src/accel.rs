//! Multiexponentiation tables that make signing and presigning faster.
//!
//! The zero-knowledge proofs of CGGMP24 signing compute `s^x t^y mod N̂` over
//! the ring-Pedersen parameters of each party. cggmp24 accepts a precomputed
//! table per party inside the aux info (`PedersenParams::multiexp`); with the
//! tables a 2-of-3 signature costs about a quarter less CPU (GMP: 1.33 s →
//! 0.97 s for both signers). The tables are derived from public parameters
//! only, are large (about 300 KB per party) and are never stored: a host
//! builds them once per party group ([`MultiexpTables::build`]) and attaches
//! them to each key share it signs with ([`MultiexpTables::attach`]).
//!
//! paillier-zk's `MultiexpTable::build` raises `s` to every `256^i` from
//! scratch (about 2.8 s per party with GMP). Here each entry is the previous
//! one to the 256th power, which gives the same table in a small fraction of
//! the time. The table's fields are private, so it is assembled through its
//! serde form; a test checks it against the library's own `build`.

use std::sync::Arc;

use cggmp24::backend::Integer;
use cggmp24::key_share::{DirtyAuxInfo, PedersenParams};
use paillier_zk::multiexp::MultiexpTable;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::{KeyShare, Level};

/// Why tables could not be built or attached.
#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    /// The parameters admit no table (zero, negative, or not coprime to N̂).
    #[error("ring-Pedersen parameters admit no multiexp table")]
    BadParameters,
    /// The tables were built for other parameters than the share's.
    #[error("multiexp tables belong to another party group")]
    OtherGroup,
    /// Assembling the table through its serde form failed.
    #[error("multiexp table encoding: {0}")]
    Encoding(String),
    /// The key share did not validate with the tables attached.
    #[error("key share with tables does not validate")]
    Invalid,
}

/// The tables of every party of one group, in party index order.
#[derive(Clone)]
pub struct MultiexpTables {
    key: [u8; 32],
    tables: Vec<Arc<MultiexpTable>>,
}

impl std::fmt::Debug for MultiexpTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiexpTables")
            .field("group", &hex::encode(&self.key[..8]))
            .field("parties", &self.tables.len())
            .finish()
    }
}

/// The serde form of `paillier_zk::multiexp::MultiexpTable` (field names).
#[derive(Serialize)]
#[allow(non_snake_case)]
struct TableFields<'a> {
    s: &'a [Integer],
    ell_x: &'a Integer,
    s_to_ell_x: &'a Integer,
    t: &'a [Integer],
    ell_y: &'a Integer,
    t_to_ell_y: &'a Integer,
    N: &'a Integer,
}

/// `[b, b^256, b^(256^2), ...]` mod `n`, `len` entries.
fn powers_of_256(b: &Integer, len: u32, n: &Integer) -> Option<Vec<Integer>> {
    let step = Integer::from(256u32);
    let mut out: Vec<Integer> = Vec::with_capacity(usize::try_from(len).ok()?);
    let mut cur = b.modulo_ref(n);
    for _ in 0..len {
        let next = cur.pow_mod_ref(&step, n)?;
        out.push(cur);
        cur = next;
    }
    Some(out)
}

/// The same table as `MultiexpTable::build(s, t, x_bits, y_bits, n)`.
fn build_table(
    s: &Integer,
    t: &Integer,
    x_bits: u32,
    y_bits: u32,
    n: &Integer,
) -> Result<MultiexpTable, AccelError> {
    if s.cmp0().is_le()
        || t.cmp0().is_le()
        || *n <= Integer::one()
        || !s.gcd_ref(n).is_one()
        || !t.gcd_ref(n).is_one()
    {
        return Err(AccelError::BadParameters);
    }
    let k_x = x_bits / 8 + 1;
    let k_y = y_bits / 8 + 1;
    let s_table = powers_of_256(s, k_x, n).ok_or(AccelError::BadParameters)?;
    let t_table = powers_of_256(t, k_y, n).ok_or(AccelError::BadParameters)?;
    // The smallest negative exponents the table serves, and their powers.
    let ell_x = -(Integer::one() << (k_x * 8)) + 1;
    let s_to_ell_x = s.pow_mod_ref(&ell_x, n).ok_or(AccelError::BadParameters)?;
    let ell_y = -(Integer::one() << (k_y * 8)) + 1;
    let t_to_ell_y = t.pow_mod_ref(&ell_y, n).ok_or(AccelError::BadParameters)?;
    let fields = TableFields {
        s: &s_table,
        ell_x: &ell_x,
        s_to_ell_x: &s_to_ell_x,
        t: &t_table,
        ell_y: &ell_y,
        t_to_ell_y: &t_to_ell_y,
        N: n,
    };
    let bytes = crate::codec::encode(&fields).map_err(|e| AccelError::Encoding(e.to_string()))?;
    crate::codec::decode(&bytes).map_err(|e| AccelError::Encoding(e.to_string()))
}

/// Identifies a group's ring-Pedersen parameters: SHA-256 over every
/// party's `N̂`, `s` and `t`.
fn params_key(params: &[PedersenParams]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"mpc/multiexp-tables/v1");
    for p in params {
        for x in [&p.hat_N, &p.s, &p.t] {
            let bytes = x.to_bytes_msf();
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(&bytes);
        }
    }
    h.finalize().into()
}

impl MultiexpTables {
    /// Builds the tables for every party of the group `aux` belongs to.
    /// CPU-bound (about 0.1 s per party with GMP): run it off async threads.
    pub fn build(aux: &DirtyAuxInfo<Level>) -> Result<Self, AccelError> {
        let (x_bits, y_bits) = cggmp24::security_level::max_exponents_size::<Level>();
        let tables = aux
            .pedersen_params
            .iter()
            .map(|p| build_table(&p.s, &p.t, x_bits, y_bits, &p.hat_N).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            key: params_key(&aux.pedersen_params),
            tables,
        })
    }

    /// The key of the group these tables serve (see [`MultiexpTables::key_of`]).
    pub fn key(&self) -> [u8; 32] {
        self.key
    }

    /// The key of the group whose aux info `aux` is: shares of every wallet
    /// of one party group have the same key.
    pub fn key_of(aux: &DirtyAuxInfo<Level>) -> [u8; 32] {
        params_key(&aux.pedersen_params)
    }

    /// The share with the tables attached, ready for signing or presigning.
    /// Never store the result: the tables would be sealed with it.
    pub fn attach(&self, share: &KeyShare) -> Result<KeyShare, AccelError> {
        if params_key(&share.aux.pedersen_params) != self.key
            || share.aux.pedersen_params.len() != self.tables.len()
        {
            return Err(AccelError::OtherGroup);
        }
        let mut dirty = share.clone().into_inner();
        for (p, table) in dirty.aux.pedersen_params.iter_mut().zip(&self.tables) {
            p.multiexp = Some(table.clone());
        }
        KeyShare::validate(dirty).map_err(|_| AccelError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn small_aux() -> DirtyAuxInfo<Level> {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/test-data/aux-n2.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let aux: crate::AuxInfo =
            crate::codec::decode(&hex::decode(v["aux"][0].as_str().unwrap()).unwrap()).unwrap();
        aux.into_inner()
    }

    #[test]
    fn tables_equal_the_librarys_own() {
        // Small exponent sizes keep the library's slow build quick; the
        // construction is the same for every size.
        let aux = small_aux();
        for p in &aux.pedersen_params {
            let ours = build_table(&p.s, &p.t, 100, 150, &p.hat_N).unwrap();
            let theirs = MultiexpTable::build(&p.s, &p.t, 100, 150, p.hat_N.clone()).unwrap();
            assert_eq!(
                crate::codec::encode(&theirs).unwrap(),
                crate::codec::encode(&ours).unwrap()
            );
            let (x, y) = (
                Integer::from(123_456_789u32),
                -Integer::from(987_654_321u32),
            );
            assert_eq!(ours.prod_exp(&x, &y), theirs.prod_exp(&x, &y));
        }
    }

    #[test]
    fn tables_attach_only_to_their_group() {
        let aux = small_aux();
        let tables = MultiexpTables::build(&aux).unwrap();
        assert_eq!(tables.key(), MultiexpTables::key_of(&aux));
        let mut other = aux.clone();
        other.pedersen_params.swap(0, 1);
        assert_ne!(tables.key(), MultiexpTables::key_of(&other));
    }

    #[test]
    fn parameters_without_a_table_are_refused() {
        let mut aux = small_aux();
        aux.pedersen_params[1].s = Integer::zero();
        assert!(matches!(
            MultiexpTables::build(&aux),
            Err(AccelError::BadParameters)
        ));
    }
}
