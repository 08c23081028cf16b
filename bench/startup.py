"""Cold and warm ``plexica up`` → ``/ready`` time.

    .venv/bin/python -m bench.startup [--runs 3]

Cold: a new data directory (initdb, migrations). Warm: the same directory again.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._util import wait_http
from plexica.kit.pgserver import free_port


def one(data_dir: Path) -> float:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "plexica.cli",
            "up",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/ready")
        return time.perf_counter() - start
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cold, warm = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp) / "data"
            cold.append(one(data_dir))
            warm.append(one(data_dir))
    for name, xs in (("cold", cold), ("warm", warm)):
        print(
            f"{name}: median {statistics.median(xs):.2f} s  min {min(xs):.2f} s  max {max(xs):.2f} s"
        )


if __name__ == "__main__":
    main()
