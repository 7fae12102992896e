-- Authorization (issue #13): each account's policy, sealed with the master
-- key (AAD bound to the party and the account), and the durable admission
-- records a party writes, in one transaction, before a session's first frame.

-- The account's policy. `policy_hash` is the SHA-256 policy hash of the sealed
-- policy (checked on every read), the compare-and-swap key of a policy change.
-- `admissions` counts admitted approvals; its update takes the account's
-- write lock first, so concurrent admissions of one account are serialized.
CREATE TABLE policies (
    account_id  TEXT PRIMARY KEY,
    policy_hash BLOB NOT NULL,
    sealed      BLOB NOT NULL,
    admissions  INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL
);

-- Every session this party was admitted to (any kind): a descriptor seen
-- before is refused.
CREATE TABLE admitted_sessions (
    session_id  TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    admitted_at INTEGER NOT NULL
);

-- Every approval request admitted, per account: a request id is used once;
-- the rows of signings are the rate limit's window.
CREATE TABLE approved_requests (
    account_id  TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    signs       INTEGER NOT NULL,
    admitted_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, request_id)
);

CREATE INDEX approved_requests_rate ON approved_requests (account_id, signs, admitted_at);
