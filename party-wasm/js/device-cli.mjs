#!/usr/bin/env node
// A device party on the command line (Node): joins one session with a join
// token from the coordinator's `join_tokens`, runs it through party-wasm and
// keeps its identity, shares and aux info sealed in a state directory.
//
//   node party-wasm/js/device-cli.mjs identity --state DIR [--party-id ID]
//   node party-wasm/js/device-cli.mjs join --state DIR --session ID --token TOKEN \
//        --coordinator http://127.0.0.1:8080 --router ws://127.0.0.1:8081/ws \
//        --coordinator-key HEX [--approve-hash HEX | --approve-message TEXT --digest keccak256|sha256]
//        [--insecure-test-data party-core/test-data]
//
// --coordinator-key is the key this device trusts (configured, never fetched
// from the coordinator). --approve-hash / --approve-message: what the user
// approved for a signing; a session that signs anything else is refused
// before the device connects to the router.
//
// --router takes a comma-separated list: the party fails over between them.
//
// The token can also come from the MPC_JOIN_TOKEN environment variable.
// --insecure-test-data: PUBLIC test primes (index 4) and test aux info, for
// tests only; loudly logged.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { NodeDevice } from './node-device.mjs';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    state: { type: 'string' },
    'party-id': { type: 'string' },
    session: { type: 'string' },
    token: { type: 'string' },
    coordinator: { type: 'string', default: 'http://127.0.0.1:8080' },
    router: { type: 'string', default: 'ws://127.0.0.1:8081/ws' },
    'coordinator-key': { type: 'string' },
    'approve-hash': { type: 'string' },
    'approve-message': { type: 'string' },
    digest: { type: 'string', default: 'keccak256' },
    'insecure-test-data': { type: 'string' },
  },
});

function fail(msg) {
  console.error(`error: ${msg}`);
  process.exit(2);
}

/** PUBLIC test data (never for real keys). */
function testData(dir) {
  console.error(`WARNING: INSECURE TEST MODE: using the PUBLIC test primes / aux info in ${dir}`);
  const load = async (name) => JSON.parse(await readFile(join(dir, name), 'utf8'));
  return {
    primes: async () => Buffer.from((await load('primes.json')).parties[4], 'hex'),
    testAux: async (info) => Buffer.from((await load(`aux-n${info.parties}.json`)).aux[info.keygen_index], 'hex'),
  };
}

const command = positionals[0];
if (!values.state) fail('--state DIR is required');
const device = await NodeDevice.open(values.state, { partyId: values['party-id'] });
if (command === 'identity') {
  console.log(JSON.stringify({ party_id: device.partyId, identity: device.identity.publicKey() }));
} else if (command === 'join') {
  const token = values.token ?? process.env.MPC_JOIN_TOKEN;
  if (!values.session || !token || !values['coordinator-key']) fail('--session, --token and --coordinator-key are required');
  if (values['approve-hash'] && values['approve-message']) fail('give --approve-hash or --approve-message, not both');
  const approved = values['approve-hash']
    ? { hash: values['approve-hash'].replace(/^0x/, '') }
    : values['approve-message'] !== undefined
      ? { message: values['approve-message'], digest: values.digest }
      : undefined;
  const test = values['insecure-test-data'] ? testData(values['insecure-test-data']) : {};
  const started = Date.now();
  try {
    const { info, result } = await device.run({
      coordinatorUrl: values.coordinator.replace(/\/$/, ''),
      // Several routers, comma-separated: the next one after a connection failure.
      routerWsUrls: values.router.split(',').map((u) => u.trim()).filter(Boolean),
      coordinatorPublicKey: values['coordinator-key'],
      sessionId: values.session,
      joinToken: token,
      approved,
      primes: test.primes ?? (async () => {
        console.error('  generating 4 safe primes (minutes with the pure-Rust integers in wasm)');
        const parts = [];
        for (let i = 0; i < 4; i++) parts.push(device.wasm.generateSafePrime());
        return device.wasm.primeSetFromParts(parts);
      }),
      testAux: test.testAux,
      onProgress: (p) => console.error(`  ${p.stage}${p.round ? ` round ${p.round}` : ''}`),
      log: (m) => console.error(`  ${m}`),
    });
    console.log(JSON.stringify({ session_id: info.session_id, kind: info.kind, elapsed_ms: Date.now() - started, result }));
  } catch (e) {
    fail(e.message);
  }
} else {
  fail('usage: device-cli.mjs identity|join --state DIR ...');
}
