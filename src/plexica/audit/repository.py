"""SQL of the audit log (platform schema)."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.audit.schemas import AuditFilter, TextMatch


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
    request_id: str | None,
) -> UUID:
    entry_id = uuid4()
    await session.execute(
        text(
            "INSERT INTO platform.audit_log (id, actor, action, tenant_id, target, before, after,"
            " trace_id, request_id) VALUES (:id, :actor, :action, :tenant_id, :target,"
            " CAST(:before AS jsonb), CAST(:after AS jsonb), :trace_id, :request_id)"
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
            "request_id": request_id,
        },
    )
    return entry_id


def _like_prefix(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _text_condition(column: str, match: TextMatch, params: dict[str, Any]) -> str:
    params[column] = _like_prefix(match.value) if match.prefix else match.value
    if match.prefix:
        return f"{column} LIKE :{column} ESCAPE '\\'"
    return f"{column} = :{column}"


async def query(
    session: AsyncSession,
    *,
    tenant_id: UUID | None,
    all_tenants: bool,
    where: AuditFilter,
    before_seq: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    conditions = ["(:all_tenants OR tenant_id = :tenant_id)"]
    params: dict[str, Any] = {"all_tenants": all_tenants, "tenant_id": tenant_id, "limit": limit}
    texts = {"actor": where.actor, "action": where.action, "target": where.target}
    for column, match in texts.items():
        if match is not None:
            conditions.append(_text_condition(column, match, params))
    if where.since is not None:
        conditions.append("at >= :since")
        params["since"] = where.since
    if where.until is not None:
        conditions.append("at < :until")
        params["until"] = where.until
    if before_seq is not None:
        conditions.append("seq < :before_seq")
        params["before_seq"] = before_seq
    rows = await session.execute(
        text(
            "SELECT seq, id, at, actor, action, tenant_id, target, before, after, trace_id,"  # noqa: S608 - fixed fragments
            f" request_id FROM platform.audit_log WHERE {' AND '.join(conditions)}"
            " ORDER BY seq DESC LIMIT :limit"
        ),
        params,
    )
    return [dict(r) for r in rows.mappings()]
