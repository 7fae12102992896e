// Browser storage of the party's secrets: IndexedDB, every secret sealed with
// AES-256-GCM under a NON-EXTRACTABLE WebCrypto key that is itself kept in
// IndexedDB (the browser can use it, script cannot read it out).
//
// Sealed records use party-core's format, so the same bytes would open with
// party-core under the same key:
//   version 1 | kind | nonce[12] | ciphertext+tag,
//   AAD = wasm.sealAad(party id, account/group id, kind)  (binds all four)
// A record copied to another account, kind or party fails to open.
//
// Backup: all records opened and re-encrypted under a passphrase key
// (PBKDF2-SHA256, 600 000 iterations, random salt) for export/import.
//
// Also this party's trust state (public, not sealed): the coordinator key
// pinned on first use (`coordinator-key`), the account policies stored at
// keygen (`policy:<account>`) and the admission records of every session it
// took part in (`admitted:<session>`, `request:<account, request id>`,
// `signings:<account>`), written in one strict-durability transaction
// before a session starts (party-wasm/js/host.mjs's `admission`).

const DB_NAME = 'mpc-browser-party';
const STORE = 'kv';
const KIND = { identity: 5, key_share: 1, aux_info: 2, primes: 3 };
export const PBKDF2_ITERATIONS = 600_000;
const HOUR_MS = 3_600_000;

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function openDb() {
  const req = indexedDB.open(DB_NAME, 1);
  req.onupgradeneeded = () => req.result.createObjectStore(STORE);
  return request(req);
}

export class PartyStore {
  /** Opens the store (creating the master key on first use). */
  static async open(wasm) {
    const db = await openDb();
    const s = new PartyStore(wasm, db);
    let key = await s.get('master-key');
    if (!key) {
      key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
      await s.put('master-key', key);
    }
    s.key = key;
    return s;
  }

  constructor(wasm, db) {
    this.wasm = wasm;
    this.db = db;
    this.key = null;
  }

  async get(k) {
    return request(this.db.transaction(STORE).objectStore(STORE).get(k));
  }

  async put(k, v) {
    const tx = this.db.transaction(STORE, 'readwrite');
    tx.objectStore(STORE).put(v, k);
    return new Promise((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
    });
  }

  async delete(k) {
    const tx = this.db.transaction(STORE, 'readwrite');
    tx.objectStore(STORE).delete(k);
    return new Promise((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
    });
  }

  /**
   * Runs `body(kv, refuse)` in one strict-durability readwrite transaction
   * (IndexedDB callbacks only inside). Resolves null once committed, or the
   * code given to `refuse`, which aborts it: nothing is written then.
   */
  #atomic(body) {
    return new Promise((resolve, reject) => {
      const tx = this.db.transaction(STORE, 'readwrite', { durability: 'strict' });
      let refusal = null;
      const refuse = (code) => {
        refusal = code;
        tx.abort();
      };
      tx.oncomplete = () => resolve(null);
      tx.onabort = () => (refusal ? resolve(refusal) : reject(tx.error ?? new Error('store transaction aborted')));
      try {
        body(tx.objectStore(STORE), refuse);
      } catch (e) {
        refusal = null;
        tx.abort();
        reject(e);
      }
    });
  }

  /** The policy (JSON) this party stored for an account, or null. */
  async policy(accountId) {
    return (await this.get(`policy:${accountId}`)) ?? null;
  }

  /** Keeps the policy of a new account (from its keygen descriptor). */
  async keepPolicy(accountId, policyJson) {
    const refused = await this.#atomic((kv, refuse) => {
      const key = `policy:${accountId}`;
      kv.get(key).onsuccess = (e) => (e.target.result !== undefined ? refuse('policy_exists') : kv.put(policyJson, key));
    });
    if (refused) throw new Error(`a policy is already stored for account ${accountId}`);
  }

  /** A policy change: replaces the policy only if its hash is still `previous`. */
  async storePolicy({ account_id: accountId, policy, previous }) {
    const refused = await this.#atomic((kv, refuse) => {
      const key = `policy:${accountId}`;
      kv.get(key).onsuccess = (e) => {
        const current = e.target.result;
        if (current === undefined || this.wasm.policyHash(current) !== previous) return refuse('policy_changed');
        kv.put(policy, key);
      };
    });
    if (refused) throw new Error('the stored policy changed meanwhile');
  }

  /**
   * Records an admission in one transaction: the session id, and for an
   * approved signing its request id and time (under the rate limit). Null
   * once durable, or the refusal code (`session_replayed`,
   * `request_id_reused`, `signing_rate_limited`) with nothing written.
   */
  record({ session_id: sessionId, approved }, nowMs = Date.now()) {
    return this.#atomic((kv, refuse) => {
      const sessionKey = `admitted:${sessionId}`;
      kv.get(sessionKey).onsuccess = (e) => {
        if (e.target.result !== undefined) return refuse('session_replayed');
        kv.put(nowMs, sessionKey);
        if (!approved) return;
        const requestKey = `request:${JSON.stringify([approved.account_id, approved.request_id])}`;
        kv.get(requestKey).onsuccess = (e2) => {
          if (e2.target.result !== undefined) return refuse('request_id_reused');
          kv.put(nowMs, requestKey);
          if (!approved.signs || approved.max_per_hour == null) return;
          const rateKey = `signings:${approved.account_id}`;
          kv.get(rateKey).onsuccess = (e3) => {
            const times = (e3.target.result ?? []).filter((t) => t > nowMs - HOUR_MS);
            if (times.length >= approved.max_per_hour) return refuse('signing_rate_limited');
            kv.put([...times, nowMs], rateKey);
          };
        };
      };
    });
  }

  async keys() {
    return request(this.db.transaction(STORE).objectStore(STORE).getAllKeys());
  }

  async seal(partyId, accountId, kind, plaintext) {
    const nonce = crypto.getRandomValues(new Uint8Array(12));
    const aad = this.wasm.sealAad(partyId, accountId, kind);
    const ct = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad }, this.key, plaintext));
    const out = new Uint8Array(2 + 12 + ct.length);
    out.set([1, KIND[kind]], 0);
    out.set(nonce, 2);
    out.set(ct, 14);
    return out;
  }

  async open(partyId, accountId, kind, sealed) {
    if (sealed[0] !== 1 || sealed[1] !== KIND[kind]) throw new Error(`sealed record is not a ${kind}`);
    const aad = this.wasm.sealAad(partyId, accountId, kind);
    const pt = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: sealed.slice(2, 14), additionalData: aad }, this.key, sealed.slice(14));
    return new Uint8Array(pt);
  }

  /** Seals and stores a secret record; the caller should wipe `bytes`. */
  async putSecret(partyId, kind, id, bytes) {
    await this.put(`${kind}:${id}`, await this.seal(partyId, id, kind, bytes));
  }

  /** Opens a stored secret record, or null. */
  async getSecret(partyId, kind, id) {
    const sealed = await this.get(`${kind}:${id}`);
    return sealed ? this.open(partyId, id, kind, sealed) : null;
  }

  /** Exports every secret, re-encrypted under a passphrase. */
  async exportBackup(partyId, passphrase) {
    const records = {};
    for (const k of await this.keys()) {
      const [kind, ...rest] = String(k).split(':');
      if (!(kind in KIND)) continue;
      const id = rest.join(':');
      records[k] = bytesToB64(await this.open(partyId, id, kind, await this.get(k)));
    }
    const wallets = (await this.get('wallets')) ?? [];
    const plain = new TextEncoder().encode(JSON.stringify({ party_id: partyId, records, wallets }));
    const salt = crypto.getRandomValues(new Uint8Array(16));
    const nonce = crypto.getRandomValues(new Uint8Array(12));
    const key = await passphraseKey(passphrase, salt, PBKDF2_ITERATIONS);
    const ct = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: BACKUP_AAD }, key, plain));
    plain.fill(0);
    return {
      format: 'mpc-browser-party-backup/v1',
      kdf: { name: 'PBKDF2', hash: 'SHA-256', iterations: PBKDF2_ITERATIONS, salt: bytesToB64(salt) },
      cipher: { name: 'AES-256-GCM', nonce: bytesToB64(nonce) },
      ciphertext: bytesToB64(ct),
    };
  }

  /** Imports a backup: every record re-sealed under this browser's key. */
  async importBackup(backup, passphrase) {
    if (backup.format !== 'mpc-browser-party-backup/v1') throw new Error('not a backup file');
    // At least ours; at most 10x (a crafted file must not stall the vault).
    const iterations = backup.kdf?.iterations;
    if (backup.kdf?.name !== 'PBKDF2' || !Number.isInteger(iterations) || iterations < PBKDF2_ITERATIONS || iterations > 10 * PBKDF2_ITERATIONS) {
      throw new Error('unsupported backup KDF');
    }
    const key = await passphraseKey(passphrase, b64ToBytes(backup.kdf.salt), backup.kdf.iterations);
    let plain;
    try {
      plain = new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: b64ToBytes(backup.cipher.nonce), additionalData: BACKUP_AAD }, key, b64ToBytes(backup.ciphertext)));
    } catch {
      throw new Error('wrong passphrase or damaged backup');
    }
    const data = JSON.parse(new TextDecoder().decode(plain));
    plain.fill(0);
    for (const [k, b64] of Object.entries(data.records)) {
      const [kind, ...rest] = k.split(':');
      if (!(kind in KIND)) continue;
      const bytes = b64ToBytes(b64);
      await this.putSecret(data.party_id, kind, rest.join(':'), bytes);
      bytes.fill(0);
    }
    await this.put('party-id', data.party_id);
    await this.put('wallets', data.wallets ?? []);
    return data.party_id;
  }
}

const BACKUP_AAD = new TextEncoder().encode('mpc/browser-backup/v1');

async function passphraseKey(passphrase, salt, iterations) {
  const base = await crypto.subtle.importKey('raw', new TextEncoder().encode(passphrase), 'PBKDF2', false, ['deriveKey']);
  return crypto.subtle.deriveKey({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, base, { name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
}

function bytesToB64(b) {
  let s = '';
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s);
}

function b64ToBytes(s) {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}
