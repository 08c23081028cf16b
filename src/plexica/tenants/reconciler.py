"""Finishes the tenant work that a crash interrupted (ADR 0140).

A saga holds its tenant's session advisory lock while it runs; PostgreSQL frees the lock when
the process holding it dies. So a tenant still ``provisioning`` or ``pending_deletion`` whose
lock is free was orphaned, and the first replica to take the lock resumes it: the lock is the
lease, and no two replicas ever run the same tenant's saga at once. Plugin installs and upgrades
hold a lease of the same kind per tenant and plugin, and the pass undoes those a crash left
(ADR 0170) before it resumes tenants. The reconciler passes once at start and then every
``interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol
from uuid import UUID

import structlog
from prometheus_client import Counter, Gauge
from sqlalchemy.exc import SQLAlchemyError

from plexica.tenants import repository
from plexica.tenants.errors import TenantBusyError
from plexica.tenants.schemas import State
from plexica.tenants.service import TenantService

log = structlog.get_logger("plexica.tenants.reconciler")

TRANSITIONAL = (State.PROVISIONING, State.PENDING_DELETION)
RESUMED = Counter(
    "plexica_tenant_resumed_total",
    "Interrupted tenant sagas picked up by the reconciler, by the state they ended in.",
    ["state"],
)
UNFINISHED = Gauge(
    "plexica_tenants_transitional",
    "Tenants provisioning or pending deletion at the reconciler's last pass.",
)
BY_STATE = Gauge("plexica_tenants", "Tenants by state at the reconciler's last pass.", ["state"])


SHUTDOWN_WAIT_SECONDS = 5.0


class PluginRecovery(Protocol):
    async def reconcile(self) -> list[tuple[UUID, str]]:
        """Undo the plugin operations a crash interrupted; the (tenant, plugin) pairs undone."""
        ...


class Reconciler:
    def __init__(
        self,
        tenants: TenantService,
        *,
        plugins: PluginRecovery | None = None,
        interval: float = 10.0,
    ) -> None:
        self.tenants = tenants
        self.plugins = plugins
        self.interval = interval

    async def pass_once(self) -> list[UUID]:
        """Undo interrupted plugin operations, then resume every orphaned tenant (a resumed
        provisioning installs its default plugins again); the ids of the tenants this pass
        worked on."""
        if self.plugins is not None:
            await self.plugins.reconcile()
        async with self.tenants.db.session() as session:
            found = await repository.fleet(session, TRANSITIONAL)
            counts = await repository.count_by_state(session)
        UNFINISHED.set(len(found))
        for state in State:
            BY_STATE.labels(state.value).set(counts.get(state, 0))
        resumed = []
        for tenant in found:
            try:
                after = await self.tenants.resume(tenant.id)
            except TenantBusyError:
                continue  # its saga is alive somewhere
            RESUMED.labels(after.state.value).inc()
            log.info(
                "tenant_reconciled",
                tenant_id=str(tenant.id),
                slug=tenant.slug,
                was=tenant.state.value,
                now=after.state.value,
            )
            resumed.append(tenant.id)
        return resumed

    async def run(self) -> None:
        while True:
            try:
                await self.pass_once()
            except (OSError, SQLAlchemyError) as exc:
                # The database is away: the next pass tries again.
                log.warning("tenant_reconcile_failed", error=f"{type(exc).__name__}: {exc}")
            except Exception:  # the loop outlives any one tenant's bug
                log.exception("tenant_reconcile_crashed")
            await asyncio.sleep(self.interval)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self.run(), name="tenant-reconciler")
        try:
            yield
        finally:
            task.cancel()
            # A pass blocked in the database must not hold up the shutdown: its saga lock goes
            # with the connection, and the next core resumes the tenant.
            _, pending = await asyncio.wait({task}, timeout=SHUTDOWN_WAIT_SECONDS)
            if pending:
                log.warning("tenant_reconciler_still_stopping")
