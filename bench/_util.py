"""Shared helpers for the benchmark scripts: free ports, waiting, wrk runs, CPU per process."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


def wait_http(url: str, timeout: float = 90.0, status: int = 200) -> float:
    """Poll ``url`` until it answers ``status``; return the seconds it took."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            if httpx.get(url, timeout=1).status_code == status:
                return time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise TimeoutError(url)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, seconds: int = 10, connections: int = 50, threads: int = 1) -> dict[str, float]:
    """Run wrk against a loopback URL; return rps and latency percentiles in ms."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install --no-install-recommends wrk")
    assert url.startswith("http://127.0.0.1:"), "benchmarks only load loopback"
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": _ms(pct["50"]),
        "p90_ms": _ms(pct["90"]),
        "p99_ms": _ms(pct["99"]),
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(groups: Mapping[int, str], postgres: Mapping[str, str]) -> dict[str, float]:
    """CPU time (user + system, from /proc) so far of each process group in ``groups`` (its
    leader's pid → a name) and of each PostgreSQL in ``postgres`` (its data dir → a name): the
    postmaster has that dir on its command line, its backends are its children. A PostgreSQL
    started by a service (``plexica up``'s) is counted apart from that service's group. Each
    process counts its children that have exited too (a closed connection's backend), else a
    delta between two calls could even be negative."""
    out: dict[str, float] = dict.fromkeys([*groups.values(), *postgres.values()], 0.0)
    procs: dict[int, tuple[int, int, float, bytes]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        used = sum(int(f) for f in fields[11:15]) / TICKS  # utime stime cutime cstime
        procs[int(stat.parent.name)] = (int(fields[1]), int(fields[2]), used, cmdline)
    postmasters = {
        pid: name
        for pid, (*_, cmd) in procs.items()
        for folder, name in postgres.items()
        if folder.encode() in cmd
    }
    for pid, (ppid, pgid, used, _) in procs.items():
        if pid in postmasters or ppid in postmasters:
            out[postmasters[pid] if pid in postmasters else postmasters[ppid]] += used
        elif pgid in groups:
            out[groups[pgid]] += used
    return out
