"""The async engine, sessions bound to one schema per transaction, and pool metrics."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from plexica.kit.state import core_state, started
from plexica_sdk import tracing
from plexica_sdk.observability import register_collector

PLATFORM_SCHEMA = "platform"
_SCHEMA_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def quote_ident(name: str) -> str:
    """Quote a PostgreSQL identifier after checking it is one of ours."""
    if not _SCHEMA_RE.match(name):
        raise ValueError(f"not a valid schema identifier: {name!r}")
    return '"' + name + '"'


class _StaleConnectionError(Exception):
    """A session's first statement found its pooled connection closed."""


class Database:
    """One engine per process. Sessions never leave tenant state on a pooled connection:
    the search path is set with ``SET LOCAL`` and so ends with the transaction."""

    def __init__(
        self, url: str, *, pool_size: int = 10, statement_timeout_ms: int = 15_000
    ) -> None:
        connect_args = {
            "server_settings": {
                "application_name": "plexica",
                "statement_timeout": str(statement_timeout_ms),
            },
            # Prepared statements are cached per connection; a statement prepared under one
            # tenant's search path must never be reused under another's.
            "statement_cache_size": 0,
        }
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            # No ping per checkout (three round trips with asyncpg); a connection found closed
            # by a session's first statement is replaced and the session retried (ADR 0086).
            pool_pre_ping=False,
            connect_args=connect_args,
        )
        tracing.instrument_engine(self.engine, "core")
        self._unpooled = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        _DB_POOLS.append(self)

    @asynccontextmanager
    async def session(self, schema: str = PLATFORM_SCHEMA) -> AsyncIterator[AsyncSession]:
        """A session in one transaction, committed on success and rolled back on error."""
        search_path = text(f"SET LOCAL search_path TO {quote_ident(schema)}, public")
        for attempt in (1, 2):
            try:
                async with self.sessions() as session, session.begin():
                    try:
                        await session.execute(search_path)
                    except DBAPIError as e:
                        if e.connection_invalidated and attempt == 1:
                            raise _StaleConnectionError from e
                        raise
                    yield session
                    return
            except _StaleConnectionError:
                # The server had closed that pooled connection (restart, idle timeout); the pool
                # has dropped it and its older siblings, and nothing ran yet: go again.
                continue

    @asynccontextmanager
    async def unpooled_connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection of its own, closed on exit, for a session lock held while the work it
        guards uses pooled sessions: however many holders wait, they never starve the pool
        (ADR 0170, 0175)."""
        async with self._unpooled.connect() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
        await self._unpooled.dispose()
        if self in _DB_POOLS:
            _DB_POOLS.remove(self)


def request_db(request: Request) -> Database:
    """The process's database, opened by the app's lifespan."""
    return started(core_state(request).db, "db")


DbDep = Annotated[Database, Depends(request_db)]

_DB_POOLS: list[Database] = []


class _PoolCollector(Collector):
    def collect(self) -> Iterable[Metric]:
        size = GaugeMetricFamily("plexica_db_pool_size", "Connections the pool keeps open.")
        used = GaugeMetricFamily("plexica_db_pool_checked_out", "Connections in use.")
        for db in _DB_POOLS:
            pool = db.engine.pool
            size.add_metric([], float(getattr(pool, "size", lambda: 0)()))
            used.add_metric([], float(getattr(pool, "checkedout", lambda: 0)()))
        yield size
        yield used


register_collector(_PoolCollector())
