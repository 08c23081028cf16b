"""vegeta, a constant-rate (open-loop) HTTP load generator in Go, for the benchmarks: a request
every 1/rate s whatever the answers, each with the time it was due to be sent.

``scripts/install-bench-tools`` builds it into the project's ``.venv/bin`` on first use (Go must
be on the PATH); nothing of it is committed."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tests.support.openloop import Shot

ROOT = Path(__file__).resolve().parent.parent


def binary() -> str:
    """The pinned vegeta, built first by ``scripts/install-bench-tools`` when it is missing."""
    subprocess.run([str(ROOT / "scripts" / "install-bench-tools")], check=True)
    return str(ROOT / ".venv" / "bin" / "vegeta")


@dataclass
class Attack:
    shots: list[Shot] = field(default_factory=list)  # filled when the attack ends


def _decode(results: Path) -> list[Shot]:
    """Every request, ``sent`` in wall-clock seconds; a failure's Retry-After in ``detail``."""
    out = subprocess.run(
        [binary(), "encode", "-to", "json", str(results)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    shots = []
    for line in out.splitlines():
        r = json.loads(line)
        status = str(r["code"]) if r["code"] else (r["error"] or "no answer")
        headers = {k.lower(): v for k, v in (r.get("headers") or {}).items()}
        retry = headers.get("retry-after")
        shots.append(
            Shot(
                sent=_epoch(r["timestamp"]),
                status=status,
                seconds=r["latency"] / 1e9,
                detail=f"retry-after={retry[0] if retry else None}",
            )
        )
    return shots


def _epoch(stamp: str) -> float:
    # RFC 3339 with nanoseconds; Python's parser takes at most microseconds.
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", stamp)).timestamp()


@contextmanager
def attacking(url: str, headers: dict[str, str], rate: float) -> Iterator[Attack]:
    """GET ``url`` at ``rate`` per second until the block ends."""
    with tempfile.TemporaryDirectory(prefix="plexica-vegeta-") as tmp:
        attack, results = Attack(), Path(tmp) / "results.bin"
        args = [binary(), "attack", f"-rate={rate:g}/s", "-duration=0", "-timeout=30s"]
        args += [f"-header={k}: {v}" for k, v in headers.items()]
        proc = subprocess.Popen([*args, f"-output={results}"], stdin=subprocess.PIPE, text=True)
        assert proc.stdin is not None
        proc.stdin.write(f"GET {url}\n")
        proc.stdin.close()
        try:
            yield attack
        finally:
            proc.send_signal(signal.SIGINT)  # stops sending and writes what it has
            proc.wait(60)
        attack.shots = _decode(results)
