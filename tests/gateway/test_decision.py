"""The decision endpoint against real PostgreSQL (tenancy, plugin installations) and Redis."""

from __future__ import annotations

import asyncio

import pytest

from plexica.gateway.ratelimit import RedisRateLimiter
from plexica.gateway.schemas import LimitPolicy
from plexica.gateway.service import BadPathError, classify
from plexica.kit.db import Database
from plexica.kit.state import started, state_of
from plexica.settings import Settings
from plexica_sdk.errors import NotFoundError
from tests.conftest import error_of, running
from tests.gateway.conftest import Core, core_app, forward
from tests.support.tokens import StaticIssuers

AUTH = "/v1/gateway/authorize"


async def test_public_routes_need_no_token(core: Core) -> None:
    for uri in (
        "/",
        "/health",
        "/realms/x/.well-known/openid-configuration",
        "/assets/a.js",
        "/api/core/openapi.json",
        "/api/core/docs",
        "/api/core/v1/info",
        "/api/core/v1/events/schemas/crm.deal.won/1",
    ):
        r = await core.http.get(AUTH, headers=forward(uri))
        assert r.status_code == 200, (uri, r.text)
        assert "X-User-ID" not in r.headers


async def test_no_or_bad_token_is_401_with_challenge(core: Core) -> None:
    for headers in (forward("/api/core/v1/tenant"), forward("/api/core/v1/tenant", "junk")):
        r = await core.http.get(AUTH, headers=headers)
        assert r.status_code == 401
        assert error_of(r)["code"] == "unauthenticated"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


async def test_tenant_token_gets_upstream_headers_and_trace_id(core: Core) -> None:
    t = await core.tenant()
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = await core.http.get(
        AUTH,
        headers=forward(
            "/api/core/v1/tenant?x=1", core.token(t, "u-42", "member"), **{"X-Trace-ID": trace}
        ),
    )
    assert r.status_code == 200, r.text
    assert r.headers["X-Tenant-ID"] == t["id"]
    assert r.headers["X-Tenant-Slug"] == t["slug"]
    assert r.headers["X-User-ID"] == "u-42"
    assert r.headers["X-User-Roles"] == "member"
    assert r.headers["X-Trace-ID"] == trace
    assert r.headers["RateLimit-Limit"] == "100"
    assert r.headers["RateLimit-Remaining"] == "99"
    bad = await core.http.get(
        AUTH, headers=forward("/api/core/v1/x", core.token(t), **{"X-Trace-ID": "<script>"})
    )
    assert len(bad.headers["X-Trace-ID"]) == 32
    assert bad.headers["X-Trace-ID"] != "<script>"


async def test_suspended_tenant_is_refused_at_once(core: Core) -> None:
    t = await core.tenant()
    headers = forward("/api/core/v1/tenant", core.token(t))
    assert (await core.http.get(AUTH, headers=headers)).status_code == 200
    op = core.issuers.operator_headers()
    await core.http.post(f"/v1/tenants/{t['id']}/suspend", headers=op)
    r = await core.http.get(AUTH, headers=headers)
    assert r.status_code == 403
    assert error_of(r)["code"] == "tenant_suspended"


async def test_plugin_must_be_installed_and_enabled(core: Core, plugin_id: str) -> None:
    t = await core.tenant()
    uri = f"/api/plugins/{plugin_id}/v1/things"
    unknown = await core.http.get(AUTH, headers=forward("/api/plugins/nosuch/v1", core.token(t)))
    missing = await core.http.get(AUTH, headers=forward(uri, core.token(t)))
    assert missing.status_code == unknown.status_code == 404
    assert error_of(missing) == error_of(unknown)
    await core.install(t, plugin_id)
    assert (await core.http.get(AUTH, headers=forward(uri, core.token(t)))).status_code == 200
    await core.set_enabled(t, plugin_id, False)
    await until(core, uri, core.token(t), 404)
    other = await core.tenant()  # another tenant's token never reaches this tenant's plugin
    assert (await core.http.get(AUTH, headers=forward(uri, core.token(other)))).status_code == 404


async def until(core: Core, uri: str, token: str, status: int) -> None:
    """The decision changes to ``status`` within a second of the state change."""
    start = asyncio.get_running_loop().time()
    while (await core.http.get(AUTH, headers=forward(uri, token))).status_code != status:
        assert asyncio.get_running_loop().time() - start < 1.2, f"still not {status}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "uri",
    [
        "/api/plugins/crm/../../core/v1/tenants",
        "/api/plugins/crm/%2e%2e/x",
        "/api/plugins/crm%2fx",
        "/api/plugins/crm/%2F..%2Fcore",
        "/api/plugins/crm%5cx",
        "/api//core/v1/tenant",
        "/api/plugins/crm/a\\b",
        "/api/core/./v1",
    ],
)
def test_path_tricks_are_bad_requests(uri: str) -> None:
    with pytest.raises(BadPathError):
        classify(uri)


@pytest.mark.parametrize(
    "uri",
    [
        "/api/plugins/CRM/v1",
        "/API/core/v1/tenant",
        "/api/nothing",
        "/api/core/v1/gateway/authorize",
    ],
)
def test_case_tricks_and_unknown_api_are_404(uri: str) -> None:
    with pytest.raises(NotFoundError):
        classify(uri)


async def test_path_trick_through_the_endpoint_is_400(core: Core) -> None:
    t = await core.tenant()
    r = await core.http.get(AUTH, headers=forward("/api/plugins/x/%2e%2e/core", core.token(t)))
    assert r.status_code == 400
    assert error_of(r)["code"] == "bad_path"


def test_limit_policy_most_specific_wins() -> None:
    p = LimitPolicy.parse(100, "plugin:crm=300, tenant:acme=1000, tenant:acme/plugin:crm=50")
    assert p.limit("acme", "plugin:crm").requests == 50
    assert p.limit("other", "plugin:crm").requests == 300
    assert p.limit("acme", "core").requests == 1000
    assert p.limit(None, "core").requests == 100
    with pytest.raises(ValueError):
        LimitPolicy.parse(100, "crm")


async def test_rate_limit_in_redis_shared_by_replicas(
    settings: Settings, db: Database, issuers: StaticIssuers, redis_url: str, plugin_id: str
) -> None:
    tuned = settings.model_copy(
        update={"redis_url": redis_url, "gateway_rate_limits": f"plugin:{plugin_id}=3"}
    )
    app_a = core_app(tuned, db, issuers, [plugin_id])
    gen_a, gen_b = running(app_a), running(core_app(tuned, db, issuers, [plugin_id]))
    a, b = await anext(gen_a), await anext(gen_b)
    try:
        core = Core(app_a, a, issuers)
        t = await core.tenant()
        await core.install(t, plugin_id)
        headers = forward(f"/api/plugins/{plugin_id}/v1/x", core.token(t, "rl-user"))
        codes = [(await (a, b)[i % 2].get(AUTH, headers=headers)).status_code for i in range(4)]
        assert isinstance(started(state_of(app_a).gateway, "gateway").limiter, RedisRateLimiter)
        assert codes == [200, 200, 200, 429]
        refused = await b.get(AUTH, headers=headers)
        assert refused.status_code == 429
        assert error_of(refused)["code"] == "rate_limited"
        assert refused.headers["Retry-After"] == "20"
        assert refused.headers["RateLimit-Remaining"] == "0"
        # another user of the same tenant, and the core route group, have their own budget
        other = forward(f"/api/plugins/{plugin_id}/v1/x", core.token(t, "rl-other"))
        assert (await a.get(AUTH, headers=other)).status_code == 200
        core_route = forward("/api/core/v1/tenant", core.token(t, "rl-user"))
        assert (await a.get(AUTH, headers=core_route)).status_code == 200
    finally:
        for gen in (gen_a, gen_b):
            with pytest.raises(StopAsyncIteration):
                await anext(gen)


async def test_operator_passes_on_core_but_not_on_plugins(core: Core, plugin_id: str) -> None:
    op = core.issuers.operator_headers()["Authorization"].removeprefix("Bearer ")
    r = await core.http.get(AUTH, headers=forward("/api/core/v1/tenants", op))
    assert r.status_code == 200, r.text
    assert r.headers["X-User-Roles"] == "super_admin"
    assert r.headers.get("X-Tenant-ID", "") == ""
    r = await core.http.get(AUTH, headers=forward(f"/api/plugins/{plugin_id}/v1/x", op))
    assert r.status_code == 403
    assert error_of(r)["code"] == "tenant_required"
