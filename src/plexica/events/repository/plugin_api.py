"""A plugin logged in as itself (ADR 0078): the functions of schema plugin_api, which act only
on the rows of the plugin whose login opened the session."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.events.repository.outbox import relaxed_commit
from plexica.kit.db import quote_ident

PLUGIN_API_SCHEMA = "plugin_api"


async def grant_plugin_api(session: AsyncSession, login: str) -> None:
    """Let a plugin's login call the plugin_api functions (and nothing else in the platform)."""
    role = quote_ident(login)
    await session.execute(text(f"GRANT USAGE ON SCHEMA {PLUGIN_API_SCHEMA} TO {role}"))
    await session.execute(
        text(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {PLUGIN_API_SCHEMA} TO {role}")
    )


async def own_plugin_id(session: AsyncSession) -> str:
    return str((await session.execute(text("SELECT plugin_api.plugin_id()"))).scalar_one())


async def own_active_among(session: AsyncSession, tenant_ids: Sequence[UUID]) -> set[UUID]:
    """Those of ``tenant_ids`` the session's plugin is installed and active for."""
    result = await session.execute(
        text(
            "SELECT t FROM unnest(CAST(:t AS uuid[])) AS t"
            " WHERE plugin_api.event_consumer_active(t)"
        ),
        {"t": list(tenant_ids)},
    )
    return set(result.scalars())


async def own_claim_deliveries(
    session: AsyncSession, limit: int, lease_seconds: float
) -> list[Row[Any]]:
    await relaxed_commit(session)
    result = await session.execute(
        text(
            "SELECT seq, event, reason, attempts FROM plugin_api.event_claim_deliveries(:n, :lease)"
        ),
        {"n": limit, "lease": lease_seconds},
    )
    return sorted(result.all(), key=lambda r: int(r.seq))


async def own_delivered(session: AsyncSession, seqs: Sequence[int]) -> None:
    await relaxed_commit(session)
    await session.execute(
        text("SELECT plugin_api.event_delivered(s) FROM unnest(CAST(:s AS bigint[])) AS s"),
        {"s": list(seqs)},
    )


async def own_retry(  # noqa: PLR0917
    session: AsyncSession,
    event: dict[str, Any],
    attempts: int,
    delay_seconds: float,
    error: str,
    queued_seq: int | None,
) -> None:
    await session.execute(
        text("SELECT plugin_api.event_retry(CAST(:ev AS jsonb), :a, :d, :err, CAST(:q AS bigint))"),
        {
            "ev": json.dumps(event, default=str),
            "a": attempts,
            "d": delay_seconds,
            "err": error,
            "q": queued_seq,
        },
    )


async def own_dead_letter(
    session: AsyncSession,
    event: dict[str, Any],
    error: str,
    attempts: int,
    queued_seq: int | None,
) -> UUID:
    result = await session.execute(
        text(
            "SELECT plugin_api.event_dead_letter(CAST(:ev AS jsonb), :err, :a, CAST(:q AS bigint))"
        ),
        {"ev": json.dumps(event, default=str), "err": error, "a": attempts, "q": queued_seq},
    )
    return UUID(str(result.scalar_one()))
