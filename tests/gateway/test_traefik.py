"""The real Traefik binary in front of a real core and a real plugin service (both served by
uvicorn on loopback), with the dynamic configuration ``plexica gateway config traefik`` writes
from the plugin registry, and rate limits in real Redis."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI, Request
from typer.testing import CliRunner

from plexica.app import create_app
from plexica.cli.main import app as cli
from plexica.kit.ports import free_port
from plexica.settings import Settings
from plexica_sdk.manifest import parse_manifest
from tests.plugins.conftest import bare_app, plugin_doc
from tests.support.tokens import StaticIssuers

TRAEFIK = Path(sys.executable).with_name("traefik")
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
STATIC = Path(__file__).parents[2] / "deploy" / "traefik" / "traefik.yml"
SHIPPED_ENTRY_POINT = yaml.safe_load(STATIC.read_text())["entryPoints"]["web"]


class Served:
    """An ASGI app served by uvicorn on a free loopback port, in a thread of its own."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive(), "server did not start"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def echo_plugin(plugin_id: str) -> FastAPI:
    app = bare_app(parse_manifest(plugin_doc(plugin_id)))

    @app.get("/v1/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(5)  # well past the 1 s upstream timeout the tests register
        return {}

    @app.get("/v1/echo")
    async def echo(request: Request) -> dict[str, Any]:
        return {"path": request.url.path, "headers": dict(request.headers)}

    return app


@pytest.fixture(scope="module")
def edge(
    settings: Settings,
    database_url: str,
    issuers: StaticIssuers,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("traefik-edge")
    pid = "gwt" + uuid.uuid4().hex[:8]
    down_id = "gwd" + uuid.uuid4().hex[:8]  # installed, then stopped: its route is 502
    slug = "gwt-" + uuid.uuid4().hex[:8]
    down = Served(echo_plugin(down_id)).__enter__()
    with Served(echo_plugin(pid)) as plugin:
        urls = f"{pid}={plugin.url},{down_id}={down.url}"
        tuned = settings.model_copy(
            update={
                "redis_url": redis_url,
                "plugin_urls": urls,
                "gateway_rate_limits": f"tenant:{slug}/core=4",
            }
        )
        with Served(create_app(tuned, verifier=issuers.verifier())) as core:
            op = issuers.operator_headers()
            for plugin_id in (pid, down_id):
                # A plugin slower than 1 s to start answering gets 504 from Traefik (ADR 0137).
                doc = plugin_doc(plugin_id, api={"upstream_timeout_seconds": 1})
                r = httpx.post(
                    f"{core.url}/v1/plugins", json={"manifest": doc, "migrations": []}, headers=op
                )
                assert r.status_code == 201, r.text
                r = httpx.post(
                    f"{core.url}/v1/plugins/{plugin_id}/versions/1.0.0/publish", headers=op
                )
                assert r.status_code == 200, r.text
            r = httpx.post(
                f"{core.url}/v1/tenants",
                json={"slug": slug, "name": "Edge", "admin_email": "a@edge.example"},
                headers=op,
                timeout=30,
            )
            assert r.status_code == 201, r.text
            tenant = r.json()
            issuers.add_tenant(uuid.UUID(tenant["id"]), slug)
            token = issuers.token(f"plexica-{slug}", sub="edge-user", roles=["tenant_admin"])
            for plugin_id in (pid, down_id):
                r = httpx.post(
                    f"{core.url}/v1/tenants/{tenant['id']}/plugins",
                    json={"plugin_id": plugin_id},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )
                assert r.status_code == 201, r.text
            down.__exit__()

            dynamic = work / "dynamic.yml"
            env = {
                "PLEXICA_DATABASE_URL": database_url,
                "PLEXICA_PLUGIN_URLS": urls,
                "PLEXICA_DATA_DIR": str(work),
            }
            result = CliRunner().invoke(
                cli,
                ["gateway", "config", "traefik", "--core-url", core.url, "-o", str(dynamic)],
                env=env,
            )
            assert result.exit_code == 0, result.output
            web, admin = free_port(), free_port()
            static = {
                "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
                "entryPoints": {
                    # The shipped entry point's limits (header budget, timeouts) on loopback.
                    "web": {**SHIPPED_ENTRY_POINT, "address": f"127.0.0.1:{web}"},
                    "traefik": {"address": f"127.0.0.1:{admin}"},
                },
                "providers": {"file": {"filename": str(dynamic), "watch": True}},
                "api": {"insecure": True, "dashboard": False},
                "log": {"level": "INFO"},
            }
            (work / "traefik.yml").write_text(yaml.safe_dump(static))
            log = (work / "traefik.log").open("w")
            proc = subprocess.Popen(
                [str(TRAEFIK), f"--configFile={work / 'traefik.yml'}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        routers = httpx.get(f"http://127.0.0.1:{admin}/api/http/routers", timeout=1)
                        if f"plugin-{pid}@file" in routers.text:
                            break
                    except httpx.TransportError:
                        pass
                    assert proc.poll() is None, (work / "traefik.log").read_text()
                    assert time.monotonic() < deadline, "traefik did not load the routes"
                    time.sleep(0.1)
                yield {
                    "web": f"http://127.0.0.1:{web}",
                    "admin": f"http://127.0.0.1:{admin}",
                    "token": token,
                    "tenant": tenant,
                    "plugin": pid,
                    "down": down_id,
                    "down_port": down.port,
                    "config": yaml.safe_load(dynamic.read_text()),
                    "log": work / "traefik.log",
                }
            finally:
                proc.terminate()
                proc.wait(10)
                log.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_generated_router_is_enabled(edge: dict[str, Any]) -> None:
    routers = httpx.get(f"{edge['admin']}/api/http/routers").json()
    mine = {r["name"]: r for r in routers if r["name"].endswith("@file")}
    assert {f"{name}@file" for name in edge["config"]["http"]["routers"]} == set(mine)
    for name, router in mine.items():
        assert router["status"] == "enabled", (name, router.get("error"), edge["log"].read_text())


def test_no_token_is_401(edge: dict[str, Any]) -> None:
    for path in ("/api/core/v1/tenant", f"/api/plugins/{edge['plugin']}/v1/echo"):
        r = httpx.get(edge["web"] + path)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["error"]["code"] == "unauthenticated"


def test_tenant_token_reaches_the_core_with_the_trace_id(edge: dict[str, Any]) -> None:
    r = httpx.get(
        edge["web"] + "/api/core/v1/tenant",
        headers={**auth(edge["token"]), "X-Trace-ID": TRACE},
    )
    assert r.status_code == 200, r.text
    assert r.json()["slug"] == edge["tenant"]["slug"]
    assert r.headers["X-Trace-ID"] == TRACE


def test_spoofed_identity_headers_never_reach_the_plugin(edge: dict[str, Any]) -> None:
    spoof = {
        "X-Tenant-ID": str(uuid.uuid4()),
        "X-User-ID": "admin",
        "X-User-Roles": "super_admin",
        "X-Trace-ID": TRACE,
    }
    r = httpx.get(
        f"{edge['web']}/api/plugins/{edge['plugin']}/v1/echo",
        headers={**auth(edge["token"]), **spoof},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["path"] == "/v1/echo"  # prefix stripped
    seen = body["headers"]
    assert seen["x-tenant-id"] == edge["tenant"]["id"]
    assert seen["x-user-id"] == "edge-user"
    assert seen["x-user-roles"] == "tenant_admin"
    assert seen["x-trace-id"] == TRACE


def test_path_tricks_and_unknown_routes_are_refused(edge: dict[str, Any]) -> None:
    h = auth(edge["token"])
    assert httpx.get(edge["web"] + "/api/plugins/nosuch/v1", headers=h).status_code == 404
    assert httpx.get(edge["web"] + "/api/core/v1/gateway/authorize", headers=h).status_code == 404
    tricky = httpx.get(edge["web"] + f"/api/plugins/{edge['plugin']}/%2e%2e/x", headers=h)
    assert tricky.status_code in (400, 404)


def test_rate_limit_is_429_with_retry_after(edge: dict[str, Any]) -> None:
    """The tenant's core limit is 4 a minute (earlier tests used some of it)."""
    statuses = []
    for _ in range(6):
        r = httpx.get(edge["web"] + "/api/core/v1/tenant", headers=auth(edge["token"]))
        statuses.append(r.status_code)
    assert statuses[-1] == 429, statuses
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["RateLimit-Remaining"] == "0"
    assert r.json()["error"]["code"] == "rate_limited"


def test_the_edge_answers_its_own_failures_in_the_error_shape(edge: dict[str, Any]) -> None:
    h = auth(edge["token"])
    # The unreachable plugin's breaker (ADR 0176) may already be open from an earlier call on
    # this module's edge (a slow machine keeps it open longer): then the edge answers for it.
    unreachable = {502: "bad_gateway", 503: "unavailable"}
    cases = [
        ("GET", f"/api/plugins/{edge['down']}/v1/echo", unreachable, b""),
        (
            "POST",
            f"/api/plugins/{edge['plugin']}/v1/echo",
            {413: "payload_too_large"},
            b"x" * 2**21,
        ),
        ("GET", f"/api/plugins/{edge['plugin']}/v1/slow", {504: "upstream_timeout"}, b""),
    ]
    for method, path, expected, body in cases:
        r = httpx.request(method, edge["web"] + path, headers=h, content=body, timeout=60)
        assert r.status_code in expected, (path, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json"), (path, r.headers)
        assert r.json()["error"]["code"] == expected[r.status_code], r.text


def test_a_failing_plugin_trips_its_breaker_and_is_tried_again_once_back(
    edge: dict[str, Any],
) -> None:
    """Traefik's circuit breaker per plugin route (ADR 0176): once most calls fail, callers get
    503 + Retry-After in the error shape without a call to the plugin; other routes are not
    affected; when the plugin is back, its route recovers by itself."""
    h = auth(edge["token"])
    down = f"{edge['web']}/api/plugins/{edge['down']}/v1/echo"
    deadline = time.monotonic() + 60
    while True:
        r = httpx.get(down, headers=h, timeout=30)
        assert r.status_code in (502, 503), r.text
        if r.status_code == 503:
            break
        assert time.monotonic() < deadline, "the breaker never opened"
        time.sleep(0.05)
    assert r.json()["error"]["code"] == "unavailable"
    assert int(r.headers["Retry-After"]) >= 1
    core = httpx.get(edge["web"] + "/api/core/v1/tenant", headers=h)
    assert core.status_code in (200, 429), core.text  # the core's own limit, not the breaker

    with Served(echo_plugin(edge["down"]), port=edge["down_port"]):
        deadline = time.monotonic() + 120
        while (r := httpx.get(down, headers=h, timeout=30)).status_code != 200:
            assert r.status_code in (502, 503), r.text
            assert time.monotonic() < deadline, "the route never recovered"
            time.sleep(0.1)
        assert r.json()["path"] == "/v1/echo"
