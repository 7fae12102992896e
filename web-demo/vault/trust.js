// The coordinator key this vault trusts, set when the vault is built for a
// deployment (hex of the coordinator's Ed25519 descriptor key, as `mpc
// coordinator` prints it). Empty: the key the vault's own config offers is
// pinned on first use in this browser's vault store and shown; a different
// key offered afterwards is refused. Either way the party never checks
// descriptors with a key fetched afresh from the server it is checking.
export const COORDINATOR_PUBLIC_KEY = '';
