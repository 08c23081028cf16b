"""OpenTelemetry traces, set up by the standard ``OTEL_*`` variables and exported over OTLP/HTTP
(ADR 0201).

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set: then every
service of the process gets a tracer provider of its own (its ``service.name``), so the services
of the embedded mode show as themselves in one trace. Off, the API's no-op tracer costs nearly
nothing per request.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import re
import threading
from typing import TYPE_CHECKING

import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import DefaultGetter
from opentelemetry.trace import Span, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    # The SDK is imported only once tracing is on: off, start-up does without it.
    from opentelemetry.sdk.trace import TracerProvider
    from sqlalchemy.ext.asyncio import AsyncEngine

TRACER = "plexica"
_PROPAGATOR = TraceContextTextMapPropagator()
_GETTER: DefaultGetter = DefaultGetter()
# A root span's trace id when the request brought an X-Trace-ID in the W3C form but no
# traceparent (the edge's decision started the trace and passed the id on).
_SEED: contextvars.ContextVar[int | None] = contextvars.ContextVar("trace_seed", default=None)
_W3C_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_providers: dict[str, TracerProvider] = {}
_lock = threading.Lock()


def enabled() -> bool:
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def provider(service: str) -> TracerProvider | None:
    """The provider of ``service``, made on first use; None while tracing is off."""
    if not enabled():
        return None
    with _lock:
        found = _providers.get(service)
        if found is None:
            # Imported here: the SDK, protobuf and requests are not loaded while tracing is off.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import SERVICE_NAME, Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

            class _SeededIds(RandomIdGenerator):
                def generate_trace_id(self) -> int:
                    return _SEED.get() or super().generate_trace_id()

            # The exporter, the sampler (OTEL_TRACES_SAMPLER) and the batch sizes read their
            # OTEL_* variables themselves; OTEL_SERVICE_NAME names a process of one service.
            name = os.environ.get("OTEL_SERVICE_NAME") or service
            found = TracerProvider(
                resource=Resource.create({SERVICE_NAME: name}), id_generator=_SeededIds()
            )
            found.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            # Not the API's global provider: that one cannot be replaced once set, and nothing
            # here reads it.
            _providers[service] = found
        return found


def tracer(service: str) -> Tracer:
    found = provider(service)
    return found.get_tracer(TRACER) if found is not None else trace.NoOpTracer()


def shutdown() -> None:
    """Export what is buffered and forget the providers (a test's, or at process exit)."""
    with _lock:
        for found in _providers.values():
            found.shutdown()
        _providers.clear()


def incoming(traceparent: str | None, trace_id: str | None) -> tuple[Context | None, str | None]:
    """The parent context of a request and its trace id (32 hex), from ``traceparent`` or else
    from an ``X-Trace-ID`` in the W3C form; (None, None) when neither is usable."""
    if traceparent:
        context = _PROPAGATOR.extract({"traceparent": traceparent}, getter=_GETTER)
        span = trace.get_current_span(context).get_span_context()
        if span.is_valid:
            return context, trace.format_trace_id(span.trace_id)
    if trace_id is not None and len(trace_id) == 32:
        try:
            value = int(trace_id, 16)
        except ValueError:
            return None, None
        if value:
            return None, trace_id.lower()
    return None, None


def start_root(tracer_: Tracer, name: str, parent: Context | None, trace_id: str) -> Span:
    """A server span: the child of ``parent``, or a root span whose trace id is ``trace_id``
    when that is in the W3C form (32 hex)."""
    seed = None
    if parent is None and len(trace_id) == 32:
        try:
            seed = int(trace_id, 16) or None
        except ValueError:
            seed = None
    token = _SEED.set(seed)
    try:
        return tracer_.start_span(name, context=parent, kind=trace.SpanKind.SERVER)
    finally:
        _SEED.reset(token)


def traceparent(span: Span | None = None) -> str | None:
    """The W3C traceparent of ``span`` (default: the current one), None without a valid one."""
    context = (span or trace.get_current_span()).get_span_context()
    if not context.is_valid:
        return None
    return (
        f"00-{trace.format_trace_id(context.trace_id)}-{trace.format_span_id(context.span_id)}"
        f"-{int(context.trace_flags):02x}"
    )


def event_traceparent(trace_id: object = None, request_id: object = None) -> str | None:
    """The traceparent an event carries: the active span's; without one (tracing off), the
    request's trace id (from the log context unless given) with a parent id derived from the
    request's id, so the events of one request share a parent and those of two do not. The
    flags say not sampled: no span of that id was recorded."""
    active = traceparent()
    if active:
        return active
    bound = structlog.contextvars.get_contextvars()
    trace_id = trace_id if trace_id is not None else bound.get("trace_id")
    request_id = request_id if request_id is not None else bound.get("request_id")
    if not isinstance(trace_id, str) or not _W3C_TRACE_ID.fullmatch(trace_id := trace_id.lower()):
        return None
    if int(trace_id, 16) == 0:
        return None
    parent = hashlib.sha256(f"{trace_id}:{request_id}".encode()).hexdigest()[:16]
    if int(parent, 16) == 0:
        parent = "0" * 15 + "1"
    return f"00-{trace_id}-{parent}-00"


def child_of(traceparent_: str | None) -> Context | None:
    if not traceparent_:
        return None
    return _PROPAGATOR.extract({"traceparent": traceparent_}, getter=_GETTER)


def instrument_engine(engine: AsyncEngine, service: str) -> None:
    """A span per statement of ``engine`` while tracing is on (the children of the request's
    span). The instrumentor's public entry instruments one engine per process; its engine
    tracer, what that entry builds, serves each of ours."""
    if not enabled():
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import NoOpMeter

    # The pool's usage is already a Prometheus gauge (plexica_db_pool_checked_out).
    usage = NoOpMeter(TRACER).create_up_down_counter("db.client.connections.usage")
    EngineTracer(tracer(service), engine.sync_engine, usage)  # type: ignore[no-untyped-call]
