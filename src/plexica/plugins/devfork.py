"""Fork server of ``plexica plugin dev`` (``python -m plexica.plugins.devfork``).

Importing FastAPI, SQLAlchemy, asyncpg and the SDK takes seconds on a busy machine; the plugin's
own code takes milliseconds. This process imports the libraries once and forks a child per
(re)load that imports only the plugin's modules, from disk, and serves them with uvicorn.

Protocol: ``spawn`` on stdin forks a child; the answers go to the file descriptor given as the
last argument: ``pid <pid>``, and ``exit <pid> <code>`` when a child ends. EOF on stdin stops
the child and this process.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import traceback
from types import FrameType

PRELOAD = (
    "asyncpg",
    "fastapi",
    "httpx",
    "jinja2",
    "pydantic",
    "sqlalchemy.ext.asyncio",
    "structlog",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "uvicorn",
    "uvicorn.main",
    "uvicorn.lifespan.on",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "plexica_sdk.app",
    "plexica_sdk.events",
)


def _serve(factory: str, host: str, port: int) -> int:
    import uvicorn

    try:
        uvicorn.run(
            factory,
            factory=True,
            host=host,
            port=port,
            ws="none",
            access_log=False,
            log_level="warning",
        )
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - a broken plugin is reported, not raised
        traceback.print_exc()
        return 1
    return 0


def main() -> None:
    factory, host, port, answer_fd = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    # The dev loop decides when everything stops; Ctrl-C reaches it and the child directly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for module in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    child: int | None = None

    def say(line: str) -> None:
        os.write(answer_fd, (line + "\n").encode())

    def reap(signum: int = 0, frame: FrameType | None = None) -> None:
        nonlocal child
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == child:
                child = None
            say(f"exit {pid} {os.waitstatus_to_exitcode(status)}")

    signal.signal(signal.SIGCHLD, reap)
    for line in sys.stdin:
        if line.strip() != "spawn" or child is not None:
            continue
        # Held until the pid is announced, so that its exit is never announced first.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.close(answer_fd)
            code = _serve(factory, host, port)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        child = pid
        say(f"pid {pid}")
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    if child is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGTERM)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, 0)


if __name__ == "__main__":
    main()
