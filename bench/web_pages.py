"""Web shell figures: server time of the main pages, signed in, on loopback (``plexica up``'s
single process: core, built-in OIDC provider, CRM and shell on one port).

    .venv/bin/python -m bench.web_pages [--samples 30] [--database-url URL]

Starts its own embedded PostgreSQL in a temporary folder (or uses --database-url, whose server
must allow CREATE DATABASE) and prints one JSON object per page: median and p95 of the time to
the full HTML answer, and its size.
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
from pathlib import Path

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
from plexica.web.app import create_web_app
from plexica_sdk.events import EventBus
from plexica_sdk.logs import configure_logging
from tests.plugins.conftest import CRM_DIR, register_dir
from tests.web.conftest import csrf_of, sign_in, until_provisioned

OPERATOR_PAGES = ["/login", "/console/tenants", "/console/plugins", "/console/health"]
TENANT_PAGES = ["/t", "/t/p/crm/contacts", "/t/p/crm/deals", "/t/admin/plugins"]


async def measure(client: httpx.AsyncClient, path: str, samples: int) -> None:
    times: list[float] = []
    size = 0
    for _ in range(samples):
        start = time.perf_counter()
        answer = await client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)
        size = len(answer.content)
    print(
        json.dumps(
            {
                "page": path,
                "samples": samples,
                "median_ms": round(statistics.median(times), 1),
                "p95_ms": round(pct(times, 95), 1),
                "bytes": size,
            }
        ),
        flush=True,
    )


async def bench(server_url: str, samples: int) -> None:
    db: Database = await fresh_database(server_url, "plexica_bench_web")
    url_db = str(db.engine.url.render_as_string(hide_password=False))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(database_url=url_db, public_url=base, port=port, log_level="WARNING")
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
        slug = f"bench{uuid.uuid4().hex[:6]}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as ops:
            await sign_in(ops, "/login/start?operator=1", email, password)
            page = await ops.get("/console/tenants")
            made = await ops.post(
                "/console/tenants",
                data={"csrf": csrf_of(page.text), "slug": slug, "name": "Bench",
                      "admin_email": f"admin@{slug}.example"},
            )  # fmt: skip
            if made.status_code == 303 and "/provisioning/" in made.headers["location"]:
                await until_provisioned(ops, made.headers["location"])
            for path in OPERATOR_PAGES:
                await measure(ops, path, samples)
        admin = f"admin@{slug}.example"
        secret = service.generate_password()
        async with db.session() as s:
            await service.set_password(s, f"plexica-{slug}", admin, secret)
        async with httpx.AsyncClient(base_url=base, timeout=30) as me:
            await sign_in(me, f"/login/start?tenant={slug}", admin, secret)
            page = await me.get("/t/admin/plugins")
            await me.post("/t/admin/plugins", data={"csrf": csrf_of(page.text), "plugin_id": "crm"})
            for path in TENANT_PAGES:
                await measure(me, path, samples)
    finally:
        server.should_exit = True
        thread.join(10)
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=30)
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
        asyncio.run(bench(server, args.samples))
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
