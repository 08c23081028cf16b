"""Tenancy figures: provisioning latency vs fleet size, fleet migrations, tenant-context cost.

    .venv/bin/python -m bench.tenancy [--sizes 10,100,2000] [--fleet 100,1000] [--samples 20]

Starts its own embedded PostgreSQL in a temporary folder (or uses --database-url, whose server
must allow CREATE DATABASE) and prints one JSON object per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from fastapi import APIRouter
from sqlalchemy import text

from plexica.app import create_app
from plexica.kit.db import Database
from plexica.kit.migrate import MIGRATIONS, heads, upgrade_platform, upgrade_schema
from plexica.kit.pgserver import EmbeddedPostgres
from plexica.kit.provisioning import TenantRef
from plexica.kit.security import PrincipalDep
from plexica.kit.state import started, state_of
from plexica.settings import Settings
from plexica.tenants.context import TenantDep, TenantSessionDep
from plexica.tenants.fleet import migrate_fleet
from plexica.tenants.schemas import TenantCreate
from plexica.tenants.service import TenantService
from plexica_sdk.logs import configure_logging
from tests.support.tokens import StaticIssuers

TRIVIAL = '''"""Throwaway revision of the benchmark.

Revision ID: bench0002
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision = "bench0002"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("settings", sa.Column("bench_note", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("settings", "bench_note")
'''


def report(name: str, **figures: Any) -> None:
    print(json.dumps({"bench": name, **figures}), flush=True)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def fresh_database(server_url: str, name: str) -> Database:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = server_url.rsplit("/", 1)[0] + "/" + name
    db = Database(Settings(database_url=url).sqlalchemy_url, pool_size=10)
    await upgrade_platform(db)
    return db


def body(slug: str) -> TenantCreate:
    return TenantCreate(slug=slug, name=slug, admin_email=f"admin@{slug}.example")


async def fill(
    service: TenantService, prefix: str, start: int, stop: int, workers: int = 6
) -> float:
    """Create tenants ``prefix-start`` .. ``prefix-(stop-1)`` through the service, in parallel."""
    gate = asyncio.Semaphore(workers)
    began = time.perf_counter()

    async def one(i: int) -> None:
        async with gate:
            await service.create(body(f"{prefix}-{i:05d}"))

    await asyncio.gather(*(one(i) for i in range(start, stop)))
    return time.perf_counter() - began


async def count(db: Database) -> int:
    async with db.session() as s:
        return int((await s.execute(text("SELECT count(*) FROM platform.tenants"))).scalar_one())


async def bench_provisioning(server: str, sizes: list[int], samples: int) -> None:
    db = await fresh_database(server, "bench_provisioning")
    service = TenantService(db)
    try:
        existing = 0
        for size in sizes:
            if size > existing:
                took = await fill(service, "fill", existing, size)
                report("bulk_fill", tenants=size - existing, seconds=round(took, 1))
                existing = size
            times = []
            for _ in range(samples):
                began = time.perf_counter()
                await service.create(body(f"m-{uuid.uuid4().hex[:12]}"))
                times.append((time.perf_counter() - began) * 1000)
            report(
                "provisioning",
                existing_tenants=await count(db) - samples,
                samples=samples,
                p50_ms=round(pct(times, 50), 1),
                p95_ms=round(pct(times, 95), 1),
                max_ms=round(max(times), 1),
            )
    finally:
        await db.dispose()


async def bench_schema_creation(server: str, samples: int) -> None:
    """Creating one tenant schema from the head model (and stamping it) vs replaying the tree."""
    db = await fresh_database(server, "bench_schema")
    step = TenantService(db).schema_step
    try:
        model, replay = [], []
        for i in range(samples):
            ref = TenantRef(uuid.uuid4(), f"model-{i:04d}", "m", "a@b.example")
            began = time.perf_counter()
            await step.apply(ref)
            model.append((time.perf_counter() - began) * 1000)
            schema = f"replay_{i:04d}"
            async with db.session() as s:
                await s.execute(text(f'CREATE SCHEMA "{schema}"'))
            began = time.perf_counter()
            await upgrade_schema(db, schema)
            replay.append((time.perf_counter() - began) * 1000)
        report(
            "schema_creation",
            tenant_revisions=len(heads("tenant")),
            from_model_p50_ms=round(statistics.median(model), 1),
            replay_history_p50_ms=round(statistics.median(replay), 1),
        )
    finally:
        await db.dispose()


async def bench_fleet(server: str, sizes: list[int], concurrency: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="plexica-bench-tree-"))
    tree = workdir / "tenant"
    shutil.copytree(MIGRATIONS / "tenant", tree, ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "versions" / "bench0002_trivial.py").write_text(TRIVIAL.format(down=heads("tenant")[0]))
    try:
        for size in sizes:
            db = await fresh_database(server, f"bench_fleet_{size}")
            try:
                await fill(TenantService(db), "f", 0, size)
                began = time.perf_counter()
                result = await migrate_fleet(db, concurrency=concurrency, tree=tree)
                took = time.perf_counter() - began
                assert result.ok, result.as_dict()
                assert len(result.migrated) == size, result.as_dict()
                report(
                    "fleet_migration",
                    tenants=size,
                    concurrency=concurrency,
                    seconds=round(took, 2),
                    per_schema_ms=round(took * 1000 / size, 1),
                )
            finally:
                await db.dispose()
    finally:
        shutil.rmtree(workdir)


async def bench_context(server: str, requests: int) -> None:
    db = await fresh_database(server, "bench_context")
    issuers = StaticIssuers()
    settings = Settings(database_url=str(db.engine.url.render_as_string(hide_password=False)))
    app = create_app(settings, db=db, verifier=issuers.verifier())
    router = APIRouter(prefix="/bench")

    @router.get("/principal")
    async def principal_only(p: PrincipalDep) -> dict[str, str]:
        return {"sub": p.subject}

    @router.get("/tenant")
    async def with_tenant(t: TenantDep) -> dict[str, str]:
        return {"slug": t.slug}

    @router.get("/platform-session")
    async def platform_session(_: PrincipalDep) -> dict[str, int]:
        async with db.session() as s:
            return {"one": int((await s.execute(text("SELECT 1"))).scalar_one())}

    @router.get("/tenant-session")
    async def tenant_session(s: TenantSessionDep) -> dict[str, int]:
        return {"one": int((await s.execute(text("SELECT 1"))).scalar_one())}

    app.include_router(router)
    try:
        async with app.router.lifespan_context(app):
            tenant = await started(state_of(app).services, "services").tenants.create(
                body("bench-ctx")
            )
            issuers.add_tenant(tenant.id, tenant.slug)
            headers = {"Authorization": f"Bearer {issuers.token('plexica-bench-ctx', ttl=3600)}"}
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                paths = [
                    "/bench/principal",
                    "/bench/tenant",
                    "/bench/platform-session",
                    "/bench/tenant-session",
                ]
                figures: dict[str, list[float]] = {p: [] for p in paths}
                # Interleaved so that every route sees the same machine load.
                for i in range(requests + 50):
                    for path in paths:
                        began = time.perf_counter()
                        (await client.get(path, headers=headers)).raise_for_status()
                        if i >= 50:
                            figures[path].append((time.perf_counter() - began) * 1000)
            med = {p: statistics.median(v) for p, v in figures.items()}
            report(
                "tenant_context",
                requests=requests,
                principal_only_p50_ms=round(med["/bench/principal"], 3),
                tenant_context_p50_ms=round(med["/bench/tenant"], 3),
                tenant_context_overhead_ms=round(med["/bench/tenant"] - med["/bench/principal"], 3),
                platform_session_p50_ms=round(med["/bench/platform-session"], 3),
                tenant_session_p50_ms=round(med["/bench/tenant-session"], 3),
                tenant_session_overhead_ms=round(
                    med["/bench/tenant-session"] - med["/bench/platform-session"], 3
                ),
            )
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10,100,2000")
    parser.add_argument("--fleet", default="100,1000")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--only", default="context,schema,provisioning,fleet")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    configure_logging("bench", "WARNING", "console")
    only = set(args.only.split(","))
    pg: EmbeddedPostgres | None = None
    pg_dir = Path(tempfile.mkdtemp(prefix="plexica-bench-pg-"))
    server = args.database_url
    if server is None:
        pg = EmbeddedPostgres(pg_dir, database="postgres")
        pg.start()
        server = pg.url
    jobs: list[Callable[[], Coroutine[Any, Any, None]]] = []
    if "context" in only:
        jobs.append(lambda: bench_context(server, args.requests))
    if "schema" in only:
        jobs.append(lambda: bench_schema_creation(server, args.samples))
    if "provisioning" in only:
        jobs.append(
            lambda: bench_provisioning(
                server, [int(s) for s in args.sizes.split(",")], args.samples
            )
        )
    if "fleet" in only:
        jobs.append(
            lambda: bench_fleet(server, [int(s) for s in args.fleet.split(",")], args.concurrency)
        )
    try:
        for job in jobs:
            asyncio.run(job())
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
