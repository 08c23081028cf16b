"""/v1/flags on the real PostgreSQL: operators change flags, every change is recorded."""

from __future__ import annotations

import httpx
from openfeature import api
from sqlalchemy import text

from plexica.kit.db import Database
from plexica_sdk.context import Principal
from plexica_sdk.flags import TenantFlags
from tests.conftest import error_of
from tests.flags.conftest import new_key, new_tenant
from tests.support.tokens import StaticIssuers


async def test_create_target_toggle_and_history(
    core: httpx.AsyncClient, issuers: StaticIssuers, db: Database
) -> None:
    op = issuers.operator_headers()
    a, b = new_tenant(issuers), new_tenant(issuers)
    key = new_key()

    r = await core.post("/v1/flags", json={"key": key, "description": "new checkout"}, headers=op)
    assert r.status_code == 201, r.text
    assert r.json()["enabled"] is True
    assert r.json()["version"] == 1

    async def value(tenant_headers: dict[str, str]) -> object:
        r = await core.get("/v1/flags/evaluate", params={"key": key}, headers=tenant_headers)
        assert r.status_code == 200, r.text
        return r.json()[key]["value"]

    assert await value(a.headers) is False
    r = await core.patch(f"/v1/flags/{key}", json={"tenants": {str(a.id): "on"}}, headers=op)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    assert await value(a.headers) is True
    assert await value(b.headers) is False

    r = await core.post(f"/v1/flags/{key}/toggle", json={"enabled": False}, headers=op)
    assert r.json()["enabled"] is False
    assert await value(a.headers) is False
    r = await core.post(f"/v1/flags/{key}/toggle", headers=op)
    assert r.json()["enabled"] is True
    assert await value(a.headers) is True

    r = await core.patch(
        f"/v1/flags/{key}", json={"rollout": {"variant": "on", "percentage": 100}}, headers=op
    )
    assert await value(b.headers) is True
    r = await core.patch(f"/v1/flags/{key}", json={"rollout": None}, headers=op)
    assert r.json()["rollout"] is None
    assert await value(b.headers) is False

    history = (await core.get(f"/v1/flags/{key}/changes", headers=op)).json()
    assert [h["action"] for h in history] == [
        "update",
        "update",
        "enable",
        "disable",
        "update",
        "create",
    ]
    disable = history[3]
    assert disable["before"]["enabled"] is True
    assert disable["after"]["enabled"] is False
    assert disable["actor"]
    assert disable["at"]

    listed = (await core.get("/v1/flags", headers=op)).json()
    assert key in [f["key"] for f in listed]

    # The platform audit log has every change too, with who made it.
    async with db.session() as s:
        rows = await s.execute(
            text(
                "SELECT action, actor FROM platform.audit_log WHERE target = :k ORDER BY seq DESC"
            ),
            {"k": key},
        )
        mine = rows.all()
    assert [r.action for r in mine] == [f"flag.{h['action']}" for h in history]
    assert {r.actor for r in mine} == {disable["actor"]}


async def test_variant_flags_and_openfeature_in_core(
    core: httpx.AsyncClient, issuers: StaticIssuers
) -> None:
    op = issuers.operator_headers()
    a = new_tenant(issuers)
    key = new_key()
    body = {
        "key": key,
        "kind": "variant",
        "variants": {"list": "list", "grid": "grid"},
        "default_variant": "list",
        "tenants": {a.slug: "grid"},
    }
    assert (await core.post("/v1/flags", json=body, headers=op)).status_code == 201
    # The core's own code uses the standard OpenFeature API, served from this process's cache.
    principal = Principal(subject="u", issuer="i", tenant_id=a.id, tenant_slug=a.slug)
    assert TenantFlags(principal).variant(key, "none") == "grid"
    assert api.get_client().get_string_value(key, "none") == "list"
    await core.post(f"/v1/flags/{key}/toggle", headers=op)
    assert TenantFlags(principal).variant(key, "none") == "list"


async def test_bad_input(core: httpx.AsyncClient, issuers: StaticIssuers) -> None:
    op = issuers.operator_headers()
    a = new_tenant(issuers)
    key = new_key()
    assert (await core.post("/v1/flags", json={"key": key}, headers=a.headers)).status_code == 403
    assert (await core.get("/v1/flags", headers=a.headers)).status_code == 403
    assert (await core.post("/v1/flags", json={"key": key})).status_code == 401

    r = await core.post("/v1/flags", json={"key": key, "default_variant": "maybe"}, headers=op)
    assert error_of(r)["code"] == "invalid_flag"
    r = await core.post("/v1/flags", json={"key": "Not A Key"}, headers=op)
    assert r.status_code == 422
    assert (await core.post("/v1/flags", json={"key": key}, headers=op)).status_code == 201
    r = await core.post("/v1/flags", json={"key": key}, headers=op)
    assert error_of(r)["code"] == "flag_exists"
    r = await core.patch(f"/v1/flags/{key}", json={"tenants": {"x": "nope"}}, headers=op)
    assert error_of(r)["code"] == "invalid_flag"
    r = await core.patch(
        f"/v1/flags/{key}", json={"rollout": {"variant": "on", "percentage": 101}}, headers=op
    )
    assert r.status_code == 422
    r = await core.post("/v1/flags/no.such.flag/toggle", headers=op)
    assert error_of(r)["code"] == "flag_not_found"
    # Nothing changed by the refused requests.
    history = (await core.get(f"/v1/flags/{key}/changes", headers=op)).json()
    assert [h["action"] for h in history] == ["create"]
    # Unknown flags evaluate to nothing, never to an error.
    r = await core.get("/v1/flags/evaluate", params={"key": "no.such.flag"}, headers=a.headers)
    assert r.status_code == 200
    assert r.json()["no.such.flag"] == {"value": None, "variant": None, "reason": "ERROR"}
