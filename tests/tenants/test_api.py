"""The operator API and tenant routes over HTTP with real RS256 tokens."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from plexica.app import create_app
from plexica.kit.db import Database
from plexica.kit.state import started, state_of
from plexica.settings import Settings
from tests.conftest import error_of, running
from tests.support.tokens import StaticIssuers
from tests.tenants.conftest import new_slug


def tenant_headers(issuers: StaticIssuers, tenant: dict[str, Any]) -> dict[str, str]:
    issuers.add_tenant(uuid.UUID(tenant["id"]), tenant["slug"])
    token = issuers.token(f"plexica-{tenant['slug']}", roles=["tenant_admin"])
    return {"Authorization": f"Bearer {token}"}


async def create(api: httpx.AsyncClient, issuers: StaticIssuers, slug: str) -> dict[str, Any]:
    r = await api.post(
        "/v1/tenants",
        json={"slug": slug, "name": "Initech", "admin_email": "it@initech.example"},
        headers=issuers.operator_headers(),
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_operator_lifecycle_over_http(api: httpx.AsyncClient, issuers: StaticIssuers) -> None:
    op = issuers.operator_headers()
    t = await create(api, issuers, new_slug())
    assert t["state"] == "active"
    assert (await api.get(f"/v1/tenants/{t['id']}", headers=op)).json()["slug"] == t["slug"]
    assert (await api.get(f"/v1/tenants/{t['slug']}", headers=op)).json()["id"] == t["id"]

    th = tenant_headers(issuers, t)
    assert (await api.get("/v1/tenant", headers=th)).json()["id"] == t["id"]

    r = await api.post(f"/v1/tenants/{t['id']}/suspend", headers=op)
    assert r.json()["state"] == "suspended"
    for method, path in (
        ("GET", "/v1/tenant"),
        ("GET", "/v1/tenant/settings"),
        ("PUT", "/v1/tenant/settings/a"),
    ):
        r = await api.request(method, path, headers=th, json={"value": 1})
        assert r.status_code == 403, r.text
        assert error_of(r)["code"] == "tenant_suspended"

    r = await api.post(f"/v1/tenants/{t['id']}/suspend", headers=op)
    assert r.status_code == 409
    assert error_of(r)["code"] == "illegal_transition"
    r = await api.post(f"/v1/tenants/{t['id']}/reactivate", headers=op)
    assert r.json()["state"] == "active"
    assert (await api.get("/v1/tenant", headers=th)).status_code == 200

    steps = (await api.get(f"/v1/tenants/{t['id']}/steps", headers=op)).json()
    assert [s["name"] for s in steps["steps"]] == [
        "schema",
        "identity_realm",
        "bucket",
        "admin_invite",
    ]
    assert [h["to_state"] for h in steps["history"]] == [
        "provisioning",
        "active",
        "suspended",
        "active",
    ]

    r = await api.delete(f"/v1/tenants/{t['id']}", headers=op)
    assert r.status_code == 200
    assert r.json()["state"] == "deleted"
    r = await api.get("/v1/tenant", headers=th)
    assert r.status_code == 403
    assert error_of(r)["code"] == "tenant_unavailable"
    metrics = (await api.get("/metrics")).text
    assert 'plexica_tenant_provisioning_seconds_count{outcome="active"}' in metrics
    r = await api.post(f"/v1/tenants/{t['id']}/reactivate", headers=op)
    assert r.status_code == 409
    assert error_of(r)["code"] == "illegal_transition"


async def test_bad_input_gets_stable_codes(api: httpx.AsyncClient, issuers: StaticIssuers) -> None:
    op = issuers.operator_headers()
    slug = new_slug()
    await create(api, issuers, slug)
    r = await api.post(
        "/v1/tenants", json={"slug": slug, "name": "x", "admin_email": "a@b.example"}, headers=op
    )
    assert r.status_code == 409
    assert error_of(r)["code"] == "tenant_exists"
    for bad in ("Bad Slug", "platform", "a'b", "a;b", "x" * 64):
        r = await api.post(
            "/v1/tenants", json={"slug": bad, "name": "x", "admin_email": "a@b.example"}, headers=op
        )
        assert r.status_code == 422, r.text
        assert error_of(r)["code"] == "invalid_slug"
    r = await api.post(
        "/v1/tenants", json={"slug": new_slug(), "name": "x", "admin_email": "nope"}, headers=op
    )
    assert r.status_code == 422
    assert error_of(r)["code"] == "invalid_email"
    unknown = [
        await api.get(f"/v1/tenants/{k}", headers=op)
        for k in (uuid.uuid4(), "no-such-one", "%27%3B")
    ]
    assert {r.status_code for r in unknown} == {404}
    assert len({r.text for r in unknown}) == 1


async def test_only_operators_manage_tenants(
    api: httpx.AsyncClient, issuers: StaticIssuers
) -> None:
    t = await create(api, issuers, new_slug())
    th = tenant_headers(issuers, t)
    assert (await api.get("/v1/tenants", headers=th)).status_code == 403
    assert (await api.post(f"/v1/tenants/{t['id']}/suspend", headers=th)).status_code == 403
    assert (await api.get("/v1/tenants")).status_code == 401
    # Operators have no tenant: tenant routes refuse them rather than guess one.
    r = await api.get("/v1/tenant", headers=issuers.operator_headers())
    assert r.status_code == 403
    assert error_of(r)["code"] == "tenant_required"


async def test_list_is_paginated_and_filtered(
    api: httpx.AsyncClient, issuers: StaticIssuers
) -> None:
    op = issuers.operator_headers()
    prefix = "pg" + uuid.uuid4().hex[:6]
    made = [await create(api, issuers, f"{prefix}-{i}") for i in range(5)]
    await api.post(f"/v1/tenants/{made[1]['id']}/suspend", headers=op)
    seen: list[str] = []
    after: str | None = prefix
    while after is not None:
        page = (
            await api.get("/v1/tenants", params={"limit": 2, "after": after}, headers=op)
        ).json()
        seen += [t["slug"] for t in page["items"] if t["slug"].startswith(prefix)]
        after = (
            page["next"] if page["items"] and page["items"][-1]["slug"].startswith(prefix) else None
        )
    assert seen == [f"{prefix}-{i}" for i in range(5)]
    suspended = (
        await api.get("/v1/tenants", params={"state": "suspended", "limit": 200}, headers=op)
    ).json()
    assert made[1]["slug"] in [t["slug"] for t in suspended["items"]]
    assert all(t["state"] == "suspended" for t in suspended["items"])
    r = await api.get("/v1/tenants", params={"state": "bogus"}, headers=op)
    assert r.status_code == 422


async def test_suspension_reaches_every_replica_through_redis(
    settings: Settings, db: Database, issuers: StaticIssuers, redis_url: str
) -> None:
    """Two replicas with their own caches; the one that did not suspend refuses within a second."""
    distributed = settings.model_copy(update={"redis_url": redis_url})

    async def replica() -> FastAPI:
        return create_app(distributed, db=db, verifier=issuers.verifier())

    a_app, b_app = await replica(), await replica()
    gen_a, gen_b = running(a_app), running(b_app)
    a, b = await anext(gen_a), await anext(gen_b)
    try:
        assert started(state_of(b_app).services, "services").tenants.cache.ttl == 30.0
        t = await create(a, issuers, new_slug())
        th = tenant_headers(issuers, t)
        assert (await b.get("/v1/tenant", headers=th)).status_code == 200  # now cached on b
        await a.post(f"/v1/tenants/{t['id']}/suspend", headers=issuers.operator_headers())
        loop = asyncio.get_running_loop()
        start = loop.time()
        while (await b.get("/v1/tenant", headers=th)).status_code != 403:
            assert loop.time() - start < 1.0, "replica b still serves a suspended tenant"
            await asyncio.sleep(0.01)
        await a.post(f"/v1/tenants/{t['id']}/reactivate", headers=issuers.operator_headers())
        start = loop.time()
        while (await b.get("/v1/tenant", headers=th)).status_code != 200:
            assert loop.time() - start < 1.0
            await asyncio.sleep(0.01)
    finally:
        for gen in (gen_a, gen_b):
            with pytest.raises(StopAsyncIteration):
                await anext(gen)


async def test_openapi_documents_tenant_routes(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    for path in (
        "/v1/tenants",
        "/v1/tenants/{key}",
        "/v1/tenants/{key}/steps",
        "/v1/tenant/settings/{key}",
    ):
        assert path in paths


async def test_tenant_id_is_on_the_log_lines_of_tenant_requests(
    api: httpx.AsyncClient, issuers: StaticIssuers
) -> None:
    import structlog

    t = await create(api, issuers, new_slug())
    th = tenant_headers(issuers, t)
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        r = await api.put("/v1/tenant/settings/x", json={"value": 1}, headers=th)
        assert r.status_code == 200
    access = [
        e for e in logs if e.get("event") == "request" and e.get("path") == "/v1/tenant/settings/x"
    ]
    assert access, logs
    assert access[0]["tenant_id"] == t["id"]
    assert access[0]["tenant_slug"] == t["slug"]
