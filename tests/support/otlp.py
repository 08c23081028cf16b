"""An OTLP/HTTP trace receiver for tests: real exports over HTTP, decoded with the protobuf
messages of the OpenTelemetry protocol."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, str]


class Receiver:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        out: list[ReceivedSpan] = []
        for resource in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                out.extend(
                    ReceivedSpan(
                        service=attrs.get("service.name", ""),
                        name=span.name,
                        kind=span.kind,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        attributes={
                            a.key: a.value.string_value or str(a.value.int_value)
                            for a in span.attributes
                        },
                    )
                    for span in scope.spans
                )
        with self._lock:
            self.spans.extend(out)

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    async def wait(
        self,
        trace_id: str,
        names: set[str],
        services: frozenset[str] = frozenset(),
        timeout: float = 60,
    ) -> list[ReceivedSpan]:
        """The trace's spans once a span of each of ``names`` and of each of ``services`` came
        (each service exports its own batches; the app runs on this loop: the wait must not
        block it)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.of_trace(trace_id)
            seen, sent = {s.name for s in spans}, {s.service for s in spans}
            if names <= seen and services <= sent:
                return spans
            missing = (names - seen) | (services - sent)
            assert time.monotonic() < deadline, f"spans {missing} never came"
            await asyncio.sleep(0.05)


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, Receiver]]:
    """The endpoint (for OTEL_EXPORTER_OTLP_ENDPOINT) and what it received."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self._body()
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)  # Traefik's exporter (Go's) compresses
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            receiver.add(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))
            chunks = []  # Go's exporter streams its body in chunks, without a length
            while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # the trailers, up to the empty line
                pass
            return b"".join(chunks)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", receiver
    finally:
        server.shutdown()
        server.server_close()
