"""Billing routes: JSON under /v1 (the pages for the web shell are in ``pages``)."""

from __future__ import annotations

import asyncio
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends
from fastapi import Response as FastAPIResponse
from fastapi.responses import Response

from plexica_billing import invoices as invoice_service
from plexica_billing import invoicing, service
from plexica_billing import subscriptions as subscription_service
from plexica_billing.pdf import render_invoice
from plexica_billing.schemas import (
    CreditNote,
    CreditNoteIn,
    Customer,
    CustomerIn,
    CustomerPatch,
    Invoice,
    InvoiceIn,
    InvoiceRun,
    InvoiceRunIn,
    InvoiceStatus,
    LineIn,
    Metrics,
    Payment,
    PaymentIn,
    PendingItem,
    Plan,
    PlanIn,
    PlanPatch,
    Subscription,
    SubscriptionChange,
    SubscriptionIn,
    SubscriptionStatus,
    UsageIn,
    UsageRecord,
)
from plexica_sdk.app import PluginContext, require
from plexica_sdk.pagination import Page, PageOffset, PageSize, Search

Limit = PageSize
Offset = PageOffset

CustomerRead = Annotated[PluginContext, Depends(require("billing:customer:read"))]
CustomerWrite = Annotated[PluginContext, Depends(require("billing:customer:write"))]
PlanRead = Annotated[PluginContext, Depends(require("billing:plan:read"))]
PlanWrite = Annotated[PluginContext, Depends(require("billing:plan:write"))]
SubRead = Annotated[PluginContext, Depends(require("billing:subscription:read"))]
SubWrite = Annotated[PluginContext, Depends(require("billing:subscription:write"))]
InvoiceRead = Annotated[PluginContext, Depends(require("billing:invoice:read"))]
InvoiceWrite = Annotated[PluginContext, Depends(require("billing:invoice:write"))]
PaymentRead = Annotated[PluginContext, Depends(require("billing:payment:read"))]
PaymentWrite = Annotated[PluginContext, Depends(require("billing:payment:write"))]
UsageRead = Annotated[PluginContext, Depends(require("billing:usage:read"))]
UsageWrite = Annotated[PluginContext, Depends(require("billing:usage:write"))]


async def invoice_pdf_response(ctx: PluginContext, invoice_id: UUID) -> Response:
    invoice = await invoice_service.get_invoice(ctx, invoice_id)
    customer = await service.get_customer(ctx, invoice.customer_id)
    name = invoice.number or f"draft-{invoice.id}"
    # Rendering is CPU work (and loads fpdf2 the first time): off the event loop.
    pdf = await asyncio.to_thread(render_invoice, invoice, customer)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}.pdf"'},
    )


def api_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["billing"])

    @router.get("/customers")
    async def customers(
        ctx: CustomerRead, q: Search = None, limit: Limit = 25, offset: Offset = 0
    ) -> Page[Customer]:
        return await service.list_customers(ctx, q, limit, offset)

    @router.post("/customers", status_code=201)
    async def create_customer(body: CustomerIn, ctx: CustomerWrite) -> Customer:
        return await service.create_customer(ctx, body)

    @router.get("/customers/{customer_id}")
    async def customer(customer_id: UUID, ctx: CustomerRead) -> Customer:
        return await service.get_customer(ctx, customer_id)

    @router.patch("/customers/{customer_id}")
    async def update_customer(
        customer_id: UUID, body: CustomerPatch, ctx: CustomerWrite
    ) -> Customer:
        return await service.update_customer(ctx, customer_id, body)

    @router.delete("/customers/{customer_id}", status_code=204, response_class=Response)
    async def delete_customer(customer_id: UUID, ctx: CustomerWrite) -> Response:
        await service.delete_customer(ctx, customer_id)
        return Response(status_code=204)

    @router.get("/plans")
    async def plans(ctx: PlanRead, limit: Limit = 25, offset: Offset = 0) -> Page[Plan]:
        return await service.list_plans(ctx, limit, offset)

    @router.post("/plans", status_code=201)
    async def create_plan(body: PlanIn, ctx: PlanWrite) -> Plan:
        return await service.create_plan(ctx, body)

    @router.patch("/plans/{plan_id}")
    async def update_plan(plan_id: UUID, body: PlanPatch, ctx: PlanWrite) -> Plan:
        return await service.update_plan(ctx, plan_id, body)

    @router.delete("/plans/{plan_id}", status_code=204, response_class=Response)
    async def delete_plan(plan_id: UUID, ctx: PlanWrite) -> Response:
        await service.delete_plan(ctx, plan_id)
        return Response(status_code=204)

    @router.get("/subscriptions")
    async def subscriptions(
        ctx: SubRead,
        status: SubscriptionStatus | None = None,
        customer_id: UUID | None = None,
        limit: Limit = 25,
        offset: Offset = 0,
    ) -> Page[Subscription]:
        return await subscription_service.list_subscriptions(
            ctx, status, customer_id, limit, offset
        )

    @router.post("/subscriptions", status_code=201)
    async def create_subscription(body: SubscriptionIn, ctx: SubWrite) -> Subscription:
        return await subscription_service.create_subscription(ctx, body)

    @router.patch("/subscriptions/{subscription_id}")
    async def change_subscription(
        subscription_id: UUID, body: SubscriptionChange, ctx: SubWrite
    ) -> Subscription:
        return await subscription_service.change_subscription(ctx, subscription_id, body)

    @router.get("/subscriptions/{subscription_id}/pending-items")
    async def pending_items(subscription_id: UUID, ctx: SubRead) -> list[PendingItem]:
        return await subscription_service.pending_items(ctx, subscription_id)

    @router.post("/subscriptions/{subscription_id}/usage", status_code=201)
    async def record_usage(
        subscription_id: UUID, body: UsageIn, ctx: UsageWrite, response: FastAPIResponse
    ) -> UsageRecord:
        record, created = await subscription_service.record_usage(ctx, subscription_id, body)
        if not created:
            response.status_code = 200
        return record

    @router.get("/subscriptions/{subscription_id}/usage")
    async def usage(
        subscription_id: UUID, ctx: UsageRead, limit: Limit = 25, offset: Offset = 0
    ) -> Page[UsageRecord]:
        return await subscription_service.list_usage(ctx, subscription_id, limit, offset)

    @router.get("/invoices")
    async def invoices(
        ctx: InvoiceRead,
        status: InvoiceStatus | None = None,
        customer_id: UUID | None = None,
        limit: Limit = 25,
        offset: Offset = 0,
    ) -> Page[Invoice]:
        return await invoice_service.list_invoices(ctx, status, customer_id, limit, offset)

    @router.post("/invoices", status_code=201)
    async def create_invoice(body: InvoiceIn, ctx: InvoiceWrite) -> Invoice:
        return await invoice_service.create_invoice(ctx, body)

    @router.get("/invoices/{invoice_id}")
    async def invoice(invoice_id: UUID, ctx: InvoiceRead) -> Invoice:
        return await invoice_service.get_invoice(ctx, invoice_id)

    @router.get("/invoices/{invoice_id}/pdf", response_class=Response)
    async def invoice_pdf(invoice_id: UUID, ctx: InvoiceRead) -> Response:
        return await invoice_pdf_response(ctx, invoice_id)

    @router.post("/invoices/{invoice_id}/lines")
    async def add_lines(invoice_id: UUID, body: list[LineIn], ctx: InvoiceWrite) -> Invoice:
        return await invoice_service.add_lines(ctx, invoice_id, body)

    @router.post("/invoices/{invoice_id}/issue")
    async def issue(invoice_id: UUID, ctx: InvoiceWrite) -> Invoice:
        return await invoice_service.issue_invoice(ctx, invoice_id)

    @router.post("/invoices/{invoice_id}/void")
    async def void(invoice_id: UUID, ctx: InvoiceWrite) -> Invoice:
        return await invoice_service.close_invoice(ctx, invoice_id, "void")

    @router.post("/invoices/{invoice_id}/uncollectible")
    async def uncollectible(invoice_id: UUID, ctx: InvoiceWrite) -> Invoice:
        return await invoice_service.close_invoice(ctx, invoice_id, "uncollectible")

    @router.post("/invoices/{invoice_id}/payments", status_code=201)
    async def pay(invoice_id: UUID, body: PaymentIn, ctx: PaymentWrite) -> Payment:
        return await invoice_service.pay_invoice(ctx, invoice_id, body)

    @router.get("/invoices/{invoice_id}/payments")
    async def payments(invoice_id: UUID, ctx: PaymentRead) -> list[Payment]:
        return await invoice_service.list_payments(ctx, invoice_id)

    @router.post("/invoices/{invoice_id}/credit-notes", status_code=201)
    async def credit(invoice_id: UUID, body: CreditNoteIn, ctx: PaymentWrite) -> CreditNote:
        return await invoice_service.credit_invoice(ctx, invoice_id, body)

    @router.get("/credit-notes")
    async def credit_notes(
        ctx: InvoiceRead, limit: Limit = 25, offset: Offset = 0
    ) -> Page[CreditNote]:
        return await invoice_service.list_credit_notes(ctx, limit, offset)

    @router.post("/invoice-runs")
    async def invoice_run(body: InvoiceRunIn, ctx: InvoiceWrite) -> InvoiceRun:
        return await invoicing.invoice_run(ctx, body.as_of)

    @router.get("/metrics")
    async def metrics(ctx: InvoiceRead) -> Metrics:
        return await service.metrics(ctx)

    return router
