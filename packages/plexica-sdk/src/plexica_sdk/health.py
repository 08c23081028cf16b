"""Liveness, readiness (with named dependency checks) and draining for graceful shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.requests import Request

from plexica_sdk.observability import metrics_endpoint

Check = Callable[[], Awaitable[object]]


class Readiness:
    """Named dependency checks; ``/ready`` answers 200 only when all pass and not draining."""

    def __init__(self, timeout: float = 2.0) -> None:
        self.checks: dict[str, Check] = {}
        self.draining = False
        self.timeout = timeout

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check

    async def run(self) -> dict[str, str]:
        async def one(check: Check) -> str:
            try:
                await asyncio.wait_for(check(), self.timeout)
            except Exception as exc:  # noqa: BLE001 - any failure means not ready; report its kind
                return f"fail: {type(exc).__name__}: {str(exc)[:200]}"
            return "ok"

        names = list(self.checks)
        results = await asyncio.gather(*(one(self.checks[n]) for n in names))
        return dict(zip(names, results, strict=True))


def health_router(readiness: Readiness) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready")
    async def ready() -> JSONResponse:
        if readiness.draining:
            return JSONResponse({"status": "draining", "checks": {}}, status_code=503)
        checks = await readiness.run()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    async def metrics(request: Request) -> object:
        return await metrics_endpoint(request)

    router.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    return router
