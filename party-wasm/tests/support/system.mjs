// Test support: starts `mpc dev` (target/debug/mpc, or $MPC_BIN) on free
// ports in a fresh data directory, and checks signatures independently of
// our code with @noble/curves (verify + public-key recovery from v).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { strict as assert } from 'node:assert';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';

export const ROOT = resolve(new URL('../../..', import.meta.url).pathname);
export const TEST_DATA = join(ROOT, 'party-core/test-data');

/** Headless Chromium flags for this machine (no sandbox as root, no background traffic). */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/**
 * Starts `mpc dev` with `args`; resolves once it printed its addresses.
 * Returns { api, router, routerWs, coordinatorKey, apiKey, demo, vault, stop() }.
 */
export async function startSystem(args = [], { timeoutMs = 120_000 } = {}) {
  const bin = process.env.MPC_BIN ?? join(ROOT, 'target/debug/mpc');
  const dataDir = mkdtempSync(join(tmpdir(), 'mpc-js-'));
  const child = spawn(bin, ['dev', '--data-dir', dataDir, '--api', '127.0.0.1:0', '--router', '127.0.0.1:0', '--demo', ROOT, '--demo-vault', '127.0.0.1:0', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    if (process.env.MPC_LOG) process.stderr.write(d);
  });
  const info = await new Promise((resolvePromise, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`mpc dev did not start:\n${stderr}`)), timeoutMs);
    child.on('exit', (code) => reject(new Error(`mpc dev exited (${code}):\n${stderr}`)));
    child.stdout.on('data', (d) => {
      out += d;
      const get = (label) => out.match(new RegExp(`${label}:\\s+(\\S+)`))?.[1];
      const api = get('API'), router = get('router'), key = get('API key'), ck = get('coordinator key'), demo = get('demo'), vault = get('demo vault');
      // "parties:" is the last line mpc dev prints.
      if (api && router && key && ck && /parties:/.test(out)) {
        clearTimeout(timer);
        resolvePromise({ api, router, apiKey: key, coordinatorKey: ck, demo, vault });
      }
    });
  });
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT');
      await exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  return { ...info, routerWs: `${info.router.replace(/^http/, 'ws')}/ws`, stop };
}

/** A REST client with the API key (test side only). */
export function api(sys) {
  const call = async (method, path, body) => {
    const r = await fetch(`${sys.api}${path}`, {
      method,
      headers: { 'X-API-Key': sys.apiKey, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: r.status, body: await r.json() };
  };
  return {
    get: (path) => call('GET', path),
    post: (path, body) => call('POST', path, body),
    /** Polls a session until it is terminal (or the timeout). */
    async waitSession(id, timeoutMs = 120_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const s = (await call('GET', `/api/v1/mpc/sessions/${id}`)).body;
        if (['completed', 'failed', 'expired'].includes(s.status)) return s;
        assert.ok(Date.now() < deadline, `session ${id} still ${s.status}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}

const strip = (h) => h.replace(/^0x/, '');

/**
 * Checks an ECDSA signature {r, s, v} of a 32-byte hash (hex) against a
 * SEC1 public key (hex) with @noble/curves: it verifies (low-s enforced)
 * and v recovers the same key.
 */
export function assertSignatureValid(sig, hashHex, publicKeyHex) {
  const compact = hexToBytes(strip(sig.r) + strip(sig.s));
  const hash = hexToBytes(strip(hashHex));
  const pk = hexToBytes(strip(publicKeyHex));
  assert.ok(secp256k1.verify(compact, hash, pk, { prehash: false, lowS: true }), 'signature verifies (noble)');
  const recovered = secp256k1.Signature.fromBytes(compact).addRecoveryBit(Number(sig.v)).recoverPublicKey(hash);
  assert.equal(recovered.toHex(true), bytesToHex(secp256k1.Point.fromBytes(pk).toBytes(true)), 'v recovers the account key');
}
