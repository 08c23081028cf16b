"""The login core, worker and web serve with: no superuser, and the owner of no platform table.

The owner role (ADR 0111) runs the migrations and the backup; the runtime role (ADR 0215) is
``LOGIN NOSUPERUSER CREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS``. It reads and writes the
platform's tables but cannot alter them, creates the tenant schemas (and so owns them and what
the tenant migrations make there) and the plugins' roles and logins (and so administers only
those). The owner is a member of it, so ``plexica migrate`` can migrate the tenant schemas; the
runtime role is a member of nothing, so it can never act as the owner.

``ensure_runtime`` runs as the owner, in ``plexica migrate``, before and after the tenant fleet:
idempotent, it also hands the objects an owner made in tenant schemas (before this role existed,
or by a tenant migration) over to the runtime role.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy.engine import make_url

from plexica.kit.db import PLATFORM_SCHEMA, quote_ident
from plexica.kit.provisioning import SCHEMA_PREFIX

RUNTIME_ATTRIBUTES = "LOGIN NOSUPERUSER CREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS"

# The owner's objects in tenant schemas, and the plugin roles it administers, become the runtime
# role's. Platform and plugin_api objects stay the owner's: the runtime role gets DML on them.
_GRANTS = """
DO $grant$
DECLARE
    runtime text := {runtime};
    owner_role text := current_user;
    r record;
BEGIN
    EXECUTE format('GRANT CONNECT, CREATE, TEMPORARY ON DATABASE %I TO %I',
                   current_database(), runtime);
    EXECUTE format('GRANT USAGE ON SCHEMA {platform} TO %I', runtime);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {platform}'
                   ' TO %I', runtime);
    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {platform} TO %I',
                   runtime);
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {platform} TO %I', runtime);
    -- The migrations' bookkeeping is the owner's alone.
    IF to_regclass('{platform}.alembic_version') IS NOT NULL THEN
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE ON {platform}.alembic_version FROM %I',
                       runtime);
    END IF;
    -- Tables a later migration adds are usable before the next grant pass.
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA {platform}'
                   ' GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', runtime);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA {platform}'
                   ' GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO %I', runtime);
    -- The runtime role hands plugin_api to each plugin login it makes (ADR 0078).
    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'plugin_api') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA plugin_api TO %I WITH GRANT OPTION', runtime);
        EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA plugin_api TO %I'
                       ' WITH GRANT OPTION', runtime);
    END IF;
    FOR r IN SELECT n.nspname FROM pg_namespace n JOIN pg_roles o ON o.oid = n.nspowner
             WHERE o.rolname = owner_role AND starts_with(n.nspname, {prefix}) LOOP
        EXECUTE format('ALTER SCHEMA %I OWNER TO %I', r.nspname, runtime);
    END LOOP;
    FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_roles o ON o.oid = c.relowner
             WHERE o.rolname = owner_role AND starts_with(n.nspname, {prefix})
               AND c.relkind IN ('r', 'p', 'v', 'm') LOOP
        EXECUTE format('ALTER %s %s OWNER TO %I',
            CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                           ELSE 'TABLE' END,
            r.name, runtime);
    END LOOP;
    -- Sequences of serial and identity columns followed their table; the others go one by one.
    FOR r IN SELECT c.oid::regclass AS name FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_roles o ON o.oid = c.relowner
             WHERE o.rolname = owner_role AND starts_with(n.nspname, {prefix})
               AND c.relkind = 'S' LOOP
        EXECUTE format('ALTER SEQUENCE %s OWNER TO %I', r.name, runtime);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS name FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_roles o ON o.oid = p.proowner
             WHERE o.rolname = owner_role AND starts_with(n.nspname, {prefix}) LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO %I', r.name, runtime);
    END LOOP;
    FOR r IN SELECT t.oid::regtype AS name FROM pg_type t
             JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_roles o ON o.oid = t.typowner
             WHERE o.rolname = owner_role AND starts_with(n.nspname, {prefix})
               AND t.typrelid = 0 AND t.typelem = 0 LOOP
        EXECUTE format('ALTER TYPE %s OWNER TO %I', r.name, runtime);
    END LOOP;
    IF to_regclass('{platform}.plugin_installations') IS NOT NULL THEN
        FOR r IN SELECT g.rolname FROM pg_roles g
                 WHERE g.rolname IN (SELECT db_role FROM {platform}.plugin_installations
                                     UNION SELECT role_name FROM {platform}.plugin_logins)
                   AND NOT pg_has_role(runtime, g.oid, 'USAGE WITH ADMIN OPTION') LOOP
            EXECUTE format('GRANT %I TO %I WITH ADMIN OPTION, INHERIT TRUE, SET TRUE',
                           r.rolname, runtime);
        END LOOP;
    END IF;
END
$grant$;
"""


class RuntimeRoleError(ValueError):
    """The runtime role cannot be what ADR 0215 requires; the message says why."""


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def runtime_credentials(runtime_url: str) -> tuple[str, str]:
    """The role and password named by the runtime login's URL."""
    url = make_url(runtime_url)
    if not url.username or not url.password:
        raise RuntimeRoleError("the runtime database URL must name its user and password")
    return url.username, str(url.password)


async def ensure_runtime(conn: asyncpg.Connection, role: str, password: str) -> None:
    """Create or update the runtime role and give it what serving needs; ``conn`` is the owner's
    (``CREATEROLE``: it administers the role it makes, and nothing it did not make)."""
    owner = str(await conn.fetchval("SELECT current_user"))
    if role == owner:
        raise RuntimeRoleError("the runtime role must not be the owner role")
    r = quote_ident(role)
    found = await conn.fetchrow(
        "SELECT rolsuper OR rolbypassrls OR rolreplication OR rolcreatedb AS above FROM pg_roles"
        " WHERE rolname = $1",
        role,
    )
    if found is None:
        await conn.execute(f"CREATE ROLE {r} {RUNTIME_ATTRIBUTES} PASSWORD {_literal(password)}")
    elif found["above"]:
        # Only a superuser (CREATEDB: a role that has it) may take these away; serving with
        # them is what this role avoids. The owner may only name attributes it has.
        raise RuntimeRoleError(
            f"the runtime role {role} has SUPERUSER, REPLICATION, BYPASSRLS or CREATEDB"
        )
    else:
        await conn.execute(f"ALTER ROLE {r} LOGIN CREATEROLE PASSWORD {_literal(password)}")
    member = await conn.fetchval(
        "SELECT pg_has_role(current_user, $1, 'SET') AND pg_has_role(current_user, $1, 'USAGE')",
        role,
    )
    if not member:
        await conn.execute(f"GRANT {r} TO CURRENT_USER WITH INHERIT TRUE, SET TRUE")
    await conn.execute(
        _GRANTS.format(
            runtime=_literal(role), platform=PLATFORM_SCHEMA, prefix=_literal(SCHEMA_PREFIX)
        )
    )


async def ensure_runtime_url(owner_url: str, runtime_url: str) -> None:
    role, password = runtime_credentials(runtime_url)
    url = make_url(owner_url).set(drivername="postgresql")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        # One grant pass at a time: GRANT rewrites shared catalog rows.
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('plexica.runtime_role'))")
            await ensure_runtime(conn, role, password)
    finally:
        await conn.close()
