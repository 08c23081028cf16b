"""Gauges of the whole platform that no request path counts: plugin installations by plugin and
state, and the bytes each tenant stores (ADR 0204). The worker reads them from the database
every ``PLEXICA_METRICS_GAUGE_SECONDS``; tenants by state stay with the core's reconciler."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog
from prometheus_client import Gauge
from sqlalchemy.exc import SQLAlchemyError

from plexica.kit.db import Database
from plexica.plugins import service as plugins
from plexica.settings import Settings
from plexica.storage import service as storage
from plexica.tenants import service as tenants
from plexica_sdk.toptenants import OTHER

log = structlog.get_logger("plexica.fleet_metrics")

INSTALLATIONS = Gauge(
    "plexica_plugin_installations",
    "Plugin installations by plugin and state at the worker's last pass.",
    ["plugin", "state"],
)
STORAGE = Gauge(
    "plexica_tenant_storage_bytes",
    "Bytes a tenant stores (the N largest tenants by name, the rest summed as 'other').",
    ["tenant"],
)


def largest(sizes: Mapping[str, int], top: int) -> dict[str, int]:
    """The ``top`` largest by name, the rest summed under ``other``: bounded like the request
    metrics' tenant label (ADR 0200), and the sum over the label stays exact."""
    ranked = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))
    out = dict(ranked[:top])
    rest = ranked[top:]
    if rest:
        out[OTHER] = sum(n for _, n in rest)
    return out


async def pass_once(db: Database, top: int) -> None:
    async with db.session() as session:
        counts = await plugins.installation_counts(session)
        stored = await storage.bytes_by_tenant(session)
        slugs = {t.id: t.slug for t in await tenants.all_tenants(session)}
    # Cleared first: a plugin or tenant that is gone loses its series.
    INSTALLATIONS.clear()
    for (plugin, state), n in counts.items():
        INSTALLATIONS.labels(plugin, state).set(n)
    STORAGE.clear()
    sizes = {slug: stored.get(tenant_id, 0) for tenant_id, slug in slugs.items()}
    for tenant, n in largest(sizes, top).items():
        STORAGE.labels(tenant).set(n)


async def gauges_job(db: Database, settings: Settings) -> None:
    while True:
        try:
            await pass_once(db, settings.metrics_top_tenants)
        except (OSError, SQLAlchemyError) as exc:
            # The database is away: the gauges keep their last values until the next pass.
            log.warning("fleet_gauges_failed", error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(settings.metrics_gauge_seconds)
