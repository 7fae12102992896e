-- PostgreSQL twin of migrations/sqlite/0003_presignatures.sql. The presignature pool: one row per completed presign session, for one
-- signer set of an account. A sign request claims an available row with one
-- conditional UPDATE (status 'available' -> 'used'), so concurrent requests
-- never get the same presignature; a used row never becomes available again.
-- sessions.group_id holds the signer set of presign and online-sign sessions.
CREATE TABLE presignatures (
    presignature_id TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    signers         TEXT NOT NULL,   -- party ids in keygen-index order, comma-separated
    status          TEXT NOT NULL CHECK (status IN ('available', 'used')),
    used_by         TEXT,            -- the online signing session
    created_at      BIGINT NOT NULL,
    used_at         BIGINT
);
CREATE INDEX presignatures_available ON presignatures (account_id, signers, status, created_at);
