"""The escape suite at run time: the SDK's tenant session of a plugin, logged in with the plugin's
own login (ADR 0076, 0112), cannot leave its role for the tenant, and after each attempt the
next session is confined exactly as before."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from plexica.kit.db import Database
from plexica.plugins import service
from plexica_sdk.db import PluginDatabase, plugin_role
from plexica_sdk.manifest import parse_manifest
from tests.plugins.conftest import (
    Platform,
    Tenant,
    TenantFactory,
    bare_app,
    plugin_doc,
    register_doc,
)

CORE = "/api/core/v1"

# {owner}: the platform's user, {login}: the CRM's login, {other}: another plugin's table in the
# same tenant, {closed}: the CRM's table in a tenant where it is disabled, {closed_role}: its role
ATTEMPTS: dict[str, list[str]] = {
    "reset_role": ["RESET ROLE", "SELECT * FROM platform.plugin_logins"],
    "set_role_none": ["SET ROLE NONE", "SELECT * FROM platform.realm_keys"],
    "set_role_owner": ["SET ROLE {owner}"],
    "set_local_role_owner": ["SET LOCAL ROLE {owner}"],
    "set_config_role": ["SELECT set_config('role', '{owner}', true)"],
    "set_config_role_session": ["SELECT set_config('role', '{owner}', false)"],
    "session_authorization": ["SET SESSION AUTHORIZATION {owner}"],
    "do_execute": ["DO $$ BEGIN EXECUTE 'SET ROLE ' || quote_ident('{owner}'); END $$"],
    "commit_then_read": ["COMMIT", "SELECT * FROM platform.plugin_logins"],
    "read_platform": ["SELECT * FROM platform.tenants"],
    "read_signing_keys": ["SELECT * FROM platform.realm_keys"],
    "read_other_plugin": ["SELECT * FROM {other}"],
    "drop_other_plugin": ["DROP TABLE {other}"],
    "other_plugin_function": ["SELECT plexica_{other_id}_installation()"],
    "read_closed_tenant": ["SELECT * FROM {closed}"],
    "set_role_closed_tenant": ["SET ROLE {closed_role}"],
    "copy_to_program": ["COPY (SELECT 1) TO PROGRAM 'true'"],
    "pg_read_file": ["SELECT pg_read_file('/etc/passwd')"],
    "lo_import": ["SELECT lo_import('/etc/passwd')"],
    "create_table": ["CREATE TABLE crm_new (id int)"],
    "create_function": ["CREATE FUNCTION crm_f() RETURNS int LANGUAGE sql AS 'SELECT 1'"],
    "create_schema": ["CREATE SCHEMA crm_evil"],
    "create_extension": ["CREATE EXTENSION dblink"],
    "create_role": ["CREATE ROLE crm_evil"],
    "alter_login": ["ALTER ROLE {login} SUPERUSER"],
    "grant_predefined_role": ["GRANT pg_read_all_data TO {login}"],
    "give_away_table": ["ALTER TABLE crm_contacts OWNER TO {login}"],
}


@dataclass
class Scene:
    db: PluginDatabase
    tenant: Tenant
    names: dict[str, str]


@pytest.fixture
async def scene(
    platform: Platform, make_tenant: TenantFactory, db: Database, database_url: str
) -> AsyncIterator[Scene]:
    a, closed = await make_tenant(), await make_tenant()
    other_id = "rt" + uuid.uuid4().hex[:8]
    await register_doc(
        db, plugin_doc(other_id), [("0001_init", f"CREATE TABLE {other_id}_items (x text)")]
    )
    platform.endpoints[other_id] = bare_app(parse_manifest(plugin_doc(other_id)))
    for t, plugin_id in ((a, "crm"), (a, other_id), (closed, "crm")):
        r = await platform.http.post(
            f"{CORE}/tenants/{t.id}/plugins",
            json={"plugin_id": plugin_id},
            headers=t.headers("tenant_admin"),
        )
        assert r.status_code == 201, r.text
    r = await platform.http.post(
        f"{CORE}/tenants/{closed.id}/plugins/crm/disable", headers=closed.headers("tenant_admin")
    )
    assert r.status_code == 200, r.text
    async with db.session() as s:
        login = await service.ensure_login(s, "crm")
    plugin_db = PluginDatabase(login.database_url(database_url), "crm", pool_size=1)
    names = {
        "owner": str(make_url(database_url).username),
        "login": login.role,
        "other": f"{other_id}_items",
        "other_id": other_id,
        "closed": f'"{closed.ref.schema}".crm_contacts',
        "closed_role": plugin_role("crm", closed.id),
    }
    try:
        yield Scene(plugin_db, a, names)
    finally:
        await plugin_db.dispose()


async def _confined(scene: Scene) -> None:
    t = scene.tenant
    async with scene.db.tenant_session(t.id, t.ref.slug) as (session, installation):
        assert installation.status == "active"
        who = (await session.execute(text("SELECT current_user, session_user"))).one()
        assert tuple(who) == (plugin_role("crm", t.id), scene.names["login"])
        assert (await session.execute(text("SELECT count(*) FROM crm_contacts"))).scalar() == 0
    with pytest.raises(DBAPIError, match="permission denied"):
        async with scene.db.tenant_session(t.id, t.ref.slug) as (session, _):
            await session.execute(text("SELECT * FROM platform.plugin_logins"))


@pytest.mark.parametrize("name", sorted(ATTEMPTS))
async def test_runtime_escape_fails_and_the_session_stays_confined(scene: Scene, name: str) -> None:
    statements = [s.format(**scene.names) for s in ATTEMPTS[name]]
    t = scene.tenant
    with pytest.raises(DBAPIError) as failed:
        async with scene.db.tenant_session(t.id, t.ref.slug) as (session, _):
            for sql in statements:
                await session.execute(text(sql))
    message = str(failed.value.orig if failed.value.orig is not None else failed.value)
    assert any(
        words in message
        for words in ("permission denied", "must be owner", "must be able to SET ROLE")
    ), message
    await _confined(scene)
