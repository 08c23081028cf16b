"""Billing logic: money checks, invoice numbering and states, the invoice run, CRM deals."""

from __future__ import annotations

import calendar
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from plexica_billing import repository as repo
from plexica_billing.money import cents, is_currency, line_totals
from plexica_billing.providers import PROVIDERS, Charge
from plexica_billing.schemas import (
    AlreadyPaidError,
    BillingNotFoundError,
    CurrencyMismatchError,
    Customer,
    CustomerIn,
    DuplicateError,
    InvalidAmountError,
    Invoice,
    InvoiceIn,
    InvoiceRun,
    InvoiceStateError,
    Line,
    LineIn,
    Metrics,
    Page,
    Payment,
    PaymentIn,
    Plan,
    PlanIn,
    Subscription,
    SubscriptionChange,
    SubscriptionIn,
    SubscriptionStateError,
    UnknownCurrencyError,
    UnknownProviderError,
    UnknownReferenceError,
)
from plexica_sdk.app import PluginContext
from plexica_sdk.events import Event

INVOICE_ISSUED = "billing.invoice.issued"
INVOICE_PAID = "billing.invoice.paid"
SUBSCRIPTION_CHANGED = "billing.subscription.changed"
RUN_BATCH = 500


# --- settings and checks ---------------------------------------------------------------------


def currency(code: str | None, ctx: PluginContext) -> str:
    value = (code or str(ctx.settings.get("default_currency", "EUR"))).upper()
    if not is_currency(value):
        raise UnknownCurrencyError(
            f"{value} is not an ISO 4217 currency", details={"currency": value}
        )
    return value


def _tax_rate(ctx: PluginContext) -> Decimal:
    return Decimal(str(ctx.settings.get("tax_rate", "0")))


def _terms(ctx: PluginContext) -> int:
    return int(ctx.settings.get("payment_terms_days", 30))


def _number(ctx: PluginContext, sequence: int) -> str:
    return f"{ctx.settings.get('invoice_prefix', 'INV-')}{sequence:06d}"


async def _found(ctx: PluginContext, table: str, id_: UUID, what: str) -> dict[str, Any]:
    row = await repo.get(ctx.db, table, id_)
    if row is None:
        raise BillingNotFoundError(f"no such {what}")
    return row


async def _reference(ctx: PluginContext, table: str, id_: UUID, field: str) -> dict[str, Any]:
    row = await repo.get(ctx.db, table, id_)
    if row is None:
        raise UnknownReferenceError(f"{field}: no such record", details={"field": field})
    return row


def add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _period_months(interval: str) -> int:
    return 12 if interval == "year" else 1


def next_end(anchor: date, end: date, interval: str) -> date:
    """The end of the period after the one ending at ``end``, counted from ``anchor``."""
    months = (end.year - anchor.year) * 12 + end.month - anchor.month
    return add_months(anchor, months + _period_months(interval))


# --- customers and plans ---------------------------------------------------------------------


async def list_customers(
    ctx: PluginContext, q: str | None, limit: int, offset: int
) -> Page[Customer]:
    rows, total = await repo.list_customers(ctx.db, q, limit, offset)
    return Page(
        items=[Customer.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


async def create_customer(ctx: PluginContext, body: CustomerIn) -> Customer:
    values = {**body.model_dump(), "currency": currency(body.currency, ctx)}
    return Customer.model_validate(await repo.insert_customer(ctx.db, values))


async def get_customer(ctx: PluginContext, customer_id: UUID) -> Customer:
    return Customer.model_validate(await _found(ctx, "billing_customers", customer_id, "customer"))


async def list_plans(ctx: PluginContext, limit: int, offset: int) -> Page[Plan]:
    rows, total = await repo.list_plans(ctx.db, limit, offset)
    return Page(
        items=[Plan.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


async def create_plan(ctx: PluginContext, body: PlanIn) -> Plan:
    values = {
        **body.model_dump(),
        "currency": currency(body.currency, ctx),
        "tax_rate": _tax_rate(ctx) if body.tax_rate is None else body.tax_rate,
    }
    row = await repo.insert_plan(ctx.db, values)
    if row is None:
        raise DuplicateError(f"a plan with code {body.code} exists", details={"code": body.code})
    return Plan.model_validate(row)


# --- subscriptions ---------------------------------------------------------------------------


async def list_subscriptions(
    ctx: PluginContext, status: str | None, customer_id: UUID | None, limit: int, offset: int
) -> Page[Subscription]:
    rows, total = await repo.list_subscriptions(ctx.db, status, customer_id, limit, offset)
    return Page(
        items=[Subscription.model_validate(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


async def _changed(ctx: PluginContext, sub: Subscription, change: str) -> None:
    await ctx.publish(
        SUBSCRIPTION_CHANGED,
        {
            "subscription_id": str(sub.id),
            "customer_id": str(sub.customer_id),
            "plan_id": str(sub.plan_id),
            "status": sub.status,
            "quantity": sub.quantity,
            "change": change,
        },
        subject=f"subscriptions/{sub.id}",
    )


async def create_subscription(ctx: PluginContext, body: SubscriptionIn) -> Subscription:
    await _reference(ctx, "billing_customers", body.customer_id, "customer_id")
    plan = await _reference(ctx, "billing_plans", body.plan_id, "plan_id")
    start = body.start or datetime.now(UTC).date()
    if body.trial_days:
        status, end = "trialing", start + timedelta(days=body.trial_days)
    else:
        status, end = "active", add_months(start, _period_months(plan["billing_interval"]))
    row = await repo.insert_subscription(
        ctx.db, {**body.model_dump(), "status": status, "start": start, "end": end}
    )
    sub = Subscription.model_validate(row)
    await _changed(ctx, sub, "created")
    return sub


async def change_subscription(
    ctx: PluginContext, subscription_id: UUID, body: SubscriptionChange
) -> Subscription:
    """Plan, seats or status; takes effect from the next invoice (no proration yet)."""
    row = await repo.get(ctx.db, "billing_subscriptions", subscription_id, lock=True)
    if row is None:
        raise BillingNotFoundError("no such subscription")
    before = Subscription.model_validate(row)
    if before.status == "canceled":
        raise SubscriptionStateError("a canceled subscription cannot change")
    plan_id = body.plan_id or before.plan_id
    if body.plan_id is not None:
        plan = await _reference(ctx, "billing_plans", body.plan_id, "plan_id")
        old = await _found(ctx, "billing_plans", before.plan_id, "plan")
        if plan["currency"] != old["currency"]:
            raise CurrencyMismatchError("the new plan bills in another currency")
    sub = Subscription.model_validate(
        await repo.update_subscription(
            ctx.db,
            subscription_id,
            plan_id,
            body.quantity or before.quantity,
            body.status or before.status,
        )
    )
    if sub != before:
        await _changed(ctx, sub, "canceled" if sub.status == "canceled" else "updated")
    return sub


# --- invoices --------------------------------------------------------------------------------


async def list_invoices(
    ctx: PluginContext, status: str | None, customer_id: UUID | None, limit: int, offset: int
) -> Page[Invoice]:
    rows, total = await repo.list_invoices(ctx.db, status, customer_id, limit, offset)
    return Page(
        items=[Invoice.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


async def _invoice(ctx: PluginContext, invoice_id: UUID, *, lock: bool = False) -> Invoice:
    row = await repo.get(ctx.db, "billing_invoices", invoice_id, lock=lock)
    if row is None:
        raise BillingNotFoundError("no such invoice")
    lines = [Line.model_validate(r) for r in await repo.lines(ctx.db, invoice_id)]
    return Invoice.model_validate({**row, "lines": lines})


async def get_invoice(ctx: PluginContext, invoice_id: UUID) -> Invoice:
    return await _invoice(ctx, invoice_id)


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
        rate = _tax_rate(ctx) if line.tax_rate is None else line.tax_rate
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


async def _add_lines(ctx: PluginContext, invoice: Invoice, body: list[LineIn]) -> Invoice:
    rows = _line_rows(ctx, invoice, body, len(invoice.lines) + 1)
    await repo.insert_lines(ctx.db, rows)
    all_lines = [*invoice.lines, *(Line.model_validate({"id": uuid.uuid4(), **r}) for r in rows)]
    subtotal = sum((ln.amount for ln in all_lines), Decimal(0))
    tax = sum((ln.tax for ln in all_lines), Decimal(0))
    await repo.set_totals(ctx.db, invoice.id, cents(subtotal), cents(tax))
    return await _invoice(ctx, invoice.id)


async def create_invoice(ctx: PluginContext, body: InvoiceIn) -> Invoice:
    customer = await _reference(ctx, "billing_customers", body.customer_id, "customer_id")
    code = currency(body.currency or customer["currency"], ctx)
    row = await repo.insert_invoice(ctx.db, {"customer_id": body.customer_id, "currency": code})
    return await _add_lines(ctx, Invoice.model_validate(row), body.lines)


async def add_lines(ctx: PluginContext, invoice_id: UUID, body: list[LineIn]) -> Invoice:
    invoice = await _invoice(ctx, invoice_id, lock=True)
    if invoice.status != "draft":
        raise InvoiceStateError(f"lines are added to drafts only; this invoice is {invoice.status}")
    return await _add_lines(ctx, invoice, body)


async def issue_invoice(ctx: PluginContext, invoice_id: UUID) -> Invoice:
    invoice = await _invoice(ctx, invoice_id, lock=True)
    if invoice.status != "draft":
        raise InvoiceStateError(f"only drafts are issued; this invoice is {invoice.status}")
    if not invoice.lines:
        raise InvalidAmountError("an invoice without lines cannot be issued")
    sequence = await repo.take_numbers(ctx.db, 1)
    await repo.mark_issued(ctx.db, invoice_id, _number(ctx, sequence), sequence, _terms(ctx))
    issued = await _invoice(ctx, invoice_id)
    await _published(ctx, INVOICE_ISSUED, issued)
    return issued


async def _published(ctx: PluginContext, event_type: str, invoice: Invoice) -> None:
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
    invoice = await _invoice(ctx, invoice_id, lock=True)
    allowed = ("draft", "open") if status == "void" else ("open",)
    if invoice.status not in allowed:
        raise InvoiceStateError(f"a {invoice.status} invoice cannot become {status}")
    await repo.set_status(ctx.db, invoice_id, status)
    return await _invoice(ctx, invoice_id)


async def pay_invoice(ctx: PluginContext, invoice_id: UUID, body: PaymentIn) -> Payment:
    invoice = await _invoice(ctx, invoice_id, lock=True)
    if invoice.status == "paid":
        raise AlreadyPaidError(f"invoice {invoice.number} is already paid")
    if invoice.status != "open":
        raise InvoiceStateError(f"only open invoices are paid; this invoice is {invoice.status}")
    code = currency(body.currency or invoice.currency, ctx)
    if code != invoice.currency:
        raise CurrencyMismatchError(f"the invoice is in {invoice.currency}, the payment in {code}")
    if body.amount != invoice.total:
        raise InvalidAmountError(
            f"invoices are paid in full: {invoice.total} {invoice.currency}",
            details={"expected": str(invoice.total)},
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
    await _published(ctx, INVOICE_PAID, await _invoice(ctx, invoice_id))
    return Payment.model_validate(payment)


async def list_payments(ctx: PluginContext, invoice_id: UUID) -> list[Payment]:
    await _invoice(ctx, invoice_id)
    return [Payment.model_validate(r) for r in await repo.payments(ctx.db, invoice_id)]


# --- the invoice run -------------------------------------------------------------------------


async def invoice_run(ctx: PluginContext, as_of: date | None) -> InvoiceRun:
    """Invoice every active subscription whose period ended by ``as_of`` and move it to the
    next period, in this transaction. Billed periods leave the due set, so a second run finds
    nothing; concurrent runs skip each other's locked rows and share the numbering lock."""
    day = as_of or datetime.now(UTC).date()
    terms, numbers = _terms(ctx), []
    for row in await repo.end_trials(ctx.db, day):
        await _changed(ctx, Subscription.model_validate(row), "trial_ended")
    while batch := await repo.lock_due_subscriptions(ctx.db, day, RUN_BATCH):
        first = await repo.take_numbers(ctx.db, len(batch))
        invoices, lines, periods = [], [], []
        for i, sub in enumerate(batch):
            sequence, invoice_id = first + i, uuid.uuid4()
            quantity = Decimal(sub["quantity"]) if sub["pricing"] == "per_seat" else Decimal(1)
            amount, tax = line_totals(quantity, sub["price"], sub["tax_rate"])
            start, end = sub["current_period_start"], sub["current_period_end"]
            number = _number(ctx, sequence)
            numbers.append(number)
            invoices.append(
                {
                    "id": invoice_id,
                    "customer_id": sub["customer_id"],
                    "subscription_id": sub["id"],
                    "period_start": start,
                    "period_end": end,
                    "number": number,
                    "sequence": sequence,
                    "currency": sub["currency"],
                    "subtotal": amount,
                    "tax": tax,
                    "total": amount + tax,
                    "days": terms,
                }
            )
            lines.append(
                {
                    "invoice_id": invoice_id,
                    "position": 1,
                    "description": f"{sub['plan_name']} {start.isoformat()} to {end.isoformat()}",
                    "quantity": quantity,
                    "unit_price": sub["price"],
                    "tax_rate": sub["tax_rate"],
                    "amount": amount,
                    "tax": tax,
                }
            )
            periods.append(
                {
                    "id": sub["id"],
                    "start": end,
                    "end": next_end(sub["anchor"], end, sub["billing_interval"]),
                }
            )
            await ctx.publish(
                INVOICE_ISSUED,
                {
                    "invoice_id": str(invoice_id),
                    "number": number,
                    "customer_id": str(sub["customer_id"]),
                    "subscription_id": str(sub["id"]),
                    "currency": sub["currency"],
                    "total": str(amount + tax),
                },
                subject=f"invoices/{invoice_id}",
            )
        await repo.insert_issued_invoices(ctx.db, invoices)
        await repo.insert_lines(ctx.db, lines)
        await repo.advance_periods(ctx.db, periods)
    return InvoiceRun(as_of=day, issued=len(numbers), numbers=numbers)


# --- CRM -------------------------------------------------------------------------------------


def _event_amount(event: Event) -> tuple[Decimal, str]:
    try:
        amount = Decimal(str(event.data.get("amount", "")))
    except InvalidOperation:
        raise InvalidAmountError("crm.deal.won carries no numeric amount") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidAmountError("crm.deal.won carries a negative or infinite amount")
    return cents(amount), str(event.data.get("currency") or "")


async def deal_won(ctx: PluginContext, event: Event) -> Invoice | None:
    """The customer of the deal's company (created or refreshed) and a draft invoice for the
    deal's amount; a redelivered event or an already invoiced deal changes nothing."""
    if not await repo.first_delivery(ctx.db, event, "billing.deal_won"):
        return None
    deal_id = UUID(str(event.data["deal_id"]))
    amount, code = _event_amount(event)
    code = currency(code or None, ctx)
    title = str(event.data.get("title") or f"Deal {deal_id}")[:200]
    company = event.data.get("company_id")
    name = str(event.data.get("company_name") or title)[:200]
    customer = (
        await repo.upsert_crm_customer(ctx.db, UUID(str(company)), name, code) if company else None
    )
    existing = await repo.invoice_by_deal(ctx.db, deal_id)
    if existing is not None:
        return await _invoice(ctx, existing["id"])
    if customer is None:
        customer = await repo.insert_customer(
            ctx.db, {"name": name, "email": None, "currency": code, "crm_company_id": None}
        )
    row = await repo.insert_invoice(
        ctx.db, {"customer_id": customer["id"], "currency": code, "crm_deal_id": deal_id}
    )
    line = LineIn(description=title, quantity=Decimal(1), unit_price=amount)
    return await _add_lines(ctx, Invoice.model_validate(row), [line])


# --- dashboard -------------------------------------------------------------------------------


async def metrics(ctx: PluginContext) -> Metrics:
    data = await repo.metrics(ctx.db)
    return Metrics(
        currency=currency(None, ctx),
        mrr={r["currency"]: cents(r["mrr"]) for r in data["mrr"]},
        open_invoices=sum(int(r["n"]) for r in data["open"]),
        open_amount={r["currency"]: cents(r["amount"]) for r in data["open"]},
    )
