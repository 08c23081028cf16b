"""Fixtures of the plugin platform's tests: tenants (schemas of our own, since the tenancy domain
is built elsewhere), the CRM (and Billing) registered in the catalog, and the embedded gateway in
front of the core and the mounted plugin apps."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import text

from plexica.app import create_app
from plexica.gateway.embedded import create_edge_app
from plexica.kit.db import Database
from plexica.kit.provisioning import TenantRef
from plexica.kit.state import started, state_of
from plexica.plugins import service
from plexica.plugins.gate import InstallationGate
from plexica.plugins.schemas import MigrationFile, VersionStatus
from plexica.plugins.service import HttpReadinessProbe, Installer
from plexica.settings import Settings
from plexica.tenants import repository as tenants_repo
from plexica.tenants.schemas import State
from plexica.web.app import create_web_app
from plexica_billing.app import create_app as create_billing_app
from plexica_billing.app import plugin_root as billing_root
from plexica_crm.app import create_app as create_crm_app
from plexica_crm.app import plugin_root
from plexica_sdk.app import PluginConfig, create_plugin_app
from plexica_sdk.manifest import Manifest, load_manifest, load_migrations, parse_manifest
from tests.conftest import running
from tests.support.tokens import StaticIssuers

CRM_DIR = plugin_root()


@pytest.fixture(scope="session")
def issuers() -> StaticIssuers:
    return StaticIssuers()


@pytest.fixture(scope="session")
def jwks_base(issuers: StaticIssuers) -> Iterator[str]:
    jwk = json.loads(RSAAlgorithm.to_jwk(issuers.signing_key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": issuers.kid, "use": "sig", "alg": "RS256"}]})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path.endswith("/protocol/openid-connect/certs")
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode() if ok else b"{}")

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/realms"
    server.shutdown()


@dataclass
class Tenant:
    ref: TenantRef
    issuers: StaticIssuers

    @property
    def id(self) -> uuid.UUID:
        return self.ref.id

    def headers(self, *roles: str, sub: str | None = None) -> dict[str, str]:
        token = self.issuers.token(
            self.ref.realm, roles=list(roles), sub=sub, tenant_id=str(self.ref.id)
        )
        return {"Authorization": f"Bearer {token}"}


TenantFactory = Callable[[], Coroutine[Any, Any, Tenant]]


@pytest.fixture
async def make_tenant(db: Database, issuers: StaticIssuers) -> AsyncIterator[TenantFactory]:
    made: list[TenantRef] = []

    async def make() -> Tenant:
        slug = "t" + uuid.uuid4().hex[:10]
        ref = TenantRef(uuid.uuid4(), slug, slug.upper(), f"admin@{slug}.test")
        async with db.session() as s:
            await s.execute(text(f'CREATE SCHEMA "{ref.schema}"'))
            # Active in the tenant registry (an empty schema of our own): the edge serves no other.
            await tenants_repo.insert_tenant(s, ref.id, slug, ref.name, ref.admin_email)
            await tenants_repo.set_state(s, ref.id, State.PROVISIONING, State.ACTIVE)
        issuers.add_tenant(ref.id, slug)
        made.append(ref)
        return Tenant(ref, issuers)

    yield make
    for ref in made:
        async with db.session() as s:
            rows = await s.execute(
                text("SELECT db_role FROM platform.plugin_installations WHERE tenant_id = :t"),
                {"t": ref.id},
            )
            for (role,) in rows:
                if (
                    await s.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
                ).scalar():
                    await s.execute(text(f'DROP OWNED BY "{role}" CASCADE'))
                    await s.execute(text(f'DROP ROLE "{role}"'))
            await s.execute(
                text("DELETE FROM platform.plugin_installations WHERE tenant_id = :t"),
                {"t": ref.id},
            )
            await s.execute(text(f'DROP SCHEMA "{ref.schema}" CASCADE'))


async def register_dir(db: Database, root: Path, *, publish: bool = True) -> Manifest:
    manifest = load_manifest(root)
    migrations = [MigrationFile(name=n, sql=s) for n, s in load_migrations(manifest, root)]
    async with db.session() as s:
        known = {v.version for v in await service.list_versions(s, manifest.id)}
        if manifest.version not in known:
            await service.register(s, manifest.model_dump(mode="json"), migrations)
            if publish:
                await service.set_status(s, manifest.id, manifest.version, VersionStatus.PUBLISHED)
    return manifest


async def register_doc(
    db: Database, doc: dict[str, Any], migrations: list[tuple[str, str]]
) -> Manifest:
    manifest = parse_manifest(doc)
    files = [MigrationFile(name=n, sql=s) for n, s in migrations]
    async with db.session() as s:
        await service.register(s, doc, files)
        await service.set_status(s, manifest.id, manifest.version, VersionStatus.PUBLISHED)
    return manifest


@pytest.fixture(scope="session")
async def crm_manifest(db: Database) -> Manifest:
    return await register_dir(db, CRM_DIR)


def plugin_doc(plugin_id: str, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {
        "id": plugin_id,
        "name": plugin_id.title(),
        "version": version,
        "publisher": "Tests",
        "core": ">=0.1.0 <1.0.0",
        **extra,
    }


def bare_app(manifest: Manifest) -> FastAPI:
    """A plugin service without a database: ready as soon as it runs."""
    return create_plugin_app(manifest, config=PluginConfig())


@dataclass
class Platform:
    http: httpx.AsyncClient
    core: FastAPI
    crm: FastAPI
    endpoints: dict[str, Any]

    @property
    def installer(self) -> Installer:
        return started(state_of(self.core).plugin_installer, "plugin_installer")


@pytest.fixture
async def platform(
    settings: Settings,
    db: Database,
    database_url: str,
    issuers: StaticIssuers,
    crm_manifest: Manifest,
) -> AsyncIterator[Platform]:
    """``plexica up`` in miniature: the embedded gateway with the CRM mounted in-process."""
    config = PluginConfig(database_url=database_url, verifier=issuers.verifier())
    async for mounted in _mounted(settings, db, issuers, {"crm": create_crm_app(config)}):
        yield mounted


@pytest.fixture(scope="session")
async def billing_manifest(db: Database) -> Manifest:
    return await register_dir(db, billing_root())


@pytest.fixture
async def billing_platform(
    settings: Settings,
    db: Database,
    database_url: str,
    issuers: StaticIssuers,
    crm_manifest: Manifest,
    billing_manifest: Manifest,
) -> AsyncIterator[Platform]:
    """The same with Billing mounted next to the CRM (its events are not delivered in-process:
    no event runtime, the outbox waits for a relay)."""
    config = PluginConfig(database_url=database_url, verifier=issuers.verifier())
    plugins = {"crm": create_crm_app(config), "billing": create_billing_app(config)}
    async for mounted in _mounted(settings, db, issuers, plugins):
        yield mounted


async def _mounted(
    settings: Settings, db: Database, issuers: StaticIssuers, plugins: dict[str, FastAPI]
) -> AsyncIterator[Platform]:
    core = create_app(settings, db=db, verifier=issuers.verifier())
    endpoints: dict[str, Any] = dict(plugins)
    state_of(core).plugin_endpoints = endpoints
    state_of(core).plugin_probe = HttpReadinessProbe(endpoints, timeout=1.0)
    edge = create_edge_app(core, create_web_app(settings), plugins, InstallationGate(core))
    async for client in running(edge):
        yield Platform(client, core, plugins["crm"], endpoints)
