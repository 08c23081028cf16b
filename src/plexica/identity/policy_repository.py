"""SQL of account protection (migration i0009): a realm's policy on ``platform.realms`` and the
sign-in throttle's shared counters (``platform.login_failures``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica_sdk.db import fetch_first

_POLICY = "mfa_required, password_min_length, session_max_hours, session_idle_minutes"


async def policy_of(session: AsyncSession, realm: str) -> dict[str, Any] | None:
    return await fetch_first(
        session,
        text(f"SELECT {_POLICY} FROM platform.realms WHERE name = :r"),  # noqa: S608 - constant
        {"r": realm},
    )


async def set_policy(session: AsyncSession, realm: str, values: dict[str, Any]) -> dict[str, Any]:
    """The policy before."""
    row = await session.execute(
        text(
            "UPDATE platform.realms AS r SET mfa_required = :mfa_required,"
            " password_min_length = :password_min_length, session_max_hours = :session_max_hours,"
            " session_idle_minutes = :session_idle_minutes FROM platform.realms AS old"
            " WHERE r.name = :r AND old.name = r.name RETURNING old.mfa_required,"
            " old.password_min_length, old.session_max_hours, old.session_idle_minutes"
        ),
        {"r": realm, **values},
    )
    return dict(row.mappings().one())


async def count_failure(session: AsyncSession, keys: list[str], window_seconds: float) -> None:
    """One failure more on each key: a fixed window starts at the first failure after the last
    one ended."""
    await session.execute(
        text(
            "INSERT INTO platform.login_failures AS f (key, count, window_end)"
            " VALUES (:k, 1, now() + make_interval(secs => :w))"
            " ON CONFLICT (key) DO UPDATE SET"
            " count = CASE WHEN f.window_end <= now() THEN 1 ELSE f.count + 1 END,"
            " window_end = CASE WHEN f.window_end <= now()"
            " THEN now() + make_interval(secs => :w) ELSE f.window_end END"
        ),
        [{"k": k, "w": window_seconds} for k in keys],
    )
    # In passing, a few windows long over: the table holds only live counters.
    await session.execute(
        text(
            "DELETE FROM platform.login_failures WHERE key IN (SELECT key FROM"
            " platform.login_failures WHERE window_end < now() - interval '1 hour' LIMIT 100)"
        )
    )


async def failures(session: AsyncSession, keys: list[str]) -> dict[str, tuple[int, float]]:
    """Each live key's count and the seconds until its window ends."""
    rows = await session.execute(
        text(
            "SELECT key, count, extract(epoch FROM window_end - now()) AS left"
            " FROM platform.login_failures WHERE key = ANY(:keys) AND window_end > now()"
        ),
        {"keys": keys},
    )
    return {r["key"]: (int(r["count"]), float(r["left"])) for r in rows.mappings()}


async def clear_failures(session: AsyncSession, key: str) -> None:
    await session.execute(text("DELETE FROM platform.login_failures WHERE key = :k"), {"k": key})
