"""The decision checks a token's signature once per token per few seconds, never past its
expiry; refusals are never remembered."""

from __future__ import annotations

from plexica.kit.state import started, state_of
from plexica_sdk.auth import CachingVerifier
from plexica_sdk.context import Principal
from tests.gateway.conftest import Core, forward


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
    cache = started(state_of(core.app).gateway, "gateway").verifier
    assert isinstance(cache, CachingVerifier)
    counting = Counting(cache.inner)
    cache.inner = counting
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
