"""Recording and reading the audit log.

``record`` writes in the caller's transaction, so an entry commits or rolls back with the change
it describes; an insert that fails raises and fails the action rather than being dropped.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.audit import repository
from plexica.audit.schemas import AuditEntry, AuditFilter, AuditPage
from plexica_sdk.context import Principal
from plexica_sdk.errors import PlexicaError


async def record(  # noqa: PLR0917 - the audit contract other domains call
    session: AsyncSession,
    actor: str,
    action: str,
    tenant_id: UUID | None,
    target: str | None,
    before: Any = None,
    after: Any = None,
) -> UUID:
    bound = structlog.contextvars.get_contextvars()
    trace_id, request_id = bound.get("trace_id"), bound.get("request_id")
    return await repository.insert(
        session,
        actor=actor,
        action=action,
        tenant_id=tenant_id,
        target=target,
        before=before,
        after=after,
        trace_id=trace_id if isinstance(trace_id, str) else None,
        request_id=request_id if isinstance(request_id, str) else None,
    )


async def query(
    session: AsyncSession,
    principal: Principal,
    *,
    where: AuditFilter | None = None,
    before: int | None = None,
    limit: int = 100,
) -> AuditPage:
    """Operators see every entry; anyone else only the entries of their own tenant."""
    where = where or AuditFilter()
    if where.since is not None and where.until is not None and where.since >= where.until:
        raise PlexicaError(
            "request validation failed", code="validation_error", status=422,
            details=[{"loc": ["query", "until"], "msg": "until must be later than since",
                      "type": "value_error"}],
        )  # fmt: skip
    rows = await repository.query(
        session,
        tenant_id=principal.tenant_id,
        all_tenants=principal.is_operator,
        where=where,
        before_seq=before,
        limit=limit,
    )
    items = [AuditEntry.model_validate(r) for r in rows]
    return AuditPage(items=items, next_before=items[-1].seq if len(items) == limit else None)
