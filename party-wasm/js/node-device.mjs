// A device party in Node: party-wasm + the `ws` package + a state directory
// whose records are sealed (AES-256-GCM, party-core's format: AAD binds party
// id, account or group id, record kind and version) under a master key kept
// in `<dir>/master.key` (mode 0600; a real device would keep it in its OS
// key store).
//
//   <dir>/master.key  <dir>/party-id  <dir>/identity.sealed
//   <dir>/shares/<account>.sealed  <dir>/aux/<group>.sealed
//   <dir>/policies/, <dir>/admitted/: policies and admission records
//   (./node-admission.mjs)
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import WebSocket from 'ws';

import init, * as wasm from '../pkg/party_wasm.js';
import { runDeviceSession } from './host.mjs';
import { NodeAdmissionStore } from './node-admission.mjs';

export { NodeAdmissionStore };

let ready = null;
/** Loads the party-wasm module once. */
export function loadWasm() {
  ready ??= readFile(new URL('../pkg/party_wasm_bg.wasm', import.meta.url)).then((bytes) => init({ module_or_path: bytes }));
  return ready.then(() => wasm);
}

async function writeSecret(path, data) {
  await writeFile(path, data, { mode: 0o600 });
}

export class NodeDevice {
  /** Opens (creating on first use) the device state in `dir`. */
  static async open(dir, { partyId } = {}) {
    const w = await loadWasm();
    await mkdir(join(dir, 'shares'), { recursive: true });
    await mkdir(join(dir, 'aux'), { recursive: true });
    const keyPath = join(dir, 'master.key');
    if (!existsSync(keyPath)) await writeSecret(keyPath, randomBytes(32).toString('hex'));
    const masterKey = Buffer.from((await readFile(keyPath, 'utf8')).trim(), 'hex');
    const idPath = join(dir, 'identity.sealed');
    const pidPath = join(dir, 'party-id');
    let identity;
    if (existsSync(idPath)) {
      partyId = (await readFile(pidPath, 'utf8')).trim();
      identity = w.Identity.fromSeed(w.openRecord(masterKey, partyId, '', 'identity', await readFile(idPath)));
    } else {
      identity = w.Identity.generate();
      partyId ??= `device-${identity.publicKey().ed25519.slice(0, 16)}`;
      const seed = identity.seed();
      await writeSecret(idPath, w.sealRecord(masterKey, partyId, '', 'identity', seed));
      seed.fill(0);
      await writeFile(pidPath, partyId);
    }
    const admission = await NodeAdmissionStore.open(w, dir);
    return new NodeDevice(w, dir, masterKey, partyId, identity, admission);
  }

  constructor(w, dir, masterKey, partyId, identity, admission) {
    this.wasm = w;
    this.admission = admission;
    this.dir = dir;
    this.masterKey = masterKey;
    this.partyId = partyId;
    this.identity = identity;
  }

  async #put(sub, id, kind, bytes) {
    await writeSecret(join(this.dir, sub, `${id}.sealed`), this.wasm.sealRecord(this.masterKey, this.partyId, id, kind, bytes));
  }

  async #get(sub, id, kind) {
    const path = join(this.dir, sub, `${id}.sealed`);
    if (!existsSync(path)) return null;
    return this.wasm.openRecord(this.masterKey, this.partyId, id, kind, await readFile(path));
  }

  /**
   * Stores aux info for a party group (e.g. public test aux info). Stored
   * aux info is never replaced: the same bytes again are accepted, other
   * aux info for the group throws (code `aux_info_conflict`) and the stored
   * one stays (a wallet made with aux info of two runs can never sign).
   */
  async putAuxInfo(groupId, bytes) {
    await this.#checkAux(groupId, bytes);
    await this.#put('aux', groupId, 'aux_info', bytes);
  }

  async #checkAux(groupId, bytes) {
    const stored = await this.#get('aux', groupId, 'aux_info');
    if (stored === null) return;
    const same = Buffer.from(stored).equals(Buffer.from(bytes));
    stored.fill(0);
    if (!same) {
      const e = new Error('aux_info_conflict: this party group already holds other aux info; nothing was stored');
      e.code = 'aux_info_conflict';
      throw e;
    }
  }

  /**
   * Joins and runs a session. `primes` (async () => prime set bytes) is
   * called when the keygen generates aux info; `testAux` (info => bytes or
   * null) supplies PUBLIC test aux info when no aux info is stored.
   * `routerWsUrls` (or one `routerWsUrl`): the routers, the next one after
   * a connection failure. `coordinatorPublicKey`: the key this device was
   * configured with (hex), never one fetched from the coordinator.
   * `approved`: what the user approved for a signing (`{hash}` or
   * `{message, digest}`); a descriptor for anything else is refused before
   * any router connection.
   */
  async run({ coordinatorUrl, routerWsUrl, routerWsUrls, coordinatorPublicKey, sessionId, joinToken, approved, primes, testAux, onProgress, log, fetch }) {
    const { info, result } = await runDeviceSession({
      approved,
      admission: this.admission,
      fetch,
      wasm: this.wasm,
      identity: this.identity,
      coordinatorUrl,
      routerWsUrl,
      routerWsUrls,
      coordinatorPublicKey,
      sessionId,
      joinToken,
      WebSocket,
      onProgress,
      log,
      inputs: async (i) => {
        if (i.kind === 'sign') return { share: await this.#get('shares', i.account_id, 'key_share') };
        if (i.generate_aux) return { primes: primes ? await primes(i) : null };
        let aux = await this.#get('aux', i.group_id, 'aux_info');
        if (!aux && testAux) {
          aux = await testAux(i);
          if (aux) await this.putAuxInfo(i.group_id, aux);
        }
        return { auxInfo: aux };
      },
      // Sealed before the result is reported.
      store: async (i, result) => {
        if (result.kind !== 'keygen') return;
        // The account id is the keygen session id.
        // Checked first: other aux info for the group keeps nothing of
        // this keygen.
        if (result.aux_info) await this.#checkAux(i.group_id, result.aux_info);
        if (i.policy) await this.admission.keepPolicy(i.session_id, i.policy);
        await this.#put('shares', i.session_id, 'key_share', result.share);
        if (result.aux_info) await this.#put('aux', i.group_id, 'aux_info', result.aux_info);
      },
    });
    if (result.kind === 'keygen') {
      result.share.fill(0);
      result.aux_info?.fill(0);
      delete result.share;
      delete result.aux_info;
    }
    return { info, result };
  }
}
