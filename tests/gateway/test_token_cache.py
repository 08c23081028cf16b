"""The decision checks a token's signature once per token per few seconds, never past its
expiry; refusals are never remembered."""

from __future__ import annotations

import time

from plexica.gateway.service import VerifiedTokens
from plexica_sdk.context import Principal
from tests.gateway.conftest import Core, forward
from tests.support.tokens import StaticIssuers


class Counting:
    """The real verifier, with a count of the calls that reach it."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls = 0

    async def verify(self, token: str) -> Principal:
        self.calls += 1
        principal: Principal = await self.inner.verify(token)  # type: ignore[attr-defined]
        return principal


async def test_a_repeated_token_is_verified_once(core: Core) -> None:
    tenant = await core.tenant()
    gateway = core.app.state.gateway
    counting = Counting(gateway.verifier)
    gateway.verifier = counting
    token, other = core.token(tenant, "u-1"), core.token(tenant, "u-2")
    uri = "/api/core/v1/tenant"
    for _ in range(3):
        r = await core.http.get("/v1/gateway/authorize", headers=forward(uri, token))
        assert r.status_code == 200, r.text
        assert r.headers["X-User-ID"] == "u-1"
    assert counting.calls == 1
    r = await core.http.get("/v1/gateway/authorize", headers=forward(uri, other))
    assert r.headers["X-User-ID"] == "u-2"
    assert counting.calls == 2
    expired = core.issuers.token(f"plexica-{tenant['slug']}", ttl=-120)
    for _ in range(2):
        r = await core.http.get("/v1/gateway/authorize", headers=forward(uri, expired))
        assert r.status_code == 401
    assert counting.calls == 4


def test_an_entry_never_outlives_the_token_or_the_ttl(issuers: StaticIssuers) -> None:
    principal = Principal(subject="s", issuer="i")
    short = issuers.token(ttl=1)
    long = issuers.token(ttl=3600)
    tokens = VerifiedTokens(ttl=60)
    tokens.put(short, principal)
    assert tokens.get(short) == principal
    brief = VerifiedTokens(ttl=0.2)
    brief.put(long, principal)
    assert brief.get(long) == principal
    time.sleep(1.05)
    assert tokens.get(short) is None  # its exp passed, though the ttl had not
    assert brief.get(long) is None
    tokens.put(issuers.token(ttl=-5), principal)
    tokens.put("not.a-token", principal)
    assert len(tokens) == 0


def test_service_tokens_are_never_kept(issuers: StaticIssuers) -> None:
    """A revoked service client's tokens must be refused at once, not after the cache's ttl."""
    tokens = VerifiedTokens(ttl=60)
    token = issuers.token(ttl=3600)
    tokens.put(token, Principal(subject="s", issuer="i", client_id="reports", is_service=True))
    assert tokens.get(token) is None
