-- PostgreSQL twin of migrations/sqlite/0002_presignatures.sql.
CREATE TABLE presignatures (
    presignature_id TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    sealed          BYTEA NOT NULL,
    created_at      BIGINT NOT NULL
);
