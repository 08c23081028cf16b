"""Access-token verification shared by the core, the gateway decision and every plugin.

RS256 only (``alg: none`` and HS256-with-a-public-key are refused by construction). Which issuers
are accepted, and with which keys, is decided by an ``IssuerResolver``: the identity domain's
resolver knows the tenant realms; a plugin uses ``JwksIssuerResolver``, which trusts the realms
under one configured base URL and fetches their JWKS; tests may resolve a static key.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

import httpx
import jwt
from jwt.algorithms import RSAAlgorithm

from plexica_sdk.cache import TtlCache
from plexica_sdk.context import Principal
from plexica_sdk.errors import UnauthenticatedError, UnavailableError
from plexica_sdk.revocation import Refusal, Stamp, TenantSuspendedError

ALGORITHMS = ["RS256"]
INVALID = "invalid token"
MAX_TOKEN_BYTES = 8192
OPERATOR_REALM = "plexica-platform"
TENANT_REALM_PREFIX = "plexica-"


def bearer_of(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header as sent; None without one."""
    scheme, _, token = (authorization or "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def bearer_challenge() -> dict[str, str]:
    """The header a 401 for a missing or refused bearer token carries."""
    return {"WWW-Authenticate": 'Bearer realm="plexica"'}


@dataclass(frozen=True)
class Issuer:
    """An accepted issuer: the operator realm (tenant None, slug None) or one tenant's realm.

    A tenant realm known only by its slug (``tenant_id`` None) takes the tenant id from the
    token's ``tenant_id`` claim, which its own keys signed."""

    url: str
    tenant_id: UUID | None
    tenant_slug: str | None
    keys: Mapping[str, Any] = field(default_factory=dict)  # kid -> public key


class IssuerResolver(Protocol):
    async def issuer(self, url: str) -> Issuer | None:
        """The issuer at ``url`` if it is one of ours, else None."""
        ...

    async def key(self, issuer: Issuer, kid: str) -> Any | None:
        """The public key ``kid`` of ``issuer`` (may refetch the JWKS once); None if unknown."""
        ...


PermissionResolver = Callable[[UUID | None, frozenset[str]], Awaitable[frozenset[str]]]


class RevocationCheck(Protocol):
    def check(self, stamp: Stamp) -> Refusal | None:
        """Whether the verified token ``stamp`` describes is revoked (or its realm suspended).

        Called on every verification, cached or not: it must answer from memory."""
        ...


def refuse(reason: Refusal | None) -> None:
    """Raise what a refused token gets: 401 like any invalid token, 403 for a suspended tenant."""
    if reason == "suspended":
        raise TenantSuspendedError("this tenant is suspended")
    if reason is not None:
        raise UnauthenticatedError(INVALID)


async def _no_permissions(_: UUID | None, __: frozenset[str]) -> frozenset[str]:
    return frozenset()


class TokenVerifierLike(Protocol):
    async def verify(self, token: str) -> Principal: ...


class JwtVerifier:
    def __init__(
        self,
        resolver: IssuerResolver,
        audience: str,
        *,
        leeway_seconds: int = 30,
        permissions: PermissionResolver = _no_permissions,
        revocations: RevocationCheck | None = None,
    ) -> None:
        self.resolver = resolver
        self.audience = audience
        self.leeway = leeway_seconds
        self.permissions = permissions
        self.revocations = revocations

    async def verify(self, token: str) -> Principal:
        # Every failure gives the same answer: nothing tells a caller which check failed.
        if len(token) > MAX_TOKEN_BYTES:
            raise UnauthenticatedError(INVALID)
        # Only to find the issuer and key; jwt.decode below checks everything, strictly.
        header, unverified = _unverified(token)
        if header.get("alg") not in ALGORITHMS or not isinstance(header.get("kid"), str):
            raise UnauthenticatedError(INVALID)
        iss = unverified.get("iss")
        issuer = await self.resolver.issuer(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise UnauthenticatedError(INVALID)
        key = await self.resolver.key(issuer, header["kid"])
        if key is None:
            raise UnauthenticatedError(INVALID)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=issuer.url,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "sub", "aud"]},
            )
        except jwt.PyJWTError:
            raise UnauthenticatedError(INVALID) from None
        if self.revocations is not None:
            refuse(self.revocations.check(Stamp.of(issuer.url, claims)))
        return await self._principal(issuer, claims)

    async def _principal(self, issuer: Issuer, claims: dict[str, Any]) -> Principal:
        claimed = claims.get("tenant_id")
        tenant_id = issuer.tenant_id
        if issuer.tenant_slug is None:
            if claimed is not None:
                raise UnauthenticatedError(INVALID)
        elif tenant_id is None:
            tenant_id = _uuid(claimed)
        elif claimed is not None and str(claimed) != str(tenant_id):
            raise UnauthenticatedError(INVALID)
        roles = frozenset(_roles(claims))
        return Principal(
            subject=str(claims["sub"]),
            issuer=issuer.url,
            tenant_id=tenant_id,
            tenant_slug=issuer.tenant_slug,
            email=claims.get("email"),
            roles=roles,
            permissions=await self.permissions(tenant_id, roles),
            client_id=claims.get("azp"),
            is_service=bool(claims.get("service", False)),
            session_id=_opt_str(claims.get("sid")),
            acting_operator=_actor(claims.get("act")),
        )


_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")


def _segment(segment: str) -> dict[str, Any]:
    if not _SEGMENT_RE.match(segment):
        raise UnauthenticatedError(INVALID)
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        raise UnauthenticatedError(INVALID) from None
    if not isinstance(value, dict):
        raise UnauthenticatedError(INVALID)
    return value


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload of a compact JWS, not verified (one light parse: PyJWT's unverified
    decode is a second full pass over the token)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise UnauthenticatedError(INVALID)
    return _segment(parts[0]), _segment(parts[1])


class CachingVerifier:
    """Remembers the principal of a token ``inner`` accepted for ``ttl`` seconds, never past
    the token's ``exp`` (ADR 0087). A client repeats its token on every request, so the signature
    check runs once per token per ``ttl``; refusals are not kept (checked every time), and every
    answer, remembered or not, is checked against ``revocations`` (ADR 0115). The edge keeps no
    service token (``keep_services=False``): revoking its client refuses it at once (ADR 0016)."""

    def __init__(
        self,
        inner: TokenVerifierLike,
        *,
        ttl: float = 5.0,
        max_entries: int = 10_000,
        revocations: RevocationCheck | None = None,
        keep_services: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inner = inner
        self.revocations = revocations
        self.keep_services = keep_services
        self.clock = clock
        # On the wall clock: a token's exp is a wall-clock time.
        self._kept: TtlCache[str, tuple[Principal, Stamp]] = TtlCache(
            ttl, max_entries=max_entries, clock=clock
        )

    async def verify(self, token: str) -> Principal:
        hit = self._kept.get(token)
        if hit is not None:
            if self.revocations is not None:
                refuse(self.revocations.check(hit[1]))
            return hit[0]
        principal = await self.inner.verify(token)
        claims = _unverified(token)[1]  # signed: inner has just accepted it
        stamp = Stamp.of(principal.issuer, claims)
        if self.revocations is not None:
            refuse(self.revocations.check(stamp))
        exp = claims.get("exp")
        if (
            isinstance(exp, int | float)
            and not isinstance(exp, bool)
            and (self.keep_services or not principal.is_service)
        ):
            self._kept.put(token, (principal, stamp), min(self._kept.ttl, exp - self.clock()))
        return principal


def _uuid(value: object) -> UUID:
    try:
        return UUID(str(value))
    except ValueError:
        raise UnauthenticatedError(INVALID) from None


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _actor(act: object) -> str | None:
    """Who ``act`` (RFC 8693 §4.1) names: the acting party's e-mail, else its subject."""
    if not isinstance(act, dict):
        return None
    return _opt_str(act.get("email")) or _opt_str(act.get("sub"))


def _roles(claims: dict[str, Any]) -> list[str]:
    """Roles from Keycloak's ``realm_access.roles`` or a flat ``roles`` claim."""
    realm_access = claims.get("realm_access")
    roles = realm_access.get("roles", []) if isinstance(realm_access, dict) else []
    flat = claims.get("roles", [])
    return [r for r in [*roles, *(flat if isinstance(flat, list) else [])] if isinstance(r, str)]


_SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")


@dataclass
class _Keys:
    keys: dict[str, Any] = field(default_factory=dict)
    fetched_at: float = float("-inf")  # of the last successful fetch
    failed_at: float = float("-inf")  # of the last failed one
    inflight: asyncio.Future[None] | None = None


class JwksIssuerResolver:
    """Trusts the realms ``<base_url>/<realm>`` (Keycloak layout): ``plexica-platform`` is the
    operator realm, ``plexica-<slug>`` a tenant's. Keys come from the realm's JWKS, cached for
    ``ttl`` seconds and refetched (at most every ``min_refresh`` seconds) on an unknown ``kid``.

    As the core's resolver (ADR 0145): keys count as fetched only once a fetch has succeeded, a
    failed fetch keeps the keys we had and is retried after ``retry_interval`` at the earliest,
    and concurrent callers share the fetch in flight. A ``kid`` we cannot check because the
    JWKS cannot be fetched is ``UnavailableError`` (503), not a refusal (ADR 0178)."""

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.AsyncClient | None = None,
        ttl: float = 300.0,
        min_refresh: float = 10.0,
        retry_interval: float = 1.0,
        fetch_timeout: float = 3.0,
        keys_url: str | None = None,
    ) -> None:
        """``keys_url``: where the realms' keys are fetched when that is not where their
        issuers live (Keycloak's internal address beside its public one, ADR 0244)."""
        self.base_url = base_url.rstrip("/")
        self.keys_url = (keys_url or base_url).rstrip("/")
        self.client = client or httpx.AsyncClient(timeout=fetch_timeout)
        self.ttl = ttl
        self.min_refresh = min_refresh
        self.retry_interval = retry_interval
        self.fetch_timeout = fetch_timeout
        self._keys: dict[str, _Keys] = {}

    async def issuer(self, url: str) -> Issuer | None:
        prefix = self.base_url + "/"
        if not url.startswith(prefix):
            return None
        realm = url[len(prefix) :]
        if realm == OPERATOR_REALM:
            return Issuer(url, None, None)
        slug = realm.removeprefix(TENANT_REALM_PREFIX)
        if slug == realm or not _SLUG_RE.match(slug):
            return None
        return Issuer(url, None, slug)

    async def key(self, issuer: Issuer, kid: str) -> Any | None:
        entry = self._keys.setdefault(issuer.url, _Keys())
        now = time.monotonic()
        age = now - entry.fetched_at
        stale = age > self.ttl or (kid not in entry.keys and age > self.min_refresh)
        if stale and (entry.inflight is not None or now - entry.failed_at > self.retry_interval):
            await self._fetch(issuer.url, entry)
        key = entry.keys.get(kid)
        if key is None and entry.failed_at > entry.fetched_at:
            raise UnavailableError(
                "the token's signing keys cannot be fetched now", headers={"Retry-After": "1"}
            )
        return key

    async def _fetch(self, url: str, entry: _Keys) -> None:
        if entry.inflight is None:
            entry.inflight = asyncio.ensure_future(self._fetch_once(url, entry))
            entry.inflight.add_done_callback(lambda _: setattr(entry, "inflight", None))
        # Shielded: a caller that gives up must not cancel the others' fetch.
        await asyncio.shield(entry.inflight)

    async def _fetch_once(self, issuer_url: str, entry: _Keys) -> None:
        try:
            realm = issuer_url.removeprefix(self.base_url)
            jwks = await fetch_jwks(
                self.client,
                f"{self.keys_url}{realm}/protocol/openid-connect/certs",
                self.fetch_timeout,
            )
        except (httpx.HTTPError, ValueError):
            entry.failed_at = time.monotonic()
            return
        keys: dict[str, Any] = {}
        for jwk in jwks.get("keys", []) if isinstance(jwks, dict) else []:
            kid = jwk.get("kid") if isinstance(jwk, dict) else None
            if isinstance(kid, str) and jwk.get("kty") == "RSA":
                keys[kid] = RSAAlgorithm.from_jwk(json.dumps(jwk))
        entry.keys, entry.fetched_at = keys, time.monotonic()

    async def aclose(self) -> None:
        await self.client.aclose()


async def fetch_jwks(client: httpx.AsyncClient, url: str, seconds: float) -> Any:
    """A JWKS document (parsed JSON). Asked a second time when the first answer is a connection
    the server had already closed (a pooled keep-alive connection it dropped as it was reused):
    a GET is safe to repeat, and that race must not cost every user their sign-in."""
    try:
        response = await client.get(url, timeout=seconds)
    except httpx.RemoteProtocolError:
        response = await client.get(url, timeout=seconds)
    response.raise_for_status()
    return response.json()
