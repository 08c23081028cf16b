"""Flags fixtures: core apps on the real PostgreSQL, with and without a shared Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from plexica.app import create_app
from plexica.kit.db import Database
from plexica.settings import Settings
from tests.conftest import running
from tests.support.tokens import StaticIssuers


@dataclass
class Tenant:
    id: uuid.UUID
    slug: str
    headers: dict[str, str]


@pytest.fixture(scope="session")
def issuers() -> StaticIssuers:
    return StaticIssuers()


def new_tenant(issuers: StaticIssuers) -> Tenant:
    tenant_id, slug = uuid.uuid4(), "t" + uuid.uuid4().hex[:10]
    issuers.add_tenant(tenant_id, slug)
    token = issuers.token(f"plexica-{slug}", roles=["member"])
    return Tenant(tenant_id, slug, {"Authorization": f"Bearer {token}"})


def new_key() -> str:
    return "test." + uuid.uuid4().hex[:12]


CoreFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def core_factory(
    settings: Settings, db: Database, issuers: StaticIssuers, tmp_path: Path
) -> CoreFactory:
    @asynccontextmanager
    async def make(redis_url: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
        update = {"data_dir": tmp_path, "redis_url": redis_url}
        app_settings = Settings(**(settings.model_dump() | update))
        app = create_app(app_settings, db=db, verifier=issuers.verifier())
        async for client in running(app):
            yield client

    return make


@pytest.fixture
async def core(core_factory: CoreFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with core_factory() as client:
        yield client
