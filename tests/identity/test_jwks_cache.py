"""The core's JWKS cache: keys are known only after a successful fetch, concurrent callers share
one fetch, and a failed or slow fetch never turns a valid kid into a spurious refusal."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.identity import jwks
from plexica.identity.jwks import RealmIssuers
from plexica.kit.db import Database
from plexica.plugins import service as plugins_service
from tests.identity.conftest import Live, login, provision, set_password


async def a_real_kid(live: Live, db: Database) -> tuple[str, str]:
    tenant = await provision(db, live)
    password = await set_password(db, tenant.realm, tenant.admin_email)
    async with httpx.AsyncClient(timeout=30) as http:
        token = await login(http, live, tenant.realm, tenant.admin_email, password)
    return live.issuer(tenant.realm), str(jwt.get_unverified_header(token)["kid"])


class Gate:
    """A JWKS endpoint in front of the real one: counts fetches, can fail or hold them."""

    def __init__(self) -> None:
        self.fetches = 0
        self.fail = 0
        self.open = asyncio.Event()
        self.open.set()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        await self.open.wait()
        if self.fail > 0:
            self.fail -= 1
            return httpx.Response(503)
        async with httpx.AsyncClient(timeout=30) as real:
            answer = await real.get(str(request.url))
        body: Any = answer.json()
        return httpx.Response(200, json=body)


async def test_concurrent_callers_share_one_fetch_and_all_get_the_key(
    live: Live, db: Database
) -> None:
    url, kid = await a_real_kid(live, db)
    gate = Gate()
    gate.open.clear()
    async with httpx.AsyncClient(transport=httpx.MockTransport(gate.handle)) as http:
        resolver = RealmIssuers(db, live.url, http)
        issuer = await resolver.issuer(url)
        assert issuer is not None
        callers = [asyncio.create_task(resolver.key(issuer, kid)) for _ in range(20)]
        await asyncio.sleep(0)  # callers that ran wait on the fetch; later ones find it done
        gate.open.set()
        keys = await asyncio.gather(*callers)
    assert all(k is not None for k in keys)
    assert gate.fetches == 1


async def test_a_failed_fetch_does_not_count_as_fetched(live: Live, db: Database) -> None:
    url, kid = await a_real_kid(live, db)
    gate = Gate()
    gate.fail = 1
    async with httpx.AsyncClient(transport=httpx.MockTransport(gate.handle)) as http:
        resolver = RealmIssuers(db, live.url, http, refetch_interval=60, retry_interval=0)
        issuer = await resolver.issuer(url)
        assert issuer is not None
        assert await resolver.key(issuer, kid) is None  # the provider answered 503
        assert await resolver.key(issuer, kid) is not None  # retried, not cached as fetched
        assert await resolver.key(issuer, "forged") is None
    assert gate.fetches == 2  # the forged kid is bounded by refetch_interval


async def test_failures_are_retried_at_a_bounded_rate(live: Live, db: Database) -> None:
    url, kid = await a_real_kid(live, db)
    gate = Gate()
    gate.fail = 100
    async with httpx.AsyncClient(transport=httpx.MockTransport(gate.handle)) as http:
        resolver = RealmIssuers(db, live.url, http, retry_interval=3600)
        issuer = await resolver.issuer(url)
        assert issuer is not None
        for _ in range(10):
            assert await resolver.key(issuer, kid) is None
    assert gate.fetches == 1


async def test_keys_come_from_the_internal_address_of_a_public_issuer(
    live: Live, db: Database
) -> None:
    """Keycloak behind a public name (ADR 0244): tokens name the public issuer, the core fetches
    the realm's keys at the address it reaches Keycloak at."""
    url, kid = await a_real_kid(live, db)
    public = "https://login.example.com"
    async with httpx.AsyncClient(timeout=30) as http:
        resolver = RealmIssuers(db, public, http, keys_url=live.url)
        assert await resolver.issuer(url) is None  # the internal address is no issuer
        issuer = await resolver.issuer(url.replace(live.url, public))
        assert issuer is not None
        assert await resolver.key(issuer, kid) is not None


async def test_concurrent_permission_misses_share_one_lookup(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20: when a tenant's cached permissions expire under load, the requests that miss
    at once wait for one lookup instead of each running it; an invalidation is not joined."""
    calls = 0
    real = plugins_service.permissions_for

    async def counted(
        session: AsyncSession, tenant_id: uuid.UUID | None, roles: frozenset[str]
    ) -> frozenset[str]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)  # a lookup long enough for the others to arrive meanwhile
        return await real(session, tenant_id, roles)

    monkeypatch.setattr(plugins_service, "permissions_for", counted)
    permissions = jwks.CachedPermissions(db)
    tenant, roles = uuid.uuid4(), frozenset({"tenant_admin"})
    answers = await asyncio.gather(*(permissions(tenant, roles) for _ in range(20)))
    assert calls == 1
    assert len(set(answers)) == 1
    await permissions(tenant, roles)
    assert calls == 1  # cached
    permissions.invalidate()
    await permissions(tenant, roles)
    assert calls == 2
