#!/usr/bin/env python3
"""Approve a sign request (or a policy change) without the mpc binary.

Builds the approval statement (version 1) byte for byte as documented in
party-core/src/authz.rs and docs/api.md, signs it with an Ed25519 or P-256
key in PKCS#8 PEM (the files `mpc approver new` writes; `openssl genpkey
-algorithm ed25519` works too) and prints the approval JSON that goes into
the sign request's "approvals":

    python3 approve.py --key alice.pem --approver alice --account $ACCOUNT_ID \
        --message-text 'pay 10 USDC to bob' --digest keccak256 \
        --request-id pay-0001 --not-after 1900000000
    -> {"approver": "alice", "signature": "..."}

--statement-only prints the statement bytes (hex) and signs nothing. Needs
the `cryptography` package (pip install cryptography). An approver computes
the statement itself: never sign bytes a server hands you.
"""

import argparse
import json
import struct
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

STATEMENT_DOMAIN = b"mpc/approval-statement/v1"
POLICY_DOMAIN = b"mpc/account-policy/v1"
OP_SIGN, OP_POLICY_CHANGE = 1, 2
PAYLOAD_MESSAGE, PAYLOAD_HASH, PAYLOAD_POLICY = 1, 2, 3
DIGESTS = {"sha256": 1, "keccak256": 2}
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def u32(n):
    return struct.pack(">I", n)


def lp(b):
    """A variable-length field: big-endian u32 length, then the bytes."""
    return u32(len(b)) + b


def statement(account_id, payload, request_id, not_after, path=()):
    """payload: ("message", digest_name, bytes) | ("hash", 32 bytes) | ("policy", 32 bytes)."""
    out = lp(STATEMENT_DOMAIN) + lp(account_id.encode())
    out += bytes([OP_POLICY_CHANGE if payload[0] == "policy" else OP_SIGN])
    if payload[0] == "message":
        out += bytes([PAYLOAD_MESSAGE, DIGESTS[payload[1]]]) + lp(payload[2])
    elif payload[0] == "hash":
        out += bytes([PAYLOAD_HASH]) + payload[1]
    else:
        out += bytes([PAYLOAD_POLICY]) + payload[1]
    out += u32(len(path)) + b"".join(u32(i) for i in path)
    out += lp(request_id.encode()) + struct.pack(">Q", not_after)
    return out


def policy_hash(policy):
    """SHA-256 of the canonical policy (what every party reports)."""
    out = lp(POLICY_DOMAIN) + u32(len(policy["approvers"]))
    for a in sorted(policy["approvers"], key=lambda a: a["id"].encode()):
        out += lp(a["id"].encode())
        if "ed25519" in a:
            out += bytes([1]) + lp(bytes.fromhex(a["ed25519"]))
        else:
            point = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), bytes.fromhex(a["p256"])
            )
            compressed = point.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
            )
            out += bytes([2]) + lp(compressed)
    out += struct.pack(">H", policy["quorum"])
    out += lp(bytes(sorted(DIGESTS[d] for d in policy.get("digests", []))))
    out += bytes([1 if policy.get("allow_bare_hash", False) else 0])
    limit = policy.get("max_signatures_per_hour")
    out += bytes([0]) if limit is None else bytes([1]) + u32(limit)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(out)
    return digest.finalize()


def sign(key, data):
    """Ed25519: 64 bytes. P-256: ECDSA over SHA-256 as 64 bytes r || s, low s."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        s = min(s, P256_ORDER - s)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    raise SystemExit("the key is neither Ed25519 nor P-256")


def hex_arg(s):
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--key", help="PKCS#8 PEM private key")
    p.add_argument("--approver", help="the approver's id in the account policy")
    p.add_argument("--account", required=True)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--message", type=hex_arg, help="the message, hex")
    what.add_argument("--message-text", help="the message, UTF-8 text")
    what.add_argument("--hash", type=hex_arg, help="a bare 32-byte hash, hex")
    what.add_argument("--policy-change", metavar="POLICY.json", help="approve this new policy")
    p.add_argument("--digest", choices=sorted(DIGESTS), default="keccak256")
    p.add_argument("--request-id", required=True)
    p.add_argument("--not-after", type=int, required=True, help="Unix seconds")
    p.add_argument("--statement-only", action="store_true", help="print the statement, hex")
    args = p.parse_args()

    if args.policy_change:
        with open(args.policy_change) as f:
            new_policy = json.load(f)
        payload = ("policy", policy_hash(new_policy))
        shown = "REPLACE THE POLICY with %s (hash %s)" % (json.dumps(new_policy), payload[1].hex())
    elif args.hash is not None:
        if len(args.hash) != 32:
            raise SystemExit("--hash must be 32 bytes")
        payload = ("hash", args.hash)
        shown = "sign the BARE HASH 0x%s" % args.hash.hex()
    else:
        message = args.message if args.message is not None else args.message_text.encode()
        payload = ("message", args.digest, message)
        shown = "sign %r with %s" % (message, args.digest)
    data = statement(args.account, payload, args.request_id, args.not_after)
    if args.statement_only:
        print(data.hex())
        return
    if not args.key or not args.approver:
        raise SystemExit("--key and --approver are needed to approve")
    print(
        "approving for account %s: %s; request id %s, valid until unix %d"
        % (args.account, shown, args.request_id, args.not_after),
        file=sys.stderr,
    )
    with open(args.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    print(json.dumps({"approver": args.approver, "signature": sign(key, data).hex()}))


if __name__ == "__main__":
    main()
