"""Billing's invoices: drafts and their lines, numbering, issuing, closing, payments and credit
notes."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any
from uuid import UUID

from plexica_billing import invoice_repository as repo
from plexica_billing import repository
from plexica_billing.money import cents, line_totals
from plexica_billing.providers import PROVIDERS, Charge
from plexica_billing.schemas import (
    AlreadyPaidError,
    BillingNotFoundError,
    CreditNote,
    CreditNoteIn,
    CurrencyMismatchError,
    InvalidAmountError,
    Invoice,
    InvoiceIn,
    InvoiceStateError,
    Line,
    LineIn,
    OverCreditError,
    Payment,
    PaymentIn,
    UnknownProviderError,
)
from plexica_billing.service import (
    CREDIT_NOTE_ISSUED,
    INVOICE_CREATED,
    INVOICE_ISSUED,
    INVOICE_PAID,
    INVOICE_UNCOLLECTIBLE,
    INVOICE_UPDATED,
    INVOICE_VOIDED,
    currency,
    default_tax_rate,
    invoice_number,
    payment_terms,
    reference,
)
from plexica_sdk.app import PluginContext
from plexica_sdk.pagination import Page, page_of

# --- invoices --------------------------------------------------------------------------------


async def list_invoices(
    ctx: PluginContext, status: str | None, customer_id: UUID | None, limit: int, offset: int
) -> Page[Invoice]:
    rows, total = await repo.list_invoices(ctx.db, status, customer_id, limit, offset)
    due = [{**r, "amount_due": _amount_due(r)} for r in rows]
    return page_of(Invoice, due, total, limit, offset)


async def load_invoice(ctx: PluginContext, invoice_id: UUID, *, lock: bool = False) -> Invoice:
    row = await repository.get(ctx.db, "billing_invoices", invoice_id, lock=lock)
    if row is None:
        raise BillingNotFoundError("no such invoice")
    lines = [Line.model_validate(r) for r in await repo.lines(ctx.db, invoice_id)]
    notes = [CreditNote.model_validate(r) for r in await repo.credit_notes(ctx.db, invoice_id)]
    return Invoice.model_validate(
        {**row, "lines": lines, "credit_notes": notes, "amount_due": _amount_due(row)}
    )


def _amount_due(row: dict[str, Any]) -> Decimal:
    if row["status"] != "open":
        return Decimal("0.00")
    return Decimal(row["total"]) - Decimal(row["credited"])


async def get_invoice(ctx: PluginContext, invoice_id: UUID) -> Invoice:
    return await load_invoice(ctx, invoice_id)


def _line_rows(
    ctx: PluginContext, invoice: Invoice, body: list[LineIn], first: int
) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(body):
        if line.currency is not None and currency(line.currency, ctx) != invoice.currency:
            raise CurrencyMismatchError(
                f"line {i} is in {line.currency.upper()}, the invoice in {invoice.currency}",
                details={"line": i, "currency": line.currency.upper()},
            )
        rate = default_tax_rate(ctx) if line.tax_rate is None else line.tax_rate
        amount, tax = line_totals(line.quantity, line.unit_price, rate)
        rows.append(
            {
                "invoice_id": invoice.id,
                "position": first + i,
                "description": line.description,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "tax_rate": rate,
                "amount": amount,
                "tax": tax,
            }
        )
    return rows


async def append_lines(ctx: PluginContext, invoice: Invoice, body: list[LineIn]) -> Invoice:
    rows = _line_rows(ctx, invoice, body, len(invoice.lines) + 1)
    await repo.insert_lines(ctx.db, rows)
    all_lines = [*invoice.lines, *(Line.model_validate({"id": uuid.uuid4(), **r}) for r in rows)]
    subtotal = sum((ln.amount for ln in all_lines), Decimal(0))
    tax = sum((ln.tax for ln in all_lines), Decimal(0))
    await repo.set_totals(ctx.db, invoice.id, cents(subtotal), cents(tax))
    return await load_invoice(ctx, invoice.id)


async def create_invoice(ctx: PluginContext, body: InvoiceIn) -> Invoice:
    customer = await reference(ctx, "billing_customers", body.customer_id, "customer_id")
    code = currency(body.currency or customer["currency"], ctx)
    row = await repo.insert_invoice(ctx.db, {"customer_id": body.customer_id, "currency": code})
    invoice = await append_lines(ctx, Invoice.model_validate(row), body.lines)
    await publish_invoice(ctx, INVOICE_CREATED, invoice)
    return invoice


async def add_lines(ctx: PluginContext, invoice_id: UUID, body: list[LineIn]) -> Invoice:
    invoice = await load_invoice(ctx, invoice_id, lock=True)
    if invoice.status != "draft":
        raise InvoiceStateError(f"lines are added to drafts only; this invoice is {invoice.status}")
    updated = await append_lines(ctx, invoice, body)
    await publish_invoice(ctx, INVOICE_UPDATED, updated)
    return updated


async def issue_invoice(ctx: PluginContext, invoice_id: UUID) -> Invoice:
    invoice = await load_invoice(ctx, invoice_id, lock=True)
    if invoice.status != "draft":
        raise InvoiceStateError(f"only drafts are issued; this invoice is {invoice.status}")
    if not invoice.lines:
        raise InvalidAmountError("an invoice without lines cannot be issued")
    sequence = await repo.take_numbers(ctx.db, 1)
    await repo.mark_issued(
        ctx.db, invoice_id, invoice_number(ctx, sequence), sequence, payment_terms(ctx)
    )
    issued = await load_invoice(ctx, invoice_id)
    await publish_invoice(ctx, INVOICE_ISSUED, issued)
    return issued


async def publish_invoice(ctx: PluginContext, event_type: str, invoice: Invoice) -> None:
    await ctx.publish(
        event_type,
        {
            "invoice_id": str(invoice.id),
            "number": invoice.number,
            "customer_id": str(invoice.customer_id),
            "currency": invoice.currency,
            "total": str(invoice.total),
        },
        subject=f"invoices/{invoice.id}",
    )


async def close_invoice(ctx: PluginContext, invoice_id: UUID, status: str) -> Invoice:
    """Void (a draft or an open invoice) or mark uncollectible (an open one)."""
    invoice = await load_invoice(ctx, invoice_id, lock=True)
    allowed = ("draft", "open") if status == "void" else ("open",)
    if invoice.status not in allowed:
        raise InvoiceStateError(f"a {invoice.status} invoice cannot become {status}")
    await repo.set_status(ctx.db, invoice_id, status)
    closed = await load_invoice(ctx, invoice_id)
    await publish_invoice(
        ctx, INVOICE_VOIDED if status == "void" else INVOICE_UNCOLLECTIBLE, closed
    )
    return closed


async def pay_invoice(ctx: PluginContext, invoice_id: UUID, body: PaymentIn) -> Payment:
    invoice = await load_invoice(ctx, invoice_id, lock=True)
    if invoice.status == "paid":
        raise AlreadyPaidError(f"invoice {invoice.number} is already paid")
    if invoice.status != "open":
        raise InvoiceStateError(f"only open invoices are paid; this invoice is {invoice.status}")
    code = currency(body.currency or invoice.currency, ctx)
    if code != invoice.currency:
        raise CurrencyMismatchError(f"the invoice is in {invoice.currency}, the payment in {code}")
    if body.amount != invoice.amount_due:
        raise InvalidAmountError(
            f"invoices are paid in full: {invoice.amount_due} {invoice.currency}",
            details={"expected": str(invoice.amount_due)},
        )
    provider = PROVIDERS.get(body.provider)
    if provider is None:
        raise UnknownProviderError(
            f"no payment provider {body.provider}", details={"known": sorted(PROVIDERS)}
        )
    receipt = await provider.collect(Charge(invoice.id, body.amount, code, body.reference))
    payment = await repo.insert_payment(
        ctx.db,
        {
            "invoice_id": invoice_id,
            "amount": body.amount,
            "currency": code,
            "provider": receipt.provider,
            "reference": receipt.reference,
            "by": ctx.user_id,
        },
    )
    await repo.set_status(ctx.db, invoice_id, "paid")
    await publish_invoice(ctx, INVOICE_PAID, await load_invoice(ctx, invoice_id))
    return Payment.model_validate(payment)


# --- credit notes ----------------------------------------------------------------------------


async def credit_invoice(ctx: PluginContext, invoice_id: UUID, body: CreditNoteIn) -> CreditNote:
    """A credit note (ADR 0106): on an open invoice it lowers the amount due (settling the
    invoice when nothing is left), on a paid one it records a refund. Numbered in its own
    gap-free series."""
    invoice = await load_invoice(ctx, invoice_id, lock=True)
    if invoice.status not in ("open", "paid"):
        raise InvoiceStateError(
            f"only open or paid invoices are credited; this one is {invoice.status}"
        )
    creditable = invoice.total - invoice.credited
    if body.amount > creditable:
        raise OverCreditError(
            f"at most {creditable} {invoice.currency} of this invoice can still be credited",
            details={"creditable": str(creditable)},
        )
    kind = "refund" if invoice.status == "paid" else "credit"
    tax = cents(body.amount * invoice.tax / invoice.total) if invoice.total else Decimal(0)
    sequence = await repo.take_numbers(ctx.db, 1, "credit_note")
    prefix = str(ctx.settings.get("credit_note_prefix", "CN-"))
    note = CreditNote.model_validate(
        await repo.insert_credit_note(
            ctx.db,
            {
                "invoice_id": invoice_id,
                "number": f"{prefix}{sequence:06d}",
                "sequence": sequence,
                "kind": kind,
                "amount": body.amount,
                "tax": tax,
                "currency": invoice.currency,
                "reason": body.reason,
                "by": ctx.user_id,
            },
        )
    )
    settled = kind == "credit" and body.amount == invoice.amount_due
    await repo.add_credited(ctx.db, invoice_id, body.amount, "paid" if settled else invoice.status)
    await ctx.publish(
        CREDIT_NOTE_ISSUED,
        {
            "credit_note_id": str(note.id),
            "number": note.number,
            "invoice_id": str(invoice_id),
            "invoice_number": invoice.number,
            "kind": kind,
            "amount": str(note.amount),
            "currency": note.currency,
        },
        subject=f"credit-notes/{note.id}",
    )
    if settled:  # every way an invoice becomes paid says so (ADR 0181)
        await publish_invoice(ctx, INVOICE_PAID, await load_invoice(ctx, invoice_id))
    return note


async def list_credit_notes(ctx: PluginContext, limit: int, offset: int) -> Page[CreditNote]:
    rows, total = await repo.list_credit_notes(ctx.db, limit, offset)
    return page_of(CreditNote, rows, total, limit, offset)


async def list_payments(ctx: PluginContext, invoice_id: UUID) -> list[Payment]:
    await load_invoice(ctx, invoice_id)
    return [Payment.model_validate(r) for r in await repo.payments(ctx.db, invoice_id)]
