//! Bytes from storage: sealed records as a party's database returns them,
//! and the plaintext record encodings behind the seal (what a party would
//! decode from a record sealed under its own key by a faulty or older
//! build).

use party_core::authz::Policy;
use party_core::identity::PartyIdentity;
use party_core::primes::PrimeSet;
use party_core::seal::{RecordContext, RecordKind};
use party_core::session::StoredPresignature;
use party_core::{codec, AuxInfo, KeyShare};

use crate::{fixed, network::pieces, select};

const KINDS: [RecordKind; 6] = [
    RecordKind::KeyShare,
    RecordKind::AuxInfo,
    RecordKind::Primes,
    RecordKind::Presignature,
    RecordKind::Identity,
    RecordKind::Policy,
];

fn kind(selector: u8) -> RecordKind {
    KINDS[usize::from(selector) % KINDS.len()]
}

/// A sealed record and the row it came from: `[kind]` then three pieces
/// (see [`pieces`]): party id, account id, sealed bytes. Opened under the
/// fixed master key for that context and decoded into its validating type,
/// as the party store does.
pub fn sealed_record(data: &[u8]) {
    let Some((selector, rest)) = select(data) else {
        return;
    };
    let parts = pieces(rest);
    let [party, account, sealed] = parts.as_slice() else {
        return;
    };
    let (Ok(party_id), Ok(account_id)) = (std::str::from_utf8(party), std::str::from_utf8(account))
    else {
        return;
    };
    let Some(key) = fixed::master_key() else {
        return;
    };
    let ctx = RecordContext {
        party_id,
        account_id,
        kind: kind(selector),
    };
    match ctx.kind {
        RecordKind::KeyShare => ignore(key.open_value::<KeyShare>(ctx, sealed)),
        RecordKind::AuxInfo => ignore(key.open_value::<AuxInfo>(ctx, sealed)),
        RecordKind::Primes => ignore(key.open_primes(ctx, sealed)),
        RecordKind::Presignature => ignore(key.open_value::<StoredPresignature>(ctx, sealed)),
        RecordKind::Identity => {
            if let Ok(seed) = key.open(ctx, sealed) {
                let _ = PartyIdentity::from_secret_bytes(&seed);
            }
        }
        RecordKind::Policy => {
            if let Ok(p) = key.open_value::<Policy>(ctx, sealed) {
                check_policy(&p);
            }
        }
        _ => ignore(key.open(ctx, sealed)),
    }
}

/// The plaintext of a record: `[kind]` then the bytes, decoded into the
/// kind's validating type (key shares and aux info are validated by the
/// protocol library while decoding; primes are checked to be safe primes).
pub fn record_decode(data: &[u8]) {
    let Some((selector, bytes)) = select(data) else {
        return;
    };
    match kind(selector) {
        RecordKind::KeyShare => ignore(codec::decode::<KeyShare>(bytes)),
        RecordKind::AuxInfo => ignore(codec::decode::<AuxInfo>(bytes)),
        RecordKind::Primes => ignore(PrimeSet::from_bytes(bytes)),
        RecordKind::Presignature => ignore(codec::decode::<StoredPresignature>(bytes)),
        RecordKind::Identity => ignore(PartyIdentity::from_secret_bytes(bytes)),
        _ => {
            if let Ok(p) = codec::decode::<Policy>(bytes) {
                check_policy(&p);
            }
        }
    }
}

/// Drops a decoding result (the target is about reaching it, not its value).
fn ignore<T, E>(_: Result<T, E>) {}

fn check_policy(p: &Policy) {
    if p.validate().is_ok() {
        let _ = (p.hash(), p.canonical_bytes());
    }
}
