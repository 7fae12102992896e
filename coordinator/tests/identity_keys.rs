//! Identity keys at the coordinator: the device join proof covers both public
//! keys (a swapped X25519 key is refused with 401), and all-zero or
//! low-order X25519 keys are refused at the device join and at registration
//! with 400 `invalid_identity_key`, binding and registering nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use party_core::identity::{PartyIdentity, PartyPublicKey};
use party_core::wire::device_join_message;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// A join body for `identity`, signed (over the v2 message naming exactly
/// these keys) by `signer`.
fn signed_join(
    signer: &PartyIdentity,
    identity: PartyPublicKey,
    sid: &str,
    token: &str,
) -> serde_json::Value {
    let session = Uuid::parse_str(sid).unwrap();
    json!({
        "join_token": token,
        "identity": identity,
        "signature": hex::encode(signer.sign(&device_join_message(&session, token, &identity))),
    })
}

/// An X25519 point of order 8.
const ORDER_8: &str = "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800";

#[tokio::test]
async fn a_device_join_with_a_swapped_x25519_key_is_refused_with_401() {
    let Some(t) = setup(|_| {}).await else { return };
    let (sid, token) = t.keygen_with_browser("browser-x").await;
    let device = PartyIdentity::generate(&mut rand_core::OsRng);
    let attacker = PartyIdentity::generate(&mut rand_core::OsRng);

    // In transit, the device's X25519 key is replaced by the attacker's.
    let mut body = join_body(&device, &sid, &token);
    body["identity"]["x25519"] = json!(hex::encode(attacker.public().x25519));
    let (s, a) = t.join(&sid, &body).await;
    assert_eq!(
        (s.as_u16(), a["code"].as_str()),
        (401, Some("bad_signature")),
        "{a}"
    );
    // A proof of the old form (session and token only) is refused too.
    let mut v1 = b"mpc/coordinator/device-join/v1".to_vec();
    v1.extend_from_slice(Uuid::parse_str(&sid).unwrap().as_bytes());
    v1.extend_from_slice(&Sha256::digest(token.as_bytes()));
    let mut old = join_body(&device, &sid, &token);
    old["signature"] = json!(hex::encode(device.sign(&v1)));
    let (s, a) = t.join(&sid, &old).await;
    assert_eq!(
        (s.as_u16(), a["code"].as_str()),
        (401, Some("bad_signature")),
        "{a}"
    );
    assert_eq!(t.device_rows(&sid).await, vec![None], "nothing bound");
    assert!(!t.registered("browser-x").await);

    // The untouched request binds the device's own keys.
    let (s, a) = t.join(&sid, &join_body(&device, &sid, &token)).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(t.device_rows(&sid).await.len(), 1);
    assert!(t.device_rows(&sid).await[0].is_some());
}

#[tokio::test]
async fn all_zero_and_low_order_x25519_keys_are_refused_with_400() {
    let Some(t) = setup(|_| {}).await else { return };
    let (sid, token) = t.keygen_with_browser("browser-z").await;
    let device = PartyIdentity::generate(&mut rand_core::OsRng);
    let order_8: [u8; 32] = hex::decode(ORDER_8).unwrap().try_into().unwrap();
    for weak in [[0u8; 32], order_8] {
        let identity = PartyPublicKey {
            ed25519: device.public().ed25519,
            x25519: weak,
        };
        // The proof of possession itself is valid: the key is the reason.
        let (s, a) = t
            .join(&sid, &signed_join(&device, identity, &sid, &token))
            .await;
        assert_eq!(
            (s.as_u16(), a["code"].as_str()),
            (400, Some("invalid_identity_key")),
            "{a}"
        );
        // Registration refuses it the same way.
        let (s, a) = t
            .register(&signed_registration(
                "p-weak",
                "server",
                &device,
                identity,
                unix_now(),
                [9; 16],
            ))
            .await;
        assert_eq!(
            (s.as_u16(), a["code"].as_str()),
            (400, Some("invalid_identity_key")),
            "{a}"
        );
    }
    assert_eq!(t.device_rows(&sid).await, vec![None], "nothing bound");
    assert!(!t.registered("browser-z").await);
    assert!(!t.registered("p-weak").await);
}
