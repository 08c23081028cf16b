"""Run ASGI apps: granian worker processes for services, uvicorn in-process for ``plexica up``."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI

from plexica.kit.http1 import JsonErrorsProtocol
from plexica.kit.ports import ensure_port_free
from plexica_sdk.health import DRAIN_FLAG_ENV

log = structlog.get_logger("plexica.server")


class _DrainingServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, app: FastAPI, on_started: Callable[[], None] | None
    ) -> None:
        super().__init__(config)
        self._app = app
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_started is not None:
            self._on_started()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Readiness turns 503 first so that load balancers stop sending before we close.
        self._app.state.readiness.draining = True
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal after shutdown, which would kill us before our own
        # clean-up (stopping the embedded database) runs; a graceful stop is a success.
        self._captured_signals.clear()


def serve_workers(
    target: str,
    host: str,
    port: int,
    *,
    workers: int = 1,
    grace_seconds: float = 10.0,
    drain_seconds: float = 0.0,
) -> None:
    """Serve the app factory ``target`` with granian (see ADR 0002) in worker processes.

    On SIGTERM or SIGINT the workers' ``/ready`` turns 503 at once (a flag file they watch) while
    they keep serving for ``drain_seconds``, so that the load balancer stops sending first; then
    granian stops them, letting in-flight requests finish within ``grace_seconds``. A second
    signal stops at once (ADR 0142)."""
    from granian.constants import Interfaces
    from granian.server.mp import MPServer

    class DrainingGranian(MPServer):
        drain_flag: Path
        draining = False

        def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
            if self.draining or drain_seconds <= 0:
                super().signal_handler_interrupt(*args, **kwargs)  # type: ignore[no-untyped-call]
                return
            self.draining = True
            self.drain_flag.touch()
            log.info("draining", seconds=drain_seconds)
            stop = threading.Timer(drain_seconds, super().signal_handler_interrupt)
            stop.daemon = True
            stop.start()

    ensure_port_free(host, port)
    flag = Path(tempfile.mkdtemp(prefix="plexica-drain-")) / "draining"
    # The worker processes inherit it: their Readiness turns 503 when the file appears.
    os.environ[DRAIN_FLAG_ENV] = str(flag)
    server = DrainingGranian(
        target,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        factory=True,
        workers=workers,
        websockets=False,
        workers_kill_timeout=max(1, int(grace_seconds)),
        respawn_failed_workers=True,
        # Granian's own loggers go to the root handler that configure_logging installed.
        log_dictconfig={
            "loggers": {
                "_granian": {"handlers": [], "propagate": True},
                "granian.access": {"handlers": [], "propagate": True},
            }
        },
    )
    server.drain_flag = flag
    try:
        server.serve()
    finally:
        flag.unlink(missing_ok=True)
        flag.parent.rmdir()


def serve(
    app: FastAPI,
    host: str,
    port: int,
    grace_seconds: float = 10.0,
    on_started: Callable[[], None] | None = None,
) -> None:
    ensure_port_free(host, port)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=JsonErrorsProtocol,
        log_config=None,
        access_log=False,
        lifespan="on",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=int(grace_seconds),
    )
    server = _DrainingServer(config, app, on_started)
    server.run()
    if not server.started and not server.should_exit:
        raise SystemExit(1)
