-- Presignatures (one per presign session, for one signer set of an account),
-- sealed with the master key. A row is deleted before its partial signature
-- is computed, so it can be used once only.
CREATE TABLE presignatures (
    presignature_id TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    sealed          BLOB NOT NULL,
    created_at      INTEGER NOT NULL
);
