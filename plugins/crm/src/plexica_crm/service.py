"""CRM logic: checks references, moves deals through the pipeline and emits events."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from plexica_crm import repository as repo
from plexica_crm.kinds import COMPANIES, CONTACTS, DEALS, Kind, M
from plexica_crm.schemas import (
    Activity,
    ActivityIn,
    Company,
    CompanyIn,
    CompanyPatch,
    Contact,
    ContactIn,
    ContactPatch,
    CrmNotFoundError,
    Deal,
    DealIn,
    DealPatch,
    Patch,
    Stage,
)
from plexica_sdk.app import PluginContext
from plexica_sdk.errors import UnknownReferenceError
from plexica_sdk.pagination import Page, page_of
from plexica_sdk.preconditions import check_if_match, etag

# Data of each type: the JSON Schemas in plexica-plugin.yaml, checked as it is published.
# A company's, contact's or deal's crm.<what>.updated and .deleted: ``_update``, ``_delete``.
COMPANY_CREATED = "crm.company.created"
CONTACT_CREATED = "crm.contact.created"
DEAL_CREATED = "crm.deal.created"
DEAL_STAGE_CHANGED = "crm.deal.stage_changed"
DEAL_WON = "crm.deal.won"
ACTIVITY_CREATED = "crm.activity.created"
ACTIVITY_COMPLETED = "crm.activity.completed"
# How long a deleted record can be restored (ADR 0236).
TRASH_DAYS = 30


def _id(value: UUID | None) -> str | None:
    return str(value) if value else None


async def _exists(ctx: PluginContext, table: str, id_: UUID | None, field: str) -> None:
    # Under a key-share lock: a parallel delete of the record waits for this transaction, or
    # this check sees it gone (422), never a foreign key error at the insert (a 500).
    if id_ is not None and await repo.get(ctx.db, table, id_, key_share=True) is None:
        raise UnknownReferenceError(f"{field}: no such record", details={"field": field})


async def _found(
    ctx: PluginContext, table: str, id_: UUID, what: str, *, lock: bool = False
) -> dict[str, Any]:
    row = await repo.get(ctx.db, table, id_, lock=lock)
    if row is None:
        raise CrmNotFoundError(f"no such {what}")
    return row


async def _get(ctx: PluginContext, kind: Kind[M, Any], id_: UUID) -> M:
    return kind.model.model_validate(await _found(ctx, kind.table, id_, kind.what))


def _json(value: Any) -> Any:
    return str(value) if isinstance(value, UUID | Decimal) else value


async def _update(
    ctx: PluginContext,
    kind: Kind[M, Any],
    id_: UUID,
    patch: Patch,
    *,
    references: dict[str, str] | None = None,
    if_match: str | None = None,
) -> M:
    """The record after ``patch``; crm.<what>.updated tells what really changed,
    ``{field: {"from", "to"}}``. The row is read under its lock, so parallel changes apply in
    order and each one's "from" is true; ``if_match`` is compared with the version read so
    (ADR 0226)."""
    table, what = kind.table, kind.what
    given = patch.given()
    refs = {f: t for f, t in (references or {}).items() if f in given}
    if refs:
        await _found(ctx, table, id_, what)  # an unknown id is a 404 before any bad reference
        # The records referred to before the row itself: the order a delete takes them in
        # (a record, then the rows pointing at it), so the two cannot deadlock.
        for field, ref_table in refs.items():
            await _exists(ctx, ref_table, given[field], field)
    before = await _found(ctx, table, id_, what, lock=True)
    check_if_match(if_match, etag(before["version"]))
    changed = {name: value for name, value in given.items() if before[name] != value}
    if not changed:
        return kind.model.model_validate(before)
    after = await repo.update(ctx.db, table, id_, changed)
    changes = {n: {"from": _json(before[n]), "to": _json(after[n])} for n in changed}
    await ctx.publish(
        kind.event("updated"),
        {f"{what}_id": str(id_), "changes": changes, "updated_by": ctx.user_id},
        subject=kind.subject(id_),
    )
    return kind.model.model_validate(after)


async def _delete(
    ctx: PluginContext, kind: Kind[Any, Any], id_: UUID, if_match: str | None
) -> None:
    """Into the trash, the rows that point at it unchanged (ADR 0236); the tenant's records
    deleted 30 days ago or more go for good in the same transaction."""
    await repo.lock_deletes(ctx.db)
    row = await _found(ctx, kind.table, id_, kind.what, lock=True)
    check_if_match(if_match, etag(row["version"]))
    await repo.purge(ctx.db, TRASH_DAYS)
    await repo.trash(ctx.db, kind.table, id_, ctx.user_id)
    await repo.touch_links(ctx.db, kind.table, id_)
    await ctx.publish(
        kind.event("deleted"),
        {f"{kind.what}_id": str(id_), "deleted_by": ctx.user_id},
        subject=kind.subject(id_),
    )


async def list_companies(
    ctx: PluginContext, q: str | None, limit: int, offset: int
) -> Page[Company]:
    rows, total = await repo.list_companies(ctx.db, q, limit, offset)
    return page_of(Company, rows, total, limit, offset)


async def create_company(ctx: PluginContext, body: CompanyIn) -> Company:
    company = Company.model_validate(
        await repo.insert_company(ctx.db, {**body.model_dump(), "by": ctx.user_id})
    )
    await announce_company(ctx, company)
    return company


async def announce_company(ctx: PluginContext, company: Company) -> None:
    await ctx.publish(
        COMPANY_CREATED,
        {
            "company_id": str(company.id),
            "name": company.name,
            "domain": company.domain,
            "created_by": ctx.user_id,
        },
        subject=f"companies/{company.id}",
    )


async def get_company(ctx: PluginContext, company_id: UUID) -> Company:
    return await _get(ctx, COMPANIES, company_id)


async def update_company(
    ctx: PluginContext, company_id: UUID, patch: CompanyPatch, if_match: str | None = None
) -> Company:
    return await _update(ctx, COMPANIES, company_id, patch, if_match=if_match)


async def delete_company(ctx: PluginContext, company_id: UUID, if_match: str | None = None) -> None:
    await _delete(ctx, COMPANIES, company_id, if_match)


async def list_contacts(
    ctx: PluginContext, q: str | None, company_id: UUID | None, limit: int, offset: int
) -> Page[Contact]:
    rows, total = await repo.list_contacts(ctx.db, q, company_id, limit, offset)
    return page_of(Contact, rows, total, limit, offset)


async def create_contact(ctx: PluginContext, body: ContactIn) -> Contact:
    await _exists(ctx, "crm_companies", body.company_id, "company_id")
    contact = Contact.model_validate(
        await repo.insert_contact(ctx.db, {**body.model_dump(), "by": ctx.user_id})
    )
    await announce_contact(ctx, contact)
    return contact


async def announce_contact(ctx: PluginContext, contact: Contact) -> None:
    await ctx.publish(
        CONTACT_CREATED,
        {"contact_id": str(contact.id), "email": contact.email, "created_by": ctx.user_id},
        subject=f"contacts/{contact.id}",
    )


async def get_contact(ctx: PluginContext, contact_id: UUID) -> Contact:
    return await _get(ctx, CONTACTS, contact_id)


async def update_contact(
    ctx: PluginContext, contact_id: UUID, patch: ContactPatch, if_match: str | None = None
) -> Contact:
    refs = {"company_id": "crm_companies"}
    return await _update(ctx, CONTACTS, contact_id, patch, references=refs, if_match=if_match)


async def delete_contact(ctx: PluginContext, contact_id: UUID, if_match: str | None = None) -> None:
    await _delete(ctx, CONTACTS, contact_id, if_match)


async def list_stages(ctx: PluginContext) -> list[Stage]:
    return [Stage.model_validate(r) for r in await repo.list_stages(ctx.db)]


async def _stage(ctx: PluginContext, stage_id: str) -> dict[str, Any]:
    stage = await repo.get_stage(ctx.db, stage_id)
    if stage is None:
        raise UnknownReferenceError("stage_id: no such stage", details={"field": "stage_id"})
    return stage


async def list_deals(
    ctx: PluginContext, q: str | None, stage_id: str | None, limit: int, offset: int
) -> Page[Deal]:
    rows, total = await repo.list_deals(ctx.db, q, stage_id, limit, offset)
    return page_of(Deal, rows, total, limit, offset)


async def create_deal(ctx: PluginContext, body: DealIn) -> Deal:
    await _stage(ctx, body.stage_id)
    await _exists(ctx, "crm_companies", body.company_id, "company_id")
    await _exists(ctx, "crm_contacts", body.contact_id, "contact_id")
    currency = body.currency or str(ctx.settings.get("currency", "EUR"))
    values = {**body.model_dump(), "currency": currency, "by": ctx.user_id}
    deal = Deal.model_validate(await repo.insert_deal(ctx.db, values))
    await ctx.publish(
        DEAL_CREATED,
        {
            "deal_id": str(deal.id),
            "title": deal.title,
            "amount": str(deal.amount),
            "currency": deal.currency,
            "stage_id": deal.stage_id,
            "company_id": _id(deal.company_id),
            "contact_id": _id(deal.contact_id),
            "created_by": ctx.user_id,
        },
        subject=f"deals/{deal.id}",
    )
    return deal


async def get_deal(ctx: PluginContext, deal_id: UUID) -> Deal:
    return await _get(ctx, DEALS, deal_id)


async def update_deal(
    ctx: PluginContext, deal_id: UUID, patch: DealPatch, if_match: str | None = None
) -> Deal:
    refs = {"company_id": "crm_companies", "contact_id": "crm_contacts"}
    return await _update(ctx, DEALS, deal_id, patch, references=refs, if_match=if_match)


async def delete_deal(ctx: PluginContext, deal_id: UUID, if_match: str | None = None) -> None:
    await _delete(ctx, DEALS, deal_id, if_match)


async def move_deal(ctx: PluginContext, deal_id: UUID, stage_id: str) -> Deal:
    stage = await _stage(ctx, stage_id)
    # Parallel moves of one deal queue on its row and apply in order: each event's "from" is the
    # stage its move really left, and only the move that enters "won" announces it.
    before = Deal.model_validate(await _found(ctx, "crm_deals", deal_id, "deal", lock=True))
    if before.stage_id == stage_id:
        return before
    closed = bool(stage["is_won"] or stage["is_lost"])
    deal = Deal.model_validate(await repo.move_deal(ctx.db, deal_id, stage_id, closed))
    subject = f"deals/{deal.id}"
    await ctx.publish(
        DEAL_STAGE_CHANGED,
        {"deal_id": str(deal.id), "from": before.stage_id, "to": stage_id},
        subject=subject,
    )
    if stage["is_won"]:
        # Company and title too: consumers (billing) need them and cannot read CRM tables.
        company = (
            await repo.get(ctx.db, "crm_companies", deal.company_id) if deal.company_id else None
        )
        await ctx.publish(
            DEAL_WON,
            {
                "deal_id": str(deal.id),
                "amount": str(deal.amount),
                "currency": deal.currency,
                "title": deal.title,
                "company_id": _id(deal.company_id),
                "company_name": company["name"] if company else None,
            },
            subject=subject,
        )
    return deal


async def list_activities(
    ctx: PluginContext, contact_id: UUID | None, deal_id: UUID | None, limit: int, offset: int
) -> Page[Activity]:
    rows, total = await repo.list_activities(ctx.db, contact_id, deal_id, limit, offset)
    return page_of(Activity, rows, total, limit, offset)


async def list_company_activities(
    ctx: PluginContext, company_id: UUID, limit: int, offset: int
) -> Page[Activity]:
    rows, total = await repo.list_company_activities(ctx.db, company_id, limit, offset)
    return page_of(Activity, rows, total, limit, offset)


async def create_activity(ctx: PluginContext, body: ActivityIn) -> Activity:
    await _exists(ctx, "crm_contacts", body.contact_id, "contact_id")
    await _exists(ctx, "crm_deals", body.deal_id, "deal_id")
    row = await repo.insert_activity(ctx.db, {**body.model_dump(), "by": ctx.user_id})
    return await _announced(ctx, ACTIVITY_CREATED, Activity.model_validate(row))


async def complete_activity(ctx: PluginContext, activity_id: UUID) -> Activity:
    row = await repo.complete_activity(ctx.db, activity_id)
    if row is None:
        raise CrmNotFoundError("no such activity")
    return await _announced(ctx, ACTIVITY_COMPLETED, Activity.model_validate(row))


async def _announced(ctx: PluginContext, event_type: str, activity: Activity) -> Activity:
    await ctx.publish(
        event_type,
        {
            "activity_id": str(activity.id),
            "kind": activity.kind,
            "subject": activity.subject,
            "contact_id": _id(activity.contact_id),
            "deal_id": _id(activity.deal_id),
            "done": activity.done,
        },
        subject=f"activities/{activity.id}",
    )
    return activity


async def pipeline(ctx: PluginContext) -> list[dict[str, Any]]:
    return await repo.pipeline(ctx.db)
