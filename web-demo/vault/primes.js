// The browser party's prime pool (in the vault): the four 1536-bit safe
// primes that aux info needs, generated in Web Workers in parallel as soon as
// the vault opens, sealed in its IndexedDB and used by the first keygen of a
// new party group.
//
// TEST MODE (the vault's own config.json says so, only when `mpc dev` runs
// with --insecure-test-data, AND the vault runs a party-wasm build made for
// tests, `insecureTestBuild()`): the PUBLIC test primes are fetched from the
// vault's origin instead; this is logged loudly and in the console. A
// production build ignores the offer: whoever runs the backend never chooses
// this device's Paillier key.

export class PrimePool {
  constructor({ wasm, store, partyId, config, onProgress, log }) {
    Object.assign(this, { wasm, store, partyId, config, onProgress, log });
    this.ready = null;
    this.stats = null;
  }

  async #storedId() {
    const keys = await this.store.keys();
    const k = keys.map(String).find((x) => x.startsWith('primes:'));
    return k ? k.slice('primes:'.length) : null;
  }

  /** Starts filling the pool unless a sealed prime set is already there. */
  start() {
    this.ready ??= (async () => {
      const have = await this.#storedId();
      if (have) {
        this.onProgress({ state: 'ready', found: 4, note: 'a sealed prime set is ready (kept from an earlier visit)' });
        return have;
      }
      const id = crypto.randomUUID();
      const test = this.config.insecure_test_primes && this.wasm.insecureTestBuild();
      const bytes = test ? await this.#testPrimes() : await this.#generate();
      await this.store.putSecret(this.partyId, 'primes', id, bytes);
      bytes.fill(0);
      return id;
    })();
    return this.ready;
  }

  /** Waits for a prime set; its id is handed to the party worker, which consumes it. */
  async take() {
    const id = await this.start();
    this.ready = null;
    return id;
  }

  async #testPrimes() {
    const msg = 'INSECURE TEST MODE: using the PUBLIC test primes served by mpc dev --insecure-test-data. Never use this for real keys.';
    console.warn(msg);
    this.log(msg);
    const r = await fetch('api/test-primes');
    if (!r.ok) throw new Error('test primes unavailable');
    const { prime_set: hex } = await r.json();
    const bytes = Uint8Array.from(hex.match(/../g), (h) => parseInt(h, 16));
    this.wasm.checkPrimeSet(bytes);
    this.onProgress({ state: 'ready', found: 4, note: 'PUBLIC test primes (test mode)' });
    return bytes;
  }

  #generate() {
    const workers = Math.max(1, Math.min(4, navigator.hardwareConcurrency || 2));
    const started = performance.now();
    const perPrimeMs = [];
    const parts = [];
    let claimed = 0;
    this.log(`generating 4 safe primes in ${workers} Web Workers`);
    this.onProgress({ state: 'running', found: 0, workers, elapsedMs: 0 });
    return new Promise((resolve, reject) => {
      const pool = [];
      const next = (w) => {
        if (claimed < 4) {
          claimed += 1;
          w.postMessage('generate');
        }
      };
      for (let i = 0; i < workers; i++) {
        const w = new Worker(new URL('./prime-worker.js', import.meta.url), { type: 'module' });
        w.onmessage = (ev) => {
          parts.push(ev.data.prime);
          perPrimeMs.push(ev.data.ms);
          const elapsedMs = performance.now() - started;
          this.onProgress({ state: parts.length < 4 ? 'running' : 'checking', found: parts.length, workers, elapsedMs });
          if (parts.length === 4) {
            pool.forEach((x) => x.terminate());
            try {
              const set = this.wasm.primeSetFromParts(parts);
              parts.forEach((p) => p.fill(0));
              this.stats = { workers, perPrimeMs, totalMs: performance.now() - started };
              this.log(`4 safe primes in ${(this.stats.totalMs / 1000).toFixed(1)} s (${workers} workers; per prime ${perPrimeMs.map((m) => (m / 1000).toFixed(1)).join(', ')} s)`);
              this.onProgress({ state: 'ready', found: 4, workers, elapsedMs: this.stats.totalMs });
              resolve(set);
            } catch (e) {
              reject(e);
            }
          } else {
            next(w);
          }
        };
        w.onerror = (e) => reject(new Error(`prime worker failed: ${e.message}`));
        pool.push(w);
        next(w);
      }
    });
  }
}
