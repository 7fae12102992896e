-- Failure reports kept as evidence (issue #15). sessions.accusations is a
-- JSON list of {reporter, accused, reason}, one entry per reporting party,
-- in arrival order: a party's failure report is its own view of the
-- failure, not a verdict; blamed_party is set only from the coordinator's
-- own checks or from agreeing reports of enough independent reporters.
-- PostgreSQL twin of migrations/sqlite/0007_accusations.sql.
ALTER TABLE sessions ADD COLUMN accusations TEXT;
