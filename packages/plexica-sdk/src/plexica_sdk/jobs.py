"""Periodic jobs of a plugin: declared in code, run by the plugin's own process.

A plugin passes ``PeriodicJob``s to ``create_plugin_app``; its process then runs each job every
``every`` seconds (first right after start-up, so a restart catches up), once per tenant where
the plugin is installed and active, in that tenant's transaction as the plugin's role. A
transaction-level PostgreSQL advisory lock per (plugin, job, tenant) makes replicas skip a tenant
another replica is working on, so two replicas never run the same job for a tenant at once; the
job itself must still be idempotent (a replica that comes after the first has committed runs it
again).
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

import structlog
from sqlalchemy import text

from plexica_sdk.context import Principal
from plexica_sdk.db import NotInstalledError, PluginDatabase

log = structlog.get_logger("plexica_sdk.jobs")

if TYPE_CHECKING:  # app imports this module
    from plexica_sdk.app import PluginContext

JobHandler = Callable[["PluginContext", datetime], Awaitable[Any]]
Outcome = Literal["done", "locked", "not_installed", "failed"]


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    run: JobHandler
    every: float = 3600.0


@dataclass(frozen=True)
class JobResult:
    job: str
    tenant_id: UUID
    outcome: Outcome
    value: Any = None


def lock_keys(plugin_id: str, job: str, tenant_id: UUID) -> tuple[int, int]:
    """The two int4 keys of ``pg_try_advisory_xact_lock``: stable across processes and
    versions (crc32, not Python's salted ``hash``)."""

    def key(value: str) -> int:
        return zlib.crc32(value.encode()) - 2**31

    return key(f"plexica-job:{plugin_id}"), key(f"{job}:{tenant_id}")


class JobRunner:
    """Runs ``jobs`` for every tenant the plugin is active in."""

    def __init__(
        self,
        db: PluginDatabase,
        jobs: Iterable[PeriodicJob],
        *,
        interval: float | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.jobs = list(jobs)
        self.interval = interval
        self.clock = clock
        self._stop = asyncio.Event()

    async def run_job(
        self,
        job: PeriodicJob,
        tenant_id: UUID,
        slug: str,
        now: datetime,
    ) -> JobResult:
        from plexica_sdk.app import PluginContext

        plugin = self.db.plugin_id
        try:
            async with self.db.tenant_session(tenant_id, slug) as (session, installation):
                got = await session.execute(
                    text("SELECT pg_try_advisory_xact_lock(:a, :b)"),
                    dict(zip(("a", "b"), lock_keys(plugin, job.name, tenant_id), strict=True)),
                )
                if not got.scalar_one():
                    return JobResult(job.name, tenant_id, "locked")
                ctx = PluginContext(
                    Principal(subject=f"job:{job.name}", issuer=f"/plugins/{plugin}"),
                    tenant_id, slug, frozenset(), installation, session, plugin,
                )  # fmt: skip
                value = await job.run(ctx, now)
        except NotInstalledError:
            return JobResult(job.name, tenant_id, "not_installed")
        except Exception as exc:  # one tenant's failure must not stop the others
            log.exception("job_failed", job=job.name, tenant_id=str(tenant_id))
            return JobResult(job.name, tenant_id, "failed", repr(exc))
        return JobResult(job.name, tenant_id, "done", value)

    async def run_once(
        self, now: datetime | None = None, *, tenants: Iterable[UUID] | None = None
    ) -> list[JobResult]:
        """One pass of every job over the installed tenants (or only ``tenants`` of them)."""
        when = now or self.clock()
        only = set(tenants) if tenants is not None else None
        return [
            await self.run_job(job, tenant_id, slug, when)
            for tenant_id, slug in await self.db.installed_tenants()
            if only is None or tenant_id in only
            for job in self.jobs
        ]

    async def run(self) -> None:
        """Run every job on its own period until ``stop``."""
        await asyncio.gather(*(self._loop(job) for job in self.jobs))

    async def _loop(self, job: PeriodicJob) -> None:
        every = self.interval or job.every
        while not self._stop.is_set():
            try:
                for tenant_id, slug in await self.db.installed_tenants():
                    await self.run_job(job, tenant_id, slug, self.clock())
            except Exception:
                log.exception("job_pass_failed", job=job.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=every)

    def stop(self) -> None:
        self._stop.set()


__all__ = ["JobResult", "JobRunner", "PeriodicJob", "lock_keys"]
