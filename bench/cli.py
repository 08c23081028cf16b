"""CLI start-up: wall and CPU time of ``plexica --help``, ``plexica version`` and commands that
talk to a running ``plexica up`` (``tenant list``, ``plugin list``, ``flag list``).

    .venv/bin/python -m bench.cli [--runs 5] [--data-dir DIR]

Without ``--data-dir`` a ``plexica up`` is started on a temporary data directory (and stopped at
the end). Each command runs ``--runs`` times as ``.venv/bin/plexica`` (the installed script, as
a user runs it); the figures are the medians of the wall time and of the CPU time of the child
(user + system), which is what the load of the machine does not inflate.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._util import wait_http
from plexica.kit.ports import free_port

PLEXICA = str(Path(sys.executable).with_name("plexica"))
COMMANDS = [
    ["--help"],
    ["version"],
    ["tenant", "list"],
    ["plugin", "list"],
    ["flag", "list"],
]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(args: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(runs):
        cpu, start = _cpu(), time.perf_counter()
        subprocess.run([PLEXICA, *args], env=env, check=True, capture_output=True, timeout=120)
        walls.append(time.perf_counter() - start)
        cpus.append(_cpu() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")}
    up = None
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        env["PLEXICA_DATA_DIR"] = str(data_dir)
        if args.data_dir is None:
            port = free_port()
            up = subprocess.Popen(
                [PLEXICA, "up", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            wait_http(f"http://127.0.0.1:{port}/ready")
        try:
            print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
            print(f"{'command':<24} {'wall (median)':>14} {'CPU (median)':>14}")
            for command in COMMANDS:
                wall, cpu = measure(command, env, args.runs)
                name = "plexica " + " ".join(command)
                print(f"{name:<24} {wall:>12.2f} s {cpu:>12.2f} s")
        finally:
            if up is not None:
                os.killpg(up.pid, signal.SIGINT)
                up.wait(timeout=60)


if __name__ == "__main__":
    main()
