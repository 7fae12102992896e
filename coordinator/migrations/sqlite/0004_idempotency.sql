-- Idempotency-Key on POST /keygen and /sign: one row per (API key, key),
-- kept 24 h. key_hash = SHA-256 over the API key's hash and the client's key,
-- so neither is stored; fingerprint = SHA-256 of the route and the request
-- body as parsed; response = the first answer (it may hold device join
-- tokens), AES-256-GCM under a key derived from the API key and the
-- client's key, which the coordinator does not store. NULL while the first
-- request is still creating its session. Portable SQL.
CREATE TABLE idempotency_keys (
    key_hash    TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    session_id  TEXT,
    response    BLOB,
    created_at  INTEGER NOT NULL
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
