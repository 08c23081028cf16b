"""Publishing events: written to the outbox in the caller's transaction, delivered later.

Nothing is published for a change that rolls back, because the event row rolls back with it.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.events import repository
from plexica.events.schemas import CloudEvent

CORE_SOURCE = "/plexica/core"


async def publish(
    session: AsyncSession,
    type: str,  # noqa: A002 - the CloudEvents attribute name
    data: dict[str, Any],
    *,
    tenant_id: UUID | None = None,
    subject: str | None = None,
    source: str = CORE_SOURCE,
) -> CloudEvent:
    trace_id = structlog.contextvars.get_contextvars().get("trace_id")
    event = CloudEvent(
        type=type,
        source=source,
        data=data,
        tenantid=tenant_id,
        subject=subject,
        traceparent=_traceparent(trace_id),
    )
    await repository.insert_outbox(session, event)
    return event


def _traceparent(trace_id: object) -> str | None:
    """W3C traceparent from our trace id when it is 32 hex characters."""
    if isinstance(trace_id, str) and len(trace_id) == 32:
        try:
            int(trace_id, 16)
        except ValueError:
            return None
        return f"00-{trace_id.lower()}-{'0' * 15}1-01"
    return None


async def purge_pending(session: AsyncSession, tenant_id: UUID) -> int:
    """Drop the tenant's events not yet delivered (used when the tenant is deleted)."""
    return await repository.delete_pending_of_tenant(session, tenant_id)
