"""A real Keycloak 26 for the whole session, one tenant realm per module, and OIDC helpers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlparse
from uuid import UUID, uuid4

import httpx
import jwt
import pytest

from plexica.identity.jwt import Issuer, JwtVerifier
from plexica.identity.keycloak import KeycloakAdapter
from plexica.identity.keycloak_admin import IdentityNotFoundError
from plexica.identity.keycloak_platform import PLATFORM_CLIENT, PlatformClientAdmin
from plexica.identity.keycloak_realm import API_AUDIENCE, WEB_CLIENT
from plexica.identity.service import OPERATOR_REALM
from tests.harness import servers

REDIRECT_URI = "http://127.0.0.1:3000/auth/callback"
_FORM_ACTION = re.compile(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"')


@pytest.fixture(scope="session")
def keycloak() -> dict[str, Any]:
    return servers.ensure("keycloak")


@pytest.fixture(scope="session")
async def platform_client(keycloak: dict[str, Any]) -> tuple[str, str]:
    """The platform's client (ADR 0251), made as the deploy's migrate Job makes it: the cores
    of these tests serve with it, never with Keycloak's admin. One secret for every worker."""
    seed = f"platform client {keycloak['admin_password']}".encode()
    secret = hashlib.sha256(seed).hexdigest()
    made = servers.session_dir() / "platform-client.made"
    # Once for the session, whichever worker comes first; the others wait for it.
    with servers.locked(servers.session_dir() / "platform-client.lock"):
        if not made.exists():
            async with PlatformClientAdmin(
                keycloak["url"], keycloak["admin_user"], keycloak["admin_password"]
            ) as admin:
                await admin.ensure_platform_client(PLATFORM_CLIENT, secret)
            made.touch()
    return PLATFORM_CLIENT, secret


@pytest.fixture(scope="module")
async def kc(keycloak: dict[str, Any]) -> AsyncIterator[KeycloakAdapter]:
    adapter = KeycloakAdapter(
        keycloak["url"],
        keycloak["admin_user"],
        keycloak["admin_password"],
        web_redirect_uris=(REDIRECT_URI,),
    )
    yield adapter
    await adapter.aclose()


class Tenant:
    def __init__(self, realm: str, tenant_id: UUID) -> None:
        self.realm, self.id = realm, tenant_id


@pytest.fixture(scope="module")
async def tenant(kc: KeycloakAdapter) -> AsyncIterator[Tenant]:
    t = Tenant(f"plexica-kc-{secrets.token_hex(4)}", uuid4())
    await kc.create_realm(t.realm, t.id)
    yield t
    await kc.delete_realm(t.realm)


class JwksIssuers:
    """The test's IssuerResolver: known realms, keys from each realm's JWKS (refetched on an
    unknown ``kid``), as the identity domain's resolver does it."""

    def __init__(self) -> None:
        self.issuers: dict[str, Issuer] = {}
        self.keys: dict[str, dict[str, Any]] = {}
        self.fetches = 0

    def add(self, url: str, tenant_id: UUID | None, slug: str | None) -> None:
        self.issuers[url] = Issuer(url, tenant_id, slug)

    async def issuer(self, url: str) -> Issuer | None:
        return self.issuers.get(url)

    async def key(self, issuer: Issuer, kid: str) -> Any | None:
        if kid not in self.keys.get(issuer.url, {}):
            self.fetches += 1
            async with httpx.AsyncClient(timeout=30) as http:
                jwks = (await http.get(f"{issuer.url}/protocol/openid-connect/certs")).json()
            self.keys[issuer.url] = {
                k["kid"]: jwt.PyJWK(k).key
                for k in jwks["keys"]
                if k.get("use") == "sig" and k.get("alg") == "RS256"
            }
        return self.keys[issuer.url].get(kid)


def verifier_for(kc: KeycloakAdapter, tenant: Tenant) -> JwtVerifier:
    issuers = JwksIssuers()
    issuers.add(kc.issuer_url(tenant.realm), tenant.id, tenant.realm.removeprefix("plexica-"))
    return JwtVerifier(issuers, API_AUDIENCE)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def browser_login(
    issuer: str,
    email: str,
    password: str,
    client_id: str = WEB_CLIENT,
    redirect_uri: str = REDIRECT_URI,
) -> dict[str, Any] | None:
    """The authorization code + PKCE flow of a public client, as a browser runs it: the tokens,
    or None when Keycloak keeps the user on its login page or denies access."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    async with httpx.AsyncClient(timeout=30, follow_redirects=False) as http:
        page = await http.get(
            f"{issuer}/protocol/openid-connect/auth",
            params={
                "client_id": client_id,
                "response_type": "code",
                "scope": "openid",
                "redirect_uri": redirect_uri,
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
        )
        assert page.status_code == 200, page.text[:300]
        match = _FORM_ACTION.search(page.text)
        assert match, page.text[:300]
        # Keycloak marks its cookies Secure; browsers send them to http://127.0.0.1 anyway
        # (a trustworthy origin), httpx does not, so they are passed on by hand.
        cookie = "; ".join(f"{name}={value}" for name, value in page.cookies.items())
        if 'name="password"' not in page.text:  # e-mail first (domain routing, ADR 0250)
            page = await http.post(
                html.unescape(match.group(1)), data={"username": email}, headers={"Cookie": cookie}
            )
            assert page.status_code == 200, (page.status_code, page.text[:300])
            match = _FORM_ACTION.search(page.text)
            assert match, page.text[:300]
        answer = await http.post(
            html.unescape(match.group(1)),
            data={"username": email, "password": password, "credentialId": ""},
            headers={"Cookie": cookie},
        )
        if answer.status_code == 401:  # access denied (company sign-in required, ADR 0249)
            assert "kc-form-login" not in answer.text, answer.text[:300]
            return None
        if answer.status_code != 302:
            assert answer.status_code == 200, answer.text[:300]  # the login page, shown again
            assert _FORM_ACTION.search(answer.text), answer.text[:300]
            return None
        location = answer.headers["location"]
        assert location.startswith(redirect_uri), location
        query = parse_qs(urlparse(location).query)
        assert query["state"] == [state]
        tokens = await http.post(
            f"{issuer}/protocol/openid-connect/token",
            data={
                "grant_type": "authorization_code",
                "client_id": client_id,
                "code": query["code"][0],
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
        )
        assert tokens.status_code == 200, tokens.text
        return dict(tokens.json())


async def client_credentials(issuer: str, client_id: str, secret: str) -> str:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"{issuer}/protocol/openid-connect/token",
            data={"grant_type": "client_credentials", "client_id": client_id},
            auth=(client_id, secret),
        )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def operator_realm_made(kc: KeycloakAdapter) -> None:
    """Waits for the operator realm, which a core makes in Keycloak at start-up."""
    deadline = time.monotonic() + 60
    while True:
        try:
            await kc.list_users(OPERATOR_REALM)
            return
        except IdentityNotFoundError:
            assert time.monotonic() < deadline, "no operator realm in Keycloak"
            await asyncio.sleep(0.2)


async def company_realm(kc: KeycloakAdapter, redirect_uri: str) -> tuple[str, str]:
    """A company's own provider (company sign-in, ADR 0246/0247): a realm with a confidential
    client ``plexica`` that sends people back to ``redirect_uri``. Its realm and client secret."""
    realm, secret = f"company-{uuid4().hex[:8]}", secrets.token_urlsafe(24)
    made = await kc._call("POST", "/admin/realms", json={"realm": realm, "enabled": True})
    assert made.status_code == 201, made.text
    client = {
        "clientId": "plexica", "secret": secret, "publicClient": False,
        "standardFlowEnabled": True, "directAccessGrantsEnabled": False,
        "redirectUris": [redirect_uri],
    }  # fmt: skip
    made = await kc._call("POST", f"/admin/realms/{realm}/clients", json=client)
    assert made.status_code == 201, made.text
    return realm, secret


async def company_saml_realm(kc: KeycloakAdapter, entity_id: str, acs_url: str) -> str:
    """A company's own SAML 2.0 provider (ADR 0248): a realm with a SAML client for the service
    provider ``entity_id`` that signs its answers and names people by e-mail address. Its realm
    (metadata at ``/realms/<realm>/protocol/saml/descriptor``)."""
    realm = f"company-{uuid4().hex[:8]}"
    made = await kc._call("POST", "/admin/realms", json={"realm": realm, "enabled": True})
    assert made.status_code == 201, made.text
    client = {
        "clientId": entity_id, "protocol": "saml", "redirectUris": [acs_url],
        "attributes": {
            "saml_name_id_format": "email", "saml.force.name.id.format": "true",
            "saml.server.signature": "true", "saml.client.signature": "false",
            "saml_assertion_consumer_url_post": acs_url, "saml.authnstatement": "true",
        },
    }  # fmt: skip
    made = await kc._call("POST", f"/admin/realms/{realm}/clients", json=client)
    assert made.status_code == 201, made.text
    return realm


async def company_person(kc: KeycloakAdapter, realm: str, email: str) -> str:
    """A person of the company's realm with a verified e-mail: their password."""
    password = secrets.token_urlsafe(16)
    person = {
        "username": email, "email": email, "emailVerified": True, "enabled": True,
        "firstName": "Pat", "lastName": "Doe",
        "credentials": [{"type": "password", "value": password, "temporary": False}],
    }  # fmt: skip
    made = await kc._call("POST", f"/admin/realms/{realm}/users", json=person)
    assert made.status_code == 201, made.text
    return password
