"""The malformed-HTTP catalogue of issue 18 sent over raw sockets to the edge of ``plexica up``
(uvicorn with the protocol of ``plexica.kit.http1``, ADR 0160): every answer is a JSON 4xx in
the one error shape with a request id, never uvicorn's plain-text 400."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from plexica.kit.http1 import JsonErrorsProtocol
from tests.errors.conftest import Stack
from tests.errors.wire import MALFORMED_HTTP, Answer, exchange
from tests.harness.asgi import serving

# What the edge application answers itself: the input guard's 400 and the decision's 404 (the
# route is unknown). Every other case is refused by the protocol before a request exists.
APPLICATION = {"non-UTF-8 percent-encoding": 400, "invalid percent-encoding": 404}
TOO_LARGE = {"oversized header", "oversized target", "too many headers"}


@pytest.fixture
async def edge_port(stack: Stack) -> AsyncIterator[int]:
    # lifespan off: the stack already runs it.
    async with serving(
        stack.edge, http=JsonErrorsProtocol, lifespan="off", server_header=False
    ) as port:
        yield port


def assert_shaped(name: str, answer: Answer) -> str:
    assert answer.headers["content-type"].startswith("application/json"), (name, answer)
    assert answer.headers.get("x-request-id"), (name, answer)
    body = answer.json()
    assert set(body) == {"error"}, (name, body)
    assert set(body["error"]) == {"code", "message", "details"}, (name, body)
    return str(body["error"]["code"])


async def test_every_malformed_request_gets_a_json_4xx(edge_port: int) -> None:
    for name, raw in MALFORMED_HTTP.items():
        answer = await exchange(edge_port, raw)
        code = assert_shaped(name, answer)
        if name in APPLICATION:
            assert answer.status == APPLICATION[name], (name, answer)
        elif name in TOO_LARGE:
            assert (answer.status, code) == (431, "headers_too_large"), (name, answer)
        else:
            assert answer.status == 400, (name, answer)
            assert code in {"malformed_request", "foreign_host"}, (name, answer)


async def test_a_malformed_request_after_a_good_one_on_the_same_connection_is_json(
    edge_port: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", edge_port)
    try:
        async with asyncio.timeout(60):
            writer.write(b"GET /api/nope HTTP/1.1\r\nHost: x\r\n\r\n")
            first = await reader.readuntil(b"}}")  # the whole error body of the 404
            assert first.startswith(b"HTTP/1.1 404 "), first
            writer.write(MALFORMED_HTTP["space in a header name"])
            second = await reader.read()  # the edge closes after the 400
        assert second.startswith(b"HTTP/1.1 400 "), second
        assert b"content-type: application/json" in second, second
        assert b"x-request-id: " in second, second
    finally:
        writer.close()
