"""Logging for every process of the platform and its plugins: structlog and the stdlib on one
stream, JSON lines or a console, secrets redacted. Light on purpose (structlog only): ``plexica
up`` configures it before loading the web stack."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = frozenset(
    {
        "password",
        "token",
        "access_token",
        "refresh_token",
        "authorization",
        "secret",
        "client_secret",
    }
)


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.lower() in _SECRET_KEYS:
            event[key] = "[redacted]"
    return event


def _with_service(event: MutableMapping[str, Any], service: str) -> MutableMapping[str, Any]:
    event.setdefault("service", service)
    return event


def configure_logging(service: str, level: str = "INFO", fmt: str = "auto") -> None:
    """Route structlog and stdlib logging to one stream: JSON lines, or console on a terminal."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        lambda _l, _m, e: _with_service(e, service),
        _redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    # No renderer writes a record's thread, process or task: skip collecting them per record.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic"):
        # A server may have set its own handlers and levels on these; ours decide.
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).setLevel(logging.NOTSET)
        logging.getLogger(name).propagate = True
    # Alembic announces each of its autogenerate plugins at info on every migration check.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # Our middleware writes one access line per request with context; uvicorn's would be a second.
    logging.getLogger("uvicorn.access").disabled = True
