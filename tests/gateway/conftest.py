"""Gateway fixtures: the core (real PostgreSQL, optionally Redis) with real RS256 tokens, a
tenant created through the tenancy API, and a bare plugin registered and installed for it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from plexica.app import create_app
from plexica.kit.db import Database
from plexica.kit.state import state_of
from plexica.settings import Settings
from plexica_sdk.manifest import parse_manifest
from tests.conftest import running
from tests.plugins.conftest import bare_app, plugin_doc, register_doc
from tests.support.tokens import StaticIssuers


@pytest.fixture(scope="session")
def issuers() -> StaticIssuers:
    return StaticIssuers()


@dataclass
class Core:
    app: FastAPI
    http: httpx.AsyncClient
    issuers: StaticIssuers
    base: str = ""  # "/api/core" behind the embedded edge

    async def tenant(self) -> dict[str, Any]:
        slug = "gw-" + uuid.uuid4().hex[:10]
        r = await self.http.post(
            f"{self.base}/v1/tenants",
            json={"slug": slug, "name": "Initech", "admin_email": "it@initech.example"},
            headers=self.issuers.operator_headers(),
        )
        assert r.status_code == 201, r.text
        t = dict(r.json())
        self.issuers.add_tenant(uuid.UUID(t["id"]), t["slug"])
        return t

    def token(self, tenant: dict[str, Any], sub: str = "user-1", *roles: str) -> str:
        return self.issuers.token(
            f"plexica-{tenant['slug']}", sub=sub, roles=list(roles) or ["tenant_admin"]
        )

    async def install(self, tenant: dict[str, Any], plugin_id: str) -> None:
        r = await self.http.post(
            f"{self.base}/v1/tenants/{tenant['id']}/plugins",
            json={"plugin_id": plugin_id},
            headers={"Authorization": f"Bearer {self.token(tenant)}"},
        )
        assert r.status_code == 201, r.text

    async def set_enabled(self, tenant: dict[str, Any], plugin_id: str, on: bool) -> None:
        verb = "enable" if on else "disable"
        r = await self.http.post(
            f"{self.base}/v1/tenants/{tenant['id']}/plugins/{plugin_id}/{verb}",
            headers={"Authorization": f"Bearer {self.token(tenant)}"},
        )
        assert r.status_code == 200, r.text


@pytest.fixture
async def plugin_id(db: Database) -> str:
    pid = "gw" + uuid.uuid4().hex[:8]
    await register_doc(db, plugin_doc(pid), [])
    return pid


def core_app(
    settings: Settings, db: Database, issuers: StaticIssuers, plugin_ids: list[str]
) -> FastAPI:
    app = create_app(settings, db=db, verifier=issuers.verifier())
    state_of(app).plugin_endpoints = {
        pid: bare_app(parse_manifest(plugin_doc(pid))) for pid in plugin_ids
    }
    return app


@pytest.fixture
async def core(
    settings: Settings, db: Database, issuers: StaticIssuers, plugin_id: str
) -> AsyncIterator[Core]:
    tuned = settings.model_copy(update={"gateway_rate_limits": "plugin:limited=3"})
    app = core_app(tuned, db, issuers, [plugin_id])
    async for client in running(app):
        yield Core(app, client, issuers)


def forward(uri: str, token: str | None = None, **extra: str) -> dict[str, str]:
    headers = {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": uri, "X-Forwarded-Host": "edge"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers | extra
