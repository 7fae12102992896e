-- Coordinator schema: api keys, registered parties, accounts, sessions,
-- participants, an append-only event log, and aux-info party groups.

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    key_sha256  BLOB NOT NULL UNIQUE,
    label       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE parties (
    party_id      TEXT PRIMARY KEY,
    device_type   TEXT NOT NULL,
    ed25519       BLOB NOT NULL UNIQUE,
    x25519        BLOB NOT NULL,
    registered_at INTEGER NOT NULL
);

CREATE TABLE accounts (
    account_id        TEXT PRIMARY KEY,
    public_key        BLOB NOT NULL,
    address           TEXT NOT NULL,
    threshold_t       INTEGER NOT NULL,
    threshold_n       INTEGER NOT NULL,
    parties           TEXT NOT NULL,          -- JSON: [{party_id, keygen_index, identity}]
    keygen_session_id TEXT NOT NULL UNIQUE,
    created_at        INTEGER NOT NULL
);

CREATE TABLE sessions (
    session_id   TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('waiting','in_progress','completed','failed','expired')),
    threshold_t  INTEGER NOT NULL,
    threshold_n  INTEGER NOT NULL,
    account_id   TEXT,
    message_hash BLOB,
    descriptor   TEXT NOT NULL,               -- signed descriptor JSON
    group_id     TEXT,
    generate_aux INTEGER NOT NULL DEFAULT 0,
    result       TEXT,                        -- JSON
    error        TEXT,
    blamed_party TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX sessions_open ON sessions (status, expires_at);

CREATE TABLE session_participants (
    session_id   TEXT NOT NULL REFERENCES sessions (session_id),
    position     INTEGER NOT NULL,
    party_id     TEXT NOT NULL,
    device_type  TEXT NOT NULL,
    token_sha256 BLOB NOT NULL,
    joined       INTEGER NOT NULL DEFAULT 0,
    progress     TEXT,                        -- JSON of the last progress report
    result       TEXT,                        -- JSON of the party's result report
    PRIMARY KEY (session_id, position)
);

CREATE TABLE session_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    position   INTEGER,
    detail     TEXT NOT NULL
);
CREATE INDEX session_events_by_session ON session_events (session_id, id);
CREATE TRIGGER session_events_no_update BEFORE UPDATE ON session_events
BEGIN SELECT RAISE(ABORT, 'session_events is append-only'); END;
CREATE TRIGGER session_events_no_delete BEFORE DELETE ON session_events
BEGIN SELECT RAISE(ABORT, 'session_events is append-only'); END;

CREATE TABLE aux_groups (
    group_id   TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
