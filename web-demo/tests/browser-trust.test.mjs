// The coordinator key a browser party trusts is pinned on first use in its
// vault's store and shown, never taken afresh from the server it checks:
// headless Chromium opens the demo page (the vault pins and shows the key),
// then the vault's config offers another key (a compromised or swapped
// server) and the vault refuses to take part with `coordinator_key_changed`:
// every button of the page and the vault disabled, the pinned key
// unchanged. No keygen: cheap.
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
  const vault = page.frameLocator('#vault');
  const vaultFrame = () => page.frames().find((f) => f.url().startsWith(sys.vault));
  const key = vault.locator('#coordinator-key');
  assert.equal(await key.getAttribute('data-state'), 'pinned');
  assert.equal(await key.getAttribute('data-key'), sys.coordinatorKey);
  assert.match(await key.textContent(), new RegExp(`^${sys.coordinatorKey} \\(pinned on first use\\)`));
  assert.equal(await vaultFrame().evaluate(() => window.__vault.store.get('coordinator-key')), sys.coordinatorKey, 'pinned in the vault store');

  // A reload with the same key: still trusted, now from the store.
  await page.reload();
  await page.waitForSelector('body[data-ready=true]', { timeout: 60_000 });
  assert.match(await key.textContent(), /\(pinned in this browser\)$/);

  // The server now offers another key: refused, nothing can run.
  const other = randomBytes(32).toString('hex');
  await page.route('**/config.json', async (route) => {
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
  for (const id of ['create-wallet', 'sign-browser', 'sign-servers']) {
    assert.ok(await page.locator(`#${id}`).isDisabled(), `#${id} is disabled`);
  }
  for (const id of ['cancel-sign', 'export', 'import', 'passphrase']) {
    assert.ok(await vault.locator(`#${id}`).isDisabled(), `the vault's #${id} is disabled`);
  }
  assert.equal(await vaultFrame().evaluate(() => window.__vault.store.get('coordinator-key')), sys.coordinatorKey, 'the pinned key is unchanged');
});
