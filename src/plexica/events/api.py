"""Operator routes: dead letters (list, retry, discard) and replays for a plugin; and the public
event schemas (ADR 0182)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from plexica.events import service
from plexica.events.catalog import schema_base, schema_path
from plexica.events.schemas import (
    EVENT_TYPE_RE,
    DeadLetter,
    DeadLetterStatus,
    ReplayRequest,
    ReplayResult,
)
from plexica.kit.db import request_db
from plexica.kit.security import OperatorDep
from plexica.kit.state import core_state

router = APIRouter(prefix="/v1/events", tags=["events"])


class SchemaResponse(JSONResponse):
    media_type = "application/schema+json"


@router.get("/dead-letters", summary="Dead letters, newest first")
async def list_dead_letters(
    request: Request,
    _: OperatorDep,
    plugin_id: Annotated[str | None, Query(max_length=63)] = None,
    tenant_id: UUID | None = None,
    status: DeadLetterStatus | None = DeadLetterStatus.PENDING,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetter]:
    async with request_db(request).session() as session:
        return await service.list_dead_letters(
            session, plugin_id=plugin_id, tenant_id=tenant_id, status=status, limit=limit
        )


@router.post("/dead-letters/{dead_letter_id}/retry", summary="Deliver a dead letter again")
async def retry_dead_letter(request: Request, _: OperatorDep, dead_letter_id: UUID) -> DeadLetter:
    async with request_db(request).session() as session:
        return await service.retry_dead_letter(session, dead_letter_id)


@router.post("/dead-letters/{dead_letter_id}/discard", summary="Give up on a dead letter")
async def discard_dead_letter(request: Request, _: OperatorDep, dead_letter_id: UUID) -> DeadLetter:
    async with request_db(request).session() as session:
        return await service.discard_dead_letter(session, dead_letter_id)


@router.post("/replays", status_code=202, summary="Replay a tenant's history to one plugin")
async def replay(request: Request, _: OperatorDep, body: ReplayRequest) -> ReplayResult:
    async with request_db(request).session() as session:
        queued = await service.replay_for_plugin(
            session,
            body.plugin_id,
            body.tenant_id,
            body.event_types,
            schema_base=schema_base(core_state(request).settings),
        )
    return ReplayResult(plugin_id=body.plugin_id, tenant_id=body.tenant_id, queued=queued)


@router.get(
    "/schemas/{event_type}/{version}",
    summary="The JSON Schema of an event type's data (an event's dataschema)",
    response_class=SchemaResponse,
)
async def event_schema(
    request: Request,
    event_type: Annotated[str, Path(pattern=EVENT_TYPE_RE.pattern, max_length=200)],
    version: Annotated[int, Path(ge=1, le=10_000)],
) -> SchemaResponse:
    """Public, like the documentation: the core's registry or the catalog's manifests."""
    uri = schema_base(core_state(request).settings) + schema_path(event_type, version)
    async with request_db(request).session() as session:
        schema = await service.event_schema(session, event_type, version, uri)
    return SchemaResponse(schema, headers={"Cache-Control": "public, max-age=300"})
