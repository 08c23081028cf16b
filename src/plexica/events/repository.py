"""SQL of the transactional outbox (platform schema)."""

from __future__ import annotations

import json

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
