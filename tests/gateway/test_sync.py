"""The reconcile loop behind ``plexica gateway config traefik --watch`` (ADR 0083), fed by the
core's ``/v1/gateway/routes`` (ADR 0213)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import httpx
import yaml
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from plexica.cli.main import app as cli
from plexica.gateway.config import traefik_config
from plexica.gateway.sync import (
    ROUTES_PATH,
    ConfigSync,
    core_registry,
    database_registry,
    write_atomically,
)
from plexica.kit.db import Database
from plexica.kit.ports import free_port
from tests.gateway.conftest import Core


def failures() -> float:
    return REGISTRY.get_sample_value("plexica_gateway_config_failures_total") or 0.0


def render(plugins: Mapping[str, str], timeouts: Mapping[str, float] | None = None) -> str:
    return yaml.safe_dump(traefik_config("http://core:3000", plugins, timeouts=timeouts))


def test_the_file_is_replaced_whole_and_only_when_it_changes(tmp_path: Path) -> None:
    target = tmp_path / "plexica.yml"
    assert write_atomically(target, "a: 1\n")
    inode = target.stat().st_ino
    assert not write_atomically(target, "a: 1\n")
    assert target.stat().st_ino == inode  # untouched: Traefik sees no event
    assert write_atomically(target, "a: 2\n")
    assert target.read_text() == "a: 2\n"
    assert target.stat().st_ino != inode  # a rename, not a rewrite in place
    assert [p.name for p in tmp_path.iterdir()] == ["plexica.yml"]


async def test_routes_follow_installations(core: Core, plugin_id: str, tmp_path: Path) -> None:
    """Only plugins installed in some tenant and deployed at an address get a route; the
    watcher learns them from the core's API, with no database login of its own."""
    target = tmp_path / "plexica.yml"
    urls = {plugin_id: "http://p:3000", "ghost": "http://g:3000"}
    sync = ConfigSync(core_registry(core.http), urls, render, target)
    await sync.once()
    assert f"plugin-{plugin_id}" not in yaml.safe_load(target.read_text())["http"]["routers"]
    tenant = await core.tenant()
    await core.install(tenant, plugin_id)
    assert await sync.once()
    routers = yaml.safe_load(target.read_text())["http"]["routers"]
    assert f"plugin-{plugin_id}" in routers
    assert "plugin-ghost" not in routers
    await core.set_enabled(tenant, plugin_id, False)
    assert not await sync.once()  # disabled for one tenant: the route stays for the others
    r = await core.http.delete(
        f"/v1/tenants/{tenant['id']}/plugins/{plugin_id}",
        headers={"Authorization": f"Bearer {core.token(tenant)}"},
    )
    assert r.status_code == 200, r.text  # uninstalled, data retained: no route
    assert await sync.once()
    assert f"plugin-{plugin_id}" not in yaml.safe_load(target.read_text())["http"]["routers"]


async def test_the_core_answers_what_the_database_says(
    core: Core, db: Database, plugin_id: str
) -> None:
    tenant = await core.tenant()
    await core.install(tenant, plugin_id)
    r = await core.http.get(ROUTES_PATH)
    assert r.status_code == 200, r.text
    routed, timeouts = await database_registry(db)()
    assert plugin_id in r.json()["plugins"]
    assert r.json() == {"plugins": routed, "timeouts": timeouts}
    # Never through the edge: the decision refuses /api/core/v1/gateway/ (ADR 0139).
    r = await core.http.get(
        "/v1/gateway/authorize",
        headers={"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/core" + ROUTES_PATH},
    )
    assert r.status_code == 404, r.text


async def test_an_unreachable_registry_keeps_the_last_file(tmp_path: Path) -> None:
    """A core that does not answer, or answers something else than the routes."""

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"code": "unavailable"}})

    target = tmp_path / "plexica.yml"
    target.write_text("last: good\n")
    dead = httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port()}", timeout=2)
    failing = httpx.AsyncClient(base_url="http://core", transport=httpx.MockTransport(broken))
    for client in (dead, failing):
        before = failures()
        stop = asyncio.Event()
        sync = ConfigSync(core_registry(client), {}, render, target, interval=0.05)
        task = asyncio.create_task(sync.run(stop))
        try:
            while failures() < before + 2:
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
            await client.aclose()
        assert target.read_text() == "last: good\n"


def test_watch_needs_an_output_file() -> None:
    result = CliRunner().invoke(cli, ["gateway", "config", "traefik", "--watch"])
    assert result.exit_code == 2
    assert "--watch writes a file" in result.output
