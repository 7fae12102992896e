//! The fixed, public TEST keys and session the targets decode against, so
//! that real encodings made with them (the seed corpus) pass the first
//! checks and the fuzzer explores what lies behind them.

use party_core::descriptor::{
    CurveName, Participant, SessionDescriptor, SessionKind, DESCRIPTOR_VERSION,
};
use party_core::envelope::Channel;
use party_core::identity::{CoordinatorKey, PartyIdentity, PartyPublicKey};
use party_core::seal::MasterKey;
use uuid::Uuid;

/// The session every frame target runs in.
pub const SESSION_ID: Uuid = Uuid::from_bytes([0x5e; 16]);
/// Parties of the session.
pub const PARTIES: u16 = 3;
/// The sealed-record master key (the one `party-core/test-data/fixtures`
/// records are sealed under).
pub const MASTER_KEY: [u8; 32] = [0x42; 32];
/// Party and account of the sealed-record target (as in the fixtures).
pub const RECORD_PARTY: &str = "party-1";
/// Account of the sealed-record target (as in the fixtures).
pub const RECORD_ACCOUNT: &str = "fixture-account-1";

/// Identity of party `i` (position `i`).
pub fn identity(i: u16) -> PartyIdentity {
    let seed = u8::try_from(i + 1).unwrap_or(u8::MAX);
    PartyIdentity::from_seed(&[seed; 32])
}

/// Public identities of every party, in position order.
pub fn peers() -> Vec<PartyPublicKey> {
    (0..PARTIES).map(|i| identity(i).public()).collect()
}

/// The coordinator's key (32 bytes always make one).
pub fn coordinator() -> Option<CoordinatorKey> {
    CoordinatorKey::from_secret_bytes(&[0x33; 32]).ok()
}

/// The master key of the sealed-record target.
pub fn master_key() -> Option<MasterKey> {
    MasterKey::from_bytes(&MASTER_KEY).ok()
}

/// A keygen descriptor of the fixed session (2-of-3).
pub fn keygen_descriptor() -> SessionDescriptor {
    SessionDescriptor {
        version: DESCRIPTOR_VERSION,
        session_id: SESSION_ID,
        kind: SessionKind::Keygen {
            generate_aux: false,
            policy: None,
            aux_fingerprint: None,
        },
        curve: CurveName::Secp256k1,
        threshold: 2,
        parties: PARTIES,
        participants: (0..PARTIES)
            .map(|k| Participant {
                party_id: format!("party-{}", k + 1),
                keygen_index: k,
                identity: identity(k).public(),
            })
            .collect(),
        expires_at: 4_000_000_000,
        authorization: None,
    }
}

/// Party `me`'s end of the fixed session's channel.
pub fn channel(me: u16) -> Channel {
    Channel::new(
        SESSION_ID,
        keygen_descriptor().execution_id(),
        me,
        identity(me),
        peers(),
    )
}
