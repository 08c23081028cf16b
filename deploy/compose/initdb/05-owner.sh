#!/bin/sh
# First start: the platform's owner role, no superuser (ADR 0111). It owns the platform's
# database, creates (and so administers) the plugin roles, and may end their sessions.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE plexica LOGIN NOSUPERUSER CREATEROLE NOCREATEDB PASSWORD '${OWNER_DB_PASSWORD}';
GRANT pg_signal_backend TO plexica;
ALTER DATABASE plexica OWNER TO plexica;
SQL
