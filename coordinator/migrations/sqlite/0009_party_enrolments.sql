-- Credentials per role (issue #14): parties authenticate with their identity
-- key, not a shared token. An operator enrols each server party, pinning its
-- Ed25519 identity key (and, optionally, its X25519 key); a registration is
-- accepted only when signed by the enrolled key. A revoked enrolment keeps
-- its row (revoked_at set): the party may not register and no new session
-- names it. Server parties registered before enrolment existed are enrolled
-- with the keys they registered (enrolled_by 'migration'), so an upgrade
-- keeps them working; operators review them with `mpc parties list`.
-- party_request_nonces holds the nonces of signed party requests until
-- they could no longer be fresh, so each request is accepted once.
-- PostgreSQL twin: migrations/postgres/0009_party_enrolments.sql.
CREATE TABLE party_enrolments (
    party_id    TEXT PRIMARY KEY,
    ed25519     BLOB NOT NULL,
    x25519      BLOB,
    enrolled_at INTEGER NOT NULL,
    enrolled_by TEXT NOT NULL,
    revoked_at  INTEGER
);

INSERT INTO party_enrolments (party_id, ed25519, x25519, enrolled_at, enrolled_by)
    SELECT party_id, ed25519, x25519, registered_at, 'migration'
    FROM parties WHERE device_type = 'server';

CREATE TABLE party_request_nonces (
    party_id   TEXT NOT NULL,
    nonce      BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (party_id, nonce)
);
CREATE INDEX party_request_nonces_by_expiry ON party_request_nonces (expires_at);
