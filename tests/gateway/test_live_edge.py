"""The live edge: the real Traefik binary with the committed static configuration
(``deploy/traefik/traefik.yml``, JSON access log), its routes kept current by
``plexica gateway config traefik --watch`` (a process of its own), a plugin service as a process
of its own, the core (uvicorn on loopback) and rate limits in real Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import yaml

from plexica.app import create_app
from plexica.kit.ports import free_port
from plexica.settings import Settings
from tests.gateway.test_traefik import TRACE, TRAEFIK, Served
from tests.harness.servers import spawn, wait_for_port
from tests.plugins.conftest import plugin_doc
from tests.support.tokens import StaticIssuers

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "deploy" / "traefik" / "traefik.yml"
# Seconds a call or a change may take: on a saturated machine, many times its usual second.
SLOW = 120


@dataclass
class Live:
    web: str
    admin: str
    core: str
    token: str
    tenant: dict[str, Any]
    moving: str  # registered, installed and removed by a test
    steady: str  # installed from the start
    work: Path

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def routers(self) -> set[str]:
        r = httpx.get(f"{self.admin}/api/http/routers")
        # Traefik's own API answers 404 until its internal routes are loaded.
        return {x["name"] for x in r.json()} if r.status_code == 200 else set()

    def log_lines(self, name: str) -> list[dict[str, Any]]:
        lines = (self.work / name).read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def eventually(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, what
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def live(
    settings: Settings,
    database_url: str,
    issuers: StaticIssuers,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Live]:
    work = tmp_path_factory.mktemp("live-edge")
    dynamic = work / "dynamic"
    dynamic.mkdir()
    moving, steady = "gwm" + uuid.uuid4().hex[:8], "gws" + uuid.uuid4().hex[:8]
    slug = "gwl-" + uuid.uuid4().hex[:8]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        plugin_port = free_port()
        plugin = spawn(
            [
                sys.executable, "-m", "uvicorn", "--factory", "tests.gateway.echo_plugin:create",
                "--host", "127.0.0.1", "--port", str(plugin_port), "--no-access-log",
            ],
            work / "plugin.log",
            env={**os.environ, "ECHO_PLUGIN_ID": "echo"},
            cwd=REPO,
        )  # fmt: skip
        procs.append(plugin)
        plugin_url = f"http://127.0.0.1:{plugin_port}"
        urls = f"{moving}={plugin_url},{steady}={plugin_url}"
        tuned = settings.model_copy(update={"redis_url": redis_url, "plugin_urls": urls})
        with Served(create_app(tuned, verifier=issuers.verifier())) as core:
            op = issuers.operator_headers()
            for pid in (moving, steady):
                r = httpx.post(
                    f"{core.url}/v1/plugins",
                    json={"manifest": plugin_doc(pid), "migrations": []},
                    headers=op,
                    timeout=SLOW,
                )
                assert r.status_code == 201, r.text
                r = httpx.post(
                    f"{core.url}/v1/plugins/{pid}/versions/1.0.0/publish", headers=op, timeout=SLOW
                )
                assert r.status_code == 200, r.text
            r = httpx.post(
                f"{core.url}/v1/tenants",
                json={"slug": slug, "name": "Live", "admin_email": "a@live.example"},
                headers=op,
                timeout=SLOW,
            )
            assert r.status_code == 201, r.text
            tenant = r.json()
            issuers.add_tenant(uuid.UUID(tenant["id"]), slug)
            token = issuers.token(f"plexica-{slug}", sub="live-user", roles=["tenant_admin"])
            wait_for_port(plugin_port, timeout=60, proc=plugin)  # started beside the core
            r = httpx.post(
                f"{core.url}/v1/tenants/{tenant['id']}/plugins",
                json={"plugin_id": steady},
                headers={"Authorization": f"Bearer {token}"},
                timeout=SLOW,
            )
            assert r.status_code == 201, r.text

            config = dynamic / "plexica.yml"
            watcher = spawn(
                [
                    sys.executable, "-m", "plexica.cli", "gateway", "config", "traefik",
                    "--watch", "--interval", "0.5", "--core-url", core.url, "-o", str(config),
                ],
                work / "watch.log",
                env={
                    **os.environ,
                    "PLEXICA_DATABASE_URL": database_url,
                    "PLEXICA_PLUGIN_URLS": urls,
                    "PLEXICA_DATA_DIR": str(work),
                    "PLEXICA_LOG_FORMAT": "json",
                },
            )  # fmt: skip
            procs.append(watcher)
            eventually(config.exists, SLOW, "the watcher wrote no configuration")

            static = yaml.safe_load(STATIC.read_text())
            web, admin = free_port(), free_port()
            static["entryPoints"]["web"]["address"] = f"127.0.0.1:{web}"
            static["entryPoints"]["websecure"]["address"] = f"127.0.0.1:{free_port()}"
            static["entryPoints"]["traefik"]["address"] = f"127.0.0.1:{admin}"
            static["providers"]["file"]["directory"] = str(dynamic)
            static["accessLog"]["filePath"] = str(work / "access.log")
            static["api"] = {"insecure": True, "dashboard": False}
            (work / "traefik.yml").write_text(yaml.safe_dump(static))
            traefik = spawn([str(TRAEFIK), f"--configFile={work / 'traefik.yml'}"], work / "t.log")
            procs.append(traefik)
            live = Live(
                f"http://127.0.0.1:{web}",
                f"http://127.0.0.1:{admin}",
                core.url,
                token,
                tenant,
                moving,
                steady,
                work,
            )

            def loaded() -> bool:
                assert traefik.poll() is None, (work / "t.log").read_text()
                try:
                    return f"plugin-{steady}@file" in live.routers()
                except httpx.TransportError:
                    return False

            eventually(loaded, SLOW, "traefik did not load the routes")
            yield live
    finally:
        for proc in reversed(procs):
            _stop(proc)


def test_a_plugin_route_comes_with_its_first_install_and_goes_with_its_last_removal(
    live: Live,
) -> None:
    url = f"{live.web}/api/plugins/{live.moving}/v1/echo"
    assert f"plugin-{live.moving}@file" not in live.routers()
    r = httpx.get(url, headers=live.auth())
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "not_found"

    r = httpx.post(
        f"{live.core}/v1/tenants/{live.tenant['id']}/plugins",
        json={"plugin_id": live.moving},
        headers=live.auth(),
        timeout=30,
    )
    assert r.status_code == 201, r.text
    seen: list[int] = []

    def reached() -> bool:
        seen.append(httpx.get(url, headers=live.auth()).status_code)
        return seen[-1] == 200

    routed = eventually(reached, SLOW, "traefik did not route the newly installed plugin")
    # Until Traefik has reloaded, the decision allows it but no router has it: the core's 404.
    assert set(seen) <= {404, 200}, seen
    body = httpx.get(url, headers=live.auth()).json()
    assert body["path"] == "/v1/echo"
    assert body["headers"]["x-tenant-id"] == live.tenant["id"]

    r = httpx.delete(
        f"{live.core}/v1/tenants/{live.tenant['id']}/plugins/{live.moving}",
        params={"purge": "true"},
        headers=live.auth(),
        timeout=30,
    )
    assert r.status_code in (200, 204), r.text
    removed = eventually(
        lambda: f"plugin-{live.moving}@file" not in live.routers(),
        SLOW,
        "traefik kept the route of a plugin no tenant has",
    )
    r = httpx.get(url, headers=live.auth())
    assert r.status_code == 404, r.text
    assert f"plugin-{live.steady}@file" in live.routers()
    written = [e for e in live.log_lines("watch.log") if e["event"] == "gateway_config_written"]
    assert [live.moving in e["plugins"] for e in written] == [False, True, False]
    print(f"\nroute live {routed:.1f}s after install, gone {removed:.1f}s after removal")


@pytest.mark.parametrize("client_sends", [True, False], ids=["client-id", "edge-made-id"])
def test_one_trace_id_in_the_gateway_core_and_plugin_logs(live: Live, client_sends: bool) -> None:
    path = f"/api/plugins/{live.steady}/v1/echo"
    sent = {"X-Trace-ID": TRACE + uuid.uuid4().hex[:8]} if client_sends else {}
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as core_logs:
        r = httpx.get(live.web + path, headers={**live.auth(), **sent})
    assert r.status_code == 200, r.text
    trace = r.headers["X-Trace-ID"]
    if client_sends:
        assert trace == sent["X-Trace-ID"]
    assert r.json()["headers"]["x-trace-id"] == trace

    decisions = [
        e
        for e in core_logs
        if e.get("event") == "request" and e.get("path") == "/v1/gateway/authorize"
    ]
    assert [e["trace_id"] for e in decisions] == [trace], decisions

    def plugin_logged() -> bool:
        return any(
            e.get("event") == "request" and e.get("path") == "/v1/echo" and e["trace_id"] == trace
            for e in live.log_lines("plugin.log")
        )

    def traefik_logged() -> bool:
        return any(
            e.get("RequestPath") == path and e.get("request_X-Trace-Id") == trace
            for e in live.log_lines("access.log")
        )

    eventually(plugin_logged, SLOW, "the plugin did not log the trace id")
    eventually(traefik_logged, SLOW, "traefik's access log lacks the trace id")


def test_oversized_headers_are_refused_at_traefik(live: Live) -> None:
    path = f"/api/plugins/{live.steady}/v1/echo"
    fine = httpx.get(live.web + path, headers={**live.auth(), "X-Padding": "a" * 8192})
    assert fine.status_code == 200, fine.text
    marker = uuid.uuid4().hex
    r = httpx.get(
        live.web + path + "?m=" + marker, headers={**live.auth(), "X-Padding": "a" * 65536}
    )
    assert r.status_code == 431, r.text
    assert not any(marker in json.dumps(e) for e in live.log_lines("plugin.log"))


def test_a_refused_request_has_one_trace_id_in_the_gateway_and_core_logs(live: Live) -> None:
    """Without a token the decision refuses; the id it made reaches the client and Traefik's
    access log (as the response header) and is in the core's decision line."""
    path = f"/api/plugins/{live.steady}/v1/echo?r={uuid.uuid4().hex}"
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as core_logs:
        r = httpx.get(live.web + path)
        assert r.status_code == 401, r.text
        trace = r.headers["X-Trace-ID"]

        def decisions() -> list[tuple[str, int]]:
            return [
                (e["trace_id"], e["status"])
                for e in core_logs
                if e.get("event") == "request" and e.get("path") == "/v1/gateway/authorize"
            ]

        # The core writes its request line once the response has gone, which Traefik may
        # already have relayed to the client.
        eventually(lambda: bool(decisions()), SLOW, "the core logged no decision")
    assert decisions() == [(trace, 401)]

    def traefik_logged() -> bool:
        lines = [e for e in live.log_lines("access.log") if e.get("RequestPath") == path]
        return bool(lines) and lines[0].get("downstream_X-Trace-Id") == trace

    eventually(traefik_logged, SLOW, "traefik's access log lacks the refused request's trace id")
