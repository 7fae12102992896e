-- PostgreSQL twin of migrations/sqlite/0003_authz.sql.
CREATE TABLE policies (
    account_id  TEXT PRIMARY KEY,
    policy_hash BYTEA NOT NULL,
    sealed      BYTEA NOT NULL,
    admissions  BIGINT NOT NULL DEFAULT 0,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE admitted_sessions (
    session_id  TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    admitted_at BIGINT NOT NULL
);

CREATE TABLE approved_requests (
    account_id  TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    signs       BIGINT NOT NULL,
    admitted_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, request_id)
);

CREATE INDEX approved_requests_rate ON approved_requests (account_id, signs, admitted_at);
