"""Billing's pages for the web shell (HTML fragments under /ui): every action of the API has a
form. This module: the invoices, and the router of every page (customers, plans and
subscriptions are in ``catalog_pages``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from plexica_billing import forms, service
from plexica_billing import invoices as invoice_service
from plexica_billing.api import (
    InvoiceRead,
    InvoiceWrite,
    Offset,
    PaymentWrite,
    invoice_pdf_response,
)
from plexica_billing.catalog_pages import catalog_routes
from plexica_billing.forms import CHOICES, Action, Done, RefusedError, apply, parse, submit
from plexica_billing.schemas import (
    CreditNoteIn,
    Invoice,
    InvoiceIn,
    InvoiceStatus,
    LineIn,
    PaymentIn,
)
from plexica_sdk.app import FragmentsDep, PluginContext
from plexica_sdk.ui import back, filled, form_fields, page_size


def _overdue(invoice: Invoice, now: datetime) -> bool:
    return invoice.status == "open" and invoice.due_at is not None and invoice.due_at < now


def ui_router() -> APIRouter:
    router = APIRouter(prefix="/ui", tags=["billing-ui"], include_in_schema=False)
    invoice_routes(router)
    catalog_routes(router)

    @router.get("/widgets/revenue", response_class=HTMLResponse)
    async def revenue_widget(ctx: InvoiceRead, ui: FragmentsDep) -> HTMLResponse:
        return ui.render("revenue.html", m=await service.metrics(ctx))

    return router


def invoice_routes(router: APIRouter) -> None:
    async def invoice_list(
        ctx: PluginContext,
        ui: FragmentsDep,
        status: str | None,
        customer_id: UUID | None,
        offset: int,
        *,
        form: dict[str, str] | None = None,
        refused: RefusedError | None = None,
    ) -> HTMLResponse:
        limit = page_size(ctx.settings)
        found = await invoice_service.list_invoices(ctx, status, customer_id, limit, offset)
        can_write = ctx.has("billing:invoice:write") and ctx.has("billing:customer:read")
        customers = (await service.list_customers(ctx, None, CHOICES, 0)).items if can_write else []
        now = datetime.now(UTC)
        return forms.page(
            ui, "invoices.html", refused, "new-invoice", form, page=found, status=status or "",
            customer_id=customer_id, overdue={i.id for i in found.items if _overdue(i, now)},
            customers=customers, can_write=can_write,
        )  # fmt: skip

    @router.get("/invoices", response_class=HTMLResponse)
    async def invoices_page(
        ctx: InvoiceRead,
        ui: FragmentsDep,
        status: InvoiceStatus | None = None,
        customer_id: UUID | None = None,
        offset: Offset = 0,
    ) -> HTMLResponse:
        return await invoice_list(ctx, ui, status, customer_id, offset)

    @router.post("/invoices", response_class=HTMLResponse)
    async def new_invoice(request: Request, ctx: InvoiceWrite, ui: FragmentsDep) -> Response:
        form = await form_fields(request)
        made: list[Invoice] = []

        async def create() -> None:
            body = parse(InvoiceIn, filled(form, ("customer_id",)))
            made.append(await invoice_service.create_invoice(ctx, body))

        try:
            await apply(ctx, create)
        except RefusedError as refused:
            return await invoice_list(ctx, ui, None, None, 0, form=form, refused=refused)
        return back(f"ui/invoices/{made[0].id}")

    async def invoice_view(
        ctx: PluginContext,
        ui: FragmentsDep,
        invoice_id: UUID,
        *,
        action: str = "",
        form: dict[str, str] | None = None,
        refused: RefusedError | None = None,
        done: str = "",
    ) -> HTMLResponse:
        invoice = await invoice_service.get_invoice(ctx, invoice_id)
        customer = await service.get_customer(ctx, invoice.customer_id)
        can_pay = ctx.has("billing:payment:write")
        payments = await invoice_service.list_payments(ctx, invoice_id) if can_pay else []
        return forms.page(
            ui, "invoice.html", refused, action, form, invoice=invoice, customer=customer,
            overdue=_overdue(invoice, datetime.now(UTC)), payments=payments,
            can_write=ctx.has("billing:invoice:write"), can_pay=can_pay, done=done,
        )  # fmt: skip

    @router.get("/invoices/{invoice_id}", response_class=HTMLResponse)
    async def invoice_page(
        invoice_id: UUID, ctx: InvoiceRead, ui: FragmentsDep, done: Done = ""
    ) -> HTMLResponse:
        return await invoice_view(ctx, ui, invoice_id, done=done)

    @router.get("/invoices/{invoice_id}/pdf", response_class=Response)
    async def invoice_pdf(invoice_id: UUID, ctx: InvoiceRead) -> Response:
        return await invoice_pdf_response(ctx, invoice_id)

    async def on_invoice(
        ctx: PluginContext,
        ui: FragmentsDep,
        invoice_id: UUID,
        name: str,
        action: Action,
        *,
        form: dict[str, str] | None = None,
    ) -> Response:
        return await submit(
            ctx,
            action,
            f"ui/invoices/{invoice_id}?done={name}",
            lambda refused: invoice_view(
                ctx, ui, invoice_id, action=name, form=form, refused=refused
            ),
        )

    @router.post("/invoices/{invoice_id}/lines", response_class=HTMLResponse)
    async def add_line(
        invoice_id: UUID, request: Request, ctx: InvoiceWrite, ui: FragmentsDep
    ) -> Response:
        form = await form_fields(request)
        names = ("description", "quantity", "unit_price", "tax_rate")

        async def add() -> object:
            line = parse(LineIn, filled(form, names))
            return await invoice_service.add_lines(ctx, invoice_id, [line])

        return await on_invoice(ctx, ui, invoice_id, "line", add, form=form)

    @router.post("/invoices/{invoice_id}/issue", response_class=HTMLResponse)
    async def issue(invoice_id: UUID, ctx: InvoiceWrite, ui: FragmentsDep) -> Response:
        action = lambda: invoice_service.issue_invoice(ctx, invoice_id)  # noqa: E731
        return await on_invoice(ctx, ui, invoice_id, "issue", action)

    @router.post("/invoices/{invoice_id}/payments", response_class=HTMLResponse)
    async def pay(
        invoice_id: UUID, request: Request, ctx: PaymentWrite, ui: FragmentsDep
    ) -> Response:
        form = await form_fields(request)

        async def record() -> object:
            body = parse(PaymentIn, filled(form, ("amount", "reference")))
            return await invoice_service.pay_invoice(ctx, invoice_id, body)

        return await on_invoice(ctx, ui, invoice_id, "payment", record, form=form)

    @router.post("/invoices/{invoice_id}/credit-notes", response_class=HTMLResponse)
    async def credit(
        invoice_id: UUID, request: Request, ctx: PaymentWrite, ui: FragmentsDep
    ) -> Response:
        form = await form_fields(request)

        async def issue_note() -> object:
            body = parse(CreditNoteIn, filled(form, ("amount", "reason")))
            return await invoice_service.credit_invoice(ctx, invoice_id, body)

        return await on_invoice(ctx, ui, invoice_id, "credit", issue_note, form=form)

    # After the other actions of an invoice: their paths would match this one.
    @router.post("/invoices/{invoice_id}/{status}", response_class=HTMLResponse)
    async def close(
        invoice_id: UUID,
        status: Literal["void", "uncollectible"],
        ctx: InvoiceWrite,
        ui: FragmentsDep,
    ) -> Response:
        action = lambda: invoice_service.close_invoice(ctx, invoice_id, status)  # noqa: E731
        return await on_invoice(ctx, ui, invoice_id, status, action)
