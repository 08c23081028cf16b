"""The reconcile loop behind ``plexica gateway config traefik --watch`` (ADR 0083)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import yaml
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from plexica.cli.main import app as cli
from plexica.gateway.config import traefik_config
from plexica.gateway.sync import ConfigSync, write_atomically
from plexica.kit.db import Database
from plexica.kit.pgserver import free_port
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


async def test_routes_follow_installations(
    core: Core, db: Database, plugin_id: str, tmp_path: Path
) -> None:
    """Only plugins installed in some tenant and deployed at an address get a route."""
    target = tmp_path / "plexica.yml"
    sync = ConfigSync(db, {plugin_id: "http://p:3000", "ghost": "http://g:3000"}, render, target)
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


async def test_an_unreachable_registry_keeps_the_last_file(tmp_path: Path) -> None:
    target = tmp_path / "plexica.yml"
    target.write_text("last: good\n")
    dead = Database(f"postgresql+asyncpg://x:y@127.0.0.1:{free_port()}/none", pool_size=1)
    before = failures()
    stop = asyncio.Event()
    sync = ConfigSync(dead, {}, render, target, interval=0.05)
    task = asyncio.create_task(sync.run(stop))
    try:
        while failures() < before + 2:
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await dead.dispose()
    assert target.read_text() == "last: good\n"


def test_watch_needs_an_output_file() -> None:
    result = CliRunner().invoke(cli, ["gateway", "config", "traefik", "--watch"])
    assert result.exit_code == 2
    assert "--watch writes a file" in result.output
