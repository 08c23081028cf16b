"""JwtVerifier against real RS256 tokens: the attacks of the identity issue."""

import base64
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from plexica_sdk.auth import CachingVerifier
from plexica_sdk.context import Principal
from plexica_sdk.errors import UnauthenticatedError
from tests.support.tokens import AUDIENCE, BASE, OPERATOR_REALM, StaticIssuers

issuers = StaticIssuers()
verifier = issuers.verifier()


async def test_valid_operator_token() -> None:
    p = await verifier.verify(issuers.token(roles=["super_admin"], email="op@example.com"))
    assert p.is_operator
    assert p.email == "op@example.com"
    assert p.tenant_id is None


async def test_the_act_claim_names_both_identities() -> None:
    """A plugin's verifier (the SDK's) reads RFC 8693's ``act``: the audit actor names both."""
    tenant = issuers.add_tenant(uuid.uuid4(), "acme")
    token = issuers.token(
        tenant.url.rsplit("/", 1)[1], email="ada@acme.example", roles=["member"],
        act={"sub": "op-1", "email": "ops@platform.example"},
    )  # fmt: skip
    p = await verifier.verify(token)
    assert p.acting_operator == "ops@platform.example"
    assert p.actor == "ops@platform.example as ada@acme.example"
    assert (await verifier.verify(issuers.token(act={"sub": "op-2"}))).acting_operator == "op-2"
    odd_acts: list[object] = ["ops", [], {"email": 3}]
    for odd in odd_acts:
        assert (await verifier.verify(issuers.token(act=odd))).acting_operator is None


def _b64(obj: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _claims() -> dict[str, object]:
    now = int(time.time())
    return {
        "iss": f"{BASE}/{OPERATOR_REALM}",
        "sub": "x",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 60,
    }


def _forged_tokens() -> dict[str, str]:
    good = issuers.token()
    head, _, sig = good.split(".")
    public_pem = issuers.signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib
    import hmac

    hs_head = _b64({"alg": "HS256", "kid": issuers.kid, "typ": "JWT"})
    hs_body = _b64(_claims())
    hs_sig = (
        base64.urlsafe_b64encode(
            hmac.new(public_pem, f"{hs_head}.{hs_body}".encode(), hashlib.sha256).digest()
        )
        .rstrip(b"=")
        .decode()
    )
    return {
        "expired": issuers.token(ttl=-3600),
        "tampered": f"{head}.{_b64({**_claims(), 'sub': 'someone-else'})}.{sig}",
        "wrong_audience": issuers.token(aud="another-api"),
        "alg_none": f"{_b64({'alg': 'none', 'kid': issuers.kid})}.{_b64(_claims())}.",
        "hs256_with_public_key": f"{hs_head}.{hs_body}.{hs_sig}",
        "unknown_issuer": issuers.token(realm="plexica-nobody"),
        "unknown_kid": jwt.encode(_claims(), issuers.signing_key, "RS256", headers={"kid": "nope"}),
        "oversized": issuers.token(padding="x" * 10_000),
        "garbage": "not.a.token",
        "operator_with_tenant_claim": issuers.token(
            tenant_id="00000000-0000-0000-0000-000000000001"
        ),
    }


@pytest.mark.parametrize("name", list(_forged_tokens()))
async def test_bad_tokens_are_refused_alike(name: str) -> None:
    with pytest.raises(UnauthenticatedError) as exc:
        await verifier.verify(_forged_tokens()[name])
    assert exc.value.message == "invalid token"


class _Counting:
    def __init__(self) -> None:
        self.calls = 0

    async def verify(self, token: str) -> Principal:
        self.calls += 1
        return await verifier.verify(token)


async def test_caching_verifier_keeps_acceptances_only() -> None:
    inner = _Counting()
    cached = CachingVerifier(inner, ttl=5.0)
    token = issuers.token(roles=["super_admin"])
    first, second = await cached.verify(token), await cached.verify(token)
    assert first == second
    assert first.is_operator
    assert inner.calls == 1
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for _ in range(2):
        with pytest.raises(UnauthenticatedError):
            await cached.verify(forged)
    assert inner.calls == 3


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class _Stub:
    """An inner verifier that accepts every token as ``principal``, counting the calls."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.calls = 0

    async def verify(self, token: str) -> Principal:
        self.calls += 1
        return self.principal


async def test_caching_verifier_never_outlives_the_token_or_its_ttl() -> None:
    clock = _Clock()
    inner = _Stub(Principal(subject="s", issuer="i"))
    cached = CachingVerifier(inner, ttl=60.0, clock=clock)
    brief = CachingVerifier(inner, ttl=0.5, clock=clock)
    short, long = issuers.token(ttl=1), issuers.token(ttl=3600)
    for _ in range(2):
        await cached.verify(short)
        await brief.verify(long)
    assert inner.calls == 2
    clock.now += 1.01  # past the short token's exp, though not the ttl; past the brief ttl
    await cached.verify(short)
    await brief.verify(long)
    assert inner.calls == 4
    expired = issuers.token(ttl=-5)  # never kept
    await cached.verify(expired)
    await cached.verify(expired)
    assert inner.calls == 6


async def test_the_edge_keeps_no_service_token() -> None:
    """A revoked service client's tokens must be refused at once, not after the ttl (ADR 0016)."""
    service = Principal(subject="s", issuer="i", client_id="reports", is_service=True)
    inner = _Stub(service)
    edge = CachingVerifier(inner, ttl=60.0, keep_services=False)
    token = issuers.token(ttl=3600)
    await edge.verify(token)
    await edge.verify(token)
    assert inner.calls == 2
