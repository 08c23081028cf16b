#!/bin/sh
# First start of the dev PostgreSQL: a database for Keycloak and one login role per plugin, each
# with its own password (ADR 0228). The plugin roles get no privilege on the platform schema (the
# platform grants them their own schemas).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE keycloak LOGIN PASSWORD '${KEYCLOAK_DB_PASSWORD}';
CREATE DATABASE keycloak OWNER keycloak;
CREATE ROLE plugin_crm LOGIN PASSWORD '${PLUGIN_CRM_DB_PASSWORD}';
CREATE ROLE plugin_billing LOGIN PASSWORD '${PLUGIN_BILLING_DB_PASSWORD}';
REVOKE ALL ON DATABASE plexica FROM PUBLIC;
GRANT CONNECT ON DATABASE plexica TO plugin_crm, plugin_billing;
SQL
