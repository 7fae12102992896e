// The JS host of a device party: the same steps as the native server party
// (server-party/src/runner.rs) around the party-wasm Session: join the
// coordinator with the join token, verify the descriptor, gather the inputs,
// join the router's WebSocket, drive the protocol, report signed results.
//
// Runs in a browser (page or Web Worker, native WebSocket and fetch) and in
// Node (pass `WebSocket` from the `ws` package). No secrets are logged: the
// join token, seed, share and primes never reach `log`.

/** Error with the coordinator's or router's error code. */
export class PartyError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function postJson(fetchImpl, url, body) {
  const resp = await fetchImpl(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body,
  });
  const text = await resp.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  return { status: resp.status, body: json };
}

/**
 * Presents the join token and identity to the coordinator; returns the
 * signed descriptor. Waits (polling) while other device parties of the
 * session have not joined yet, until `timeoutMs`.
 */
export async function joinCoordinator({ coordinatorUrl, sessionId, joinToken, identity, fetch: fetchImpl = globalThis.fetch, timeoutMs = 120_000 }) {
  const url = `${coordinatorUrl}/api/v1/mpc/sessions/${sessionId}/join`;
  const body = identity.deviceJoinRequest(sessionId, joinToken);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await postJson(fetchImpl, url, body);
    if (r.status === 200) return r.body;
    if (r.status !== 202) {
      throw new PartyError(r.body?.code ?? `http_${r.status}`, r.body?.error ?? 'join refused');
    }
    if (Date.now() > deadline) throw new PartyError('timeout', 'other device parties did not join in time');
    await delay(500);
  }
}

/** Sends a signed report to the coordinator (best effort, like the server party). */
async function report(ctx, body) {
  const text = JSON.stringify({ session_id: ctx.sessionId, position: ctx.position, body });
  try {
    const r = await postJson(ctx.fetch, `${ctx.coordinatorUrl}/internal/v1/reports`, ctx.identity.signReport(text));
    if (r.status >= 300) ctx.log(`report ${body.type} refused: HTTP ${r.status} ${r.body?.code ?? ''}`);
  } catch (e) {
    ctx.log(`report ${body.type} failed: ${e.message}`);
  }
}

/**
 * Opens the session connection to the router: challenge, signed join, joined.
 * Resolves to { ws, takeEarly }: the router replays buffered frames right
 * after `joined`, so frames are held from that moment until `drive` takes
 * them (`takeEarly()` stops holding and returns them in order).
 */
function connectRouter(ctx) {
  return new Promise((resolve, reject) => {
    const ws = new ctx.WebSocket(ctx.routerWsUrl);
    ws.binaryType = 'arraybuffer';
    let state = 'challenge';
    const fail = (e) => {
      if (state !== 'done') {
        state = 'done';
        try { ws.close(); } catch { /* closing anyway */ }
        reject(e);
      }
    };
    ws.addEventListener('error', () => fail(new PartyError('router_unreachable', 'router connection failed')));
    ws.addEventListener('close', () => fail(new PartyError('router_closed', 'router closed the connection during the handshake')));
    const onHandshake = (ev) => {
      if (typeof ev.data !== 'string') return;
      try {
        if (state === 'challenge') {
          ws.send(ctx.identity.routerJoin(ev.data, ctx.sessionId, ctx.joinToken));
          state = 'joining';
        } else if (state === 'joining') {
          const msg = JSON.parse(ev.data);
          if (msg.type !== 'joined') throw new PartyError(msg.code ?? 'router_refused', msg.message ?? 'router refused the join');
          state = 'done';
          ws.removeEventListener('message', onHandshake);
          const early = [];
          const hold = (e) => early.push(e);
          ws.addEventListener('message', hold);
          resolve({
            ws,
            takeEarly: () => {
              ws.removeEventListener('message', hold);
              return early;
            },
          });
        }
      } catch (e) {
        fail(e);
      }
    };
    ws.addEventListener('message', onHandshake);
  });
}

function createSession(ctx, info, input) {
  const { wasm } = ctx;
  const args = [JSON.stringify(ctx.descriptor), ctx.coordinatorPublicKey, ctx.identity];
  const now = ctx.now();
  if (info.kind === 'keygen' && info.generate_aux) {
    if (!input.primes) throw new PartyError('missing_input', 'this keygen generates aux info: primes are needed');
    return wasm.Session.keygenGenerateAux(...args, input.primes, now);
  }
  if (info.kind === 'keygen') {
    if (!input.auxInfo) throw new PartyError('missing_input', 'no aux info stored for this party group');
    return wasm.Session.keygenWithAux(...args, input.auxInfo, now);
  }
  if (info.kind === 'sign') {
    if (!input.share) throw new PartyError('missing_input', `this party holds no share of account ${info.account_id}`);
    return wasm.Session.sign(...args, input.share, now);
  }
  throw new PartyError('unsupported', `${info.kind} sessions are not served by device parties`);
}

/** Drives a session over an open router connection until it finishes. */
function drive(ctx, conn, session) {
  const { ws } = conn;
  return new Promise((resolve, reject) => {
    let lastProgress = '';
    let finished = false;
    const finish = (fn) => {
      if (finished) return;
      finished = true;
      ws.removeEventListener('message', onMessage);
      try { ws.close(); } catch { /* done anyway */ }
      fn();
    };
    const apply = (step) => {
      for (const frame of step.frames) ws.send(frame);
      if (step.dropped) ctx.log(`frame dropped: ${step.dropped}`);
      const p = step.progress.at(-1);
      if (p) {
        const key = `${p.stage}/${p.round}`;
        if (key !== lastProgress) {
          lastProgress = key;
          ctx.onProgress({ stage: p.stage, round: p.round, percent: null, detail: p.detail });
          report(ctx, { type: 'progress', stage: p.stage, round: p.round, percent: null });
        }
      }
      if (step.finished) finish(() => resolve(session.takeOutput()));
    };
    const onMessage = (ev) => {
      if (finished) return;
      try {
        if (typeof ev.data === 'string') {
          const msg = JSON.parse(ev.data);
          if (msg.type === 'session_closed') finish(() => reject(new PartyError('session_closed', 'the router closed the session')));
          return;
        }
        apply(session.handleFrame(new Uint8Array(ev.data)));
      } catch (e) {
        finish(() => reject(e));
      }
    };
    // Listener swap and the held frames in one task: nothing is lost or
    // reordered in between.
    const early = conn.takeEarly();
    ws.addEventListener('message', onMessage);
    ws.addEventListener('close', () => finish(() => reject(new PartyError('router_closed', 'router connection lost'))));
    try {
      apply(session.start());
    } catch (e) {
      finish(() => reject(e));
    }
    for (const ev of early) onMessage(ev);
  });
}

/**
 * Runs one session as a device party.
 *
 * @param {object} o
 * @param {object} o.wasm the initialised party-wasm module
 * @param {object} o.identity a wasm `Identity`
 * @param {string} o.coordinatorUrl coordinator base URL ('' for same origin)
 * @param {string} o.routerWsUrl router WebSocket URL (ws://.../ws)
 * @param {string} o.coordinatorPublicKey the coordinator's descriptor key, hex
 * @param {string} o.sessionId
 * @param {string} o.joinToken
 * @param {(info) => Promise<{primes?: Uint8Array, auxInfo?: Uint8Array, share?: Uint8Array}>} o.inputs
 *   picks this party's secret input for the verified descriptor
 * @param {(p: {stage: string, round: number, percent: number|null}) => void} [o.onProgress]
 * @returns {Promise<{info: object, result: object}>} the descriptor info and the session result
 *   (keygen: public_key, address, share, aux_info — seal them at once; sign: r, s, v, signature)
 */
export async function runDeviceSession(o) {
  const ctx = {
    wasm: o.wasm,
    identity: o.identity,
    coordinatorUrl: o.coordinatorUrl ?? '',
    routerWsUrl: o.routerWsUrl,
    coordinatorPublicKey: o.coordinatorPublicKey,
    sessionId: o.sessionId,
    joinToken: o.joinToken,
    WebSocket: o.WebSocket ?? globalThis.WebSocket,
    fetch: o.fetch ?? globalThis.fetch.bind(globalThis),
    onProgress: o.onProgress ?? (() => {}),
    log: o.log ?? (() => {}),
    now: o.now ?? (() => Date.now() / 1000),
    position: null,
    descriptor: null,
  };
  const joined = await joinCoordinator({ ...ctx, timeoutMs: o.joinTimeoutMs });
  ctx.descriptor = joined.descriptor;
  // Verified against the configured coordinator key, never trusted as sent.
  const info = o.wasm.verifyDescriptor(JSON.stringify(ctx.descriptor), ctx.coordinatorPublicKey, ctx.identity);
  ctx.position = info.position;
  ctx.log(`session ${info.session_id}: ${info.kind}, position ${info.position}`);
  try {
    if (info.kind === 'keygen' && info.generate_aux) {
      ctx.onProgress({ stage: 'primes', round: 0, percent: null });
    }
    const input = await o.inputs(info);
    const session = createSession(ctx, info, input);
    const conn = await connectRouter(ctx);
    // Beside the protocol, as the server parties do: the session never
    // waits for the coordinator's answer.
    report(ctx, { type: 'joined' });
    ctx.onProgress({ stage: 'joined', round: 0, percent: null });
    const result = await drive(ctx, conn, session);
    if (result.kind === 'keygen') {
      await report(ctx, { type: 'keygen_result', public_key: result.public_key });
    } else if (result.kind === 'signature') {
      await report(ctx, { type: 'signature', signature: { r: result.r, s: result.s, v: result.v } });
    }
    ctx.onProgress({ stage: 'done', round: 0, percent: 100 });
    return { info, result };
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    await report(ctx, { type: 'failed', reason, blamed: null });
    throw e;
  }
}
