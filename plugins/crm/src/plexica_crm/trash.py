"""The trash of deleted companies, contacts and deals: listed, and restored within 30 days
(ADR 0236). A delete puts a record there (``service``)."""

from __future__ import annotations

from uuid import UUID

from plexica_crm import repository as repo
from plexica_crm.kinds import Kind, M, T
from plexica_crm.schemas import CrmNotFoundError
from plexica_crm.service import TRASH_DAYS
from plexica_sdk.app import PluginContext
from plexica_sdk.pagination import Page, page_of


async def list_trash(ctx: PluginContext, kind: Kind[M, T], limit: int, offset: int) -> Page[T]:
    rows, total = await repo.list_trash(ctx.db, kind.table, TRASH_DAYS, limit, offset)
    return page_of(kind.trashed, rows, total, limit, offset)


async def restore(ctx: PluginContext, kind: Kind[M, T], id_: UUID) -> M:
    """The record as it was, with the links to it that its delete hid; a link of its own to a
    record still in the trash stays hidden until that one is restored too."""
    await repo.lock_deletes(ctx.db)
    row = await repo.restore(ctx.db, kind.table, id_, TRASH_DAYS)
    if row is None:
        raise CrmNotFoundError(f"no such {kind.what} in the trash")
    await repo.touch_links(ctx.db, kind.table, id_)
    await ctx.publish(
        kind.event("restored"),
        {f"{kind.what}_id": str(id_), "restored_by": ctx.user_id},
        subject=kind.subject(id_),
    )
    return kind.model.model_validate(row)
