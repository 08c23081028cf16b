"""Run ASGI apps: granian worker processes for services, uvicorn in-process for ``plexica up``."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI


class PortInUseError(RuntimeError):
    pass


def ensure_port_free(host: str, port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(f"port {port} on {host} is already in use") from None
            raise


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
    target: str, host: str, port: int, *, workers: int = 1, grace_seconds: float = 10.0
) -> None:
    """Serve the app factory ``target`` with granian (see ADR 0002) in worker processes."""
    from granian import Granian
    from granian.constants import Interfaces

    ensure_port_free(host, port)
    Granian(
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
    ).serve()


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
