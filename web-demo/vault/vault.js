// The browser party's vault: served on an origin of its own (`mpc dev
// --demo` serves it on a second loopback port) and framed by the demo page.
// Everything secret of this party lives here: the IndexedDB store, its
// non-extractable AES key, the identity seed, the prime pool, the party
// workers, the passphrase and the backup file. The page's scripts cannot
// reach any of it (another origin's storage and globals), and the page
// talks to the vault only through `postMessage`, with this fixed set of
// requests, each `{ id, type, ... }`:
//
//   init   { primes?: 'generate' }          → { party_id, coordinator_key, how, test_mode, wallets }
//   keygen { session_id, join_token }       → { account_id, public_key, address }
//   review { message, signers, account_id } → { hash }  once the user approved it HERE
//   sign   { session_id, join_token }       → { r, s, v }  only the signing last approved here,
//                                             once, for that account, within 5 minutes
//   verify { hash, public_key, r, s, v }    → boolean   (public data only)
//
// Answers are `{ id, type: 'result', result }`, `{ id, type: 'error', code,
// message }` or, while a request runs, `{ id, type: 'event', kind:
// 'progress' | 'log', ... }`; unsolicited `{ type: 'event', kind: 'log' |
// 'wallets' }`. Nothing the vault posts carries a secret. Messages from any
// window but the parent, or from an origin the vault's own config does not
// name, are ignored; answers go to the asking origin only, never '*'.
//
// What the vault trusts comes from its own origin (`config.json`): the
// parent origins, the coordinator key it pins on first use, the router,
// the test-mode offer (taken only by a wasm build made for tests). Backup
// export and import run from the vault's own controls.
import { loadWasm } from './wasm.js';
import { COORDINATOR_PUBLIC_KEY } from './trust.js';
import { PartyStore } from './store.js';
import { PrimePool } from './primes.js';

const $ = (id) => document.getElementById(id);
const ID = /^[0-9A-Za-z-]{1,64}$/;
const MAX_MESSAGE = 64 * 1024;
const MAX_TOKEN = 1024;
/**
 * How long after a review opens (and the tab is visible) its approve button
 * is armed: a click meant for the page just before the review appeared does
 * not land on it. The page decides where the frame is drawn; a page that
 * hides or covers the vault can still redress a later click
 * (docs/devices.md, "Clickjacking").
 */
const APPROVE_ARM_MS = 600;
/** How long an approval stays good for its signing. */
const APPROVAL_TTL_MS = 5 * 60_000;

/** An Error with a stable code. */
function coded(code, message) {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

function setStatus(state, text) {
  $('vault-status').dataset.state = state;
  $('vault-status').textContent = text;
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

function sessionArgs(m) {
  if (typeof m.session_id !== 'string' || !ID.test(m.session_id)) throw coded('invalid_request', 'session_id must be an id');
  if (typeof m.join_token !== 'string' || m.join_token.length === 0 || m.join_token.length > MAX_TOKEN) {
    throw coded('invalid_request', 'join_token must be a token');
  }
  return [m.session_id, m.join_token];
}

class Vault {
  constructor() {
    this.parentOrigin = null;
    this.signing = null; // the one approved signing: { hash, approved }
    this.reviewing = null; // { resolve, reject } of the open review
    this.reviews = 0; // the open review's number
    this.config = fetch('config.json').then((r) => {
      if (!r.ok) throw new Error(`vault config: ${r.status}`);
      return r.json();
    });
    this.ready = this.#start();
    this.ready.catch((e) => setStatus('error', e.message));
  }

  /** Posts an unsolicited event to the page (once it has spoken). */
  event(body) {
    if (this.parentOrigin) window.parent.postMessage({ type: 'event', ...body }, this.parentOrigin);
  }

  log(message) {
    this.event({ kind: 'log', message });
  }

  async #start() {
    $('vault-origin').textContent = location.origin;
    if (window.parent === window) throw coded('not_framed', 'the vault runs only inside the demo page');
    const config = await this.config;
    this.routerWsUrl = config.router_ws_url;
    this.wasm = await loadWasm();
    this.store = await PartyStore.open(this.wasm);
    await this.#pinCoordinatorKey(config);
    this.partyId = await this.store.get('party-id');
    if (!this.partyId) {
      const identity = this.wasm.Identity.generate();
      this.partyId = `browser-${identity.publicKey().ed25519.slice(0, 16)}`;
      const seed = identity.seed();
      await this.store.putSecret(this.partyId, 'identity', '', seed);
      seed.fill(0);
      await this.store.put('party-id', this.partyId);
      this.created = true;
    }
    $('party-id').textContent = this.partyId;
    // Test mode needs both the server's offer and a wasm build made for
    // tests: a production vault ignores a server that asks for it.
    const testBuild = this.wasm.insecureTestBuild();
    this.testMode = {
      offered: Boolean(config.insecure_test_primes || config.insecure_test_aux),
      primes: Boolean(config.insecure_test_primes && testBuild),
      aux: Boolean(config.insecure_test_aux && testBuild),
    };
    this.wallets = (await this.store.get('wallets')) ?? [];
    $('approve-sign').onclick = () => this.#decide(true);
    $('cancel-sign').onclick = () => this.#decide(false);
    $('export').onclick = () => this.#guard(() => this.exportBackup());
    $('import').onchange = (ev) => this.#guard(() => this.importBackup(ev.target.files[0]));
    document.body.dataset.ready = 'true';
  }

  /**
   * The coordinator key this party trusts: the page constant (trust.js),
   * else the one pinned in this vault's store, else (first use) the one the
   * vault's own config offers, pinned now. A different key offered later
   * is refused: the vault takes no request.
   */
  async #pinCoordinatorKey(config) {
    const el = $('coordinator-key');
    const offered = String(config.coordinator_public_key ?? '').toLowerCase();
    let pinned = await this.store.get('coordinator-key');
    this.how = 'pinned in this browser';
    const refuse = (text, error) => {
      el.dataset.state = 'changed';
      el.textContent = text;
      document.querySelectorAll('button, input').forEach((b) => (b.disabled = true));
      throw error;
    };
    if (COORDINATOR_PUBLIC_KEY) {
      const configured = COORDINATOR_PUBLIC_KEY.toLowerCase();
      if (pinned && pinned !== configured) {
        refuse(`${pinned} (pinned) ≠ ${configured} (page constant)`, coded('coordinator_key_changed', 'the vault constant names another coordinator key than the one pinned in this browser'));
      }
      pinned = configured;
      await this.store.put('coordinator-key', pinned);
      this.how = 'configured with the vault';
    } else if (!pinned) {
      if (!/^[0-9a-f]{64}$/.test(offered)) throw coded('no_coordinator_key', 'the vault is offered no valid coordinator key to pin');
      pinned = offered;
      await this.store.put('coordinator-key', pinned);
      this.how = 'pinned on first use';
    }
    if (offered && offered !== pinned) {
      refuse(
        `${pinned} (${this.how}) — the server now offers ${offered}`,
        coded('coordinator_key_changed', `the server offers coordinator key ${offered}, not the pinned ${pinned}: this browser refuses to take part (clear this site's data only if the coordinator's key was rotated on purpose)`),
      );
    }
    el.dataset.state = 'pinned';
    el.dataset.key = pinned;
    el.textContent = `${pinned} (${this.how})`;
    this.coordinatorKey = pinned;
  }

  /** One message from the page. */
  async onMessage(ev) {
    if (ev.source !== window.parent || window.parent === window) return;
    const config = await this.config.catch(() => null);
    if (!config || !Array.isArray(config.parent_origins) || !config.parent_origins.includes(ev.origin)) return;
    const m = ev.data;
    const id = Number.isSafeInteger(m?.id) ? m.id : null;
    const reply = (body) => window.parent.postMessage({ ...body, id }, ev.origin);
    try {
      const handler = id !== null && typeof m.type === 'string' && Object.hasOwn(HANDLERS, m.type) ? HANDLERS[m.type] : null;
      if (!handler) throw coded('unknown_message', 'the vault takes init, keygen, review, sign and verify only');
      await this.ready;
      this.parentOrigin ??= ev.origin;
      const result = await handler.call(this, m, (event) => reply({ type: 'event', ...event }));
      reply({ type: 'result', result });
    } catch (e) {
      reply({ type: 'error', code: e.code ?? 'vault_error', message: String(e.message ?? e) });
    }
  }

  /** The prime pool of this party (primes are sealed under its party id). */
  #newPool() {
    return new PrimePool({
      wasm: this.wasm,
      store: this.store,
      partyId: this.partyId,
      config: { insecure_test_primes: this.testMode.primes && !this.forceGenerate },
      log: (message) => this.log(message),
      onProgress: (p) => this.#showPrimes(p),
    });
  }

  async init(m) {
    if (this.created) this.log(`new browser party ${this.partyId} (identity sealed in the vault)`);
    this.created = false;
    if (this.testMode.offered && !(this.testMode.primes || this.testMode.aux)) {
      this.log('the server offers PUBLIC test data, but this vault is not a test build: ignored (this browser makes its own primes and aux info)');
    } else if (this.testMode.offered) {
      console.warn('INSECURE TEST MODE: this vault uses PUBLIC test data (primes or aux info)');
    }
    // ?primes=generate on the page: real primes even in test mode (the
    // browser benchmark measures prime generation this way).
    this.forceGenerate = m.primes === 'generate';
    this.pool ??= this.#newPool();
    // Primes are needed only for a new party group: start at once, unless
    // this party already has a wallet.
    if (this.wallets.length === 0) {
      this.pool.start().catch((e) => this.log(`prime generation failed: ${e.message}`));
    } else {
      $('primes-status').dataset.state = 'not-needed';
      $('primes-status').textContent = 'not needed: aux info for the wallet group is stored';
    }
    return {
      party_id: this.partyId,
      coordinator_key: this.coordinatorKey,
      how: this.how,
      test_mode: this.testMode.primes || this.testMode.aux,
      wallets: this.wallets,
    };
  }

  async keygen(m, onEvent) {
    const [sessionId, joinToken] = sessionArgs(m);
    const { info, result } = await this.runParty({
      sessionId,
      joinToken,
      kind: 'keygen',
      onProgress: (progress, ms) => onEvent({ kind: 'progress', progress, ms }),
      onEvent,
    });
    if (result.kind !== 'keygen') throw coded('unexpected_result', 'the session was not a keygen');
    // The account id is the verified descriptor's session id (not the page's spelling of it).
    const wallet = { account_id: info.session_id, public_key: result.public_key, address: result.address };
    this.wallets.push(wallet);
    await this.store.put('wallets', this.wallets);
    return wallet;
  }

  /** Shows a signing for review; resolves once the user approved it here. */
  async review(m) {
    if (typeof m.message !== 'string' || m.message.length > MAX_MESSAGE) throw coded('invalid_request', 'message must be a string of at most 64 KiB');
    if (m.signers !== 'browser' && m.signers !== 'servers') throw coded('invalid_request', 'signers must be "browser" or "servers"');
    const wallet = this.wallets.find((w) => w.account_id === m.account_id);
    if (m.signers === 'browser' && !wallet) throw coded('unknown_account', 'this party holds no share of that account');
    this.reviewing?.reject(coded('cancelled', 'another signing was put up for review'));
    this.signing = null;
    const number = ++this.reviews;
    const hash = this.wasm.personalMessageHash(m.message);
    $('review-signers').textContent = m.signers === 'browser' ? 'this browser + server-party-1' : 'server-party-1 + server-party-2 (no browser)';
    $('review-account').textContent = wallet ? `${wallet.address} (account ${wallet.account_id})` : String(m.account_id ?? '—');
    $('review-message').textContent = m.message;
    $('review-digest').textContent = 'EIP-191 personal_sign: Keccak-256 of "\\x19Ethereum Signed Message:\\n" + length + message';
    $('review-hash').textContent = `0x${hash}`;
    $('review').dataset.hash = hash;
    $('review').hidden = false;
    const disarm = this.#arm($('approve-sign'));
    try {
      await new Promise((resolve, reject) => (this.reviewing = { resolve, reject }));
    } finally {
      disarm();
      // A later review replaced this one: its panel and its promise stay.
      if (this.reviews === number) {
        this.reviewing = null;
        $('review').hidden = true;
      }
    }
    // Exactly what was shown: this party refuses a session for anything
    // else, for another account, or after the approval's time.
    if (m.signers === 'browser') {
      this.signing = {
        hash,
        account_id: wallet.account_id,
        expires: Date.now() + APPROVAL_TTL_MS,
        approved: { message: eip191Bytes(m.message), digest: 'keccak256' },
      };
    }
    this.log(`approved in the vault: ${m.signers} signing of 0x${hash}`);
    return { hash };
  }

  /**
   * Arms `button` APPROVE_ARM_MS after the review opened, and disarms it
   * whenever this tab is hidden (see APPROVE_ARM_MS). Returns the function
   * that ends the watch (and disarms).
   */
  #arm(button) {
    button.disabled = true;
    let timer = null;
    const start = () => {
      timer ??= setTimeout(() => (button.disabled = false), APPROVE_ARM_MS);
    };
    const stop = () => {
      clearTimeout(timer);
      timer = null;
      button.disabled = true;
    };
    const onVisibility = () => (document.visibilityState === 'visible' ? start() : stop());
    document.addEventListener('visibilitychange', onVisibility);
    onVisibility();
    return () => {
      stop();
      document.removeEventListener('visibilitychange', onVisibility);
    };
  }

  #decide(approved) {
    if (!this.reviewing) return;
    if (approved) this.reviewing.resolve();
    else this.reviewing.reject(coded('cancelled', 'the signing was cancelled in the vault: nothing was signed'));
  }

  /** Runs the signing last approved here (once). */
  async sign(m, onEvent) {
    const [sessionId, joinToken] = sessionArgs(m);
    const signing = this.signing;
    this.signing = null;
    if (!signing) throw coded('not_approved', 'no signing was approved in the vault');
    if (Date.now() > signing.expires) throw coded('not_approved', 'the approval expired: review the signing again');
    this.log(`signing session ${sessionId}: this browser accepts only 0x${signing.hash}`);
    const { result } = await this.runParty({
      sessionId,
      joinToken,
      kind: 'sign',
      approved: signing.approved,
      accountId: signing.account_id,
      onProgress: (progress, ms) => onEvent({ kind: 'progress', progress, ms }),
      onEvent,
    });
    if (result.kind !== 'signature') throw coded('unexpected_result', 'the session was not a signing');
    return { r: result.r, s: result.s, v: result.v };
  }

  verify(m) {
    const { hash, public_key: publicKey, r, s, v } = m;
    if (![hash, publicKey, r, s].every((x) => typeof x === 'string' && x.length <= 200) || !Number.isInteger(v)) {
      throw coded('invalid_request', 'hash, public_key, r, s (hex) and v (integer)');
    }
    return this.wasm.verifySignature(hash, publicKey, r, s, v);
  }

  /**
   * Runs this party's side of a session of `kind` (`keygen` | `sign`) in a
   * Web Worker; a signing needs `approved` and `accountId`.
   */
  runParty({ sessionId, joinToken, kind, approved, accountId, onProgress = () => {}, onEvent = () => {} }) {
    return new Promise((resolve, reject) => {
      const worker = new Worker(new URL('./party-worker.js', import.meta.url), { type: 'module' });
      worker.onmessage = async (ev) => {
        const w = ev.data;
        if (w.type === 'progress') onProgress(w.progress, w.ms);
        else if (w.type === 'log') onEvent({ kind: 'log', message: w.message });
        else if (w.type === 'need-primes') {
          onEvent({ kind: 'log', message: 'this keygen generates aux info: waiting for the prime pool' });
          const id = await this.pool.take();
          worker.postMessage({ type: 'primes-ready', id });
        } else if (w.type === 'done') {
          worker.terminate();
          resolve(w);
        } else if (w.type === 'error') {
          worker.terminate();
          reject(Object.assign(new Error(w.message), { code: w.code }));
        }
      };
      worker.onerror = (e) => {
        worker.terminate();
        reject(new Error(`party worker failed: ${e.message}`));
      };
      const config = this.#workerConfig();
      worker.postMessage({ config, sessionId, joinToken, coordinatorUrl: location.origin, approved, kind, accountId });
    });
  }

  #workerConfig() {
    return { router_ws_url: this.routerWsUrl, insecure_test_aux: this.testMode.aux };
  }

  #showPrimes(p) {
    $('primes-bar').value = p.found;
    const secs = p.elapsedMs !== undefined ? ` — ${(p.elapsedMs / 1000).toFixed(0)} s` : '';
    const text = p.note ?? (p.state === 'checking' ? 'checking the 4 primes' : `${p.found}/4 safe primes found (${p.workers} workers)${secs}`);
    $('primes-status').dataset.state = p.state;
    $('primes-status').textContent = p.state === 'ready' && !p.note ? `ready: 4 primes sealed${secs}` : text;
  }

  async #guard(fn) {
    try {
      await this.ready;
      await fn();
    } catch (e) {
      setStatus('error', e.message);
    }
  }

  async exportBackup() {
    const pass = $('passphrase').value;
    if (pass.length < 12) throw new Error('use a passphrase of at least 12 characters');
    const backup = await this.store.exportBackup(this.partyId, pass);
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([JSON.stringify(backup, null, 1)], { type: 'application/json' }));
    a.download = `${this.partyId}-backup.json`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
    setStatus('ok', 'encrypted backup exported');
    this.log('encrypted backup exported from the vault (PBKDF2-SHA256, 600 000 iterations, AES-256-GCM)');
  }

  async importBackup(file) {
    if (!file) return;
    const backup = JSON.parse(await file.text());
    this.partyId = await this.store.importBackup(backup, $('passphrase').value);
    this.wallets = (await this.store.get('wallets')) ?? [];
    this.signing = null;
    // Primes are sealed under the party id: a pool of the imported party.
    this.pool = this.#newPool();
    $('party-id').textContent = this.partyId;
    setStatus('ok', `backup of ${this.partyId} imported`);
    this.log(`backup of ${this.partyId} imported and re-sealed under this vault's key`);
    this.event({ kind: 'wallets', party_id: this.partyId, wallets: this.wallets });
  }
}

/** The requests the vault takes, and nothing else. */
const HANDLERS = {
  init: Vault.prototype.init,
  keygen: Vault.prototype.keygen,
  review: Vault.prototype.review,
  sign: Vault.prototype.sign,
  verify: Vault.prototype.verify,
};

const vault = new Vault();
window.addEventListener('message', (ev) => vault.onMessage(ev));
// For the tests (same origin only: the page cannot reach it).
window.__vault = vault;
