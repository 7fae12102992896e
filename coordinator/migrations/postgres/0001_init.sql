-- Coordinator schema (PostgreSQL): the same tables, columns and rules as
-- migrations/sqlite/0001_init.sql. Integers are BIGINT, bytes BYTEA, JSON is
-- stored as TEXT exactly as on SQLite.

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    key_sha256  BYTEA NOT NULL UNIQUE,
    label       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE parties (
    party_id      TEXT PRIMARY KEY,
    device_type   TEXT NOT NULL,
    ed25519       BYTEA NOT NULL UNIQUE,
    x25519        BYTEA NOT NULL,
    registered_at BIGINT NOT NULL
);

CREATE TABLE accounts (
    account_id        TEXT PRIMARY KEY,
    public_key        BYTEA NOT NULL,
    address           TEXT NOT NULL,
    threshold_t       BIGINT NOT NULL,
    threshold_n       BIGINT NOT NULL,
    parties           TEXT NOT NULL,
    keygen_session_id TEXT NOT NULL UNIQUE,
    created_at        BIGINT NOT NULL
);

CREATE TABLE sessions (
    session_id   TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('waiting','in_progress','completed','failed','expired')),
    threshold_t  BIGINT NOT NULL,
    threshold_n  BIGINT NOT NULL,
    account_id   TEXT,
    message_hash BYTEA,
    descriptor   TEXT NOT NULL,
    group_id     TEXT,
    generate_aux BIGINT NOT NULL DEFAULT 0,
    result       TEXT,
    error        TEXT,
    blamed_party TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX sessions_open ON sessions (status, expires_at);

CREATE TABLE session_participants (
    session_id   TEXT NOT NULL REFERENCES sessions (session_id),
    position     BIGINT NOT NULL,
    party_id     TEXT NOT NULL,
    device_type  TEXT NOT NULL,
    token_sha256 BYTEA NOT NULL,
    joined       BIGINT NOT NULL DEFAULT 0,
    progress     TEXT,
    result       TEXT,
    PRIMARY KEY (session_id, position)
);

CREATE TABLE session_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id TEXT NOT NULL,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    position   BIGINT,
    detail     TEXT NOT NULL
);
CREATE INDEX session_events_by_session ON session_events (session_id, id);
CREATE FUNCTION session_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'session_events is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER session_events_no_update BEFORE UPDATE ON session_events
    FOR EACH ROW EXECUTE FUNCTION session_events_append_only();
CREATE TRIGGER session_events_no_delete BEFORE DELETE ON session_events
    FOR EACH ROW EXECUTE FUNCTION session_events_append_only();

CREATE TABLE aux_groups (
    group_id   TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
