// The coordinator key a browser party trusts is pinned on first use in its
// own store and shown, never taken afresh from the server it checks: headless
// Chromium opens the demo page (the key is pinned and shown), then the demo
// backend offers another key (a compromised or swapped server) and the page
// refuses to take part with `coordinator_key_changed`: every button
// disabled, the pinned key unchanged. No keygen: cheap.
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

import { startSystem, CHROMIUM_ARGS, TEST_DATA } from '../../party-wasm/tests/support/system.mjs';

test('the demo page pins the coordinator key on first use and refuses a changed key', { timeout: 300_000 }, async (t) => {
  const sys = await startSystem(['--parties', '2', '--insecure-test-data', TEST_DATA]);
  const profile = mkdtempSync(join(tmpdir(), 'chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
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
  const dump = () => `\n--- page log ---\n${pageLog.join('\n')}`;

  // First use: the offered key is pinned and shown.
  await page.goto(sys.demo);
  await page.waitForSelector('body[data-ready=true]', { timeout: 60_000 }).catch((e) => {
    throw new Error(`${e.message}${dump()}`);
  });
  const key = page.locator('#coordinator-key');
  assert.equal(await key.getAttribute('data-state'), 'pinned');
  assert.equal(await key.getAttribute('data-key'), sys.coordinatorKey);
  assert.match(await key.textContent(), new RegExp(`^${sys.coordinatorKey} \\(pinned on first use\\)`));
  assert.equal(await page.evaluate(() => window.__app.store.get('coordinator-key')), sys.coordinatorKey, 'pinned in the store');

  // A reload with the same key: still trusted, now from the store.
  await page.reload();
  await page.waitForSelector('body[data-ready=true]', { timeout: 60_000 });
  assert.match(await key.textContent(), /\(pinned in this browser\)$/);

  // The server now offers another key: refused, nothing can run.
  const other = randomBytes(32).toString('hex');
  await page.route('**/demo/api/config', async (route) => {
    const response = await route.fetch();
    const json = await response.json();
    await route.fulfill({ response, json: { ...json, coordinator_public_key: other } });
  });
  await page.reload();
  await page.waitForSelector('#status[data-state=error]', { timeout: 60_000 });
  assert.match(await page.locator('#status').textContent(), /^coordinator_key_changed: /);
  assert.equal(await key.getAttribute('data-state'), 'changed');
  assert.match(await key.textContent(), new RegExp(`${sys.coordinatorKey}.*server now offers ${other}`));
  assert.equal(await page.locator('body[data-ready=true]').count(), 0, 'the page did not start');
  for (const id of ['create-wallet', 'sign-browser', 'sign-servers', 'approve-sign']) {
    assert.ok(await page.locator(`#${id}`).isDisabled(), `#${id} is disabled`);
  }
  assert.equal(await page.evaluate(() => window.__app.store.get('coordinator-key')), sys.coordinatorKey, 'the pinned key is unchanged');
});
