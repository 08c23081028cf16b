"""Invoices made without a request: the periodic invoice run over due subscriptions, and a draft
for each deal CRM reports won."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from plexica_billing import invoice_repository, repository, subscription_repository
from plexica_billing.invoices import append_lines, load_invoice, publish_invoice
from plexica_billing.money import cents, line_totals
from plexica_billing.schemas import Invoice, InvoiceRun, LineIn, Subscription
from plexica_billing.service import (
    INVOICE_CREATED,
    INVOICE_ISSUED,
    INVOICE_PAID,
    currency,
    invoice_number,
    new_customer,
    payment_terms,
)
from plexica_billing.subscriptions import next_end, subscription_changed
from plexica_sdk.app import PluginContext
from plexica_sdk.contracts import DealWon
from plexica_sdk.events import Event

RUN_BATCH = 500


# --- the invoice run -------------------------------------------------------------------------


def _period_lines(
    sub: dict[str, Any], items: list[dict[str, Any]], usage: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The lines of a period's invoice: the plan the period started with, its proration
    items, and its usage per unit price (a usage plan without usage bills zero units)."""
    start, end = sub["current_period_start"], sub["current_period_end"]
    span = f"{start.isoformat()} to {end.isoformat()}"
    lines: list[dict[str, Any]] = []

    def add(kind: str, description: str, quantity: Decimal, price: Decimal, rate: Decimal) -> None:
        amount, tax = line_totals(quantity, price, rate)
        lines.append(
            {
                "kind": kind,
                "position": len(lines) + 1,
                "description": description[:500],
                "quantity": quantity,
                "unit_price": price,
                "tax_rate": rate,
                "amount": amount,
                "tax": tax,
            }
        )

    if sub["pricing"] != "usage":
        seats = sub["period_quantity"] if sub["pricing"] == "per_seat" else 1
        add("charge", f"{sub['plan_name']} {span}", Decimal(seats), sub["price"], sub["tax_rate"])
    for item in items:
        add("proration", item["description"], Decimal(1), item["amount"], item["tax_rate"])
    for group in usage:
        add("usage", f"Usage up to {end.isoformat()}", group["quantity"], group["unit_price"],
            group["tax_rate"])  # fmt: skip
    if sub["pricing"] == "usage" and not usage:
        add("usage", f"Usage {span}", Decimal(0), sub["price"], sub["tax_rate"])
    return lines


async def invoice_run(ctx: PluginContext, as_of: date | None) -> InvoiceRun:
    """Invoice every active subscription whose period ended by ``as_of`` and move it to the
    next period, or cancel it when that was its last (ADR 0237), in this transaction. Billed
    periods leave the due set, so a second run finds nothing; concurrent runs skip each other's
    locked rows and share the numbering lock.
    Proration items and usage are attached to the invoice that bills them (ADR 0105)."""
    day = as_of or datetime.now(UTC).date()
    terms, numbers = payment_terms(ctx), []
    for row in await subscription_repository.cancel_ended_trials(ctx.db, day):
        await subscription_changed(ctx, Subscription.model_validate(row), "canceled")
    for row in await subscription_repository.end_trials(ctx.db, day):
        await subscription_changed(ctx, Subscription.model_validate(row), "trial_ended")
    while batch := await subscription_repository.lock_due_subscriptions(ctx.db, day, RUN_BATCH):
        first = await invoice_repository.take_numbers(ctx.db, len(batch))
        pending, usage = await subscription_repository.unbilled_for(
            ctx.db, [sub["id"] for sub in batch]
        )
        items_of: dict[UUID, list[dict[str, Any]]] = {}
        usage_of: dict[UUID, list[dict[str, Any]]] = {}
        for item in pending:
            items_of.setdefault(item["subscription_id"], []).append(item)
        for group in usage:
            usage_of.setdefault(group["subscription_id"], []).append(group)
        invoices, lines, periods, ending = [], [], [], []
        billed_items, billed_usage = [], []
        for i, sub in enumerate(batch):
            sequence, invoice_id = first + i, uuid.uuid4()
            sub_items, sub_usage = items_of.get(sub["id"], []), usage_of.get(sub["id"], [])
            sub_lines = _period_lines(sub, sub_items, sub_usage)
            amount = sum((ln["amount"] for ln in sub_lines), Decimal(0))
            tax = sum((ln["tax"] for ln in sub_lines), Decimal(0))
            number = invoice_number(ctx, sequence)
            numbers.append(number)
            invoices.append(
                {
                    "id": invoice_id,
                    "customer_id": sub["customer_id"],
                    "subscription_id": sub["id"],
                    "period_start": sub["current_period_start"],
                    "period_end": sub["current_period_end"],
                    "number": number,
                    "sequence": sequence,
                    "currency": sub["currency"],
                    "subtotal": amount,
                    "tax": tax,
                    "total": amount + tax,
                    "days": terms,
                    # Nothing to collect (no usage, a credit eating the period): settled at once.
                    "status": "open" if amount + tax > 0 else "paid",
                }
            )
            lines += [{**ln, "invoice_id": invoice_id} for ln in sub_lines]
            billed_items += [{"id": it["id"], "invoice_id": invoice_id} for it in sub_items]
            billed_usage += [{"ids": g["ids"], "invoice_id": invoice_id} for g in sub_usage]
            end = sub["current_period_end"]
            if sub["cancel_at_period_end"]:
                ending.append(sub["id"])
            else:
                periods.append(
                    {
                        "id": sub["id"],
                        "start": end,
                        "end": next_end(sub["anchor"], end, sub["billing_interval"]),
                    }
                )
            issued = {
                "invoice_id": str(invoice_id),
                "number": number,
                "customer_id": str(sub["customer_id"]),
                "subscription_id": str(sub["id"]),
                "currency": sub["currency"],
                "total": str(amount + tax),
            }
            await ctx.publish(INVOICE_ISSUED, issued, subject=f"invoices/{invoice_id}")
            if invoices[-1]["status"] == "paid":
                await ctx.publish(INVOICE_PAID, issued, subject=f"invoices/{invoice_id}")
        await invoice_repository.insert_issued_invoices(ctx.db, invoices)
        await invoice_repository.insert_lines(ctx.db, lines)
        await subscription_repository.mark_billed(ctx.db, billed_items, billed_usage)
        if periods:
            await subscription_repository.advance_periods(ctx.db, periods)
        for row in await subscription_repository.cancel_at_period_end(ctx.db, ending):
            await subscription_changed(ctx, Subscription.model_validate(row), "canceled")
    return InvoiceRun(as_of=day, issued=len(numbers), numbers=numbers)


async def scheduled_invoice_run(ctx: PluginContext, now: datetime) -> InvoiceRun:
    """The periodic job (ADR 0107): the invoice run as of the job's day, in UTC."""
    return await invoice_run(ctx, now.astimezone(UTC).date())


# --- CRM -------------------------------------------------------------------------------------


async def deal_won(ctx: PluginContext, event: Event) -> Invoice | None:
    """The customer of the deal's company (created or refreshed) and a draft invoice for the
    deal's amount; a redelivered event or an already invoiced deal changes nothing."""
    if not await repository.first_delivery(ctx.db, event, "billing.deal_won"):
        return None
    won = DealWon.of(event)
    deal_id, amount = won.deal_id, cents(won.amount)
    code = currency(won.currency, ctx)
    title = (won.title or f"Deal {deal_id}")[:200]
    name = (won.company_name or title)[:200]
    existing = await invoice_repository.invoice_by_deal(ctx.db, deal_id)
    customer = (
        await repository.upsert_crm_customer(ctx.db, won.company_id, name, code)
        if won.company_id
        else None
    )
    if existing is not None:
        return await load_invoice(ctx, existing["id"])
    customer_id = (
        customer["id"]
        if customer is not None
        else (
            await new_customer(
                ctx, {"name": name, "email": None, "currency": code, "crm_company_id": None}
            )
        ).id
    )
    row = await invoice_repository.insert_invoice(
        ctx.db, {"customer_id": customer_id, "currency": code, "crm_deal_id": deal_id}
    )
    line = LineIn(description=title, quantity=Decimal(1), unit_price=amount)
    invoice = await append_lines(ctx, Invoice.model_validate(row), [line])
    await publish_invoice(ctx, INVOICE_CREATED, invoice)
    return invoice
