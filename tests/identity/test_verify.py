"""The production verifier: realm registry + JWKS over HTTP; attacks get one same 401 body."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest

from plexica.identity import signing
from plexica.identity.builtin import BuiltinIdentity
from plexica.identity.jwks import RealmIssuers, build_verifier
from plexica.kit.db import Database
from plexica_sdk.errors import UnauthenticatedError
from tests.identity.conftest import Live, bearer, login, provision, set_password


async def _active_key(db: Database, realm: str) -> tuple[str, Any]:
    async with db.session() as session:
        return await signing.signer(session, realm)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _hs256(claims: dict[str, Any], kid: str, secret: bytes) -> str:
    """Signed by hand: PyJWT itself refuses to use a public key as an HMAC secret."""
    signing_input = _b64({"alg": "HS256", "typ": "JWT", "kid": kid}) + "." + _b64(claims)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


async def test_attacks_are_refused_with_one_body(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    a = await provision(db, live)
    b = await provision(db, live)
    password = await set_password(db, a.realm, a.admin_email)
    good = await login(http, live, a.realm, a.admin_email, password)
    assert (await http.get(live.url + "/v1/me", headers=bearer(good))).status_code == 200

    kid, pem = await _active_key(db, a.realm)
    claims = jwt.decode(good, options={"verify_signature": False})
    now = int(time.time())

    def sign(**changes: Any) -> str:
        return jwt.encode({**claims, **changes}, pem, algorithm="RS256", headers={"kid": kid})

    header, _payload, signature = good.split(".")
    forged_payload = _b64({**claims, "realm_access": {"roles": ["super_admin"]}})
    public_jwk = (await http.get(live.issuer(a.realm) + "/protocol/openid-connect/certs")).json()
    attacks = {
        "expired": sign(exp=now - 120, iat=now - 600),
        "wrong audience": sign(aud="someone-else"),
        "tampered": f"{header}.{forged_payload}.{signature}",
        "alg none": _b64({"alg": "none", "kid": kid}) + "." + _b64(claims) + ".",
        "hs256 with the public key": _hs256(claims, kid, json.dumps(public_jwk).encode()),
        # A's key, B's issuer: tenant A's token presented as tenant B's.
        "other tenant's issuer": sign(iss=live.issuer(b.realm), tenant_id=str(b.id)),
        "other tenant's id": sign(tenant_id=str(b.id)),
        "unknown issuer": sign(iss=live.issuer("plexica-nobody")),
        "foreign issuer": sign(iss="http://evil.example/realms/" + a.realm),
        "unknown kid": jwt.encode(claims, pem, algorithm="RS256", headers={"kid": "nope"}),
        "oversized": sign(pad="x" * 9000),
        "garbage": "not-a-token",
    }
    bodies = set()
    for name, token in attacks.items():
        answer = await http.get(live.url + "/v1/me", headers=bearer(token))
        assert answer.status_code == 401, name
        bodies.add(answer.text)
    assert len(bodies) == 1, bodies


async def test_tenant_a_cannot_see_tenant_b(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    a = await provision(db, live)
    b = await provision(db, live)
    token_a = await login(
        http, live, a.realm, a.admin_email, await set_password(db, a.realm, a.admin_email)
    )
    users = (await http.get(live.url + "/v1/users", headers=bearer(token_a))).json()
    assert [u["email"] for u in users] == [a.admin_email]
    b_users = await BuiltinIdentity(db, live.url).list_users(b.realm)
    changed = await http.post(
        live.url + f"/v1/users/{b_users[0].id}/disable", headers=bearer(token_a)
    )
    assert changed.status_code == 404  # B's user does not exist from A's point of view


async def test_key_rotation_keeps_old_tokens_and_fetches_new_kid(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    password = await set_password(db, tenant.realm, tenant.admin_email)
    verifier = build_verifier(db, live.url, http, refetch_interval=0.2)
    old = await login(http, live, tenant.realm, tenant.admin_email, password)
    assert (await verifier.verify(old)).tenant_id == tenant.id

    async with db.session() as session:  # no pre-publication: the new key signs at once
        rotation = await signing.rotate(session, tenant.realm, publish_ahead=timedelta(0))
    new = await login(http, live, tenant.realm, tenant.admin_email, password)
    assert jwt.get_unverified_header(new)["kid"] != jwt.get_unverified_header(old)["kid"]
    await asyncio.sleep(0.25)
    assert (await verifier.verify(new)).tenant_id == tenant.id  # unknown kid: JWKS refetched
    assert (await verifier.verify(old)).tenant_id == tenant.id  # previous key still published

    assert rotation.previous_retire_at is not None
    async with db.session() as session:  # the first key's tokens have all expired by then
        await signing.sweep(session, at=rotation.previous_retire_at)
    fresh = build_verifier(db, live.url, http)  # a verifier that fetches the JWKS from now on
    assert (await fresh.verify(new)).subject
    with pytest.raises(UnauthenticatedError):
        await fresh.verify(old)


async def test_unknown_kid_refetch_is_rate_bounded(live: Live, db: Database) -> None:
    tenant = await provision(db, live)
    fetches = 0

    async def count(request: httpx.Request) -> None:
        nonlocal fetches
        fetches += 1

    async with httpx.AsyncClient(event_hooks={"request": [count]}) as http:
        resolver = RealmIssuers(db, live.url, http, refetch_interval=60)
        issuer = await resolver.issuer(live.issuer(tenant.realm))
        assert issuer is not None
        assert issuer.tenant_slug == tenant.slug
        for i in range(20):
            assert await resolver.key(issuer, f"forged-{i}") is None
    assert fetches == 1


async def test_disabled_realm_is_not_an_issuer(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    password = await set_password(db, tenant.realm, tenant.admin_email)
    token = await login(http, live, tenant.realm, tenant.admin_email, password)
    await BuiltinIdentity(db, live.url).set_realm_enabled(tenant.realm, False)
    verifier = build_verifier(db, live.url, http)
    with pytest.raises(UnauthenticatedError):
        await verifier.verify(token)
