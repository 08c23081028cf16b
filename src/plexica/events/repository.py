"""SQL of the transactional outbox (platform schema)."""

from __future__ import annotations

import json
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.events.schemas import CloudEvent


async def insert_outbox(session: AsyncSession, event: CloudEvent) -> None:
    await session.execute(
        text(
            "INSERT INTO platform.outbox (id, tenant_id, type, source, subject, time, data,"
            " traceparent) VALUES (:id, :tenant_id, :type, :source, :subject, :time,"
            " CAST(:data AS jsonb), :traceparent)"
        ),
        {
            "id": event.id,
            "tenant_id": event.tenantid,
            "type": event.type,
            "source": event.source,
            "subject": event.subject,
            "time": event.time,
            "data": json.dumps(event.data, default=str),
            "traceparent": event.traceparent,
        },
    )


async def delete_pending_of_tenant(session: AsyncSession, tenant_id: UUID) -> int:
    result = await session.execute(
        text(
            "DELETE FROM platform.outbox WHERE tenant_id = :id AND published_at IS NULL"
            " RETURNING seq"
        ),
        {"id": tenant_id},
    )
    return len(result.all())
