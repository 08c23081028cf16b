"""A JWKS fetch survives a server that drops the connection it is asked on (the race of a pooled
keep-alive connection closed as it is reused), and still fails when every answer is that."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from plexica_sdk.auth import fetch_jwks

JWKS = json.dumps({"keys": [{"kid": "k1", "kty": "RSA", "n": "AQAB", "e": "AQAB"}]}).encode()


async def start(drops: int) -> tuple[asyncio.Server, list[int]]:
    """A loopback HTTP server that closes the first ``drops`` connections without an answer."""
    seen: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        seen.append(1)
        if len(seen) > drops:
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(JWKS)}\r\n\r\n".encode()
                + JWKS
            )
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), seen


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


async def test_a_dropped_connection_is_asked_again_once(client: httpx.AsyncClient) -> None:
    server, seen = await start(drops=1)
    async with server:
        port = server.sockets[0].getsockname()[1]
        body = await fetch_jwks(client, f"http://127.0.0.1:{port}/certs", 5)
    assert body["keys"][0]["kid"] == "k1"
    assert len(seen) == 2


async def test_a_server_that_never_answers_is_an_error(client: httpx.AsyncClient) -> None:
    server, seen = await start(drops=10)
    async with server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(httpx.RemoteProtocolError):
            await fetch_jwks(client, f"http://127.0.0.1:{port}/certs", 5)
    assert len(seen) == 2
