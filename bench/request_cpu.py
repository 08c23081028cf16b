"""CPU per request of a service's app, in process: the ASGI app called directly (no HTTP server,
no network client), one request at a time, timed with the process's CPU clock.

    .venv/bin/python -m bench.request_cpu [--requests 3000] [--rounds 5] [--redis]
        [--profile decision|crm_contact|core_info] [--top 35]

What it isolates is the per-request cost of our stack inside a service — middleware, logging,
metrics, routing, dependencies, serialisation, the database session of a plugin route — which
the same figure from a real server (``bench.request_overhead``) carries on top of the server's
HTTP handling and the machine's noise. Targets, each in its own app instance of this process:

- ``core_info``: ``GET /v1/info`` on the core (the framework floor);
- ``decision``: ``GET /v1/gateway/authorize`` on the core with a tenant token and a CRM target
  (token cache warm, limiter in memory, or in a Redis the harness starts with ``--redis``);
- ``crm_contact``: ``GET /v1/contacts/{id}`` on the CRM (its token check, tenant session, one
  row, JSON), on a PostgreSQL of the SDK's test kit.

The access log is written as in production (JSON lines on stderr, here sent to /dev/null). CPU
time counts every thread of this process (the event loop, the thread pool) but not PostgreSQL's
or Redis's. ``--profile T`` runs ``T`` under cProfile (the event loop thread's CPU clock)
afterwards and prints the top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from bench.tenancy import fresh_database
from plexica.app import create_app as create_core
from plexica.kit.pgserver import EmbeddedPostgres
from plexica.settings import Settings
from plexica_crm.app import create_app as create_crm
from plexica_sdk.app import PluginConfig
from plexica_sdk.auth import JwtVerifier
from plexica_sdk.logs import configure_logging
from plexica_sdk.testing import AUDIENCE, KitTenant, PluginTestKit
from tests.support.tokens import StaticIssuers

CRM_DIR = Path(__file__).resolve().parents[1] / "plugins" / "crm"
Call = Callable[[], Awaitable[int]]


def asgi_call(app: FastAPI, method: str, path: str, headers: dict[str, str]) -> Call:
    """One request through the app as a server would make it; returns the status."""
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"host", b"127.0.0.1"))
    path_only, _, query = path.partition("?")

    async def call() -> int:
        status = 0
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path_only,
            "raw_path": path_only.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": list(raw),
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
        }
        await app(scope, receive, send)
        return status

    return call


@dataclass
class Sample:
    cpu_us: float  # process CPU (all threads) per request
    loop_us: float  # the event loop thread's CPU per request
    wall_us: float


async def cpu_per_request(call: Call, n: int) -> Sample:
    """CPU per request, ``n`` in a row."""
    cpu, loop, wall = time.process_time(), time.thread_time(), time.perf_counter()
    for _ in range(n):
        status = await call()
        if status != 200:
            raise RuntimeError(f"status {status}")
    return Sample(
        (time.process_time() - cpu) * 1e6 / n,
        (time.thread_time() - loop) * 1e6 / n,
        (time.perf_counter() - wall) * 1e6 / n,
    )


async def idle_cpu_per_second() -> float:
    """CPU the process burns with no request (pollers, refresh tasks, the kit's idle server)."""
    cpu = time.process_time()
    await asyncio.sleep(2)
    return (time.process_time() - cpu) / 2


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with app.router.lifespan_context(app):
        yield


async def core_targets(
    stack: AsyncExitStack, pg_url: str, work: Path, redis_url: str | None
) -> dict[str, Call]:
    db = await fresh_database(pg_url, "bench_request_cpu")
    await db.dispose()
    settings = Settings(
        database_url=pg_url.rsplit("/", 1)[0] + "/bench_request_cpu",
        data_dir=work / "core",
        redis_url=redis_url,
        gateway_rate_limit=1_000_000_000,  # the decision's work, not refusals
    )
    issuers = StaticIssuers()
    app = create_core(settings, verifier=issuers.verifier())
    await stack.enter_async_context(lifespan(app))
    http = await stack.enter_async_context(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://core")
    )
    slug = "bench-" + uuid.uuid4().hex[:6]
    r = await http.post(
        "/v1/tenants",
        json={"slug": slug, "name": "Bench", "admin_email": "a@bench.example"},
        headers=issuers.operator_headers(),
    )
    r.raise_for_status()
    issuers.add_tenant(uuid.UUID(r.json()["id"]), slug)
    token = issuers.token(f"plexica-{slug}", roles=["member"], ttl=3600)
    decision = asgi_call(
        app,
        "GET",
        "/v1/gateway/authorize",
        {
            "Authorization": f"Bearer {token}",
            "X-Forwarded-Method": "GET",
            "X-Forwarded-Uri": "/api/core/v1/tenant",
            "X-Forwarded-Host": "bench",
        },
    )
    deadline = time.monotonic() + 60
    while await decision() != 200:  # tenant creation finishes in the background
        if time.monotonic() > deadline:
            raise RuntimeError("the tenant did not become active")
        await asyncio.sleep(0.1)
    return {"core_info": asgi_call(app, "GET", "/v1/info", {}), "decision": decision}


async def crm_target(
    stack: AsyncExitStack, kit: PluginTestKit, tenant: KitTenant
) -> dict[str, Call]:
    assert kit.database_url is not None
    app = create_crm(
        PluginConfig(database_url=kit.database_url, verifier=JwtVerifier(kit.issuers, AUDIENCE))
    )
    await stack.enter_async_context(lifespan(app))
    auth = {"Authorization": f"Bearer {kit.token(tenant)}"}
    http = await stack.enter_async_context(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://crm")
    )
    r = await http.post(
        "/v1/contacts",
        json={"first_name": "Ada", "last_name": "Lovelace", "email": "ada@bench.example"},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    return {"crm_contact": asgi_call(app, "GET", f"/v1/contacts/{r.json()['id']}", auth)}


async def measure_targets(args: argparse.Namespace, targets: dict[str, Call]) -> None:
    for call in targets.values():
        await cpu_per_request(call, 200)  # warm-up: caches, pools, first compilations
    idle = await idle_cpu_per_second()
    rounds: dict[str, list[Sample]] = {name: [] for name in targets}
    for _ in range(args.rounds):
        for name, call in targets.items():
            rounds[name].append(await cpu_per_request(call, args.requests))
    load = Path("/proc/loadavg").read_text().split()[0]
    for name, samples in rounds.items():
        cpu = statistics.median(s.cpu_us for s in samples)
        wall = statistics.median(s.wall_us for s in samples)
        print(
            json.dumps(
                {
                    "target": name,
                    "cpu_us_per_request": round(cpu),
                    "net_cpu_us_per_request": round(cpu - idle * wall),
                    "loop_thread_cpu_us": round(statistics.median(s.loop_us for s in samples)),
                    "wall_us_per_request": round(wall),
                    "idle_cpu_ms_per_s": round(idle * 1000, 1),
                    "rounds_cpu_us": [round(s.cpu_us) for s in samples],
                    "requests": args.requests,
                    "limiter": "redis" if args.redis_url else "memory",
                    "load_average": load,
                }
            ),
            flush=True,
        )
    if args.profile in targets:
        call = targets[args.profile]
        if args.py_spy:
            print(await sampled(args, call))
            return
        profiler = cProfile.Profile(time.thread_time)  # CPU, not wall time
        profiler.enable()
        await cpu_per_request(call, args.requests)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
        print(out.getvalue())


async def sampled(args: argparse.Namespace, call: Call) -> str:
    """py-spy on this process while ``call`` runs: the share of the samples taken inside a
    request (the event loop waiting in ``select`` is left out) per function, inclusive."""
    out = Path(tempfile.mkdtemp(prefix="plexica-spy-")) / "stacks.txt"
    spy = subprocess.Popen(
        [args.py_spy, "record", "--pid", str(os.getpid()), "--rate", "500", "--format", "raw",
         "--output", str(out), "--duration", str(args.spy_seconds), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(1)  # py-spy attaches
    deadline = time.monotonic() + args.spy_seconds
    while time.monotonic() < deadline:
        await cpu_per_request(call, 50)
    await asyncio.to_thread(spy.wait, 30)
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        inside = [i for i, f in enumerate(frames) if f.startswith("cpu_per_request ")]
        if not inside:
            continue
        frames = frames[inside[0] + 1 :]
        n = int(count)
        total += n
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    shutil.rmtree(out.parent, ignore_errors=True)
    lines = [f"samples inside requests: {total}", "", "incl %  function"]
    lines += [f"{100 * n / max(total, 1):6.1f}  {f}" for f, n in incl.most_common(args.top)]
    lines += ["", "self %  function"]
    lines += [f"{100 * n / max(total, 1):6.1f}  {f}" for f, n in own.most_common(args.top)]
    return "\n".join(lines)


async def measure(
    args: argparse.Namespace, pg_url: str, work: Path, kit: PluginTestKit, tenant: KitTenant
) -> None:
    # One service at a time, as in a deployment: the core's background tasks are not running
    # while the CRM is measured.
    wanted = set(args.targets.split(","))
    if wanted & {"core_info", "decision"}:
        async with AsyncExitStack() as stack:
            targets = await core_targets(stack, pg_url, work, args.redis_url)
            await measure_targets(args, {k: v for k, v in targets.items() if k in wanted})
    if "crm_contact" in wanted:
        async with AsyncExitStack() as stack:
            await measure_targets(args, await crm_target(stack, kit, tenant))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="per round and target")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis", action="store_true", help="start a Redis for the limiter")
    parser.add_argument("--profile", choices=["core_info", "decision", "crm_contact"])
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument(
        "--py-spy", default=None, help="profile with py-spy (its path), not cProfile"
    )
    parser.add_argument("--spy-seconds", type=int, default=15)
    parser.add_argument(
        "--targets", default="core_info,decision,crm_contact", help="comma-separated subset"
    )
    args = parser.parse_args()
    args.redis_url = None
    # Production writes JSON access lines to stderr; here they cost the same and go nowhere.
    real_stderr = sys.stderr
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the whole run
    try:
        configure_logging("bench", "INFO", "json")
    finally:
        sys.stderr = real_stderr
    with ExitStack() as stack:
        if args.redis:
            from bench._servers import harness
            from tests.harness import servers

            stack.enter_context(harness())
            args.redis_url = servers.ensure("redis")["url"]
        work = Path(tempfile.mkdtemp(prefix="plexica-bench-cpu-"))
        stack.callback(shutil.rmtree, work, True)
        pg = EmbeddedPostgres(work / "pg", database="postgres")
        pg.start()
        stack.callback(pg.stop)
        kit = stack.enter_context(PluginTestKit(CRM_DIR, create_crm, database_url=pg.url))
        tenant = kit.tenant("bench")  # its own event loop: before ours
        asyncio.run(measure(args, pg.url, work, kit, tenant))


if __name__ == "__main__":
    main()
