"""A plugin's database access: one transaction per request, bound to the caller's tenant.

Inside it ``search_path`` is the tenant's schema only and the role is the plugin's role for that
tenant, which the platform created at install and which owns only the plugin's own tables.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.sql import Executable

from plexica_sdk import tracing
from plexica_sdk.errors import NotFoundError


def tenant_schema(slug: str) -> str:
    return "tenant_" + slug.replace("-", "_")


def plugin_role(plugin_id: str, tenant_id: UUID) -> str:
    return f"plx_{plugin_id}_{tenant_id.hex}"


def installation_function(plugin_id: str) -> str:
    return f"plexica_{plugin_id}_installation"


def publish_function(plugin_id: str) -> str:
    return f"plexica_{plugin_id}_publish"


def asyncpg_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class Installation:
    """What the platform tells the plugin about its installation in the current tenant."""

    status: str
    version: str
    settings: dict[str, Any]


class NotInstalledError(NotFoundError):
    """Same answer as an unknown route: nothing says whether the plugin exists elsewhere."""

    def __init__(self) -> None:
        super().__init__("no such route")


class _StaleConnectionError(Exception):
    """The session's first statement found its pooled connection closed."""


class PluginDatabase:
    def __init__(self, url: str, plugin_id: str, *, pool_size: int = 5) -> None:
        self.plugin_id = plugin_id
        self.engine = create_async_engine(
            asyncpg_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            # No ping per checkout (three round trips with asyncpg: BEGIN, ";", ROLLBACK): a
            # connection found dead by the session's first statement is retried once instead
            # (see tenant_session, ADR 0086).
            pool_pre_ping=False,
            connect_args={
                "server_settings": {"application_name": f"plexica-plugin-{plugin_id}"},
                # Never reuse a statement prepared under another tenant's search path.
                "statement_cache_size": 0,
            },
        )
        tracing.instrument_engine(self.engine, f"plugin-{plugin_id}")
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def tenant_session(
        self, tenant_id: UUID, slug: str
    ) -> AsyncIterator[tuple[AsyncSession, Installation]]:
        """A transaction as the plugin's role in the tenant's schema, committed on success.

        Raises NotInstalledError unless the plugin is installed and active in that tenant."""
        schema, role = tenant_schema(slug), plugin_role(self.plugin_id, tenant_id)
        for attempt in (1, 2):
            try:
                async with self.sessions() as session, session.begin():
                    try:
                        # SET LOCAL for both, in one round trip; both end with the transaction.
                        await session.execute(
                            text(
                                "SELECT set_config('search_path', :path, true),"
                                " set_config('role', :role, true)"
                            ),
                            {"path": f'"{schema}"', "role": role},
                        )
                    except DBAPIError as e:
                        if e.connection_invalidated and attempt == 1:
                            raise _StaleConnectionError from e
                        raise NotInstalledError from None
                    try:
                        raw = (
                            await session.execute(
                                text(f"SELECT {installation_function(self.plugin_id)}()")
                            )
                        ).scalar()
                    except DBAPIError:
                        raise NotInstalledError from None
                    state = json.loads(raw) if isinstance(raw, str) else raw
                    if not isinstance(state, dict) or state.get("status") != "active":
                        raise NotInstalledError
                    yield (
                        session,
                        Installation(state["status"], state["version"], state["settings"] or {}),
                    )
                    return
            except _StaleConnectionError:
                # A pooled connection the server had closed (restart, idle timeout): the pool
                # has dropped it and its older siblings; nothing ran yet, so go again.
                continue

    async def installed_tenants(self) -> list[tuple[UUID, str]]:
        """(tenant id, slug) of every tenant schema where the platform made the plugin's
        installation function for its per-tenant role: read from the catalog, since the
        plugin has no access to the platform's tables. Whether the installation is active is
        checked by ``tenant_session``."""
        prefix = f"plx_{self.plugin_id}_"
        async with self.sessions() as session, session.begin():
            rows = await session.execute(
                text(
                    "SELECT DISTINCT n.nspname, r.rolname FROM pg_proc p"
                    " JOIN pg_namespace n ON n.oid = p.pronamespace"
                    " CROSS JOIN LATERAL aclexplode(p.proacl) a"
                    " JOIN pg_roles r ON r.oid = a.grantee"
                    " WHERE p.proname = :fn AND a.privilege_type = 'EXECUTE'"
                    " AND starts_with(r.rolname, :prefix) AND starts_with(n.nspname, 'tenant_')"
                    " ORDER BY n.nspname"
                ),
                {"fn": installation_function(self.plugin_id), "prefix": prefix},
            )
            found = []
            for schema, role in rows.all():
                try:
                    tenant_id = UUID(hex=str(role).removeprefix(prefix))
                except ValueError:
                    continue
                found.append((tenant_id, str(schema).removeprefix("tenant_").replace("_", "-")))
            return found

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


async def publish(
    session: AsyncSession,
    plugin_id: str,
    type: str,  # noqa: A002 - the CloudEvents attribute name
    data: dict[str, Any],
    *,
    subject: str | None = None,
    actor: str | None = None,
) -> UUID:
    """Write an event to the platform outbox in the caller's transaction.

    The platform's function adds the tenant and source, refuses types outside the plugin's
    own namespace, so a plugin cannot publish for another tenant or as another plugin, and
    records the event in the platform's audit log with ``actor`` (ADR 0238)."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    # Read by that function for the event's traceparent (ADR 0184) and its audit entry.
    await session.execute(
        text(
            "SELECT set_config('plexica.traceparent', :t, true),"
            " set_config('plexica.actor', :a, true), set_config('plexica.request_id', :r, true)"
        ),
        {
            "t": tracing.event_traceparent() or "",
            "a": actor or "",
            "r": request_id if isinstance(request_id, str) else "",
        },
    )
    result = await session.execute(
        text(f"SELECT {publish_function(plugin_id)}(:type, :subject, CAST(:data AS jsonb))"),
        {"type": type, "subject": subject, "data": json.dumps(data, default=str)},
    )
    return UUID(str(result.scalar_one()))


def _statement(sql: str | Executable) -> Executable:
    return text(sql) if isinstance(sql, str) else sql


async def fetch_one(
    session: AsyncSession, sql: str | Executable, params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The one row ``sql`` answers (an INSERT … RETURNING, say); none or several is an error."""
    return dict((await session.execute(_statement(sql), params)).mappings().one())


async def fetch_first(
    session: AsyncSession, sql: str | Executable, params: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """The first row ``sql`` answers, or None."""
    found = (await session.execute(_statement(sql), params)).mappings().first()
    return dict(found) if found else None


async def fetch_all(
    session: AsyncSession, sql: str | Executable, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    return [dict(r) for r in (await session.execute(_statement(sql), params)).mappings()]


async def execute_many(
    session: AsyncSession, sql: str | Executable, rows: Sequence[Mapping[str, Any]]
) -> None:
    """``sql`` once for each of ``rows`` (one executemany); no rows, nothing runs."""
    if rows:
        await session.execute(_statement(sql), rows)


async def returns_row(
    session: AsyncSession, sql: str | Executable, params: Mapping[str, Any] | None = None
) -> bool:
    """Whether ``sql`` (an ``UPDATE … RETURNING``, or a query) answered a row."""
    return (await session.execute(_statement(sql), params)).first() is not None


async def page(
    session: AsyncSession, sql: str, params: dict[str, Any], limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page and the total count in one query (the count only costs a second query when the
    page is past the end)."""
    rows = [
        dict(r)
        for r in (
            await session.execute(
                text(
                    f"SELECT q.*, count(*) OVER () AS _total FROM ({sql}) AS q"  # noqa: S608
                    " LIMIT :limit OFFSET :offset"
                ),
                {**params, "limit": limit, "offset": offset},
            )
        ).mappings()
    ]
    if rows:
        total = int(rows[0]["_total"])
    else:
        total = int(
            (await session.execute(text(f"SELECT count(*) FROM ({sql}) AS q"), params)).scalar_one()  # noqa: S608
        )
    for row in rows:
        del row["_total"]
    return rows, total
