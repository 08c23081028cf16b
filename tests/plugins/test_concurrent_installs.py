"""Installs, upgrades and provisioning with a default plugin, running at once in many tenants,
never collide (its event subscriptions are written without a delete-then-insert of the set, and
sagas do not hold pooled connections while they wait). The full sizes (50 provisioned at once,
a fleet of 100 upgraded 8 at a time) are ``bench/collisions.py``."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text

from plexica.kit.db import Database
from plexica.plugins.service import DefaultPluginsStep
from plexica.tenants.schemas import State, TenantCreate
from plexica.tenants.service import TenantService
from plexica_sdk.manifest import parse_manifest
from plexica_sdk.testing import arace
from tests.plugins.conftest import (
    Platform,
    Tenant,
    TenantFactory,
    bare_app,
    plugin_doc,
    register_doc,
)
from tests.plugins.test_refusals import CORE

TENANTS = 24
PARALLEL = 8


def doc(plugin_id: str, version: str, consumes: list[str]) -> dict[str, object]:
    return plugin_doc(
        plugin_id,
        version=version,
        events={"consumes": [{"type": t, "schema_version": 1} for t in consumes]},
    )


async def subscriptions(db: Database, plugin_id: str) -> list[str]:
    async with db.session() as s:
        rows = await s.execute(
            text(
                "SELECT event_type FROM platform.event_subscriptions WHERE plugin_id = :p"
                " ORDER BY event_type"
            ),
            {"p": plugin_id},
        )
        return list(rows.scalars())


async def test_parallel_installs_and_fleet_upgrade_have_no_failures(
    platform: Platform, make_tenant: TenantFactory, db: Database
) -> None:
    p = "conc" + uuid.uuid4().hex[:8]
    v1 = [("0001_init", f"CREATE TABLE {p}_items (id int)")]
    first = doc(p, "1.0.0", ["crm.deal.won", "crm.deal.lost"])
    await register_doc(db, first, v1)
    platform.endpoints[p] = bare_app(parse_manifest(first))
    tenants = [await make_tenant() for _ in range(TENANTS)]
    gate = asyncio.Semaphore(PARALLEL)

    async def install(t: Tenant) -> int:
        async with gate:
            r = await platform.http.post(
                f"{CORE}/tenants/{t.id}/plugins",
                json={"plugin_id": p},
                headers=t.headers("tenant_admin"),
            )
            return r.status_code

    statuses = await asyncio.gather(*(install(t) for t in tenants))
    assert statuses == [201] * TENANTS
    assert await subscriptions(db, p) == ["crm.deal.lost", "crm.deal.won"]

    second = doc(p, "1.1.0", ["crm.deal.won", "billing.invoice.paid"])
    await register_doc(db, second, [*v1, ("0002_x", f"ALTER TABLE {p}_items ADD COLUMN x int")])
    installer = platform.installer
    results = await installer.upgrade_fleet(p, concurrency=PARALLEL)
    assert results == {str(t.id): "upgraded" for t in tenants}
    assert await subscriptions(db, p) == ["billing.invoice.paid", "crm.deal.won"]


async def test_tenants_provisioned_at_once_with_a_default_plugin_all_become_active(
    platform: Platform, db: Database
) -> None:
    p = "dflt" + uuid.uuid4().hex[:8]
    first = doc(p, "1.0.0", ["crm.deal.won"])
    await register_doc(db, first, [("0001_init", f"CREATE TABLE {p}_items (id int)")])
    platform.endpoints[p] = bare_app(parse_manifest(first))
    installer = platform.installer
    service = TenantService(db, [DefaultPluginsStep(installer, [p])])

    # All at once, more than the pool has connections: a saga's lock must not hold one of them
    # (before ADR 0175 every pooled connection held a lock and the sagas timed out waiting).
    async def create(i: int) -> State:
        slug = f"dp{uuid.uuid4().hex[:8]}"
        made = await service.create(
            TenantCreate(slug=slug, name=f"D{i}", admin_email=f"a@{slug}.example")
        )
        return made.state

    states = await asyncio.gather(*(create(i) for i in range(TENANTS)))
    assert states == [State.ACTIVE] * TENANTS
    assert await subscriptions(db, p) == ["crm.deal.won"]


async def test_one_plugin_installed_from_eight_places_at_once_is_installed_once(
    platform: Platform, make_tenant: TenantFactory, db: Database
) -> None:
    p = "once" + uuid.uuid4().hex[:8]
    first = doc(p, "1.0.0", ["crm.deal.won"])
    await register_doc(db, first, [("0001_init", f"CREATE TABLE {p}_items (id int)")])
    platform.endpoints[p] = bare_app(parse_manifest(first))

    async def install(t: Tenant, _i: int) -> int:
        r = await platform.http.post(
            f"{CORE}/tenants/{t.id}/plugins",
            json={"plugin_id": p},
            headers=t.headers("tenant_admin"),
        )
        return r.status_code

    async def check(t: Tenant, statuses: list[int]) -> None:
        assert sorted(statuses) == [201] + [409] * (PARALLEL - 1)
        async with db.session() as s:
            rows = await s.execute(
                text(
                    "SELECT status FROM platform.plugin_installations"
                    " WHERE tenant_id = :t AND plugin_id = :p"
                ),
                {"t": t.id, "p": p},
            )
            assert list(rows.scalars()) == ["active"]

    await arace(lambda _n: make_tenant(), install, check, parallel=PARALLEL, rounds=20)
