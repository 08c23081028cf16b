"""deploy/local: the distributed topology as processes on loopback (real PostgreSQL, Redis,
Traefik; core, worker, web as `plexica serve`), and a rollback rehearsal on it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from deploy.local.topology import LocalTopology, Process, main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def topology() -> Iterator[LocalTopology]:
    # Not under pytest's temporary root: pytest resets it to 0700 at every session start, which
    # would lock out the unprivileged user that PostgreSQL runs as when the tests run as root.
    with (
        tempfile.TemporaryDirectory(prefix="plexica-local-") as workdir,
        LocalTopology(Path(workdir), plugins=[]) as running,
    ):
        yield running


def test_every_service_is_ready(topology: LocalTopology) -> None:
    for name in ("core", "worker", "web"):
        response = httpx.get(topology.processes[name].url + "/ready", timeout=5)
        assert response.status_code == 200, (name, response.text)
        assert httpx.get(topology.processes[name].url + "/metrics").status_code == 200
    assert httpx.get(topology.processes["gateway-admin"].url + "/ping").text == "OK"


def test_gateway_serves_the_web_shell_and_hides_the_decision_endpoint(
    topology: LocalTopology,
) -> None:
    gateway = topology.processes["gateway"].url
    shell = httpx.get(gateway + "/", headers={"X-Trace-ID": "4bf92f3577b34da6a3ce929d0e0e4736"})
    direct = httpx.get(topology.processes["web"].url + "/")
    assert shell.status_code == direct.status_code
    assert shell.text == direct.text
    assert httpx.get(gateway + "/api/core/v1/gateway/authorize").status_code == 403


async def test_rollback_rehearsal_keeps_data(topology: LocalTopology) -> None:
    """Release N runs; N+1's expand migration lands; N+1 is deployed, then rolled back to N.

    Both releases are this build (no second build exists here): what is rehearsed is the
    procedure, the time it takes, and that N serves on N+1's expanded schema with data intact.
    """
    conn = await asyncpg.connect(topology.database_url)
    try:
        await conn.execute(
            "INSERT INTO platform.instance (key, value) VALUES ('rehearsal', 'N') "
            "ON CONFLICT (key) DO UPDATE SET value = 'N'"
        )
        # N+1's expand step: a nullable column (what scripts/check-migrations lets through).
        await conn.execute("ALTER TABLE platform.instance ADD COLUMN IF NOT EXISTS note text")
        deploy = topology.restart_services(["core", "worker", "web"])
        await conn.execute("UPDATE platform.instance SET note = 'N+1' WHERE key = 'rehearsal'")
        rollback = topology.restart_services(["core", "worker", "web"])
        row = await conn.fetchrow(
            "SELECT value, note FROM platform.instance WHERE key = 'rehearsal'"
        )
    finally:
        await conn.close()
    assert row is not None
    assert (row["value"], row["note"]) == ("N", "N+1")
    for name in ("core", "worker", "web"):
        assert httpx.get(topology.processes[name].url + "/ready").status_code == 200
    print(f"\nrollback rehearsal: deploy N+1 {deploy:.1f}s, roll back to N {rollback:.1f}s")
    assert rollback < 300, "the rollback SLA is 5 minutes"


def test_up_refuses_unknown_arguments(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--bogus", str(tmp_path)])
    assert "--data-dir" in capsys.readouterr().err
    for bad in ("KAFKA=x", "PLEXICA_KAFKA_BROKERS"):
        with pytest.raises(SystemExit):
            main(["--env", bad])
        assert "--env takes PLEXICA_NAME=VALUE" in capsys.readouterr().err


def test_extra_settings_reach_every_service(tmp_path: Path) -> None:
    topology = LocalTopology(tmp_path, extra_env={"PLEXICA_KAFKA_BROKERS": "127.0.0.1:9092"})
    env = topology.env("core", 3000)
    assert env["PLEXICA_KAFKA_BROKERS"] == "127.0.0.1:9092"
    assert env["PLEXICA_PORT"] == "3000"


def test_gateway_config_routes_every_installed_plugin(tmp_path: Path) -> None:
    topology = LocalTopology(tmp_path, plugins=["crm", "inventory"])
    for name in ("core", "web", "redis", "plugin-crm", "plugin-inventory"):
        topology.processes[name] = Process(name, 1234, None, tmp_path / "x.log")  # type: ignore[arg-type]
    _, dynamic = topology.traefik_config(8000, 8082)
    routers = dynamic["http"]["routers"]
    assert routers["plugin-inventory"]["rule"] == "PathPrefix(`/api/plugins/inventory`)"
    assert routers["plugin-inventory"]["middlewares"][:2] == ["auth", "rate-limit"]
    assert "plugin-billing" not in routers
    servers = dynamic["http"]["services"]["plugin-inventory"]["loadBalancer"]["servers"]
    assert servers == [{"url": "http://127.0.0.1:1234"}]
    auth = dynamic["http"]["middlewares"]["auth"]["forwardAuth"]["address"]
    assert auth == "http://127.0.0.1:1234/v1/gateway/authorize"
