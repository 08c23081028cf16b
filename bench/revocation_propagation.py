"""Revocation propagation (ADR 0115): from the revoking commit to the first 401 elsewhere.

Distributed shape on loopback: a core replica (``plexica serve core``, the built-in provider)
and the CRM as its own process on its own database login (``plexica serve plugin crm``), both on
a PostgreSQL from the test harness. Each run signs in (a new session), makes the replica's API,
its forward-auth decision and the CRM accept (and remember) the token, then this process — a
third party, like the CLI or another replica — commits the end of that session and polls each
of the three until it answers 401. Figures: P50/P95/max per target, in milliseconds.

    .venv/bin/python -m bench.revocation_propagation --runs 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import jwt

from bench._servers import harness, migrated_database
from bench._util import wait_http
from plexica.identity import custody, revocation
from plexica.identity.client import password_login
from plexica.kit.db import Database
from plexica.kit.ports import free_port
from plexica.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PLEXICA = [sys.executable, "-m", "plexica.cli"]


def _env(**extra: str) -> dict[str, str]:
    # The run's key-encryption key (bench/__init__.py) is the one setting every process shares.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLEXICA_") or k == custody.ENV}
    return {**env, "PLEXICA_LOG_LEVEL": "WARNING", **extra}


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [*PLEXICA, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"plexica {' '.join(args)}: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip()


@contextmanager
def serving(env: dict[str, str], *args: str) -> Iterator[None]:
    proc = subprocess.Popen(
        [*PLEXICA, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def first_401(http: httpx.AsyncClient, url: str, headers: dict[str, str], t0: float) -> float:
    """Milliseconds from ``t0`` to the first 401 of ``url``."""
    while True:
        answer = await http.get(url, headers=headers)
        if answer.status_code == 401:
            return (time.perf_counter() - t0) * 1000
        if answer.status_code != 200 or time.perf_counter() - t0 > 30:
            raise RuntimeError(f"{url}: {answer.status_code} {answer.text[:200]}")


async def measure(db: Database, core: str, crm: str, password: str, runs: int) -> None:
    issuer = f"{core}/realms/plexica-bench"
    targets = {
        "core API (replica)": (f"{core}/v1/me", {}),
        "forward-auth decision (replica)": (
            f"{core}/v1/gateway/authorize",
            {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/core/v1/me"},
        ),
        "CRM process (own login)": (f"{crm}/v1/contacts", {}),
    }
    results: dict[str, list[float]] = {name: [] for name in targets}
    async with httpx.AsyncClient(timeout=10.0) as http:
        for _ in range(runs):
            body = await password_login(http, issuer, "admin@bench.example", password)
            token = str(body["access_token"])
            sid = jwt.decode(token, options={"verify_signature": False})["sid"]
            auth = {"Authorization": f"Bearer {token}"}
            for url, extra in targets.values():
                for _ in range(2):  # accepted, then answered from the caches
                    answer = await http.get(url, headers={**auth, **extra})
                    assert answer.status_code == 200, (url, answer.text)
            async with db.session() as session:
                await revocation.end_session(session, "plexica-bench", sid)
            t0 = time.perf_counter()  # the commit has returned
            times = await asyncio.gather(
                *(first_401(http, url, {**auth, **extra}, t0) for url, extra in targets.values())
            )
            for name, ms in zip(targets, times, strict=True):
                results[name].append(ms)
    print(f"runs: {runs}; milliseconds from the revoking commit to the first 401")
    print(f"{'target':34} {'p50':>8} {'p95':>8} {'max':>8}")
    for name, values in results.items():
        ordered = sorted(values)
        p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
        print(f"{name:34} {statistics.median(ordered):8.1f} {p95:8.1f} {ordered[-1]:8.1f}")


async def main(runs: int) -> None:
    url = await migrated_database()
    core_port, crm_port = free_port(), free_port()
    core, crm = f"http://127.0.0.1:{core_port}", f"http://127.0.0.1:{crm_port}"
    base = _env(PLEXICA_DATABASE_URL=url, PLEXICA_PUBLIC_URL=core, PLEXICA_PLUGIN_URLS=f"crm={crm}")
    db = Database(Settings(database_url=url).sqlalchemy_url, pool_size=2)
    with ExitStack() as stack:
        stack.enter_context(serving({**base, "PLEXICA_PORT": str(core_port)}, "serve", "core"))
        wait_http(f"{core}/ready")
        cli(base, "plugin", "register", str(ROOT / "plugins" / "crm"), "--publish")
        cli(base, "tenant", "create", "bench", "--name", "Bench", "--admin-email",
            "admin@bench.example")  # fmt: skip
        login = json.loads(cli(base, "plugin", "credentials", "crm", "--json"))["database_url"]
        plugin_env = _env(
            PLEXICA_PLUGIN_DATABASE_URL=login,
            PLEXICA_PLUGIN_ISSUER_BASE_URL=f"{core}/realms",
            PLEXICA_PORT=str(crm_port),
        )
        stack.enter_context(serving(plugin_env, "serve", "plugin", "crm"))
        wait_http(f"{crm}/ready")
        cli(base, "plugin", "install", "crm", "--tenant", "bench")
        password = cli(base, "user", "reset-password", "--tenant", "bench", "admin@bench.example")
        try:
            await measure(db, core, crm, password.splitlines()[-1].strip(), runs)
        finally:
            await db.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with harness():
        asyncio.run(main(args.runs))
