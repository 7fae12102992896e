// The JS host of a device party: a thin I/O shell over party-core's session
// machine (party-wasm's `PartyHost`, the same machine server-party's runner
// drives). The machine decides what to do: which input it needs, which router
// to (re)join, what to send and resend, which reports to send and when to
// retry them, when the deadline fails the session. This shell does it
// (WebSocket, timers, fetch) and tells the machine what happened.
//
// Runs in a browser (page or Web Worker, native WebSocket and fetch) and in
// Node (pass `WebSocket` from the `ws` package). No secrets are logged: the
// join token, seed, share and primes never reach `log`.
//
// Admission comes first (party-core's machine decides, this shell only
// answers from the device's store): a descriptor that signs anything else
// than what the user approved (`approved`) is refused before any router
// connection; the account's policy is the device's own stored copy
// (`admission.policy`); the session id (and an approval's request id) are
// recorded durably (`admission.record`), and a seen one is refused, before
// the session's input is even read.

import { joinCoordinator, PartyError, postJson } from './coordinator-api.mjs';

export { joinCoordinator, PartyError };

/** The input bytes for a `need_input` request, or why there are none. */
async function gatherInput(o, info, request) {
  if (request.kind === 'presignature') return { reason: 'online_sign sessions are not served by device parties' };
  if (request.kind === 'share' && info.kind !== 'sign') return { reason: `${info.kind} sessions are not served by device parties` };
  const input = (await o.inputs(info, request)) ?? {};
  if (request.kind === 'primes') {
    return input.primes ? { bytes: input.primes } : { reason: 'this keygen generates aux info: primes are needed' };
  }
  if (request.kind === 'aux_info') {
    return input.auxInfo ? { bytes: input.auxInfo } : { reason: 'no aux info stored for this party group' };
  }
  if (request.kind === 'share') {
    return input.share ? { bytes: input.share } : { reason: `this party holds no share of account ${request.account_id}` };
  }
  return { reason: `unsupported input ${request.kind}` };
}

const REFUSALS = new Set(['session_replayed', 'request_id_reused', 'signing_rate_limited']);

const toHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

/**
 * What the user approved, as the wasm host reads it (JSON), or null.
 * `{hash}` (32 bytes hex) or `{message, digest}` (message: bytes, or a
 * string taken as its UTF-8 bytes; digest: `keccak256` | `sha256`).
 */
export function approvedJson(approved) {
  if (approved == null) return null;
  if ('hash' in approved) return JSON.stringify({ hash: String(approved.hash) });
  const m = typeof approved.message === 'string' ? new TextEncoder().encode(approved.message) : approved.message;
  if (!(m instanceof Uint8Array)) throw new PartyError('invalid_approval', 'approved.message must be bytes or a string');
  return JSON.stringify({ message: toHex(m), digest: approved.digest });
}

/**
 * Runs one session as a device party.
 *
 * @param {object} o
 * @param {object} o.wasm the initialised party-wasm module
 * @param {object} o.identity a wasm `Identity`
 * @param {string} o.coordinatorUrl coordinator base URL ('' for same origin)
 * @param {string[]} [o.coordinatorUrls] several coordinator base URLs, tried in turn
 * @param {string} [o.routerWsUrl] router WebSocket URL (ws://.../ws)
 * @param {string[]} [o.routerWsUrls] several router WebSocket URLs: the next
 *   one after a connection failure (round-robin, with backoff)
 * @param {string} o.coordinatorPublicKey the coordinator's descriptor key, hex
 * @param {string} o.sessionId
 * @param {string} o.joinToken
 * @param {(info, request) => Promise<{primes?: Uint8Array, auxInfo?: Uint8Array, share?: Uint8Array}>} o.inputs
 *   picks this party's secret input for the verified descriptor
 * @param {(info, result) => Promise<void>} [o.store] keeps a keygen's
 *   share and aux info (sealed) before the result is reported
 * @param {{hash: string} | {message: Uint8Array|string, digest: 'keccak256'|'sha256'}} [o.approved]
 *   what the user saw and approved (signing sessions): a descriptor that
 *   signs anything else is refused (`not_what_was_approved`) before any
 *   router connection. Absent: the device approves no signing content
 *   (keygen, or a device that signs whatever its coordinator asks).
 * @param {string[]} [o.kinds] the session kinds the caller asked for
 *   (`keygen`, `sign`, ...): a verified descriptor of another kind is
 *   refused (`unexpected_session_kind`) before any input is read, any
 *   admission record is written or any router connection is made (a host
 *   asked to run "a keygen" never signs). Absent: any kind.
 * @param {string} [o.accountId] the account the caller asked to act for
 *   (a signing the user approved for it): a descriptor for another account
 *   is refused (`not_approved`) at the same point, before any admission
 *   record is written.
 * @param {object} o.admission the device's durable admission store:
 *   `policy(accountId)` → its stored policy JSON or null (no policy);
 *   `record({session_id, approved})` → null once recorded durably, or the
 *   refusal code (`session_replayed` for a session id seen before,
 *   `request_id_reused`, `signing_rate_limited`), recording nothing then;
 *   `storePolicy({account_id, policy, policy_hash, previous})` replaces the
 *   stored policy only if its hash is still `previous` (throws otherwise).
 * @param {(p: {stage: string, round: number, percent: number|null}) => void} [o.onProgress]
 * @returns {Promise<{info: object, result: object}>} the descriptor info and the session result
 *   (keygen: public_key, address, share, aux_info — seal them at once; sign: r, s, v, signature)
 */
export async function runDeviceSession(o) {
  const fetchImpl = o.fetch ?? globalThis.fetch.bind(globalThis);
  const coordinators = o.coordinatorUrls ?? [o.coordinatorUrl ?? ''];
  const routers = o.routerWsUrls ?? [o.routerWsUrl];
  const WebSocketImpl = o.WebSocket ?? globalThis.WebSocket;
  const onProgress = o.onProgress ?? (() => {});
  const log = o.log ?? (() => {});
  const now = o.nowMs ?? (() => Date.now());
  const { wasm, identity, sessionId, joinToken, coordinatorPublicKey, admission } = o;
  // The trust root is configured with the device, never taken from the
  // coordinator's answer: no key, no session.
  if (typeof coordinatorPublicKey !== 'string' || !/^[0-9a-f]{64}$/i.test(coordinatorPublicKey)) {
    throw new PartyError('no_coordinator_key', 'the device needs its configured coordinator key (32 bytes hex)');
  }
  if (!admission?.policy || !admission?.record || !admission?.storePolicy) {
    throw new PartyError('no_admission_store', 'the device needs a durable admission store (policy, record, storePolicy)');
  }
  const approved = approvedJson(o.approved);

  const joined = await joinCoordinator({ coordinatorUrl: coordinators[0], sessionId, joinToken, identity, fetch: fetchImpl, timeoutMs: o.joinTimeoutMs });
  const descriptorJson = JSON.stringify(joined.descriptor);
  // Verified against the configured coordinator key, never trusted as sent.
  const info = wasm.verifyDescriptor(descriptorJson, coordinatorPublicKey, identity);
  log(`session ${info.session_id}: ${info.kind}, position ${info.position}`);
  if (o.kinds && !o.kinds.includes(info.kind)) {
    throw new PartyError('unexpected_session_kind', `the session is a ${info.kind}; this device was asked for ${o.kinds.join(' or ')} only`);
  }
  if (o.accountId !== undefined && info.account_id !== o.accountId) {
    throw new PartyError('not_approved', `the session is for account ${info.account_id}, not the one this device was asked to act for`);
  }
  const host = new wasm.PartyHost(descriptorJson, coordinatorPublicKey, identity, routers, joinToken, coordinators.length, now(), approved);

  return new Promise((resolve, reject) => {
    let ws = null; // the session connection in use
    let timer = null;
    let coordinator = 0;
    let result = null;
    let over = false;

    const closeSocket = () => {
      const old = ws;
      ws = null;
      if (old) {
        // A normal close (1000) tells the router the party left on purpose;
        // any other end of the connection is watched for a disconnect.
        try { old.close(1000); } catch { /* closing anyway */ }
      }
    };
    const end = (fn) => {
      over = true;
      clearTimeout(timer);
      closeSocket();
      queueMicrotask(() => host.free());
      fn();
    };
    // Feeds one event into the machine, then executes what it asks.
    const feed = (event) => {
      if (over) return;
      try {
        event();
        for (const a of host.takeActions()) execute(a);
      } catch (e) {
        end(() => reject(e));
        return;
      }
      if (over) return;
      clearTimeout(timer);
      const at = host.wakeAt();
      if (at != null) timer = setTimeout(() => feed(() => host.tick(now())), Math.max(0, at - Date.now()));
    };

    const connect = (url) => {
      closeSocket();
      let socket;
      try {
        socket = new WebSocketImpl(url);
      } catch (e) {
        log(`router ${url}: ${e.message}`);
        queueMicrotask(() => feed(() => host.connectionClosed(now())));
        return;
      }
      socket.binaryType = 'arraybuffer';
      ws = socket;
      let closed = false;
      const lost = () => {
        if (closed) return;
        closed = true;
        if (ws === socket) {
          ws = null;
          log('router connection lost');
          feed(() => host.connectionClosed(now()));
        }
      };
      socket.addEventListener('error', lost);
      socket.addEventListener('close', lost);
      socket.addEventListener('message', (ev) => {
        if (ws !== socket) return;
        if (typeof ev.data === 'string') feed(() => host.textReceived(ev.data, now()));
        else feed(() => host.frameReceived(new Uint8Array(ev.data), now()));
      });
    };

    const send = (data) => {
      if (!ws) return; // lost already: the machine resends after the rejoin
      try {
        ws.send(data);
      } catch {
        const socket = ws;
        ws = null;
        try { socket.close(); } catch { /* closing anyway */ }
        queueMicrotask(() => feed(() => host.connectionClosed(now())));
      }
    };

    const sendReport = async (a) => {
      let outcome = 'unavailable';
      const base = coordinators[coordinator % coordinators.length];
      try {
        const r = await postJson(fetchImpl, `${base}/internal/v1/reports`, a.body, a.best_effort ? 2_000 : 10_000);
        if (r.status >= 200 && r.status < 300) outcome = 'delivered';
        else if (r.status >= 400 && r.status < 500) {
          outcome = 'refused';
          log(`report refused: HTTP ${r.status} ${r.body?.code ?? ''}`);
        } else log(`coordinator unavailable for report: HTTP ${r.status}`);
      } catch (e) {
        log(`report failed: ${e.message}`);
      }
      if (outcome === 'unavailable') coordinator += 1;
      feed(() => host.reportResult(a.id, outcome, now()));
    };

    // Runs a store call, then feeds its answer (or its failure) back.
    const ask = (call, answer) => {
      Promise.resolve()
        .then(call)
        .then(
          (v) => feed(() => answer(v)),
          (e) => feed(() => host.hostFailed(`device store: ${e instanceof Error ? e.message : String(e)}`, now())),
        );
    };

    const execute = (a) => {
      switch (a.type) {
        case 'need_policy':
          ask(
            () => admission.policy(a.account_id),
            (p) => host.providePolicy(p ?? null, now()),
          );
          break;
        case 'record':
          ask(
            () => admission.record({ session_id: a.session_id, approved: a.approved }),
            (refusal) => {
              if (refusal != null && !REFUSALS.has(refusal)) throw new PartyError('invalid_store_answer', `unknown admission refusal ${refusal}`);
              if (refusal != null) log(`admission refused: ${refusal}`);
              host.admissionRecorded(refusal ?? null, now());
            },
          );
          break;
        case 'store_policy':
          ask(
            () => admission.storePolicy({ account_id: a.account_id, policy: a.policy, policy_hash: a.policy_hash, previous: a.previous }),
            () => host.outputStored(now()),
          );
          break;
        case 'need_input':
          if (a.input.kind === 'primes') onProgress({ stage: 'primes', round: 0, percent: null });
          Promise.resolve()
            .then(() => gatherInput(o, info, a.input))
            .then(
              (r) => feed(() => (r.bytes ? host.provideInput(a.input.kind, r.bytes, now()) : host.inputFailed(r.reason, now()))),
              (e) => feed(() => host.inputFailed(e instanceof Error ? e.message : String(e), now())),
            );
          break;
        case 'connect':
          log(`joining through router ${a.router}`);
          connect(a.url);
          break;
        case 'send_text':
          send(a.text);
          break;
        case 'send_frame':
          send(a.frame);
          break;
        case 'close':
          closeSocket();
          break;
        case 'router_failed':
          log(`router ${a.router} failed, trying the next`);
          break;
        case 'joined':
          if (a.rejoin) log(`rejoined through router ${a.router}, frames resent`);
          else onProgress({ stage: 'joined', round: 0, percent: null });
          break;
        case 'progress':
          onProgress({ stage: a.stage, round: a.round, percent: a.percent, detail: a.detail });
          break;
        case 'frame_dropped':
          log(`frame dropped: ${a.reason}`);
          break;
        case 'send_report':
          sendReport(a);
          break;
        case 'store_output':
          result = a.result;
          Promise.resolve()
            .then(() => (o.store ? o.store(info, result) : undefined))
            .then(
              () => feed(() => host.outputStored(now())),
              (e) => feed(() => host.outputStoreFailed(e instanceof Error ? e.message : String(e), now())),
            );
          break;
        case 'finished':
          if (a.status === 'completed') {
            onProgress({ stage: 'done', round: 0, percent: 100 });
            end(() => resolve({ info, result }));
          } else {
            // A refusal before the session started carries its typed code.
            end(() => reject(new PartyError(a.code ?? 'session_failed', a.reason, a.blamed)));
          }
          break;
        default:
          break;
      }
    };

    feed(() => {});
  });
}
