"""CRM routes: JSON under /v1 and HTML fragments for the web shell under /ui."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from plexica_crm import service
from plexica_crm.schemas import (
    Activity,
    ActivityIn,
    Company,
    CompanyIn,
    Contact,
    ContactIn,
    Deal,
    DealIn,
    Page,
    Stage,
    StageChange,
)
from plexica_sdk.app import FragmentsDep, PluginContext, require

Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Search = Annotated[str | None, Query(max_length=100)]


CompanyRead = Annotated[PluginContext, Depends(require("crm:company:read"))]
CompanyWrite = Annotated[PluginContext, Depends(require("crm:company:write"))]
ContactRead = Annotated[PluginContext, Depends(require("crm:contact:read"))]
ContactWrite = Annotated[PluginContext, Depends(require("crm:contact:write"))]
DealRead = Annotated[PluginContext, Depends(require("crm:deal:read"))]
DealWrite = Annotated[PluginContext, Depends(require("crm:deal:write"))]
ActivityRead = Annotated[PluginContext, Depends(require("crm:activity:read"))]
ActivityWrite = Annotated[PluginContext, Depends(require("crm:activity:write"))]


def api_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["crm"])

    @router.get("/companies")
    async def companies(
        ctx: CompanyRead, q: Search = None, limit: Limit = 25, offset: Offset = 0
    ) -> Page[Company]:
        return await service.list_companies(ctx, q, limit, offset)

    @router.post("/companies", status_code=201)
    async def create_company(body: CompanyIn, ctx: CompanyWrite) -> Company:
        return await service.create_company(ctx, body)

    @router.get("/companies/{company_id}")
    async def company(company_id: UUID, ctx: CompanyRead) -> Company:
        return await service.get_company(ctx, company_id)

    @router.get("/contacts")
    async def contacts(
        ctx: ContactRead,
        q: Search = None,
        company_id: UUID | None = None,
        limit: Limit = 25,
        offset: Offset = 0,
    ) -> Page[Contact]:
        return await service.list_contacts(ctx, q, company_id, limit, offset)

    @router.post("/contacts", status_code=201)
    async def create_contact(body: ContactIn, ctx: ContactWrite) -> Contact:
        return await service.create_contact(ctx, body)

    @router.get("/contacts/{contact_id}")
    async def contact(contact_id: UUID, ctx: ContactRead) -> Contact:
        return await service.get_contact(ctx, contact_id)

    @router.get("/stages")
    async def stages(ctx: DealRead) -> list[Stage]:
        return await service.list_stages(ctx)

    @router.get("/deals")
    async def deals(
        ctx: DealRead,
        q: Search = None,
        stage_id: str | None = None,
        limit: Limit = 25,
        offset: Offset = 0,
    ) -> Page[Deal]:
        return await service.list_deals(ctx, q, stage_id, limit, offset)

    @router.post("/deals", status_code=201)
    async def create_deal(body: DealIn, ctx: DealWrite) -> Deal:
        return await service.create_deal(ctx, body)

    @router.get("/deals/{deal_id}")
    async def deal(deal_id: UUID, ctx: DealRead) -> Deal:
        return await service.get_deal(ctx, deal_id)

    @router.post("/deals/{deal_id}/stage")
    async def move_deal(deal_id: UUID, body: StageChange, ctx: DealWrite) -> Deal:
        return await service.move_deal(ctx, deal_id, body.stage_id)

    @router.get("/activities")
    async def activities(
        ctx: ActivityRead,
        contact_id: UUID | None = None,
        deal_id: UUID | None = None,
        limit: Limit = 25,
        offset: Offset = 0,
    ) -> Page[Activity]:
        return await service.list_activities(ctx, contact_id, deal_id, limit, offset)

    @router.post("/activities", status_code=201)
    async def create_activity(body: ActivityIn, ctx: ActivityWrite) -> Activity:
        return await service.create_activity(ctx, body)

    @router.post("/activities/{activity_id}/done")
    async def complete(activity_id: UUID, ctx: ActivityWrite) -> Activity:
        return await service.complete_activity(ctx, activity_id)

    return router


def ui_router() -> APIRouter:
    router = APIRouter(prefix="/ui", tags=["crm-ui"], include_in_schema=False)

    @router.get("/contacts", response_class=HTMLResponse)
    async def contacts_page(
        ctx: ContactRead, ui: FragmentsDep, q: Search = None, offset: Offset = 0
    ) -> HTMLResponse:
        limit = int(ctx.settings.get("page_size", 25))
        page = await service.list_contacts(ctx, q, None, limit, offset)
        return ui.render("contacts.html", page=page, q=q or "")

    @router.get("/contacts/{contact_id}", response_class=HTMLResponse)
    async def contact_page(contact_id: UUID, ctx: ContactRead, ui: FragmentsDep) -> HTMLResponse:
        contact = await service.get_contact(ctx, contact_id)
        activities = await service.list_activities(ctx, contact_id, None, 50, 0)
        return ui.render("contact.html", contact=contact, activities=activities.items)

    @router.get("/deals", response_class=HTMLResponse)
    async def deals_page(ctx: DealRead, ui: FragmentsDep) -> HTMLResponse:
        stages = await service.list_stages(ctx)
        deals = await service.list_deals(ctx, None, None, 200, 0)
        return ui.render("deals.html", stages=stages, deals=deals.items)

    @router.get("/deals/{deal_id}", response_class=HTMLResponse)
    async def deal_page(deal_id: UUID, ctx: DealRead, ui: FragmentsDep) -> HTMLResponse:
        deal = await service.get_deal(ctx, deal_id)
        activities = await service.list_activities(ctx, None, deal_id, 50, 0)
        return ui.render("deal.html", deal=deal, activities=activities.items)

    @router.get("/widgets/pipeline", response_class=HTMLResponse)
    async def pipeline_widget(ctx: DealRead, ui: FragmentsDep) -> HTMLResponse:
        return ui.render("pipeline.html", stages=await service.pipeline(ctx))

    return router
