"""The CRM's pages: HTML fragments for the web shell under /ui, and the forms it forwards
(ADR 0097, 0230)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from plexica_crm import forms, kinds, service, transfer, trash
from plexica_crm.api import (
    CompanyRead,
    CompanyWrite,
    ContactRead,
    ContactWrite,
    DealRead,
    DealWrite,
    Offset,
)
from plexica_crm.records import Record, record_routes, transfer_routes
from plexica_crm.schemas import (
    Company,
    CompanyIn,
    CompanyPatch,
    Contact,
    ContactIn,
    ContactPatch,
    Deal,
    DealIn,
    DealPatch,
)
from plexica_sdk.app import ContextDep, FragmentsDep, PluginContext
from plexica_sdk.errors import ForbiddenError, UnknownReferenceError
from plexica_sdk.pagination import Search
from plexica_sdk.ui import Fragments, back, field_errors, filled, form_fields, page_size

CONTACT_FIELDS = ("first_name", "last_name", "email", "phone", "company_id")
COMPANY_FIELDS = ("name", "domain")
DEAL_FIELDS = ("title", "amount", "stage_id")
DEAL_EDIT = ("title", "amount", "currency", "company_id")
Count = Annotated[int | None, Query(ge=0)]
# After a delete, the record the list page's notice offers to restore.
Undo = Annotated[UUID | None, Query()]


def _notice(what: str, done: str | None, imported: int | None = None) -> str | None:
    if imported is not None:
        many = {"company": "companies"}.get(what, what + "s")
        return f"{imported} {what if imported == 1 else many} imported."
    return f"{what.capitalize()} deleted." if done == "deleted" else None


def _undo(done: str | None, undo: UUID | None) -> UUID | None:
    return undo if done == "deleted" else None


async def _contacts(
    ctx: PluginContext, ui: Fragments, *, status: int = 200, q: str = "", offset: int = 0,
    form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
    added_id: str | None = None, notice: str | None = None,
    report: dict[str, Any] | None = None, undo: UUID | None = None,
) -> HTMLResponse:  # fmt: skip
    page = await service.list_contacts(ctx, q or None, None, page_size(ctx.settings), offset)
    added = next((c for c in page.items if str(c.id) == added_id), None)
    return ui.render(
        "contacts.html", status, page=page, q=q, form=form or {}, errors=errors or {},
        added=added, notice=notice, undo=undo, report=report,
        companies=await forms.company_choices(ctx),
        can_write=ctx.has("crm:contact:write"),
    )  # fmt: skip


async def _companies(
    ctx: PluginContext, ui: Fragments, *, status: int = 200, q: str = "", offset: int = 0,
    form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
    notice: str | None = None, report: dict[str, Any] | None = None, undo: UUID | None = None,
) -> HTMLResponse:  # fmt: skip
    page = await service.list_companies(ctx, q or None, page_size(ctx.settings), offset)
    return ui.render(
        "companies.html", status, page=page, q=q, form=form or {}, errors=errors or {},
        notice=notice, undo=undo, report=report, can_write=ctx.has("crm:company:write"),
    )  # fmt: skip


async def _board(
    ctx: PluginContext, ui: Fragments, *, status: int = 200, form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None, error: str | None = None, notice: str | None = None,
    undo: UUID | None = None,
) -> HTMLResponse:  # fmt: skip
    stages = await service.list_stages(ctx)
    deals = await service.list_deals(ctx, None, None, 200, 0)
    return ui.render(
        "deals.html", status, stages=stages, deals=deals.items, form=form or {},
        errors=errors or {}, error=error, notice=notice, undo=undo,
    )  # fmt: skip


async def contact_view(
    ctx: PluginContext, ui: Fragments, record: Any, *, status: int = 200,
    form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
    alert: str | None = None, activity: dict[str, str] | None = None,
    activity_errors: dict[str, str] | None = None, notice: str | None = None,
) -> HTMLResponse:  # fmt: skip
    contact: Contact = record
    company = None
    if contact.company_id and ctx.has("crm:company:read"):
        company = await service.get_company(ctx, contact.company_id)
    return ui.render(
        "contact.html", status, contact=contact, company=company,
        companies=await forms.company_choices(ctx),
        form=form or forms.values(contact, CONTACT_FIELDS), errors=errors or {}, conflict=alert,
        notice=notice, activities=await forms.timeline(ctx, contact_id=contact.id),
        activity=activity or {}, activity_errors=activity_errors or {}, names={},
        kinds=forms.ACTIVITY_KINDS, can_write=ctx.has("crm:contact:write"),
        can_log=ctx.has("crm:activity:write"),
    )  # fmt: skip


async def company_view(
    ctx: PluginContext, ui: Fragments, record: Any, *, status: int = 200,
    form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
    alert: str | None = None, activity: dict[str, str] | None = None,
    activity_errors: dict[str, str] | None = None, notice: str | None = None,
) -> HTMLResponse:  # fmt: skip
    company: Company = record
    contacts: list[Contact] = []
    if ctx.has("crm:contact:read"):
        contacts = (await service.list_contacts(ctx, None, company.id, forms.CHOICES, 0)).items
    names = {c.id: f"{c.first_name} {c.last_name}".strip() for c in contacts}
    return ui.render(
        "company.html", status, company=company, contacts=contacts,
        form=form or forms.values(company, COMPANY_FIELDS), errors=errors or {}, conflict=alert,
        notice=notice, activities=await forms.timeline(ctx, company_id=company.id),
        activity=activity or {}, activity_errors=activity_errors or {}, names=names,
        about=[(str(id_), name) for id_, name in names.items()],
        kinds=forms.ACTIVITY_KINDS, can_write=ctx.has("crm:company:write"),
        can_log=ctx.has("crm:activity:write") and bool(contacts),
    )  # fmt: skip


async def deal_view(
    ctx: PluginContext, ui: Fragments, record: Any, *, status: int = 200,
    form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
    alert: str | None = None, activity: dict[str, str] | None = None,
    activity_errors: dict[str, str] | None = None, notice: str | None = None,
) -> HTMLResponse:  # fmt: skip
    deal: Deal = record
    stages = {s.id: s.name for s in await service.list_stages(ctx)}
    return ui.render(
        "deal.html", status, deal=deal, stage=stages.get(deal.stage_id, deal.stage_id),
        companies=await forms.company_choices(ctx),
        form=form or forms.values(deal, DEAL_EDIT), errors=errors or {}, conflict=alert,
        notice=notice, activities=await forms.timeline(ctx, deal_id=deal.id),
        activity=activity or {}, activity_errors=activity_errors or {}, names={},
        kinds=forms.ACTIVITY_KINDS, can_write=ctx.has("crm:deal:write"),
        can_log=ctx.has("crm:activity:write"),
    )  # fmt: skip


async def _own_contact(
    ctx: PluginContext, company_id: UUID, form: dict[str, str]
) -> dict[str, UUID | None]:
    # An activity logged on a company's page is about one of its contacts (it has no company).
    contact_id = forms.uuid_or_none(form.get("contact_id"))
    if contact_id is None:
        return {"contact_id": None}
    found = await service.list_contacts(ctx, None, company_id, forms.CHOICES, 0)
    return {"contact_id": contact_id if contact_id in {c.id for c in found.items} else None}


async def _contact_link(ctx: PluginContext, id_: UUID, form: dict[str, str]) -> dict[str, Any]:
    return {"contact_id": id_}


async def _deal_link(ctx: PluginContext, id_: UUID, form: dict[str, str]) -> dict[str, Any]:
    return {"deal_id": id_}


def _person(c: Contact) -> str:
    return f"{c.first_name} {c.last_name}".strip()


RECORDS = (
    Record(
        "contact", "contacts", CONTACT_FIELDS, ContactPatch, service.get_contact,
        service.update_contact, service.delete_contact, contact_view, _person,
        lambda c: [("Email", c.email or ""), ("Phone", c.phone or "")], _contact_link,
        "The activities linked to this contact alone go with it.", kinds.CONTACTS,
    ),
    Record(
        "company", "companies", COMPANY_FIELDS, CompanyPatch, service.get_company,
        service.update_company, service.delete_company, company_view, lambda c: c.name,
        lambda c: [("Domain", c.domain or "")], _own_contact,
        "Its contacts and deals stay, without a company.", kinds.COMPANIES,
    ),
    Record(
        "deal", "deals", DEAL_EDIT, DealPatch, service.get_deal, service.update_deal,
        service.delete_deal, deal_view, lambda d: d.title,
        lambda d: [("Amount", f"{d.amount} {d.currency}"), ("Stage", d.stage_id)], _deal_link,
        "The activities linked to this deal alone go with it.", kinds.DEALS,
    ),
)  # fmt: skip


def ui_router() -> APIRouter:
    router = APIRouter(prefix="/ui", tags=["crm-ui"], include_in_schema=False)

    @router.get("/contacts", response_class=HTMLResponse)
    async def contacts_page(
        ctx: ContactRead,
        ui: FragmentsDep,
        *,
        q: Search = None,
        offset: Offset = 0,
        added_id: Annotated[str | None, Query(alias="added", max_length=64)] = None,
        done: forms.Done = None,
        imported: Count = None,
        undo: Undo = None,
    ) -> HTMLResponse:
        notice = _notice("contact", done, imported)
        return await _contacts(
            ctx, ui, q=q or "", offset=offset, added_id=added_id, notice=notice,
            undo=_undo(done, undo),
        )  # fmt: skip

    @router.post("/contacts", response_class=HTMLResponse)
    async def add_contact(request: Request, ctx: ContactWrite, ui: FragmentsDep) -> Response:
        form = await form_fields(request)
        try:
            contact = await service.create_contact(
                ctx, ContactIn.model_validate(filled(form, CONTACT_FIELDS))
            )
        except ValidationError as exc:
            errors = field_errors(exc, forms.FORM_MESSAGES)
        except UnknownReferenceError as exc:
            errors = forms.reference_error(exc)
        else:
            return back(f"ui/contacts?added={contact.id}")
        return await _contacts(ctx, ui, status=422, form=form, errors=errors)

    transfer_routes(
        router, "contact", "contacts", export=transfer.export_contacts,
        load=transfer.import_contacts,
        refused=lambda ctx, ui, report: _contacts(ctx, ui, status=422, report=report),
    )  # fmt: skip

    @router.get("/companies", response_class=HTMLResponse)
    async def companies_page(
        ctx: CompanyRead,
        ui: FragmentsDep,
        *,
        q: Search = None,
        offset: Offset = 0,
        done: forms.Done = None,
        imported: Count = None,
        undo: Undo = None,
    ) -> HTMLResponse:
        notice = _notice("company", done, imported)
        return await _companies(
            ctx, ui, q=q or "", offset=offset, notice=notice, undo=_undo(done, undo)
        )

    @router.post("/companies", response_class=HTMLResponse)
    async def add_company(request: Request, ctx: CompanyWrite, ui: FragmentsDep) -> Response:
        form = await form_fields(request)
        try:
            body = CompanyIn.model_validate(filled(form, COMPANY_FIELDS))
        except ValidationError as exc:
            errors = field_errors(exc, forms.FORM_MESSAGES)
            return await _companies(ctx, ui, status=422, form=form, errors=errors)
        company = await service.create_company(ctx, body)
        return back(f"ui/companies/{company.id}")

    transfer_routes(
        router, "company", "companies", export=transfer.export_companies,
        load=transfer.import_companies,
        refused=lambda ctx, ui, report: _companies(ctx, ui, status=422, report=report),
    )  # fmt: skip

    @router.get("/deals", response_class=HTMLResponse)
    async def deals_page(
        ctx: DealRead, ui: FragmentsDep, done: forms.Done = None, undo: Undo = None
    ) -> HTMLResponse:
        return await _board(ctx, ui, notice=_notice("deal", done), undo=_undo(done, undo))

    @router.post("/deals", response_class=HTMLResponse)
    async def add_deal(request: Request, ctx: DealWrite, ui: FragmentsDep) -> Response:
        form = await form_fields(request)
        try:
            body = DealIn.model_validate(filled(form, DEAL_FIELDS))
            deal = await service.create_deal(ctx, body)
        except ValidationError as exc:
            errors = field_errors(exc, forms.FORM_MESSAGES)
            return await _board(ctx, ui, status=422, form=form, errors=errors)
        except UnknownReferenceError:
            errors = {"stage_id": forms.FORM_MESSAGES["stage_id"]}
            return await _board(ctx, ui, status=422, form=form, errors=errors)
        return back(f"ui/deals#deal-{deal.id}")

    @router.post("/deals/{deal_id}/stage", response_class=HTMLResponse)
    async def move_deal_form(
        deal_id: UUID, request: Request, ctx: DealWrite, ui: FragmentsDep
    ) -> Response:
        form = await form_fields(request)
        try:
            await service.move_deal(ctx, deal_id, form.get("stage_id", ""))
        except UnknownReferenceError:
            return await _board(ctx, ui, status=422, error="Choose one of the stages.")
        return back(f"ui/deals#deal-{deal_id}")

    for record in RECORDS:
        record_routes(router, record)

    @router.get("/trash", response_class=HTMLResponse)
    async def trash_page(ctx: ContextDep, ui: FragmentsDep) -> HTMLResponse:
        sections = [
            (r, await trash.list_trash(ctx, r.kind, forms.CHOICES, 0))
            for r in RECORDS
            if ctx.has(f"crm:{r.what}:write")
        ]
        if not sections:
            raise ForbiddenError("missing permission to delete CRM records")
        return ui.render("trash.html", sections=sections, days=service.TRASH_DAYS)

    @router.get("/widgets/pipeline", response_class=HTMLResponse)
    async def pipeline_widget(ctx: DealRead, ui: FragmentsDep) -> HTMLResponse:
        return ui.render("pipeline.html", stages=await service.pipeline(ctx))

    return router
