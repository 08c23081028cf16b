"""The platform as ``plexica up`` serves it (the embedded edge, the core, the CRM and Billing
mounted in-process) with a tenant that has both plugins active."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI

from plexica.app import create_app
from plexica.gateway.embedded import create_edge_app
from plexica.identity.service import DEFAULT_PERMISSIONS
from plexica.kit.db import Database
from plexica.kit.state import state_of
from plexica.plugins.gate import InstallationGate
from plexica.plugins.service import HttpReadinessProbe
from plexica.settings import Settings
from plexica.web.app import create_web_app
from plexica_billing.app import create_app as create_billing_app
from plexica_billing.app import plugin_root as billing_root
from plexica_crm.app import create_app as create_crm_app
from plexica_sdk.app import PluginConfig
from plexica_sdk.auth import JwtVerifier
from plexica_sdk.manifest import Manifest
from tests.conftest import running
from tests.plugins.conftest import (  # noqa: F401 - fixtures
    Tenant,
    TenantFactory,
    crm_manifest,
    issuers,
    make_tenant,
    register_dir,
)
from tests.support.tokens import AUDIENCE, StaticIssuers

CORE = "/api/core/v1"


async def _default_permissions(_: UUID | None, roles: frozenset[str]) -> frozenset[str]:
    return frozenset(p for role in roles for p in DEFAULT_PERMISSIONS.get(role, ()))


@dataclass
class Stack:
    http: httpx.AsyncClient
    tenant: Tenant
    admin: dict[str, str]
    operator: dict[str, str]
    edge: FastAPI


@pytest.fixture
async def stack(
    settings: Settings,
    db: Database,
    database_url: str,
    issuers: StaticIssuers,  # noqa: F811 - the fixture
    crm_manifest: Manifest,  # noqa: F811 - the fixture
    make_tenant: TenantFactory,  # noqa: F811 - the fixture
) -> AsyncIterator[Stack]:
    await register_dir(db, billing_root())
    config = PluginConfig(database_url=database_url, verifier=issuers.verifier())
    plugins = {"crm": create_crm_app(config), "billing": create_billing_app(config)}
    verifier = JwtVerifier(issuers, AUDIENCE, permissions=_default_permissions)
    core = create_app(settings, db=db, verifier=verifier)
    state_of(core).plugin_endpoints = dict(plugins)
    state_of(core).plugin_probe = HttpReadinessProbe(dict(plugins), timeout=5.0)
    edge = create_edge_app(core, create_web_app(settings), plugins, InstallationGate(core))
    tenant = await make_tenant()
    admin = tenant.headers("tenant_admin", sub="ada")
    async for http in running(edge):
        for plugin in ("crm", "billing"):
            r = await http.post(
                f"{CORE}/tenants/{tenant.id}/plugins", json={"plugin_id": plugin}, headers=admin
            )
            assert r.status_code == 201, r.text
        yield Stack(http, tenant, admin, issuers.operator_headers(), edge)
