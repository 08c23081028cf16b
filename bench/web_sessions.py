"""What a server-side web session costs a page (ADR 0120): reading it by its cookie (one indexed
statement on an autocommit connection), refreshing its tokens, and making one at sign-in, against
a table of live and expired sessions.

    .venv/bin/python -m bench.web_sessions [--samples 500] [--sessions 10000] [--database-url URL]

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
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.tenancy import fresh_database, pct
from plexica.kit.pgserver import EmbeddedPostgres
from plexica.web.session import WebSession
from plexica.web.store import SessionStore
from plexica_sdk.logs import configure_logging

# A realistic token: the size of the built-in provider's access token.
TOKEN = "h." + "x" * 900 + ".s"


async def timed(name: str, samples: int, step: Callable[[int], Awaitable[object]]) -> None:
    took: list[float] = []
    for i in range(samples):
        start = time.perf_counter()
        await step(i)
        took.append((time.perf_counter() - start) * 1000)
    print(
        json.dumps(
            {
                "figure": name, "samples": samples,
                "median_ms": round(statistics.median(took), 3), "p95_ms": round(pct(took, 95), 3),
            }
        )
    )  # fmt: skip


async def bench(server: str, samples: int, sessions: int) -> None:
    db = await fresh_database(server, "plexica_bench_web_sessions")
    store = SessionStore(db, b"k" * 32)
    try:

        def fresh(i: int) -> WebSession:
            return WebSession(f"plexica-t{i % 50}", TOKEN, "r" * 43, time.time() + 300, TOKEN)

        cookies = [
            await store.create(fresh(i), user_agent="bench", ip="127.0.0.1")
            for i in range(sessions)
        ]
        loaded = [await store.load(c) for c in cookies[:samples]]

        async def read(i: int) -> object:
            return await store.load(cookies[i % len(cookies)])

        async def refresh(i: int) -> object:
            session = loaded[i % len(loaded)]
            assert session is not None
            return await store.save_tokens(session)

        async def sign_in(i: int) -> object:
            return await store.create(fresh(i), user_agent="bench", ip="127.0.0.1")

        await timed("read a session (page load)", samples, read)
        await timed("store refreshed tokens", samples, refresh)
        await timed("create a session (sign-in, with cleanup)", samples, sign_in)
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=10_000)
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
        asyncio.run(bench(server, args.samples, args.sessions))
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
