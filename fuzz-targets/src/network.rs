//! Bytes from the network: envelope frames, protocol messages inside them,
//! descriptors, the router handshake and messages, and signed reports.

use party_core::authz::{authorize, Approver, Policy};
use party_core::descriptor::{MessageDigest, SignedDescriptor};
use party_core::driver;
use party_core::envelope::FrameHeader;
use party_core::identity::verify_ed25519;
use party_core::signature::RecoverableSignature;
use party_core::wire::{
    control_message, join_message, ClientToRouter, Report, ReportBody, RouterToClient, SignedReport,
};

use crate::{fixed, select};

/// Splits `data` into pieces, each prefixed with its length (u16 BE); a
/// short tail is the last piece.
pub fn pieces(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let (piece, tail) = rest.split_at(len.min(rest.len()));
        out.push(piece);
        data = tail;
    }
    out
}

/// Joins pieces into the format [`pieces`] reads (pieces over 64 KiB are
/// cut).
pub fn join_pieces(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        let p = &p[..p.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&u16::try_from(p.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// Envelope frames as they arrive from the router: a sequence of frames
/// (length-prefixed, see [`pieces`]) opened in order by party 0 of the fixed
/// session (so a session-key frame from a peer lets a later p2p frame reach
/// decryption). The router's own check is the header parse.
pub fn envelope_frame(data: &[u8]) {
    let mut channel = fixed::channel(0);
    for frame in pieces(data) {
        if let Ok((header, body, auth)) = FrameHeader::parse(frame) {
            let _ = (header.is_broadcast(), body.len(), auth.len());
        }
        if let Err(e) = channel.open(frame) {
            let _ = (e.sender(), e.to_string());
        }
    }
}

/// Protocol messages inside authenticated frames (what a deviating but
/// authenticated party can send): each piece is `[flags][payload]`, flags
/// bit 0 choosing sender 1 or 2 and bit 1 broadcast, delivered to party 0's
/// DKG driver (2-of-3), which then runs.
pub fn protocol_message(data: &[u8]) {
    let eid = fixed::keygen_descriptor().execution_id();
    let mut dkg = driver::keygen(&eid, 0, 2, fixed::PARTIES);
    if dkg.run().is_err() {
        return;
    }
    for piece in pieces(data) {
        let Some((flags, payload)) = select(piece) else {
            continue;
        };
        let sender = 1 + u16::from(flags & 1);
        let broadcast = flags & 2 != 0;
        if dkg.handle(sender, broadcast, payload).is_err() {
            return;
        }
        if let Err(e) = dkg.run() {
            let _ = (e.culprit(), e.to_string());
            return;
        }
    }
}

/// The policy descriptors are authorized against: one approver, the key
/// of party 2's identity.
pub fn policy() -> Option<Policy> {
    let key = hex::encode(fixed::identity(2).public().ed25519);
    let approver = Approver::parse("alice".into(), Some(&key), None).ok()?;
    Some(Policy {
        approvers: vec![approver],
        quorum: 1,
        digests: vec![MessageDigest::Keccak256],
        allow_bare_hash: false,
        max_signatures_per_hour: Some(10),
    })
}

/// A signed descriptor (JSON, as in an invitation or a device's join
/// answer): decoded, validated, its canonical bytes and ids computed, its
/// signature checked under the fixed coordinator key; then, as if a
/// compromised coordinator had signed it, verified and checked the way a
/// party does (its position, its deadline, its approvals against a policy).
pub fn descriptor_json(data: &[u8]) {
    let Ok(signed) = serde_json::from_slice::<SignedDescriptor>(data) else {
        return;
    };
    check_descriptor(signed);
}

fn check_descriptor(signed: SignedDescriptor) {
    let Some(coordinator) = fixed::coordinator() else {
        return;
    };
    let d = &signed.descriptor;
    let valid = d.validate().is_ok();
    let _ = (d.canonical_bytes(), d.execution_id(), d.group_id());
    let _ = signed.verify(&coordinator.public());
    if !valid {
        return;
    }
    let Ok(resigned) = d.clone().sign(&coordinator) else {
        return;
    };
    let Ok(verified) = resigned.verify(&coordinator.public()) else {
        return;
    };
    let _ = verified.position_of(&fixed::identity(0).public());
    let _ = verified.check_not_expired(1_900_000_000);
    if let Some(policy) = policy() {
        if let Err(e) = authorize(verified.descriptor(), &policy, 1_900_000_000) {
            let _ = (e.code(), e.to_string());
        }
    }
}

/// The router's handshake: the client's answer to the challenge (a text
/// message), decoded and its signature checked as the router does.
pub fn router_hello(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(hello) = serde_json::from_str::<ClientToRouter>(text) else {
        return;
    };
    let nonce = [7u8; 32];
    match hello {
        ClientToRouter::JoinSession {
            session_id,
            identity,
            signature,
            ..
        } => {
            let _ = identity.validate();
            let _ = verify_ed25519(
                &identity.ed25519,
                &join_message(&nonce, &session_id),
                &signature,
            );
        }
        ClientToRouter::Control {
            party_id,
            identity,
            signature,
        } => {
            let _ = identity.validate();
            let _ = verify_ed25519(
                &identity.ed25519,
                &control_message(&nonce, &party_id),
                &signature,
            );
        }
    }
}

/// What a party reads from the router (text messages): challenges,
/// invitations (whose descriptor is checked), refusals.
pub fn router_messages(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(RouterToClient::Invitation(invitation)) = serde_json::from_str(text) {
        check_descriptor(invitation.descriptor);
    }
}

/// A party's signed report (`POST /internal/v1/reports`): decoded, peeked,
/// verified under party 1's key; a reported signature is checked against a
/// fixed hash and key as the coordinator checks it against the account.
pub fn report_json(data: &[u8]) {
    let Ok(signed) = serde_json::from_slice::<SignedReport>(data) else {
        return;
    };
    let peeked = signed.peek();
    let verified = signed.verify(&fixed::identity(1).public()).ok();
    for report in [peeked, verified].into_iter().flatten() {
        check_report(&report);
    }
}

fn check_report(report: &Report) {
    if let ReportBody::Signature { signature } = &report.body {
        let hash = [0x11u8; 32];
        // The generator point's x coordinate: a valid compressed key.
        let public_key =
            hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
                .unwrap_or_default();
        let _ = RecoverableSignature::from_parts(signature.r, signature.s, &hash, &public_key);
        let _ = (signature.to_der(), signature.to_hex65());
    }
}
