// Loads the party-wasm module once (page and workers).
import init, * as wasm from './party-wasm/pkg/party_wasm.js';

let ready = null;
export function loadWasm() {
  ready ??= init({ module_or_path: new URL('./party-wasm/pkg/party_wasm_bg.wasm', import.meta.url) });
  return ready.then(() => wasm);
}
