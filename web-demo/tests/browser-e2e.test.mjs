// Headless Chromium drives the demo page served by `mpc dev`: create a 2-of-3
// wallet (this browser + two server parties; the browser runs aux info in
// wasm), sign a typed message with the browser and a server party, sign with
// the two server parties alone, reload, sign again with the stored share.
// Every signature is checked here with @noble/curves (verify + recovery of
// the account key from v) against the coordinator's account key, and the
// EIP-191 hash is recomputed with @noble/hashes. Saves screenshots to
// target/web-demo-screenshot{-before-reload,}.png.
//
// CI time: the PUBLIC test primes (mpc dev --insecure-test-data; the page
// shows a test-mode banner); aux info itself runs for real in the browser.
// Chromium: /usr/bin/chromium or $CHROMIUM.
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';

import { startSystem, api, assertSignatureValid, CHROMIUM_ARGS, ROOT, TEST_DATA } from '../../party-wasm/tests/support/system.mjs';

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

test('the demo page creates a wallet, co-signs, and signs again after a reload', { timeout: 1_200_000 }, async (t) => {
  const sys = await startSystem(['--parties', '2', '--insecure-test-data', TEST_DATA]);
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
  const page = browser.pages()[0] ?? (await browser.newPage());
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
  const dump = () => `\n--- page log ---\n${pageLog.join('\n')}`;

  await page.goto(sys.demo);
  await page.waitForSelector('body[data-ready=true]', { timeout: 60_000 });
  assert.ok(await page.locator('#test-mode').isVisible(), 'the test-mode banner is shown');
  const partyId = await page.locator('#party-id').textContent();
  assert.match(partyId, /^browser-[0-9a-f]{16}$/);
  await page.waitForSelector('#primes-status[data-state=ready]', { timeout: 60_000 });

  // 1. Keygen: the browser generates aux info in wasm (minutes) then the DKG.
  let started = Date.now();
  await page.click('#create-wallet');
  await page.waitForSelector('#wallet[data-state=ready]', { timeout: 900_000 }).catch((e) => {
    throw new Error(`${e.message}${dump()}`);
  });
  const keygenMs = Date.now() - started;
  const address = await page.locator('#address').textContent();
  const accountId = await page.locator('#account-id').textContent();
  const account = (await c.get(`/api/v1/mpc/accounts/${accountId}`)).body;
  assert.equal(account.address, address);
  assert.equal(account.parties[0].party_id, partyId, 'the browser holds keygen index 0');
  const publicKey = account.public_key;
  const timings = await page.evaluate(() => window.__timings);
  console.log(`browser keygen (aux info in wasm + DKG): ${(keygenMs / 1000).toFixed(1)} s; browser aux info stage ${((timings.aux_info_ms ?? NaN) / 1000).toFixed(1)} s`);

  // 2. Browser + server-party-1 sign a typed message.
  started = Date.now();
  await page.click('#sign-browser');
  await page.waitForSelector('#sig-browser[data-state=verified], #sig-browser[data-state=failed]', { timeout: 300_000 });
  const first = await checkSignature(page, 'sig-browser', publicKey);
  console.log(`browser + server sign: ${((Date.now() - started) / 1000).toFixed(1)} s`);

  // 3. The two server parties alone (the browser is not needed: threshold 2).
  await page.click('#sign-servers');
  await page.waitForSelector('#sig-servers[data-state=verified], #sig-servers[data-state=failed]', { timeout: 300_000 });
  await checkSignature(page, 'sig-servers', publicKey);

  mkdirSync(join(ROOT, 'target'), { recursive: true });
  await page.screenshot({ path: join(ROOT, 'target/web-demo-screenshot-before-reload.png'), fullPage: true });

  // 4. Reload: the wallet and the sealed share come back from IndexedDB.
  await page.reload();
  await page.waitForSelector('body[data-ready=true]', { timeout: 60_000 });
  assert.equal(await page.locator('#party-id').textContent(), partyId);
  assert.equal(await page.locator('#address').textContent(), address);
  await page.fill('#message', '{"type":"transfer","to":"0x000000000000000000000000000000000000b0b0","amount":"3 USDC","nonce":2}');
  started = Date.now();
  await page.click('#sign-browser');
  await page.waitForSelector('#sig-browser[data-state=verified], #sig-browser[data-state=failed]', { timeout: 300_000 });
  const again = await checkSignature(page, 'sig-browser', publicKey);
  assert.notEqual(again.hash, first.hash, 'a new message was signed');
  console.log(`browser + server sign after reload: ${((Date.now() - started) / 1000).toFixed(1)} s`);

  // The share never left the browser in the clear: IndexedDB holds only sealed records.
  const stored = await page.evaluate(async () => {
    const s = window.__app.store;
    const keys = (await s.keys()).map(String);
    const share = await s.get(keys.find((k) => k.startsWith('key_share:')));
    return { keys, kind: share[0] === 1 ? share[1] : -1, masterKeyExtractable: (await s.get('master-key')).extractable };
  });
  assert.ok(stored.keys.includes('identity:'), 'identity sealed');
  assert.ok(stored.keys.some((k) => k.startsWith('aux_info:')), 'aux info sealed');
  assert.equal(stored.kind, 1, 'the share is a sealed key_share record');
  assert.equal(stored.masterKeyExtractable, false, 'the WebCrypto key is non-extractable');
  assert.deepEqual(leaks, [], 'the API key never reached the page');

  await page.screenshot({ path: join(ROOT, 'target/web-demo-screenshot.png'), fullPage: true });
});
