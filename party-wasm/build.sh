#!/usr/bin/env bash
# Builds the party-wasm JS package into party-wasm/pkg (gitignored):
# the .wasm in the size-and-speed `wasm` profile, the wasm-bindgen glue
# (`--target web`: ES module, loads in browsers, workers and Node) and the
# TypeScript types. Needs wasm-bindgen-cli at the version of wasm-bindgen in
# Cargo.lock (.ci/run installs it) and `npm ci` (wasm-opt from the npm
# package binaryen: Debian's binaryen 108 is too old, its -O3 output of this
# module fails to instantiate).
set -euo pipefail
cd "$(dirname "$0")/.."
# Warnings are errors here: this is the one wasm32 build of party-core and
# party-wasm (clippy on the host covers their code; none is wasm-only).
# PARTY_WASM_FEATURES=insecure-test-data makes the test build (scripts/test-js):
# only it accepts PUBLIC test primes and aux info from the demo server.
features=()
[ -n "${PARTY_WASM_FEATURES:-}" ] && features=(--features "$PARTY_WASM_FEATURES")
# PARTY_WASM_PROFILE=wasm-test: the quicker-to-build test profile (Cargo.toml).
profile=${PARTY_WASM_PROFILE:-wasm}
RUSTFLAGS="${RUSTFLAGS:-} -D warnings" \
  cargo build -p party-wasm --target wasm32-unknown-unknown --profile "$profile" "${features[@]}"
rm -rf party-wasm/pkg
wasm-bindgen --target web --remove-name-section --remove-producers-section \
  --out-dir party-wasm/pkg \
  "target/wasm32-unknown-unknown/$profile/party_wasm.wasm"
wasm_opt=node_modules/.bin/wasm-opt
[ -x "$wasm_opt" ] || { echo "$wasm_opt missing: run npm ci" >&2; exit 1; }
# PARTY_WASM_OPT=-O1 for the test build: a quarter of -O3's time.
"$wasm_opt" "${PARTY_WASM_OPT:--O3}" --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals \
  party-wasm/pkg/party_wasm_bg.wasm -o party-wasm/pkg/party_wasm_bg.wasm
wasm=party-wasm/pkg/party_wasm_bg.wasm
echo "party-wasm: $(stat -c %s "$wasm") bytes raw, $(gzip -9c "$wasm" | wc -c) bytes gzipped"
