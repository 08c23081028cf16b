"""Two tenants provisioned through the operator API, and a client holding tokens for each."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from plexica.app import create_app
from plexica.kit.db import Database
from plexica.settings import Settings
from tests.conftest import running
from tests.support.tokens import StaticIssuers


@dataclass
class Tenant:
    id: str
    slug: str
    headers: dict[str, str]


@dataclass
class World:
    client: httpx.AsyncClient
    issuers: StaticIssuers
    a: Tenant
    b: Tenant

    @property
    def operator(self) -> dict[str, str]:
        return self.issuers.operator_headers()


async def provision(client: httpx.AsyncClient, issuers: StaticIssuers, slug: str) -> Tenant:
    r = await client.post(
        "/v1/tenants",
        json={"slug": slug, "name": slug.upper(), "admin_email": f"admin@{slug}.example"},
        headers=issuers.operator_headers(),
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    issuers.add_tenant(uuid.UUID(body["id"]), slug)
    token = issuers.token(f"plexica-{slug}", roles=["tenant_admin"])
    return Tenant(body["id"], slug, {"Authorization": f"Bearer {token}"})


@pytest.fixture
async def world(settings: Settings, db: Database) -> AsyncIterator[World]:
    issuers = StaticIssuers()
    async for client in running(create_app(settings, db=db, verifier=issuers.verifier())):
        suffix = uuid.uuid4().hex[:8]
        a = await provision(client, issuers, f"iso-a-{suffix}")
        b = await provision(client, issuers, f"iso-b-{suffix}")
        yield World(client, issuers, a, b)
