"""The tenant of a request from its host name: ``<slug>.<PLEXICA_WEB_BASE_DOMAIN>`` (ADR 0092)."""

from __future__ import annotations

import re

import httpx
from fastapi import Request

from plexica.settings import Settings
from plexica.tenants.schemas import RESERVED_SLUGS
from plexica_sdk.cache import TtlCache

SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")
# The apex's usual alias; "www" is a reserved slug, so no tenant can own it.
APEX_ALIASES = frozenset({"www"})
FOUND_TTL = 60.0
MISSING_TTL = 5.0


class TenantHosts:
    def __init__(self, settings: Settings, http: httpx.AsyncClient, realm_prefix: str) -> None:
        self.settings = settings
        self.base = settings.web_base_domain
        self._http = http
        self._prefix = realm_prefix
        self._known: TtlCache[str, bool] = TtlCache(FOUND_TTL)

    def label_of(self, request: Request) -> str | None:
        """The first label of a ``<label>.<base>`` host, or None on the apex or another host."""
        if self.base is None:
            return None
        host = request.headers.get("host", "").lower().rsplit(":", 1)[0].rstrip(".")
        if not host.endswith("." + self.base):
            return None
        label = host.removesuffix("." + self.base)
        return None if label in APEX_ALIASES else label

    async def exists(self, slug: str) -> bool:
        """Whether the tenant's realm answers its discovery document (the built-in provider and
        Keycloak alike); cached briefly so a page view costs no extra call."""
        # Reserved slugs name no tenant ("platform" would be the operators' realm).
        if not SLUG_RE.match(slug) or "--" in slug or slug in RESERVED_SLUGS:
            return False
        path = f"/realms/{self._prefix}{slug}/.well-known/openid-configuration"

        async def ask() -> bool:
            return (await self._http.get(path)).status_code == 200

        try:
            return await self._known.get_or_load(
                slug, ask, keep=lambda found: FOUND_TTL if found else MISSING_TTL
            )
        except httpx.HTTPError:
            return False

    def callback(self, slug: str | None) -> str | None:
        """The OIDC redirect URI at the tenant's own host (None: the public URL's)."""
        url = self.settings.tenant_web_url(slug) if slug else None
        return f"{url}/auth/callback" if url else None
