"""SQL of two-step sign-in (``platform.user_totp``, ``user_recovery_codes``, ``mfa_challenges``,
migration i0007)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.identity.sealed_repository import SealedSecrets
from plexica_sdk.db import fetch_first, returns_row


async def totp_of(session: AsyncSession, user_id: UUID) -> dict[str, Any] | None:
    return await fetch_first(
        session,
        text(
            "SELECT sealed_secret, sealed_with, confirmed_at, last_step FROM platform.user_totp"
            " WHERE user_id = :u FOR UPDATE"
        ),
        {"u": user_id},
    )


async def put_pending_totp(
    session: AsyncSession, user_id: UUID, sealed: str, sealed_with: str
) -> bool:
    """A new unconfirmed secret, replacing an unconfirmed one; False when one is confirmed."""
    return await returns_row(
        session,
        text(
            "INSERT INTO platform.user_totp (user_id, sealed_secret, sealed_with)"
            " VALUES (:u, :s, :w) ON CONFLICT (user_id) DO UPDATE"
            " SET sealed_secret = excluded.sealed_secret, sealed_with = excluded.sealed_with,"
            " created_at = now() WHERE platform.user_totp.confirmed_at IS NULL RETURNING 1"
        ),
        {"u": user_id, "s": sealed, "w": sealed_with},
    )


async def use_step(session: AsyncSession, user_id: UUID, step: int, *, confirm: bool) -> bool:
    """Record ``step`` as used, once: False when it or a later one was used already."""
    return await returns_row(
        session,
        text(
            "UPDATE platform.user_totp SET last_step = :step,"
            " confirmed_at = CASE WHEN :confirm THEN now() ELSE confirmed_at END"
            " WHERE user_id = :u AND last_step < :step"
            " AND (confirmed_at IS NULL) = CAST(:confirm AS boolean) RETURNING 1"
        ),
        {"u": user_id, "step": step, "confirm": confirm},
    )


async def delete_totp(session: AsyncSession, user_id: UUID) -> None:
    await session.execute(
        text("DELETE FROM platform.user_recovery_codes WHERE user_id = :u"), {"u": user_id}
    )
    await session.execute(text("DELETE FROM platform.user_totp WHERE user_id = :u"), {"u": user_id})


async def replace_recovery_codes(session: AsyncSession, user_id: UUID, hashes: list[str]) -> None:
    await session.execute(
        text("DELETE FROM platform.user_recovery_codes WHERE user_id = :u"), {"u": user_id}
    )
    await session.execute(
        text("INSERT INTO platform.user_recovery_codes (user_id, code_hash) VALUES (:u, :h)"),
        [{"u": user_id, "h": h} for h in hashes],
    )


async def use_recovery_code(session: AsyncSession, user_id: UUID, code_hash: str) -> bool:
    return await returns_row(
        session,
        text(
            "UPDATE platform.user_recovery_codes SET used_at = now()"
            " WHERE user_id = :u AND code_hash = :h AND used_at IS NULL RETURNING 1"
        ),
        {"u": user_id, "h": code_hash},
    )


async def recovery_codes_left(session: AsyncSession, user_id: UUID) -> int:
    row = await session.execute(
        text(
            "SELECT count(*) FROM platform.user_recovery_codes"
            " WHERE user_id = :u AND used_at IS NULL"
        ),
        {"u": user_id},
    )
    return int(row.scalar_one())


async def open_challenge(
    session: AsyncSession,
    token_hash: str,
    *,
    realm: str,
    user_id: UUID,
    kind: str,
    expires_at: datetime,
) -> None:
    await session.execute(
        text("DELETE FROM platform.mfa_challenges WHERE user_id = :u AND expires_at < now()"),
        {"u": user_id},
    )
    await session.execute(
        text(
            "INSERT INTO platform.mfa_challenges (token_hash, realm, user_id, kind, expires_at)"
            " VALUES (:t, :r, :u, :k, :e)"
        ),
        {"t": token_hash, "r": realm, "u": user_id, "k": kind, "e": expires_at},
    )


async def challenge(session: AsyncSession, token_hash: str, realm: str) -> dict[str, Any] | None:
    """The live challenge of that token in that realm, locked."""
    return await fetch_first(
        session,
        text(
            "SELECT user_id, kind, attempts, passed_at FROM platform.mfa_challenges"
            " WHERE token_hash = :t AND realm = :r AND expires_at > now() FOR UPDATE"
        ),
        {"t": token_hash, "r": realm},
    )


async def count_attempt(session: AsyncSession, token_hash: str) -> None:
    await session.execute(
        text("UPDATE platform.mfa_challenges SET attempts = attempts + 1 WHERE token_hash = :t"),
        {"t": token_hash},
    )


async def close_challenge(session: AsyncSession, token_hash: str) -> None:
    await session.execute(
        text("DELETE FROM platform.mfa_challenges WHERE token_hash = :t"), {"t": token_hash}
    )


async def purge_expired_challenges(session: AsyncSession) -> None:
    await session.execute(text("DELETE FROM platform.mfa_challenges WHERE expires_at < now()"))


async def pass_challenge(session: AsyncSession, token_hash: str) -> None:
    await session.execute(
        text("UPDATE platform.mfa_challenges SET passed_at = now() WHERE token_hash = :t"),
        {"t": token_hash},
    )


async def mfa_required(session: AsyncSession, realm: str) -> bool:
    row = await session.execute(
        text("SELECT mfa_required FROM platform.realms WHERE name = :r"), {"r": realm}
    )
    return bool(row.scalar())


sealed_secrets = SealedSecrets("user_totp", key="user_id")
