// The durable admission store of a Node device party (party-wasm/js/
// host.mjs's `admission`), in the device's state directory:
//
//   <dir>/policies/<h(account)>.json       the account policy stored at keygen
//   <dir>/admitted/sessions/<session id>   every session this device admitted
//   <dir>/admitted/requests/<h(account, request id)>
//   <dir>/admitted/signings/<h(account)>.json  admitted signing times (rate limit)
//
// Admission records are files created exclusively (O_EXCL) and fsynced
// before the session starts: a session id seen before is refused, also
// across restarts and processes. A refused admission removes what it wrote,
// so nothing is recorded then. Policies are not secret: kept as JSON in the
// state directory, whose master key guards everything else anyway.
import { readFile, mkdir, open, rename, unlink } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';

/** A file name for any id (account ids, request ids are not all path-safe). */
const fileKey = (...parts) => createHash('sha256').update(parts.join('\0')).digest('hex');

/** Creates `path` with `data` only if it does not exist; durable. False if it existed. */
async function createExclusive(path, data) {
  let fh;
  try {
    fh = await open(path, 'wx', 0o600);
  } catch (e) {
    if (e.code === 'EEXIST') return false;
    throw e;
  }
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return true;
}

/** Replaces `path` atomically (write, fsync, rename). */
async function replaceFile(path, data) {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

const HOUR_MS = 3_600_000;

/**
 * The device's durable admission store (party-wasm/js/host.mjs's
 * `admission`), in its state directory. One record at a time per device.
 */
export class NodeAdmissionStore {
  constructor(wasm, dir, nowMs = () => Date.now()) {
    this.wasm = wasm;
    this.dir = dir;
    this.nowMs = nowMs;
    this.queue = Promise.resolve();
  }

  static async open(wasm, dir) {
    for (const sub of ['policies', 'admitted/sessions', 'admitted/requests', 'admitted/signings']) {
      await mkdir(join(dir, sub), { recursive: true });
    }
    return new NodeAdmissionStore(wasm, dir);
  }

  /** Runs `fn` after every earlier call (read-modify-write of the rate file). */
  #serial(fn) {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => {});
    return run;
  }

  #policyPath(accountId) {
    return join(this.dir, 'policies', `${fileKey(accountId)}.json`);
  }

  /** The stored policy (JSON) of an account, or null. */
  async policy(accountId) {
    const path = this.#policyPath(accountId);
    return existsSync(path) ? readFile(path, 'utf8') : null;
  }

  /** Keeps the policy of a new account (from its keygen descriptor). */
  keepPolicy(accountId, policyJson) {
    return this.#serial(async () => {
      if (!(await createExclusive(this.#policyPath(accountId), policyJson))) {
        throw new Error(`a policy is already stored for account ${accountId}`);
      }
    });
  }

  /** A policy change: replaces the policy only if its hash is still `previous`. */
  storePolicy({ account_id: accountId, policy, previous }) {
    return this.#serial(async () => {
      const current = await this.policy(accountId);
      if (current == null || this.wasm.policyHash(current) !== previous) {
        throw new Error('the stored policy changed meanwhile');
      }
      await replaceFile(this.#policyPath(accountId), policy);
    });
  }

  /**
   * Records an admission: the session id, and for an approved signing its
   * request id and its time (under the rate limit). Null once durable, or
   * the refusal code, with nothing recorded.
   */
  record({ session_id: sessionId, approved }) {
    return this.#serial(async () => {
      if (!/^[0-9a-f-]{36}$/.test(sessionId)) throw new Error('invalid session id');
      const sessionPath = join(this.dir, 'admitted/sessions', sessionId);
      if (!(await createExclusive(sessionPath, ''))) return 'session_replayed';
      if (!approved) return null;
      const requestPath = join(this.dir, 'admitted/requests', fileKey(approved.account_id, approved.request_id));
      if (!(await createExclusive(requestPath, ''))) {
        await unlink(sessionPath);
        return 'request_id_reused';
      }
      if (approved.signs && approved.max_per_hour != null) {
        const ratePath = join(this.dir, 'admitted/signings', `${fileKey(approved.account_id)}.json`);
        const now = this.nowMs();
        const times = existsSync(ratePath) ? JSON.parse(await readFile(ratePath, 'utf8')).filter((t) => t > now - HOUR_MS) : [];
        if (times.length >= approved.max_per_hour) {
          await unlink(requestPath);
          await unlink(sessionPath);
          return 'signing_rate_limited';
        }
        await replaceFile(ratePath, JSON.stringify([...times, now]));
      }
      return null;
    });
  }
}
