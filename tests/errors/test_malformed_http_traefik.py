"""The malformed-HTTP catalogue of issue 18 sent over raw sockets to the real Traefik edge (the
configuration ``plexica gateway config traefik`` writes, the shipped entry point's limits).

What Go's net/http refuses while it reads a request never reaches a router, a middleware or the
core: it answers in plain text and cannot be shaped (ADR 0160). The test names exactly those
cases, so that a Traefik upgrade that changes the set is seen; everything else is JSON."""

from __future__ import annotations

import urllib.parse
from typing import Any

from tests.errors.wire import MALFORMED_HTTP, Answer, exchange
from tests.gateway.test_traefik import edge  # noqa: F401 - the fixture

# Go's plain-text answers, before any handler: the status it gives each case.
GO_PROTOCOL = {
    "garbage request line": 400,
    "unknown HTTP version": 505,
    "invalid method": 400,
    "space in the target": 400,
    "NUL in the target": 400,
    "invalid percent-encoding": 400,
    "space in a header name": 400,
    "control byte in a header name": 400,
    "header line without a colon": 400,
    "NUL in a header value": 400,
    "no Host in HTTP/1.1": 400,
    "two Host headers": 400,
    "two different Content-Lengths": 400,
    "negative Content-Length": 400,
    "non-numeric Content-Length": 400,
    "unknown Transfer-Encoding": 501,
    "oversized header": 431,
    "oversized target": 431,
    "too many headers": 431,
}
# A chunked body Traefik cannot read on a route that buffers bodies (ADR 0137): its own 500,
# indistinguishable from a service's, given the error shape by the errors middleware.
BROKEN_CHUNKS = ("invalid chunk size", "chunk size overflowing 64 bits", "chunk without its CRLF")


def _port(served: dict[str, Any]) -> int:
    port = urllib.parse.urlsplit(str(served["web"])).port
    assert port is not None
    return port


def assert_shaped(name: str, answer: Answer) -> str:
    assert answer.headers.get("content-type", "").startswith("application/json"), (name, answer)
    assert answer.headers.get("x-request-id"), (name, answer)
    body = answer.json()
    assert set(body) == {"error"}, (name, body)
    assert set(body["error"]) == {"code", "message", "details"}, (name, body)
    return str(body["error"]["code"])


async def test_what_go_lets_through_is_answered_in_the_error_shape(
    edge: dict[str, Any],  # noqa: F811 - the fixture
) -> None:
    for name, raw in MALFORMED_HTTP.items():
        answer = await exchange(_port(edge), raw)
        if name in GO_PROTOCOL:
            assert answer.status == GO_PROTOCOL[name], (name, answer)
            assert answer.headers["content-type"].startswith("text/plain"), (name, answer)
        else:
            assert 400 <= answer.status < 500, (name, answer)
            assert_shaped(name, answer)


async def test_a_broken_chunked_body_on_a_buffered_route_is_json(
    edge: dict[str, Any],  # noqa: F811 - the fixture
) -> None:
    target = f"/api/plugins/{edge['plugin']}/v1/echo".encode()
    auth = b"Host: x\r\nAuthorization: Bearer " + edge["token"].encode()
    for name in BROKEN_CHUNKS:
        raw = MALFORMED_HTTP[name].replace(b"/api/nope", target).replace(b"Host: x", auth, 1)
        answer = await exchange(_port(edge), raw)
        assert answer.status == 500, (name, answer)
        assert assert_shaped(name, answer) == "internal_error", (name, answer)
