"""Per-tenant request metrics with bounded cardinality: the busiest tenants by name, the rest
as ``other`` (ADR 0200)."""

from __future__ import annotations

import heapq
import os

from prometheus_client import Counter, Histogram

TOP_TENANTS_ENV = "PLEXICA_METRICS_TOP_TENANTS"
DEFAULT_TOP = 20
OTHER = "other"
NONE = "none"

TENANT_REQUESTS = Counter(
    "plexica_tenant_requests_total",
    "HTTP requests by service, tenant (top N by traffic, else 'other'), route template and status.",
    ["service", "tenant", "route", "status"],
)
# By tenant only, not by route too: route latency is the per-service histogram's job, and
# tenants x routes x buckets would be thousands of series per replica.
TENANT_LATENCY = Histogram(
    "plexica_tenant_request_duration_seconds",
    "HTTP request latency by service and tenant (top N by traffic, else 'other').",
    ["service", "tenant"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5),
)


def top_from_env() -> int:
    raw = os.environ.get(TOP_TENANTS_ENV, "")
    return min(max(int(raw), 1), 1000) if raw.isdigit() else DEFAULT_TOP


class TopTenants:
    """Which tenants get a label of their own: at most ``size`` at a time, chosen by recent
    traffic.

    Free places go to the first tenants seen. Every ``window`` requests the places are given
    again to the busiest tenants, and the counts are halved, so the set follows the traffic of
    the last few windows and a tenant that went quiet makes room. A tenant outside the set is
    ``other``; its requests are still counted, under that label.
    """

    def __init__(self, size: int = DEFAULT_TOP, *, window: int = 2048) -> None:
        self.size = size
        self.window = window
        self._counts: dict[str, int] = {}
        self._top: set[str] = set()
        self._seen = 0

    def label(self, tenant: str | None) -> str:
        if not tenant:
            return NONE
        counts = self._counts
        counts[tenant] = counts.get(tenant, 0) + 1
        self._seen += 1
        if self._seen >= self.window:
            self._rerank()
        if tenant in self._top:
            return tenant
        if len(self._top) < self.size:
            self._top.add(tenant)
            return tenant
        return OTHER

    def known(self, tenant: str | None) -> str:
        """The label of ``tenant`` without counting a request for it."""
        if not tenant:
            return NONE
        return tenant if tenant in self._top else OTHER

    def _rerank(self) -> None:
        counts = self._counts
        self._top = set(heapq.nlargest(self.size, counts, key=counts.__getitem__))
        self._counts = {k: v // 2 for k, v in counts.items() if v > 1}
        self._seen = 0


# One per process: every service of an embedded process shares the same tenant labels.
TOP = TopTenants(top_from_env())


def tenant_label(tenant: str | None) -> str:
    """The label of a request of ``tenant``, counting it."""
    return TOP.label(tenant)


def known_label(tenant: str | None) -> str:
    return TOP.known(tenant)
