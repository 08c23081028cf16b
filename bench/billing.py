"""Billing's invoice run for many subscriptions in one tenant, on a real PostgreSQL.

    .venv/bin/python -m bench.billing [--subscriptions 10000] [--concurrent 4]

Through the SDK test kit (a throwaway PostgreSQL from ``plexica plugin testdb``, the plugin
served over HTTP). Subscriptions are inserted in bulk; then one run bills the first period of
every subscription, ``--concurrent`` simultaneous runs bill the second, a repeated run bills
nothing, and two scheduled job runners (two replicas) started together bill the third. Prints
the times and checks that the invoice numbers are 1..N without gap or repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from plexica_billing.app import JOBS, create_app
from plexica_sdk.db import PluginDatabase
from plexica_sdk.jobs import JobResult, JobRunner
from plexica_sdk.testing import KitTenant, PluginTestKit

ROOT = Path(__file__).resolve().parents[1] / "plugins" / "billing"


async def seed(kit: PluginTestKit, tenant: KitTenant, n: int) -> None:
    assert kit.database_url is not None
    conn = await asyncpg.connect(kit.database_url)
    try:
        s = f'"{tenant.schema}"'
        await conn.execute(
            f"INSERT INTO {s}.billing_plans (code, name, pricing, billing_interval, price,"
            " currency, tax_rate) VALUES ('team', 'Team', 'per_seat', 'month', 12.50, 'EUR', 19)"
        )
        await conn.execute(
            f"INSERT INTO {s}.billing_customers (name, currency)"
            " SELECT 'Customer ' || i, 'EUR' FROM generate_series(1, $1) AS i",
            n,
        )
        await conn.execute(
            f"INSERT INTO {s}.billing_subscriptions (customer_id, plan_id, status, quantity,"
            " anchor, current_period_start, current_period_end)"
            f" SELECT c.id, (SELECT id FROM {s}.billing_plans), 'active', 1 + (row_number()"
            " OVER () % 5)::int, date '2026-01-15', date '2026-01-15', date '2026-02-15'"
            f" FROM {s}.billing_customers c"
        )
    finally:
        await conn.close()


def run(kit: PluginTestKit, tenant: KitTenant, as_of: str) -> tuple[float, dict[str, Any]]:
    with kit.client(tenant, roles=["tenant_admin"]) as http:
        http.timeout = 600
        started = time.perf_counter()
        r = http.post("/v1/invoice-runs", json={"as_of": as_of})
        elapsed = time.perf_counter() - started
        r.raise_for_status()
        return elapsed, dict(r.json())


async def scheduled(kit: PluginTestKit, tenant: KitTenant, now: datetime) -> list[JobResult]:
    """Two replicas' job runners on the same tenant at the same moment."""
    assert kit.database_url is not None
    dbs = [PluginDatabase(kit.database_url, "billing") for _ in range(2)]
    try:
        passes = await asyncio.gather(
            *(JobRunner(db, JOBS).run_once(now, tenants={tenant.id}) for db in dbs)
        )
        return [r for results in passes for r in results]
    finally:
        for db in dbs:
            await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--concurrent", type=int, default=4)
    args = parser.parse_args()
    n = args.subscriptions
    with PluginTestKit(ROOT, create_app) as kit:
        tenant = kit.tenant("bench")
        asyncio.run(seed(kit, tenant, n))

        took, first = run(kit, tenant, "2026-02-20")
        print(f"one run, period 1: {first['issued']} invoices in {took:.2f} s"
              f"  ({first['issued'] / took:.0f} invoices/s)")  # fmt: skip

        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrent) as pool:
            runs = list(pool.map(lambda _: run(kit, tenant, "2026-03-20"), range(args.concurrent)))
        wall = time.perf_counter() - started
        split = [r["issued"] for _, r in runs]
        print(f"{args.concurrent} concurrent runs, period 2: {sum(split)} invoices in {wall:.2f} s"
              f"  (split {split})")  # fmt: skip

        took, again = run(kit, tenant, "2026-03-20")
        print(f"repeated run: {again['issued']} invoices in {took:.2f} s")

        started = time.perf_counter()
        results = asyncio.run(scheduled(kit, tenant, datetime(2026, 4, 20, tzinfo=UTC)))
        wall = time.perf_counter() - started
        outcomes = [(r.outcome, r.value.issued if r.outcome == "done" else 0) for r in results]
        print(f"2 scheduled replicas, period 3: {sum(i for _, i in outcomes)} invoices in"
              f" {wall:.2f} s  ({outcomes})")  # fmt: skip
        periods = 3

        rows = asyncio.run(
            kit.fetch(
                f'SELECT sequence, number FROM "{tenant.schema}".billing_invoices ORDER BY sequence'
            )
        )
        sequences = [int(r["sequence"]) for r in rows]
        numbers = {r["number"] for r in rows}
        total = periods * n
        gap_free = sequences == list(range(1, total + 1)) and len(numbers) == total
        print(f"invoices {len(rows)} (expected {total}); numbers 1..{total} gap-free and unique:"
              f" {gap_free}")  # fmt: skip
        if not gap_free:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
