"""uvicorn vs granian on the same endpoint of the same app, same machine, same run.

.venv/bin/python -m bench.asgi_servers [--seconds 10] [--connections 50]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from bench._util import wait_http, wrk
from plexica.kit.ports import free_port


def _uvicorn(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "bench.asgi_app:app", "--host", "127.0.0.1",
        "--port", str(port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def _granian(port: int) -> list[str]:
    return [
        sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
        "--port", str(port), "--log-level", "warning", "--no-ws", "bench.asgi_app:app",
    ]  # fmt: skip


SERVERS = {"uvicorn": _uvicorn, "granian": _granian}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")}
    env["PLEXICA_LOG_LEVEL"] = "WARNING"
    print(
        f"GET /health, 1 worker each, wrk 1 thread {args.connections} connections {args.seconds}s"
    )
    print(f"{'server':<8} {'rps':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for name, cmd in SERVERS.items():
        port = free_port()
        proc = subprocess.Popen(cmd(port), env=env, start_new_session=True)
        try:
            wait_http(f"http://127.0.0.1:{port}/health")
            wrk(f"http://127.0.0.1:{port}/health", seconds=2, connections=args.connections)
            r = wrk(f"http://127.0.0.1:{port}/health", args.seconds, args.connections)
            print(
                f"{name:<8} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p90_ms']:>8.2f} {r['p99_ms']:>8.2f}"
            )
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
