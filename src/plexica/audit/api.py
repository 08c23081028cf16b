"""``/v1/audit``: the audit log, scoped to the caller's tenant unless the caller is an operator."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from plexica.audit import service
from plexica.audit.schemas import AuditPage
from plexica.kit.db import Database
from plexica.kit.security import require_permission
from plexica_sdk.context import Principal

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", summary="Audit entries, newest first")
async def list_audit(
    request: Request,
    principal: Annotated[Principal, Depends(require_permission("audit:read"))],
    action: Annotated[str | None, Query(max_length=200)] = None,
    before: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    db: Database = request.app.state.db
    async with db.session() as session:
        return await service.query(session, principal, action=action, before=before, limit=limit)
