"""Gateway configuration: Traefik's static and dynamic files loaded by a real Traefik; Kong's
declarative file checked structurally (Kong is in no package registry)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from plexica.kit.pgserver import free_port
from tests.deploy.conftest import DEPLOY, load_yaml

TRAEFIK = Path(sys.executable).with_name("traefik")
KONG_BUNDLED = {
    "pre-function",
    "rate-limiting",
    "correlation-id",
    "request-termination",
    "jwt",
    "request-transformer",
    "prometheus",
}


@pytest.fixture(scope="module")
def traefik(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Traefik on loopback with the committed static config (ports and directory swapped)."""
    work = tmp_path_factory.mktemp("traefik")
    static = load_yaml(DEPLOY / "traefik" / "traefik.yml")
    web, admin = free_port(), free_port()
    entry = static["entryPoints"]
    entry["web"]["address"] = f"127.0.0.1:{web}"
    entry["websecure"]["address"] = f"127.0.0.1:{free_port()}"
    entry["traefik"]["address"] = f"127.0.0.1:{admin}"
    static["providers"]["file"]["directory"] = str(DEPLOY / "traefik" / "dynamic")
    static["api"] = {"insecure": True, "dashboard": False}
    static["accessLog"]["filePath"] = str(work / "access.log")
    (work / "traefik.yml").write_text(yaml.safe_dump(static))
    log = (work / "traefik.log").open("w")
    proc = subprocess.Popen(
        [str(TRAEFIK), f"--configFile={work / 'traefik.yml'}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{admin}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/http/routers", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (work / "traefik.log").read_text()
            assert time.monotonic() < deadline, "traefik did not start"
            time.sleep(0.1)
        yield {"admin": base, "web": f"http://127.0.0.1:{web}", "work": work}
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_traefik_loads_every_router_and_middleware(traefik: dict[str, Any]) -> None:
    dynamic = load_yaml(DEPLOY / "traefik" / "dynamic" / "plexica.yml")["http"]
    routers = {
        r["name"].removesuffix("@file").removeprefix("websecure-"): r
        for r in httpx.get(f"{traefik['admin']}/api/http/routers").json()
        if r["name"].endswith("@file")
    }
    assert set(routers) == set(dynamic["routers"])
    for name, router in routers.items():
        assert router["status"] == "enabled", (name, router.get("error"))
    middlewares = {
        m["name"].removesuffix("@file"): m
        for m in httpx.get(f"{traefik['admin']}/api/http/middlewares").json()
    }
    for name in dynamic["middlewares"]:
        assert middlewares[name]["status"] == "enabled", (name, middlewares[name])
    assert middlewares["auth"]["forwardAuth"]["address"].endswith("/v1/gateway/authorize")


def test_decision_endpoint_is_not_reachable_through_the_gateway(traefik: dict[str, Any]) -> None:
    response = httpx.get(f"{traefik['web']}/api/core/v1/gateway/authorize")
    assert response.status_code == 403
    ping = httpx.get(f"{traefik['admin']}/ping")
    assert ping.text == "OK"


def test_access_log_is_json_without_credentials(traefik: dict[str, Any]) -> None:
    httpx.get(f"{traefik['web']}/api/plugins/crm/v1/x", headers={"Authorization": "Bearer s3cr3t"})
    log = traefik["work"] / "access.log"
    deadline = time.monotonic() + 5
    while "/api/plugins/crm/v1/x" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    text = log.read_text()
    assert "s3cr3t" not in text
    line = json.loads(text.strip().splitlines()[-1])
    assert line["RequestPath"] == "/api/plugins/crm/v1/x"


def test_api_routers_authorise_then_rate_limit() -> None:
    http = load_yaml(DEPLOY / "traefik" / "dynamic" / "plexica.yml")["http"]
    for name, router in http["routers"].items():
        if router["rule"].startswith("PathPrefix(`/api/") and "deny" not in router["middlewares"]:
            assert router["middlewares"][:2] == ["auth", "rate-limit"], name
    auth = http["middlewares"]["auth"]["forwardAuth"]
    assert {"X-Tenant-ID", "X-User-ID"} <= set(auth["authResponseHeaders"])
    assert auth["trustForwardHeader"] is False
    assert http["middlewares"]["rate-limit"]["rateLimit"]["average"] == 100


@pytest.fixture(scope="module")
def kong() -> dict[str, Any]:
    return dict(load_yaml(DEPLOY / "kong" / "kong.yml"))


def test_kong_declarative_shape(kong: dict[str, Any]) -> None:
    assert kong["_format_version"] == "3.0"
    services = {s["name"]: s for s in kong["services"]}
    assert {"core-api", "plugin-crm", "plugin-billing", "web"} <= set(services)
    compose = load_yaml(DEPLOY / "compose" / "docker-compose.yml")["services"]
    for name, svc in services.items():
        host = httpx.URL(svc["url"]).host
        assert host in compose or host == "core", name
        assert svc["routes"]
        for route in svc["routes"]:
            assert route["paths"]
            assert all(p.startswith("/") for p in route["paths"])
            for plugin in route.get("plugins", []):
                assert plugin["name"] in KONG_BUNDLED
        for plugin in svc.get("plugins", []):
            assert plugin["name"] in KONG_BUNDLED, plugin["name"]
    assert services["core-api"]["routes"][0]["paths"] == ["/api/core"]
    for slug in ("crm", "billing"):
        assert services[f"plugin-{slug}"]["routes"][0]["paths"] == [f"/api/plugins/{slug}"]


def test_kong_api_services_authorise_limit_and_trace(kong: dict[str, Any]) -> None:
    for svc in kong["services"]:
        plugins = {p["name"]: p.get("config", {}) for p in svc.get("plugins", [])}
        assert plugins["correlation-id"]["header_name"] == "X-Trace-ID"
        if svc["name"] == "web":
            continue
        assert "/v1/gateway/authorize" in plugins["pre-function"]["access"][0]
        limit = plugins["rate-limiting"]
        assert (limit["minute"], limit["policy"], limit["redis_host"]) == (100, "redis", "redis")
