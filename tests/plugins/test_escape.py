"""The database is the boundary (ADR 0110): a plugin's migration that tries to leave its role,
reach the platform, another tenant or another plugin, or outlive its time is refused or fails
with a permission error, and the install is rolled back with the tenant and the platform as they
were and the attempt in the audit log.

The migrations go into the catalog directly, past the friendly text check of registration, so
that what stops them is PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from plexica.kit.db import Database
from plexica.plugins import service
from plexica.plugins.repository import installations as installs_repo
from plexica.plugins.repository import logins as logins_repo
from plexica.plugins.repository import tenant_objects as objects_repo
from plexica.plugins.repository import versions as versions_repo
from plexica.plugins.schemas import VersionStatus
from plexica_sdk.db import plugin_role
from plexica_sdk.manifest import parse_manifest
from tests.conftest import error_of
from tests.plugins.conftest import Platform, Tenant, TenantFactory, bare_app, plugin_doc

CORE = "/api/core/v1"

# {p}: the plugin (and its table prefix), {role}: its tenant role, {owner}: the platform's user,
# {login}: the plugin's login, {other}: another tenant's schema (the CRM is installed there and
# in this tenant).
ATTEMPTS: dict[str, str] = {
    # transaction control, then privileged statements
    "rollback": "ROLLBACK; CREATE SCHEMA {p}_evil;",
    "commit": "CREATE TABLE {p}_a (id int); COMMIT; CREATE ROLE {p}_evil SUPERUSER;",
    "end": "END; CREATE SCHEMA {p}_evil;",
    "abort_begin": "ABORT; BEGIN; SELECT * FROM platform.plugin_logins;",
    "do_commit": "DO $$ BEGIN COMMIT; END $$;",
    "prepare_transaction": "PREPARE TRANSACTION '{p}'; CREATE SCHEMA {p}_evil;",
    # leaving the role, in several spellings
    "set_role": "SET ROLE {owner}; CREATE SCHEMA {p}_evil;",
    "set_role_comments": "SET/**/ROLE/**/NONE; SELECT * FROM platform.realm_keys;",
    "set_role_quoted": "SeT \"role\" TO '{owner}'; SELECT * FROM platform.plugin_logins;",
    "set_local_role": "set local role {owner}; SELECT * FROM platform.tenants;",
    "set_config_role": "SELECT set_config('role', '{owner}', true); SELECT 1;",
    "set_config_session_user": (
        "SELECT set_config('role', session_user::text, true); CREATE TABLE platform.{p}_x (id int);"
    ),
    "reset_role": "RESET ROLE; SELECT * FROM platform.plugin_logins;",
    "reset_all": "RESET ALL; SELECT * FROM platform.realm_keys;",
    "session_authorization": "SET SESSION AUTHORIZATION {owner}; SELECT 1;",
    "session_authorization_default": (
        "SET SESSION AUTHORIZATION DEFAULT; SELECT * FROM platform.plugin_logins;"
    ),
    "do_execute_set_role": (
        "DO $$ BEGIN EXECUTE 'SET ROLE ' || quote_ident('{owner}');"
        " EXECUTE 'CREATE SCHEMA {p}_evil'; END $$;"
    ),
    "do_execute_built": (
        "DO $$ BEGIN EXECUTE format('%s %s %s', 'SET', 'ROLE', '{owner}'); END $$;"
    ),
    # objects that would run as somebody else
    "security_definer": (
        "CREATE FUNCTION {p}_f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';"
    ),
    "trigger_on_foreign_table": (
        "CREATE FUNCTION {p}_trg() RETURNS trigger LANGUAGE plpgsql AS"
        " 'BEGIN RETURN NEW; END';"
        " CREATE TRIGGER {p}_t BEFORE INSERT ON crm_contacts"
        " FOR EACH ROW EXECUTE FUNCTION {p}_trg();"
    ),
    "rule_on_platform_table": (
        "CREATE RULE {p}_r AS ON INSERT TO platform.audit_log DO INSTEAD NOTHING;"
    ),
    "operator_trojan": (
        "CREATE FUNCTION {p}_eq(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';"
        " CREATE OPERATOR = (LEFTARG = text, RIGHTARG = text, FUNCTION = {p}_eq);"
    ),
    # the server's files and programs
    "copy_to_program": "COPY (SELECT 1) TO PROGRAM 'touch /tmp/{p}';",
    "copy_to_file": "COPY (SELECT 1) TO '/tmp/{p}';",
    "pg_read_file": "CREATE TABLE {p}_a AS SELECT pg_read_file('/etc/passwd') AS x;",
    "lo_import": "SELECT lo_import('/etc/passwd');",
    "large_object": "SELECT lo_create(0);",
    # other databases and servers
    "dblink": "CREATE EXTENSION IF NOT EXISTS dblink;",
    "postgres_fdw": (
        "CREATE EXTENSION IF NOT EXISTS postgres_fdw;"
        " CREATE SERVER {p}_s FOREIGN DATA WRAPPER postgres_fdw;"
    ),
    "create_extension": "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;",
    # roles and privileges
    "alter_role_superuser": "ALTER ROLE {role} SUPERUSER;",
    "alter_role_createrole": "ALTER ROLE {role} CREATEROLE CREATEDB;",
    "alter_owner_password": "ALTER ROLE {owner} PASSWORD 'owned';",
    "alter_login": "ALTER ROLE {login} SET role = '{owner}';",
    # its own defaults in this database outrank the ones the platform pins (search path, time
    # limits) for its next migration, and RESET ALL does not reach them
    "alter_own_settings_in_database": (
        "DO $$ BEGIN EXECUTE format('ALTER ROLE %I IN DATABASE %I SET statement_timeout = 0',"
        " current_user, current_database()); END $$;"
    ),
    "create_role": "CREATE ROLE {p}_evil LOGIN PASSWORD 'x';",
    "grant_to_public": "CREATE TABLE {p}_a (id int); GRANT SELECT ON {p}_a TO PUBLIC;",
    "grant_to_login": "CREATE TABLE {p}_a (id int); GRANT ALL ON {p}_a TO {login};",
    "default_privileges": "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC;",
    "grant_predefined_role": "GRANT pg_read_all_data TO {role};",
    "grant_owner_role": "GRANT {owner} TO {role};",
    # reading what is not its own
    "read_signing_keys": "CREATE TABLE {p}_a AS SELECT * FROM platform.realm_keys;",
    "read_plugin_logins": "CREATE TABLE {p}_a AS SELECT * FROM platform.plugin_logins;",
    "read_other_plugin": "CREATE TABLE {p}_a AS SELECT * FROM crm_contacts;",
    "read_other_tenant": "CREATE TABLE {p}_a AS SELECT * FROM {other}.crm_contacts;",
    "write_other_plugin": "DROP TABLE crm_contacts;",
    # places outside the tenant schema
    "create_schema": "CREATE SCHEMA {p}_evil;",
    "create_in_public": "CREATE TABLE public.{p}_a (id int);",
    "create_unprefixed": "CREATE TABLE {p}_a (id int); CREATE TABLE notmine (id int);",
    "create_temp_function": "CREATE FUNCTION pg_temp.{p}_f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
}

# Functions named like PostgreSQL's own (or the platform's) that an unqualified call made with
# the tenant schema on the search path would pick over the built-in: the CRM's or Billing's
# queries, or the platform's tenant session, would then run the plugin's code as their own role.
# The plugin's id is a prefix of the built-in's name, so its table prefix does not stop it.
SHADOWING: dict[str, str] = {
    # array_agg(anynonarray): an exact uuid match wins over the polymorphic built-in
    "array": (
        "CREATE FUNCTION array_step(uuid[], uuid) RETURNS uuid[] LANGUAGE sql"
        " AS 'SELECT $1 || $2';"
        " CREATE AGGREGATE array_agg(uuid) (SFUNC = array_step, STYPE = uuid[]);"
    ),
    # jsonb_build_object(VARIADIC "any")
    "jsonb": (
        "CREATE FUNCTION jsonb_build_object(text, text) RETURNS jsonb LANGUAGE sql"
        " AS 'SELECT ''{{}}''::jsonb';"
    ),
    # pg_advisory_xact_lock(bigint), called with hashtext()'s integer
    "pg": "CREATE FUNCTION pg_advisory_xact_lock(integer) RETURNS void LANGUAGE sql AS '';",
    # the platform's function of a plugin not yet installed in the tenant, which the platform's
    # CREATE OR REPLACE would then leave owned by this plugin
    "plexica": (
        "CREATE FUNCTION plexica_billing_installation() RETURNS jsonb LANGUAGE sql"
        " AS 'SELECT ''{{\"status\": \"active\"}}''::jsonb';"
    ),
}

SLOW: dict[str, str] = {
    "pg_sleep": "SELECT pg_sleep(600);",
    "pg_sleep_no_timeout": "SET statement_timeout = 0; SET lock_timeout = 0; SELECT pg_sleep(600);",
    "cancel_swallowed": (
        "SET statement_timeout = 0; DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(600);"
        " EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$;"
    ),
}


async def _catalog_directly(db: Database, plugin_id: str, sql: str) -> None:
    """Into the catalog without the registration's text check."""
    doc = plugin_doc(plugin_id)
    async with db.session() as s:
        await versions_repo.insert_version(
            s, plugin_id, "1.0.0", parse_manifest(doc).model_dump(mode="json"),
            [{"name": "0001_init", "sql": f"CREATE TABLE {plugin_id}_ok (id int)"},
             {"name": "0002_escape", "sql": sql}],
        )  # fmt: skip
        await versions_repo.set_version_status(s, plugin_id, "1.0.0", VersionStatus.PUBLISHED)


# Platform tables that servers of the session (the web tests' site runs the event runtime, the
# identity tests' core sweeps expired grants, MFA challenges and retired signing keys) write in
# the background on this worker's database, whatever this test does: the plugin's role holds no
# grant on any of them.
BACKGROUND = (
    "outbox",
    "event_deliveries",
    "event_consumers",
    "dead_letters",
    "auth_codes",
    "refresh_tokens",
    "revocations",
    "mfa_challenges",
    "realm_keys",
)


async def _snapshot(db: Database, t: Tenant, other: Tenant, plugin_id: str) -> dict[str, Any]:
    async with db.session() as s:

        async def one(sql: str, **params: Any) -> Any:
            return (await s.execute(text(sql), params)).scalar()

        tables = (
            await s.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'platform'"
                    " AND tablename NOT IN ('audit_log', 'plugin_installations')"
                    " AND NOT tablename = ANY(:background)"
                ),
                {"background": list(BACKGROUND)},
            )
        ).scalars()
        platform = {
            name: await one(
                f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), ''))"
                f' FROM platform."{name}" t'
            )
            for name in tables
        }
        platform["plugin_installations"] = await one(
            "SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), ''))"
            " FROM platform.plugin_installations t WHERE plugin_id <> :p",
            p=plugin_id,
        )
        return {
            "schemas": await one("SELECT array_agg(nspname ORDER BY nspname) FROM pg_namespace"),
            "relations": await one(
                "SELECT array_agg(n.nspname || '.' || c.relname ORDER BY 1) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname IN (:a, :b, 'public', 'platform', 'plugin_api')",
                a=t.ref.schema,
                b=other.ref.schema,
            ),
            "functions": await one(
                "SELECT array_agg(p.oid::regprocedure::text ORDER BY 1) FROM pg_proc p"
                " JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname IN (:a, :b, 'public', 'platform', 'plugin_api')",
                a=t.ref.schema,
                b=other.ref.schema,
            ),
            "operators": await one("SELECT count(*) FROM pg_operator WHERE oid >= 16384"),
            "large_objects": await one("SELECT count(*) FROM pg_largeobject_metadata"),
            "extensions": await one("SELECT array_agg(extname ORDER BY 1) FROM pg_extension"),
            "roles": await one(
                "SELECT array_agg(rolname ORDER BY 1) FROM pg_roles"
                " WHERE starts_with(rolname, :p) OR starts_with(rolname, :r)",
                p=plugin_id,
                r=f"plx_{plugin_id}_",
            ),
            "owner": await one(
                "SELECT row(rolsuper, rolcreaterole, rolcreatedb, rolpassword IS NULL)::text"
                " FROM pg_authid WHERE rolname = current_user"
            )
            if await one("SELECT has_table_privilege('pg_authid', 'SELECT')")
            else await one(
                "SELECT row(rolsuper, rolcreaterole, rolcreatedb)::text FROM pg_roles"
                " WHERE rolname = current_user"
            ),
            "memberships": await one(
                "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member"
                " WHERE r.rolname = :r",
                r=plugin_role(plugin_id, t.id),
            ),
            "default_acls": await one("SELECT count(*) FROM pg_default_acl"),
            "prepared": await one("SELECT count(*) FROM pg_prepared_xacts"),
            "crm": await one(
                f"SELECT md5(coalesce(string_agg(c::text, ','), '')) FROM \"{t.ref.schema}\".crm_contacts c"
            ),
            "platform": platform,
        }


@pytest.fixture
async def tenants(platform: Platform, make_tenant: TenantFactory) -> tuple[Tenant, Tenant]:
    t, other = await make_tenant(), await make_tenant()
    for tenant in (t, other):
        r = await platform.http.post(
            f"{CORE}/tenants/{tenant.id}/plugins",
            json={"plugin_id": "crm"},
            headers=tenant.headers("tenant_admin"),
        )
        assert r.status_code == 201, r.text
    return t, other


async def _attempt(
    platform: Platform,
    db: Database,
    database_url: str,
    tenants: tuple[Tenant, Tenant],
    sql: str,
    plugin_id: str | None = None,
) -> str:
    t, other = tenants
    p = plugin_id or "esc" + uuid.uuid4().hex[:8]
    async with db.session() as s:
        login = await logins_repo.get_plugin_login(s, "crm")
    assert login is not None
    script = sql.format(
        p=p,
        role=plugin_role(p, t.id),
        owner=make_url(database_url).username,
        login=login["role_name"],
        other=other.ref.schema,
    )
    await _catalog_directly(db, p, script)
    async with db.session() as s:
        await service.ensure_login(s, p)  # made before an install's migration (ADR 0076)
    platform.endpoints[p] = bare_app(parse_manifest(plugin_doc(p)))
    before = await _snapshot(db, t, other, p)

    r = await platform.http.post(
        f"{CORE}/tenants/{t.id}/plugins", json={"plugin_id": p}, headers=t.headers("tenant_admin")
    )

    assert r.status_code == 422, r.text
    err = error_of(r)
    assert err["code"] == "migration_refused"
    assert "syntax error" not in err["message"], err  # refused for what it tried
    after = await _snapshot(db, t, other, p)
    changed = {k for k, v in after["platform"].items() if before["platform"].get(k) != v}
    assert not changed, f"platform tables written: {sorted(changed)}"
    assert after == before
    assert not Path(f"/tmp/{p}").exists()
    async with db.session() as s:
        row = await installs_repo.get_installation(s, t.id, p)
        assert row is not None
        assert row["status"] == "failed"
        assert row["pending_version"] is None
        audited = (
            await s.execute(
                text(
                    "SELECT count(*) FROM platform.audit_log WHERE action ="
                    " 'plugin.migration_refused' AND tenant_id = :t AND target = :p"
                ),
                {"t": t.id, "p": p},
            )
        ).scalar_one()
        assert audited == 1
        # Logged-in sessions of the role are gone, and it can no longer log in (it is gone).
        assert not await objects_repo.role_exists(s, plugin_role(p, t.id))
    return p


@pytest.mark.parametrize("name", sorted(ATTEMPTS))
async def test_migration_escape_is_refused(
    platform: Platform,
    db: Database,
    database_url: str,
    tenants: tuple[Tenant, Tenant],
    name: str,
) -> None:
    await _attempt(platform, db, database_url, tenants, ATTEMPTS[name])


@pytest.mark.parametrize("plugin_id", sorted(SHADOWING))
async def test_migration_shadowing_a_builtin_is_refused(
    platform: Platform,
    db: Database,
    database_url: str,
    tenants: tuple[Tenant, Tenant],
    plugin_id: str,
) -> None:
    await _attempt(platform, db, database_url, tenants, SHADOWING[plugin_id], plugin_id)


@pytest.mark.parametrize("name", sorted(SLOW))
async def test_migration_that_outlives_its_time_is_ended(
    platform: Platform,
    db: Database,
    database_url: str,
    tenants: tuple[Tenant, Tenant],
    name: str,
) -> None:
    installer = platform.installer
    installer.migration_timeout = 2.0
    p = await _attempt(platform, db, database_url, tenants, SLOW[name])
    async with db.session() as s:
        left = await s.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE usename = :r"),
            {"r": plugin_role(p, tenants[0].id)},
        )
        assert left.scalar_one() == 0


async def test_a_crash_between_the_steps_is_undone_by_recover(
    platform: Platform, db: Database, database_url: str, tenants: tuple[Tenant, Tenant]
) -> None:
    """What a crash leaves after the prepare step (the role may log in and create, the
    installation is ``installing``) and after the role's own commit: ``recover`` undoes both."""
    t, _ = tenants
    p = "crash" + uuid.uuid4().hex[:8]
    role = plugin_role(p, t.id)
    await _catalog_directly(db, p, "SELECT 1")
    async with db.session() as s:
        await installs_repo.upsert_installation(
            s, tenant_id=t.id, tenant_slug=t.ref.slug, plugin_id=p, version="1.0.0",
            status="installing", db_role=role, settings={},
        )  # fmt: skip
        await objects_repo.prepare_migration_role(
            s, role, t.ref.schema, "pw-" + p, statement_timeout_ms=5000
        )
        await objects_repo.create_functions(s, t.ref.schema, role, p, t.id)
    url = make_url(database_url).set(username=role, password="pw-" + p)
    conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    try:
        await conn.execute(f"CREATE TABLE {p}_left (id int)")  # committed by the role
        installer = platform.installer
        assert await installer.recover(t.ref, p)
    finally:
        conn.terminate()
    async with db.session() as s:
        assert not await objects_repo.role_exists(s, role)
        row = await installs_repo.get_installation(s, t.id, p)
        assert row is not None
        assert row["status"] == "failed"
        assert "interrupted" in (row["reason"] or "")
        left = await s.execute(text("SELECT to_regclass(:n)"), {"n": f'"{t.ref.schema}".{p}_left'})
        assert left.scalar() is None
    assert not await platform.installer.recover(t.ref, p)
