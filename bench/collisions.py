"""No collisions at scale: tenants provisioned at once with a default plugin, then a fleet upgrade
of that plugin, on a real PostgreSQL; prints failures by error and timings.

    .venv/bin/python -m bench.collisions [--provision 50] [--tenants 100] [--parallel 8]

Registers the CRM (the shipped plugin: its own database role, migrations and consumed event
types) as the default plugin, provisions ``--provision`` tenants all at once through
``TenantService.create`` (schema, then the CRM installed by ``DefaultPluginsStep``), tops the
fleet up to ``--tenants`` the same way, then registers CRM 1.1.0 (one more migration, one more
consumed event type) and runs ``upgrade_fleet`` ``--parallel`` at a time. The test at a smaller
size is ``tests/plugins/test_concurrent_installs.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from sqlalchemy import text

from plexica.kit.db import Database
from plexica.kit.migrate import upgrade_platform
from plexica.kit.pgserver import EmbeddedPostgres
from plexica.plugins import service
from plexica.plugins.schemas import MigrationFile, VersionStatus
from plexica.plugins.service import DefaultPluginsStep, HttpReadinessProbe, Installer
from plexica.settings import Settings
from plexica.tenants.schemas import State, TenantCreate
from plexica.tenants.service import TenantService
from plexica_crm.app import create_app, plugin_root
from plexica_sdk.app import PluginConfig
from plexica_sdk.logs import configure_logging
from plexica_sdk.manifest import load_manifest, load_migrations
from tests.support.tokens import StaticIssuers


def report(name: str, **figures: object) -> None:
    print(json.dumps({"bench": name, **figures}), flush=True)


async def provision(tenants: TenantService, count: int) -> tuple[list[str], float]:
    """``count`` creations at once; the outcome of each (its state, or the error's name)."""

    async def one() -> str:
        slug = "c" + uuid.uuid4().hex[:10]
        try:
            made = await tenants.create(
                TenantCreate(slug=slug, name=slug, admin_email=f"admin@{slug}.example")
            )
        except Exception as exc:
            return f"{type(exc).__name__}: {str(exc)[:120]}"
        return str(made.state)

    began = time.perf_counter()
    outcomes = await asyncio.gather(*(one() for _ in range(count)))
    return outcomes, time.perf_counter() - began


async def run(args: argparse.Namespace, url: str) -> None:
    db = Database(Settings(database_url=url).sqlalchemy_url, pool_size=args.pool)
    await upgrade_platform(db)
    root = plugin_root()
    manifest = load_manifest(root)
    files = [MigrationFile(name=n, sql=s) for n, s in load_migrations(manifest, root)]
    async with db.session() as s:
        await service.register(s, manifest.model_dump(mode="json"), files)
        await service.set_status(s, "crm", manifest.version, VersionStatus.PUBLISHED)
    crm = create_app(PluginConfig(database_url=url, verifier=StaticIssuers().verifier()))
    try:
        async with crm.router.lifespan_context(crm):
            installer = Installer(db, HttpReadinessProbe({"crm": crm}, timeout=60))
            tenants = TenantService(db, [DefaultPluginsStep(installer, ["crm"])])
            outcomes, took = await provision(tenants, args.provision)
            active = str(State.ACTIVE)
            report(
                "provision_at_once_with_default_plugin",
                tenants=args.provision,
                active=outcomes.count(active),
                failures=dict(Counter(o for o in outcomes if o != active)),
                seconds=round(took, 1),
            )
            made = outcomes.count(active)
            while made < args.tenants:
                more, _ = await provision(tenants, min(args.parallel, args.tenants - made))
                made += more.count(active)

            consumes = manifest.model_dump(mode="json")["events"]["consumes"]
            upgrade = "1.99.0"  # above any shipped CRM version
            doc = {
                **manifest.model_dump(mode="json"),
                "version": upgrade,
                "events": {
                    **manifest.model_dump(mode="json")["events"],
                    "consumes": [
                        *consumes,
                        {"type": "plexica.bench.upgraded", "schema_version": 1},
                    ],
                },
            }
            extra = MigrationFile(
                name="0099_bench_note", sql="ALTER TABLE crm_contacts ADD COLUMN bench_note text"
            )
            async with db.session() as s:
                await service.register(s, doc, [*files, extra])
                await service.set_status(s, "crm", upgrade, VersionStatus.PUBLISHED)
            began = time.perf_counter()
            results = await installer.upgrade_fleet("crm", concurrency=args.parallel)
            took = time.perf_counter() - began
            async with db.session() as s:
                wanted = sorted(
                    (
                        await s.execute(
                            text(
                                "SELECT event_type FROM platform.event_subscriptions"
                                " WHERE plugin_id = 'crm'"
                            )
                        )
                    ).scalars()
                )
            report(
                "fleet_upgrade",
                tenants=len(results),
                parallel=args.parallel,
                outcomes=dict(Counter(results.values())),
                subscriptions_match=wanted == sorted(c["type"] for c in doc["events"]["consumes"]),
                seconds=round(took, 1),
            )
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provision", type=int, default=50)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--pool", type=int, default=10, help="the core's pool size (its default)")
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
