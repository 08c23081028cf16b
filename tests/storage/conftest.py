"""Storage fixtures: the real SeaweedFS server, both stores, and core apps in both modes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from plexica.app import create_app
from plexica.kit.db import Database
from plexica.settings import Settings
from plexica.storage.local import LocalStore
from plexica.storage.s3 import MIN_PART_SIZE, S3Store
from plexica.storage.store import ObjectStore
from tests.conftest import running
from tests.harness import servers
from tests.support.tokens import StaticIssuers


@pytest.fixture(scope="session")
def s3() -> dict[str, Any]:
    return servers.ensure("s3")


@pytest.fixture
async def s3_store(s3: dict[str, Any]) -> AsyncIterator[S3Store]:
    store = S3Store(s3["endpoint"], s3["access_key"], s3["secret_key"], part_size=MIN_PART_SIZE)
    await store.start()
    yield store
    await store.close()


@pytest.fixture
async def local_store(tmp_path: Path) -> AsyncIterator[LocalStore]:
    store = LocalStore(tmp_path / "storage")
    await store.start()
    yield store
    await store.close()


@pytest.fixture(params=["s3", "local"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    store: ObjectStore = request.getfixturevalue(f"{request.param}_store")
    return store


def new_slug() -> str:
    return "t" + uuid.uuid4().hex[:12]


@dataclass
class Tenant:
    id: uuid.UUID
    slug: str
    headers: dict[str, str]

    @property
    def bucket(self) -> str:
        return "tenant-" + self.slug


@dataclass
class Core:
    mode: str
    client: httpx.AsyncClient
    issuers: StaticIssuers
    settings: Settings

    def tenant(self) -> Tenant:
        tenant_id, slug = uuid.uuid4(), new_slug()
        self.issuers.add_tenant(tenant_id, slug)
        token = self.issuers.token(f"plexica-{slug}", roles=["member"])
        return Tenant(tenant_id, slug, {"Authorization": f"Bearer {token}"})


def storage_settings(
    mode: str, settings: Settings, s3: dict[str, Any] | None, tmp: Path
) -> Settings:
    update: dict[str, Any] = {"data_dir": tmp}
    if mode == "s3":
        assert s3 is not None
        update |= {
            "storage_endpoint": s3["endpoint"],
            "storage_access_key": s3["access_key"],
            "storage_secret_key": s3["secret_key"],
        }
    return Settings(**(settings.model_dump() | update))


@pytest.fixture(params=["s3", "local"])
async def core(
    request: pytest.FixtureRequest, settings: Settings, db: Database, tmp_path: Path
) -> AsyncIterator[Core]:
    mode = str(request.param)
    s3 = request.getfixturevalue("s3") if mode == "s3" else None
    issuers = StaticIssuers()
    app_settings = storage_settings(mode, settings, s3, tmp_path)
    app = create_app(app_settings, db=db, verifier=issuers.verifier())
    async for client in running(app):
        yield Core(mode, client, issuers, app_settings)
