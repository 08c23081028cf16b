"""SQL of the realms' signing keys (``platform.realm_keys``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

ACTIVE, NEXT, PREVIOUS = "active", "next", "previous"

realm_keys = sa.Table(
    "realm_keys",
    sa.MetaData(schema="platform"),
    sa.Column("kid", sa.Text(), primary_key=True),
    sa.Column("realm", sa.Text(), nullable=False),
    sa.Column("status", sa.Text(), nullable=False),
    sa.Column("private_pem", sa.Text()),  # before ADR 0150 only; cleared once sealed
    sa.Column("sealed_key", sa.Text()),
    sa.Column("sealed_with", sa.Text()),
    sa.Column("public_jwk", pg.JSONB(), nullable=False),
    sa.Column("activates_at", sa.DateTime(timezone=True)),
    sa.Column("retire_at", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)


@dataclass(frozen=True)
class KeyRow:
    kid: str
    realm: str
    status: str
    private_pem: str | None
    sealed_key: str | None
    sealed_with: str | None
    public_jwk: dict[str, Any]
    activates_at: datetime | None
    retire_at: datetime | None
    created_at: datetime

    @property
    def signs_from(self) -> datetime:
        return self.activates_at or self.created_at


def _row(row: sa.RowMapping) -> KeyRow:
    return KeyRow(**{c.name: row[c.name] for c in realm_keys.columns})


async def of_realm(session: AsyncSession, realm: str) -> list[KeyRow]:
    """Newest first."""
    rows = await session.execute(
        sa.select(realm_keys)
        .where(realm_keys.c.realm == realm)
        .order_by(realm_keys.c.created_at.desc(), realm_keys.c.kid)
    )
    return [_row(r) for r in rows.mappings()]


async def all_keys(session: AsyncSession) -> list[KeyRow]:
    rows = await session.execute(
        sa.select(realm_keys).order_by(realm_keys.c.realm, realm_keys.c.created_at.desc())
    )
    return [_row(r) for r in rows.mappings()]


async def insert(
    session: AsyncSession,
    *,
    kid: str,
    realm: str,
    status: str,
    sealed_key: str,
    sealed_with: str,
    public_jwk: dict[str, Any],
    activates_at: datetime | None,
) -> None:
    await session.execute(
        sa.insert(realm_keys).values(
            kid=kid,
            realm=realm,
            status=status,
            sealed_key=sealed_key,
            sealed_with=sealed_with,
            public_jwk=public_jwk,
            activates_at=activates_at,
        )
    )


async def set_retire_at(session: AsyncSession, kid: str, retire_at: datetime | None) -> None:
    await session.execute(
        sa.update(realm_keys).where(realm_keys.c.kid == kid).values(retire_at=retire_at)
    )


async def set_status(session: AsyncSession, kid: str, status: str) -> None:
    await session.execute(
        sa.update(realm_keys).where(realm_keys.c.kid == kid).values(status=status)
    )


async def promote_due(session: AsyncSession, now: datetime) -> list[str]:
    """Pre-published keys whose time has come become ``active``; the key they replace becomes
    ``previous`` (demoted first: one active key per realm). Returns the promoted kids."""
    due = await session.execute(
        sa.select(realm_keys.c.realm, realm_keys.c.kid).where(
            realm_keys.c.status == NEXT, realm_keys.c.activates_at <= now
        )
    )
    promoted: list[str] = []
    for realm, kid in due.all():
        await session.execute(
            sa.update(realm_keys)
            .where(realm_keys.c.realm == realm, realm_keys.c.status == ACTIVE)
            .values(status=PREVIOUS)
        )
        await session.execute(
            sa.update(realm_keys).where(realm_keys.c.kid == kid).values(status=ACTIVE)
        )
        promoted.append(kid)
    return promoted


async def delete_retired(session: AsyncSession, now: datetime) -> list[str]:
    deleted = await session.execute(
        sa.delete(realm_keys)
        .where(realm_keys.c.status == PREVIOUS, realm_keys.c.retire_at <= now)
        .returning(realm_keys.c.kid)
    )
    return list(deleted.scalars())


async def store_sealed(
    session: AsyncSession, kid: str, sealed_key: str, sealed_with: str, *, was: str | None
) -> bool:
    """Replace the key's material by ``sealed_key`` if it is still as read (``was``: the sealed
    token read, or None for a plaintext key); clears any plaintext."""
    current = (
        realm_keys.c.private_pem.is_not(None) if was is None else realm_keys.c.sealed_key == was
    )
    updated = await session.execute(
        sa.update(realm_keys)
        .where(realm_keys.c.kid == kid, current)
        .values(sealed_key=sealed_key, sealed_with=sealed_with, private_pem=None)
    )
    return bool(updated.rowcount)  # type: ignore[attr-defined]


async def lock_keys(session: AsyncSession) -> None:
    """Every change of key state (rotation, promotion, retirement, sealing) runs under this one
    transaction lock; issuing tokens reads without it."""
    await session.execute(
        sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext("plexica.realm_keys")))
    )
