-- Tenants, scoped revocable API keys and request limits (issue #14, items 4
-- and 5). Every API key, account and session belongs to a tenant; rows made
-- before tenants existed go to the default tenant, and keys made before
-- scopes existed keep every scope (they could do everything). A revoked key
-- keeps its row (revoked_at set) so that it stays listed and stays revoked
-- after a restart. Sessions remember the API key that created them, for the
-- per-key quota of open sessions. api_key_usage is the per-key fixed window
-- of the request rate limit, shared by every coordinator instance.
-- SQLite twin: migrations/sqlite/0005_tenants.sql.
ALTER TABLE api_keys ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default';
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT 'read,keygen,sign,admin';
ALTER TABLE api_keys ADD COLUMN revoked_at BIGINT;
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);

ALTER TABLE accounts ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default';
CREATE INDEX accounts_by_tenant ON accounts (tenant_id, created_at);

ALTER TABLE sessions ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default';
ALTER TABLE sessions ADD COLUMN api_key_id TEXT;
CREATE INDEX sessions_open_by_key ON sessions (api_key_id, status);

CREATE TABLE api_key_usage (
    key_id       TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    requests     BIGINT NOT NULL
);
