"""``plexica gateway config kong``: Kong's DB-less declarative format checked structurally (Kong
is in no package registry) and the access-phase Lua compiled by LuaJIT 2.1, Kong's runtime."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import yaml
from lupa.luajit21 import LuaRuntime
from typer.testing import CliRunner

from plexica.cli.main import app as cli
from plexica.gateway.config import kong_config
from plexica.gateway.schemas import UPSTREAM_HEADERS
from plexica.kit.db import Database
from tests.gateway.conftest import Core
from tests.plugins.conftest import plugin_doc, register_doc

KONG_BUNDLED = {"pre-function", "correlation-id", "request-termination", "request-size-limiting"}
ROUTE_KEYS = {"name", "paths", "methods", "strip_path", "preserve_host", "protocols", "plugins"}


def compiles(lua: str) -> str | None:
    """LuaJIT's own parser: None when the chunk compiles, else its error."""
    check = LuaRuntime().execute(
        "return function(src) local f, e = load(src); if f then return '' end; return e end"
    )
    error = str(check(lua))
    return error or None


@pytest.fixture
async def registered(core: Core, plugin_id: str) -> str:
    """A plugin installed in a tenant: routed."""
    await core.install(await core.tenant(), plugin_id)
    return plugin_id


@pytest.fixture
async def catalog_only(db: Database) -> str:
    """A plugin in the catalog that no tenant has: not routed."""
    pid = "gwk" + uuid.uuid4().hex[:8]
    await register_doc(db, plugin_doc(pid), [])
    return pid


@pytest.fixture
def config(registered: str, catalog_only: str, database_url: str, tmp_path: Any) -> dict[str, Any]:
    pid = registered
    out = tmp_path / "kong.yml"
    env = {
        "PLEXICA_DATABASE_URL": database_url,
        "PLEXICA_PLUGIN_URLS": f"{pid}=http://plugin-{pid}:3000,absent=http://absent:3000,"
        f"{catalog_only}=http://unused:3000",
        "PLEXICA_DATA_DIR": str(tmp_path),
    }
    result = CliRunner().invoke(
        cli,
        ["gateway", "config", "kong", "--core-url", "http://core:3000", "-o", str(out)],
        env=env,
    )
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = yaml.safe_load(out.read_text())
    doc["_plugin"] = pid
    doc["_catalog_only"] = catalog_only
    return doc


def test_declarative_shape(config: dict[str, Any]) -> None:
    pid = config.pop("_plugin")
    catalog_only = config.pop("_catalog_only")
    assert config["_format_version"] == "3.0"
    services = {s["name"]: s for s in config["services"]}
    # A plugin is routed when it is installed in some tenant and deployed at a URL (ADR 0083).
    assert f"plugin-{pid}" in services
    assert "plugin-absent" not in services
    assert f"plugin-{catalog_only}" not in services
    assert services["core-api"]["routes"][0]["paths"] == ["/api/core"]
    plugin = services[f"plugin-{pid}"]
    assert plugin["url"] == f"http://plugin-{pid}:3000"
    assert plugin["routes"][0]["paths"] == [f"/api/plugins/{pid}"]
    assert plugin["read_timeout"] == 30_000  # the upstream timeout of its manifest (ADR 0137)
    assert plugin["routes"][0]["strip_path"] is True
    names = set()
    for svc in config["services"]:
        assert set(svc) <= {"name", "url", "routes", "plugins", "read_timeout"}
        for route in svc["routes"]:
            assert set(route) <= ROUTE_KEYS
            assert all(p.startswith("/") for p in route["paths"])
            names.add(route["name"])
        for p in svc.get("plugins", []):
            assert p["name"] in KONG_BUNDLED
    assert len(names) == sum(len(s["routes"]) for s in config["services"])
    assert config["plugins"][0]["config"]["header_name"] == "X-Trace-ID"


def test_every_api_service_asks_the_decision_endpoint(config: dict[str, Any]) -> None:
    config.pop("_plugin")
    for svc in config["services"]:
        if not svc["routes"][0]["paths"][0].startswith("/api/"):
            continue
        access = next(p for p in svc["plugins"] if p["name"] == "pre-function")
        lua = access["config"]["access"][0]
        assert "http://core:3000/v1/gateway/authorize" in lua
        for header in UPSTREAM_HEADERS:
            assert f'"{header}"' in lua
        assert compiles(lua) is None, compiles(lua)


def test_lua_check_catches_a_broken_chunk() -> None:
    assert compiles("if then end") is not None
    lua = kong_config("http://c", {})["services"][0]["plugins"][0]["config"]["access"][0]
    assert compiles(lua) is None
