"""Console and plugin-form flows on loopback (``plexica up``'s single process): what a live
provisioning page costs and how far it lags the saga, the flags pages, and a CRM form round trip
through the shell.

    .venv/bin/python -m bench.console_flows [--samples 20] [--tenants 5] [--database-url URL]

Starts its own embedded PostgreSQL in a temporary folder (or uses --database-url, whose server
must allow CREATE DATABASE) and prints one JSON object per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bench.tenancy import fresh_database, pct
from plexica.app import create_app
from plexica.gateway.embedded import create_edge_app
from plexica.identity import service
from plexica.identity.builtin import BuiltinIdentity
from plexica.kit.db import Database
from plexica.kit.pgserver import EmbeddedPostgres
from plexica.kit.ports import free_port
from plexica.plugins.embedded import mount_plugins
from plexica.plugins.gate import InstallationGate
from plexica.settings import Settings
from plexica.tenants import repository
from plexica.web.app import create_web_app
from plexica_sdk.events import EventBus
from plexica_sdk.logs import configure_logging
from tests.plugins.conftest import CRM_DIR, register_dir
from tests.web.conftest import csrf_of, sign_in

LIVE = {"X-Plexica-Live": "1"}
POLL_SECONDS = 0.4  # live.js's interval


def report(name: str, times: list[float], **extra: Any) -> None:
    print(
        json.dumps(
            {
                "figure": name,
                "samples": len(times),
                "median_ms": round(statistics.median(times), 1),
                "p95_ms": round(pct(times, 95), 1),
                **extra,
            }
        ),
        flush=True,
    )


async def timed(samples: int, call: Callable[[], Awaitable[None]]) -> list[float]:
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        await call()
        out.append((time.perf_counter() - start) * 1000)
    return out


async def create(ops: httpx.AsyncClient, slug: str) -> str:
    page = await ops.get("/console/tenants")
    made = await ops.post(
        "/console/tenants",
        data={"csrf": csrf_of(page.text), "slug": slug, "name": "Bench",
              "admin_email": f"admin@{slug}.example"},
    )  # fmt: skip
    assert made.status_code == 303, made.text
    return str(made.headers["location"])


async def live_provisioning(db: Database, ops: httpx.AsyncClient, tenants: int) -> list[str]:
    """Creates tenants as the console does and polls like live.js: the time to the first
    answer, to the page saying ready, and the lag behind the saga's own end."""
    accepted, ready, lag, ticks = [], [], [], []
    slugs = []
    for _ in range(tenants):
        slug = f"bench{uuid.uuid4().hex[:6]}"
        start = time.perf_counter()
        progress = await create(ops, slug)
        accepted.append((time.perf_counter() - start) * 1000)
        while True:
            t0 = time.perf_counter()
            tick = await ops.get(progress, headers=LIVE)
            ticks.append((time.perf_counter() - t0) * 1000)
            if tick.headers.get("X-Plexica-Live") == "done":
                break
            await asyncio.sleep(POLL_SECONDS)
        shown, shown_wall = time.perf_counter(), time.time()
        ready.append((shown - start) * 1000)
        async with db.session() as session:
            tenant = await repository.get_by_slug(session, slug)
            assert tenant is not None
            assert tenant.state == "active", tenant
            history = await repository.history(session, tenant.id)
        slugs.append(slug)
        # The saga ended with the move to active; the page showed it at ``shown_wall``.
        lag.append((shown_wall - history[-1].at.timestamp()) * 1000)
    report("create → 303 to the progress page", accepted)
    report("create → progress page says ready (polling every 400 ms)", ready)
    report("page says ready minus saga ended (display lag)", lag)
    report("one live poll (region only)", ticks)
    return slugs


async def bench(server_url: str, samples: int, tenants: int) -> None:
    db: Database = await fresh_database(server_url, "plexica_bench_console")
    url_db = str(db.engine.url.render_as_string(hide_password=False))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The edge's per-user limit (100/min) would otherwise throttle the loop itself.
    settings = Settings(
        database_url=url_db, public_url=base, port=port, log_level="WARNING",
        gateway_rate_limit=1_000_000,
    )  # fmt: skip
    buses: dict[str, EventBus] = {}
    core = create_app(settings, event_buses=buses)
    plugins = mount_plugins(core, settings)
    edge = create_edge_app(core, create_web_app(settings), plugins, InstallationGate(core))
    server = uvicorn.Server(uvicorn.Config(edge, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        await register_dir(db, CRM_DIR)
        async with db.session() as s:
            await service.ensure_realm(s, service.OPERATOR_REALM, None, base)
        email, password = "bench-ops@example.com", service.generate_password()
        await BuiltinIdentity(db, base).create_user(
            service.OPERATOR_REALM, email, password, frozenset({"super_admin"})
        )
        async with httpx.AsyncClient(base_url=base, timeout=30) as ops:
            await sign_in(ops, "/login/start?operator=1", email, password)
            slugs = await live_provisioning(db, ops, tenants)
            page = await ops.get("/console/flags")
            made = await ops.post(
                "/console/flags",
                data={"csrf": csrf_of(page.text), "key": "bench.flag", "default": "off"},
            )
            assert made.status_code == 303, made.text

            async def flags_page() -> None:
                assert (await ops.get("/console/flags")).status_code == 200

            async def flag_page() -> None:
                assert (await ops.get("/console/flags/bench.flag")).status_code == 200

            async def toggle() -> None:
                done = await ops.post(
                    "/console/flags/bench.flag/toggle?enabled=false",
                    data={"csrf": csrf_of(page.text)},
                )
                assert done.status_code == 303, done.text

            report("GET /console/flags", await timed(samples, flags_page))
            report("GET /console/flags/<key>", await timed(samples, flag_page))
            report("toggle (POST → core PATCH → audit → 303)", await timed(samples, toggle))

        slug = slugs[0]
        admin = f"admin@{slug}.example"
        secret = service.generate_password()
        async with db.session() as s:
            await service.set_password(s, f"plexica-{slug}", admin, secret)
        async with httpx.AsyncClient(base_url=base, timeout=30) as me:
            await sign_in(me, f"/login/start?tenant={slug}", admin, secret)
            page = await me.get("/t/admin/plugins")
            await me.post("/t/admin/plugins", data={"csrf": csrf_of(page.text), "plugin_id": "crm"})
            csrf = csrf_of((await me.get("/t/p/crm/contacts")).text)

            async def add_contact() -> None:
                done = await me.post(
                    "/t/p/crm/ui/contacts",
                    data={"csrf": csrf, "first_name": "Bench", "email": "b@example.com"},
                )
                assert done.status_code == 303, done.text
                assert (await me.get(done.headers["location"])).status_code == 200

            async def refused() -> None:
                done = await me.post(
                    "/t/p/crm/ui/contacts", data={"csrf": csrf, "first_name": "", "email": "x"}
                )
                assert done.status_code == 422, (done.status_code, done.text[:300])

            report("CRM add contact: POST → 303 → page", await timed(samples, add_contact))
            report("CRM form refused (422 with field errors)", await timed(samples, refused))
    finally:
        server.should_exit = True
        thread.join(10)
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--tenants", type=int, default=5)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    configure_logging("bench", "WARNING", "console")
    pg: EmbeddedPostgres | None = None
    pg_dir = Path(tempfile.mkdtemp(prefix="plexica-bench-pg-"))
    server = args.database_url
    if server is None:
        pg = EmbeddedPostgres(pg_dir, database="postgres")
        pg.start()
        server = pg.url
    try:
        asyncio.run(bench(server, args.samples, args.tenants))
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
