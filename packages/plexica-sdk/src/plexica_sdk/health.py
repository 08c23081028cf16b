"""Liveness, readiness (with named dependency checks) and draining for graceful shutdown."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from prometheus_client import Gauge
from starlette.requests import Request

from plexica_sdk.observability import metrics_endpoint

Check = Callable[[], Awaitable[object]]
# A file whose appearance means "draining": set by the process that supervises the workers
# (``plexica serve``), which receives SIGTERM for all of them.
DRAIN_FLAG_ENV = "_PLEXICA_DRAIN_FLAG"  # not a setting (those are refused when unknown)
DEPENDENCY_UP = Gauge(
    "plexica_dependency_up",
    "1 when the dependency answered its last check, 0 when it did not.",
    ["dependency"],
)


class Readiness:
    """Named dependency checks. ``/ready`` ("send me traffic") answers 200 only when every
    required check passes and the process is not draining. Optional checks name what the service
    can live without (Redis, the broker: it degrades); they run beside ``/ready`` without
    delaying it, and their last results are shown by ``/health`` and the metrics."""

    def __init__(self, timeout: float = 2.0, optional_timeout: float = 0.5) -> None:
        self.checks: dict[str, Check] = {}
        self.optional: dict[str, Check] = {}
        self.last: dict[str, str] = {}
        self._draining = False
        self._drain_flag = os.environ.get(DRAIN_FLAG_ENV)
        self.timeout = timeout
        self.optional_timeout = optional_timeout
        self._refreshing: asyncio.Task[dict[str, str]] | None = None

    @property
    def draining(self) -> bool:
        if not self._draining and self._drain_flag and os.path.exists(self._drain_flag):
            self._draining = True
        return self._draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._draining = value

    def add(self, name: str, check: Check, *, required: bool = True) -> None:
        (self.checks if required else self.optional)[name] = check

    async def _gather(self, checks: dict[str, Check], limit: float) -> dict[str, str]:
        async def one(check: Check) -> str:
            try:
                await asyncio.wait_for(check(), limit)
            except Exception as exc:  # noqa: BLE001 - any failure means not ready; report its kind
                return f"fail: {type(exc).__name__}: {str(exc)[:200]}"
            return "ok"

        names = list(checks)
        results = dict(
            zip(names, await asyncio.gather(*(one(checks[n]) for n in names)), strict=True)
        )
        for name, result in results.items():
            DEPENDENCY_UP.labels(name).set(1 if result == "ok" else 0)
        self.last.update(results)
        return results

    async def run(self) -> dict[str, str]:
        """The required checks (and, in the background, a refresh of the optional ones)."""
        self.refresh_optional()
        return await self._gather(self.checks, self.timeout)

    def refresh_optional(self) -> None:
        if not self.optional or (self._refreshing is not None and not self._refreshing.done()):
            return
        self._refreshing = asyncio.create_task(self._gather(self.optional, self.optional_timeout))

    def degraded(self) -> dict[str, str]:
        return {n: self.last.get(n, "unknown") for n in self.optional}


def health_router(readiness: Readiness) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/health")
    async def health() -> dict[str, object]:
        # Liveness does no I/O: the details are the last results of the checks.
        readiness.refresh_optional()
        checks = {**{n: readiness.last.get(n, "unknown") for n in readiness.checks}}
        checks.update(readiness.degraded())
        failing = sorted(n for n, v in checks.items() if v.startswith("fail"))
        return {"status": "degraded" if failing else "ok", "checks": checks}

    @router.get("/ready")
    async def ready() -> JSONResponse:
        if readiness.draining:
            return JSONResponse({"status": "draining", "checks": {}}, status_code=503)
        checks = await readiness.run()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {
                "status": "ready" if ok else "not_ready",
                "checks": checks,
                "degraded": readiness.degraded(),
            },
            status_code=200 if ok else 503,
        )

    async def metrics(request: Request) -> object:
        return await metrics_endpoint(request)

    router.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    return router
