#!/bin/sh
# Creates one role and one database per service, so no service can read
# another's tables. Runs once, on the first start of the PostgreSQL volume.
set -eu
create() {
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
CREATE ROLE $1 LOGIN PASSWORD '$2';
CREATE DATABASE $1 OWNER $1;
REVOKE ALL ON DATABASE $1 FROM PUBLIC;
SQL
}
create coordinator "$COORDINATOR_DB_PASSWORD"
create party1 "$PARTY1_DB_PASSWORD"
create party2 "$PARTY2_DB_PASSWORD"
create party3 "$PARTY3_DB_PASSWORD"
