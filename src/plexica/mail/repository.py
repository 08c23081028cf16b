"""SQL of the dev mailbox (``platform.dev_mail``, migration m0001)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.kit.db import PLATFORM_SCHEMA

METADATA = sa.MetaData(schema=PLATFORM_SCHEMA)

dev_mail = sa.Table(
    "dev_mail",
    METADATA,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("recipient", sa.Text(), nullable=False),
    sa.Column("subject", sa.Text(), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
_t = dev_mail.c


@dataclass(frozen=True)
class StoredMail:
    id: uuid.UUID
    recipient: str
    subject: str
    body: str
    created_at: datetime


async def insert(session: AsyncSession, recipient: str, subject: str, body: str) -> None:
    await session.execute(
        sa.insert(dev_mail).values(
            id=uuid.uuid4(), recipient=recipient, subject=subject, body=body,
            created_at=sa.func.now(),
        )
    )  # fmt: skip


async def latest(session: AsyncSession, limit: int, recipient: str | None) -> list[StoredMail]:
    query = sa.select(_t.id, _t.recipient, _t.subject, _t.body, _t.created_at)
    if recipient is not None:
        query = query.where(_t.recipient == recipient)
    rows = await session.execute(query.order_by(_t.created_at.desc()).limit(limit))
    return [StoredMail(**r) for r in rows.mappings()]
