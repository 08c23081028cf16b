"""SQL of a plugin's database objects in a tenant schema: its role, the platform's functions
for it, the check of what its migrations made, and the handing back of restored objects."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.kit.db import quote_ident as _ident
from plexica_sdk.db import installation_function, publish_function


async def schema_exists(session: AsyncSession, schema: str) -> bool:
    found = await session.execute(
        text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}
    )
    return found.scalar() is not None


async def role_exists(session: AsyncSession, role: str) -> bool:
    found = await session.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
    return found.scalar() is not None


async def prepare_migration_role(
    session: AsyncSession,
    role: str,
    schema: str,
    password: str,
    *,
    statement_timeout_ms: int,
    connection_limit: int = 2,
) -> None:
    """Make the plugin's tenant role able to log in, for its migration only (ADR 0110).

    It logs in with a secret made for this migration, inherits nothing, may create nothing but
    objects in the tenant schema, and starts every session with that schema as its only path and
    the migration's time limit. It is a member of no role; the platform's user is made a member
    of it (not the other way round) so that in-process plugins of the platform's own code and
    the cleanup can still reach its objects."""
    r, s = _ident(role), _ident(schema)
    await _lock_acls(session)
    if await role_exists(session, role):
        await session.execute(
            text(
                # The other attributes were set at creation and a role cannot change its own.
                f"ALTER ROLE {r} LOGIN NOINHERIT"
                f" CONNECTION LIMIT {int(connection_limit)} PASSWORD '{password}'"
            )
        )
    else:
        await session.execute(
            text(
                f"CREATE ROLE {r} LOGIN NOINHERIT NOCREATEDB NOCREATEROLE NOREPLICATION"
                f" NOBYPASSRLS CONNECTION LIMIT {int(connection_limit)} PASSWORD '{password}'"
            )
        )
        await session.execute(text(f"GRANT {r} TO CURRENT_USER"))
    # Whatever an earlier migration set for itself (a role may ALTER its own defaults, also
    # IN DATABASE, which outranks the role's own) goes.
    database = (await session.execute(text("SELECT current_database()"))).scalar_one()
    await session.execute(text(f"ALTER ROLE {r} RESET ALL"))
    await session.execute(text(f"ALTER ROLE {r} IN DATABASE {_ident(database)} RESET ALL"))
    for name, value in (
        ("search_path", s),
        ("statement_timeout", str(int(statement_timeout_ms))),
        ("lock_timeout", str(int(statement_timeout_ms))),
        ("idle_in_transaction_session_timeout", str(int(statement_timeout_ms))),
    ):
        await session.execute(text(f"ALTER ROLE {r} SET {name} = {value}"))
    await session.execute(text(f"GRANT CONNECT ON DATABASE {_ident(database)} TO {r}"))
    await session.execute(text(f"GRANT USAGE, CREATE ON SCHEMA {s} TO {r}"))


async def _lock_acls(session: AsyncSession) -> None:
    # GRANT/REVOKE rewrite one catalog row (the database's, a schema's); two transactions doing
    # it at once fail with "tuple concurrently updated", so they take turns.
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('plexica.plugin_acls'))"))


async def seal_role(session: AsyncSession, role: str, schema: str) -> None:
    """After (or instead of) a migration: the role can no longer log in, nor create objects;
    it is reached only with SET ROLE by the plugin's login (ADR 0076)."""
    if not await role_exists(session, role):
        return
    r = _ident(role)
    await _lock_acls(session)
    await session.execute(text(f"ALTER ROLE {r} NOLOGIN PASSWORD NULL"))
    await session.execute(text(f"ALTER ROLE {r} RESET ALL"))
    database = (await session.execute(text("SELECT current_database()"))).scalar_one()
    await session.execute(text(f"ALTER ROLE {r} IN DATABASE {_ident(database)} RESET ALL"))
    await session.execute(text(f"REVOKE CONNECT ON DATABASE {_ident(database)} FROM {r}"))
    if await schema_exists(session, schema):
        await session.execute(text(f"GRANT USAGE ON SCHEMA {_ident(schema)} TO {r}"))
        await session.execute(text(f"REVOKE CREATE ON SCHEMA {_ident(schema)} FROM {r}"))


async def end_role_sessions(session: AsyncSession, role: str) -> None:
    """End every session logged in as the role (a migration that outlived its time, or one
    left by a crash), waiting up to 5 s each for it to be gone with its locks."""
    await session.execute(
        text(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE usename = :r AND pid <> pg_backend_pid()"
        ),
        {"r": role},
    )


async def foreign_objects(session: AsyncSession, role: str, schema: str, prefix: str) -> list[str]:
    """What the role made that a plugin may not have, as checked by the platform's user."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    return await owned_problems(driver, role, schema, prefix)


# Run on the plugin's own migration connection before it commits, and again by the platform
# after: only catalog tables, schema-qualified, after a search path of pg_catalog alone, so that
# nothing the migration created (a function, an operator, a temporary table) can stand in.
# A function (or aggregate) named like one of PostgreSQL's is refused whatever its arguments:
# an overload with a closer match (``array_agg(uuid)``, ``jsonb_build_object(text, text)``,
# ``pg_advisory_xact_lock(integer)``) would be picked by any unqualified call made with the
# tenant schema on the search path (another plugin's queries, the platform's tenant session)
# and run the plugin's code as that caller. The table prefix does not prevent it when the
# plugin's id is the start of a built-in's name (``array``, ``jsonb``, ``pg``, ``to``, ...).
# Names of the platform's own functions in the tenant schema (``plexica_*``) are refused too.
_OWNED_PROBLEMS = """
WITH me AS (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1),
here AS (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
SELECT pg_catalog.concat(n.nspname, '.', c.relname) FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace, me
 WHERE c.relowner = me.oid AND n.nspname OPERATOR(pg_catalog.<>) 'pg_toast'
   AND (n.nspname OPERATOR(pg_catalog.<>) $2
        OR NOT pg_catalog.starts_with(c.relname::text, $3))
UNION ALL
SELECT pg_catalog.concat(n.nspname, '.', p.proname) FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace, me
 WHERE p.proowner = me.oid
   AND (n.nspname OPERATOR(pg_catalog.<>) $2
        OR NOT pg_catalog.starts_with(p.proname::text, $3))
UNION ALL
SELECT pg_catalog.concat(n.nspname, '.', t.typname) FROM pg_catalog.pg_type t
  JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace, me
 WHERE t.typowner = me.oid AND t.typrelid OPERATOR(pg_catalog.=) 0
   AND (n.nspname OPERATOR(pg_catalog.<>) $2
        OR NOT (pg_catalog.starts_with(t.typname::text, $3)
                OR pg_catalog.starts_with(t.typname::text, pg_catalog.concat('_', $3))))
UNION ALL
SELECT pg_catalog.concat('function named like a built-in or the platform''s: ', p.proname)
  FROM pg_catalog.pg_proc p, me
 WHERE p.proowner = me.oid
   AND (pg_catalog.starts_with(p.proname::text, 'plexica_')
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc b
                    WHERE b.proname OPERATOR(pg_catalog.=) p.proname
                      AND b.pronamespace OPERATOR(pg_catalog.=)
                          'pg_catalog'::pg_catalog.regnamespace))
UNION ALL
SELECT pg_catalog.concat('security definer function ', p.proname) FROM pg_catalog.pg_proc p, me
 WHERE p.proowner = me.oid AND p.prosecdef
UNION ALL
SELECT pg_catalog.concat(c.relname, ' granted to others') FROM pg_catalog.pg_class c, me,
       LATERAL pg_catalog.aclexplode(c.relacl) a
 WHERE c.relowner = me.oid AND a.grantee OPERATOR(pg_catalog.<>) me.oid
UNION ALL
SELECT pg_catalog.concat(p.proname, ' granted to others') FROM pg_catalog.pg_proc p, me,
       LATERAL pg_catalog.aclexplode(p.proacl) a
 WHERE p.proowner = me.oid AND a.grantee OPERATOR(pg_catalog.<>) me.oid
UNION ALL
SELECT 'default privileges' FROM pg_catalog.pg_default_acl d, me WHERE d.defaclrole = me.oid
UNION ALL
SELECT 'settings of its own in a database' FROM pg_catalog.pg_db_role_setting r, me
 WHERE r.setrole OPERATOR(pg_catalog.=) me.oid AND r.setdatabase OPERATOR(pg_catalog.<>) 0
UNION ALL
SELECT pg_catalog.concat('member of ', m.roleid::regrole::text)
  FROM pg_catalog.pg_auth_members m, me WHERE m.member = me.oid
UNION ALL
SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_catalog.pg_shdepend d, me, here
 WHERE d.refobjid = me.oid AND d.deptype OPERATOR(pg_catalog.=) 'o'
   AND d.dbid IN (here.oid, 0)
   AND d.classid NOT IN ('pg_catalog.pg_class'::pg_catalog.regclass,
                         'pg_catalog.pg_proc'::pg_catalog.regclass,
                         'pg_catalog.pg_type'::pg_catalog.regclass)
"""


async def owned_problems(conn: Any, role: str, schema: str, prefix: str) -> list[str]:
    """Objects the role owns outside its schema or prefix, of kinds a plugin may not own
    (operators, large objects, ...), security definer functions, privileges it granted to
    others, default privileges, and memberships. ``conn`` is an asyncpg connection in a
    transaction: the plugin's own before it commits, or the platform's."""
    await conn.execute("SET LOCAL search_path TO pg_catalog, pg_temp")
    rows = await conn.fetch(_OWNED_PROBLEMS, role, schema, prefix)
    return sorted({str(r[0]) for r in rows})


async def create_functions(
    session: AsyncSession, schema: str, role: str, plugin_id: str, tenant_id: UUID
) -> None:
    """The plugin's only windows on the platform schema, bound to this tenant and plugin.

    SECURITY DEFINER (owned by the platform) with a fixed search path; only the plugin's role
    may execute them, and their arguments cannot name another tenant or plugin."""
    s, r = _ident(schema), _ident(role)
    state, pub = installation_function(plugin_id), publish_function(plugin_id)
    tenant = str(tenant_id)
    await session.execute(
        text(
            f"CREATE OR REPLACE FUNCTION {s}.{state}() RETURNS jsonb LANGUAGE sql STABLE"  # noqa: S608
            " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$"
            " SELECT jsonb_build_object('status', status, 'version', version, 'settings', settings)"
            " FROM platform.plugin_installations"
            f" WHERE tenant_id = '{tenant}'::uuid AND plugin_id = '{plugin_id}' $fn$"
        )
    )
    await session.execute(
        text(
            f"CREATE OR REPLACE FUNCTION {s}.{pub}(event_type text, event_subject text,"  # noqa: S608
            " event_data jsonb) RETURNS uuid LANGUAGE plpgsql VOLATILE SECURITY DEFINER"
            " SET search_path = pg_catalog, pg_temp AS $fn$ DECLARE new_id uuid := uuidv7();"
            # The publishing request's span (set by the SDK for this transaction, ADR 0201):
            # only a well-formed W3C traceparent is kept.
            " trace text := substring(current_setting('plexica.traceparent', true)"
            "  FROM '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$');"
            " BEGIN"
            f" IF left(event_type, {len(plugin_id) + 1}) <> '{plugin_id}.' THEN"
            f"  RAISE EXCEPTION 'event type must start with {plugin_id}.' USING ERRCODE = '42501';"
            " END IF;"
            " IF NOT EXISTS (SELECT 1 FROM platform.plugin_installations"
            f"  WHERE tenant_id = '{tenant}'::uuid AND plugin_id = '{plugin_id}'"
            "  AND status = 'active') THEN"
            "  RAISE EXCEPTION 'plugin is not active' USING ERRCODE = '42501';"
            " END IF;"
            " INSERT INTO platform.outbox"
            " (id, tenant_id, type, source, subject, time, data, traceparent)"
            f" VALUES (new_id, '{tenant}'::uuid, event_type, '/plugins/{plugin_id}',"
            " event_subject, now(), event_data, trace);"
            # What the plugin did, in the tenant's audit log (ADR 0238): the actor is the one
            # the plugin's SDK names, the action is the event type, in the plugin's namespace.
            " INSERT INTO platform.audit_log"
            " (id, actor, action, tenant_id, target, after, trace_id, request_id)"
            " VALUES (uuidv7(), coalesce(left(nullif(current_setting('plexica.actor', true), ''),"
            f" 320), 'plugin:{plugin_id}'), event_type, '{tenant}'::uuid, event_subject,"
            " event_data, substring(trace FROM 4 FOR 32), substring("
            " current_setting('plexica.request_id', true) FROM '^[A-Za-z0-9._:-]{8,128}$'));"
            " RETURN new_id; END $fn$"
        )
    )
    for fn in (f"{s}.{state}()", f"{s}.{pub}(text, text, jsonb)"):
        await session.execute(text(f"REVOKE ALL ON FUNCTION {fn} FROM PUBLIC"))
        await session.execute(text(f"GRANT EXECUTE ON FUNCTION {fn} TO {r}"))


async def drop_plugin_objects(
    session: AsyncSession, schema: str, role: str, plugin_id: str
) -> None:
    """Everything the plugin has in the tenant: its tables (owned by its role), the role and
    the platform's functions for it."""
    s = _ident(schema)
    if await schema_exists(session, schema):
        await session.execute(
            text(f"DROP FUNCTION IF EXISTS {s}.{installation_function(plugin_id)}()")
        )
        await session.execute(
            text(f"DROP FUNCTION IF EXISTS {s}.{publish_function(plugin_id)}(text, text, jsonb)")
        )
    if await role_exists(session, role):
        await session.execute(text(f"DROP OWNED BY {_ident(role)} CASCADE"))
        await session.execute(text(f"DROP ROLE {_ident(role)}"))


# Object kinds a restore hands to a plugin's role, and the statement that does it.
_RELATIONS = {
    "r": "TABLE",
    "p": "TABLE",
    "v": "VIEW",
    "m": "MATERIALIZED VIEW",
    "f": "FOREIGN TABLE",
}


async def give_prefixed_objects(session: AsyncSession, schema: str, prefix: str, role: str) -> int:
    """A restored schema's objects named with the plugin's prefix become its role's again (a
    backup keeps no owners); how many changed hands. Tables first: their indexes and owned
    sequences follow them."""
    s, r = _ident(schema), _ident(role)
    changed = 0
    like = prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
    relations = await session.execute(
        text(
            "SELECT c.relname, c.relkind::text FROM pg_catalog.pg_class c"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = :s AND c.relname LIKE :like AND c.relkind IN ('r','p','v','m','f')"
            " AND c.relowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = :role)"
        ),
        {"s": schema, "like": like, "role": role},
    )
    for name, kind in relations.all():
        await session.execute(text(f"ALTER {_RELATIONS[kind]} {s}.{_ident(name)} OWNER TO {r}"))
        changed += 1
    rest = await session.execute(
        text(
            "SELECT 'SEQUENCE', c.relname::text FROM pg_catalog.pg_class c"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = :s AND c.relname LIKE :like AND c.relkind = 'S'"
            " AND c.relowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = :role)"
            " UNION ALL SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.typname"
            " FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace"
            " WHERE n.nspname = :s AND t.typname LIKE :like AND t.typrelid = 0"
            " AND t.typtype IN ('e', 'd', 'r') AND t.typelem = 0"
        ),
        {"s": schema, "like": like, "role": role},
    )
    for kind, name in rest.all():
        await session.execute(text(f"ALTER {kind} {s}.{_ident(name)} OWNER TO {r}"))
        changed += 1
    routines = await session.execute(
        text(
            "SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p"
            " JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = :s AND p.proname LIKE :like"
        ),
        {"s": schema, "like": like},
    )
    for (signature,) in routines.all():
        # regprocedure's text is the routine's quoted, schema-qualified name and argument types.
        await session.execute(text(f"ALTER ROUTINE {signature} OWNER TO {r}"))
        changed += 1
    return changed
