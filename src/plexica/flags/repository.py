"""SQL of flags and their change history (platform schema)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def all_flags(session: AsyncSession) -> list[tuple[dict[str, Any], int]]:
    rows = await session.execute(text("SELECT definition, version FROM platform.flags"))
    return [(dict(r[0]), int(r[1])) for r in rows]


async def get(
    session: AsyncSession, key: str, *, lock: bool = False
) -> tuple[dict[str, Any], int] | None:
    sql = "SELECT definition, version FROM platform.flags WHERE key = :key"
    row = (
        await session.execute(text(sql + (" FOR UPDATE" if lock else "")), {"key": key})
    ).one_or_none()
    return None if row is None else (dict(row[0]), int(row[1]))


async def insert(session: AsyncSession, key: str, definition: dict[str, Any]) -> bool:
    result = await session.execute(
        text(
            "INSERT INTO platform.flags (key, definition, version)"
            " VALUES (:key, CAST(:d AS jsonb), 1) ON CONFLICT (key) DO NOTHING RETURNING key"
        ),
        {"key": key, "d": json.dumps(definition)},
    )
    return result.one_or_none() is not None


async def update(session: AsyncSession, key: str, definition: dict[str, Any], version: int) -> None:
    await session.execute(
        text(
            "UPDATE platform.flags SET definition = CAST(:d AS jsonb), version = :v,"
            " updated_at = now() WHERE key = :key"
        ),
        {"key": key, "d": json.dumps(definition), "v": version},
    )


async def record_change(
    session: AsyncSession,
    key: str,
    action: str,
    *,
    actor: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.flag_changes (flag_key, action, actor, before, after)"
            " VALUES (:key, :action, :actor, CAST(:before AS jsonb), CAST(:after AS jsonb))"
        ),
        {
            "key": key,
            "action": action,
            "actor": actor,
            "before": None if before is None else json.dumps(before),
            "after": None if after is None else json.dumps(after),
        },
    )


async def changes(
    session: AsyncSession, key: str, limit: int
) -> list[tuple[int, str, str, dict[str, Any] | None, dict[str, Any] | None, datetime]]:
    rows = await session.execute(
        text(
            "SELECT id, action, actor, before, after, at FROM platform.flag_changes"
            " WHERE flag_key = :key ORDER BY id DESC LIMIT :limit"
        ),
        {"key": key, "limit": limit},
    )
    return [(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]
