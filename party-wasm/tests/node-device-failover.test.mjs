// A Node device party has the server party's connection properties (the
// same session machine, party-core's host, drives both): its router
// connection dropped mid-session, it rejoins and resends and the session
// completes; with its first router URL down, it joins through the second.
// Keygen (2-of-3 with two server parties of `mpc dev`, PUBLIC test aux info)
// and signing; every signature is checked with @noble/curves (verify and
// recovery of the account key from v).
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

import { NodeDevice } from '../js/node-device.mjs';
import { startSystem, api, assertSignatureValid, TEST_DATA } from './support/system.mjs';
import { startCuttingProxy, closedPortUrl } from './support/proxy.mjs';

const auxJson = JSON.parse(readFileSync(join(TEST_DATA, 'aux-n3.json'), 'utf8'));

/** mpc dev, a device, and helpers to run a keygen and a signing with it. */
async function setup(t) {
  const sys = await startSystem(['--parties', '2', '--insecure-test-data', TEST_DATA, '--insecure-test-aux']);
  const stateDir = mkdtempSync(join(tmpdir(), 'node-device-'));
  t.after(async () => {
    await sys.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });
  const c = api(sys);
  const device = await NodeDevice.open(stateDir, { partyId: 'node-device-1' });
  const run = (sessionId, joinToken, routerWsUrls, log) =>
    device.run({
      coordinatorUrl: sys.api,
      routerWsUrls,
      coordinatorPublicKey: sys.coordinatorKey,
      sessionId,
      joinToken,
      log,
      testAux: async (info) => Buffer.from(auxJson.aux[info.keygen_index], 'hex'),
    });

  async function keygen(routerWsUrls, log) {
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
    const { info, result } = await run(created.body.session_id, created.body.join_tokens['node-device-1'], routerWsUrls, log);
    assert.equal(info.kind, 'keygen');
    assert.equal(result.kind, 'keygen');
    const s = await c.waitSession(created.body.session_id);
    assert.equal(s.status, 'completed', JSON.stringify(s));
    assert.equal(s.result.public_key, result.public_key, 'everyone agrees on the key');
    return { accountId: s.result.account_id, publicKey: result.public_key };
  }

  async function sign(account, routerWsUrls, log) {
    const hash = randomBytes(32).toString('hex');
    const created = await c.post('/api/v1/mpc/sign', {
      account_id: account.accountId,
      message_hash: `0x${hash}`,
      participants: [{ party_id: 'node-device-1' }, { party_id: 'server-party-2' }],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const signed = await run(created.body.session_id, created.body.join_tokens['node-device-1'], routerWsUrls, log);
    assert.equal(signed.result.kind, 'signature');
    assertSignatureValid(signed.result, hash, account.publicKey);
    const s = await c.waitSession(created.body.session_id);
    assert.equal(s.status, 'completed', JSON.stringify(s));
    assert.equal(s.result.signature.r, `0x${signed.result.r}`);
    assertSignatureValid(s.result.signature, hash, account.publicKey);
  }

  return { sys, keygen, sign };
}

test('a Node device party whose router connection is dropped mid-session rejoins, resends and completes', { timeout: 600_000 }, async (t) => {
  const { sys, keygen, sign } = await setup(t);
  // Each session's first connection is cut after the router sent it two
  // protocol frames; the device rejoins through the same proxy.
  const keygenProxy = await startCuttingProxy(sys.routerWs, { cutAfterFrames: 2 });
  t.after(() => keygenProxy.close());
  const keygenLog = [];
  const account = await keygen([keygenProxy.wsUrl], (m) => keygenLog.push(m));
  assert.equal(keygenProxy.cutsDone(), 1, 'the keygen connection was cut');
  assert.ok(keygenProxy.connections() >= 2, 'the device connected again');
  assert.ok(keygenLog.some((m) => m.startsWith('rejoined')), `the device rejoined and resent: ${keygenLog.join(' | ')}`);

  const signProxy = await startCuttingProxy(sys.routerWs, { cutAfterFrames: 2 });
  t.after(() => signProxy.close());
  const signLog = [];
  await sign(account, [signProxy.wsUrl], (m) => signLog.push(m));
  assert.equal(signProxy.cutsDone(), 1, 'the signing connection was cut');
  assert.ok(signLog.some((m) => m.startsWith('rejoined')), `the device rejoined and resent: ${signLog.join(' | ')}`);
});

test('a Node device party whose first router URL is down completes through the second', { timeout: 600_000 }, async (t) => {
  const { sys, keygen, sign } = await setup(t);
  const down = await closedPortUrl();
  const keygenLog = [];
  const account = await keygen([down, sys.routerWs], (m) => keygenLog.push(m));
  assert.ok(keygenLog.includes('router 0 failed, trying the next'), keygenLog.join(' | '));
  assert.ok(keygenLog.includes('joining through router 1'), keygenLog.join(' | '));
  const signLog = [];
  await sign(account, [down, sys.routerWs], (m) => signLog.push(m));
  assert.ok(signLog.includes('router 0 failed, trying the next'), signLog.join(' | '));
});
