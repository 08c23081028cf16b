"""A plugin process's view of flags: FlagFeed polls the core's snapshot and evaluates locally."""

from __future__ import annotations

import asyncio
import time

import httpx
from openfeature import api

from plexica_sdk.context import Principal
from plexica_sdk.flags import FlagFeed, TenantFlags
from tests.flags.conftest import new_key, new_tenant
from tests.support.tokens import StaticIssuers


async def test_feed_follows_the_core(core: httpx.AsyncClient, issuers: StaticIssuers) -> None:
    op = issuers.operator_headers()
    tenant = new_tenant(issuers)
    key = new_key()
    assert (
        await core.post("/v1/flags", json={"key": key, "tenants": {tenant.slug: "on"}}, headers=op)
    ).status_code == 201

    service_token = issuers.token(roles=[], service=True)
    feed = FlagFeed(core, service_token, interval=0.1)
    await feed.start()
    try:
        assert await feed.refresh() is False  # nothing new: a 304
        api.set_provider(feed.provider(), domain="plugin-crm")
        principal = Principal(subject="u", issuer="i", tenant_id=tenant.id, tenant_slug=tenant.slug)
        flags = TenantFlags(principal, domain="plugin-crm")
        assert flags.is_enabled(key) is True

        await core.post(f"/v1/flags/{key}/toggle", json={"enabled": False}, headers=op)
        start = time.perf_counter()
        while flags.is_enabled(key) and time.perf_counter() - start < 1.0:
            await asyncio.sleep(0.02)
        assert flags.is_enabled(key) is False
    finally:
        await feed.stop()


async def test_snapshot_is_for_platform_services(
    core: httpx.AsyncClient, issuers: StaticIssuers
) -> None:
    tenant = new_tenant(issuers)
    assert (await core.get("/v1/flags/snapshot", headers=tenant.headers)).status_code == 403
    assert (await core.get("/v1/flags/snapshot")).status_code == 401
    r = await core.get("/v1/flags/snapshot", headers=issuers.operator_headers())
    assert r.status_code == 200
    assert r.headers["etag"]
