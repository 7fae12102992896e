-- A server party's own store. Every secret column is sealed with the party's
-- master key (AES-256-GCM, AAD = party id, account/group id, kind, version).

CREATE TABLE identity (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    sealed BLOB NOT NULL
);

CREATE TABLE key_shares (
    account_id TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE aux_infos (
    group_id   TEXT PRIMARY KEY,
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE primes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
