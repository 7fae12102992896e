// Tests of the party-wasm adapter itself (the wasm-bindgen output in
// party-wasm/pkg, run in Node): identities, descriptor checks, whole
// sessions between three wasm parties wired in memory (keygen with the
// PUBLIC test aux info, then signing), frame rejection, primes and sealing.
// Signatures are checked with @noble/curves. Fixtures (a throwaway
// coordinator key and signed descriptors) come from the
// `party-wasm/examples/fixtures.rs` example binary (built by `cargo test
// --workspace --all-targets`; or set $FIXTURES_BIN).
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js';

import { loadWasm } from '../js/node-device.mjs';
import { assertSignatureValid, ROOT, TEST_DATA } from './support/system.mjs';

const w = await loadWasm();
const fx = JSON.parse(execFileSync(process.env.FIXTURES_BIN ?? join(ROOT, 'target/debug/examples/fixtures'), { encoding: 'utf8' }));
const ck = fx.coordinator_public_key;
const ids = fx.seeds.map((s) => w.Identity.fromSeed(hexToBytes(s)));
const json = (x) => JSON.stringify(x);
const now = () => Date.now() / 1000;
const auxN3 = JSON.parse(readFileSync(join(TEST_DATA, 'aux-n3.json'), 'utf8')).aux.map(hexToBytes);

/** Runs sessions against each other in memory, routing frames by header. */
function runAll(sessions) {
  // Frame header: version u8 | session [16] | stage u8 | sender u16 | recipient u16 | ...
  const queue = [];
  const push = (from, step) => {
    for (const f of step.frames) queue.push(f);
    return step;
  };
  const done = new Map();
  sessions.forEach((s, i) => {
    if (push(i, s.start()).finished) done.set(i, s.takeOutput());
  });
  let steps = 0;
  while (queue.length) {
    assert.ok(steps++ < 10_000, 'sessions converge');
    const f = queue.shift();
    const view = new DataView(f.buffer, f.byteOffset);
    const sender = view.getUint16(18);
    const recipient = view.getUint16(20);
    sessions.forEach((s, i) => {
      if (i === sender || done.has(i) || (recipient !== 0xffff && recipient !== i)) return;
      const step = push(i, s.handleFrame(f));
      assert.equal(step.dropped, null, `frame accepted by ${i}`);
      if (step.finished) done.set(i, s.takeOutput());
    });
  }
  return sessions.map((_, i) => done.get(i));
}

test('an identity survives its seed; its public key and signatures are Ed25519', () => {
  const id = w.Identity.generate();
  const seed = id.seed();
  assert.equal(seed.length, 32);
  assert.deepEqual(w.Identity.fromSeed(seed).publicKey(), id.publicKey());
  assert.throws(() => w.Identity.fromSeed(new Uint8Array(31)), /32 bytes/);
  const sid = '6f1c1f38-6a0a-4b8e-9d3c-2f7f1e1d2c3b';
  const req = JSON.parse(id.deviceJoinRequest(sid, 'tok'));
  assert.equal(req.join_token, 'tok');
  assert.deepEqual(req.identity, id.publicKey());
  // "mpc/coordinator/device-join/v2" || session id || SHA-256(token) || ed25519 || x25519,
  // checked with noble.
  const pk = id.publicKey();
  const msg = new Uint8Array([
    ...utf8ToBytes('mpc/coordinator/device-join/v2'),
    ...hexToBytes(sid.replaceAll('-', '')),
    ...sha256(utf8ToBytes('tok')),
    ...hexToBytes(pk.ed25519),
    ...hexToBytes(pk.x25519),
  ]);
  assert.ok(ed25519.verify(hexToBytes(req.signature), msg, hexToBytes(pk.ed25519)));
  // The proof covers the X25519 key: another one does not verify.
  const swapped = msg.slice();
  swapped[swapped.length - 1] ^= 1;
  assert.ok(!ed25519.verify(hexToBytes(req.signature), swapped, hexToBytes(pk.ed25519)));
});

test('the router join answers only a challenge, and signs the nonce', () => {
  const id = ids[0];
  const sid = fx.keygen.descriptor.session_id;
  const nonce = '11'.repeat(32);
  const m = JSON.parse(id.routerJoin(json({ type: 'challenge', nonce }), sid, 'tok'));
  assert.equal(m.type, 'join_session');
  assert.equal(m.token, 'tok');
  const signed = new Uint8Array([...utf8ToBytes('mpc/router/join/v1'), ...hexToBytes(nonce), ...hexToBytes(sid.replaceAll('-', ''))]);
  assert.ok(ed25519.verify(hexToBytes(m.signature), signed, hexToBytes(id.publicKey().ed25519)));
  assert.throws(() => id.routerJoin(json({ type: 'joined', session_id: sid, position: 0 }), sid, 'tok'), /challenge/);
  assert.throws(() => id.routerJoin('not json', sid, 'tok'));
});

test('descriptors: verified against the coordinator key, tampering and strangers refused', () => {
  const info = w.verifyDescriptor(json(fx.keygen), ck, ids[1]);
  assert.equal(info.kind, 'keygen');
  assert.equal(info.position, 1);
  assert.equal(info.generate_aux, false);
  assert.equal(info.parties, 3);
  const tampered = structuredClone(fx.keygen);
  tampered.descriptor.threshold = 3;
  assert.throws(() => w.verifyDescriptor(json(tampered), ck, ids[0]), /not signed by the configured coordinator/);
  assert.throws(() => w.verifyDescriptor(json(fx.keygen), '00'.repeat(32), ids[0]));
  assert.throws(() => w.verifyDescriptor(json(fx.keygen), ck, w.Identity.generate()), /not a participant/);
  assert.throws(() => w.Session.keygenWithAux(json(fx.expired), ck, ids[0], auxN3[0], now()), /expired/);
  // Inputs must match the session kind.
  assert.throws(() => w.Session.sign(json(fx.keygen), ck, ids[0], new Uint8Array([1, 2, 3]), now()));
});

test('three wasm parties run keygen, two of them sign; rejected frames are not fatal', () => {
  const keygen = ids.map((id, i) => w.Session.keygenWithAux(json(fx.keygen), ck, id, auxN3[i], now()));
  assert.deepEqual(keygen.map((s) => s.position), [0, 1, 2]);
  const outs = runAll(keygen);
  for (const o of outs) {
    assert.equal(o.kind, 'keygen');
    assert.equal(o.public_key, outs[0].public_key, 'all parties agree on the key');
    assert.ok(o.share instanceof Uint8Array && o.share.length > 100);
    assert.equal(o.aux_info, null, 'aux info was reused, not generated');
  }
  assert.equal(w.ethereumAddress(outs[0].public_key), outs[0].address);

  const signers = [0, 2].map((k) => w.Session.sign(json(fx.sign), ck, ids[k], outs[k].share, now()));
  // A garbage frame is dropped without ending the session.
  assert.match(signers[0].handleFrame(new Uint8Array([1, 2, 3])).dropped, /./);
  const sigs = runAll(signers);
  for (const s of sigs) {
    assert.equal(s.kind, 'signature');
    assert.equal(s.signature, sigs[0].signature, 'both signers output the same signature');
  }
  assertSignatureValid(sigs[0], fx.message_hash, outs[0].public_key);
  assert.equal(w.verifySignature(fx.message_hash, outs[0].public_key, sigs[0].r, sigs[0].s, sigs[0].v), true);
  assert.equal(w.verifySignature(fx.message_hash, outs[0].public_key, sigs[0].r, sigs[0].s, 1 - sigs[0].v), false, 'a wrong v is refused');
  // A share loaded for the wrong position is refused.
  assert.throws(() => w.Session.sign(json(fx.sign), ck, ids[0], outs[1].share, now()), /index/);
});

test('primes: the test prime set passes the check; non-primes are refused', () => {
  const set = hexToBytes(JSON.parse(readFileSync(join(TEST_DATA, 'primes.json'), 'utf8')).parties[0]);
  w.checkPrimeSet(set);
  const bad = Array.from({ length: 4 }, () => {
    const b = new Uint8Array(192).fill(0xff);
    return b;
  });
  assert.throws(() => w.primeSetFromParts(bad), /safe prime|wrong size/);
  assert.throws(() => w.checkPrimeSet(new Uint8Array([0xa0])));
});

test('sealing binds party, account and kind; the WebCrypto AAD matches', () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const sealed = w.sealRecord(key, 'p1', 'acct', 'key_share', utf8ToBytes('secret'));
  assert.equal(new TextDecoder().decode(w.openRecord(key, 'p1', 'acct', 'key_share', sealed)), 'secret');
  assert.throws(() => w.openRecord(key, 'p1', 'other', 'key_share', sealed), /failed to open/);
  assert.throws(() => w.openRecord(key, 'p2', 'acct', 'key_share', sealed), /failed to open/);
  assert.throws(() => w.openRecord(key, 'p1', 'acct', 'aux_info', sealed));
  assert.throws(() => w.openRecord(crypto.getRandomValues(new Uint8Array(32)), 'p1', 'acct', 'key_share', sealed), /failed to open/);
  const aad = w.sealAad('p1', 'acct', 'key_share');
  const expected = new Uint8Array([...utf8ToBytes('mpc/seal/v1'), 0, 0, 0, 2, ...utf8ToBytes('p1'), 0, 0, 0, 4, ...utf8ToBytes('acct'), 1, 1]);
  assert.deepEqual(aad, expected);
  assert.throws(() => w.sealAad('p1', 'acct', 'nonsense'), /unknown record kind/);
});

test('the EIP-191 hash matches an independent Keccak-256', () => {
  const m = '{"type":"transfer","amount":"10 USDC"}';
  const expect = bytesToHex(keccak_256(new Uint8Array([...utf8ToBytes(`\x19Ethereum Signed Message:\n${m.length}`), ...utf8ToBytes(m)])));
  assert.equal(w.personalMessageHash(m), expect);
  assert.equal(w.backend(), 'num-bigint');
});
