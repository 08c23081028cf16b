"""SQL of the invitations (``platform.invites``, migration i0006): typed rows in and out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.kit.db import PLATFORM_SCHEMA

METADATA = sa.MetaData(schema=PLATFORM_SCHEMA)

invites = sa.Table(
    "invites",
    METADATA,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("tenant_id", pg.UUID(as_uuid=True), nullable=True),
    sa.Column("realm", sa.Text(), nullable=False),
    sa.Column("user_id", sa.Text(), nullable=False),
    sa.Column("email", sa.Text(), nullable=False),
    sa.Column("roles", pg.ARRAY(sa.Text()), nullable=False),
    sa.Column("token_hash", sa.Text(), nullable=False, unique=True),
    sa.Column("invited_by", sa.Text(), nullable=False),
    sa.Column("sent_count", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)
_t = invites.c
_COLUMNS = [c for c in invites.c if c.name != "token_hash"]


@dataclass(frozen=True)
class InviteRow:
    id: UUID
    tenant_id: UUID | None
    realm: str
    user_id: str
    email: str
    roles: list[str]
    invited_by: str
    sent_count: int
    created_at: datetime
    sent_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewInvite:
    id: UUID
    tenant_id: UUID | None
    realm: str
    user_id: str
    email: str
    roles: list[str]
    token_hash: str
    invited_by: str
    now: datetime
    expires_at: datetime


def _row(found: sa.RowMapping) -> InviteRow:
    return InviteRow(**{k: v for k, v in found.items() if k != "token_hash"})


async def insert(session: AsyncSession, new: NewInvite) -> InviteRow:
    result = await session.execute(
        sa.insert(invites)
        .values(
            id=new.id, tenant_id=new.tenant_id, realm=new.realm, user_id=new.user_id,
            email=new.email, roles=new.roles, token_hash=new.token_hash,
            invited_by=new.invited_by, sent_count=1, created_at=new.now, sent_at=new.now,
            expires_at=new.expires_at,
        )
        .returning(*_COLUMNS)
    )  # fmt: skip
    return _row(result.mappings().one())


async def pending(session: AsyncSession, realm: str, now: datetime) -> list[InviteRow]:
    """Not accepted, not revoked; expired ones too (they can be resent)."""
    rows = await session.execute(
        sa.select(*_COLUMNS)
        .where(_t.realm == realm, _t.accepted_at.is_(None), _t.revoked_at.is_(None))
        .order_by(_t.created_at.desc(), _t.id)
    )
    return [_row(r) for r in rows.mappings()]


async def lock(session: AsyncSession, realm: str, invite_id: UUID) -> InviteRow | None:
    found = await session.execute(
        sa.select(*_COLUMNS).where(_t.realm == realm, _t.id == invite_id).with_for_update()
    )
    row = found.mappings().first()
    return _row(row) if row else None


async def by_token(
    session: AsyncSession, token_hash: str, *, for_update: bool = False
) -> tuple[InviteRow, str] | None:
    """The invite and its stored hash (the caller compares it in constant time)."""
    query = sa.select(*_COLUMNS, _t.token_hash).where(_t.token_hash == token_hash)
    found = await session.execute(query.with_for_update() if for_update else query)
    row = found.mappings().first()
    return (_row(row), str(row["token_hash"])) if row else None


async def renew(
    session: AsyncSession, invite_id: UUID, token_hash: str, now: datetime, expires_at: datetime
) -> InviteRow:
    result = await session.execute(
        sa.update(invites)
        .where(_t.id == invite_id)
        .values(
            token_hash=token_hash, sent_at=now, expires_at=expires_at,
            sent_count=_t.sent_count + 1,
        )
        .returning(*_COLUMNS)
    )  # fmt: skip
    return _row(result.mappings().one())


async def mark(session: AsyncSession, invite_id: UUID, **when: datetime) -> InviteRow:
    assert set(when) <= {"accepted_at", "revoked_at"}
    result = await session.execute(
        sa.update(invites).where(_t.id == invite_id).values(**when).returning(*_COLUMNS)
    )
    return _row(result.mappings().one())


async def latest_for(session: AsyncSession, tenant_id: UUID, email: str) -> InviteRow | None:
    """The tenant's most recent invitation of ``email``, whatever its state."""
    found = await session.execute(
        sa.select(*_COLUMNS)
        .where(_t.tenant_id == tenant_id, _t.email == email)
        .order_by(_t.created_at.desc(), _t.id)
        .limit(1)
    )
    row = found.mappings().first()
    return _row(row) if row else None


async def revoke_open(session: AsyncSession, tenant_id: UUID, now: datetime) -> int:
    """Every invitation of the tenant not yet accepted or revoked stops working."""
    result = await session.execute(
        sa.update(invites)
        .where(_t.tenant_id == tenant_id, _t.accepted_at.is_(None), _t.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)
