"""Real servers for a benchmark run, started with the test harness and stopped at exit."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from plexica.kit.db import Database
from plexica.kit.migrate import upgrade_platform
from plexica.settings import Settings
from tests.harness import servers


@contextmanager
def harness() -> Iterator[None]:
    base = Path(tempfile.mkdtemp(prefix="plexica-bench-"))
    base.chmod(0o755)
    os.environ[servers.SESSION_ENV] = str(base)
    try:
        yield
    finally:
        servers.stop_all(base)
        shutil.rmtree(base, ignore_errors=True)


async def migrated_database() -> str:
    import asyncpg

    pg = str(servers.ensure("postgres")["url"])
    conn = await asyncpg.connect(pg)
    try:
        await conn.execute('DROP DATABASE IF EXISTS "plexica_bench" WITH (FORCE)')
        await conn.execute('CREATE DATABASE "plexica_bench"')
    finally:
        await conn.close()
    url = pg.rsplit("/", 1)[0] + "/plexica_bench"
    db = Database(Settings(database_url=url).sqlalchemy_url, pool_size=2)
    try:
        await upgrade_platform(db)
    finally:
        await db.dispose()
    return url


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]
