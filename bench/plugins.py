"""CRM plugin install and upgrade timings on a real PostgreSQL, and its list endpoint latency.

    .venv/bin/python -m bench.plugins [--installs 20] [--tenants 100] [--rows 20000]

Each install goes into a new tenant schema that already holds data (a table of ``--rows``
rows); the upgrade (the shipped version to its next minor, one new migration) runs over
``--tenants`` tenants one after the other; the list endpoint is called by 20 concurrent clients for 5 seconds in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import text

from plexica.kit.db import Database
from plexica.kit.migrate import upgrade_platform
from plexica.kit.pgserver import EmbeddedPostgres
from plexica.kit.provisioning import TenantRef
from plexica.plugins import service
from plexica.plugins.schemas import MigrationFile, VersionStatus
from plexica.plugins.service import HttpReadinessProbe, Installer
from plexica.settings import Settings
from plexica_crm.app import create_app, plugin_root
from plexica_sdk.app import PluginConfig
from plexica_sdk.logs import configure_logging
from plexica_sdk.manifest import load_manifest, load_migrations
from plexica_sdk.semver import Version
from tests.support.tokens import StaticIssuers


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def show(name: str, xs: list[float]) -> None:
    ms = [x * 1000 for x in xs]
    print(
        f"{name}: n={len(ms)}  p50 {pct(ms, 50):.0f} ms  p95 {pct(ms, 95):.0f} ms"
        f"  max {max(ms):.0f} ms  mean {statistics.mean(ms):.0f} ms"
    )


async def new_tenant(db: Database, rows: int) -> TenantRef:
    slug = "b" + uuid.uuid4().hex[:10]
    ref = TenantRef(uuid.uuid4(), slug, slug, "")
    async with db.session() as s:
        await s.execute(text(f'CREATE SCHEMA "{ref.schema}"'))
        await s.execute(
            text(
                f'CREATE TABLE "{ref.schema}".members AS SELECT g AS id, md5(g::text) AS email'
                f" FROM generate_series(1, {rows}) g"
            )
        )
    return ref


async def run(args: argparse.Namespace, url: str) -> None:
    settings = Settings(database_url=url)
    db = Database(settings.sqlalchemy_url, pool_size=10)
    await upgrade_platform(db)
    root = plugin_root()
    manifest = load_manifest(root)
    files = [MigrationFile(name=n, sql=s) for n, s in load_migrations(manifest, root)]
    async with db.session() as s:
        await service.register(s, manifest.model_dump(mode="json"), files)
        await service.set_status(s, "crm", manifest.version, VersionStatus.PUBLISHED)
    issuers = StaticIssuers()
    crm = create_app(PluginConfig(database_url=url, verifier=issuers.verifier()))
    async with crm.router.lifespan_context(crm):
        installer = Installer(db, HttpReadinessProbe({"crm": crm}))

        installs: list[float] = []
        tenants: list[TenantRef] = []
        for _ in range(args.installs):
            ref = await new_tenant(db, args.rows)
            start = time.perf_counter()
            await installer.install(ref, "crm")
            installs.append(time.perf_counter() - start)
            tenants.append(ref)
        show(f"install CRM into a tenant with {args.rows} rows", installs)

        while len(tenants) < args.tenants:
            ref = await new_tenant(db, 10)
            await installer.install(ref, "crm")
            tenants.append(ref)
        shipped = Version.parse(manifest.version)
        next1 = f"{shipped.major}.{shipped.minor + 1}.0"
        next2 = f"{shipped.major}.{shipped.minor + 2}.0"
        doc = {**manifest.model_dump(mode="json"), "version": next1}
        extra = MigrationFile(
            name=f"{len(files) + 1:04d}_deal_source",
            sql="ALTER TABLE crm_deals ADD COLUMN source text",
        )
        async with db.session() as s:
            await service.register(s, doc, [*files, extra])
            await service.set_status(s, "crm", next1, VersionStatus.PUBLISHED)
        upgrades: list[float] = []
        start_all = time.perf_counter()
        for ref in tenants[: len(tenants) // 2]:
            start = time.perf_counter()
            await installer.upgrade(ref, "crm", next1)
            upgrades.append(time.perf_counter() - start)
        total = time.perf_counter() - start_all
        show(
            f"upgrade {shipped} -> {next1} per tenant, sequential ({len(upgrades)} tenants, total {total:.1f} s)",
            upgrades,
        )
        doc = {**manifest.model_dump(mode="json"), "version": next2}
        extra2 = MigrationFile(
            name=f"{len(files) + 2:04d}_deal_note", sql="ALTER TABLE crm_deals ADD COLUMN note text"
        )
        async with db.session() as s:
            await service.register(s, doc, [*files, extra, extra2])
            await service.set_status(s, "crm", next2, VersionStatus.PUBLISHED)
        start_all = time.perf_counter()
        results = await installer.upgrade_fleet("crm", next2, concurrency=4)
        total = time.perf_counter() - start_all
        ok = sum(1 for v in results.values() if v == "upgraded")
        print(
            f"upgrade_fleet -> {next2} over {len(results)} tenants, 4 at a time: {total:.1f} s ({ok} upgraded)"
        )

        ref = tenants[0]
        issuers.add_tenant(ref.id, ref.slug)
        token = issuers.token(ref.realm, roles=["member"], tenant_id=str(ref.id))
        headers = {"Authorization": f"Bearer {token}"}
        transport = httpx.ASGITransport(app=crm)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://crm", headers=headers
        ) as http:
            for i in range(200):
                await http.post("/v1/contacts", json={"first_name": f"C{i}", "last_name": "Bench"})
            latencies: list[float] = []
            deadline = time.perf_counter() + 5

            async def client() -> None:
                while time.perf_counter() < deadline:
                    start = time.perf_counter()
                    r = await http.get("/v1/contacts?limit=25&q=bench")
                    assert r.status_code == 200
                    latencies.append(time.perf_counter() - start)

            await asyncio.gather(*(client() for _ in range(20)))
        show("GET /v1/contacts?q=&limit=25 (20 concurrent, in-process)", latencies)
        print(f"  throughput {len(latencies) / 5:.0f} req/s")
    await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--installs", type=int, default=20)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    configure_logging("bench", "WARNING", "console")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)
        pg = EmbeddedPostgres(Path(tmp), database="bench")
        pg.start()
        try:
            asyncio.run(run(args, pg.url))
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
