"""Plugin work killed (-9) mid-migration is undone by a core started afterwards, under a lease
per tenant and plugin (ADR 0170), on real PostgreSQL with real processes."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from plexica.kit.db import Database
from plexica.kit.ports import free_port
from plexica.kit.provisioning import TenantRef
from plexica.plugins.repository import installations as installs_repo
from plexica.plugins.repository import versions as versions_repo
from plexica.plugins.schemas import InstallBusyError, VersionStatus
from plexica.plugins.service import DefaultPluginsStep, Installer
from plexica.settings import Settings
from plexica.tenants.reconciler import Reconciler
from plexica.tenants.schemas import State, TenantCreate
from plexica.tenants.service import TenantService
from plexica_sdk.db import plugin_role
from plexica_sdk.manifest import Manifest, parse_manifest
from tests.integration.test_cli import clean_env, start, stop, wait_ready
from tests.plugins.conftest import TenantFactory, plugin_doc

DEADLINE_SECONDS = 60.0


class AlwaysReady:
    async def __call__(self, manifest: Manifest, tenant: TenantRef) -> None:
        return None


class Crash(BaseException):
    """The process 'dies': nothing below the raise runs, no ``except Exception`` sees it."""


class CrashingProbe:
    def __init__(self) -> None:
        self.crash = True

    async def __call__(self, manifest: Manifest, tenant: TenantRef) -> None:
        if self.crash:
            raise Crash


async def register(db: Database, plugin_id: str, version: str, *sql: str) -> None:
    """Into the catalog directly, published; migration ``i`` is ``sql[i]``."""
    migrations = [{"name": f"{i + 1:04d}_m", "sql": q} for i, q in enumerate(sql)]
    async with db.session() as s:
        manifest = parse_manifest(plugin_doc(plugin_id, version)).model_dump(mode="json")
        await versions_repo.insert_version(s, plugin_id, version, manifest, migrations)
        await versions_repo.set_version_status(s, plugin_id, version, VersionStatus.PUBLISHED)


async def wait_until(conn: asyncpg.Connection, query: str, *args: object) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not await conn.fetchval(query, *args):
        assert time.monotonic() < deadline, query
        await asyncio.sleep(0.1)


async def installation(conn: asyncpg.Connection, tenant_id: uuid.UUID, plugin_id: str) -> Any:
    row = await conn.fetchrow(
        "SELECT status, version, pending_version, reason FROM platform.plugin_installations"
        " WHERE tenant_id = $1 AND plugin_id = $2",
        tenant_id,
        plugin_id,
    )
    assert row is not None
    return row


BLOCKED = (
    "SELECT count(*) > 0 FROM pg_stat_activity WHERE usename = $1 AND wait_event_type = 'Lock'"
)


@pytest.mark.slow
async def test_a_core_undoes_an_install_and_a_fleet_upgrade_killed_mid_migration(
    db: Database, database_url: str, make_tenant: TenantFactory, tmp_path: Path
) -> None:
    installed, upgraded = await make_tenant(), await make_tenant()
    p = "kill" + uuid.uuid4().hex[:8]
    key = secrets.randbelow(2**31)
    # The second migration of each version waits on a lock this test holds: a slow step, for real.
    wait = f"SELECT pg_advisory_xact_lock({key})"
    await register(db, p, "1.0.0", f"CREATE TABLE {p}_a (id int)")
    await Installer(db, AlwaysReady()).install(upgraded.ref, p, "1.0.0")
    await register(db, p, "1.1.0", f"CREATE TABLE {p}_a (id int)", f"CREATE TABLE {p}_b ()", wait)
    env = clean_env(
        PLEXICA_DATABASE_URL=database_url,
        PLEXICA_DATA_DIR=str(tmp_path),
        PLEXICA_DATABASE_STATEMENT_TIMEOUT_MS="0",
    )
    holder = await asyncpg.connect(database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", key)
        workers = [
            start(
                ["plugin", "install", p, "--tenant", installed.ref.slug, "--version", "1.1.0"], env
            ),
            start(["plugin", "upgrade-all", p, "--version", "1.1.0"], env),
        ]
        try:
            for t in (installed, upgraded):
                await wait_until(holder, BLOCKED, plugin_role(p, t.id))
        finally:
            for proc in workers:
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
        row = await installation(holder, installed.id, p)
        assert (row["status"], row["pending_version"]) == ("installing", "1.1.0")
        row = await installation(holder, upgraded.id, p)
        assert (row["status"], row["pending_version"]) == ("active", "1.1.0")

        port = free_port()
        core = start(
            ["serve", "core"], {**env, "PLEXICA_PORT": str(port), "PLEXICA_RECONCILE_SECONDS": "1"}
        )
        try:
            wait_ready(port, core)
            await wait_until(
                holder,
                "SELECT count(*) = 2 FROM platform.plugin_installations WHERE plugin_id = $1"
                " AND status <> 'installing' AND pending_version IS NULL",
                p,
            )
        finally:
            out = stop(core, signal.SIGTERM)
        assert "plugin_reconciled" in out

        # The install is rolled back: failed, its role and tables gone; it may be run again.
        row = await installation(holder, installed.id, p)
        assert row["status"] == "failed"
        assert "interrupted" in row["reason"]
        assert not await holder.fetchval(
            "SELECT count(*) > 0 FROM pg_roles WHERE rolname = $1", plugin_role(p, installed.id)
        )
        assert (
            await holder.fetchval("SELECT to_regclass($1)", f"{installed.ref.schema}.{p}_a") is None
        )
        # The upgrade is rolled back: still 1.0.0 and active, its role kept but sealed.
        row = await installation(holder, upgraded.id, p)
        assert (row["status"], row["version"]) == ("active", "1.0.0")
        assert row["reason"].startswith("upgrade to 1.1.0 failed: interrupted")
        assert not await holder.fetchval(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", plugin_role(p, upgraded.id)
        )
        assert await holder.fetchval("SELECT to_regclass($1)", f"{upgraded.ref.schema}.{p}_a")
        assert (
            await holder.fetchval("SELECT to_regclass($1)", f"{upgraded.ref.schema}.{p}_b") is None
        )
    finally:
        await holder.close()

    # Nothing was left transitional, and the operations run again to the end.
    installer = Installer(db, AlwaysReady())
    assert (await installer.install(installed.ref, p, "1.1.0")).status == "active"
    assert (await installer.upgrade(upgraded.ref, p, "1.1.0")).version == "1.1.0"


async def test_a_held_lease_is_left_alone_and_refuses_a_second_operation(
    db: Database, make_tenant: TenantFactory
) -> None:
    t = await make_tenant()
    p = "lease" + uuid.uuid4().hex[:8]
    await register(db, p, "1.0.0", f"CREATE TABLE {p}_a (id int)")
    one, other = Installer(db, AlwaysReady()), Installer(db, AlwaysReady())
    async with db.session() as s:
        await installs_repo.upsert_installation(
            s, tenant_id=t.id, tenant_slug=t.ref.slug, plugin_id=p, version="1.0.0",
            status="installing", db_role=plugin_role(p, t.id), settings={},
        )  # fmt: skip
    async with one._lease(t.id, p):  # an install alive in another replica
        assert (t.id, p) not in await other.reconcile()
        for attempt in (other.install(t.ref, p), other.uninstall(t.ref, p, purge=True)):
            with pytest.raises(InstallBusyError) as refused:
                await attempt
            assert (refused.value.status, refused.value.code) == (409, "invalid_state")
    async with db.session() as s:
        row = await installs_repo.get_installation(s, t.id, p)
        assert row is not None
        assert row["status"] == "installing"
    # Once the holder is gone, the next pass undoes it, and only one pass does.
    assert (t.id, p) in await other.reconcile()
    assert (t.id, p) not in await one.reconcile()
    assert (await one.install(t.ref, p)).status == "active"


async def test_a_provisioning_that_died_inside_its_default_plugin_install_ends_active(
    db: Database,
) -> None:
    p = "dflt" + uuid.uuid4().hex[:8]
    await register(db, p, "1.0.0", f"CREATE TABLE {p}_a (id int)")
    probe = CrashingProbe()
    installer = Installer(db, probe)
    tenants = TenantService(db, [DefaultPluginsStep(installer, [p])])
    slug = "dflt-" + uuid.uuid4().hex[:8]
    with contextlib.suppress(Crash):
        await tenants.create(TenantCreate(slug=slug, name="D", admin_email=f"a@{slug}.example"))
    tenant = await tenants.get(slug)
    assert tenant.state is State.PROVISIONING
    async with db.session() as s:
        row = await installs_repo.get_installation(s, tenant.id, p)
        assert row is not None
        assert row["status"] == "installing"

    probe.crash = False
    try:
        # One pass: the install is undone, then the resumed saga installs the plugin again.
        assert tenant.id in await Reconciler(tenants, plugins=installer).pass_once()
        assert (await tenants.get(slug)).state is State.ACTIVE
        async with db.session() as s:
            row = await installs_repo.get_installation(s, tenant.id, p)
            assert row is not None
            assert (row["status"], row["pending_version"]) == ("active", None)
    finally:
        assert (await tenants.delete(slug)).state is State.DELETED


async def test_a_fleet_upgrade_wider_than_the_pool_finishes(
    db: Database, settings: Settings, make_tenant: TenantFactory
) -> None:
    """Leases are held on connections outside the pool: three upgrades at once on a pool of
    two connections all finish (a lease from the pool would hold the slot its work waits on)."""
    fleet = [await make_tenant() for _ in range(3)]
    p = "wide" + uuid.uuid4().hex[:8]
    await register(db, p, "1.0.0", f"CREATE TABLE {p}_a (id int)")
    for t in fleet:
        await Installer(db, AlwaysReady()).install(t.ref, p)
    await register(db, p, "1.1.0", f"CREATE TABLE {p}_a (id int)", f"CREATE TABLE {p}_b ()")
    small = Database(settings.sqlalchemy_url, pool_size=1)
    try:
        results = await Installer(small, AlwaysReady()).upgrade_fleet(p, "1.1.0", concurrency=3)
    finally:
        await small.dispose()
    assert results == {str(t.id): "upgraded" for t in fleet}
