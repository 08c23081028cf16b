"""The core service against a real PostgreSQL: health, readiness, metrics, error contract."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from fastapi import FastAPI

from plexica.app import create_app
from plexica.kit.db import Database
from plexica.kit.ports import free_port
from plexica.settings import Settings
from tests.conftest import error_of, running


async def test_health_is_ok_without_io(core: httpx.AsyncClient) -> None:
    r = await core.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


async def test_ready_checks_the_database(core: httpx.AsyncClient) -> None:
    r = await core.get("/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"database": "ok"}, "degraded": {}}


async def test_ready_is_503_naming_the_failed_dependency(tmp_path: Path) -> None:
    dead = f"postgresql://nobody:x@127.0.0.1:{free_port()}/none"
    settings = Settings(database_url=dead, data_dir=tmp_path)
    async for client in running(create_app(settings)):
        r = await client.get("/ready")
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "not_ready"
        assert body["checks"]["database"].startswith("fail:")


async def health_of(client: httpx.AsyncClient, name: str) -> str:
    """The dependency's result in /health once its background check has answered."""
    deadline = time.monotonic() + 30
    while True:
        await client.get("/ready")
        found = str((await client.get("/health")).json()["checks"][name])
        if found != "unknown":
            return found
        assert time.monotonic() < deadline, "no check result in time"
        await asyncio.sleep(0.05)


async def test_redis_is_a_detail_of_health_not_a_condition_of_ready(
    settings: Settings, db: Database, redis_url: str
) -> None:
    app = create_app(settings.model_copy(update={"redis_url": redis_url}), db=db)
    async for client in running(app):
        r = await client.get("/ready")
        assert r.status_code == 200
        assert r.json()["checks"] == {"database": "ok"}
        assert await health_of(client, "redis") == "ok"


async def test_redis_and_broker_down_degrade_without_taking_the_service_out(
    settings: Settings, db: Database
) -> None:
    down = settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            "kafka_brokers": f"127.0.0.1:{free_port()}",
        }
    )
    async for client in running(create_app(down, db=db)):
        r = await client.get("/ready")
        assert r.status_code == 200, r.json()
        assert await health_of(client, "redis") != "ok"
        assert await health_of(client, "kafka") != "ok"
        health = (await client.get("/health")).json()
        assert health["status"] == "degraded"
        metrics = (await client.get("/metrics")).text
        assert 'plexica_dependency_up{dependency="redis"} 0.0' in metrics
        assert 'plexica_dependency_up{dependency="database"} 1.0' in metrics


async def test_ready_is_503_while_draining(core: httpx.AsyncClient) -> None:
    app = core._transport.app  # type: ignore[attr-defined]
    app.state.readiness.draining = True
    r = await core.get("/ready")
    assert r.status_code == 503
    assert r.json()["status"] == "draining"


async def test_metrics_expose_red_per_route_template(core: httpx.AsyncClient) -> None:
    await core.get("/v1/info")
    await core.get("/v1/nope")
    text = (await core.get("/metrics")).text
    assert (
        'plexica_http_requests_total{method="GET",route="/v1/info",service="core",status="200"}'
        in text
    )
    assert 'route="unmatched",service="core",status="404"' in text
    assert "plexica_http_request_duration_seconds_bucket" in text
    assert "plexica_http_requests_in_flight" in text
    assert "plexica_db_pool_size" in text


async def test_trace_id_is_echoed_or_generated(core: httpx.AsyncClient) -> None:
    r = await core.get("/v1/info", headers={"X-Trace-ID": "trace-abcdef-123"})
    assert r.headers["x-trace-id"] == "trace-abcdef-123"
    generated = (await core.get("/v1/info", headers={"X-Trace-ID": "bad id\x01"})).headers
    assert len(generated["x-trace-id"]) == 32
    assert len(generated["x-request-id"]) == 32


async def test_unknown_route_has_the_error_shape(core: httpx.AsyncClient) -> None:
    r = await core.get("/v1/does-not-exist")
    assert r.status_code == 404
    assert error_of(r)["code"] == "not_found"


async def test_validation_errors_have_the_error_shape(settings: Settings, db: Database) -> None:
    app = create_app(settings, db=db)

    @app.get("/v1/echo")
    async def echo(n: int) -> dict[str, int]:
        return {"n": n}

    async for client in running(app):
        r = await client.get("/v1/echo", params={"n": "x"})
        assert r.status_code == 422
        err = error_of(r)
        assert err["code"] == "validation_error"
        assert err["details"][0]["loc"] == ["query", "n"]


async def test_unhandled_errors_leak_no_stack_trace(settings: Settings, db: Database) -> None:
    app: FastAPI = create_app(settings, db=db)

    @app.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    async for client in running(app):
        r = await client.get("/v1/boom")
        assert r.status_code == 500
        assert error_of(r) == {
            "code": "internal_error",
            "message": "internal server error",
            "details": None,
        }
        assert "secret" not in r.text


async def test_openapi_is_served(core: httpx.AsyncClient) -> None:
    r = await core.get("/openapi.json")
    assert r.status_code == 200
    assert "/v1/info" in r.json()["paths"]


async def test_requests_get_503_with_retry_after_while_the_database_is_down(
    tmp_path: Path,
) -> None:
    dead = f"postgresql://nobody:x@127.0.0.1:{free_port()}/none"
    settings = Settings(database_url=dead, data_dir=tmp_path)
    async for client in running(create_app(settings)):
        # The provider's discovery document reads the realm from the database that is down.
        r = await client.get("/realms/plexica-acme/.well-known/openid-configuration")
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "2"
        assert error_of(r)["code"] == "temporarily_unavailable"
