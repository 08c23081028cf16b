"""A plugin's own database login (ADR 0076): logged in with it, a plugin reaches its own tables in
the tenants where it is active, and nothing else — not the platform, not another plugin, not a
tenant where it is not installed, not the platform's role."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from plexica.kit.db import Database
from plexica.plugins import service
from plexica.plugins.schemas import PluginLogin
from plexica_sdk.db import NotInstalledError, PluginDatabase, plugin_role
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


async def _login(db: Database, plugin_id: str) -> PluginLogin:
    async with db.session() as s:
        return await service.ensure_login(s, plugin_id)


async def _install(platform: Platform, t: Tenant, plugin_id: str) -> None:
    r = await platform.http.post(
        f"{CORE}/tenants/{t.id}/plugins",
        json={"plugin_id": plugin_id},
        headers=t.headers("tenant_admin"),
    )
    assert r.status_code == 201, r.text


async def _count(plugin_db: PluginDatabase, t: Tenant) -> int:
    async with plugin_db.tenant_session(t.id, t.ref.slug) as (session, _):
        return int((await session.execute(text("SELECT count(*) FROM crm_contacts"))).scalar_one())


async def test_plugin_login_reaches_only_its_own_tables(
    platform: Platform, make_tenant: TenantFactory, db: Database, database_url: str
) -> None:
    a, b, never = await make_tenant(), await make_tenant(), await make_tenant()
    async with db.session() as s:
        if not await service.list_versions(s, "jots"):
            await register_doc(
                db, plugin_doc("jots"), [("0001_init", "CREATE TABLE jots_items (body text)")]
            )
    platform.endpoints["jots"] = bare_app(parse_manifest(plugin_doc("jots")))
    for plugin_id in ("crm", "jots"):
        await _install(platform, a, plugin_id)
    await _install(platform, b, "crm")

    login = await _login(db, "crm")
    assert login == await _login(db, "crm")  # one login per plugin, created on first install
    url = login.database_url(database_url)
    platform_user = make_url(database_url).username
    assert make_url(url).username == login.role != platform_user

    # The SDK's tenant session, logged in as the plugin: read and write its own tables.
    plugin_db = PluginDatabase(url, "crm", pool_size=1)
    try:
        async with plugin_db.tenant_session(a.id, a.ref.slug) as (session, installation):
            assert installation.status == "active"
            await session.execute(
                text("INSERT INTO crm_contacts (first_name, created_by) VALUES ('Ada', 'u1')")
            )
        assert await _count(plugin_db, a) == 1
        assert await _count(plugin_db, b) == 0
        with pytest.raises(NotInstalledError):
            await _count(plugin_db, never)

        conn = await asyncpg.connect(url)
        try:

            async def run(sql: str, role: str | None = None, schema: str | None = None) -> object:
                async with conn.transaction():
                    if schema:
                        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
                    if role:
                        await conn.execute(f'SET LOCAL ROLE "{role}"')
                    return await conn.fetch(sql)

            crm_a = plugin_role("crm", a.id)
            assert await run("SELECT count(*) FROM crm_contacts", crm_a, a.ref.schema) == [(1,)]
            refused = [
                # Logged in but no tenant chosen: NOINHERIT, so nothing at all.
                (f'SELECT * FROM "{a.ref.schema}".crm_contacts', None, None),
                # The platform's tables, with or without the tenant role.
                ("SELECT * FROM platform.plugin_installations", None, None),
                ("SELECT * FROM platform.plugin_logins", crm_a, a.ref.schema),
                ("SELECT * FROM platform.outbox", crm_a, a.ref.schema),
                # Another plugin's tables in the same tenant, and its role.
                ("SELECT * FROM jots_items", crm_a, a.ref.schema),
                ("SELECT 1", plugin_role("jots", a.id), a.ref.schema),
                ("SELECT plexica_jots_installation()", crm_a, a.ref.schema),
                # A tenant where it is not installed: its schema is closed.
                (f'SELECT * FROM "{never.ref.schema}".x', None, None),
                (f'SELECT * FROM "{b.ref.schema}".crm_contacts', crm_a, a.ref.schema),
                # The platform's own role.
                ("SELECT 1", platform_user, None),
            ]
            for sql, role, schema in refused:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await run(sql, role, schema)
            # No role to take in a tenant where the plugin was never installed.
            with pytest.raises(asyncpg.PostgresError):
                await run("SELECT 1", plugin_role("crm", never.id))

            # Disable and uninstall take the tenant away from the login; restore gives it back.
            admin = a.headers("tenant_admin")
            base = f"{CORE}/tenants/{a.id}/plugins/crm"
            assert (await platform.http.post(f"{base}/disable", headers=admin)).status_code == 200
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await run("SELECT 1", crm_a)
            assert (await platform.http.post(f"{base}/enable", headers=admin)).status_code == 200
            assert await _count(plugin_db, a) == 1
            r = await platform.http.delete(base, headers=admin)
            assert r.status_code in (200, 204), r.text
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await run("SELECT 1", crm_a)
            with pytest.raises(NotInstalledError):
                await _count(plugin_db, a)
            assert await _count(plugin_db, b) == 0  # other tenants keep working
            await _install(platform, a, "crm")
            assert await _count(plugin_db, a) == 1
        finally:
            await conn.close()
    finally:
        await plugin_db.dispose()


async def test_rotation_and_wrong_password(
    platform: Platform, make_tenant: TenantFactory, db: Database, database_url: str
) -> None:
    t = await make_tenant()
    await _install(platform, t, "crm")
    old = await _login(db, "crm")
    wrong = PluginLogin(plugin_id="crm", role=old.role, password="not-" + uuid.uuid4().hex)
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(wrong.database_url(database_url))
    async with db.session() as s:
        new = await service.rotate_login(s, "crm")
    assert new.role == old.role
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(old.database_url(database_url))
    conn = await asyncpg.connect(new.database_url(database_url))
    await conn.close()
    assert await _login(db, "crm") == new


async def test_concurrent_first_installs_share_one_login(
    platform: Platform, make_tenant: TenantFactory, db: Database
) -> None:
    plugin_id = "c" + uuid.uuid4().hex[:10]
    doc = plugin_doc(plugin_id)
    await register_doc(db, doc, [("0001_init", f"CREATE TABLE {plugin_id}_items (body text)")])
    platform.endpoints[plugin_id] = bare_app(parse_manifest(doc))
    tenants = [await make_tenant() for _ in range(3)]
    installer = platform.installer
    results = await asyncio.gather(*(installer.install(t.ref, plugin_id) for t in tenants))
    assert [r.status for r in results] == ["active"] * 3
    login = await _login(db, plugin_id)
    async with db.session() as s:
        members = (
            await s.execute(
                text(
                    "SELECT r.rolname FROM pg_auth_members m"
                    " JOIN pg_roles r ON r.oid = m.roleid"
                    " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = :login"
                ),
                {"login": login.role},
            )
        ).scalars()
        assert sorted(members) == sorted(plugin_role(plugin_id, t.id) for t in tenants)
        logins = (
            await s.execute(
                text("SELECT count(*) FROM pg_roles WHERE rolname LIKE :p"),
                {"p": f"plx\\_{plugin_id}\\_login\\_%"},
            )
        ).scalar_one()
    assert logins == 1
