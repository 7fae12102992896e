// Headless Chromium drives the demo page served by `mpc dev`: create a 2-of-3
// wallet (this browser + two server parties), sign a typed message with the browser and a server party, sign with
// the two server parties alone, reload, sign again with the stored share.
// Each signing is shown for review first (message, digest, hash) and runs on
// "Approve and sign". A session the backend creates for another hash than
// the one shown is refused by the browser party before it connects to the
// router (every router connection of the page goes through a counting
// proxy), and the session fails with `not_what_was_approved`. The signed
// descriptor of a completed signing, answered again to a device join (a
// compromised coordinator replaying it), is refused with `session_replayed`.
// Every signature is checked here with @noble/curves (verify + recovery of
// the account key from v) against the coordinator's account key, and the
// EIP-191 hash is recomputed with @noble/hashes. Saves screenshots to
// target/web-demo-screenshot{-before-reload,}.png.
//
// CI time: the PUBLIC test primes and aux info (mpc dev --insecure-test-data
// --insecure-test-aux, taken only by the test build of party-wasm that
// scripts/test-js makes; the page shows a test-mode banner): the keygen is a
// DKG. MPC_BROWSER_REAL_AUX=1 runs aux info for real in the browser instead
// (test primes only; minutes in wasm: BENCHMARKS.md measures it).
// Chromium: /usr/bin/chromium or $CHROMIUM.
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';

import { startSystem, api, assertSignatureValid, CHROMIUM_ARGS, ROOT, TEST_DATA } from '../../party-wasm/tests/support/system.mjs';
import { startCuttingProxy } from '../../party-wasm/tests/support/proxy.mjs';

function eip191(message) {
  const m = utf8ToBytes(message);
  return bytesToHex(keccak_256(new Uint8Array([...utf8ToBytes(`\x19Ethereum Signed Message:\n${m.length}`), ...m])));
}

/** Reads a signature card and checks it independently. */
async function checkSignature(page, id, publicKey) {
  const el = page.locator(`#${id}`);
  const d = await el.evaluate((e) => ({ ...e.dataset }));
  assert.equal(d.state, 'verified', `the page shows ${id} verified`);
  assert.equal(d.hash, eip191(d.message), 'the page hashed the message as EIP-191');
  assertSignatureValid({ r: d.r, s: d.s, v: d.v }, d.hash, publicKey);
  return d;
}

/** Clicks a sign button, checks the vault's review shows `message` and its hash, approves it in the vault. */
async function approveSigning(page, button) {
  const vault = page.frameLocator('#vault');
  await page.click(`#${button}`);
  await vault.locator('#review:not([hidden])').waitFor();
  const message = await page.locator('#message').inputValue();
  assert.equal(await vault.locator('#review-message').textContent(), message, 'the vault\'s review shows the message');
  assert.equal(await vault.locator('#review-hash').textContent(), `0x${eip191(message)}`, 'the vault\'s review shows its EIP-191 hash');
  await vault.locator('#approve-sign').click();
  return message;
}

/** The vault's hex of the share of its (only) account: read with the vault's own rights, as the tests may. */
async function vaultShareHex(vaultFrame) {
  return vaultFrame.evaluate(async () => {
    const v = window.__vault;
    const key = (await v.store.keys()).map(String).find((k) => k.startsWith('key_share:'));
    const bytes = await v.store.getSecret(v.partyId, 'key_share', key.slice('key_share:'.length));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  });
}

/**
 * What a script running in the page (injected or compromised) can get at:
 * the page origin's IndexedDB, the vault's window and globals, and every
 * answer the vault gives to forged and out-of-turn messages.
 */
async function pageScriptAttempt({ vaultOrigin, accountId, partyId }) {
  const out = { databases: (await indexedDB.databases()).map((d) => d.name) };
  out.pageStores = await new Promise((resolve) => {
    const r = indexedDB.open('mpc-browser-party');
    r.onsuccess = () => {
      resolve([...r.result.objectStoreNames]);
      r.result.close();
    };
    r.onerror = () => resolve(`error: ${r.error}`);
  });
  const frame = document.getElementById('vault').contentWindow;
  for (const [what, reach] of [
    ['indexedDB', () => frame.indexedDB.databases()],
    ['vault', () => frame.__vault.store],
    ['document', () => frame.document.body.innerHTML],
  ]) {
    try {
      await reach();
      out[what] = 'reached';
    } catch (e) {
      out[what] = e.name;
    }
  }
  const forged = [
    { id: 9001, type: 'export', passphrase: 'a passphrase the page knows' },
    { id: 9002, type: 'getSecret', kind: 'key_share' },
    { id: 9003, type: 'sign', session_id: 'a-session', join_token: 'a-token' },
    { id: 9004, type: '__proto__' },
    { id: 9005, type: 'constructor' },
    { id: 9006, type: 'runParty' },
    { id: 9007, type: 'exportBackup', passphrase: 'a passphrase the page knows' },
    { id: 9008, type: 'init' },
  ];
  // Every answer the vault gives, by request id (bounded: a request the
  // vault never answers shows up as missing instead of hanging the test).
  const answers = (window.__vaultAnswers = new Map());
  const waiters = new Map();
  window.addEventListener('message', (ev) => {
    if (ev.origin !== vaultOrigin || ev.data?.type === 'event') return;
    answers.set(ev.data.id, ev.data);
    waiters.get(ev.data.id)?.();
  });
  const answer = (id) =>
    answers.has(id)
      ? Promise.resolve(answers.get(id))
      : Promise.race([
          new Promise((resolve) => waiters.set(id, () => resolve(answers.get(id)))),
          new Promise((resolve) => setTimeout(() => resolve({ id, type: 'no answer' }), 20_000)),
        ]);
  for (const m of forged) frame.postMessage(m, vaultOrigin);
  out.answers = await Promise.all(forged.map((m) => answer(m.id)));

  // A signing session the page itself asks the demo backend for (it holds
  // the page's cookie), handed to the vault as "a keygen": the vault's party
  // refuses a descriptor of another kind than it was asked for, before it
  // reads the share or connects anywhere.
  const created = await (
    await fetch('api/sign', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ account_id: accountId, message_hash: `0x${'ab'.repeat(32)}`, signers: 'browser', party_id: partyId }),
    })
  ).json();
  out.smuggledSession = created.session_id;
  frame.postMessage({ id: 9101, type: 'keygen', session_id: created.session_id, join_token: created.join_tokens[partyId] }, vaultOrigin);
  out.smuggled = await answer(9101);

  // Two reviews one after the other: the first is cancelled, the second
  // stays open in the vault (the test cancels it there).
  frame.postMessage({ id: 9201, type: 'review', message: 'first review', signers: 'browser', account_id: accountId }, vaultOrigin);
  frame.postMessage({ id: 9202, type: 'review', message: 'second review', signers: 'browser', account_id: accountId }, vaultOrigin);
  out.firstReview = await answer(9201);
  return out;
}

test('the demo page creates a wallet, co-signs, and signs again after a reload', { timeout: 1_200_000 }, async (t) => {
  const realAux = process.env.MPC_BROWSER_REAL_AUX === '1';
  const sys = await startSystem(['--parties', '2', '--insecure-test-data', TEST_DATA, ...(realAux ? [] : ['--insecure-test-aux'])]);
  const profile = mkdtempSync(join(tmpdir(), 'chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
    viewport: { width: 1000, height: 1500 },
  });
  t.after(async () => {
    await browser.close();
    await sys.stop();
    rmSync(profile, { recursive: true, force: true });
  });
  // The browser party's router connections go through this proxy (it cuts
  // nothing): the page's config names it instead of the router.
  const proxy = await startCuttingProxy(sys.routerWs, { cuts: 0 });
  t.after(() => proxy.close());
  const page = browser.pages()[0] ?? (await browser.newPage());
  const vault = page.frameLocator('#vault');
  const vaultOrigin = new URL(sys.vault).origin;
  const vaultFrame = () => page.frames().find((f) => f.url().startsWith(vaultOrigin));
  await page.route('**/config.json', async (route) => {
    const response = await route.fetch();
    const json = await response.json();
    await route.fulfill({ response, json: { ...json, router_ws_url: proxy.wsUrl } });
  });
  // The device joins' answers (signed descriptors), by session id: what a
  // compromised coordinator could deliver again.
  const joins = new Map();
  await browser.route('**/api/v1/mpc/sessions/*/join', async (route) => {
    const response = await route.fetch();
    const body = await response.text();
    joins.set(route.request().url().split('/').at(-2), body);
    await route.fulfill({ response, body });
  });
  const pageLog = [];
  page.on('console', (m) => pageLog.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => pageLog.push(`pageerror: ${e.message}`));
  // The page never holds the API key: no request carries it, no answer contains it.
  const leaks = [];
  page.on('request', (r) => {
    if (r.headers()['x-api-key']) leaks.push(`header on ${r.url()}`);
  });
  page.on('response', async (r) => {
    const body = await r.text().catch(() => '');
    if (body.includes(sys.apiKey)) leaks.push(`body of ${r.url()}`);
  });
  const c = api(sys);
  const dump = async () => {
    const shown = await page.locator('#log').textContent().catch(() => '');
    const status = await page.locator('#status').textContent().catch(() => '');
    return `\n--- status ---\n${status}\n--- page log ---\n${shown}\n--- console ---\n${pageLog.join('\n')}`;
  };

  await page.goto(sys.demo);
  await page.waitForSelector('body[data-ready=true]', { timeout: 60_000 });
  assert.ok(await page.locator('#test-mode').isVisible(), 'the test-mode banner is shown');
  const partyId = await vault.locator('#party-id').textContent();
  assert.match(partyId, /^browser-[0-9a-f]{16}$/);
  assert.equal(await vault.locator('#coordinator-key').getAttribute('data-key'), sys.coordinatorKey, 'the pinned coordinator key is shown');
  await vault.locator('#primes-status[data-state=ready]').waitFor({ timeout: 60_000 });

  // 1. Keygen: the DKG (with MPC_BROWSER_REAL_AUX=1, aux info in wasm first).
  let started = Date.now();
  await page.click('#create-wallet');
  await page.waitForSelector('#wallet[data-state=ready], #status[data-state=error]', { timeout: realAux ? 900_000 : 120_000 }).catch(async (e) => {
    throw new Error(`${e.message}${await dump()}`);
  });
  await page.waitForSelector('#wallet[data-state=ready]', { timeout: 1_000 }).catch(async (e) => {
    throw new Error(`the keygen failed: ${e.message}${await dump()}`);
  });
  const keygenMs = Date.now() - started;
  const address = await page.locator('#address').textContent();
  const accountId = await page.locator('#account-id').textContent();
  const account = (await c.get(`/api/v1/mpc/accounts/${accountId}`)).body;
  assert.equal(account.address, address);
  assert.equal(account.parties[0].party_id, partyId, 'the browser holds keygen index 0');
  const publicKey = account.public_key;
  const timings = await page.evaluate(() => window.__timings);
  if (!realAux) {
    assert.ok((await page.locator('#log').textContent()).includes('using the PUBLIC test aux info'), 'the test build took the test aux info');
  }
  console.log(`browser keygen (${realAux ? 'aux info in wasm + ' : ''}DKG): ${(keygenMs / 1000).toFixed(1)} s; browser aux info stage ${((timings.aux_info_ms ?? NaN) / 1000).toFixed(1)} s`);

  // 2. Browser + server-party-1 sign a typed message.
  started = Date.now();
  const connectionsBefore = proxy.connections();
  await approveSigning(page, 'sign-browser');
  await page.waitForSelector('#sig-browser[data-state=verified], #sig-browser[data-state=failed], #sig-browser[data-state=refused]', { timeout: 300_000 }).catch(async (e) => {
    throw new Error(`${e.message}${await dump()}`);
  });
  const first = await checkSignature(page, 'sig-browser', publicKey);
  assert.ok(proxy.connections() > connectionsBefore, 'the browser signed through the router (proxy)');
  console.log(`browser + server sign: ${((Date.now() - started) / 1000).toFixed(1)} s`);

  // 3. The two server parties alone (the browser is not needed: threshold 2).
  await approveSigning(page, 'sign-servers');
  await page.waitForSelector('#sig-servers[data-state=verified], #sig-servers[data-state=failed]', { timeout: 300_000 }).catch(async (e) => {
    throw new Error(`${e.message}${await dump()}`);
  });
  await checkSignature(page, 'sig-servers', publicKey);

  // Cancel: nothing is signed, no session is created.
  const signRequests = [];
  page.on('request', (r) => r.url().endsWith('/demo/api/sign') && signRequests.push(r.url()));
  await page.click('#sign-browser');
  await vault.locator('#review:not([hidden])').waitFor();
  await vault.locator('#cancel-sign').click();
  await page.waitForFunction(() => document.getElementById('log').textContent.includes('signing cancelled in the vault'));
  assert.ok(await vault.locator('#review').isHidden(), 'the review is closed');
  assert.deepEqual(signRequests, [], 'no signing was asked for');

  // 3b. The backend (or the coordinator) turns the approved signing into a
  // session for another hash: the browser party refuses it before it
  // connects to the router, with the typed reason, and the session fails.
  const evil = randomBytes(32).toString('hex');
  await page.route('**/demo/api/sign', async (route) => {
    const body = JSON.parse(route.request().postData());
    await route.continue({ postData: JSON.stringify({ ...body, message_hash: `0x${evil}` }) });
  });
  const beforeRefusal = proxy.connections();
  await approveSigning(page, 'sign-browser');
  await page.waitForSelector('#sig-browser[data-state=refused], #sig-browser[data-state=verified], #sig-browser[data-state=failed]', { timeout: 300_000 }).catch(async (e) => {
    throw new Error(`${e.message}${await dump()}`);
  });
  const refused = await page.locator('#sig-browser').evaluate((e) => ({ ...e.dataset }));
  assert.equal(refused.state, 'refused', `the browser refused: ${JSON.stringify(refused)}${await dump()}`);
  assert.equal(refused.code, 'not_what_was_approved');
  assert.equal(proxy.connections(), beforeRefusal, 'the browser never connected to the router for it');
  const refusedSession = await c.waitSession(refused.sessionId);
  assert.equal(refusedSession.status, 'failed', JSON.stringify(refusedSession));
  assert.match(JSON.stringify(refusedSession), new RegExp(`${partyId} refused \\(not_what_was_approved\\)`), 'the refusal report reached the coordinator');
  assert.equal(
    await vaultFrame().evaluate((id) => window.__vault.store.get(`admitted:${id}`), refused.sessionId),
    undefined,
    'a refused session is not recorded',
  );
  assert.notEqual(
    await vaultFrame().evaluate((id) => window.__vault.store.get(`admitted:${id}`), first.sessionId),
    undefined,
    'the signed session was recorded before it ran',
  );
  await page.unroute('**/demo/api/sign');

  // 3c. Replay: the completed signing of step 2 delivered again, its signed
  // descriptor answered to the device join. The browser party refuses it
  // from its own record, before any connection.
  const replayed = joins.get(first.sessionId);
  assert.ok(replayed && JSON.parse(replayed).descriptor, `the device join of step 2 was seen: ${[...joins.keys()]}`);
  await browser.route(`**/api/v1/mpc/sessions/${first.sessionId}/join`, (route) =>
    route.fulfill({ status: 200, contentType: 'application/json', body: replayed }),
  );
  const beforeReplay = proxy.connections();
  const replayCode = await vaultFrame().evaluate(
    async ({ id, message, accountId }) => {
      const m = new TextEncoder().encode(message);
      const prefix = new TextEncoder().encode(`\x19Ethereum Signed Message:\n${m.length}`);
      const approved = { message: new Uint8Array([...prefix, ...m]), digest: 'keccak256' };
      try {
        await window.__vault.runParty({ sessionId: id, joinToken: 'replayed-token', kind: 'sign', approved, accountId });
        return 'ran';
      } catch (e) {
        return e.code ?? e.message;
      }
    },
    { id: first.sessionId, message: first.message, accountId },
  );
  assert.equal(replayCode, 'session_replayed');
  assert.equal(proxy.connections(), beforeReplay, 'the replayed session never reached the router');

  mkdirSync(join(ROOT, 'target'), { recursive: true });
  await page.screenshot({ path: join(ROOT, 'target/web-demo-screenshot-before-reload.png'), fullPage: true });

  // 4. Reload: the wallet and the sealed share come back from IndexedDB.
  await page.reload();
  await page.waitForSelector('body[data-ready=true]', { timeout: 60_000 });
  assert.equal(await vault.locator('#party-id').textContent(), partyId);
  assert.equal(await page.locator('#address').textContent(), address);
  await page.fill('#message', '{"type":"transfer","to":"0x000000000000000000000000000000000000b0b0","amount":"3 USDC","nonce":2}');
  started = Date.now();
  await approveSigning(page, 'sign-browser');
  await page.waitForSelector('#sig-browser[data-state=verified], #sig-browser[data-state=failed], #sig-browser[data-state=refused]', { timeout: 300_000 }).catch(async (e) => {
    throw new Error(`${e.message}${await dump()}`);
  });
  const again = await checkSignature(page, 'sig-browser', publicKey);
  assert.notEqual(again.hash, first.hash, 'a new message was signed');
  console.log(`browser + server sign after reload: ${((Date.now() - started) / 1000).toFixed(1)} s`);

  // The share never left the browser in the clear: the vault's IndexedDB holds only sealed records.
  const stored = await vaultFrame().evaluate(async () => {
    const s = window.__vault.store;
    const keys = (await s.keys()).map(String);
    const share = await s.get(keys.find((k) => k.startsWith('key_share:')));
    return { keys, kind: share[0] === 1 ? share[1] : -1, masterKeyExtractable: (await s.get('master-key')).extractable };
  });
  assert.ok(stored.keys.includes('identity:'), 'identity sealed');
  assert.ok(stored.keys.some((k) => k.startsWith('aux_info:')), 'aux info sealed');
  assert.equal(stored.kind, 1, 'the share is a sealed key_share record');
  assert.equal(stored.masterKeyExtractable, false, 'the WebCrypto key is non-extractable');
  assert.deepEqual(leaks, [], 'the API key never reached the page');

  // 5. A script in the page (injected, or a compromised dependency) cannot
  // read or use a stored share: the page's origin has no party store, the
  // vault's window is another origin, and the vault answers forged and
  // out-of-turn messages with typed refusals that carry nothing secret.
  const share = await vaultShareHex(vaultFrame());
  assert.ok(share.length >= 64, 'the vault holds a share');
  const shareB64 = Buffer.from(share, 'hex').toString('base64');
  const beforeAttempt = proxy.connections();
  const attempt = await page.evaluate(pageScriptAttempt, { vaultOrigin, accountId, partyId });
  assert.ok(!attempt.databases.includes('mpc-browser-party'), `the page's origin has no party store: ${attempt.databases}`);
  assert.deepEqual(attempt.pageStores, [], 'opening the store name on the page origin finds an empty database');
  for (const what of ['indexedDB', 'vault', 'document']) {
    assert.equal(attempt[what], 'SecurityError', `the vault's ${what} is out of the page's reach`);
  }
  const byId = Object.fromEntries(attempt.answers.map((a) => [a.id, a]));
  for (const id of [9001, 9002, 9004, 9005, 9006, 9007]) {
    assert.equal(byId[id]?.type, 'error', JSON.stringify(byId[id]));
    assert.equal(byId[id].code, 'unknown_message', JSON.stringify(byId[id]));
  }
  assert.equal(byId[9003].code, 'not_approved', 'a signing nobody approved in the vault is refused');
  assert.equal(byId[9008].type, 'result', 'init answers public data only');
  assert.deepEqual(Object.keys(byId[9008].result).sort(), ['coordinator_key', 'how', 'party_id', 'test_mode', 'wallets']);
  const answered = JSON.stringify(attempt.answers);
  assert.ok(!answered.includes(share) && !answered.includes(shareB64), 'no answer carries the share');
  assert.equal(attempt.smuggled.type, 'error', JSON.stringify(attempt.smuggled));
  assert.equal(attempt.smuggled.code, 'unexpected_session_kind', 'a signing passed off as a keygen is refused');
  assert.equal(proxy.connections(), beforeAttempt, 'the vault connected to the router for none of it');
  const smuggled = (await c.get(`/api/v1/mpc/sessions/${attempt.smuggledSession}`)).body;
  assert.notEqual(smuggled.status, 'completed', 'no signature came of it');
  assert.equal(smuggled.result?.signature, undefined);
  assert.equal(attempt.firstReview.code, 'cancelled', 'a review put up over another cancels it');
  assert.ok(await vault.locator('#review').isVisible(), 'the later review stays open');
  assert.equal(await vault.locator('#review-message').textContent(), 'second review', 'the later review is the one shown');
  await vault.locator('#cancel-sign').click();
  await vault.locator('#review').waitFor({ state: 'hidden' });
  await page.waitForFunction(() => window.__vaultAnswers.get(9202)?.code === 'cancelled');

  // An approval past its time signs nothing: approved in the vault, aged
  // there (the test's own rights), then asked for by the page.
  await page.evaluate(
    ({ vaultOrigin, accountId }) =>
      document.getElementById('vault').contentWindow.postMessage({ id: 9301, type: 'review', message: 'aged approval', signers: 'browser', account_id: accountId }, vaultOrigin),
    { vaultOrigin, accountId },
  );
  await vault.locator('#review:not([hidden])').waitFor();
  await vault.locator('#approve-sign').click();
  await page.waitForFunction(() => window.__vaultAnswers.get(9301)?.type === 'result');
  assert.equal(await vaultFrame().evaluate(() => window.__vault.signing?.account_id), accountId, 'the approval names the account');
  await vaultFrame().evaluate(() => (window.__vault.signing.expires = Date.now() - 1));
  await page.evaluate(
    ({ vaultOrigin }) =>
      document.getElementById('vault').contentWindow.postMessage({ id: 9302, type: 'sign', session_id: 'a-session', join_token: 'a-token' }, vaultOrigin),
    { vaultOrigin },
  );
  await page.waitForFunction(() => window.__vaultAnswers.has(9302));
  const aged = await page.evaluate(() => window.__vaultAnswers.get(9302));
  assert.equal(aged.code, 'not_approved', JSON.stringify(aged));
  assert.match(aged.message, /expired/);
  assert.equal(await vaultFrame().evaluate(() => window.__vault.signing), null, 'and it is gone');

  await page.screenshot({ path: join(ROOT, 'target/web-demo-screenshot.png'), fullPage: true });
});
