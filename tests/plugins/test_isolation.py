"""The plugin's database role, as the SDK uses it at run time, reaches only its own tables."""

from __future__ import annotations

import asyncpg
import pytest

from plexica.kit.db import Database
from plexica.plugins.service import DefaultPluginsStep, permissions_for
from plexica_sdk.db import plugin_role
from plexica_sdk.manifest import parse_manifest
from tests.plugins.conftest import Platform, TenantFactory, bare_app, plugin_doc, register_doc

CORE = "/api/core/v1"


async def test_plugin_role_cannot_read_platform_or_other_plugins_tables(
    platform: Platform, make_tenant: TenantFactory, db: Database, pg_url: str, database_url: str
) -> None:
    t = await make_tenant()
    if not await _registered(db, "notes"):
        await register_doc(
            db, plugin_doc("notes"), [("0001_init", "CREATE TABLE notes_items (body text)")]
        )
    platform.endpoints["notes"] = bare_app(parse_manifest(plugin_doc("notes")))
    admin = t.headers("tenant_admin")
    for plugin_id in ("crm", "notes"):
        r = await platform.http.post(
            f"{CORE}/tenants/{t.id}/plugins", json={"plugin_id": plugin_id}, headers=admin
        )
        assert r.status_code == 201, r.text

    conn = await asyncpg.connect(database_url)
    try:
        # A table of the tenant that belongs to the platform, not to any plugin.
        await conn.execute(f'CREATE TABLE "{t.ref.schema}".members (email text)')

        async def as_crm(sql: str) -> object:
            async with conn.transaction():
                await conn.execute(f'SET LOCAL search_path TO "{t.ref.schema}"')
                await conn.execute(f'SET LOCAL ROLE "{plugin_role("crm", t.id)}"')
                return await conn.fetch(sql)

        assert await as_crm("SELECT count(*) FROM crm_contacts") == [(0,)]
        for sql in (
            "SELECT * FROM platform.plugin_installations",
            "SELECT * FROM platform.outbox",
            "SELECT * FROM notes_items",
            "SELECT * FROM members",
            "INSERT INTO notes_items VALUES ('x')",
            "CREATE TABLE crm_new (id int)",  # no schema changes outside an install/upgrade
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await as_crm(sql)
        # Its only window on the platform: its own installation and its own events.
        state = await as_crm("SELECT plexica_crm_installation()")
        assert '"active"' in str(state)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await as_crm("SELECT plexica_notes_installation()")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await as_crm("SELECT plexica_crm_publish('notes.item.created', NULL, '{}'::jsonb)")
    finally:
        await conn.close()


async def _registered(db: Database, plugin_id: str) -> bool:
    from plexica.plugins import service

    async with db.session() as s:
        return bool(await service.list_versions(s, plugin_id))


async def test_permissions_and_default_plugins_step(
    platform: Platform, make_tenant: TenantFactory, db: Database
) -> None:
    t = await make_tenant()
    installer = platform.installer
    step = DefaultPluginsStep(installer, ["crm"])
    await step.apply(t.ref)
    await step.apply(t.ref)  # idempotent
    async with db.session() as s:
        member = await permissions_for(s, t.id, frozenset({"member"}))
        viewer = await permissions_for(s, t.id, frozenset({"viewer"}))
        nobody = await permissions_for(s, t.id, frozenset({"guest"}))
    assert "crm:deal:write" in member
    assert viewer == {"crm:company:read", "crm:contact:read", "crm:deal:read", "crm:activity:read"}
    assert nobody == frozenset()
    await step.undo(t.ref)
    async with db.session() as s:
        assert await permissions_for(s, t.id, frozenset({"member"})) == frozenset()


async def test_retention_window_expiry_purges(
    platform: Platform, make_tenant: TenantFactory, db: Database
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text

    t = await make_tenant()
    installer = platform.installer
    await installer.install(t.ref, "crm")
    await installer.uninstall(t.ref, "crm")
    assert await installer.purge_expired(datetime.now(UTC)) == 0
    assert await installer.purge_expired(datetime.now(UTC) + timedelta(days=31)) >= 1
    async with db.session() as s:
        left = await s.execute(
            text("SELECT count(*) FROM pg_tables WHERE schemaname = :s"), {"s": t.ref.schema}
        )
        assert left.scalar_one() == 0


async def test_identity_and_shell_hooks_and_the_core_client(
    platform: Platform, make_tenant: TenantFactory, db: Database, issuers: object
) -> None:
    import httpx

    from plexica.plugins.service import permission_resolver, subscribers, ui_contributions
    from plexica_sdk.client import CoreClient
    from plexica_sdk.errors import PlexicaError
    from tests.support.tokens import StaticIssuers

    assert isinstance(issuers, StaticIssuers)
    t = await make_tenant()
    installer = platform.installer
    await installer.install(t.ref, "crm", settings={"currency": "GBP"})
    resolve = permission_resolver(db)
    assert "crm:contact:write" in await resolve(t.id, frozenset({"tenant_admin"}))
    assert await resolve(None, frozenset({"super_admin"})) == frozenset()
    async with db.session() as s:
        ui = await ui_contributions(s, t.id)
    assert [(u["plugin_id"], [p["id"] for p in u["pages"]]) for u in ui] == [
        ("crm", ["contacts", "companies", "deals", "trash"])
    ]
    async with db.session() as s:
        assert await subscribers(s, t.id, "plexica.tenant.deleted") == ["crm"]
        assert await subscribers(s, t.id, "plexica.user.created") == []
    await installer.set_enabled(t.ref, "crm", False)
    async with db.session() as s:
        assert await subscribers(s, t.id, "plexica.tenant.deleted") == []
    await installer.set_enabled(t.ref, "crm", True)

    transport = httpx.ASGITransport(app=platform.core)
    service_token = issuers.token(roles=[], service=True, azp="plugin-crm")
    core = CoreClient("http://core", service_token, transport=transport)
    try:
        assert (await core.info()).name == "plexica"
        installation = await core.installation(t.id, "crm")
        assert (installation.status, installation.settings) == ("active", {"currency": "GBP"})
    finally:
        await core.aclose()
    # Another plugin's service token, or a plain member, reads nothing.
    other = CoreClient(
        "http://core",
        issuers.token(roles=[], service=True, azp="plugin-notes"),
        transport=transport,
    )
    try:
        with pytest.raises(PlexicaError) as err:
            await other.installation(t.id, "crm")
        assert err.value.status == 404
    finally:
        await other.aclose()
