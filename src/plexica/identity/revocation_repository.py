"""SQL of the revocation store ``platform.revocations`` (ADR 0115)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica_sdk.revocation import Revocation


async def put(session: AsyncSession, entry: Revocation, keep_seconds: int | None) -> Revocation:
    """Record ``entry``; a cut-off only moves later. ``keep_seconds`` None: until removed.
    The table's trigger wakes every listener when the transaction commits."""
    row = await session.execute(
        text(
            "INSERT INTO platform.revocations AS r (realm, kind, key, before, until)"
            " VALUES (:realm, :kind, :key, :before,"
            "  now() + make_interval(secs => CAST(:keep AS double precision)))"
            " ON CONFLICT (realm, kind, key) DO UPDATE SET"
            "  before = GREATEST(r.before, EXCLUDED.before),"
            "  until = CASE WHEN r.until IS NULL OR EXCLUDED.until IS NULL THEN NULL"
            "   ELSE GREATEST(r.until, EXCLUDED.until) END"
            " RETURNING before"
        ),
        {
            "realm": entry.realm,
            "kind": entry.kind,
            "key": entry.key,
            "before": entry.before,
            "keep": keep_seconds,
        },
    )
    return Revocation(entry.realm, entry.kind, entry.key, int(row.scalar_one()))


async def remove(session: AsyncSession, realm: str, kind: str, key: str) -> None:
    await session.execute(
        text(
            "DELETE FROM platform.revocations WHERE realm = :realm AND kind = :kind AND key = :key"
        ),
        {"realm": realm, "kind": kind, "key": key},
    )


async def remove_realm(session: AsyncSession, realm: str) -> None:
    await session.execute(
        text("DELETE FROM platform.revocations WHERE realm = :realm"), {"realm": realm}
    )


async def live(session: AsyncSession) -> list[Revocation]:
    """Every entry that can still refuse a token."""
    rows = await session.execute(
        text(
            "SELECT realm, kind, key, before FROM platform.revocations"
            " WHERE until IS NULL OR until > now()"
        )
    )
    return [Revocation(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]


async def purge(session: AsyncSession) -> None:
    await session.execute(text("DELETE FROM platform.revocations WHERE until < now()"))
