"""Raw bytes to a server on loopback, and its answer read with h11 as a client reads it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import h11


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def exchange(port: int, raw: bytes, timeout: float = 60) -> Answer:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        client = h11.Connection(h11.CLIENT)
        # The request went out as raw bytes; h11 only needs to believe it sent one.
        client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        status, headers, body = 0, dict[str, str](), b""
        async with asyncio.timeout(timeout):
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    return Answer(status, headers, body)
                elif isinstance(event, h11.ConnectionClosed):
                    raise AssertionError(f"closed without an answer to {raw[:80]!r}")
    finally:
        writer.close()


def _request(head: bytes, body: bytes = b"") -> bytes:
    return head.replace(b"\n", b"\r\n") + b"\r\n" + body


BIG = b"a" * (40 * 1024)
# Every case aims at an unknown route: what a server accepts is answered 404 by the decision,
# what it refuses is answered by the HTTP layer itself.
MALFORMED_HTTP: dict[str, bytes] = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "unknown HTTP version": _request(b"GET /api/nope HTTP/9.9\nHost: x\n"),
    "invalid method": _request(b"G(T /api/nope HTTP/1.1\nHost: x\n"),
    "space in the target": _request(b"GET /api/no pe HTTP/1.1\nHost: x\n"),
    "NUL in the target": _request(b"GET /api/no\x00pe HTTP/1.1\nHost: x\n"),
    "non-UTF-8 byte in the path": _request(b"GET /api/nop\xffe HTTP/1.1\nHost: x\n"),
    "non-UTF-8 percent-encoding": _request(b"GET /api/nop%ffe HTTP/1.1\nHost: x\n"),
    "invalid percent-encoding": _request(b"GET /api/nop%zze HTTP/1.1\nHost: x\n"),
    "space in a header name": _request(b"GET /api/nope HTTP/1.1\nHost: x\nBad Name: v\n"),
    "control byte in a header name": _request(b"GET /api/nope HTTP/1.1\nHost: x\nX-\x01: v\n"),
    "header line without a colon": _request(b"GET /api/nope HTTP/1.1\nHost: x\nNoColon\n"),
    "NUL in a header value": _request(b"GET /api/nope HTTP/1.1\nHost: x\nX-A: a\x00b\n"),
    "obsolete line folding": _request(b"GET /api/nope HTTP/1.1\nHost: x\nX-A: a\n b\n"),
    "no Host in HTTP/1.1": _request(b"GET /api/nope HTTP/1.1\n"),
    "two Host headers": _request(b"GET /api/nope HTTP/1.1\nHost: x\nHost: y\n"),
    "absolute-form to a foreign host": _request(
        b"GET http://foreign.example/api/nope HTTP/1.1\nHost: x\n"
    ),
    "Content-Length and Transfer-Encoding": _request(
        b"POST /api/nope HTTP/1.1\nHost: x\nContent-Length: 5\nTransfer-Encoding: chunked\n",
        b"0\r\n\r\n",
    ),
    "two different Content-Lengths": _request(
        b"POST /api/nope HTTP/1.1\nHost: x\nContent-Length: 1\nContent-Length: 2\n", b"ab"
    ),
    "negative Content-Length": _request(
        b"POST /api/nope HTTP/1.1\nHost: x\nContent-Length: -1\n", b"a"
    ),
    "non-numeric Content-Length": _request(
        b"POST /api/nope HTTP/1.1\nHost: x\nContent-Length: abc\n", b"a"
    ),
    "unknown Transfer-Encoding": _request(
        b"POST /api/nope HTTP/1.1\nHost: x\nTransfer-Encoding: gzip\n", b"a"
    ),
    "invalid chunk size": _request(
        b"POST /api/nope HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"zz\r\nab\r\n0\r\n\r\n"
    ),
    "chunk size overflowing 64 bits": _request(
        b"POST /api/nope HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n",
        b"fffffffffffffffffffff\r\nab\r\n0\r\n\r\n",
    ),
    "chunk without its CRLF": _request(
        b"POST /api/nope HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"2\r\nabXX0\r\n\r\n"
    ),
    "oversized header": _request(b"GET /api/nope HTTP/1.1\nHost: x\nX-Big: " + BIG + b"\n"),
    "oversized target": _request(b"GET /api/nope?q=" + BIG + b" HTTP/1.1\nHost: x\n"),
    "too many headers": _request(
        b"GET /api/nope HTTP/1.1\nHost: x\n"
        + b"".join(b"X-H%d: %s\n" % (i, b"v" * 64) for i in range(600))
    ),
}
