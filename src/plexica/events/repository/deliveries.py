"""The delivery queue: live events in embedded mode, retries, replays, dead-letter retries."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.events.repository.outbox import EVENT_JSON, relaxed_commit, rowcount


async def enqueue_delivery(
    session: AsyncSession,
    plugin_id: str,
    event: dict[str, Any],
    *,
    reason: str,
    attempts: int = 0,
    delay_seconds: float = 0.0,
    error: str | None = None,
) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.event_deliveries"
            " (plugin_id, event_id, tenant_id, event, reason, attempts, last_error,"
            "  next_attempt_at)"
            " VALUES (:p, :e, :t, CAST(:ev AS jsonb), :r, :a, :err,"
            "  now() + make_interval(secs => :d))"
        ),
        {
            "p": plugin_id,
            "e": event["id"],
            "t": event.get("tenant_id"),
            "ev": json.dumps(event, default=str),
            "r": reason,
            "a": attempts,
            "err": error,
            "d": delay_seconds,
        },
    )


async def replay(
    session: AsyncSession,
    plugin_id: str,
    tenant_id: UUID,
    types: Sequence[str],
    schema_base: str,
) -> int:
    result = await session.execute(
        text(
            "INSERT INTO platform.event_deliveries (plugin_id, event_id, tenant_id, event, reason)"  # noqa: S608
            f" SELECT :p, o.id, o.tenant_id, {EVENT_JSON}, 'replay' FROM platform.outbox o"
            " WHERE o.tenant_id = :t AND o.type = ANY(:types) AND o.published_at IS NOT NULL"
            " ORDER BY o.seq"
        ),
        {"p": plugin_id, "t": tenant_id, "types": list(types), "schema_base": schema_base},
    )
    return rowcount(result)


async def claim_deliveries(
    session: AsyncSession, plugin_ids: Sequence[str], limit: int, lease_seconds: float
) -> list[Row[Any]]:
    await relaxed_commit(session)  # a lease lost in a crash only hands the rows out again
    result = await session.execute(
        text(
            "UPDATE platform.event_deliveries d"
            " SET lease_until = now() + make_interval(secs => :lease)"
            " FROM (SELECT seq FROM platform.event_deliveries"
            "  WHERE plugin_id = ANY(:plugins) AND next_attempt_at <= now()"
            "  AND (lease_until IS NULL OR lease_until < now())"
            "  ORDER BY seq LIMIT :n FOR UPDATE SKIP LOCKED) c"
            " WHERE d.seq = c.seq"
            " RETURNING d.seq, d.plugin_id, d.event, d.reason, d.attempts"
        ),
        {"plugins": list(plugin_ids), "n": limit, "lease": lease_seconds},
    )
    return sorted(result.all(), key=lambda r: int(r.seq))


async def delete_delivery(session: AsyncSession, seq: int) -> None:
    await delete_deliveries(session, [seq])


async def delete_deliveries(session: AsyncSession, seqs: Sequence[int]) -> None:
    await relaxed_commit(session)
    await session.execute(
        text("DELETE FROM platform.event_deliveries WHERE seq = ANY(:s)"), {"s": list(seqs)}
    )


async def reschedule_delivery(
    session: AsyncSession, seq: int, attempts: int, delay_seconds: float, error: str
) -> None:
    await session.execute(
        text(
            "UPDATE platform.event_deliveries SET attempts = :a, last_error = :err,"
            " lease_until = NULL, next_attempt_at = now() + make_interval(secs => :d)"
            " WHERE seq = :s"
        ),
        {"s": seq, "a": attempts, "d": delay_seconds, "err": error},
    )
