"""CRM logic: checks references, moves deals through the pipeline and emits events."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from plexica_crm import repository as repo
from plexica_crm.schemas import (
    Activity,
    ActivityIn,
    Company,
    CompanyIn,
    Contact,
    ContactIn,
    CrmNotFoundError,
    Deal,
    DealIn,
    Page,
    Stage,
    UnknownReferenceError,
)
from plexica_sdk.app import PluginContext

# Data of each type: the JSON Schemas in plexica-plugin.yaml, checked as it is published.
COMPANY_CREATED = "crm.company.created"
CONTACT_CREATED = "crm.contact.created"
DEAL_CREATED = "crm.deal.created"
DEAL_STAGE_CHANGED = "crm.deal.stage_changed"
DEAL_WON = "crm.deal.won"
ACTIVITY_CREATED = "crm.activity.created"
ACTIVITY_COMPLETED = "crm.activity.completed"


def _id(value: UUID | None) -> str | None:
    return str(value) if value else None


async def _exists(ctx: PluginContext, table: str, id_: UUID | None, field: str) -> None:
    if id_ is not None and await repo.get(ctx.db, table, id_) is None:
        raise UnknownReferenceError(f"{field}: no such record", details={"field": field})


async def _found(
    ctx: PluginContext, table: str, id_: UUID, what: str, *, lock: bool = False
) -> dict[str, Any]:
    row = await repo.get(ctx.db, table, id_, lock=lock)
    if row is None:
        raise CrmNotFoundError(f"no such {what}")
    return row


async def list_companies(
    ctx: PluginContext, q: str | None, limit: int, offset: int
) -> Page[Company]:
    rows, total = await repo.list_companies(ctx.db, q, limit, offset)
    return Page(
        items=[Company.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


async def create_company(ctx: PluginContext, body: CompanyIn) -> Company:
    company = Company.model_validate(
        await repo.insert_company(ctx.db, {**body.model_dump(), "by": ctx.user_id})
    )
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
    return company


async def get_company(ctx: PluginContext, company_id: UUID) -> Company:
    return Company.model_validate(await _found(ctx, "crm_companies", company_id, "company"))


async def list_contacts(
    ctx: PluginContext, q: str | None, company_id: UUID | None, limit: int, offset: int
) -> Page[Contact]:
    rows, total = await repo.list_contacts(ctx.db, q, company_id, limit, offset)
    return Page(
        items=[Contact.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


async def create_contact(ctx: PluginContext, body: ContactIn) -> Contact:
    await _exists(ctx, "crm_companies", body.company_id, "company_id")
    contact = Contact.model_validate(
        await repo.insert_contact(ctx.db, {**body.model_dump(), "by": ctx.user_id})
    )
    await ctx.publish(
        CONTACT_CREATED,
        {"contact_id": str(contact.id), "email": contact.email, "created_by": ctx.user_id},
        subject=f"contacts/{contact.id}",
    )
    return contact


async def get_contact(ctx: PluginContext, contact_id: UUID) -> Contact:
    return Contact.model_validate(await _found(ctx, "crm_contacts", contact_id, "contact"))


async def list_stages(ctx: PluginContext) -> list[Stage]:
    return [Stage.model_validate(r) for r in await repo.list_stages(ctx.db)]


async def list_deals(
    ctx: PluginContext, q: str | None, stage_id: str | None, limit: int, offset: int
) -> Page[Deal]:
    rows, total = await repo.list_deals(ctx.db, q, stage_id, limit, offset)
    return Page(
        items=[Deal.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


async def create_deal(ctx: PluginContext, body: DealIn) -> Deal:
    stage = await repo.get_stage(ctx.db, body.stage_id)
    if stage is None:
        raise UnknownReferenceError("stage_id: no such stage", details={"field": "stage_id"})
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
    return Deal.model_validate(await _found(ctx, "crm_deals", deal_id, "deal"))


async def move_deal(ctx: PluginContext, deal_id: UUID, stage_id: str) -> Deal:
    stage = await repo.get_stage(ctx.db, stage_id)
    if stage is None:
        raise UnknownReferenceError("stage_id: no such stage", details={"field": "stage_id"})
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
    return Page(
        items=[Activity.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


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
