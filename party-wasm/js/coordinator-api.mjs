// @ts-check
// What a device party asks the coordinator, typed with the TypeScript types
// generated from the coordinator's OpenAPI document (./api.d.ts, made by
// `npm run gen:api-types` from api/openapi.json). `scripts/check-api-types`
// type-checks this file with tsc, so a change to an API type that this code
// relies on fails the build instead of failing at run time.

/** @typedef {import('./api.d.ts').components['schemas']['DeviceJoined']} DeviceJoined */
/** @typedef {import('./api.d.ts').components['schemas']['DeviceJoinRequest']} DeviceJoinRequest */
/** @typedef {import('./api.d.ts').components['schemas']['ErrorBody']} ErrorBody */

/** Error with the coordinator's or router's error code. */
export class PartyError extends Error {
  /**
   * @param {string} code stable error code (`ErrorBody.code`, or the host's own)
   * @param {string} message for people
   * @param {number | null} [blamed] position of the party the failure is blamed on
   */
  constructor(code, message, blamed = null) {
    super(`${code}: ${message}`);
    this.code = code;
    this.blamed = blamed;
  }
}

/** @param {number} ms */
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * POSTs a JSON text; answers the status and the parsed body (null if none).
 * @param {typeof fetch} fetchImpl
 * @param {string} url
 * @param {string} body JSON text
 * @param {number} [timeoutMs]
 * @returns {Promise<{ status: number, body: any }>}
 */
export async function postJson(fetchImpl, url, body, timeoutMs) {
  const signal = timeoutMs && typeof globalThis.AbortSignal?.timeout === 'function' ? AbortSignal.timeout(timeoutMs) : undefined;
  const resp = await fetchImpl(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body,
    signal,
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
 * Presents the join token and identity to the coordinator
 * (`POST /api/v1/mpc/sessions/{id}/join`); returns the answer once it holds
 * the signed descriptor. Waits (polling) while other device parties of the
 * session have not joined yet (`202`), until `timeoutMs`.
 * @param {{ coordinatorUrl: string, sessionId: string, joinToken: string,
 *   identity: { deviceJoinRequest(sessionId: string, joinToken: string): string },
 *   fetch?: typeof fetch, timeoutMs?: number }} o
 * @returns {Promise<DeviceJoined & { descriptor: object, position: number }>}
 */
export async function joinCoordinator({ coordinatorUrl, sessionId, joinToken, identity, fetch: fetchImpl = globalThis.fetch, timeoutMs = 120_000 }) {
  const url = `${coordinatorUrl}/api/v1/mpc/sessions/${sessionId}/join`;
  // The wasm identity builds the body (it signs the proof of possession).
  const body = identity.deviceJoinRequest(sessionId, joinToken);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await postJson(fetchImpl, url, body);
    if (r.status === 200) {
      /** @type {DeviceJoined} */
      const joined = r.body;
      if (joined?.status !== 'ready' || joined.descriptor == null || joined.position == null) {
        throw new PartyError('invalid_answer', 'the coordinator answered ready without a descriptor');
      }
      return { ...joined, descriptor: joined.descriptor, position: joined.position };
    }
    if (r.status !== 202) {
      /** @type {Partial<ErrorBody> | null} */
      const err = r.body;
      throw new PartyError(err?.code ?? `http_${r.status}`, err?.error ?? 'join refused');
    }
    if (Date.now() > deadline) throw new PartyError('timeout', 'other device parties did not join in time');
    await delay(500);
  }
}
