"""The plugins' JWKS resolver (``plexica_sdk.auth.JwksIssuerResolver``) against the built-in
provider's real JWKS behind a gate: a failed fetch never turns a valid token into a 401 (ADR
0178), concurrent callers share one fetch, and the keys we had survive a provider blip."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from plexica.kit.db import Database
from plexica_sdk.auth import JwksIssuerResolver, JwtVerifier
from plexica_sdk.errors import UnauthenticatedError, UnavailableError
from tests.identity.conftest import Live, login, provision, set_password
from tests.identity.test_jwks_cache import Gate


async def a_real_token(live: Live, db: Database) -> str:
    tenant = await provision(db, live)
    password = await set_password(db, tenant.realm, tenant.admin_email)
    async with httpx.AsyncClient(timeout=30) as http:
        return await login(http, live, tenant.realm, tenant.admin_email, password)


def resolver(live: Live, gate: Gate, **kwargs: Any) -> JwksIssuerResolver:
    client = httpx.AsyncClient(transport=httpx.MockTransport(gate.handle))
    return JwksIssuerResolver(live.url + "/realms", client=client, **kwargs)


async def test_an_unreachable_jwks_is_503_then_the_token_verifies(live: Live, db: Database) -> None:
    token = await a_real_token(live, db)
    gate = Gate()
    gate.fail = 1
    keys = resolver(live, gate, retry_interval=0)
    verifier = JwtVerifier(keys, "plexica-api")
    try:
        with pytest.raises(UnavailableError) as refused:
            await verifier.verify(token)
        assert refused.value.status == 503
        assert refused.value.headers == {"Retry-After": "1"}
        assert (await verifier.verify(token)).tenant_id is not None  # not cached as fetched
        with pytest.raises(UnauthenticatedError):  # a forged kid is still a refusal
            await verifier.verify(token.replace(token.split(".")[0], _forged_header(token)))
    finally:
        await keys.aclose()
    assert gate.fetches == 2


async def test_the_keys_we_had_survive_a_failed_refresh(live: Live, db: Database) -> None:
    token = await a_real_token(live, db)
    gate = Gate()
    keys = resolver(live, gate, ttl=0, retry_interval=0)
    verifier = JwtVerifier(keys, "plexica-api")
    try:
        await verifier.verify(token)
        gate.fail = 3
        for _ in range(3):  # every call refetches (ttl 0), every fetch fails
            assert (await verifier.verify(token)).tenant_id is not None
    finally:
        await keys.aclose()
    assert gate.fetches == 4


async def test_concurrent_callers_share_one_fetch(live: Live, db: Database) -> None:
    token = await a_real_token(live, db)
    gate = Gate()
    gate.open.clear()
    keys = resolver(live, gate)
    verifier = JwtVerifier(keys, "plexica-api")
    try:
        callers = [asyncio.create_task(verifier.verify(token)) for _ in range(20)]
        await asyncio.sleep(0)
        gate.open.set()
        principals = await asyncio.gather(*callers)
    finally:
        await keys.aclose()
    assert len({p.subject for p in principals}) == 1
    assert gate.fetches == 1


def _forged_header(token: str) -> str:
    import base64
    import json

    import jwt

    header = jwt.get_unverified_header(token) | {"kid": "forged"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
