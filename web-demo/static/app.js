// The demo page: a browser party co-signs with the server parties of `mpc
// dev`. The page talks to the demo backend (/demo/api/..., which holds the
// API key) to create sessions. The party itself runs in the vault, an
// iframe on an origin of its own (web-demo/vault/): its store, keys and
// workers are out of this page's reach, and the page asks it for work with
// the vault's fixed set of messages (init, keygen, review, sign, verify).
// A signing runs only after the user approved it in the vault; what the
// vault showed is what its party accepts.
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

/**
 * The page's side of the vault: requests `{ id, type, ... }` posted to the
 * vault's origin only; answers taken only from that frame and origin.
 */
class VaultClient {
  constructor(frame, origin) {
    this.frame = frame;
    this.origin = origin;
    this.next = 1;
    this.calls = new Map();
    this.onEvent = () => {};
    window.addEventListener('message', (ev) => {
      if (ev.source !== frame.contentWindow || ev.origin !== origin) return;
      const m = ev.data ?? {};
      const call = this.calls.get(m.id);
      if (m.type === 'event') return call ? call.onEvent(m) : this.onEvent(m);
      if (!call) return;
      this.calls.delete(m.id);
      if (m.type === 'result') call.resolve(m.result);
      else call.reject(Object.assign(new Error(m.message ?? 'vault error'), { code: m.code ?? null }));
    });
  }

  /** Loads the vault; resolves once its document is there (whatever it is: `init` tells). */
  load(url) {
    return new Promise((resolve) => {
      this.frame.onload = () => resolve();
      this.frame.src = url;
    });
  }

  call(type, body = {}, onEvent = () => {}) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject, onEvent });
      this.frame.contentWindow.postMessage({ ...body, id, type }, this.origin);
    });
  }
}

class App {
  async init() {
    this.config = await demoApi('GET', 'config');
    const vaultUrl = new URL(this.config.vault_url);
    this.vault = new VaultClient($('vault'), vaultUrl.origin);
    this.vault.onEvent = (m) => this.vaultEvent(m);
    await this.vault.load(vaultUrl.href);
    // ?primes=generate: the vault generates real primes even when the
    // server is in test mode (the browser benchmark measures them this way).
    const primes = new URLSearchParams(location.search).get('primes') === 'generate' ? 'generate' : undefined;
    // The one timeout of the page: a vault that never answers (it failed
    // to load, or refused to start before it could say why).
    let timer;
    const silent = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('vault_unavailable: the vault did not answer')), 30_000);
    });
    const ready = await Promise.race([this.vault.call('init', { primes }, (m) => this.vaultEvent(m)), silent]).finally(() => clearTimeout(timer));
    this.partyId = ready.party_id;
    this.wallets = ready.wallets;
    if (ready.test_mode) {
      $('test-mode').hidden = false;
      console.warn('INSECURE TEST MODE: this demo uses PUBLIC test data (primes or aux info)');
    }
    log(`browser party ${this.partyId}; coordinator key ${ready.coordinator_key} (${ready.how})`);
    this.renderWallet();
    $('create-wallet').onclick = () => this.guard(() => this.createWallet());
    $('sign-browser').onclick = () => this.guard(() => this.sign('browser'));
    $('sign-servers').onclick = () => this.guard(() => this.sign('servers'));
    document.body.dataset.ready = 'true';
  }

  vaultEvent(m) {
    if (m.kind === 'log') log(`vault: ${m.message}`);
    else if (m.kind === 'wallets') {
      this.partyId = m.party_id;
      this.wallets = m.wallets;
      this.renderWallet();
    }
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

  renderWallet() {
    const w = this.wallets?.at(-1);
    $('wallet').dataset.state = w ? 'ready' : 'none';
    $('address').textContent = w?.address ?? '—';
    $('public-key').textContent = w?.public_key ?? '—';
    $('account-id').textContent = w?.account_id ?? '—';
    $('sign-browser').disabled = !w;
    $('sign-servers').disabled = !w;
  }

  async createWallet() {
    setStatus($('status'), 'busy', 'creating a 2-of-3 wallet: this browser + two server parties');
    const bar = $('keygen-bar');
    bar.value = 0;
    const created = await demoApi('POST', 'wallets', { party_id: this.partyId });
    log(`keygen session ${created.session_id} created`);
    const started = performance.now();
    let auxStarted = null;
    const mine = this.vault.call('keygen', { session_id: created.session_id, join_token: created.join_tokens[this.partyId] }, (m) => {
      if (m.kind === 'log') return log(`vault: ${m.message}`);
      const { progress: p, ms } = m;
      if (p.stage === 'aux_info' && auxStarted === null) auxStarted = ms;
      if (p.stage === 'keygen' && auxStarted !== null && timings.aux_info_ms === undefined) timings.aux_info_ms = ms - auxStarted;
      bar.value = keygenPercent(p);
      $('keygen-status').textContent = `this browser: ${p.stage}${p.round ? ` round ${p.round}` : ''}`;
    });
    const servers = waitSession(created.session_id, (s) => ($('keygen-parties').textContent = partiesLine(s)));
    const wallet = await mine;
    const session = await servers;
    if (session.status !== 'completed') throw new Error(`keygen ${session.status}: ${session.error?.reason ?? ''}`);
    const account = await demoApi('GET', `accounts/${session.result.account_id}`);
    if (account.public_key !== wallet.public_key) throw new Error('the coordinator and this browser disagree on the public key');
    timings.keygen_ms = performance.now() - started;
    bar.value = 100;
    this.wallets.push(wallet);
    $('keygen-status').textContent = `done in ${(timings.keygen_ms / 1000).toFixed(1)} s${timings.aux_info_ms ? ` (aux info ${(timings.aux_info_ms / 1000).toFixed(1)} s)` : ''}`;
    setStatus($('status'), 'ok', `wallet ${account.address} created`);
    log(`wallet ${account.address} (account ${account.account_id})`);
  }

  /** A signing: reviewed and approved in the vault first, then run. */
  async sign(signers) {
    const w = this.wallets.at(-1);
    const message = $('message').value;
    const out = $(signers === 'browser' ? 'sig-browser' : 'sig-servers');
    // A new state at once: nothing of an earlier signing stays shown.
    for (const k of Object.keys(out.dataset)) delete out.dataset[k];
    setStatus(out, 'reviewing', 'waiting for your approval in the vault…');
    $('review-note').hidden = false;
    // The vault arms its approve button only while the user can see it.
    $('vault').scrollIntoView({ block: 'nearest' });
    log(`review: ${signers} signing put up in the vault, waiting for approval`);
    let hash;
    try {
      ({ hash } = await this.vault.call('review', { message, signers, account_id: w.account_id }));
    } catch (e) {
      if (e.code === 'cancelled') {
        setStatus(out, 'none', '');
        log('signing cancelled in the vault: nothing was signed');
        return;
      }
      throw e;
    } finally {
      $('review-note').hidden = true;
    }
    setStatus(out, 'busy', signers === 'browser' ? 'signing: this browser + server-party-1…' : 'signing: server-party-1 + server-party-2…');
    const created = await demoApi('POST', 'sign', {
      account_id: w.account_id,
      message_hash: `0x${hash}`,
      signers,
      party_id: signers === 'browser' ? this.partyId : undefined,
    });
    out.dataset.sessionId = created.session_id;
    const started = performance.now();
    const mine =
      signers === 'browser'
        ? await this.vault
            .call('sign', { session_id: created.session_id, join_token: created.join_tokens[this.partyId] }, (m) => m.kind === 'log' && log(`vault: ${m.message}`))
            .then((result) => ({ result }), (error) => ({ error }))
        : null;
    if (mine?.error) {
      out.dataset.state = 'refused';
      out.dataset.code = mine.error.code ?? '';
      out.textContent = `this browser did not sign: ${mine.error.message}`;
      throw mine.error;
    }
    const session = await waitSession(created.session_id);
    const ms = performance.now() - started;
    if (session.status !== 'completed') throw new Error(`signing ${session.status}: ${session.error?.reason ?? ''}`);
    const sig = session.result.signature;
    const ok =
      (await this.vault.call('verify', { hash, public_key: w.public_key, r: sig.r, s: sig.s, v: sig.v })) &&
      (!mine || `0x${mine.result.r}` === sig.r);
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
}

const app = new App();
window.__app = app;
app.init().catch((e) => {
  log(`start-up failed: ${e.message}`);
  setStatus($('status'), 'error', e.message);
  document.querySelectorAll('button').forEach((b) => (b.disabled = true));
});
