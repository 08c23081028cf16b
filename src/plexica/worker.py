"""The worker process: background jobs beside a small health/ready/metrics server.

Jobs (outbox relay, event delivery, fleet migrations, provisioning) register themselves in
``create_worker_app``; each runs as a supervised task that is restarted after a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from plexica import __version__
from plexica.events.runtime import relay_job
from plexica.fleet_metrics import gauges_job
from plexica.kit.db import Database
from plexica.kit.probes import add_dependency_checks
from plexica.kit.supervise import restart_on_failure
from plexica.settings import Settings
from plexica_sdk.service import create_service_app

Job = Callable[[Database, Settings], Awaitable[None]]
log = structlog.get_logger("plexica.worker")

JOBS: dict[str, Job] = {
    "events.relay": relay_job,
    "metrics.gauges": gauges_job,
}


async def _supervise(name: str, job: Job, db: Database, settings: Settings) -> None:
    await restart_on_failure(
        lambda: job(db, settings),
        failed=lambda wait: log.exception("job_failed", job=name, retry_in_s=wait),
    )


def create_worker_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.sqlalchemy_url, pool_size=settings.database_pool_size)
        add_dependency_checks(app.state.readiness, settings, db)
        tasks = [
            asyncio.create_task(_supervise(name, job, db, settings), name=name)
            for name, job in JOBS.items()
        ]
        log.info("worker_started", jobs=sorted(JOBS))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await db.dispose()

    return create_service_app(
        "worker", title="Plexica worker", version=__version__, lifespan=lifespan, openapi_url=None
    )
