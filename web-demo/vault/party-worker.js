// A Web Worker of the vault that runs one session of this browser party: it
// opens the sealed store itself, so the seed, the share, aux info and primes
// stay in the worker. The vault gets progress and the public result only.
//
// The coordinator key it checks descriptors with is the one pinned in the
// vault's store (never the server's current offer). It runs only the kind of
// session the vault asked for (`kind`): a descriptor of another kind is
// refused before any input is read or any connection made, so asking for "a
// keygen" can never make it sign. A signing runs only for what the user
// approved in the vault (`approved`), only for the account the approval
// names (`accountId`): the session machine refuses anything else before
// connecting to the router, and the share is read only then.
import { loadWasm } from './wasm.js';
import { PartyStore } from './store.js';
import { runDeviceSession } from './party-wasm/js/host.mjs';

const post = (m) => self.postMessage(m);

self.onmessage = async (ev) => {
  const { config, sessionId, joinToken, coordinatorUrl, approved, kind, accountId } = ev.data;
  try {
    const wasm = await loadWasm();
    const store = await PartyStore.open(wasm);
    const coordinatorPublicKey = await store.get('coordinator-key');
    if (!coordinatorPublicKey) throw Object.assign(new Error('no coordinator key is pinned in this browser'), { code: 'no_coordinator_key' });
    const partyId = await store.get('party-id');
    const seed = await store.getSecret(partyId, 'identity', '');
    const identity = wasm.Identity.fromSeed(seed);
    seed.fill(0);
    const started = performance.now();
    const { info, result } = await runDeviceSession({
      wasm,
      identity,
      coordinatorUrl,
      routerWsUrl: config.router_ws_url,
      routerWsUrls: config.router_ws_urls,
      coordinatorPublicKey,
      sessionId,
      joinToken,
      approved,
      kinds: [kind],
      accountId: kind === 'sign' ? accountId : undefined,
      admission: store,
      onProgress: (p) => post({ type: 'progress', progress: p, ms: performance.now() - started }),
      log: (message) => post({ type: 'log', message }),
      inputs: async (i) => {
        if (i.kind === 'sign') {
          // Backstop of the kind check above: no approval, or an approval
          // for another account, no share.
          if (kind !== 'sign' || !approved) throw Object.assign(new Error('not_approved: no signing was approved in the vault'), { code: 'not_approved' });
          if (i.account_id !== accountId) throw Object.assign(new Error('not_approved: the approval names another account'), { code: 'not_approved' });
          return { share: await store.getSecret(partyId, 'key_share', i.account_id) };
        }
        if (i.generate_aux) {
          post({ type: 'need-primes' });
          // The vault's prime pool hands over the id of a sealed prime set.
          const primesId = await new Promise((resolve) => {
            self.onmessage = (m) => m.data?.type === 'primes-ready' && resolve(m.data.id);
          });
          const primes = await store.getSecret(partyId, 'primes', primesId);
          await store.delete(`primes:${primesId}`); // a prime set is used once
          return { primes };
        }
        let auxInfo = await store.getSecret(partyId, 'aux_info', i.group_id);
        // TEST MODE only (the server's offer and a wasm build made for
        // tests): the PUBLIC test aux info of this keygen index, kept sealed
        // for the group like aux info this browser generated.
        if (!auxInfo && config.insecure_test_aux && wasm.insecureTestBuild()) {
          post({ type: 'log', message: 'INSECURE TEST MODE: using the PUBLIC test aux info' });
          const r = await fetch(`api/test-aux?parties=${i.parties}&index=${i.keygen_index}`);
          if (!r.ok) throw new Error('test aux info unavailable');
          const { aux_info: hex } = await r.json();
          auxInfo = Uint8Array.from(hex.match(/../g), (h) => parseInt(h, 16));
          await store.putSecret(partyId, 'aux_info', i.group_id, auxInfo);
        }
        return { auxInfo };
      },
      // Sealed before the result is reported.
      store: async (i, r) => {
        if (r.kind !== 'keygen') return;
        // Stored aux info is never replaced (a wallet made with aux info of
        // two runs can never sign): other aux info for the group keeps
        // nothing of this keygen.
        if (r.aux_info) {
          const stored = await store.getSecret(partyId, 'aux_info', i.group_id);
          const same = stored !== null && stored.length === r.aux_info.length && stored.every((b, k) => b === r.aux_info[k]);
          stored?.fill(0);
          if (stored !== null && !same) {
            const e = new Error('aux_info_conflict: this party group already holds other aux info; nothing was stored');
            e.code = 'aux_info_conflict';
            throw e;
          }
        }
        if (i.policy) await store.keepPolicy(i.session_id, i.policy);
        await store.putSecret(partyId, 'key_share', i.session_id, r.share);
        if (r.aux_info) await store.putSecret(partyId, 'aux_info', i.group_id, r.aux_info);
      },
    });
    if (result.kind === 'keygen') {
      result.share.fill(0);
      result.aux_info?.fill(0);
      delete result.share;
      delete result.aux_info;
    }
    post({ type: 'done', info, result, ms: performance.now() - started });
  } catch (e) {
    post({ type: 'error', message: e.message ?? String(e), code: e.code ?? null });
  }
};
