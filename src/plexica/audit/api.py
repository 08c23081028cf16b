"""``/v1/audit``: the audit log, scoped to the caller's tenant unless the caller is an operator."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime

from plexica.audit import service
from plexica.audit.schemas import AuditFilter, AuditPage, TextMatch
from plexica.kit.db import request_db
from plexica.kit.security import require_permission
from plexica_sdk.context import Principal

router = APIRouter(prefix="/v1/audit", tags=["audit"])

MAX_SEQ = 2**63 - 1
MATCH = "The whole value, or its beginning when it ends with *: identity.user.*"


@router.get("", summary="Audit entries, newest first")
async def list_audit(  # noqa: PLR0917 - one query parameter each
    request: Request,
    principal: Annotated[Principal, Depends(require_permission("audit:read"))],
    action: Annotated[str | None, Query(min_length=1, max_length=200, description=MATCH)] = None,
    actor: Annotated[str | None, Query(min_length=1, max_length=320, description=MATCH)] = None,
    target: Annotated[str | None, Query(min_length=1, max_length=300, description=MATCH)] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="Entries at or after (ISO 8601, with offset)")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(description="Entries before (ISO 8601, with offset)")
    ] = None,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_SEQ, description="next_before of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    where = AuditFilter(
        actor=TextMatch.of(actor), action=TextMatch.of(action), target=TextMatch.of(target),
        since=since, until=until,
    )  # fmt: skip
    db = request_db(request)
    async with db.session() as session:
        return await service.query(session, principal, where=where, before=before, limit=limit)
