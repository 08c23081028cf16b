"""The platform configured for a real Keycloak 26: the operator signs in, creates a tenant (its
realm and first admin made in Keycloak), the admin signs in through the browser flow (code +
PKCE) and calls the core; token attacks; service clients; suspension disables the realm."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import jwt
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from plexica.app import create_app
from plexica.cli.main import app as cli
from plexica.identity.jwt import JwtVerifier
from plexica.identity.keycloak import KeycloakAdapter
from plexica.identity.keycloak_realm import API_AUDIENCE
from plexica.identity.service import CLI_CLIENT, CLI_REDIRECT, OPERATOR_REALM
from plexica.kit.db import Database
from plexica.kit.state import state_of
from plexica.settings import Settings
from plexica_sdk.errors import UnauthenticatedError
from tests.conftest import running
from tests.harness import servers
from tests.identity.test_verify import _b64, _hs256
from tests.keycloak.conftest import REDIRECT_URI, browser_login, operator_realm_made, pkce_pair

PUBLIC = REDIRECT_URI.removesuffix("/auth/callback")


@dataclass
class Platform:
    http: httpx.AsyncClient
    app: FastAPI
    settings: Settings
    env: dict[str, str]


@pytest.fixture(scope="module")
async def platform(
    keycloak: dict[str, Any],
    kc: KeycloakAdapter,
    platform_client: tuple[str, str],
    database_url: str,
    db: Database,
) -> AsyncIterator[Platform]:
    """The core in Keycloak mode, logged in as the platform's client (ADR 0251)."""
    client_id, secret = platform_client
    env = {
        "PLEXICA_DATABASE_URL": database_url,
        "PLEXICA_KEYCLOAK_URL": keycloak["url"],
        "PLEXICA_KEYCLOAK_CLIENT_ID": client_id,
        "PLEXICA_KEYCLOAK_CLIENT_SECRET": secret,
        "PLEXICA_PUBLIC_URL": PUBLIC,
    }
    settings = Settings(
        database_url=database_url,
        keycloak_url=keycloak["url"],
        keycloak_client_id=client_id,
        keycloak_client_secret=secret,
        public_url=PUBLIC,
        data_dir=servers.session_dir() / "keycloak-core",
    )
    app = create_app(settings, db=db)
    async for client in running(app):
        await operator_realm_made(kc)
        yield Platform(client, app, settings, env)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _operator(kc: KeycloakAdapter) -> dict[str, str]:
    email, password = f"ops-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(16)
    await kc.create_user(OPERATOR_REALM, email, password, frozenset({"super_admin"}))
    # The CLI's client: the operator realm's web client allows the callbacks of whichever
    # core made the realm first in this Keycloak.
    tokens = await browser_login(
        kc.issuer_url(OPERATOR_REALM), email, password, CLI_CLIENT, CLI_REDIRECT
    )
    assert tokens is not None
    return bearer(tokens["access_token"])


async def _tenant(p: Platform, op: dict[str, str]) -> dict[str, Any]:
    slug = f"kc{secrets.token_hex(4)}"
    made = await p.http.post(
        "/v1/tenants",
        headers=op,
        json={"slug": slug, "name": slug.upper(), "admin_email": f"admin@{slug}.example"},
    )
    assert made.status_code == 201, made.text
    tenant = dict(made.json())
    assert tenant["state"] == "active"
    # The first admin exists in Keycloak without a password: the operator gives one.
    reset = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["user", "reset-password", "--tenant", slug, f"admin@{slug}.example"],
        env=p.env,
    )
    assert reset.exit_code == 0, reset.output
    tenant["password"] = reset.stdout.strip()
    tenant["email"] = f"admin@{slug}.example"
    tenant["realm"] = f"plexica-{slug}"
    return tenant


async def test_operator_creates_a_tenant_whose_admin_signs_in_and_calls_the_core(
    platform: Platform, kc: KeycloakAdapter
) -> None:
    op = await _operator(kc)
    assert (await platform.http.get("/v1/me", headers=op)).json()["is_operator"] is True
    tenant = await _tenant(platform, op)
    users = await kc.list_users(tenant["realm"])
    assert [(u.email, set(u.roles)) for u in users] == [(tenant["email"], {"tenant_admin"})]

    tokens = await browser_login(
        kc.issuer_url(tenant["realm"]), tenant["email"], tenant["password"]
    )
    assert tokens is not None
    me = await platform.http.get("/v1/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200, me.text
    body = me.json()
    assert (body["tenant_id"], body["tenant_slug"]) == (tenant["id"], tenant["slug"])
    assert body["email"] == tenant["email"]
    assert "tenant_admin" in body["roles"]
    assert body["is_operator"] is False
    own = await platform.http.get("/v1/tenant", headers=bearer(tokens["access_token"]))
    assert own.json()["id"] == tenant["id"]
    listed = await platform.http.get("/v1/users", headers=bearer(tokens["access_token"]))
    assert [u["email"] for u in listed.json()] == [tenant["email"]]

    # The core passes the realm's public keys on, so plugins need no path to Keycloak (ADR
    # 0252): the same signing keys, public members only; no other realm's.
    certs = "/protocol/openid-connect/certs"
    relayed = await platform.http.get(f"/realms/{tenant['realm']}{certs}")
    assert relayed.status_code == 200, relayed.text
    async with httpx.AsyncClient() as http:
        direct = (await http.get(f"{kc.url}/realms/{tenant['realm']}{certs}")).json()
    public = {"kty", "kid", "use", "alg", "n", "e", "crv", "x", "y", "x5c", "x5t", "x5t#S256"}
    assert relayed.json()["keys"] == [
        {k: v for k, v in key.items() if k in public}
        for key in direct["keys"]
        if key.get("use") != "enc"
    ]
    for other in ("master", "plexica-no-such-tenant", "../master"):
        assert (await platform.http.get(f"/realms/{other}{certs}")).status_code == 404, other


async def test_token_attacks_with_keycloak_tokens(platform: Platform, kc: KeycloakAdapter) -> None:
    op = await _operator(kc)
    a, b = await _tenant(platform, op), await _tenant(platform, op)
    tokens = await browser_login(kc.issuer_url(a["realm"]), a["email"], a["password"])
    assert tokens is not None
    good = tokens["access_token"]
    assert (await platform.http.get("/v1/me", headers=bearer(good))).status_code == 200
    header, _payload, signature = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})
    kid = jwt.get_unverified_header(good)["kid"]
    jwks = await platform.http.get(f"{kc.issuer_url(a['realm'])}/protocol/openid-connect/certs")

    # A realm in the same Keycloak, not one of ours, minting genuine tokens that claim tenant B.
    rogue = f"plexica-rogue{secrets.token_hex(4)}"
    await kc.create_realm(rogue, UUID(b["id"]))
    password = secrets.token_urlsafe(16)
    await kc.create_user(rogue, "mallory@evil.example", password, frozenset({"tenant_admin"}))
    forged = await browser_login(kc.issuer_url(rogue), "mallory@evil.example", password)
    assert forged is not None
    assert (
        jwt.decode(forged["access_token"], options={"verify_signature": False})["tenant_id"]
        == b["id"]
    )

    attacks = {
        "tampered roles": f"{header}.{_b64({**claims, 'realm_access': {'roles': ['super_admin']}})}"
        f".{signature}",
        "tenant A's token as tenant B": f"{header}."
        f"{_b64({**claims, 'iss': kc.issuer_url(b['realm']), 'tenant_id': b['id']})}.{signature}",
        "another realm claiming tenant B": forged["access_token"],
        "alg none": _b64({"alg": "none", "kid": kid}) + "." + _b64(claims) + ".",
        "hs256 with the public key": _hs256(claims, kid, jwks.content),
        "garbage": "not-a-token",
    }
    bodies = set()
    for name, token in attacks.items():
        answer = await platform.http.get("/v1/me", headers=bearer(token))
        assert answer.status_code == 401, name
        bodies.add(answer.text)
    assert len(bodies) == 1, bodies

    # Expired: a realm whose tokens live one second. The core allows 30 s of clock skew, so
    # the expiry is checked by the core's verifier (its realm registry and JWKS) without it.
    await kc._call("PUT", f"/admin/realms/{a['realm']}", json={"accessTokenLifespan": 1})
    short = await browser_login(kc.issuer_url(a["realm"]), a["email"], a["password"])
    assert short is not None
    verifier = state_of(platform.app).verifier
    assert isinstance(verifier, JwtVerifier)
    strict = JwtVerifier(verifier.resolver, API_AUDIENCE, leeway_seconds=0)
    assert (await strict.verify(good)).tenant_id == UUID(a["id"])
    # On a busy machine the short token may have expired before any check: wait for its expiry
    # rather than assume it is still valid a moment after it was minted.
    short_claims = jwt.decode(short["access_token"], options={"verify_signature": False})
    assert short_claims["exp"] - short_claims["iat"] == 1
    while time.time() <= short_claims["exp"] + 0.5:
        await asyncio.sleep(0.1)
    with pytest.raises(UnauthenticatedError):
        await strict.verify(short["access_token"])
    await kc._call("PUT", f"/admin/realms/{a['realm']}", json={"accessTokenLifespan": 300})


async def _grant(http: httpx.AsyncClient, made: dict[str, Any], secret: str) -> httpx.Response:
    return await http.post(
        made["token_url"],
        data={"grant_type": "client_credentials"},
        auth=(made["client"]["client_id"], secret),
    )


async def test_service_clients_and_suspension_in_keycloak(
    platform: Platform, kc: KeycloakAdapter
) -> None:
    op = await _operator(kc)
    tenant = await _tenant(platform, op)
    issuer = kc.issuer_url(tenant["realm"])
    tokens = await browser_login(issuer, tenant["email"], tenant["password"])
    assert tokens is not None
    admin = bearer(tokens["access_token"])
    api = platform.http

    made = await api.post(
        "/v1/service-clients", headers=admin, json={"client_id": "svc-kc", "roles": ["member"]}
    )
    assert made.status_code == 201, made.text
    created = made.json()
    assert created["token_url"] == issuer + "/protocol/openid-connect/token"
    secret = created["secret"]

    async with httpx.AsyncClient(timeout=30) as kc_http:
        got = await _grant(kc_http, created, secret)
        assert got.status_code == 200, got.text
        first = got.json()["access_token"]
        me = (await api.get("/v1/me", headers=bearer(first))).json()
        assert (me["is_service"], me["client_id"]) == (True, "svc-kc")
        assert me["tenant_id"] == tenant["id"]
        assert "member" in me["roles"]

        assert (await api.post("/v1/service-clients/svc-kc/disable", headers=admin)).is_success
        assert (await api.get("/v1/me", headers=bearer(first))).status_code == 401
        assert (await _grant(kc_http, created, secret)).status_code != 200
        assert (await api.post("/v1/service-clients/svc-kc/enable", headers=admin)).is_success
        second = (await _grant(kc_http, created, secret)).json()["access_token"]
        assert (await api.get("/v1/me", headers=bearer(second))).status_code == 200

        rotated = await api.post("/v1/service-clients/svc-kc/rotate-secret", headers=admin)
        new_secret = rotated.json()["secret"]
        assert (await _grant(kc_http, created, secret)).status_code != 200
        assert (await api.get("/v1/me", headers=bearer(second))).status_code == 401
        third = (await _grant(kc_http, created, new_secret)).json()["access_token"]
        assert (await api.get("/v1/me", headers=bearer(third))).status_code == 200

        # Suspension disables the realm in Keycloak: no sign-in, no grant; back on reactivation.
        suspended = await api.post(f"/v1/tenants/{tenant['id']}/suspend", headers=op)
        assert suspended.json()["state"] == "suspended"
        _, challenge = pkce_pair()
        auth = await kc_http.get(
            issuer + "/protocol/openid-connect/auth",
            params={"client_id": "plexica-web", "response_type": "code", "scope": "openid",
                    "redirect_uri": REDIRECT_URI, "code_challenge": challenge,
                    "code_challenge_method": "S256"},
        )  # fmt: skip
        assert auth.status_code >= 400
        assert (await _grant(kc_http, created, new_secret)).status_code != 200
        refused = await api.get("/v1/tenant", headers=bearer(third))
        assert refused.json()["error"]["code"] == "tenant_suspended"
        reactivated = await api.post(f"/v1/tenants/{tenant['id']}/reactivate", headers=op)
        assert reactivated.json()["state"] == "active"
        again = await browser_login(issuer, tenant["email"], tenant["password"])
        assert again is not None
        assert (await api.get("/v1/tenant", headers=bearer(again["access_token"]))).is_success

        revoked = await api.delete("/v1/service-clients/svc-kc", headers=admin)
        assert revoked.json()["state"] == "revoked"
        assert (await api.get("/v1/me", headers=bearer(third))).status_code == 401
        assert (await _grant(kc_http, created, new_secret)).status_code != 200
    entries = (await api.get("/v1/audit", headers=admin, params={"limit": 50})).json()["items"]
    assert {e["action"] for e in entries} >= {
        "identity.service_client.created",
        "identity.service_client.disabled",
        "identity.service_client.enabled",
        "identity.service_client.secret_rotated",
        "identity.service_client.revoked",
    }
