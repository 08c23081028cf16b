"""Cold and warm ``plexica up`` → ``/ready`` time, where the seconds go, and memory.

    .venv/bin/python -m bench.startup [--runs 3]

Cold: a new data directory (initdb, migrations). Warm: the same directory again. For each run
``plexica up`` logs its phases (``startup_phase``); the median of each is printed, with the
CPU seconds the platform process spent until ready (what a busy machine does not inflate, unlike
the wall-clock figures) and the resident memory of each process once ready (the platform
process and the embedded PostgreSQL's).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import psutil

from bench._util import wait_http
from plexica.kit.ports import free_port


def _rss(pid: int, data_dir: Path) -> dict[str, float]:
    """RSS in MB of the platform process and of the embedded PostgreSQL serving ``data_dir``
    (postmaster and its children summed: shared buffers are counted in each)."""
    out: dict[str, float] = defaultdict(float)
    out["plexica up (core, web, edge, plugins)"] = psutil.Process(pid).memory_info().rss / 2**20
    for proc in psutil.process_iter(["cmdline"]):
        if str(data_dir) in " ".join(proc.info["cmdline"] or ()) and proc.pid != pid:
            with contextlib.suppress(psutil.Error):
                for p in [proc, *proc.children(recursive=True)]:
                    out["embedded PostgreSQL (all its processes)"] += p.memory_info().rss / 2**20
    return out


Run = tuple[float, float, dict[str, float], dict[str, float]]


def one(data_dir: Path, log: Path) -> Run:
    """Seconds to ready, CPU seconds of the platform process until then, phases, RSS."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_")}
    env |= {"PLEXICA_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "plexica.cli", "up", "--port", str(port),
             "--data-dir", str(data_dir)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_http(f"http://127.0.0.1:{port}/ready", timeout=300)
            ready = time.perf_counter() - start
            times = psutil.Process(proc.pid).cpu_times()
            cpu = times.user + times.system
            rss = _rss(proc.pid, data_dir)
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
    phases: dict[str, float] = {}
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == "startup_phase":
                phases[str(entry["phase"])] = float(entry["seconds"])
    return ready, cpu, phases, rss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results: dict[str, list[Run]] = {
        "cold": [],
        "warm": [],
    }
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp) / "data"
            results["cold"].append(one(data_dir, Path(tmp) / "cold.log"))
            results["warm"].append(one(data_dir, Path(tmp) / "warm.log"))
    for name, runs in results.items():
        xs = [r[0] for r in runs]
        print(
            f"{name}: ready median {statistics.median(xs):.2f} s"
            f"  min {min(xs):.2f} s  max {max(xs):.2f} s"
            f"  CPU to ready median {statistics.median(r[1] for r in runs):.2f} s"
        )
        for phase in runs[0][2]:
            values = [r[2][phase] for r in runs if phase in r[2]]
            print(f"  {phase:28} median {statistics.median(values):6.2f} s")
        for proc in runs[0][3]:
            values = [r[3][proc] for r in runs if proc in r[3]]
            print(f"  RSS {proc:40} median {statistics.median(values):6.1f} MB")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
