"""Relying-party interop: the same provider-neutral fixture for the built-in OIDC provider and a
real Keycloak 26, and the openid-client (Node) relying party run as a subprocess.

Both modes get the same set-up through their identity adapters: a tenant realm, a public browser
client (PKCE) whose redirect URIs are also its post-logout redirect URIs, a confidential service
client and a tenant admin with a password.
"""

from __future__ import annotations

import fcntl
import json
import secrets
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from plexica.identity.builtin import BuiltinIdentity
from plexica.identity.client import _FormParser
from plexica.identity.keycloak import KeycloakAdapter
from plexica.identity.keycloak_realm import API_AUDIENCE
from plexica.kit.db import Database
from tests.harness import servers
from tests.identity import conftest as identity
from tests.identity.conftest import Live, provision, set_password

# The built-in provider's fixtures: a core app on a real port, cheap argon2 for the test users.
live = identity.live
cheap_argon2 = identity._cheap_argon2

NODE_DIR = Path(__file__).parent / "node"
CALLBACK = "http://127.0.0.1:9/rp/callback"
SIGNED_OUT = "http://127.0.0.1:9/rp/signed-out"
WEB_CLIENT = "rp-web"
SERVICE_CLIENT = "rp-svc"


@dataclass(frozen=True)
class Provider:
    """What a relying party is told about an OpenID provider, whichever mode serves it."""

    mode: str
    issuer: str
    client_id: str
    service_id: str
    service_secret: str
    email: str
    password: str
    tenant_id: str
    audience: str = API_AUDIENCE

    @property
    def endpoint(self) -> str:
        return self.issuer + "/protocol/openid-connect"


async def browser_login(url: str, email: str, password: str) -> str:
    """What a browser does between the RP's redirect to the provider and the redirect back: the
    login form, filled in and posted. Returns the callback URL the provider redirects to."""
    async with httpx.AsyncClient(timeout=60) as http:
        page = await http.get(url)
        assert page.status_code == 200, page.text[:300]
        form = _FormParser()
        form.feed(page.text)
        assert form.action is not None, page.text[:300]
        # Keycloak marks its cookies Secure; browsers send them to http://127.0.0.1 anyway (a
        # trustworthy origin), httpx does not, so they are passed on by hand.
        cookie = "; ".join(f"{name}={value}" for name, value in page.cookies.items())
        answer = await http.post(
            urljoin(str(page.url), form.action),
            data={**form.fields, "username": email, "password": password},
            headers={"Cookie": cookie},
        )
    assert answer.status_code in {302, 303}, answer.text[:300]
    return answer.headers["location"]


@pytest.fixture(scope="session")
async def builtin_provider(live: Live, db: Database) -> Provider:
    tenant = await provision(db, live)
    adapter = BuiltinIdentity(db, live.url)
    await adapter.create_client(
        tenant.realm, WEB_CLIENT, public=True, redirect_uris=(CALLBACK, SIGNED_OUT)
    )
    service = await adapter.create_client(
        tenant.realm, SERVICE_CLIENT, public=False, roles=frozenset({"member"})
    )
    assert service.secret is not None
    password = await set_password(db, tenant.realm, tenant.admin_email)
    return Provider(
        "builtin", live.issuer(tenant.realm), WEB_CLIENT, SERVICE_CLIENT, service.secret,
        tenant.admin_email, password, str(tenant.id),
    )  # fmt: skip


@pytest.fixture(scope="session")
async def keycloak_provider() -> AsyncIterator[Provider]:
    info = servers.ensure("keycloak")
    async with KeycloakAdapter(info["url"], info["admin_user"], info["admin_password"]) as kc:
        realm, tenant_id = f"plexica-rp{secrets.token_hex(4)}", uuid.uuid4()
        await kc.create_realm(realm, tenant_id)
        await kc.create_client(realm, WEB_CLIENT, public=True, redirect_uris=(CALLBACK, SIGNED_OUT))
        service = await kc.create_client(
            realm, SERVICE_CLIENT, public=False, roles=frozenset({"member"})
        )
        assert service.secret is not None
        email, password = f"admin@{realm}.example", "rp-" + secrets.token_urlsafe(18)
        await kc.create_user(realm, email, password, frozenset({"tenant_admin"}))
        yield Provider(
            "keycloak", kc.issuer_url(realm), WEB_CLIENT, SERVICE_CLIENT, service.secret, email,
            password, str(tenant_id),
        )  # fmt: skip
        await kc.delete_realm(realm)


@pytest.fixture(params=["builtin", "keycloak"])
def provider(request: pytest.FixtureRequest) -> Provider:
    """Every interop test runs against both identity modes."""
    found: Provider = request.getfixturevalue(f"{request.param}_provider")
    return found


# --- openid-client (Node) ------------------------------------------------------------------


def _node_modules() -> None:
    """``npm ci`` from the committed lock file, once per change of it (under a lock: xdist
    workers share the folder)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("the interop suite needs Node.js 20+ and npm on PATH")
    lock = NODE_DIR / "package-lock.json"
    stamp = NODE_DIR / "node_modules" / ".plexica-lock"
    with (NODE_DIR / ".install.lock").open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_bytes() == lock.read_bytes():
            return
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR, check=True, stdin=subprocess.DEVNULL, timeout=600,
        )  # fmt: skip
        stamp.write_bytes(lock.read_bytes())


class NodeRP:
    """openid-client as a relying party: one step per run of ``rp.mjs``."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    def run(self, step: str, *, service: bool = False, **values: Any) -> dict[str, Any]:
        p = self.provider
        client = {"client_id": p.service_id, "client_secret": p.service_secret} if service else {}
        request = {"step": step, "issuer": p.issuer, "client_id": p.client_id, **client, **values}
        done = subprocess.run(
            ["node", str(NODE_DIR / "rp.mjs")], input=json.dumps(request).encode(),
            capture_output=True, check=False, timeout=120, cwd=NODE_DIR,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    def ok(self, step: str, **values: Any) -> dict[str, Any]:
        answer = self.run(step, **values)
        assert "ok" in answer, answer
        result: dict[str, Any] = answer["ok"]
        return result

    def error(self, step: str, **values: Any) -> dict[str, Any]:
        answer = self.run(step, **values)
        assert "error" in answer, answer
        result: dict[str, Any] = answer["error"]
        return result


@pytest.fixture(scope="session")
def node_ready() -> None:
    _node_modules()


@pytest.fixture
def node_rp(node_ready: None, provider: Provider) -> NodeRP:
    return NodeRP(provider)
