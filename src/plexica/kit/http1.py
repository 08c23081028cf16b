"""HTTP/1.1 for ``plexica up``: uvicorn's httptools protocol, with the error shape for what the
parser refuses before any application sees a request (ADR 0160)."""

from __future__ import annotations

import json
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from plexica_sdk.errors import error_body
from plexica_sdk.observability import new_id

# The same budget as Traefik's entry points (deploy/traefik/traefik.yml): a token, a few cookies.
MAX_HEADER_BYTES = 32 * 1024


class _RefusedError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


_MALFORMED = _RefusedError(400, "malformed_request", "the request is not valid HTTP/1.1")
_REASONS = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}


class JsonErrorsProtocol(HttpToolsProtocol):
    """uvicorn answers what httptools cannot parse with a plain-text 400; this one answers in the
    error shape with a request id. It also bounds the request line and headers while they are
    parsed (httptools buffers them without a limit), and refuses what RFC 9112 says a server
    must refuse but the parser lets through: no ``Host`` or two of them in HTTP/1.1, and an
    absolute-form target naming another host than ``Host`` (the edge is no forward proxy)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refusal = _MALFORMED
        self._header_bytes = 0
        self._hosts: list[bytes] = []

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._refusal = _MALFORMED
        self._header_bytes = 0
        self._hosts = []

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            message = f"request headers exceed {MAX_HEADER_BYTES} bytes"
            self._refusal = _RefusedError(431, "headers_too_large", message)
            raise self._refusal

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # httptools may deliver a long header in pieces; each piece counts.
        self._count(len(name) + len(value) + 4)
        if name.lower() == b"host":
            self._hosts.append(value)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.parser.get_http_version() == "1.1" and len(self._hosts) != 1:
            message = "exactly one Host header is required"
            self._refusal = _RefusedError(400, "malformed_request", message)
            raise self._refusal
        if not self.url.startswith(b"/") and self.url != b"*":
            target = httptools.parse_url(self.url)
            authority = target.host or b""
            if target.port is not None:
                authority += b":" + str(target.port).encode()
            if self._hosts and authority.lower() != self._hosts[0].lower():
                self._refusal = _RefusedError(
                    400, "foreign_host", "the request target names another host than Host"
                )
                raise self._refusal
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            # A broken body after the application answered: there is nothing left to say.
            self.transport.close()
            return
        refusal, request_id = self._refusal, new_id()
        body = json.dumps(error_body(refusal.code, refusal.message), separators=(",", ":")).encode()
        head = [b"HTTP/1.1 %d %s\r\n" % (refusal.status, _REASONS[refusal.status])]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-request-id: " + request_id.encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.logger.info("malformed_request", extra={"request_id": request_id, "reason": msg})
        self.transport.write(b"".join(head) + body)
        self.transport.close()
