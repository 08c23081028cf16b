"""SQL of support access (``platform.support_grants``, ``support_sessions``, migration i0008)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.identity.schemas import SupportGrant, SupportSession
from plexica.kit.db import PLATFORM_SCHEMA

METADATA = sa.MetaData(schema=PLATFORM_SCHEMA)
RECENT_SESSIONS = 20


def _at(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True))


grants = sa.Table(
    "support_grants", METADATA,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("tenant_id", pg.UUID(as_uuid=True)), sa.Column("realm", sa.Text()),
    sa.Column("granted_by", sa.Text()), _at("granted_at"), _at("expires_at"),
    sa.Column("revoked_by", sa.Text()), _at("revoked_at"),
)  # fmt: skip
sessions = sa.Table(
    "support_sessions", METADATA,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("grant_id", pg.UUID(as_uuid=True)), sa.Column("realm", sa.Text()),
    sa.Column("user_id", pg.UUID(as_uuid=True)), sa.Column("user_email", sa.Text()),
    sa.Column("operator_subject", sa.Text()), sa.Column("operator_email", sa.Text()),
    _at("started_at"), _at("expires_at"), _at("ended_at"), sa.Column("end_reason", sa.Text()),
)  # fmt: skip
_g, _s = grants.c, sessions.c
_GRANT = (_g.id, _g.granted_by, _g.granted_at, _g.expires_at, _g.revoked_by, _g.revoked_at)
_SESSION = (
    _s.id, _s.user_email, _s.operator_email, _s.started_at, _s.expires_at, _s.ended_at,
    _s.end_reason,
)  # fmt: skip


def _live_grant(tenant_id: UUID, now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(_g.tenant_id == tenant_id, _g.revoked_at.is_(None), _g.expires_at > now)


async def live_grant(session: AsyncSession, tenant_id: UUID, now: datetime) -> SupportGrant | None:
    found = await session.execute(sa.select(*_GRANT).where(_live_grant(tenant_id, now)))
    row = found.mappings().first()
    return SupportGrant.model_validate(dict(row)) if row else None


async def latest_grant(session: AsyncSession, tenant_id: UUID) -> SupportGrant | None:
    """The tenant's newest grant, live or not: why a session was refused."""
    found = await session.execute(
        sa.select(*_GRANT).where(_g.tenant_id == tenant_id).order_by(_g.granted_at.desc()).limit(1)
    )
    row = found.mappings().first()
    return SupportGrant.model_validate(dict(row)) if row else None


async def put_grant(  # noqa: PLR0917 - one row's columns
    session: AsyncSession,
    grant_id: UUID,
    tenant_id: UUID,
    realm: str,
    by: str,
    now: datetime,
    expires_at: datetime,
) -> SupportGrant:
    """The live grant with its window moved to ``expires_at``, or a new one."""
    moved = await session.execute(
        sa.update(grants).where(_live_grant(tenant_id, now))
        .values(expires_at=expires_at, granted_by=by, granted_at=now).returning(*_GRANT)
    )  # fmt: skip
    row = moved.mappings().first()
    if row is None:
        made = await session.execute(
            sa.insert(grants).values(
                id=grant_id, tenant_id=tenant_id, realm=realm, granted_by=by, granted_at=now,
                expires_at=expires_at,
            ).returning(*_GRANT)
        )  # fmt: skip
        row = made.mappings().one()
    return SupportGrant.model_validate(dict(row))


async def revoke_grant(
    session: AsyncSession, tenant_id: UUID, by: str, now: datetime
) -> SupportGrant | None:
    done = await session.execute(
        sa.update(grants).where(_live_grant(tenant_id, now))
        .values(revoked_by=by, revoked_at=now).returning(*_GRANT)
    )  # fmt: skip
    row = done.mappings().first()
    return SupportGrant.model_validate(dict(row)) if row else None


async def insert_session(
    session: AsyncSession,
    *,
    session_id: UUID,
    grant_id: UUID,
    realm: str,
    user_id: UUID,
    user_email: str,
    operator_subject: str,
    operator_email: str,
    now: datetime,
    expires_at: datetime,
) -> SupportSession:
    made = await session.execute(
        sa.insert(sessions).values(
            id=session_id, grant_id=grant_id, realm=realm, user_id=user_id, user_email=user_email,
            operator_subject=operator_subject, operator_email=operator_email, started_at=now,
            expires_at=expires_at,
        ).returning(*_SESSION)
    )  # fmt: skip
    return SupportSession.model_validate(dict(made.mappings().one()))


async def end_sessions(
    session: AsyncSession,
    *,
    grant_id: UUID | None = None,
    session_id: UUID | None = None,
    now: datetime,
    reason: str,
) -> list[SupportSession]:
    """End the live sessions of a grant, or one session: the ones ended now."""
    where = [_s.ended_at.is_(None), _s.expires_at > now]
    where.append(_s.grant_id == grant_id if grant_id is not None else _s.id == session_id)
    done = await session.execute(
        sa.update(sessions).where(*where).values(ended_at=now, end_reason=reason)
        .returning(*_SESSION)
    )  # fmt: skip
    return [SupportSession.model_validate(dict(r)) for r in done.mappings()]


async def recent_sessions(session: AsyncSession, tenant_id: UUID) -> list[SupportSession]:
    found = await session.execute(
        sa.select(*_SESSION).join(grants, _g.id == _s.grant_id)
        .where(_g.tenant_id == tenant_id).order_by(_s.started_at.desc()).limit(RECENT_SESSIONS)
    )  # fmt: skip
    return [SupportSession.model_validate(dict(r)) for r in found.mappings()]


async def forget_realm(session: AsyncSession, realm: str) -> None:
    await session.execute(sa.delete(grants).where(_g.realm == realm))
