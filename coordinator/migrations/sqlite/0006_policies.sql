-- Account policies and approvals (issue #13). accounts.policy is the policy
-- fixed at keygen (or by a completed policy change) as party-core's JSON
-- form, policy_hash its SHA-256 (hex) as every party reported it; NULL for
-- an account without a policy. approval_requests holds every request id a
-- signing or policy-change session was created for, per account: the
-- coordinator refuses a reused one (each party refuses it too, from its own
-- record). sessions.error_code is the stable code of a party's refusal.
-- Portable SQL (SQLite and PostgreSQL).
ALTER TABLE accounts ADD COLUMN policy TEXT;
ALTER TABLE accounts ADD COLUMN policy_hash TEXT;
ALTER TABLE sessions ADD COLUMN error_code TEXT;

CREATE TABLE approval_requests (
    account_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, request_id)
);
