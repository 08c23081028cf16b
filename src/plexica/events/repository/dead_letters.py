"""Dead letters: events a plugin failed to consume after every retry, kept until resolved."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

DEAD_LETTER_COLUMNS = (
    "id, plugin_id, event_id, tenant_id, type, event, error, attempts, status, created_at,"
    " resolved_at"
)


async def insert_dead_letter(  # noqa: PLR0917
    session: AsyncSession,
    dead_letter_id: UUID,
    plugin_id: str,
    event: dict[str, Any],
    error: str,
    attempts: int,
) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.dead_letters"
            " (id, plugin_id, event_id, tenant_id, type, event, error, attempts)"
            " VALUES (:id, :p, :e, :t, :type, CAST(:ev AS jsonb), :err, :a)"
        ),
        {
            "id": dead_letter_id,
            "p": plugin_id,
            "e": event["id"],
            "t": event.get("tenant_id"),
            "type": event["type"],
            "ev": json.dumps(event, default=str),
            "err": error,
            "a": attempts,
        },
    )


async def list_dead_letters(
    session: AsyncSession,
    *,
    plugin_id: str | None,
    tenant_id: UUID | None,
    status: str | None,
    limit: int,
) -> list[Row[Any]]:
    result = await session.execute(
        text(
            f"SELECT {DEAD_LETTER_COLUMNS} FROM platform.dead_letters"  # noqa: S608
            " WHERE (CAST(:p AS text) IS NULL OR plugin_id = :p)"
            " AND (CAST(:t AS uuid) IS NULL OR tenant_id = :t)"
            " AND (CAST(:s AS text) IS NULL OR status = :s)"
            " ORDER BY created_at DESC, id LIMIT :n"
        ),
        {"p": plugin_id, "t": tenant_id, "s": status, "n": limit},
    )
    return list(result.all())


async def lock_dead_letter(session: AsyncSession, dead_letter_id: UUID) -> Row[Any] | None:
    result = await session.execute(
        text(
            f"SELECT {DEAD_LETTER_COLUMNS} FROM platform.dead_letters"  # noqa: S608
            " WHERE id = :id FOR UPDATE"
        ),
        {"id": dead_letter_id},
    )
    return result.one_or_none()


async def resolve_dead_letter(session: AsyncSession, dead_letter_id: UUID, status: str) -> None:
    await session.execute(
        text("UPDATE platform.dead_letters SET status = :s, resolved_at = now() WHERE id = :id"),
        {"id": dead_letter_id, "s": status},
    )


async def dead_letters_pending(session: AsyncSession) -> int:
    return int(
        (
            await session.execute(
                text("SELECT count(*) FROM platform.dead_letters WHERE status = 'pending'")
            )
        ).scalar_one()
    )
