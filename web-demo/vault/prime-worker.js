// A Web Worker that generates 1536-bit safe primes with party-wasm, one per
// 'generate' message, and posts each back (bytes, transferred).
import { loadWasm } from './wasm.js';

self.onmessage = async (ev) => {
  if (ev.data !== 'generate') return;
  const wasm = await loadWasm();
  const started = performance.now();
  const prime = wasm.generateSafePrime();
  self.postMessage({ prime, ms: performance.now() - started }, [prime.buffer]);
};
