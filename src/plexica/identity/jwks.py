"""The production ``IssuerResolver``: accepted issuers from the realm registry, keys over HTTP.

Keys come from each issuer's JWKS endpoint (``<issuer>/protocol/openid-connect/certs``), the same
for the built-in provider and Keycloak. Both caches are bounded in time: a token with an unknown
``kid`` triggers at most one JWKS fetch per issuer per ``refetch_interval``. Keys count as fetched
only once a fetch has succeeded; concurrent callers share one fetch in flight (single-flight) and
a failed fetch is retried after ``retry_interval`` at the earliest (ADR 0145). An unknown issuer
is looked up by primary key (so a tenant created a moment ago is accepted at once), remembered as
unknown for ``refetch_interval``, and such look-ups are capped per second, so forged tokens cannot
make the verifier hammer the database or the provider.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx
import structlog

from plexica.identity import repository, service
from plexica.identity.jwt import Issuer, JwtVerifier
from plexica.identity.keys import public_key_from_jwk
from plexica.kit.db import Database
from plexica.kit.provisioning import REALM_PREFIX
from plexica.plugins import service as plugins_service
from plexica_sdk.auth import RevocationCheck, fetch_jwks
from plexica_sdk.cache import TtlCache

log = structlog.get_logger("plexica.identity.jwks")
_REALM_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
# A JWK's members that describe a public key (RFC 7517, 7518): nothing else is passed on.
_PUBLIC_MEMBERS = frozenset(
    {"kty", "kid", "use", "alg", "n", "e", "crv", "x", "y", "x5c", "x5t", "x5t#S256"}
)


@dataclass
class _Keys:
    keys: dict[str, Any] = field(default_factory=dict)
    jwks: list[dict[str, Any]] = field(default_factory=list)  # as published, public parts
    fetched_at: float = float("-inf")  # of the last successful fetch
    failed_at: float = float("-inf")
    inflight: asyncio.Future[None] | None = None


class RealmIssuers:
    def __init__(
        self,
        db: Database,
        base_url: str,
        http: httpx.AsyncClient,
        *,
        realms_ttl: float = 30.0,
        keys_ttl: float = 3600.0,
        refetch_interval: float = 5.0,
        retry_interval: float = 1.0,
        fetch_timeout: float = 3.0,
        misses_per_second: int = 50,
        keys_url: str | None = None,
    ) -> None:
        """``keys_url``: where the realms' keys are fetched from when that is not where their
        issuers live (Keycloak's internal address beside its public one)."""
        self.db = db
        self.prefix = base_url.rstrip("/") + "/realms/"
        self.keys_prefix = (keys_url or base_url).rstrip("/") + "/realms/"
        self.http = http
        self.realms_ttl = realms_ttl
        self.keys_ttl = keys_ttl
        self.refetch_interval = refetch_interval
        self.retry_interval = retry_interval
        self.fetch_timeout = fetch_timeout
        self._issuers: dict[str, Issuer] = {}
        self._realms_at = float("-inf")
        self._keys: dict[str, _Keys] = {}
        self._lock = asyncio.Lock()
        self._unknown: dict[str, float] = {}
        self.misses_per_second = misses_per_second
        self._budget = misses_per_second
        self._budget_at = float("-inf")

    async def issuer(self, url: str) -> Issuer | None:
        if not url.startswith(self.prefix):
            return None
        age = time.monotonic() - self._realms_at
        if age > self.realms_ttl:
            await self._load_realms()
        found = self._issuers.get(url)
        if found is None:
            found = await self._lookup(url)
        return found

    async def _lookup(self, url: str) -> Issuer | None:
        now = time.monotonic()
        if not _REALM_NAME.fullmatch(url.removeprefix(self.prefix)):
            return None
        if self._unknown.get(url, float("-inf")) > now - self.refetch_interval:
            return None
        if now - self._budget_at >= 1.0:
            self._budget_at, self._budget = now, self.misses_per_second
        if self._budget <= 0:
            return None
        self._budget -= 1
        async with self.db.session() as session:
            row = await repository.get_realm(session, url.removeprefix(self.prefix))
        if row is None:
            if len(self._unknown) > 10_000:
                self._unknown.clear()
            self._unknown[url] = now
            return None
        issuer = _issuer(url, row["name"], row["tenant_id"])
        self._issuers[url] = issuer
        return issuer

    async def _load_realms(self) -> None:
        async with self._lock:
            if time.monotonic() - self._realms_at < 0.05:
                return  # another task just loaded them
            async with self.db.session() as session:
                rows = await repository.list_realms(session)
            self._issuers = {
                self.prefix + r["name"]: _issuer(self.prefix + r["name"], r["name"], r["tenant_id"])
                for r in rows
            }
            self._realms_at = time.monotonic()
            self._unknown.clear()

    async def key(self, issuer: Issuer, kid: str) -> Any | None:
        entry = self._keys.setdefault(issuer.url, _Keys())
        now = time.monotonic()
        age = now - entry.fetched_at
        stale = age > self.keys_ttl or (kid not in entry.keys and age > self.refetch_interval)
        if stale and (entry.inflight is not None or now - entry.failed_at > self.retry_interval):
            await self._fetch(issuer.url, entry)
        return entry.keys.get(kid)

    async def published(self, realm: str) -> list[dict[str, Any]] | None:
        """A platform realm's public keys as its provider publishes them, for plugins that
        take them from the core and never reach the provider (ADR 0252): fetched again at
        most once per ``refetch_interval``, so a new key is there as soon as tokens use it.
        None for a realm that is not the platform's."""
        found = await self.issuer(self.prefix + realm)
        if found is None:
            return None
        entry = self._keys.setdefault(found.url, _Keys())
        now = time.monotonic()
        stale = now - entry.fetched_at > self.refetch_interval
        if stale and (entry.inflight is not None or now - entry.failed_at > self.retry_interval):
            await self._fetch(found.url, entry)
        return entry.jwks

    async def _fetch(self, url: str, entry: _Keys) -> None:
        """One fetch per issuer at a time: later callers wait for the one in flight."""
        if entry.inflight is None:
            entry.inflight = asyncio.ensure_future(self._fetch_once(url, entry))
            entry.inflight.add_done_callback(lambda _: setattr(entry, "inflight", None))
        # Shielded: a caller that gives up must not cancel the others' fetch.
        await asyncio.shield(entry.inflight)

    async def _fetch_once(self, url: str, entry: _Keys) -> None:
        try:
            realm = url.removeprefix(self.prefix)
            body = await fetch_jwks(
                self.http,
                f"{self.keys_prefix}{realm}/protocol/openid-connect/certs",
                self.fetch_timeout,
            )
        except (httpx.HTTPError, ValueError) as exc:
            # Keep the keys we have: a provider blip must not log every user out.
            entry.failed_at = time.monotonic()
            log.warning("jwks_fetch_failed", issuer=url, error=str(exc))
            return
        keys: dict[str, Any] = {}
        published = []
        for jwk in body.get("keys", []) if isinstance(body, dict) else []:
            if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str):
                public = public_key_from_jwk(jwk)
                if public is not None:
                    keys[jwk["kid"]] = public
                    published.append({k: v for k, v in jwk.items() if k in _PUBLIC_MEMBERS})
        entry.keys, entry.jwks = keys, published
        entry.fetched_at = time.monotonic()


def _issuer(url: str, realm: str, tenant_id: UUID | None) -> Issuer:
    slug = realm.removeprefix(REALM_PREFIX) if tenant_id is not None else None
    return Issuer(url, tenant_id, slug)


class CachedPermissions:
    """``PermissionResolver`` over the role_permissions table, cached per (tenant, roles)."""

    def __init__(self, db: Database, ttl: float = 10.0) -> None:
        self.db = db
        self._kept: TtlCache[tuple[UUID | None, frozenset[str]], frozenset[str]] = TtlCache(ttl)

    async def __call__(self, tenant_id: UUID | None, roles: frozenset[str]) -> frozenset[str]:
        return await self._kept.get_or_load(
            (tenant_id, roles), lambda: self._load(tenant_id, roles)
        )

    async def _load(self, tenant_id: UUID | None, roles: frozenset[str]) -> frozenset[str]:
        async with self.db.session() as session:
            # Role grants of the tenant, plus what its active plugins give those roles.
            return await service.resolve_permissions(
                session, tenant_id, roles
            ) | await plugins_service.permissions_for(session, tenant_id, roles)

    def invalidate(self) -> None:
        self._kept.clear()


def build_verifier(
    db: Database,
    base_url: str,
    http: httpx.AsyncClient,
    *,
    refetch_interval: float = 5.0,
    revocations: RevocationCheck | None = None,
    keys_url: str | None = None,
) -> JwtVerifier:
    resolver = RealmIssuers(
        db, base_url, http, refetch_interval=refetch_interval, keys_url=keys_url
    )
    return JwtVerifier(
        resolver, service.AUDIENCE, permissions=CachedPermissions(db), revocations=revocations
    )
