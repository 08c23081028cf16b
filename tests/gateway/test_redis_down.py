"""The decision when its Redis goes away and comes back: a Redis of the test's own, stopped and
started again on the same port (by PID), in front of the core on real PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog
from prometheus_client import REGISTRY

from plexica.kit.db import Database
from plexica.settings import Settings
from tests.conftest import error_of, running
from tests.gateway.conftest import Core, core_app, forward
from tests.harness.servers import RedisServer
from tests.support.tokens import StaticIssuers

LIMIT = 3


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def errors(mode: str) -> float:
    value = REGISTRY.get_sample_value("plexica_rate_limiter_errors_total", {"mode": mode})
    return value or 0.0


async def decide(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.get("/v1/gateway/authorize", headers=forward("/api/core/v1/tenant", token))


async def limits_apply(http: httpx.AsyncClient, issuers: StaticIssuers, realm: str) -> None:
    """A fresh user gets LIMIT answers counted down in Redis, then 429."""
    token = issuers.token(realm, roles=["member"])
    statuses, remaining = [], []
    for _ in range(LIMIT + 1):
        r = await decide(http, token)
        statuses.append(r.status_code)
        remaining.append(r.headers.get("RateLimit-Remaining"))
    assert statuses == [200] * LIMIT + [429], statuses
    assert remaining[:LIMIT] == [str(n) for n in range(LIMIT - 1, -1, -1)], remaining


async def redis_back(http: httpx.AsyncClient, issuers: StaticIssuers, realm: str) -> None:
    """The client's pool reconnects on its own: poll until a decision is counted in Redis again
    (fail-open answers say Remaining == limit, fail-closed ones are 503)."""
    deadline = time.monotonic() + 10
    while True:
        r = await decide(http, issuers.token(realm, roles=["member"]))
        if r.status_code == 200 and r.headers["RateLimit-Remaining"] == str(LIMIT - 1):
            return
        assert time.monotonic() < deadline, (r.status_code, r.headers)
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail-open", "fail-closed"])
async def test_decision_follows_the_configured_policy_while_redis_is_down(
    settings: Settings,
    db: Database,
    issuers: StaticIssuers,
    plugin_id: str,
    redis: RedisServer,
    fail_open: bool,
) -> None:
    tuned = settings.model_copy(
        update={
            "redis_url": redis.url,
            "gateway_rate_limit": LIMIT,
            "gateway_rate_limit_fail_open": fail_open,
            # Room for a busy test machine: the point here is the policy, not the budget.
            "redis_timeout_ms": 2000,
        }
    )
    app = core_app(tuned, db, issuers, [plugin_id])
    async for http in running(app):
        tenant = await Core(app, http, issuers).tenant()
        realm = f"plexica-{tenant['slug']}"
        await limits_apply(http, issuers, realm)

        redis.stop()
        mode = "local" if fail_open else "closed"
        before = errors(mode)
        token = issuers.token(realm, roles=["member"])
        with structlog.testing.capture_logs() as logs:
            answers = [await decide(http, token) for _ in range(LIMIT + 2)]
        if fail_open:
            # Not open: this replica's own limiter counts while Redis is away.
            assert [r.status_code for r in answers] == [200] * LIMIT + [429] * 2
            assert answers[0].headers["X-Tenant-ID"] == tenant["id"]
        else:
            assert {r.status_code for r in answers} == {503}
            assert error_of(answers[0])["code"] == "rate_limiter_unavailable"
            assert answers[0].headers["Retry-After"] == "1"
        assert errors(mode) == before + LIMIT + 2
        # The outage is logged once (the breaker opening), not once per request; on a busy
        # machine a slow answer before the stop may already have opened it (then none here).
        warnings = [e for e in logs if e["event"] == "redis_unavailable"]
        assert len(warnings) <= 1, logs
        assert all(w["component"] == "rate_limiter" for w in warnings)

        redis.start()
        await redis_back(http, issuers, realm)
        await limits_apply(http, issuers, realm)


async def test_a_hanging_redis_is_skipped_and_limits_are_kept_locally(
    settings: Settings,
    db: Database,
    issuers: StaticIssuers,
    plugin_id: str,
    redis: RedisServer,
) -> None:
    """SIGSTOP: connections are accepted and never answered. One call pays the 100 ms budget,
    then the breaker answers locally until Redis is back."""
    tuned = settings.model_copy(update={"redis_url": redis.url, "gateway_rate_limit": LIMIT})
    app = core_app(tuned, db, issuers, [plugin_id])
    async for http in running(app):
        tenant = await Core(app, http, issuers).tenant()
        realm = f"plexica-{tenant['slug']}"
        await limits_apply(http, issuers, realm)
        assert redis.proc is not None
        redis.proc.send_signal(signal.SIGSTOP)
        try:
            before = errors("local")
            with structlog.testing.capture_logs() as logs:
                token = issuers.token(realm, roles=["member"])
                answers = [await decide(http, token) for _ in range(LIMIT + 2)]
            assert [r.status_code for r in answers] == [200] * LIMIT + [429] * 2
            assert errors("local") == before + LIMIT + 2
            warnings = [e for e in logs if e["event"] == "redis_unavailable"]
            assert len(warnings) <= 1
            assert all("Timeout" in w["error"] for w in warnings)
        finally:
            redis.proc.send_signal(signal.SIGCONT)
        await redis_back(http, issuers, realm)
