"""Tenancy fixtures: the tenant service on the worker's database, steps that record or fail."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import text

from plexica.app import create_app
from plexica.kit.db import Database
from plexica.kit.provisioning import TenantRef
from plexica.settings import Settings
from plexica.tenants.service import TenantService
from tests.conftest import running
from tests.support.tokens import StaticIssuers


@dataclass
class RecordingStep:
    """A real step that keeps a set of resources and a log of calls (a test fixture)."""

    name: str
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    resources: set[str] = field(default_factory=set)
    fail_apply: bool = False
    fail_purge: int = 0

    async def apply(self, tenant: TenantRef) -> None:
        self.calls.append((self.name, "apply", tenant.slug))
        self.resources.add(tenant.slug)
        if self.fail_apply:
            raise RuntimeError(f"{self.name} is down")

    async def undo(self, tenant: TenantRef) -> None:
        self.calls.append((self.name, "undo", tenant.slug))
        self.resources.discard(tenant.slug)

    async def purge(self, tenant: TenantRef) -> None:
        self.calls.append((self.name, "purge", tenant.slug))
        if self.fail_purge > 0:
            self.fail_purge -= 1
            raise RuntimeError(f"{self.name} purge timed out")
        self.resources.discard(tenant.slug)


def new_slug(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def schema_exists(db: Database, schema: str) -> bool:
    async with db.session() as s:
        r = await s.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema})
        return r.first() is not None


async def outbox_types(db: Database, tenant_id: uuid.UUID) -> list[str]:
    async with db.session() as s:
        rows = await s.execute(
            text("SELECT type FROM platform.outbox WHERE tenant_id = :id ORDER BY seq"),
            {"id": tenant_id},
        )
        return [r.type for r in rows]


@pytest.fixture
def service(db: Database) -> TenantService:
    return TenantService(db)


@pytest.fixture(scope="session")
def issuers() -> StaticIssuers:
    return StaticIssuers()


@pytest.fixture
async def api(
    settings: Settings, db: Database, issuers: StaticIssuers
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running(create_app(settings, db=db, verifier=issuers.verifier())):
        yield client
