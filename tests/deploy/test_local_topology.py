"""deploy/local: the distributed topology as processes on loopback (real PostgreSQL, Redis,
Traefik; core, worker, web, CRM as `plexica serve`), and a rollback rehearsal on it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from deploy.local.topology import LocalTopology, Process, main
from plexica.gateway.config import traefik_config
from plexica_sdk.app import PluginConfig

pytestmark = pytest.mark.slow


@pytest.fixture
def topology(local_topology: LocalTopology) -> LocalTopology:
    return local_topology


def test_every_service_is_ready(topology: LocalTopology) -> None:
    for name in ("core", "worker", "web", "plugin-crm"):
        response = httpx.get(topology.processes[name].url + "/ready", timeout=5)
        assert response.status_code == 200, (name, response.text)
        assert httpx.get(topology.processes[name].url + "/metrics").status_code == 200
    assert httpx.get(topology.processes["gateway-admin"].url + "/ping").text == "OK"


def test_a_crashed_service_is_restarted_and_the_others_keep_running(
    topology: LocalTopology,
) -> None:
    others = {n: p.proc.pid for n, p in topology.processes.items() if n != "web"}
    web = topology.processes["web"]
    os.killpg(web.proc.pid, signal.SIGKILL)
    web.proc.wait(30)
    now = time.monotonic()
    assert topology.supervise(now) == []  # backoff first
    assert web.restart_at is not None
    assert topology.supervise(web.restart_at) == ["web"]
    topology.wait_ready(120, only=["web"])
    assert web.restarts == 1
    # The gateway's health check of /ready (ADR 0202) puts it back in rotation within a probe.
    deadline = time.monotonic() + 60
    while httpx.get(topology.processes["gateway"].url + "/", timeout=5).status_code == 503:
        assert time.monotonic() < deadline, "the gateway never routed to the restarted web"
        time.sleep(0.2)
    assert {n: p.proc.pid for n, p in topology.processes.items() if n != "web"} == others
    assert all(p.proc.poll() is None for p in topology.processes.values())


def test_gateway_serves_the_web_shell_and_hides_the_decision_endpoint(
    topology: LocalTopology,
) -> None:
    gateway = topology.processes["gateway"].url
    shell = httpx.get(gateway + "/", headers={"X-Trace-ID": "4bf92f3577b34da6a3ce929d0e0e4736"})
    direct = httpx.get(topology.processes["web"].url + "/")
    assert shell.status_code == direct.status_code
    assert shell.text == direct.text
    # The decision endpoint is no route of the edge: the decision itself answers 404.
    assert httpx.get(gateway + "/api/core/v1/gateway/authorize").status_code in (401, 404)


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


def test_the_platforms_own_settings_never_reach_a_plugin(tmp_path: Path) -> None:
    given = {
        "PLEXICA_KAFKA_BROKERS": "127.0.0.1:9092", "PLEXICA_KAFKA_USERNAME": "plexica",
        "PLEXICA_KAFKA_PASSWORD": "the-platforms", "PLEXICA_STORAGE_SECRET_KEY": "root",
        "PLEXICA_KAFKA_ADMIN_USERNAME": "admin", "PLEXICA_KAFKA_ADMIN_PASSWORD": "the-brokers",
    }  # fmt: skip
    topology = LocalTopology(tmp_path, plugins=["crm"], extra_env=given)
    core, plugin = topology.env("core", 3000), topology.env("plugin-crm", 3001)
    assert core["PLEXICA_KAFKA_PASSWORD"] == "the-platforms"
    # The broker's administrator is the topology's own grants step's (ADR 0253), no process's.
    for name in ("core", "worker", "web", "migrate", "plugin-crm"):
        assert "the-brokers" not in topology.env(name).values(), name
    assert plugin["PLEXICA_KAFKA_BROKERS"] == "127.0.0.1:9092"
    # A plugin without a login of its own yet gets no database, never the owner's URL.
    assert "crm" not in topology.plugin_logins
    for key in ("PLEXICA_KAFKA_USERNAME", "PLEXICA_KAFKA_PASSWORD", "PLEXICA_REDIS_URL",
                "PLEXICA_STORAGE_SECRET_KEY", "PLEXICA_KEY_ENCRYPTION_KEY",
                "PLEXICA_DATABASE_URL", "PLEXICA_PLUGIN_DATABASE_URL"):  # fmt: skip
        assert key not in plugin, key


def test_gateway_config_routes_every_installed_plugin(tmp_path: Path) -> None:
    topology = LocalTopology(tmp_path, plugins=["crm", "inventory"])
    topology.ports = {"core": 1234, "web": 1235, "plugin-crm": 1236, "plugin-inventory": 1237}
    for name, port in topology.ports.items():
        topology.processes[name] = Process(name, port, None, tmp_path / "x.log")  # type: ignore[arg-type]
    _, dynamic = topology.traefik_config(8000, 8082)
    # What `plexica gateway config traefik` writes for these upstreams.
    assert dynamic == traefik_config(
        "http://127.0.0.1:1234",
        {"crm": "http://127.0.0.1:1236", "inventory": "http://127.0.0.1:1237"},
        "http://127.0.0.1:1235",
    )
    routers = dynamic["http"]["routers"]
    assert routers["plugin-inventory"]["middlewares"][:2] == ["strip-identity", "auth"]
    assert "plugin-billing" not in routers
    plugin_env = topology.env("plugin-crm", 1236)
    with pytest.MonkeyPatch.context() as env:
        for name, value in plugin_env.items():
            env.setenv(name, value)
        found = PluginConfig.from_env()
    assert found.issuer_base_url == topology.public_url + "/realms"
    assert found.keys_base_url == "http://127.0.0.1:1234/realms"  # the core's own address
    assert topology.public_url == f"http://127.0.0.1:{topology.gateway_port}"
    assert topology.cli_env()["PLEXICA_PLUGIN_URLS"] == (
        "crm=http://127.0.0.1:1236,inventory=http://127.0.0.1:1237"
    )


def test_web_processes_share_one_session_secret(tmp_path: Path) -> None:
    """ADR 0091: every web process of a topology (and its restarts) signs with one key, kept in
    the working directory (mode 0600); another topology has another key; `plexica serve web`
    accepts it."""
    topology = LocalTopology(tmp_path / "a")
    topology.workdir.mkdir()
    first = topology.env("web", 3000)["PLEXICA_WEB_SECRET"]
    assert len(first) >= 32
    assert LocalTopology(tmp_path / "a").env("web", 3001)["PLEXICA_WEB_SECRET"] == first
    assert (tmp_path / "a" / "web-secret").stat().st_mode & 0o777 == 0o600
    assert "PLEXICA_WEB_SECRET" not in topology.env("core", 3002)
    other = LocalTopology(tmp_path / "b")
    other.workdir.mkdir()
    assert other.env("web", 3000)["PLEXICA_WEB_SECRET"] != first


def test_only_the_core_and_the_cli_get_the_key_encryption_key(tmp_path: Path) -> None:
    """ADR 0150: one key per working directory (mode 0600), for the core and the CLI only."""
    topology = LocalTopology(tmp_path)
    key = topology.env("core", 3000)["PLEXICA_KEY_ENCRYPTION_KEY"]
    assert len(key) >= 32
    assert (tmp_path / "key-encryption-key").stat().st_mode & 0o777 == 0o600
    assert LocalTopology(tmp_path).cli_env()["PLEXICA_KEY_ENCRYPTION_KEY"] == key
    for name in ("web", "worker", "plugin-crm"):
        assert "PLEXICA_KEY_ENCRYPTION_KEY" not in topology.env(name, 3001), name


def test_running_web_shell_has_the_topology_secret(topology: LocalTopology) -> None:
    web = topology.processes["web"]
    environ = Path(f"/proc/{web.proc.pid}/environ").read_bytes().split(b"\0")
    secret = (topology.workdir / "web-secret").read_text().strip()
    assert f"PLEXICA_WEB_SECRET={secret}".encode() in environ
    assert b"web_secret_missing" not in web.log.read_bytes()


async def test_plugins_log_in_as_their_own_role(topology: LocalTopology) -> None:
    """ADR 0076: the plugin process gets its login from `plexica plugin credentials`; with it,
    the platform's role is out of reach."""
    crm = topology.processes["plugin-crm"]
    environ = dict(
        item.split(b"=", 1)
        for item in Path(f"/proc/{crm.proc.pid}/environ").read_bytes().split(b"\0")
        if b"=" in item
    )
    login = environ[b"PLEXICA_PLUGIN_DATABASE_URL"].decode()
    assert login == topology.plugin_logins["crm"]
    # ADR 0210: nothing of the platform's in the plugin process.
    assert b"PLEXICA_DATABASE_URL" not in environ
    assert not [k for k in environ if b"REDIS" in k]
    conn = await asyncpg.connect(login)
    try:
        assert (await conn.fetchval("SELECT current_user")).startswith("plx_crm_login_")
        platform_role = await asyncpg.connect(topology.database_url)
        try:
            platform = await platform_role.fetchval("SELECT current_user")
        finally:
            await platform_role.close()
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f'SET ROLE "{platform}"')
        # Its password is not the platform's: logging in as the platform with it fails.
        password = urlsplit(login).password
        as_platform = urlsplit(topology.database_url)._replace(
            netloc=f"{platform}:{password}@{urlsplit(login).hostname}:{urlsplit(login).port}"
        )
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(urlunsplit(as_platform))
    finally:
        await conn.close()


async def _billing_login(topology: LocalTopology) -> str:
    """Billing's own login (ADR 0076), made as `plexica plugin credentials billing` makes it:
    the topology runs only the CRM, so its login may not exist yet."""
    from plexica.kit.db import Database
    from plexica.plugins import service

    if "billing" in topology.plugin_logins:
        return topology.plugin_logins["billing"]
    db = Database("postgresql+asyncpg://" + topology.runtime_database_url.split("://", 1)[1])
    try:
        async with db.session() as session:
            login = await service.ensure_login(session, "billing")
        return login.database_url(topology.database_url)
    finally:
        await db.dispose()


async def test_a_plugin_cannot_log_in_as_the_runtime_role_or_another_plugin(
    topology: LocalTopology,
) -> None:
    """ADR 0215, 0076: with what the CRM process is given (its env), neither the runtime role
    nor Billing's login opens: its password is its own, and it cannot SET ROLE to them."""
    crm = topology.processes["plugin-crm"]
    environ = dict(
        item.split(b"=", 1)
        for item in Path(f"/proc/{crm.proc.pid}/environ").read_bytes().split(b"\0")
        if b"=" in item
    )
    login = urlsplit(environ[b"PLEXICA_PLUGIN_DATABASE_URL"].decode())
    billing = urlsplit(await _billing_login(topology))
    runtime = urlsplit(topology.runtime_database_url).username
    assert runtime == "plexica_runtime"
    assert (billing.username or "").startswith("plx_billing_login_")
    others = [runtime, billing.username]
    # Both roles exist and log in with their own passwords: only the CRM's password fails.
    for url in (topology.runtime_database_url, urlunsplit(billing)):
        conn = await asyncpg.connect(url)
        await conn.close()
    for user in others:
        as_other = login._replace(netloc=f"{user}:{login.password}@{login.hostname}:{login.port}")
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(urlunsplit(as_other))
    conn = await asyncpg.connect(urlunsplit(login))
    try:
        for user in others:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f'SET ROLE "{user}"')
    finally:
        await conn.close()


async def test_core_worker_and_web_serve_as_the_runtime_role(topology: LocalTopology) -> None:
    """ADR 0215: the serving processes hold the runtime login, no owner's; every session they
    opened is the runtime role's, which is no superuser and cannot change the platform."""
    for name in ("core", "worker", "web"):
        environ = dict(
            item.split(b"=", 1)
            for item in Path(f"/proc/{topology.processes[name].proc.pid}/environ")
            .read_bytes()
            .split(b"\0")
            if b"=" in item
        )
        assert environ[b"PLEXICA_DATABASE_URL"].decode() == topology.runtime_database_url, name
        assert b"PLEXICA_RUNTIME_DATABASE_URL" not in environ, name
    owner = await asyncpg.connect(topology.database_url)
    try:
        users = await owner.fetch(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'plexica' AND pid <> pg_backend_pid()"
        )
    finally:
        await owner.close()
    assert {u["usename"] for u in users} == {"plexica_runtime"}
    runtime = await asyncpg.connect(topology.runtime_database_url)
    try:
        assert not await runtime.fetchval(
            "SELECT rolsuper FROM pg_roles WHERE rolname = 'plexica_runtime'"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await runtime.execute("ALTER TABLE platform.tenants ADD COLUMN taken boolean")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await runtime.execute("SELECT rolpassword FROM pg_authid")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await runtime.execute(f'SET ROLE "{urlsplit(topology.database_url).username}"')
    finally:
        await runtime.close()


async def test_redis_refuses_a_client_without_the_platform_password(
    topology: LocalTopology,
) -> None:
    """ADR 0210: Redis has AUTH; only the core and the worker are given its URL."""
    url = urlsplit(topology.redis_url)
    anonymous = redis.Redis(host=url.hostname or "", port=url.port or 0)
    try:
        with pytest.raises(redis.AuthenticationError):
            await anonymous.ping()
        with pytest.raises(redis.AuthenticationError):
            await anonymous.set("plexica:ratelimit:probe", "0")
    finally:
        await anonymous.aclose()
    platform = redis.Redis.from_url(topology.redis_url)
    try:
        assert await platform.ping()
    finally:
        await platform.aclose()
    for name in ("core", "worker"):
        assert topology.env(name)["PLEXICA_REDIS_URL"] == topology.redis_url
    assert "PLEXICA_REDIS_URL" not in topology.env("plugin-crm")
