-- Device parties (browsers, JS devices): one row per device slot of a
-- session. A device presents its identity key with its join token
-- (POST /api/v1/mpc/sessions/{id}/join), which binds the slot to that key.
-- A keygen with a device whose key is not known yet is stored with an empty
-- sessions.descriptor and its unsigned descriptor in pending_descriptors; it
-- is signed, registered with the router and sent to the server parties once
-- every device slot is bound. Portable SQL (SQLite and PostgreSQL).

CREATE TABLE device_slots (
    session_id  TEXT NOT NULL,
    position    INTEGER NOT NULL,
    party_id    TEXT NOT NULL,
    device_type TEXT NOT NULL,
    ed25519     TEXT,            -- hex; NULL until the device presents its key
    x25519      TEXT,            -- hex
    bound_at    BIGINT,
    PRIMARY KEY (session_id, position)
);

CREATE TABLE pending_descriptors (
    session_id TEXT PRIMARY KEY,
    descriptor TEXT NOT NULL     -- unsigned SessionDescriptor JSON; unbound device slots carry zero keys
);
