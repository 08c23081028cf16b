"""``/v1/flags``: operators manage flags; any authenticated caller evaluates them for its tenant."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.flags.schemas import Evaluation, FlagChange, FlagIn, FlagPatch, ToggleIn
from plexica.flags.service import FlagService
from plexica.kit.db import Database, DbDep
from plexica.kit.security import OperatorDep, PrincipalDep
from plexica.kit.state import configured, core_state
from plexica_sdk.context import Principal
from plexica_sdk.errors import ForbiddenError
from plexica_sdk.flags import FlagContext, FlagDefinition

router = APIRouter(prefix="/v1/flags", tags=["flags"])


def get_flags(request: Request) -> FlagService:
    return configured(core_state(request).flags, "feature flags are not configured on this service")


FlagsDep = Annotated[FlagService, Depends(get_flags)]


async def _committed(
    db: Database,
    flags: FlagService,
    change: Callable[[AsyncSession], Awaitable[FlagDefinition]],
) -> FlagDefinition:
    """``change`` in its own transaction, announced only once committed: no replica caches a
    flag that was rolled back."""
    async with db.session() as session:
        flag = await change(session)
    await flags.announce(flag)
    return flag


@router.get("", summary="Every flag (operators)")
async def list_flags(flags: FlagsDep, db: DbDep, _: OperatorDep) -> list[FlagDefinition]:
    async with db.session() as session:
        return await flags.all(session)


@router.post("", summary="Create a flag (operators)", status_code=201)
async def create_flag(
    body: FlagIn, flags: FlagsDep, db: DbDep, operator: OperatorDep
) -> FlagDefinition:
    return await _committed(db, flags, lambda s: flags.create(s, operator.actor, body))


@router.get("/evaluate", summary="Evaluate flags for the caller's tenant")
async def evaluate_flags(
    flags: FlagsDep,
    principal: PrincipalDep,
    key: Annotated[list[str], Query(max_length=100)],
) -> dict[str, Evaluation]:
    ctx = FlagContext(
        tenant_id=str(principal.tenant_id) if principal.tenant_id else None,
        tenant_slug=principal.tenant_slug,
    )
    out: dict[str, Evaluation] = {}
    for k in key:
        value, variant, reason = flags.evaluate(k, ctx, None)
        out[k] = Evaluation(value=value, variant=variant, reason=str(reason))
    return out


async def require_feed_reader(principal: PrincipalDep) -> Principal:
    """Platform services (plugins) and operators: the snapshot names tenants' targeting."""
    if principal.is_operator or (principal.is_service and principal.tenant_id is None):
        return principal
    raise ForbiddenError("the flag snapshot is for platform services")


@router.get("/snapshot", summary="Every flag definition, for plugins' in-process evaluation")
async def snapshot(
    flags: FlagsDep,
    _: Annotated[Principal, Depends(require_feed_reader)],
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    etag = flags.cache.etag
    if if_none_match == etag:
        return Response(status_code=304, headers={"ETag": etag})
    body = [f.model_dump(mode="json") for f in flags.cache.all().values()]
    return JSONResponse({"flags": body}, headers={"ETag": etag, "Cache-Control": "no-cache"})


@router.get("/{key}", summary="One flag (operators)")
async def get_flag(key: str, flags: FlagsDep, db: DbDep, _: OperatorDep) -> FlagDefinition:
    async with db.session() as session:
        return await flags.get(session, key)


@router.patch("/{key}", summary="Change a flag's targeting (operators)")
async def update_flag(
    key: str, body: FlagPatch, flags: FlagsDep, db: DbDep, operator: OperatorDep
) -> FlagDefinition:
    return await _committed(db, flags, lambda s: flags.update(s, operator.actor, key, body))


@router.post("/{key}/toggle", summary="Switch a flag on or off (operators)")
async def toggle_flag(
    key: str, flags: FlagsDep, db: DbDep, operator: OperatorDep, body: ToggleIn | None = None
) -> FlagDefinition:
    enabled = body.enabled if body else None
    return await _committed(db, flags, lambda s: flags.toggle(s, operator.actor, key, enabled))


@router.get("/{key}/changes", summary="A flag's change history (operators)")
async def flag_changes(
    key: str,
    flags: FlagsDep,
    db: DbDep,
    _: OperatorDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[FlagChange]:
    async with db.session() as session:
        await flags.get(session, key)
        return await flags.changes(session, key, limit)
