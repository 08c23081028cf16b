"""SQL of the audit log (platform schema)."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def insert(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    tenant_id: UUID | None,
    target: str | None,
    before: Any,
    after: Any,
    trace_id: str | None,
) -> UUID:
    entry_id = uuid4()
    await session.execute(
        text(
            "INSERT INTO platform.audit_log (id, actor, action, tenant_id, target, before, after,"
            " trace_id) VALUES (:id, :actor, :action, :tenant_id, :target,"
            " CAST(:before AS jsonb), CAST(:after AS jsonb), :trace_id)"
        ),
        {
            "id": entry_id,
            "actor": actor,
            "action": action,
            "tenant_id": tenant_id,
            "target": target,
            "before": None if before is None else json.dumps(before, default=str),
            "after": None if after is None else json.dumps(after, default=str),
            "trace_id": trace_id,
        },
    )
    return entry_id


async def query(
    session: AsyncSession,
    *,
    tenant_id: UUID | None,
    all_tenants: bool,
    action: str | None,
    before_seq: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    where = ["(:all_tenants OR tenant_id = :tenant_id)"]
    params: dict[str, Any] = {"all_tenants": all_tenants, "tenant_id": tenant_id, "limit": limit}
    if action is not None:
        where.append("action = :action")
        params["action"] = action
    if before_seq is not None:
        where.append("seq < :before_seq")
        params["before_seq"] = before_seq
    rows = await session.execute(
        text(
            "SELECT seq, id, at, actor, action, tenant_id, target, before, after, trace_id"  # noqa: S608 - fixed fragments
            f" FROM platform.audit_log WHERE {' AND '.join(where)}"
            " ORDER BY seq DESC LIMIT :limit"
        ),
        params,
    )
    return [dict(r) for r in rows.mappings()]
