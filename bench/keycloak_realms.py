"""Tenant realm provisioning on a real Keycloak 26, with 1 and with N existing realms.

One provisioning = ``create_realm`` (realm, roles, PKCE web client, audience and tenant_id
mappers, in one import) + ``create_user`` (first tenant admin with password and role).

.venv/bin/python -m bench.keycloak_realms [--realms 200] [--samples 20] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from uuid import uuid4

import httpx

from plexica.identity.keycloak import KeycloakAdapter
from tests.harness.servers import _kill, start_keycloak


def _rss_mb(pgid: int) -> float:
    """Resident memory of the Keycloak process group (the JVM under kc.sh)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return total / 2**20


async def _provision(kc: KeycloakAdapter, realm: str) -> float:
    start = time.perf_counter()
    await kc.create_realm(realm, uuid4())
    await kc.create_user(realm, "admin@bench.test", "bench-password-1", frozenset({"tenant_admin"}))
    return time.perf_counter() - start


async def _samples(kc: KeycloakAdapter, n: int, tag: str) -> list[float]:
    out = []
    for i in range(n):
        realm = f"plexica-bench-{tag}-{i}"
        out.append(await _provision(kc, realm))
        await kc.delete_realm(realm)
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _realm_count(http: httpx.AsyncClient, kc: KeycloakAdapter) -> tuple[int, float]:
    token = await kc._admin_token()
    start = time.perf_counter()
    response = await http.get(
        f"{kc.url}/admin/realms",
        params={"briefRepresentation": "true"},
        headers={"Authorization": f"Bearer {token}"},
    )
    return len(response.json()), time.perf_counter() - start


async def run(args: argparse.Namespace, url: str, user: str, password: str, pgid: int) -> None:
    async with (
        KeycloakAdapter(url, user, password, timeout=300) as kc,
        httpx.AsyncClient(timeout=300) as http,
    ):
        await _samples(kc, 3, "warmup")  # JIT and caches: the first realm of a JVM is slow
        rows = []
        count, list_s = await _realm_count(http, kc)
        one = await _samples(kc, args.samples, "a")
        rows.append((count, one, list_s, _rss_mb(pgid), os.getloadavg()[0]))

        fill_start = time.perf_counter()
        gate = asyncio.Semaphore(args.concurrency)

        async def fill(i: int) -> None:
            async with gate:
                await _provision(kc, f"plexica-fill-{i:04d}")

        await asyncio.gather(*(fill(i) for i in range(args.realms)))
        fill_s = time.perf_counter() - fill_start
        count, list_s = await _realm_count(http, kc)
        many = await _samples(kc, args.samples, "b")
        rows.append((count, many, list_s, _rss_mb(pgid), os.getloadavg()[0]))

    print(f"Keycloak realm provisioning (realm + web client + mappers + admin user), {url}")
    print(f"fill: {args.realms} realms in {fill_s:.0f}s, concurrency {args.concurrency}")
    print(
        f"{'realms':>7} {'n':>3} {'p50 s':>7} {'p95 s':>7} {'max s':>7} "
        f"{'list realms s':>14} {'RSS MB':>7} {'load 1m':>8}"
    )
    for existing, values, list_s, rss, load in rows:
        print(
            f"{existing:>7} {len(values):>3} {statistics.median(values):>7.2f} "
            f"{_pct(values, 0.95):>7.2f} {max(values):>7.2f} {list_s:>14.2f} {rss:>7.0f} "
            f"{load:>8.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--realms", type=int, default=200)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    if not (0 < args.realms <= 1000 and 0 < args.concurrency <= 8):
        raise SystemExit("bounded load only: --realms <= 1000, --concurrency <= 8")
    with tempfile.TemporaryDirectory(prefix="plexica-bench-kc-") as tmp:
        started = time.perf_counter()
        info = start_keycloak(Path(tmp))
        print(f"Keycloak {info['version']} ready in {time.perf_counter() - started:.1f}s")
        pid = int(info["stop"]["pids"][0])
        try:
            asyncio.run(run(args, info["url"], info["admin_user"], info["admin_password"], pid))
        finally:
            _kill(pid, grace=30)


if __name__ == "__main__":
    main()
