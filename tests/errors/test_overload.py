"""ADR 0255: past its in-flight limit a service answers 503 ``overloaded`` with Retry-After at
once, in the one error shape with a request id; the probes are always admitted, and once the
requests in flight finish the service admits again. A real uvicorn server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from starlette.requests import Request

from plexica_sdk.observability import HTTP_SHED
from plexica_sdk.service import create_service_app
from tests.harness.asgi import serving

LIMIT = 2


@dataclass
class Service:
    url: str = ""
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: int = 0
    uploads: int = 0


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    running = Service()
    app = create_service_app("overload-test", title="t", version="0", max_in_flight=LIMIT)

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        running.uploads += 1
        return {"bytes": len(await request.body())}

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        running.arrived += 1
        await running.gate.wait()
        return {"ok": "yes"}

    async with serving(app, lifespan="off") as port:
        running.url = f"http://127.0.0.1:{port}"
        yield running
        running.gate.set()


async def test_past_the_limit_requests_are_shed_at_once_and_admitted_again_after(
    service: Service,
) -> None:
    shed_before = HTTP_SHED.labels("overload-test")._value.get()
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        held = [asyncio.create_task(client.get("/slow")) for _ in range(LIMIT)]
        async with asyncio.timeout(30):
            while service.arrived < LIMIT:
                await asyncio.sleep(0.01)
        extra = await client.get("/slow")
        assert extra.status_code == 503
        assert extra.headers["retry-after"] == "1"
        assert extra.headers["x-request-id"]
        assert extra.json() == {
            "error": {
                "code": "overloaded",
                "message": "the service is at capacity; try again shortly",
                "details": None,
            }
        }
        others = await asyncio.gather(*(client.get("/slow") for _ in range(5)))
        assert [r.status_code for r in others] == [503] * 5
        # Probes are never shed: the orchestrator must see the truth, not the overload.
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        assert not any(t.done() for t in held)
        service.gate.set()
        assert [(await t).status_code for t in held] == [200] * LIMIT
        assert (await client.get("/slow")).status_code == 200
    assert HTTP_SHED.labels("overload-test")._value.get() - shed_before >= 6


async def test_requests_waiting_on_a_slow_client_body_do_not_fill_the_process(
    service: Service,
) -> None:
    """An attacker's uploads that never finish their body are not work in flight: more of them
    than the limit leave the service answering everyone else."""
    host, port = service.url.removeprefix("http://").split(":")
    stalled = []
    for _ in range(LIMIT + 3):
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 100\r\n\r\n{"
        )
        await writer.drain()
        stalled.append(writer)
    try:
        async with asyncio.timeout(30):
            while service.uploads < LIMIT + 3:
                await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            service.gate.set()
            assert (await client.get("/slow")).status_code == 200
    finally:
        for writer in stalled:
            writer.close()
