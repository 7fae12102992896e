//! # party-core
//!
//! The threshold ECDSA (secp256k1) party engine shared by native server parties
//! and browser/device parties (compiled to `wasm32-unknown-unknown`). It opens
//! no socket and no file: hosts feed it bytes and send the bytes it produces.
//!
//! Layout, bottom up:
//! - [`accel`] — multiexponentiation tables that speed up signing.
//! - [`aux_fingerprint`] — the fingerprint of a group's shared aux info.
//! - [`codec`] — the binary encoding (CBOR) of protocol messages and records.
//! - [`identity`] — a party's long-term identity (Ed25519 + X25519).
//! - [`authz`] — account policies, approval statements and the checks every
//!   party makes before it signs.
//! - [`descriptor`] — the session descriptor the coordinator signs, its canonical
//!   bytes and the execution ID derived from it.
//! - [`envelope`] — the wire frame; broadcast payloads signed, p2p payloads
//!   encrypted end to end under per-session ephemeral keys (`session_keys`),
//!   replay and spoofing rejected with typed errors.
//! - [`driver`] — a sans-I/O wrapper around one CGGMP24 protocol run.
//! - [`session`] — a party's whole session (descriptor + envelopes + drivers).
//! - [`host`] — the party-side session logic around it (inputs, router
//!   connection and failover, resends, deadline, reports) as a sans-I/O state
//!   machine that server-party and the JS host drive.
//! - [`seal`] — AES-256-GCM sealing of shares, aux info, primes, presignatures.
//! - [`signature`] — low-s `r`, `s`, recovery id, DER, 65-byte form, addresses.
//! - [`primes`] — safe-prime generation for aux info.
//! - [`wire`] — JSON messages between parties, router and coordinator.
//!
//! Exactly one big-integer backend is compiled in: `backend-num-bigint`
//! (default, pure Rust, builds for wasm32) or `backend-gmp` (GMP through `rug`).
//! [`BACKEND`] names the one in use and [`active_backend`] checks it against the
//! integer type the protocol library really uses.
#![forbid(unsafe_code)]

#[cfg(all(feature = "backend-num-bigint", feature = "backend-gmp"))]
compile_error!(
    "party-core: enable exactly one of `backend-num-bigint` and `backend-gmp` \
     (with both, fast-paillier silently uses num-bigint). Build GMP parties with \
     `--no-default-features --features backend-gmp`."
);
#[cfg(not(any(feature = "backend-num-bigint", feature = "backend-gmp")))]
compile_error!("party-core: enable one of `backend-num-bigint` or `backend-gmp`");

pub mod accel;
pub mod authz;
pub mod aux_fingerprint;
pub mod codec;
pub mod descriptor;
pub mod driver;
pub mod envelope;
pub mod host;
pub mod identity;
pub mod primes;
pub mod seal;
pub mod session;
mod session_keys;
pub mod signature;
pub mod wire;

pub use cggmp24;

/// The curve every account uses.
pub type Curve = cggmp24::supported_curves::Secp256k1;
/// The only security level this engine runs.
pub type Level = cggmp24::security_level::SecurityLevel128;
/// A complete, validated key share (DKG output + aux info).
pub type KeyShare = cggmp24::KeyShare<Curve, Level>;
/// A validated DKG output before aux info is attached.
pub type IncompleteKeyShare = cggmp24::IncompleteKeyShare<Curve>;
/// Validated auxiliary info (Paillier keys, ring-Pedersen parameters) of one party.
pub type AuxInfo = cggmp24::key_share::AuxInfo<Level>;

/// The big-integer backend selected at compile time.
#[cfg(feature = "backend-gmp")]
pub const BACKEND: &str = "gmp";
/// The big-integer backend selected at compile time.
#[cfg(not(feature = "backend-gmp"))]
pub const BACKEND: &str = "num-bigint";

/// The backend the protocol library's integer type really is, read from the
/// type itself (`rug` for GMP, `num_bigint` otherwise), so a build that asked
/// for GMP but silently got num-bigint is caught.
pub fn active_backend() -> &'static str {
    let name = std::any::type_name::<cggmp24::backend::Integer>();
    if name.contains("rug") {
        "gmp"
    } else if name.contains("num_bigint") {
        "num-bigint"
    } else {
        "unknown"
    }
}
