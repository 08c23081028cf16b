"""Test kit: run a plugin against a real local Plexica and a real PostgreSQL.

The kit drives the platform only through its ``plexica`` command (never by importing it):
``plexica plugin testdb`` for a throwaway PostgreSQL (unless ``PLEXICA_TEST_DATABASE_URL`` names
one), and ``plexica plugin dev`` to register the plugin and install it into each test tenant,
exactly as an operator would. The plugin itself runs as a real HTTP server on a loopback port,
and requests carry real RS256 tokens minted by the kit's own issuer.

    with PluginTestKit(Path(__file__).parents[1], create_app) as kit:
        acme = kit.tenant("acme")
        with kit.client(acme, roles=["member"]) as http:
            assert http.get("/v1/things").status_code == 200
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from plexica_sdk.app import PluginConfig
from plexica_sdk.auth import Issuer, JwtVerifier
from plexica_sdk.db import tenant_schema

AUDIENCE = "plexica-api"
ISSUER_BASE = "http://kit.test/realms"
DATABASE_ENV = "PLEXICA_TEST_DATABASE_URL"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class KitTenant:
    id: UUID
    slug: str

    @property
    def schema(self) -> str:
        return tenant_schema(self.slug)


@dataclass
class KitIssuers:
    """Tenant realms known to the kit, all signing with one generated key."""

    signing_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    kid: str = "kit-1"
    realms: dict[str, Issuer] = field(default_factory=dict)

    def add(self, tenant: KitTenant) -> None:
        url = f"{ISSUER_BASE}/plexica-{tenant.slug}"
        self.realms[url] = Issuer(
            url, tenant.id, tenant.slug, {self.kid: self.signing_key.public_key()}
        )

    async def issuer(self, url: str) -> Issuer | None:
        return self.realms.get(url)

    async def key(self, issuer: Issuer, kid: str) -> Any | None:
        return issuer.keys.get(kid)

    def token(self, tenant: KitTenant, roles: Sequence[str], sub: str | None = None) -> str:
        now = int(time.time())
        claims = {
            "iss": f"{ISSUER_BASE}/plexica-{tenant.slug}",
            "sub": sub or str(uuid.uuid4()),
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 600,
            "tenant_id": str(tenant.id),
            "realm_access": {"roles": list(roles)},
        }
        return jwt.encode(claims, self.signing_key, algorithm="RS256", headers={"kid": self.kid})


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        """The test process owns the signals."""


class PluginTestKit:
    def __init__(
        self,
        plugin_dir: Path,
        app_factory: Callable[[PluginConfig], FastAPI],
        *,
        database_url: str | None = None,
        plexica: Sequence[str] | None = None,
    ) -> None:
        self.plugin_dir = plugin_dir
        self.app_factory = app_factory
        self.database_url = database_url or os.environ.get(DATABASE_ENV)
        self.plexica = list(plexica or _plexica_command())
        self.issuers = KitIssuers()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._own_pg: Path | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._db_name = f"kit_{uuid.uuid4().hex[:12]}"
        self._admin_url: str | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> PluginTestKit:
        self.start()
        return self

    def __exit__(
        self,
        _t: type[BaseException] | None,
        _e: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self.database_url is None:
            self._own_pg = Path(tempfile.mkdtemp(prefix="plexica-kit-"))
            self._own_pg.chmod(0o755)
            self.database_url = self.cli("plugin", "testdb", "start", "--dir", str(self._own_pg))
        self._admin_url = self.database_url
        asyncio.run(self._create_database())
        self.database_url = self.database_url.rsplit("/", 1)[0] + "/" + self._db_name
        app = self.app_factory(
            PluginConfig(
                database_url=self.database_url, verifier=JwtVerifier(self.issuers, AUDIENCE)
            )
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, lifespan="on", access_log=False
        )
        self._server = _Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the plugin did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=15)
        if self._admin_url is not None:
            asyncio.run(self._drop_database())
        if self._own_pg is not None:
            self.cli("plugin", "testdb", "stop", "--dir", str(self._own_pg))
            shutil.rmtree(self._own_pg, ignore_errors=True)

    async def _create_database(self) -> None:
        await self._as_admin(f'CREATE DATABASE "{self._db_name}"')

    async def _drop_database(self) -> None:
        await self._as_admin(f'DROP DATABASE IF EXISTS "{self._db_name}" WITH (FORCE)')

    async def _as_admin(self, statement: str) -> None:
        assert self._admin_url is not None
        conn = await asyncpg.connect(self._admin_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    # --- the platform, through its command ------------------------------------------------

    def cli(self, *args: str, check: bool = True) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")}
        if self.database_url and self._admin_url:
            env["PLEXICA_DATABASE_URL"] = self.database_url
        result = subprocess.run(
            [*self.plexica, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"plexica {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def tenant(self, slug: str, *, install: bool = True) -> KitTenant:
        """A tenant schema of the kit's own (the tenancy domain creates them in a deployment),
        with the plugin registered and installed into it unless ``install`` is False."""
        tenant = KitTenant(uuid.uuid4(), slug)
        asyncio.run(self._create_schema(tenant.schema))
        self.issuers.add(tenant)
        if install:
            self.install(tenant)
        return tenant

    def install(self, tenant: KitTenant) -> str:
        return self.cli(
            "plugin", "dev", str(self.plugin_dir), "--once", "--tenant", tenant.slug,
            "--tenant-id", str(tenant.id), "--plugin-url", self.url,
        )  # fmt: skip

    async def _create_schema(self, schema: str) -> None:
        assert self.database_url is not None
        conn = await asyncpg.connect(self.database_url)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        finally:
            await conn.close()

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        """Read the database as the platform's user (to check what the plugin wrote)."""
        assert self.database_url is not None
        conn = await asyncpg.connect(self.database_url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    # --- requests ---------------------------------------------------------------------------

    def token(
        self, tenant: KitTenant, roles: Sequence[str] = ("member",), sub: str | None = None
    ) -> str:
        return self.issuers.token(tenant, roles, sub)

    def client(
        self, tenant: KitTenant | None, roles: Sequence[str] = ("member",), sub: str | None = None
    ) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(tenant, roles, sub)}"} if tenant else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


# --- concurrency ------------------------------------------------------------------------------

T = TypeVar("T")
R = TypeVar("R")


def together(calls: Iterable[Callable[[], R]], *, timeout: float = 120) -> list[R]:
    """Run ``calls`` on threads of their own, released at once by a barrier so that they
    really overlap (a thread pool warming up would otherwise serialise them); results in the
    order of ``calls``. An exception in a call is raised here."""
    todo = list(calls)
    gate = threading.Barrier(len(todo))

    def run(call: Callable[[], R]) -> R:
        gate.wait(timeout)
        return call()

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(todo)) as pool:
        futures = [pool.submit(run, call) for call in todo]
        return [f.result(timeout=timeout) for f in futures]


def race(
    setup: Callable[[int], T],
    call: Callable[[T, int], R],
    check: Callable[[T, list[R]], None],
    *,
    parallel: int = 8,
    rounds: int = 20,
) -> None:
    """The concurrency kit: ``rounds`` times, make a fresh object (``setup(round)``), fire
    ``parallel`` calls at it at once (``call(obj, i)``, e.g. an HTTP request) and check the
    invariants on the object and the answers (``check(obj, results)``). A race that shows once
    in a round fails the test, naming the round."""
    for n in range(rounds):
        obj = setup(n)
        results = together([functools.partial(call, obj, i) for i in range(parallel)])
        try:
            check(obj, results)
        except AssertionError as e:
            raise AssertionError(f"round {n + 1} of {rounds}: {e}") from e


async def arace(
    setup: Callable[[int], Awaitable[T]],
    call: Callable[[T, int], Awaitable[R]],
    check: Callable[[T, list[R]], Awaitable[None]],
    *,
    parallel: int = 8,
    rounds: int = 20,
) -> None:
    """``race`` for an async client (an app served in-process): the calls of a round are
    started together on the running loop and overlap at every await, the database's included."""
    for n in range(rounds):
        obj = await setup(n)
        results = await asyncio.gather(*(call(obj, i) for i in range(parallel)))
        try:
            await check(obj, list(results))
        except AssertionError as e:
            raise AssertionError(f"round {n + 1} of {rounds}: {e}") from e


def _plexica_command() -> list[str]:
    exe = Path(sys.executable).with_name("plexica")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("plexica")
    return [found] if found else [sys.executable, "-m", "plexica.cli"]
