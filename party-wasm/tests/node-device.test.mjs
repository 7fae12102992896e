// A device party in Node (party-wasm + ws, party-wasm/js/node-device.mjs)
// completes a 2-of-3 keygen with two server parties of `mpc dev`, then signs
// with one of them; the signature is checked with @noble/curves. Uses the
// PUBLIC test aux info (keygen is a DKG only; aux info in wasm is covered by
// the browser test).
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

import { NodeDevice } from '../js/node-device.mjs';
import { startSystem, api, assertSignatureValid, TEST_DATA } from './support/system.mjs';

test('a Node device party completes keygen and signing with server parties', { timeout: 600_000 }, async (t) => {
  const sys = await startSystem(['--parties', '2', '--insecure-test-data', TEST_DATA, '--insecure-test-aux']);
  const stateDir = mkdtempSync(join(tmpdir(), 'node-device-'));
  t.after(async () => {
    await sys.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });
  const c = api(sys);
  const device = await NodeDevice.open(stateDir, { partyId: 'node-device-1' });
  const auxJson = JSON.parse(readFileSync(join(TEST_DATA, 'aux-n3.json'), 'utf8'));
  const run = (sessionId, joinToken) =>
    device.run({
      coordinatorUrl: sys.api,
      routerWsUrl: sys.routerWs,
      coordinatorPublicKey: sys.coordinatorKey,
      sessionId,
      joinToken,
      testAux: async (info) => Buffer.from(auxJson.aux[info.keygen_index], 'hex'),
    });

  // Keygen: the device at index 0, the two server parties at 1 and 2.
  let started = Date.now();
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
  const keygenToken = created.body.join_tokens['node-device-1'];
  assert.ok(keygenToken, 'the device token is returned');
  const { info, result } = await run(created.body.session_id, keygenToken);
  assert.equal(info.kind, 'keygen');
  assert.equal(info.position, 0);
  assert.equal(result.kind, 'keygen');
  assert.equal(result.share, undefined, 'the share was sealed and removed from the result');
  const keygen = await c.waitSession(created.body.session_id);
  assert.equal(keygen.status, 'completed', JSON.stringify(keygen));
  assert.equal(keygen.result.public_key, result.public_key, 'everyone agrees on the key');
  assert.equal(keygen.result.address, result.address);
  const accountId = keygen.result.account_id;
  console.log(`node device keygen (DKG with test aux info): ${Date.now() - started} ms`);

  // Sign with the device (reopened from its sealed state) and server-party-2.
  const again = await NodeDevice.open(stateDir);
  assert.equal(again.partyId, 'node-device-1');
  assert.deepEqual(again.identity.publicKey(), device.identity.publicKey());
  const hash = randomBytes(32).toString('hex');
  started = Date.now();
  const sign = await c.post('/api/v1/mpc/sign', {
    account_id: accountId,
    message_hash: `0x${hash}`,
    participants: [{ party_id: 'node-device-1' }, { party_id: 'server-party-2' }],
  });
  assert.equal(sign.status, 201, JSON.stringify(sign.body));
  const signed = await again.run({
    coordinatorUrl: sys.api,
    routerWsUrl: sys.routerWs,
    coordinatorPublicKey: sys.coordinatorKey,
    sessionId: sign.body.session_id,
    joinToken: sign.body.join_tokens['node-device-1'],
  });
  assert.equal(signed.result.kind, 'signature');
  assertSignatureValid(signed.result, hash, result.public_key);
  const s = await c.waitSession(sign.body.session_id);
  assert.equal(s.status, 'completed', JSON.stringify(s));
  assert.equal(s.result.signature.r, `0x${signed.result.r}`);
  assertSignatureValid(s.result.signature, hash, result.public_key);
  console.log(`node device sign (2-of-3, device + server): ${Date.now() - started} ms`);
});
