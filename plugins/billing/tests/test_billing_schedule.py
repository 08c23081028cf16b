"""The scheduled invoice run: the SDK's periodic jobs run per installed tenant under an advisory
lock, against the kit's real PostgreSQL; two runners stand for two replicas of the plugin."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import pytest
from billing_kit_helpers import count, sequences

from plexica_billing.app import JOBS, manifest
from plexica_sdk.app import PluginConfig, PluginContext, create_plugin_app
from plexica_sdk.db import PluginDatabase
from plexica_sdk.jobs import JobResult, JobRunner, PeriodicJob, lock_keys
from plexica_sdk.testing import KitTenant, PluginTestKit

# Periods started on 2026-01-31 end on 2026-02-28: due in a run on 1 March.
MARCH_FIRST = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def _subscribe_many(kit: PluginTestKit, tenant: KitTenant, n: int) -> None:
    with kit.client(tenant, roles=["tenant_admin"]) as http:
        plan = http.post("/v1/plans", json={"code": "std", "name": "Std", "price": "12.50"}).json()
        customer = http.post("/v1/customers", json={"name": "Soylent"}).json()
        for _ in range(n):
            r = http.post(
                "/v1/subscriptions",
                json={"customer_id": customer["id"], "plan_id": plan["id"], "start": "2026-01-31"},
            )
            assert r.status_code == 201, r.text


async def _replicas(
    kit: PluginTestKit, tenants: set[UUID], now: datetime
) -> tuple[list[JobResult], list[JobResult]]:
    assert kit.database_url is not None
    dbs = [PluginDatabase(kit.database_url, "billing") for _ in range(2)]
    try:
        a, b = (JobRunner(db, JOBS) for db in dbs)
        return await asyncio.gather(
            a.run_once(now, tenants=tenants), b.run_once(now, tenants=tenants)
        )
    finally:
        for db in dbs:
            await db.dispose()


@pytest.fixture(scope="module")
def cron(kit: PluginTestKit) -> KitTenant:
    return kit.tenant("cron-co")


def test_two_replicas_bill_each_subscription_once_with_gap_free_numbers(
    kit: PluginTestKit, cron: KitTenant
) -> None:
    one, two = cron, kit.tenant("cron-two")
    idle = kit.tenant("cron-off", install=False)
    _subscribe_many(kit, one, 40)
    _subscribe_many(kit, two, 7)

    async def installed() -> list[tuple[UUID, str]]:
        assert kit.database_url is not None
        db = PluginDatabase(kit.database_url, "billing")
        try:
            return await db.installed_tenants()
        finally:
            await db.dispose()

    tenants = dict(asyncio.run(installed()))
    assert tenants[one.id] == "cron-co"
    assert tenants[two.id] == "cron-two"
    assert idle.id not in tenants

    first, second = asyncio.run(_replicas(kit, {one.id, two.id}, MARCH_FIRST))
    for tenant, n in ((one, 40), (two, 7)):
        runs = [r for r in first + second if r.tenant_id == tenant.id]
        assert {r.outcome for r in runs} <= {"done", "locked"}
        assert sum(r.value.issued for r in runs if r.outcome == "done") == n
        assert count(kit, tenant, "billing_invoices") == n
        assert sequences(kit, tenant) == list(range(1, n + 1))

    again = asyncio.run(_replicas(kit, {one.id, two.id}, MARCH_FIRST))
    assert all(r.value.issued == 0 for r in again[0] + again[1] if r.outcome == "done")
    assert count(kit, one, "billing_invoices") == 40


def test_a_tenant_locked_by_another_replica_is_skipped(kit: PluginTestKit) -> None:
    tenant = kit.tenant("cron-locked")
    _subscribe_many(kit, tenant, 3)

    async def scenario() -> tuple[list[JobResult], list[JobResult]]:
        assert kit.database_url is not None
        holder = await asyncpg.connect(kit.database_url)
        db = PluginDatabase(kit.database_url, "billing")
        runner = JobRunner(db, JOBS)
        try:
            async with holder.transaction():
                # Another replica in the middle of this tenant's run.
                await holder.execute(
                    "SELECT pg_advisory_xact_lock($1, $2)",
                    *lock_keys("billing", "invoice-run", tenant.id),
                )
                blocked = await runner.run_once(MARCH_FIRST, tenants={tenant.id})
            return blocked, await runner.run_once(MARCH_FIRST, tenants={tenant.id})
        finally:
            await holder.close()
            await db.dispose()

    blocked, after = asyncio.run(scenario())
    assert [r.outcome for r in blocked] == ["locked"]
    assert [(r.outcome, r.value.issued) for r in after] == [("done", 3)]
    assert count(kit, tenant, "billing_invoices") == 3


def test_the_plugin_process_runs_its_jobs_on_their_period(
    kit: PluginTestKit, cron: KitTenant
) -> None:
    interval = 0.2
    seen: list[tuple[UUID, str, datetime]] = []

    async def probe(ctx: PluginContext, now: datetime) -> None:
        seen.append((ctx.tenant_id, ctx.tenant_slug, now))

    async def serve() -> None:
        assert kit.database_url is not None
        config = PluginConfig(database_url=kit.database_url, run_jobs=True, job_interval=interval)
        app = create_plugin_app(manifest(), config=config, jobs=[PeriodicJob("probe", probe)])
        async with app.router.lifespan_context(app):
            await asyncio.sleep(interval * 3)
        before = len(seen)
        await asyncio.sleep(interval * 2)
        assert len(seen) == before  # stopped with the app

    asyncio.run(serve())
    mine = [s for s in seen if s[0] == cron.id]
    assert len(mine) >= 2
    assert {s[1] for s in mine} == {"cron-co"}


def test_jobs_run_in_their_own_process_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PluginConfig().run_jobs is False  # mounted or tested: only when asked
    monkeypatch.delenv("PLEXICA_PLUGIN_JOBS", raising=False)
    assert PluginConfig.from_env().run_jobs is True
    monkeypatch.setenv("PLEXICA_PLUGIN_JOBS", "off")
    monkeypatch.setenv("PLEXICA_PLUGIN_JOB_INTERVAL_SECONDS", "60")
    config = PluginConfig.from_env()
    assert (config.run_jobs, config.job_interval) == (False, 60.0)
