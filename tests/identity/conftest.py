"""A core app served on a real loopback port (JWKS and OIDC over real HTTP), and helpers."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI

from plexica.app import create_app
from plexica.identity import service
from plexica.identity.bootstrap import OperatorCredentials, bootstrap
from plexica.identity.builtin import BuiltinIdentity, RealmStep
from plexica.identity.client import password_login
from plexica.kit.db import Database
from plexica.kit.ports import free_port
from plexica.kit.provisioning import TenantRef
from plexica.kit.state import state_of
from plexica.settings import Settings


@pytest.fixture(scope="session", autouse=True)
def _cheap_argon2() -> None:
    # Still argon2id, with parameters that cost milliseconds instead of a second on a busy CI box.
    service.use_password_hasher(PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))


@dataclass(frozen=True)
class Live:
    url: str
    settings: Settings
    app: FastAPI | None = None  # the core app: tests may set its core state's ``clock``

    def issuer(self, realm: str) -> str:
        return service.issuer_url(self.url, realm)


@pytest.fixture(scope="session")
def live(database_url: str) -> Iterator[Live]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(database_url=database_url, public_url=url, port=port)
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the core app did not start")
        time.sleep(0.02)
    yield Live(url, settings, app)
    server.should_exit = True
    thread.join(10)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60.0) as client:
        yield client


def new_tenant(prefix: str = "t") -> TenantRef:
    slug = f"{prefix}{uuid.uuid4().hex[:8]}"
    return TenantRef(uuid.uuid4(), slug, slug.upper(), f"admin@{slug}.example")


async def provision(db: Database, live: Live, tenant: TenantRef | None = None) -> TenantRef:
    tenant = tenant or new_tenant()
    await RealmStep(BuiltinIdentity(db, live.url), db).apply(tenant)
    return tenant


async def set_password(db: Database, realm: str, email: str) -> str:
    password = service.generate_password()
    async with db.session() as session:
        await service.set_password(session, realm, email, password)
    return password


async def add_user(db: Database, live: Live, realm: str, email: str, roles: set[str]) -> str:
    password = service.generate_password()
    await BuiltinIdentity(db, live.url).create_user(realm, email, password, frozenset(roles))
    return password


async def login(http: httpx.AsyncClient, live: Live, realm: str, email: str, password: str) -> str:
    body = await password_login(http, live.issuer(realm), email, password)
    return str(body["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def admin_bearer(
    db: Database, live: Live, http: httpx.AsyncClient, tenant: TenantRef
) -> dict[str, str]:
    """The first admin of ``tenant`` signed in with a new password: their bearer header."""
    password = await set_password(db, tenant.realm, tenant.admin_email)
    return bearer(await login(http, live, tenant.realm, tenant.admin_email, password))


@pytest.fixture(scope="session")
async def operator(
    db: Database, live: Live, tmp_path_factory: pytest.TempPathFactory
) -> OperatorCredentials:
    data_dir: Path = tmp_path_factory.mktemp("data")
    made = await bootstrap(db, live.url, live.settings.operator_email, data_dir)
    if made is None:  # another test bootstrapped the realm first: add an operator of our own
        email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
        password = await add_user(db, live, service.OPERATOR_REALM, email, {"super_admin"})
        made = OperatorCredentials(email, password)
    return made


def form_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def register_tenant(db: Database, tenant: TenantRef) -> None:
    """Make ``tenant`` active in the tenant registry: the edge serves no other tenant."""
    from plexica.tenants import repository as tenants_repo
    from plexica.tenants.schemas import State

    async with db.session() as s:
        await tenants_repo.insert_tenant(s, tenant.id, tenant.slug, tenant.name, tenant.admin_email)
        await tenants_repo.set_state(s, tenant.id, State.PROVISIONING, State.ACTIVE)


@pytest.fixture
def clock(live: Live) -> Iterator[list[datetime]]:
    """The core's clock, set by the test (``[]``: the real one)."""
    assert live.app is not None
    shift: list[datetime] = []
    state_of(live.app).clock = lambda: shift[0] if shift else service.now_utc()
    yield shift
    state_of(live.app).clock = None
