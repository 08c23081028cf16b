"""``plexica up`` in a thread on a real loopback port (core, built-in OIDC provider, CRM, web
shell), and a browser-like httpx client that signs in through the provider's own login form."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI
from playwright.async_api import Browser, async_playwright
from pydantic import SecretStr

from plexica.app import create_app
from plexica.events.runtime import plugin_event_buses
from plexica.gateway.embedded import create_edge_app
from plexica.identity import service
from plexica.identity.builtin import BuiltinIdentity
from plexica.identity.client import _FormParser
from plexica.kit.db import Database
from plexica.kit.ports import free_port
from plexica.kit.state import state_of
from plexica.plugins import service as plugin_service
from plexica.plugins.embedded import CoreVerifier, mount_plugins
from plexica.plugins.gate import InstallationGate
from plexica.plugins.schemas import VersionStatus
from plexica.settings import Settings
from plexica.web.app import create_web_app
from plexica.web.session import session_key
from plexica.web.store import SessionStore
from plexica_billing.app import plugin_root as billing_root
from plexica_sdk.app import PluginConfig, create_plugin_app
from plexica_sdk.events import EventBus
from plexica_sdk.manifest import parse_manifest
from tests.plugins.conftest import CRM_DIR, plugin_doc, register_dir

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
BROKEN = "webbroken"
WEB_SECRET = "the-web-secret-of-the-test-site-0123456789"
# Tenants are also reached at <slug>.localtest.me:<port> (the browser maps the names to loopback).
BASE_DOMAIN = "localtest.me"
BROKEN_DOC = plugin_doc(
    BROKEN,
    ui={
        "pages": [{"id": "oops", "title": "Oops", "path": "/ui/missing"}],
        "slots": [{"slot": "dashboard.widgets", "path": "/ui/missing-widget"}],
    },
)


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    """Headless Chromium (Debian's); no DNS here: it maps the base domain and its subdomains
    to loopback itself."""
    rules = f"--host-resolver-rules=MAP {BASE_DOMAIN} 127.0.0.1, MAP *.{BASE_DOMAIN} 127.0.0.1"
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM, args=[*ARGS, rules], headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="session", autouse=True)
def _cheap_argon2() -> None:
    service.use_password_hasher(PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))


@dataclass(frozen=True)
class Site:
    url: str
    settings: Settings
    web: FastAPI
    core: FastAPI


@contextmanager
def serve_site(
    database_url: str,
    *,
    smtp_url: str | None = None,
    deliver_events: bool = False,
    **more: Any,
) -> Iterator[Site]:
    """The platform as ``plexica up`` serves it, in a thread on a free loopback port. Without
    ``smtp_url`` mail goes to the dev mailbox; with ``deliver_events`` the mounted plugins get
    their events in-process (as under ``plexica up``), else the outbox is only relayed;
    ``more``: other settings (Keycloak's)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Each shell page makes several API calls with the user's token, and these tests walk
    # pages far faster than a person: the per-user limit (100/min) is not what they test.
    settings = Settings(
        database_url=database_url, public_url=url, port=port, web_base_domain=BASE_DOMAIN,
        web_secret=SecretStr(WEB_SECRET), smtp_url=SecretStr(smtp_url) if smtp_url else None,
        gateway_rate_limit=1000, **more,
    )  # fmt: skip
    buses: dict[str, EventBus] = {}
    core = create_app(settings, event_buses=buses)
    plugins = mount_plugins(core, settings)
    if deliver_events:
        buses.update(plugin_event_buses(plugins))
    # A real plugin whose page and widget do not exist: the shell must show error boxes.
    broken = create_plugin_app(
        parse_manifest(BROKEN_DOC), config=PluginConfig(verifier=CoreVerifier(core))
    )
    plugins[BROKEN] = state_of(core).plugin_endpoints[BROKEN] = broken
    web = create_web_app(settings)
    edge = create_edge_app(core, web, plugins, InstallationGate(core))
    server = uvicorn.Server(
        uvicorn.Config(edge, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the platform did not start")
        time.sleep(0.02)
    try:
        yield Site(url, settings, web, core)
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def site(database_url: str) -> Iterator[Site]:
    with serve_site(database_url) as served:
        yield served


@pytest.fixture(scope="session")
async def crm_published(db: Database) -> None:
    await register_dir(db, CRM_DIR)


@pytest.fixture(scope="session")
async def billing_published(db: Database) -> None:
    await register_dir(db, billing_root())


@pytest.fixture(scope="session")
async def broken_published(db: Database) -> None:
    async with db.session() as s:
        if not await plugin_service.list_versions(s, BROKEN):
            await plugin_service.register(s, BROKEN_DOC, [])
            await plugin_service.set_status(s, BROKEN, "1.0.0", VersionStatus.PUBLISHED)


async def add_user(db: Database, site: Site, realm: str, email: str, roles: set[str]) -> str:
    password = service.generate_password()
    await BuiltinIdentity(db, site.url).create_user(realm, email, password, frozenset(roles))
    return password


async def set_password(db: Database, realm: str, email: str) -> str:
    password = service.generate_password()
    async with db.session() as session:
        await service.set_password(session, realm, email, password)
    return password


@dataclass
class Operator:
    email: str
    password: str


@pytest.fixture(scope="session")
async def operator(db: Database, site: Site) -> Operator:
    async with db.session() as session:
        await service.ensure_realm(session, service.OPERATOR_REALM, None, site.url)
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    return Operator(email, await add_user(db, site, service.OPERATOR_REALM, email, {"super_admin"}))


@pytest.fixture
def sessions(site: Site, db: Database) -> SessionStore:
    """The site's session store, on this test's own connections (the site runs in a thread)."""
    return SessionStore(db, session_key(site.settings))


@pytest.fixture
async def browser(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=site.url, timeout=15.0) as client:
        yield client


async def sign_in(
    browser: httpx.AsyncClient, start: str, email: str, password: str
) -> httpx.Response:
    """Follows the whole browser flow: the shell's redirect to the provider, its login form, the
    callback; returns the shell's last answer (the redirect to the page asked for)."""
    to_provider = await browser.get(start)
    assert to_provider.status_code == 303, to_provider.text
    page = await browser.get(to_provider.headers["location"], follow_redirects=True)
    form = _FormParser()
    form.feed(page.text)
    assert form.action is not None, page.text
    answer = await browser.post(
        urljoin(str(page.url), form.action),
        data={**form.fields, "username": email, "password": password},
    )
    assert answer.status_code in (302, 303), answer.text
    return await browser.get(answer.headers["location"])


def csrf_of(html: str) -> str:
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


async def until_provisioned(browser: httpx.AsyncClient, progress: str) -> httpx.Response:
    """Polls the console's provisioning page (as its script does) until the saga is over."""
    deadline = time.monotonic() + 30
    while True:
        page = await browser.get(progress, headers={"X-Plexica-Live": "1"})
        if page.headers.get("X-Plexica-Live") == "done":
            return page
        assert time.monotonic() < deadline, page.text
        await asyncio.sleep(0.05)
