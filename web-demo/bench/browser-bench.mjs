// Benchmark (not run in CI): real prime generation and aux info in headless
// Chromium, then a browser + server signature.
//
//   node web-demo/bench/browser-bench.mjs
//
// Starts `mpc dev` (target/debug/mpc or $MPC_BIN) with the server parties on
// the PUBLIC test primes (so they do not compete for the CPU while the browser
// generates its primes) and opens the demo with ?primes=generate: the browser
// generates its four 1536-bit safe primes in Web Workers
// (navigator.hardwareConcurrency of them, at most 4), then a 2-of-3 keygen
// runs aux info (browser in wasm, servers natively, at the same time) and the
// DKG. Prints one JSON line of timings.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

import { startSystem, CHROMIUM_ARGS, TEST_DATA } from '../../party-wasm/tests/support/system.mjs';

const sys = await startSystem(['--parties', '2', '--insecure-test-data', TEST_DATA]);
const profile = mkdtempSync(join(tmpdir(), 'chromium-bench-'));
const browser = await chromium.launchPersistentContext(profile, { executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_ARGS });
try {
  const page = browser.pages()[0] ?? (await browser.newPage());
  await page.goto(`${sys.demo}?primes=generate`);
  await page.waitForSelector('body[data-ready=true]');
  // The party runs in the vault (its own origin, framed by the page).
  const vault = page.frameLocator('#vault');
  const vaultFrame = page.frames().find((f) => f.url().startsWith(new URL(sys.vault).origin));
  const workers = await page.evaluate(() => navigator.hardwareConcurrency);
  console.error(`generating primes in the browser (${workers} hardware threads)...`);
  await vault.locator('#primes-status[data-state=ready]').waitFor({ timeout: 3_600_000 });
  const primes = await vaultFrame.evaluate(() => window.__vault.pool.stats);
  console.error(`primes: ${JSON.stringify(primes)}; keygen with aux info...`);
  await page.click('#create-wallet');
  await page.waitForSelector('#wallet[data-state=ready]', { timeout: 3_600_000 });
  await page.click('#sign-browser');
  // The vault shows what will be signed; it signs on the user's approval there.
  await vault.locator('#approve-sign').click();
  await page.waitForSelector('#sig-browser[data-state=verified]', { timeout: 600_000 });
  const t = await page.evaluate(() => window.__timings);
  console.log(JSON.stringify({
    host_cpus: cpus().length,
    browser_hardware_concurrency: workers,
    prime_workers: primes.workers,
    primes_total_s: +(primes.totalMs / 1000).toFixed(1),
    per_prime_s: primes.perPrimeMs.map((m) => +(m / 1000).toFixed(1)),
    keygen_total_s: +(t.keygen_ms / 1000).toFixed(1),
    browser_aux_info_stage_s: +(t.aux_info_ms / 1000).toFixed(1),
    browser_server_sign_s: +(t.sign_browser_ms / 1000).toFixed(1),
  }));
} finally {
  await browser.close();
  await sys.stop();
  rmSync(profile, { recursive: true, force: true });
}
