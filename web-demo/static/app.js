// The demo page: a browser party (party-wasm in Web Workers) co-signs with
// the server parties of `mpc dev`. The page talks to the demo backend
// (/demo/api/..., which holds the API key) to create sessions; the party
// worker talks to the coordinator (device join, signed reports) and the
// router itself.
//
// Trust: the coordinator key the party checks descriptors with is pinned on
// first use in this browser's store (or set as a page constant in
// trust.js) and shown; a different key offered later is refused. A signing
// runs only after the user saw the message, digest and hash and clicked
// "Approve and sign"; what was shown is what the party is told to accept.
import { loadWasm } from './wasm.js';
import { COORDINATOR_PUBLIC_KEY } from './trust.js';
import { PartyStore } from './store.js';
import { PrimePool } from './primes.js';

const $ = (id) => document.getElementById(id);
const timings = (window.__timings = {});

function log(message) {
  const line = `${new Date().toISOString().slice(11, 19)}  ${message}\n`;
  $('log').textContent += line;
}

function setStatus(el, state, text) {
  el.dataset.state = state;
  if (text !== undefined) el.textContent = text;
}

async function demoApi(method, path, body) {
  const r = await fetch(`api/${path}`, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await r.json().catch(() => null);
  if (!r.ok) throw new Error(`${json?.code ?? r.status}: ${json?.error ?? 'request failed'}`);
  return json;
}

/** Polls a session until it is terminal, reporting each view. */
async function waitSession(id, onView = () => {}) {
  for (;;) {
    const s = await demoApi('GET', `sessions/${id}`);
    onView(s);
    if (['completed', 'failed', 'expired'].includes(s.status)) return s;
    await new Promise((r) => setTimeout(r, 250));
  }
}

function partiesLine(s) {
  return (s.parties ?? [])
    .map((p) => {
      const st = p.done ? 'done' : p.progress?.stage ? `${p.progress.stage}${p.progress.round ? ` r${p.progress.round}` : ''}` : p.joined ? 'joined' : 'waiting';
      return `${p.party_id}: ${st}`;
    })
    .join(' · ');
}

/** A rough, honest progress figure for a keygen: stage and round. */
function keygenPercent(p) {
  if (!p) return 0;
  if (p.stage === 'primes') return 5;
  if (p.stage === 'joined') return 10;
  if (p.stage === 'aux_info') return Math.min(70, 10 + p.round * 15);
  if (p.stage === 'keygen') return Math.min(95, 75 + p.round * 4);
  if (p.stage === 'sign') return Math.min(95, 10 + p.round * 18);
  if (p.stage === 'done') return 100;
  return 0;
}

/** An Error with a stable code (shown and asserted by the tests). */
function coded(code, message) {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

/** The EIP-191 `personal_sign` bytes of a message: what its Keccak-256 hash signs. */
function eip191Bytes(message) {
  const m = new TextEncoder().encode(message);
  const prefix = new TextEncoder().encode(`\x19Ethereum Signed Message:\n${m.length}`);
  const out = new Uint8Array(prefix.length + m.length);
  out.set(prefix, 0);
  out.set(m, prefix.length);
  return out;
}

class App {
  async init() {
    this.config = await demoApi('GET', 'config');
    this.wasm = await loadWasm();
    this.store = await PartyStore.open(this.wasm);
    await this.pinCoordinatorKey();
    this.partyId = await this.store.get('party-id');
    if (!this.partyId) {
      const identity = this.wasm.Identity.generate();
      this.partyId = `browser-${identity.publicKey().ed25519.slice(0, 16)}`;
      const seed = identity.seed();
      await this.store.putSecret(this.partyId, 'identity', '', seed);
      seed.fill(0);
      await this.store.put('party-id', this.partyId);
      log(`new browser party ${this.partyId} (identity sealed in IndexedDB)`);
    } else {
      log(`browser party ${this.partyId} loaded from IndexedDB`);
    }
    $('party-id').textContent = this.partyId;
    // Test mode needs both the server's offer and a wasm build made for
    // tests: a production page ignores a server that asks for it.
    const testBuild = this.wasm.insecureTestBuild();
    const offered = this.config.insecure_test_primes || this.config.insecure_test_aux;
    this.config = {
      ...this.config,
      insecure_test_primes: Boolean(this.config.insecure_test_primes && testBuild),
      insecure_test_aux: Boolean(this.config.insecure_test_aux && testBuild),
    };
    if (offered && !testBuild) {
      log('the server offers PUBLIC test data, but this page is not a test build: ignored (this browser makes its own primes and aux info)');
    } else if (offered) {
      $('test-mode').hidden = false;
      console.warn('INSECURE TEST MODE: this demo uses PUBLIC test data (primes or aux info)');
    }
    // ?primes=generate: generate real primes even when the server is in
    // test mode (the browser benchmark measures prime generation this way).
    const forceGenerate = new URLSearchParams(location.search).get('primes') === 'generate';
    if (forceGenerate) log('?primes=generate: this browser generates its own primes');
    this.pool = new PrimePool({
      wasm: this.wasm,
      store: this.store,
      partyId: this.partyId,
      config: { ...this.config, insecure_test_primes: this.config.insecure_test_primes && !forceGenerate },
      log,
      onProgress: (p) => this.showPrimes(p),
    });
    this.wallets = (await this.store.get('wallets')) ?? [];
    // Primes are needed only for a new party group: start at once, before
    // the user asks for a wallet, unless this browser already has one.
    if (this.wallets.length === 0) {
      this.pool.start().catch((e) => log(`prime generation failed: ${e.message}`));
    } else {
      setStatus($('primes-status'), 'not-needed', 'not needed: aux info for the wallet group is stored');
    }
    this.renderWallet();
    $('create-wallet').onclick = () => this.guard(() => this.createWallet());
    $('sign-browser').onclick = () => this.review('browser');
    $('sign-servers').onclick = () => this.review('servers');
    $('approve-sign').onclick = () => {
      const approved = this.pending;
      this.closeReview();
      if (approved) this.guard(() => this.sign(approved));
    };
    $('cancel-sign').onclick = () => {
      this.closeReview();
      log('signing cancelled: nothing was signed');
    };
    $('export').onclick = () => this.guard(() => this.exportBackup());
    $('import').onchange = (ev) => this.guard(() => this.importBackup(ev.target.files[0]));
    document.body.dataset.ready = 'true';
  }

  /**
   * The coordinator key this party trusts: the page constant, else the one
   * pinned in this browser's store, else (first use) the one the demo
   * backend offers, pinned now. Shown on the page. A different key offered
   * later is refused: the page stops, nothing runs with it.
   */
  async pinCoordinatorKey() {
    const el = $('coordinator-key');
    const offered = String(this.config.coordinator_public_key ?? '').toLowerCase();
    let pinned = await this.store.get('coordinator-key');
    let how = 'pinned in this browser';
    const refuse = (text, error) => {
      el.dataset.state = 'changed';
      el.textContent = text;
      document.querySelectorAll('button').forEach((b) => (b.disabled = true));
      throw error;
    };
    if (COORDINATOR_PUBLIC_KEY) {
      const configured = COORDINATOR_PUBLIC_KEY.toLowerCase();
      if (pinned && pinned !== configured) {
        refuse(`${pinned} (pinned) ≠ ${configured} (page constant)`, coded('coordinator_key_changed', 'the page constant names another coordinator key than the one pinned in this browser'));
      }
      pinned = configured;
      await this.store.put('coordinator-key', pinned);
      how = 'configured with the page';
    } else if (!pinned) {
      if (!/^[0-9a-f]{64}$/.test(offered)) throw coded('no_coordinator_key', 'the demo backend offers no valid coordinator key to pin');
      pinned = offered;
      await this.store.put('coordinator-key', pinned);
      how = 'pinned on first use';
      log(`coordinator key ${pinned} pinned on first use: this browser checks every session with it from now on`);
    }
    if (offered && offered !== pinned) {
      refuse(
        `${pinned} (${how}) — the server now offers ${offered}`,
        coded('coordinator_key_changed', `the server offers coordinator key ${offered}, not the pinned ${pinned}: this browser refuses to take part (clear this site's data only if the coordinator's key was rotated on purpose)`),
      );
    }
    el.dataset.state = 'pinned';
    el.dataset.key = pinned;
    el.textContent = `${pinned} (${how})`;
  }

  /** Shows what a signing would sign; it runs only on "Approve and sign". */
  review(signers) {
    const w = this.wallets.at(-1);
    if (!w) return;
    const message = $('message').value;
    const hash = this.wasm.personalMessageHash(message);
    // Exactly what is shown: the party refuses a session for anything else.
    this.pending = { signers, message, hash, approved: { message: eip191Bytes(message), digest: 'keccak256' } };
    $('review-signers').textContent = signers === 'browser' ? 'this browser + server-party-1' : 'server-party-1 + server-party-2 (no browser)';
    $('review-message').textContent = message;
    $('review-digest').textContent = 'EIP-191 personal_sign: Keccak-256 of "\\x19Ethereum Signed Message:\\n" + length + message';
    $('review-hash').textContent = `0x${hash}`;
    $('review').dataset.hash = hash;
    $('review').hidden = false;
    log(`review: ${signers} signing of 0x${hash}, waiting for approval`);
  }

  closeReview() {
    this.pending = null;
    $('review').hidden = true;
  }

  async guard(fn) {
    document.querySelectorAll('button').forEach((b) => (b.disabled = true));
    try {
      await fn();
    } catch (e) {
      log(`error: ${e.message}`);
      setStatus($('status'), 'error', e.message);
    } finally {
      document.querySelectorAll('button').forEach((b) => (b.disabled = false));
      this.renderWallet();
    }
  }

  showPrimes(p) {
    $('primes-bar').value = p.found;
    const secs = p.elapsedMs !== undefined ? ` — ${(p.elapsedMs / 1000).toFixed(0)} s` : '';
    const text = p.note ?? (p.state === 'checking' ? 'checking the 4 primes' : `${p.found}/4 safe primes found (${p.workers} workers)${secs}`);
    setStatus($('primes-status'), p.state, p.state === 'ready' && !p.note ? `ready: 4 primes sealed${secs}` : text);
    if (p.state === 'running' && !this.primeTimer) {
      const t0 = performance.now() - (p.elapsedMs ?? 0);
      this.primeTimer = setInterval(() => {
        if ($('primes-status').dataset.state !== 'running') return clearInterval(this.primeTimer);
        $('primes-status').textContent = `${$('primes-bar').value}/4 safe primes found (${p.workers} workers) — ${((performance.now() - t0) / 1000).toFixed(0)} s`;
      }, 1000);
    }
  }

  renderWallet() {
    const w = this.wallets.at(-1);
    $('wallet').dataset.state = w ? 'ready' : 'none';
    $('address').textContent = w?.address ?? '—';
    $('public-key').textContent = w?.public_key ?? '—';
    $('account-id').textContent = w?.account_id ?? '—';
    $('sign-browser').disabled = !w;
    $('sign-servers').disabled = !w;
  }

  /** Runs this browser's side of a session in a Web Worker. */
  runParty(sessionId, joinToken, onProgress, approved = undefined) {
    return new Promise((resolve, reject) => {
      const worker = new Worker(new URL('./party-worker.js', import.meta.url), { type: 'module' });
      worker.onmessage = async (ev) => {
        const m = ev.data;
        if (m.type === 'progress') onProgress(m.progress, m.ms);
        else if (m.type === 'log') log(m.message);
        else if (m.type === 'need-primes') {
          log('this keygen generates aux info: waiting for the prime pool');
          const id = await this.pool.take();
          worker.postMessage({ type: 'primes-ready', id });
        } else if (m.type === 'done') {
          worker.terminate();
          resolve(m);
        } else if (m.type === 'error') {
          worker.terminate();
          reject(Object.assign(new Error(m.message), { code: m.code }));
        }
      };
      worker.onerror = (e) => {
        worker.terminate();
        reject(new Error(`party worker failed: ${e.message}`));
      };
      worker.postMessage({ config: this.config, sessionId, joinToken, coordinatorUrl: location.origin, approved });
    });
  }

  async createWallet() {
    setStatus($('status'), 'busy', 'creating a 2-of-3 wallet: this browser + two server parties');
    const bar = $('keygen-bar');
    bar.value = 0;
    const created = await demoApi('POST', 'wallets', { party_id: this.partyId });
    log(`keygen session ${created.session_id} created`);
    const started = performance.now();
    let auxStarted = null;
    const mine = this.runParty(created.session_id, created.join_tokens[this.partyId], (p, ms) => {
      if (p.stage === 'aux_info' && auxStarted === null) auxStarted = ms;
      if (p.stage === 'keygen' && auxStarted !== null && timings.aux_info_ms === undefined) timings.aux_info_ms = ms - auxStarted;
      bar.value = keygenPercent(p);
      $('keygen-status').textContent = `this browser: ${p.stage}${p.round ? ` round ${p.round}` : ''}`;
    });
    const servers = waitSession(created.session_id, (s) => ($('keygen-parties').textContent = partiesLine(s)));
    const { result } = await mine;
    const session = await servers;
    if (session.status !== 'completed') throw new Error(`keygen ${session.status}: ${session.error?.reason ?? ''}`);
    const account = await demoApi('GET', `accounts/${session.result.account_id}`);
    if (account.public_key !== result.public_key) throw new Error('the coordinator and this browser disagree on the public key');
    timings.keygen_ms = performance.now() - started;
    bar.value = 100;
    this.wallets.push({ account_id: account.account_id, address: account.address, public_key: account.public_key });
    await this.store.put('wallets', this.wallets);
    $('keygen-status').textContent = `done in ${(timings.keygen_ms / 1000).toFixed(1)} s${timings.aux_info_ms ? ` (aux info ${(timings.aux_info_ms / 1000).toFixed(1)} s)` : ''}`;
    setStatus($('status'), 'ok', `wallet ${account.address} created`);
    log(`wallet ${account.address} (account ${account.account_id})`);
  }

  /** Runs a signing the user approved (`review`): `{signers, message, hash, approved}`. */
  async sign({ signers, message, hash, approved }) {
    const w = this.wallets.at(-1);
    const out = $(signers === 'browser' ? 'sig-browser' : 'sig-servers');
    setStatus(out, 'busy', signers === 'browser' ? 'signing: this browser + server-party-1…' : 'signing: server-party-1 + server-party-2…');
    const created = await demoApi('POST', 'sign', {
      account_id: w.account_id,
      message_hash: `0x${hash}`,
      signers,
      party_id: signers === 'browser' ? this.partyId : undefined,
    });
    out.dataset.sessionId = created.session_id;
    const started = performance.now();
    if (signers === 'browser') log(`signing session ${created.session_id}: this browser accepts only 0x${hash}`);
    const mine =
      signers === 'browser'
        ? await this.runParty(created.session_id, created.join_tokens[this.partyId], () => {}, approved).then(
            (r) => ({ result: r.result }),
            (error) => ({ error }),
          )
        : null;
    if (mine?.error) {
      out.dataset.state = 'refused';
      out.dataset.code = mine.error.code ?? '';
      out.textContent = `this browser did not sign: ${mine.error.message}`;
      throw mine.error;
    }
    const session = await waitSession(created.session_id);
    const browserResult = mine ? mine.result : null;
    const ms = performance.now() - started;
    if (session.status !== 'completed') throw new Error(`signing ${session.status}: ${session.error?.reason ?? ''}`);
    const sig = session.result.signature;
    const ok = this.wasm.verifySignature(hash, w.public_key, sig.r, sig.s, sig.v) && (!browserResult || `0x${browserResult.r}` === sig.r);
    timings[`sign_${signers}_ms`] = ms;
    out.dataset.state = ok ? 'verified' : 'failed';
    out.dataset.r = sig.r;
    out.dataset.s = sig.s;
    out.dataset.v = String(sig.v);
    out.dataset.hash = hash;
    out.dataset.message = message;
    out.innerHTML = '';
    const rows = [
      ['signers', signers === 'browser' ? `this browser + server-party-1` : 'server-party-1 + server-party-2 (no browser)'],
      ['EIP-191 hash', `0x${hash}`],
      ['r', sig.r],
      ['s', sig.s],
      ['v', String(sig.v)],
      ['check', ok ? `✔ verifies under ${w.address}'s key and v recovers it` : '✘ does not verify'],
      ['time', `${(ms / 1000).toFixed(1)} s`],
    ];
    for (const [k, v] of rows) {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      out.append(dt, dd);
    }
    log(`${signers === 'browser' ? 'browser + server' : 'servers-only'} signature ${ok ? 'verified' : 'FAILED'} in ${(ms / 1000).toFixed(1)} s`);
    setStatus($('status'), ok ? 'ok' : 'error', ok ? 'signature verified' : 'signature failed');
  }

  async exportBackup() {
    const pass = $('passphrase').value;
    if (pass.length < 12) throw new Error('use a passphrase of at least 12 characters');
    const backup = await this.store.exportBackup(this.partyId, pass);
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([JSON.stringify(backup, null, 1)], { type: 'application/json' }));
    a.download = `${this.partyId}-backup.json`;
    a.click();
    log('encrypted backup exported (PBKDF2-SHA256, 600 000 iterations, AES-256-GCM)');
  }

  async importBackup(file) {
    if (!file) return;
    const backup = JSON.parse(await file.text());
    this.partyId = await this.store.importBackup(backup, $('passphrase').value);
    this.wallets = (await this.store.get('wallets')) ?? [];
    $('party-id').textContent = this.partyId;
    log(`backup of ${this.partyId} imported and re-sealed under this browser's key`);
  }
}

const app = new App();
window.__app = app;
app.init().catch((e) => {
  log(`start-up failed: ${e.message}`);
  setStatus($('status'), 'error', e.message);
});
