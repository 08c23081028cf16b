"""``plexica plugin dev``: time from saving an edit to the edit's answer being served.

    .venv/bin/python -m bench.plugin_dev [--reloads 15]

Scaffolds a plugin (``plexica plugin new``) with one extra route ``/rev``, runs
``plexica plugin dev`` on it against a real PostgreSQL (the test harness's), and rewrites the
route's answer ``--reloads`` times, polling until the new answer is served.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench._servers import harness, migrated_database
from plexica.kit.ports import free_port
from plexica.plugins.scaffold import scaffold

ROUTE = """
    @r.get("/rev")
    async def rev() -> dict[str, int]:
        return {"rev": REV}

    return r
"""


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def write_rev(app_py: Path, base: str, rev: int) -> None:
    app_py.write_text(base.replace("\n    return r\n", ROUTE.replace("REV", str(rev)), 1))


def wait_rev(http: httpx.Client, rev: int, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if http.get("/rev").json() == {"rev": rev}:
                return time.monotonic() - started
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.02)
    raise TimeoutError(f"rev {rev} not served in {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reloads", type=int, default=15)
    args = parser.parse_args()
    with harness(), tempfile.TemporaryDirectory() as tmp:
        url = asyncio.run(migrated_database())
        root = scaffold("benchdev", Path(tmp) / "benchdev")
        app_py = root / "src" / "plexica_benchdev" / "app.py"
        base = app_py.read_text()
        write_rev(app_py, base, 0)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")}
        env["PLEXICA_DATABASE_URL"] = url
        started = time.monotonic()
        log = (Path(tmp) / "dev.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "plexica.cli", "plugin", "dev", str(root), "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2.0) as http:
                wait_rev(http, 0, 120)
                first = time.monotonic() - started
                times = []
                for rev in range(1, args.reloads + 1):
                    write_rev(app_py, base, rev)
                    times.append(wait_rev(http, rev, 60))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            log.close()
        if os.environ.get("BENCH_SHOW_LOG"):
            print((Path(tmp) / "dev.log").read_text())
        ms = [t * 1000 for t in times]
        print(f"first start (platform migrations, register, login, serve): {first:.1f} s")
        print(
            f"edit → new answer served: n={len(ms)}  p50 {pct(ms, 50):.0f} ms"
            f"  p95 {pct(ms, 95):.0f} ms  max {max(ms):.0f} ms"
        )
        print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
