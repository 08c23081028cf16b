"""Chaos on the local distributed topology: under steady load through the edge, kill -9 and bring
back, in turn, Redis, the CRM plugin, the core and PostgreSQL; print per fault the requests that
failed by status, acknowledged writes lost, and the time to recover.

    .venv/bin/python -m bench.chaos [--rate 40] [--settle 5] [--core-replicas 2]

Starts ``deploy/local`` (PostgreSQL, Redis, two cores, worker, web, the CRM as its own process,
Traefik) in a temporary folder, creates a tenant with the CRM, then sends ``--rate`` requests/s
through Traefik: reads (``GET /v1/contacts``) and one write in five (``POST /v1/contacts``).
Services, Redis and Traefik come back through the topology's supervisor (restart with backoff,
ADR 0146); PostgreSQL is started again by this script at once, as its StatefulSet would. For
each fault: "back" is when the killed server answers again; "recovered" is the first of 10
successive successful requests after that; the window counted is from the kill to recovery.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.gateway_edge import tenant_token
from deploy.local.topology import LocalTopology

SLUG = "benchedge"  # tenant_token's tenant
LIMITS = f"tenant:{SLUG}/plugin:crm=10000000,tenant:{SLUG}/core=10000000"
STREAK = 10


@dataclass
class Shot:
    sent: float
    write: bool
    status: str  # HTTP status, or the transport error's name
    contact: str | None = None


@dataclass
class Load:
    url: str
    headers: dict[str, str]
    rate: float
    shots: list[Shot] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    async def one(self, http: httpx.AsyncClient, n: int) -> None:
        write = n % 5 == 0
        sent = time.monotonic()
        contact = None
        try:
            if write:
                r = await http.post(
                    self.url,
                    json={"first_name": f"Chaos {n}", "email": f"c{n}@chaos.example"},
                    headers=self.headers,
                )
                if r.status_code == 201:
                    contact = str(r.json()["id"])
            else:
                r = await http.get(self.url + "?limit=5", headers=self.headers)
            status = str(r.status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        self.shots.append(Shot(sent, write, status, contact))

    async def run(self) -> None:
        """Open loop: a request every 1/rate s whatever the answers (none waits for another)."""
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(timeout=10.0, limits=limits) as http:
            tasks: set[asyncio.Task[None]] = set()
            began, n = time.monotonic(), 0
            while not self.stop.is_set():
                task = asyncio.create_task(self.one(http, n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
                await asyncio.sleep(max(0.0, began + n / self.rate - time.monotonic()))
            await asyncio.gather(*tasks)

    def ok_streak_after(self, since: float) -> float | None:
        ordered = sorted((s for s in self.shots if s.sent >= since), key=lambda s: s.sent)
        run = 0
        for shot in ordered:
            run = run + 1 if shot.status.startswith("2") else 0
            if run == STREAK:
                return shot.sent
        return None


def wait(predicate: Callable[[], bool], timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)
    return time.monotonic()


def answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=1).status_code == 200
    return False


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def kill_service(topology: LocalTopology, name: str) -> Callable[[], bool]:
    process = topology.processes[name]
    os.killpg(process.proc.pid, signal.SIGKILL)
    process.proc.wait(30)
    if name == "redis":
        return lambda: process.proc.poll() is None and port_open(process.port)
    return lambda: process.proc.poll() is None and answers(process.url + "/ready")


def kill_postgres(topology: LocalTopology) -> Callable[[], bool]:
    pg = topology._pg
    assert pg is not None
    pid = pg.postmaster_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        wait(lambda: not pg.running(), 30)
    for _ in range(50):  # its backends exit when they notice the postmaster is gone
        try:
            pg.start()
            break
        except Exception:
            time.sleep(0.2)
    return pg.running


def fault_row(load: Load, name: str, killed: float, back: float) -> dict[str, object]:
    recovered = load.ok_streak_after(back)
    end = recovered if recovered is not None else time.monotonic()
    window = [s for s in load.shots if killed <= s.sent <= end]
    failed = Counter(s.status for s in window if not s.status.startswith("2"))
    return {
        "fault": name,
        "requests": len(window),
        "failed": dict(sorted(failed.items())),
        "down_s": round(back - killed, 1),
        "recover_s": round(end - back, 1) if recovered is not None else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--settle", type=float, default=5.0, help="steady seconds between faults")
    parser.add_argument(
        "--faults", default="redis,plugin-crm,core,postgres", help="comma-separated, in order"
    )
    parser.add_argument("--workdir", type=Path, help="keep the topology's data and logs here")
    parser.add_argument(
        "--core-replicas", type=int, default=2, help="core instances behind Traefik (ADR 0177)"
    )
    args = parser.parse_args()
    with ExitStack() as stack:
        work = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="plexica-chaos-"))
        )
        topology = stack.enter_context(
            LocalTopology(
                work / "topology",
                plugins=["crm"],
                core_replicas=args.core_replicas,
                extra_env={"PLEXICA_GATEWAY_RATE_LIMITS": LIMITS},
            )
        )
        env = topology.cli_env()
        auth = {"Authorization": f"Bearer {tenant_token(env)}"}
        load = Load(f"{env['PLEXICA_PUBLIC_URL']}/api/plugins/crm/v1/contacts", auth, args.rate)
        supervising = threading.Event()

        def supervise() -> None:
            while not supervising.is_set():
                topology.supervise()
                time.sleep(0.2)

        threads = [
            threading.Thread(target=lambda: asyncio.run(load.run()), daemon=True),
            threading.Thread(target=supervise, daemon=True),
        ]
        for t in threads:
            t.start()
        rows: list[dict[str, object]] = []
        faults: list[tuple[str, float, float]] = []
        try:
            began = time.monotonic()
            time.sleep(args.settle)
            quiet = [s for s in load.shots if s.sent >= began]
            rows.append(
                {
                    "fault": "none (baseline)",
                    "requests": len(quiet),
                    "failed": dict(Counter(s.status for s in quiet if s.status[0] != "2")),
                    "down_s": 0.0,
                    "recover_s": 0.0,
                }
            )
            for name in args.faults.split(","):
                killed = time.monotonic()
                back_when = (
                    kill_postgres(topology) if name == "postgres" else kill_service(topology, name)
                )
                back = wait(back_when)
                wait(lambda b=back: load.ok_streak_after(b) is not None, 120)  # type: ignore[misc]
                faults.append((name, killed, back))
                print(f"{name}: back after {back - killed:.1f} s", file=sys.stderr, flush=True)
                time.sleep(args.settle)
        finally:
            load.stop.set()
            threads[0].join(60)
            supervising.set()
        # Counted once every answer is in: slow ones arrive after the recovery was seen.
        rows += [fault_row(load, *fault) for fault in faults]
        acknowledged = {s.contact for s in load.shots if s.contact}
        listed: set[str] = set()
        offset = 0
        while True:
            page = httpx.get(
                load.url, params={"limit": 100, "offset": offset}, headers=auth, timeout=30
            ).json()
            items = page["items"] if isinstance(page, dict) else page
            listed |= {str(c["id"]) for c in items}
            if len(items) < 100:
                break
            offset += 100
        total = Counter(s.status for s in load.shots)
        print(
            json.dumps(
                {
                    "rate": args.rate,
                    "requests": len(load.shots),
                    "statuses": dict(sorted(total.items())),
                    "writes_acknowledged": len(acknowledged),
                    "writes_lost": len(acknowledged - listed),
                    "faults": rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
