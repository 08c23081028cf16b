"""The edge's decision: one implementation of the gateway rules for every data plane (ADR 0080).

Traefik calls it through ``GET /v1/gateway/authorize`` (forward auth); the embedded gateway of
``plexica up`` calls ``authorize`` in process. Warm path: the token is checked against cached
keys, the tenant comes from the tenancy cache (invalidated on every replica through Redis), plugin
enablement from a one-second cache, and the rate limit is one Redis round trip (or none).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

from plexica.gateway.ratelimit import REJECTIONS, RateLimiter
from plexica.gateway.schemas import LimitPolicy, Verdict
from plexica.kit.security import TokenVerifier
from plexica.storage.signing import SIGNED_PATH
from plexica.tenants.cache import TenantCache
from plexica.tenants.context import TenantRequiredError, admitted
from plexica_sdk.auth import MAX_TOKEN_BYTES, bearer_challenge, bearer_of
from plexica_sdk.cache import TtlCache
from plexica_sdk.context import Principal
from plexica_sdk.errors import NotFoundError, PlexicaError, UnauthenticatedError
from plexica_sdk.observability import new_id, valid_id
from plexica_sdk.toptenants import known_label

CORE = "/api/core"
PLUGINS = "/api/plugins/"
MAX_URI = 4096
PUBLIC_CORE = frozenset(
    {
        "/api/core/openapi.json", "/api/core/docs", "/api/core/health", "/api/core/v1/info",
        # The invitation's token is the capability (ADR 0225): the invitee has no account yet.
        "/api/core/v1/invites/inspect", "/api/core/v1/invites/accept",
    }
)  # fmt: skip
# A presigned URL carries its own capability (scoped, expiring, tamper-proof signature): no
# bearer is asked for, the core verifies the signature (ADR 0138).
SIGNED_FILES = CORE + SIGNED_PATH
# Event schemas are the events' published contract, fetched by consumers from each event's
# dataschema (ADR 0182).
PUBLIC_CORE_PREFIXES = ("/api/core/v1/events/schemas/",)
PUBLIC_PLUGIN_PATHS = frozenset({"/health"})
# Never through the edge: the decision endpoint itself (a client could probe it).
HIDDEN_CORE_PREFIXES = ("/api/core/v1/gateway/",)
_SLUG = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_BAD_ESCAPES = re.compile(r"%(2f|5c|2e|00|25)", re.IGNORECASE)

ActiveLoader = Callable[[UUID, str], Awaitable[bool]]


class BadPathError(PlexicaError):
    status, code = 400, "bad_path"


def _not_found() -> NotFoundError:
    return NotFoundError("no such route")


@dataclass(frozen=True)
class Route:
    """The route group of a path: ``core``, ``plugin:<slug>`` or None (public web)."""

    group: str | None
    public: bool
    plugin: str | None = None


def classify(uri: str) -> Route:
    """Parse the request target; refuse anything that could be read two ways by two servers."""
    if len(uri) > MAX_URI:
        raise BadPathError("request target too long")
    path = uri.split("?", 1)[0].split("#", 1)[0] or "/"
    if not path.startswith("/") or "\\" in path or "//" in path or _BAD_ESCAPES.search(path):
        raise BadPathError("malformed path")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in path):
        raise BadPathError("malformed path")
    if any(segment in (".", "..") for segment in path.split("/")):
        raise BadPathError("dot segments are not allowed")
    lowered = path.lower()
    if lowered == CORE or lowered.startswith(CORE + "/"):
        if path in PUBLIC_CORE or path == SIGNED_FILES or path.startswith(PUBLIC_CORE_PREFIXES):
            return Route("core", True)
        if not path.startswith(CORE) or path.startswith(HIDDEN_CORE_PREFIXES):
            raise _not_found()
        return Route("core", False)
    if lowered.startswith(PLUGINS):
        slug, _, rest = path[len(PLUGINS) :].partition("/")
        if not _SLUG.match(slug) or not path.startswith(PLUGINS):
            raise _not_found()
        return Route(f"plugin:{slug}", "/" + rest in PUBLIC_PLUGIN_PATHS, slug)
    if lowered.startswith("/api/") or lowered == "/api":
        raise _not_found()
    return Route(None, True)


def trace_id(candidate: str | None) -> str:
    return valid_id(candidate) or new_id()


class PluginActivity:
    """Whether a plugin is active for a tenant; a yes is cached for ``ttl`` seconds, so a
    disabled plugin is refused at the edge within that time on every replica, without a bus."""

    def __init__(self, loader: ActiveLoader, ttl: float = 1.0, max_entries: int = 100_000):
        self.loader = loader
        self._kept: TtlCache[tuple[UUID, str], bool] = TtlCache(ttl, max_entries=max_entries)

    async def is_active(self, tenant_id: UUID, slug: str) -> bool:
        # Only "active" is kept: an install is usable at once, and the rate limit (checked
        # first) bounds the lookups a caller can cause with plugins its tenant lacks.
        return await self._kept.get_or_load(
            (tenant_id, slug),
            lambda: self.loader(tenant_id, slug),
            keep=lambda active: self._kept.ttl if active else 0,
        )


class Gateway:
    def __init__(
        self,
        verifier: TokenVerifier | None,
        tenants: TenantCache,
        plugins: PluginActivity,
        limiter: RateLimiter,
        limits: LimitPolicy,
    ) -> None:
        self.verifier = verifier
        self.tenants = tenants
        self.plugins = plugins
        self.limiter = limiter
        self.limits = limits

    async def authorize(
        self,
        method: str,
        uri: str,
        host: str | None,
        authorization: str | None,
        trace: str | None,
    ) -> Verdict:
        tid = trace_id(trace)
        try:
            return await self._decide(method, uri, authorization, tid)
        except PlexicaError as exc:
            return Verdict(exc, {**(exc.headers or {}), "X-Trace-ID": tid})

    async def _decide(self, method: str, uri: str, authorization: str | None, tid: str) -> Verdict:
        route = classify(uri)
        if route.public or route.group is None:
            return Verdict(None, {"X-Trace-ID": tid})
        principal = await self._principal(authorization)
        headers = {
            "X-Trace-ID": tid,
            "X-User-ID": principal.subject,
            "X-User-Roles": ",".join(sorted(principal.roles)),
            "X-Tenant-ID": "",
            "X-Tenant-Slug": "",
        }
        slug: str | None = None
        if principal.tenant_id is not None:
            tenant = admitted(await self.tenants.get(principal.tenant_id), principal)
            slug = tenant.slug
            headers["X-Tenant-ID"], headers["X-Tenant-Slug"] = str(tenant.id), tenant.slug
        if route.plugin is not None and principal.tenant_id is None:
            raise TenantRequiredError("plugins act in a tenant: use a tenant's token")
        key = f"{principal.tenant_id or '-'}:{principal.subject}:{route.group}"
        decision = await self.limiter.hit(key, self.limits.limit(slug, route.group))
        if not decision.allowed:
            # "plugin", not its slug: the slug is not checked yet, and labels must stay few.
            kind = "core" if route.plugin is None else "plugin"
            REJECTIONS.labels(known_label(slug), kind).inc()
            raise RateLimitedError("rate limit exceeded", headers=decision.headers())
        # The same answer as an unknown route: the edge does not say what a tenant lacks.
        tenant_id, plugin = principal.tenant_id, route.plugin
        if (
            plugin is not None
            and tenant_id is not None
            and not await self.plugins.is_active(tenant_id, plugin)
        ):
            raise _not_found()
        return Verdict(None, {**headers, **decision.headers()})

    async def _principal(self, authorization: str | None) -> Principal:
        token = bearer_of(authorization)
        if token is None or not token.strip():
            raise UnauthenticatedError("a bearer token is required", headers=bearer_challenge())
        if len(token) > MAX_TOKEN_BYTES or self.verifier is None:
            raise UnauthenticatedError("invalid token", headers=bearer_challenge())
        try:
            return await self.verifier.verify(token.strip())
        except UnauthenticatedError as exc:
            raise UnauthenticatedError(exc.message, headers=bearer_challenge()) from exc


class RateLimitedError(PlexicaError):
    status, code = 429, "rate_limited"
