"""Tenant health for operators (ADR 0205): per tenant requests, errors and P95 from the
services' own per-tenant metrics (ADR 0200), storage, events and last sign-in from the
database."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import httpx
from prometheus_client import REGISTRY, Metric
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.events import service as events
from plexica.identity import service as identity
from plexica.storage import service as storage
from plexica.tenants import service as tenants
from plexica.tenants.schemas import FleetHealth, TenantHealth
from plexica_sdk.toptenants import NONE, OTHER

REQUESTS = "plexica_tenant_requests_total"
BUCKETS = "plexica_tenant_request_duration_seconds_bucket"
# The embedded edge counts every request that a service behind it counts again.
NOT_COUNTED = {"gateway"}
EVENTS_WINDOW = 24 * 3600
# A plugin that does not answer in time is named on the page, not waited for.
SCRAPE_SECONDS = 2.0


@dataclass
class Traffic:
    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)

    def p95(self) -> float | None:
        return quantile(0.95, self.buckets)


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus's ``histogram_quantile`` over cumulative bucket counts: linear within the
    bucket that holds the rank; the largest finite bound when the rank is in ``+Inf``."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def traffic_by_tenant(families: Iterable[Metric]) -> dict[str, Traffic]:
    out: dict[str, Traffic] = {}
    for family in families:
        for sample in family.samples:
            labels = sample.labels
            tenant = labels.get("tenant")
            if not tenant or tenant in (NONE, OTHER) or labels.get("service") in NOT_COUNTED:
                continue
            if sample.name == REQUESTS:
                found = out.setdefault(tenant, Traffic())
                found.requests += sample.value
                if labels.get("status", "").startswith("5"):
                    found.errors += sample.value
            elif sample.name == BUCKETS:
                found = out.setdefault(tenant, Traffic())
                bound = float(labels["le"])
                found.buckets[bound] = found.buckets.get(bound, 0.0) + sample.value
    return out


def services(families: Iterable[Metric]) -> list[str]:
    """The services that counted tenant requests."""
    seen = {
        sample.labels["service"]
        for family in families
        for sample in family.samples
        if sample.name == REQUESTS and "service" in sample.labels
    }
    return sorted(seen - NOT_COUNTED)


async def scrape(urls: Mapping[str, str]) -> tuple[list[Metric], list[str]]:
    """The metrics of the plugin services at ``urls``; the names of those that did not answer."""

    async def one(http: httpx.AsyncClient, url: str) -> list[Metric] | None:
        try:
            answer = await http.get(url.rstrip("/") + "/metrics")
        except httpx.HTTPError:
            return None
        if answer.status_code != 200:
            return None
        return list(text_string_to_metric_families(answer.text))

    names = sorted(urls)
    async with httpx.AsyncClient(timeout=SCRAPE_SECONDS) as http:
        found = await asyncio.gather(*(one(http, urls[n]) for n in names))
    families = [f for got in found if got for f in got]
    return families, [n for n, got in zip(names, found, strict=True) if got is None]


async def fleet_health(session: AsyncSession, plugin_urls: Mapping[str, str]) -> FleetHealth:
    """``plugin_urls``: the plugins served by other processes (distributed mode); this process's
    own registry holds the core's counts, and in the embedded mode every plugin's too."""
    remote, unreachable = await scrape(plugin_urls)
    families = [*REGISTRY.collect(), *remote]
    traffic = traffic_by_tenant(families)
    every = await tenants.all_tenants(session)
    stored = await storage.bytes_by_tenant(session)
    published = await events.published_by_tenant(session, EVENTS_WINDOW)
    signed_in = await identity.last_sign_ins(session)
    rows = []
    for t in every:
        seen = traffic.get(t.slug)
        rows.append(
            TenantHealth(
                id=t.id, slug=t.slug, name=t.name, state=t.state,
                requests=round(seen.requests) if seen else None,
                errors=round(seen.errors) if seen else None,
                p95_seconds=seen.p95() if seen else None,
                storage_bytes=stored.get(t.id, 0),
                events_24h=published.get(t.id, 0),
                last_sign_in=signed_in.get(t.id),
            )
        )  # fmt: skip
    rows.sort(key=lambda r: (-(r.requests or 0), r.slug))
    return FleetHealth(tenants=rows, sources=services(families), unreachable=unreachable)
