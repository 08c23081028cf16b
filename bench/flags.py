"""Feature flags: the cost of one evaluation, and toggle → observed on another replica.

.venv/bin/python -m bench.flags [--calls 200000] [--toggles 20]

The second part starts PostgreSQL and Redis with the test harness and runs two core instances
that share them (each with its own cache and Redis subscription).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import cast

from openfeature import api
from openfeature.evaluation_context import EvaluationContext

from bench._servers import harness, migrated_database
from plexica.app import create_app
from plexica.flags.cache import FlagCache, LocalBus
from plexica.flags.service import FlagService
from plexica.kit.db import Database
from plexica.kit.state import started, state_of
from plexica.settings import Settings
from plexica_sdk.context import Principal
from plexica_sdk.flags import (
    FlagContext,
    FlagDefinition,
    PlexicaFlagProvider,
    Rollout,
    TenantFlags,
    evaluate,
)
from tests.harness import servers
from tests.support.tokens import StaticIssuers


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    for _ in range(min(calls, 10_000)):
        fn()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter_ns() - start) / calls / 1000)
    return best


def evaluation(calls: int) -> None:
    tenant = str(uuid.uuid4())
    flags = {
        "plain": FlagDefinition(key="plain", default_variant="on"),
        "targeted": FlagDefinition(
            key="targeted", tenants={str(uuid.uuid4()): "on" for _ in range(1000)} | {tenant: "on"}
        ),
        "rollout": FlagDefinition(key="rollout", rollout=Rollout(variant="on", percentage=30)),
    }
    ctx = FlagContext(tenant_id=tenant, tenant_slug="acme")
    api.set_provider(PlexicaFlagProvider(flags.get), domain="bench")
    client = api.get_client("bench")
    of_ctx = EvaluationContext(targeting_key=tenant, attributes={"tenant_slug": "acme"})
    principal = Principal(subject="u", issuer="i", tenant_id=uuid.UUID(tenant), tenant_slug="acme")
    tenant_flags = TenantFlags(principal, domain="bench")

    print(f"flag evaluation, best of 3 x {calls} calls, µs per call")
    print(f"{'path':<44} {'plain':>8} {'tenant':>8} {'rollout':>8}")
    service = FlagService(FlagCache(cast(Database, None)), LocalBus())
    for flag in flags.values():
        service.cache.put(flag)
    rows: list[tuple[str, Callable[[str], Callable[[], object]]]] = [
        ("evaluate(flag, ctx) (SDK core)", lambda k: lambda: evaluate(flags[k], ctx)),
        (
            "FlagService.evaluate (core, from the cache)",
            lambda k: lambda: service.evaluate(k, ctx, False),
        ),
        (
            "OpenFeature client.get_boolean_value",
            lambda k: lambda: client.get_boolean_value(k, False, of_ctx),
        ),
        ("TenantFlags(principal).is_enabled", lambda k: lambda: tenant_flags.is_enabled(k)),
    ]
    for name, make in rows:
        cells = [per_call_us(make(k), calls) for k in ("plain", "targeted", "rollout")]
        print(f"{name:<44} {cells[0]:>8.2f} {cells[1]:>8.2f} {cells[2]:>8.2f}")
    unknown = per_call_us(lambda: client.get_boolean_value("missing", False, of_ctx), calls // 10)
    print(f"{'unknown flag (default + counted warning)':<44} {unknown:>8.2f}")


async def propagation(toggles: int) -> None:
    url = await migrated_database()
    redis_url = str(servers.ensure("redis")["url"])
    settings = Settings(database_url=url, redis_url=redis_url, data_dir=Path(servers.session_dir()))
    db = Database(settings.sqlalchemy_url, pool_size=4)
    issuers = StaticIssuers()
    one, two = (create_app(settings, db=db, verifier=issuers.verifier()) for _ in range(2))
    key = "bench.toggle"
    async with one.router.lifespan_context(one), two.router.lifespan_context(two):
        flags_one = started(state_of(one).flags, "flags")
        flags_two = started(state_of(two).flags, "flags")
        from plexica.flags.schemas import FlagIn

        async with db.session() as session:
            flag = await flags_one.create(session, "bench", FlagIn(key=key))
        await flags_one.announce(flag)
        delays: list[float] = []
        for i in range(toggles):
            want = i % 2 == 1
            start = time.perf_counter()
            async with db.session() as session:
                flag = await flags_one.toggle(session, "bench", key, want)
            await flags_one.announce(flag)
            while (seen := flags_two.cache.get(key)) is None or seen.enabled is not want:
                await asyncio.sleep(0.0005)
            delays.append((time.perf_counter() - start) * 1000)
    await db.dispose()
    delays.sort()
    print(
        f"toggle (commit + Redis publish) -> observed in the other replica's cache, {toggles} toggles: "
        f"p50 {statistics.median(delays):.1f} ms, max {delays[-1]:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--toggles", type=int, default=20)
    args = parser.parse_args()
    evaluation(args.calls)
    with harness():
        asyncio.run(propagation(args.toggles))


if __name__ == "__main__":
    main()
