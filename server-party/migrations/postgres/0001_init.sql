-- A server party's own store (PostgreSQL): the same tables and meaning as
-- migrations/sqlite/0001_init.sql. Every secret column is sealed with the
-- party's master key (AES-256-GCM, AAD = party id, account/group id, kind,
-- version).

CREATE TABLE identity (
    id     BIGINT PRIMARY KEY CHECK (id = 1),
    sealed BYTEA NOT NULL
);

CREATE TABLE key_shares (
    account_id TEXT PRIMARY KEY,
    public_key BYTEA NOT NULL,
    sealed     BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE aux_infos (
    group_id   TEXT PRIMARY KEY,
    sealed     BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE primes (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sealed     BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
