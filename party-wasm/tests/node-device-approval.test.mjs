// A Node device party signs only what its user approved, and never runs a
// session twice (issue #13, "devices see what they sign"):
// - approved a message (Keccak-256) or a hash: the session for it signs, and
//   the signature verifies with @noble/curves;
// - a session for another hash than the approved one is refused by the
//   device before it connects to the router (a counting proxy in front of
//   the router sees no connection), with a signed `refused` report whose code
//   is `not_what_was_approved`, nothing recorded, and the session fails;
// - a completed session's descriptor delivered again (the device join
//   answered by a compromised coordinator with the old descriptor) is
//   refused by the device, reopened from its state directory, with
//   `session_replayed`: no connection, no frame.
// Keygen is a DKG with the PUBLIC test aux info (cheap).
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';

import { NodeDevice } from '../js/node-device.mjs';
import { startSystem, api, assertSignatureValid, TEST_DATA } from './support/system.mjs';
import { startCuttingProxy } from './support/proxy.mjs';

const auxJson = JSON.parse(readFileSync(join(TEST_DATA, 'aux-n3.json'), 'utf8'));

/**
 * A fetch that records what the device sent to and got from the
 * coordinator: the device join answer (text) and the reports it posted
 * (the signed report's inner JSON, parsed). `join` overrides the device join
 * answer (a compromised coordinator).
 */
function recordingFetch({ join: joinAnswer } = {}) {
  const seen = { joins: [], reports: [] };
  const f = async (url, init) => {
    if (String(url).endsWith('/join') && joinAnswer) {
      seen.joins.push(joinAnswer);
      return new Response(joinAnswer, { status: 200, headers: { 'Content-Type': 'application/json' } });
    }
    if (String(url).endsWith('/internal/v1/reports')) {
      const signed = JSON.parse(init.body);
      seen.reports.push(JSON.parse(signed.report));
    }
    const r = await fetch(url, init);
    if (String(url).endsWith('/join')) seen.joins.push(await r.clone().text());
    return r;
  };
  return { fetch: f, seen };
}

async function setup(t) {
  const sys = await startSystem(['--parties', '2', '--insecure-test-data', TEST_DATA, '--insecure-test-aux']);
  const stateDir = mkdtempSync(join(tmpdir(), 'node-device-approval-'));
  // Every connection of the device to the router goes through this proxy
  // (it cuts nothing): its count is what reached the router.
  const proxy = await startCuttingProxy(sys.routerWs, { cuts: 0 });
  t.after(async () => {
    await proxy.close();
    await sys.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });
  const c = api(sys);
  const device = await NodeDevice.open(stateDir, { partyId: 'node-device-1' });
  const run = (dev, sessionId, joinToken, extra = {}) =>
    dev.run({
      coordinatorUrl: sys.api,
      routerWsUrl: proxy.wsUrl,
      coordinatorPublicKey: sys.coordinatorKey,
      sessionId,
      joinToken,
      testAux: async (info) => Buffer.from(auxJson.aux[info.keygen_index], 'hex'),
      ...extra,
    });

  const created = await c.post('/api/v1/mpc/keygen', {
    threshold_n: 3,
    threshold_t: 2,
    participants: [
      { party_id: 'node-device-1', device_type: 'device' },
      { party_id: 'server-party-1', device_type: 'server' },
      { party_id: 'server-party-2', device_type: 'server' },
    ],
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const { result } = await run(device, created.body.session_id, created.body.join_tokens['node-device-1']);
  const keygen = await c.waitSession(created.body.session_id);
  assert.equal(keygen.status, 'completed', JSON.stringify(keygen));
  const account = { accountId: keygen.result.account_id, publicKey: result.public_key };

  /** A sign session of `hash` (hex) with the device and server-party-2. */
  async function signSession(hash) {
    const s = await c.post('/api/v1/mpc/sign', {
      account_id: account.accountId,
      message_hash: `0x${hash}`,
      participants: [{ party_id: 'node-device-1' }, { party_id: 'server-party-2' }],
    });
    assert.equal(s.status, 201, JSON.stringify(s.body));
    return { sessionId: s.body.session_id, token: s.body.join_tokens['node-device-1'] };
  }
  return { sys, c, device, stateDir, proxy, run, account, signSession };
}

test('a Node device signs what its user approved, refuses another hash before connecting, and refuses a replayed descriptor', { timeout: 600_000 }, async (t) => {
  const { c, device, stateDir, proxy, run, account, signSession } = await setup(t);

  // 1. Happy path, the message form: the user approved this message under
  // Keccak-256; the coordinator's session signs its digest.
  const message = '{"type":"transfer","to":"0x00000000000000000000000000000000000a11ce","amount":"10 USDC","nonce":7}';
  const digestHex = bytesToHex(keccak_256(utf8ToBytes(message)));
  const signed = await signSession(digestHex);
  const first = recordingFetch();
  const connectionsBefore = proxy.connections();
  const out = await run(device, signed.sessionId, signed.token, { approved: { message, digest: 'keccak256' }, fetch: first.fetch });
  assert.equal(out.result.kind, 'signature');
  assertSignatureValid(out.result, digestHex, account.publicKey);
  const done = await c.waitSession(signed.sessionId);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assertSignatureValid(done.result.signature, digestHex, account.publicKey);
  assert.ok(proxy.connections() > connectionsBefore, 'the approved session went through the router');
  assert.ok(existsSync(join(stateDir, 'admitted/sessions', signed.sessionId)), 'the device recorded the session durably');

  // 2. The hash form, approved and signed.
  const approvedHash = randomBytes(32).toString('hex');
  const okHash = await signSession(approvedHash);
  const byHash = await run(device, okHash.sessionId, okHash.token, { approved: { hash: approvedHash } });
  assertSignatureValid(byHash.result, approvedHash, account.publicKey);

  // 3. The user approved one hash; the session signs another. Refused before
  // any connection: no join, no frame reached the router.
  const shown = randomBytes(32).toString('hex');
  const other = await signSession(randomBytes(32).toString('hex'));
  const refused = recordingFetch();
  const beforeRefusal = proxy.connections();
  await assert.rejects(
    run(device, other.sessionId, other.token, { approved: { hash: shown }, fetch: refused.fetch }),
    (e) => e.code === 'not_what_was_approved',
  );
  assert.equal(proxy.connections(), beforeRefusal, 'the device never connected to the router');
  assert.deepEqual(
    refused.seen.reports.map((r) => r.body.type),
    ['refused'],
    'one report: the refusal',
  );
  assert.equal(refused.seen.reports[0].body.code, 'not_what_was_approved');
  assert.equal(refused.seen.reports[0].session_id, other.sessionId);
  assert.ok(!existsSync(join(stateDir, 'admitted/sessions', other.sessionId)), 'a refused session is not recorded');
  const failed = await c.waitSession(other.sessionId);
  assert.equal(failed.status, 'failed', JSON.stringify(failed));
  assert.match(JSON.stringify(failed), /not_what_was_approved/);

  // The same message under another digest is not what was approved either.
  const sha = await signSession(randomBytes(32).toString('hex'));
  await assert.rejects(
    run(device, sha.sessionId, sha.token, { approved: { message, digest: 'sha256' } }),
    (e) => e.code === 'not_what_was_approved',
  );

  // 4. Replay: the completed session of step 1 delivered again, its signed
  // descriptor answered to the device join by a compromised coordinator.
  // The device, reopened from its state directory, refuses it.
  const oldJoin = first.seen.joins.at(-1);
  assert.ok(JSON.parse(oldJoin).descriptor, 'the first run got a descriptor');
  const reopened = await NodeDevice.open(stateDir);
  const replay = recordingFetch({ join: oldJoin });
  const beforeReplay = proxy.connections();
  await assert.rejects(
    run(reopened, signed.sessionId, signed.token, { approved: { message, digest: 'keccak256' }, fetch: replay.fetch }),
    (e) => e.code === 'session_replayed',
  );
  assert.equal(proxy.connections(), beforeReplay, 'the replayed session never reached the router');
  assert.deepEqual(replay.seen.reports.map((r) => `${r.body.type}:${r.body.code}`), ['refused:session_replayed']);
});
