"""SQL of the web sessions (``platform.web_sessions``, migration w0001): typed rows in and out.

Every statement is one round trip on an autocommit connection: a page load reads its session
with a single indexed lookup, and the table is schema-qualified, so no ``search_path`` is set."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from plexica.kit.db import PLATFORM_SCHEMA

METADATA = sa.MetaData(schema=PLATFORM_SCHEMA)
# Last-seen is written at most this often per session: a page view is a read, not a write.
TOUCH_EVERY = timedelta(seconds=60)
CLEANUP_BATCH = 500

web_sessions = sa.Table(
    "web_sessions",
    METADATA,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("token_hash", sa.LargeBinary(), nullable=False, unique=True),
    sa.Column("realm", sa.Text(), nullable=False),
    sa.Column("subject", sa.Text(), nullable=False),
    sa.Column("tokens", sa.LargeBinary(), nullable=False),
    sa.Column("access_expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("csrf", sa.Text(), nullable=False),
    sa.Column("user_agent", sa.Text(), nullable=False),
    sa.Column("ip", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)
_t = web_sessions.c


@dataclass(frozen=True)
class _Session:
    """The columns a session is written with and read back by."""

    id: UUID
    realm: str
    subject: str
    tokens: bytes
    access_expires_at: datetime
    csrf: str
    user_agent: str
    ip: str


@dataclass(frozen=True)
class SessionRow(_Session):
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class NewSession(_Session):
    token_hash: bytes
    lifetime_seconds: int


_COLUMNS = (
    _t.id, _t.realm, _t.subject, _t.tokens, _t.access_expires_at, _t.csrf, _t.user_agent, _t.ip,
    _t.created_at, _t.last_seen_at, _t.expires_at,
)  # fmt: skip


def _row(found: sa.RowMapping) -> SessionRow:
    return SessionRow(**{c.name: found[c.name] for c in _COLUMNS})


async def insert(conn: AsyncConnection, new: NewSession) -> None:
    now = sa.func.now()
    await conn.execute(
        sa.insert(web_sessions).values(
            id=new.id, token_hash=new.token_hash, realm=new.realm, subject=new.subject,
            tokens=new.tokens, access_expires_at=new.access_expires_at, csrf=new.csrf,
            user_agent=new.user_agent, ip=new.ip, created_at=now, last_seen_at=now,
            expires_at=now + timedelta(seconds=new.lifetime_seconds),
        )
    )  # fmt: skip


async def find_live(conn: AsyncConnection, token_hash: bytes) -> tuple[SessionRow, bool] | None:
    """The unexpired session of a cookie, and whether its last-seen time is due a write."""
    stale = (_t.last_seen_at < sa.func.now() - TOUCH_EVERY).label("stale")
    query = sa.select(*_COLUMNS, stale).where(
        _t.token_hash == token_hash, _t.expires_at > sa.func.now()
    )
    found = (await conn.execute(query)).mappings().first()
    return None if found is None else (_row(found), bool(found["stale"]))


async def touch(conn: AsyncConnection, session_id: UUID) -> None:
    await conn.execute(
        sa.update(web_sessions).where(_t.id == session_id).values(last_seen_at=sa.func.now())
    )


async def lock(conn: AsyncConnection, session_id: UUID) -> SessionRow | None:
    """The unexpired session, locked until the caller's transaction ends (one refresh at a
    time per session, across replicas)."""
    query = (
        sa.select(*_COLUMNS)
        .where(_t.id == session_id, _t.expires_at > sa.func.now())
        .with_for_update()
    )
    found = (await conn.execute(query)).mappings().first()
    return None if found is None else _row(found)


async def update_tokens(
    conn: AsyncConnection,
    session_id: UUID,
    tokens: bytes,
    access_expires_at: datetime,
    expires_at: datetime | None = None,
) -> bool:
    """``expires_at``: the session's new end (the new refresh token's), or None to keep it."""
    values: dict[str, object] = {
        "tokens": tokens,
        "access_expires_at": access_expires_at,
        "last_seen_at": sa.func.now(),
    }
    if expires_at is not None:
        values["expires_at"] = expires_at
    done = await conn.execute(sa.update(web_sessions).where(_t.id == session_id).values(**values))
    return bool(done.rowcount)


async def of_user(conn: AsyncConnection, realm: str, subject: str) -> list[SessionRow]:
    query = (
        sa.select(*_COLUMNS)
        .where(_t.realm == realm, _t.subject == subject, _t.expires_at > sa.func.now())
        .order_by(_t.last_seen_at.desc())
    )
    return [_row(r) for r in (await conn.execute(query)).mappings()]


async def delete(
    conn: AsyncConnection,
    realm: str,
    subject: str | None = None,
    session_id: UUID | None = None,
    keep: UUID | None = None,
) -> list[SessionRow]:
    """Deletes the sessions of a realm's user (or one of them, or all but ``keep``) and returns
    what was deleted."""
    conditions = [_t.realm == realm]
    if subject is not None:
        conditions.append(_t.subject == subject)
    if session_id is not None:
        conditions.append(_t.id == session_id)
    if len(conditions) == 1:
        raise ValueError("refusing to delete every session of a realm")
    if keep is not None:
        conditions.append(_t.id != keep)
    query = sa.delete(web_sessions).where(*conditions).returning(*_COLUMNS)
    return [_row(r) for r in (await conn.execute(query)).mappings()]


async def delete_expired(conn: AsyncConnection, limit: int = CLEANUP_BATCH) -> int:
    """A bounded batch, so that the sign-in that runs it never waits on a long delete."""
    due = sa.select(_t.id).where(_t.expires_at <= sa.func.now()).limit(limit).scalar_subquery()
    done = await conn.execute(sa.delete(web_sessions).where(_t.id.in_(due)))
    return int(done.rowcount)
