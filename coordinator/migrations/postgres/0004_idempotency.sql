-- Idempotency-Key on POST /keygen and /sign: one row per (API key, key),
-- kept 24 h. key_hash = SHA-256 over the API key's hash and the client's key,
-- so neither is stored; fingerprint = SHA-256 of the route and the request
-- body as parsed; response = the first answer (it may hold device join
-- tokens), AES-256-GCM under a key derived from the API key and the
-- client's key, which the coordinator does not store. NULL while the first
-- request is still creating its session. PostgreSQL twin of migrations/sqlite/0004_idempotency.sql.
CREATE TABLE idempotency_keys (
    key_hash    TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    session_id  TEXT,
    response    BYTEA,
    created_at  BIGINT NOT NULL
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
