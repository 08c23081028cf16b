"""Gateway configuration: the committed Traefik and Kong files are exactly what
``plexica gateway config`` generates; Traefik's static and dynamic files are loaded by a real
Traefik; Kong's declarative file is checked structurally (Kong is in no package registry)."""

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
from typer.testing import CliRunner

from deploy.gateway_configs import REGENERATE, TARGETS, generate, shipped_plugins
from plexica.cli.main import app as cli
from plexica.kit.ports import free_port
from tests.deploy.conftest import DEPLOY, load_yaml

TRAEFIK = Path(sys.executable).with_name("traefik")
KONG_BUNDLED = {"pre-function", "correlation-id", "request-termination", "request-size-limiting"}


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
                # Ready once the file provider's routes are in (the API answers before that).
                routers = httpx.get(f"{base}/api/http/routers", timeout=1)
                if routers.status_code == 200 and "core-api@file" in routers.text:
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


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_committed_config_is_what_the_generator_emits(kind: str) -> None:
    path = TARGETS[kind]
    expected = generate(kind)
    committed = path.read_text() if path.exists() else ""
    assert committed == expected, (
        f"{path.relative_to(DEPLOY.parent)} differs from `plexica gateway config {kind}`'s output"
        f" for the shipped plugins: run {REGENERATE} and commit the result"
    )


def test_traefik_loads_every_router_and_middleware(traefik: dict[str, Any]) -> None:
    dynamic = load_yaml(DEPLOY / "traefik" / "dynamic" / "plexica.yml")["http"]
    routers = [
        r for r in httpx.get(f"{traefik['admin']}/api/http/routers").json()
        if r["name"].endswith("@file")
    ]  # fmt: skip
    names = {r["name"].removesuffix("@file").removeprefix("websecure-") for r in routers}
    assert names == set(dynamic["routers"])
    for router in routers:
        assert router["status"] == "enabled", (router["name"], router.get("error"))
        # Generated routers name no entry point: they take the default ones, not `traefik`.
        assert set(router["using"]) <= {"web", "websecure"}, (router["name"], router["using"])
    middlewares = {
        m["name"].removesuffix("@file"): m
        for m in httpx.get(f"{traefik['admin']}/api/http/middlewares").json()
    }
    for name in dynamic["middlewares"]:
        assert middlewares[name]["status"] == "enabled", (name, middlewares[name])
    assert middlewares["auth"]["forwardAuth"]["address"] == "http://core:3000/v1/gateway/authorize"


def test_ping_answers_on_the_admin_entry_point_only(traefik: dict[str, Any]) -> None:
    assert httpx.get(f"{traefik['admin']}/ping").text == "OK"
    assert httpx.get(f"{traefik['web']}/ping").status_code != 200


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


def test_every_api_router_strips_identity_then_asks_the_decision() -> None:
    http = load_yaml(DEPLOY / "traefik" / "dynamic" / "plexica.yml")["http"]
    api = {n: r for n, r in http["routers"].items() if "`/api" in r["rule"]}
    assert {f"plugin-{slug}" for slug in shipped_plugins()} | {"core-api", "api-unknown"} <= set(
        api
    )
    for name, router in api.items():
        assert router["middlewares"][:2] == ["strip-identity", "auth"], name
    auth = http["middlewares"]["auth"]["forwardAuth"]
    assert {"X-Tenant-ID", "X-User-ID"} <= set(auth["authResponseHeaders"])
    assert auth["trustForwardHeader"] is False
    removed = http["middlewares"]["strip-identity"]["headers"]["customRequestHeaders"]
    assert removed["X-Tenant-ID"] == removed["X-User-ID"] == ""


@pytest.fixture(scope="module")
def kong() -> dict[str, Any]:
    return dict(load_yaml(DEPLOY / "kong" / "kong.yml"))


def test_kong_declarative_shape(kong: dict[str, Any]) -> None:
    assert kong["_format_version"] == "3.0"
    services = {s["name"]: s for s in kong["services"]}
    assert {"core-api", "plugin-crm", "plugin-billing", "web"} <= set(services)
    compose = load_yaml(DEPLOY / "compose" / "docker-compose.yml")["services"]
    for name, svc in services.items():
        assert httpx.URL(svc["url"]).host in compose, name
        assert svc["routes"]
        for route in svc["routes"]:
            assert route["paths"]
            assert all(p.startswith("/") for p in route["paths"])
        for plugin in svc.get("plugins", []):
            assert plugin["name"] in KONG_BUNDLED, plugin["name"]
    assert services["core-api"]["routes"][0]["paths"] == ["/api/core"]
    for slug in ("crm", "billing"):
        assert services[f"plugin-{slug}"]["routes"][0]["paths"] == [f"/api/plugins/{slug}"]


def test_kong_api_services_ask_the_decision_and_trace(kong: dict[str, Any]) -> None:
    (correlation,) = [p for p in kong["plugins"] if p["name"] == "correlation-id"]
    assert correlation["config"]["header_name"] == "X-Trace-ID"
    for svc in kong["services"]:
        if svc["name"] in ("web", "realms"):
            continue
        plugins = {p["name"]: p.get("config", {}) for p in svc.get("plugins", [])}
        assert "http://core:3000/v1/gateway/authorize" in plugins["pre-function"]["access"][0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--plugin", "Bad/Slug"], "is not a plugin id"),
        (["--plugin", "crm", "--upstream-template", "plugin-{slug}:3000"], "http(s) URL"),
        (["--upstream-template", "http://plugin-{slug}:3000"], "goes with --plugin"),
    ],
)
def test_generator_refuses_bad_options(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["gateway", "config", "traefik", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_plugin_urls_setting_wins_over_the_template() -> None:
    result = CliRunner().invoke(
        cli,
        ["gateway", "config", "kong", "--plugin", "crm", "--plugin", "billing"],
        env={"PLEXICA_PLUGIN_URLS": "crm=http://127.0.0.1:3101"},
    )
    assert result.exit_code == 0, result.output
    urls = {s["name"]: s["url"] for s in yaml.safe_load(result.output)["services"]}
    assert urls["plugin-crm"] == "http://127.0.0.1:3101"
    assert urls["plugin-billing"] == "http://plugin-billing:3000"
