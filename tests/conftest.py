"""Fixtures on real servers: PostgreSQL (one database per xdist worker) and Redis."""

from __future__ import annotations

import asyncio
import io
import os
import warnings
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from plexica.app import create_app
from plexica.identity import custody
from plexica.kit.db import Database
from plexica.kit.migrate import upgrade_platform
from plexica.settings import Settings
from tests.harness import servers

# The realms' private keys are sealed with it (ADR 0150); processes the tests start inherit it.
TEST_KEY_ENCRYPTION_KEY = "test-key-encryption-key-0123456789abcdef"
os.environ.setdefault(custody.ENV, TEST_KEY_ENCRYPTION_KEY)
custody.install(custody.KeyRing.parse(os.environ[custody.ENV]))
# The cores the tests run in process share one database per worker: none of them resumes the
# tenants other tests leave half-made on purpose (the reconciler's tests run it themselves).
os.environ.setdefault("PLEXICA_RECONCILE_SECONDS", "0")


def worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The test PostgreSQL server (database ``postgres``): for creating databases."""
    return str(servers.ensure("postgres")["url"])


async def create_database(pg_url: str, name: str) -> str:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return pg_url.rsplit("/", 1)[0] + "/" + name


async def create_migrated_database(pg_url: str, name: str) -> str:
    url = await create_database(pg_url, name)
    db = Database(Settings(database_url=url).sqlalchemy_url, pool_size=2)
    try:
        await upgrade_platform(db)
    finally:
        await db.dispose()
    return url


@pytest.fixture(scope="session")
async def database_url(pg_url: str) -> str:
    """A migrated database of this worker's own."""
    return await create_migrated_database(pg_url, f"plexica_{worker_id()}")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return str(servers.ensure("redis")["url"])


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    # Local object storage and other files live in the session's directory, not the user's.
    return Settings(database_url=database_url, data_dir=servers.session_dir() / worker_id())


@pytest.fixture(scope="session")
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.sqlalchemy_url, pool_size=5)
    yield database
    await database.dispose()


async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and give an HTTP client for it. The shutdown is given at most
    30 s: a background task that does not stop must fail loudly here, not hang the suite."""
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c
    finally:
        stopping = asyncio.ensure_future(lifespan.__aexit__(None, None, None))
        _, pending = await asyncio.wait({stopping}, timeout=30)
        if pending:
            warnings.warn(
                f"the app's lifespan did not stop within 30 s\n{_task_stacks()}", stacklevel=1
            )


def _task_stacks() -> str:
    """Where every task of the loop is waiting: what a stuck shutdown needs to be diagnosed."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(limit=12, file=out)
    return out.getvalue()


@pytest.fixture
async def core(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running(create_app(settings, db=db)):
        yield client


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return dict(body["error"])
