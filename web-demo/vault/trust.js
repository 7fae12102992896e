// The coordinator key this page trusts, set when the page is built for a
// deployment (hex of the coordinator's Ed25519 descriptor key, as `mpc
// coordinator` prints it). Empty: the key the demo backend offers is pinned
// on first use in this browser's store and shown; a different key offered
// afterwards is refused. Either way the party never checks descriptors with
// a key fetched afresh from the server it is checking.
export const COORDINATOR_PUBLIC_KEY = '';
