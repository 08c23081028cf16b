"""CRM routes: JSON under /v1 (the pages for the web shell, under /ui: ``pages``)."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from plexica_crm import csvfile, kinds, service, transfer, trash
from plexica_crm.schemas import (
    Activity,
    ActivityIn,
    Company,
    CompanyIn,
    CompanyPatch,
    Contact,
    ContactIn,
    ContactPatch,
    Deal,
    DealIn,
    DealPatch,
    ImportResult,
    Stage,
    StageChange,
    TrashedCompany,
    TrashedContact,
    TrashedDeal,
)
from plexica_sdk.app import PluginContext, require
from plexica_sdk.errors import PlexicaError
from plexica_sdk.guard import MiB, body_limit
from plexica_sdk.pagination import Page, PageOffset, PageSize, Search
from plexica_sdk.preconditions import ETAG_HEADER, PRECONDITION_FAILED, IfMatch, etag

Limit = PageSize
Offset = PageOffset


CompanyRead = Annotated[PluginContext, Depends(require("crm:company:read"))]
CompanyWrite = Annotated[PluginContext, Depends(require("crm:company:write"))]
ContactRead = Annotated[PluginContext, Depends(require("crm:contact:read"))]
ContactWrite = Annotated[PluginContext, Depends(require("crm:contact:write"))]
DealRead = Annotated[PluginContext, Depends(require("crm:deal:read"))]
DealWrite = Annotated[PluginContext, Depends(require("crm:deal:write"))]
ActivityRead = Annotated[PluginContext, Depends(require("crm:activity:read"))]
ActivityWrite = Annotated[PluginContext, Depends(require("crm:activity:write"))]

# One record's read and change answer its ETag; a change or delete may be conditional (ADR 0226).
TAGGED: dict[int | str, dict[str, Any]] = {200: {"headers": ETAG_HEADER}}
CONDITIONAL = {**TAGGED, **PRECONDITION_FAILED}
# The trash (ADR 0236): listed and restored with the permission that deletes.
IN_TRASH = f"deleted in the last {service.TRASH_DAYS} days, the latest first (ADR 0236)"
RESTORE = f"Restore a {{}} deleted in the last {service.TRASH_DAYS} days, with the links to it"
RESTORED: dict[int | str, dict[str, Any]] = {
    **TAGGED,
    404: {"description": "Not in the trash: never deleted, restored, or deleted too long ago"},
}
R = TypeVar("R", Company, Contact, Deal)


def _tagged(response: Response, record: R) -> R:
    response.headers["ETag"] = etag(record.version)
    return record


class CsvResponse(Response):
    media_type = "text/csv"


CSV_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "UTF-8 CSV, a header row naming the columns, at most"
            f" {csvfile.MAX_ROWS} rows and {csvfile.MAX_BYTES // MiB} MiB (ADR 0226)."
        ),
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}
IMPORT_ANSWERS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Not UTF-8, a NUL character, or not CSV (`invalid_csv`)"},
    413: {"description": f"Over {csvfile.MAX_BYTES} bytes or {csvfile.MAX_ROWS} rows"},
    422: {
        "description": "A header without a required column or with a duplicate or unknown one"
        " (`invalid_csv_header`), or bad rows (`invalid_rows`: details.errors lists the row,"
        " field and message of each; nothing is written)"
    },
}


async def _csv(request: Request) -> bytes:
    kind, _, params = request.headers.get("content-type", "").partition(";")
    charset = params.partition("charset=")[2].strip().strip('"').lower()
    if kind.strip().lower() != "text/csv" or charset not in ("", "utf-8", "utf8"):
        raise PlexicaError(
            "the request body must be text/csv in UTF-8", status=415, code="unsupported_media_type"
        )
    return await request.body()


def csv_download(text: str, name: str) -> CsvResponse:
    return CsvResponse(text, headers={"Content-Disposition": f'attachment; filename="{name}"'})


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

    @router.get(
        "/companies/export",
        response_class=CsvResponse,
        summary="All companies as CSV (formula-like cells start with an apostrophe)",
    )
    async def export_companies(ctx: CompanyRead) -> CsvResponse:
        return csv_download(await transfer.export_companies(ctx), "companies.csv")

    @router.post(
        "/companies/import",
        summary="Create companies from CSV (columns name, domain): all rows or none",
        openapi_extra=CSV_BODY,
        responses=IMPORT_ANSWERS,
    )
    @body_limit(csvfile.MAX_BYTES)
    async def import_companies(request: Request, ctx: CompanyWrite) -> ImportResult:
        return await transfer.import_companies(ctx, await _csv(request))

    @router.get("/companies/trash", summary=f"Companies {IN_TRASH}")
    async def trashed_companies(
        ctx: CompanyWrite, limit: Limit = 25, offset: Offset = 0
    ) -> Page[TrashedCompany]:
        return await trash.list_trash(ctx, kinds.COMPANIES, limit, offset)

    @router.post(
        "/companies/{company_id}/restore", summary=RESTORE.format("company"), responses=RESTORED
    )
    async def restore_company(company_id: UUID, ctx: CompanyWrite, response: Response) -> Company:
        return _tagged(response, await trash.restore(ctx, kinds.COMPANIES, company_id))

    @router.get("/companies/{company_id}", responses=TAGGED)
    async def company(company_id: UUID, ctx: CompanyRead, response: Response) -> Company:
        return _tagged(response, await service.get_company(ctx, company_id))

    @router.patch(
        "/companies/{company_id}",
        summary="Change a company's name or domain",
        responses=CONDITIONAL,
    )
    async def update_company(
        company_id: UUID,
        body: CompanyPatch,
        ctx: CompanyWrite,
        response: Response,
        if_match: IfMatch = None,
    ) -> Company:
        return _tagged(response, await service.update_company(ctx, company_id, body, if_match))

    @router.delete(
        "/companies/{company_id}",
        status_code=204,
        summary="Delete a company into the trash (its contacts and deals stay, without it)",
        responses=PRECONDITION_FAILED,
    )
    async def delete_company(
        company_id: UUID, ctx: CompanyWrite, if_match: IfMatch = None
    ) -> Response:
        await service.delete_company(ctx, company_id, if_match)
        return Response(status_code=204)

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

    @router.get(
        "/contacts/export",
        response_class=CsvResponse,
        summary="All contacts as CSV, with their company's name (formula-like cells start"
        " with an apostrophe)",
    )
    async def export_contacts(ctx: ContactRead) -> CsvResponse:
        return csv_download(await transfer.export_contacts(ctx), "contacts.csv")

    @router.post(
        "/contacts/import",
        summary="Create contacts from CSV (first_name, last_name, email, phone, and company"
        " by name or company_id): all rows or none",
        openapi_extra=CSV_BODY,
        responses=IMPORT_ANSWERS,
    )
    @body_limit(csvfile.MAX_BYTES)
    async def import_contacts(request: Request, ctx: ContactWrite) -> ImportResult:
        return await transfer.import_contacts(ctx, await _csv(request))

    @router.get("/contacts/trash", summary=f"Contacts {IN_TRASH}")
    async def trashed_contacts(
        ctx: ContactWrite, limit: Limit = 25, offset: Offset = 0
    ) -> Page[TrashedContact]:
        return await trash.list_trash(ctx, kinds.CONTACTS, limit, offset)

    @router.post(
        "/contacts/{contact_id}/restore", summary=RESTORE.format("contact"), responses=RESTORED
    )
    async def restore_contact(contact_id: UUID, ctx: ContactWrite, response: Response) -> Contact:
        return _tagged(response, await trash.restore(ctx, kinds.CONTACTS, contact_id))

    @router.get("/contacts/{contact_id}", responses=TAGGED)
    async def contact(contact_id: UUID, ctx: ContactRead, response: Response) -> Contact:
        return _tagged(response, await service.get_contact(ctx, contact_id))

    @router.patch("/contacts/{contact_id}", summary="Change a contact", responses=CONDITIONAL)
    async def update_contact(
        contact_id: UUID,
        body: ContactPatch,
        ctx: ContactWrite,
        response: Response,
        if_match: IfMatch = None,
    ) -> Contact:
        return _tagged(response, await service.update_contact(ctx, contact_id, body, if_match))

    @router.delete(
        "/contacts/{contact_id}",
        status_code=204,
        summary="Delete a contact into the trash, and the activities linked to it alone",
        responses=PRECONDITION_FAILED,
    )
    async def delete_contact(
        contact_id: UUID, ctx: ContactWrite, if_match: IfMatch = None
    ) -> Response:
        await service.delete_contact(ctx, contact_id, if_match)
        return Response(status_code=204)

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

    @router.get("/deals/trash", summary=f"Deals {IN_TRASH}")
    async def trashed_deals(
        ctx: DealWrite, limit: Limit = 25, offset: Offset = 0
    ) -> Page[TrashedDeal]:
        return await trash.list_trash(ctx, kinds.DEALS, limit, offset)

    @router.post("/deals/{deal_id}/restore", summary=RESTORE.format("deal"), responses=RESTORED)
    async def restore_deal(deal_id: UUID, ctx: DealWrite, response: Response) -> Deal:
        return _tagged(response, await trash.restore(ctx, kinds.DEALS, deal_id))

    @router.get("/deals/{deal_id}", responses=TAGGED)
    async def deal(deal_id: UUID, ctx: DealRead, response: Response) -> Deal:
        return _tagged(response, await service.get_deal(ctx, deal_id))

    @router.patch(
        "/deals/{deal_id}",
        summary="Change a deal (its stage moves: POST …/stage)",
        responses=CONDITIONAL,
    )
    async def update_deal(
        deal_id: UUID, body: DealPatch, ctx: DealWrite, response: Response, if_match: IfMatch = None
    ) -> Deal:
        return _tagged(response, await service.update_deal(ctx, deal_id, body, if_match))

    @router.delete(
        "/deals/{deal_id}",
        status_code=204,
        summary="Delete a deal into the trash, and the activities linked to it alone",
        responses=PRECONDITION_FAILED,
    )
    async def delete_deal(deal_id: UUID, ctx: DealWrite, if_match: IfMatch = None) -> Response:
        await service.delete_deal(ctx, deal_id, if_match)
        return Response(status_code=204)

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
