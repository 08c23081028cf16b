"""What the edge decided about one request, and the limits it applies."""

from __future__ import annotations

from dataclasses import dataclass, field

from plexica.gateway.ratelimit import Limit
from plexica_sdk.errors import PlexicaError

# Headers the edge sets for upstream services; a client's copy of them never passes.
UPSTREAM_HEADERS = ("X-Tenant-ID", "X-Tenant-Slug", "X-User-ID", "X-User-Roles", "X-Trace-ID")
# The decision's limits on an allowed request, passed to the service, which answers them back to
# the client (Traefik's forwardAuth cannot add them to the response itself: ADR 0048).
RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


@dataclass(frozen=True)
class Verdict:
    """200 with ``headers`` for upstream, or the refusal (``error``) with ``headers`` for the
    client (``WWW-Authenticate``, ``RateLimit-*``, ``Retry-After``)."""

    error: PlexicaError | None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.error is None

    @property
    def status(self) -> int:
        return 200 if self.error is None else self.error.status


@dataclass(frozen=True)
class LimitPolicy:
    """Requests per minute per tenant+user+route group. The most specific rule wins:
    ``tenant:<slug>/plugin:<id>``, then ``plugin:<id>``, then ``tenant:<slug>``, then default."""

    default: int = 100
    rules: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, default: int, text: str | None) -> LimitPolicy:
        rules: dict[str, int] = {}
        for item in (text or "").split(","):
            key, sep, value = item.strip().partition("=")
            if not item.strip():
                continue
            if not sep or not value.strip().isdigit() or int(value) < 1:
                raise ValueError(f"bad rate limit rule {item.strip()!r}: want key=requests")
            rules[key.strip()] = int(value)
        return cls(default, rules)

    def limit(self, tenant_slug: str | None, group: str) -> Limit:
        candidates = [f"tenant:{tenant_slug}/{group}", group, f"tenant:{tenant_slug}"]
        for key in candidates if tenant_slug else [group]:
            if key in self.rules:
                return Limit(self.rules[key], 60.0)
        return Limit(self.default, 60.0)
