"""Billing logic: money checks, invoice numbering and states, the invoice run, CRM deals."""

from __future__ import annotations

import calendar
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from plexica_billing import repository as repo
from plexica_billing.money import cents, is_currency, line_totals
from plexica_billing.providers import PROVIDERS, Charge
from plexica_billing.schemas import (
    AlreadyPaidError,
    BillingNotFoundError,
    CreditNote,
    CreditNoteIn,
    CurrencyMismatchError,
    Customer,
    CustomerHasInvoicesError,
    CustomerIn,
    CustomerInUseError,
    CustomerPatch,
    DuplicateError,
    IdempotencyKeyReusedError,
    IntervalMismatchError,
    InvalidAmountError,
    InvalidDateError,
    Invoice,
    InvoiceIn,
    InvoiceRun,
    InvoiceStateError,
    Line,
    LineIn,
    Metrics,
    NotMeteredError,
    OverCreditError,
    Page,
    Payment,
    PaymentIn,
    PendingItem,
    Plan,
    PlanIn,
    PlanInUseError,
    PlanPatch,
    Subscription,
    SubscriptionChange,
    SubscriptionIn,
    SubscriptionStateError,
    UnknownCurrencyError,
    UnknownProviderError,
    UnknownReferenceError,
    UsageIn,
    UsageRecord,
)
from plexica_sdk.app import PluginContext
from plexica_sdk.contracts import DealWon
from plexica_sdk.events import Event

# Data of each type: the JSON Schemas in plexica-plugin.yaml, checked as it is published.
CUSTOMER_CREATED = "billing.customer.created"
CUSTOMER_UPDATED = "billing.customer.updated"
CUSTOMER_DELETED = "billing.customer.deleted"
PLAN_CREATED = "billing.plan.created"
PLAN_UPDATED = "billing.plan.updated"
PLAN_DELETED = "billing.plan.deleted"
INVOICE_CREATED = "billing.invoice.created"
INVOICE_UPDATED = "billing.invoice.updated"
INVOICE_VOIDED = "billing.invoice.voided"
INVOICE_UNCOLLECTIBLE = "billing.invoice.marked_uncollectible"
INVOICE_ISSUED = "billing.invoice.issued"
INVOICE_PAID = "billing.invoice.paid"
SUBSCRIPTION_CHANGED = "billing.subscription.changed"
CREDIT_NOTE_ISSUED = "billing.credit_note.issued"
# How far ahead of the server's clock a usage report may be dated (clients' clocks drift).
USAGE_CLOCK_SKEW = timedelta(minutes=5)
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


async def _found(
    ctx: PluginContext, table: str, id_: UUID, what: str, *, lock: bool | str = False
) -> dict[str, Any]:
    row = await repo.get(ctx.db, table, id_, lock=lock)
    if row is None:
        raise BillingNotFoundError(f"no such {what}")
    return row


async def _reference(ctx: PluginContext, table: str, id_: UUID, field: str) -> dict[str, Any]:
    # Key share: a customer or plan being removed is waited for, then it is unknown here.
    row = await repo.get(ctx.db, table, id_, lock="key share")
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
    return await _new_customer(ctx, values)


async def _new_customer(ctx: PluginContext, values: dict[str, Any]) -> Customer:
    customer = Customer.model_validate(await repo.insert_customer(ctx.db, values))
    await ctx.publish(
        CUSTOMER_CREATED,
        {
            "customer_id": str(customer.id),
            "name": customer.name,
            "currency": customer.currency,
            "crm_company_id": str(customer.crm_company_id) if customer.crm_company_id else None,
        },
        subject=f"customers/{customer.id}",
    )
    return customer


async def get_customer(ctx: PluginContext, customer_id: UUID) -> Customer:
    return Customer.model_validate(await _found(ctx, "billing_customers", customer_id, "customer"))


async def update_customer(ctx: PluginContext, customer_id: UUID, body: CustomerPatch) -> Customer:
    """The fields given, under the customer's row lock: parallel changes apply one after the
    other and each event's ``from`` is what its change really replaced (ADR 0223)."""
    before = await _found(ctx, "billing_customers", customer_id, "customer", lock="update")
    values = body.changes()
    if "currency" in values:
        values["currency"] = currency(values["currency"], ctx)
    changes = _diff(before, values)
    if not changes:
        return Customer.model_validate(before)
    if "currency" in changes and (await repo.customer_use(ctx.db, customer_id))["invoices"]:
        raise CustomerHasInvoicesError(
            "the currency of a customer with invoices cannot change",
            details={"currency": before["currency"]},
        )
    row = await repo.update(ctx.db, "billing_customers", customer_id, _new(changes))
    if row is None:
        raise DuplicateError(
            "another customer has this CRM company",
            details={"crm_company_id": str(values["crm_company_id"])},
        )
    subject = f"customers/{customer_id}"
    await _publish_changes(ctx, CUSTOMER_UPDATED, subject, _stored(changes, row))
    return Customer.model_validate(row)


async def delete_customer(ctx: PluginContext, customer_id: UUID) -> None:
    """Only a customer never invoiced and without live subscriptions; its canceled
    subscriptions (never billed) go with it."""
    customer = await _found(ctx, "billing_customers", customer_id, "customer", lock="update")
    use = await repo.customer_use(ctx.db, customer_id)
    if use["invoices"] or use["subscriptions"]:
        raise CustomerInUseError(
            "a customer with invoices or live subscriptions cannot be deleted", details=use
        )
    await repo.delete_customer(ctx.db, customer_id)
    await ctx.publish(
        CUSTOMER_DELETED,
        {
            "customer_id": str(customer_id),
            "name": customer["name"],
            "crm_company_id": _json(customer["crm_company_id"]),
            "deleted_by": ctx.user_id,
        },
        subject=f"customers/{customer_id}",
    )


def _json(value: Any) -> Any:
    """A column's value as event data: ids and amounts as strings."""
    return value if value is None or isinstance(value, (str, int, bool)) else str(value)


def _diff(before: dict[str, Any], values: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (before[k], v) for k, v in values.items() if before[k] != v}


def _new(changes: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    return {k: new for k, (_, new) in changes.items()}


def _stored(changes: dict[str, tuple[Any, Any]], row: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``to`` as the database stored it (an amount with its two decimals)."""
    return {k: (old, row[k]) for k, (old, _) in changes.items()}


async def _publish_changes(
    ctx: PluginContext,
    event_type: str,
    subject: str,
    changes: dict[str, tuple[Any, Any]],
    **extra: Any,
) -> None:
    """``billing.<object>.updated``: the object's id, and each field that changed, from/to."""
    what, id_ = event_type.split(".")[1], subject.rsplit("/", 1)[1]
    await ctx.publish(
        event_type,
        {
            f"{what}_id": id_,
            **extra,
            "changes": {
                k: {"from": _json(old), "to": _json(new)} for k, (old, new) in changes.items()
            },
            "updated_by": ctx.user_id,
        },
        subject=subject,
    )


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
    plan = Plan.model_validate(row)
    await ctx.publish(
        PLAN_CREATED,
        {
            "plan_id": str(plan.id),
            "code": plan.code,
            "pricing": plan.pricing,
            "billing_interval": plan.billing_interval,
            "price": str(plan.price),
            "currency": plan.currency,
        },
        subject=f"plans/{plan.id}",
    )
    return plan


async def update_plan(ctx: PluginContext, plan_id: UUID, body: PlanPatch) -> Plan:
    """Name and price. A new price bills from each subscription's next period: subscriptions
    whose current period bills this plan keep the old price for it; issued invoices are never
    touched (ADR 0223). The plan is locked against other changes only (``NO KEY UPDATE``):
    subscriptions may still be started on it meanwhile."""
    before = await _found(ctx, "billing_plans", plan_id, "plan", lock="no key update")
    changes = _diff(before, body.changes())
    if not changes:
        return Plan.model_validate(before)
    if "price" in changes:
        await repo.pin_period_price(ctx.db, plan_id, before["price"])
    row = await repo.update(ctx.db, "billing_plans", plan_id, _new(changes))
    assert row is not None  # no unique column among a plan's editable fields
    subject = f"plans/{plan_id}"
    await _publish_changes(ctx, PLAN_UPDATED, subject, _stored(changes, row), code=row["code"])
    return Plan.model_validate(row)


async def delete_plan(ctx: PluginContext, plan_id: UUID) -> None:
    """Only a plan no subscription (of any status) was ever on: subscriptions and their
    invoices keep naming their plan."""
    plan = await _found(ctx, "billing_plans", plan_id, "plan", lock="update")
    used = await repo.plan_subscriptions(ctx.db, plan_id)
    if used:
        raise PlanInUseError(
            "a plan with subscriptions cannot be deleted", details={"subscriptions": used}
        )
    await repo.delete_plan(ctx.db, plan_id)
    await ctx.publish(
        PLAN_DELETED,
        {"plan_id": str(plan_id), "code": plan["code"], "deleted_by": ctx.user_id},
        subject=f"plans/{plan_id}",
    )


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


async def _changed(ctx: PluginContext, sub: Subscription, change: str, **extra: Any) -> None:
    await ctx.publish(
        SUBSCRIPTION_CHANGED,
        {
            "subscription_id": str(sub.id),
            "customer_id": str(sub.customer_id),
            "plan_id": str(sub.plan_id),
            "status": sub.status,
            "quantity": sub.quantity,
            "change": change,
            **extra,
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


def period_amount(pricing: str, price: Decimal, quantity: int) -> Decimal:
    """What one full period of a plan costs before tax (usage plans: nothing fixed)."""
    if pricing == "usage":
        return Decimal(0)
    return price * (quantity if pricing == "per_seat" else 1)


def prorate(amount: Decimal, remaining_days: int, period_days: int) -> Decimal:
    """``amount`` x remaining / period days, exact, then rounded half-up (away from zero) to
    cents: a credit and a charge of the same plan round to the same magnitude."""
    return cents(amount * remaining_days / period_days)


def _proration_items(
    before: dict[str, Any], plan: dict[str, Any], quantity: int, day: date
) -> list[dict[str, Any]]:
    start, end = before["current_period_start"], before["current_period_end"]
    period, remaining = (end - start).days, (end - day).days
    span = f"{day.isoformat()} to {end.isoformat()}, {remaining} of {period} days"
    items = []
    credit = prorate(
        period_amount(before["pricing"], before["price"], before["quantity"]), remaining, period
    )
    if credit:
        items.append(
            {
                "subscription_id": before["id"],
                "description": f"Unused time on {before['plan_name']} x {before['quantity']}"
                f" ({span})",
                "amount": -credit,
                "tax_rate": before["tax_rate"],
            }
        )
    charge = prorate(period_amount(plan["pricing"], plan["price"], quantity), remaining, period)
    if charge:
        items.append(
            {
                "subscription_id": before["id"],
                "description": f"Remaining time on {plan['name']} x {quantity} ({span})",
                "amount": charge,
                "tax_rate": plan["tax_rate"],
            }
        )
    return items


async def change_subscription(
    ctx: PluginContext, subscription_id: UUID, body: SubscriptionChange
) -> Subscription:
    """Plan, seats or status. A plan or seat change of a billed (active, past-due) subscription
    is prorated by day: the period's invoice keeps the plan it started with and gets a credit
    for the unused part of the old plan and a charge for the rest of the period on the new one
    (ADR 0104)."""
    row = await repo.subscription_plan(ctx.db, subscription_id)
    if row is None:
        raise BillingNotFoundError("no such subscription")
    before = Subscription.model_validate(row)
    if before.status == "canceled":
        raise SubscriptionStateError("a canceled subscription cannot change")
    plan: dict[str, Any] = {**row, "id": row["plan_id"], "name": row["plan_name"]}
    if body.plan_id is not None and body.plan_id != before.plan_id:
        plan = await _reference(ctx, "billing_plans", body.plan_id, "plan_id")
        if plan["currency"] != row["currency"]:
            raise CurrencyMismatchError(
                f"the new plan bills in {plan['currency']}, the subscription in {row['currency']}",
                details={"currency": plan["currency"], "subscription_currency": row["currency"]},
            )
        if plan["billing_interval"] != row["billing_interval"]:
            raise IntervalMismatchError(
                f"the new plan renews every {plan['billing_interval']}, this one every"
                f" {row['billing_interval']}: start a new subscription instead"
            )
    quantity = body.quantity or before.quantity
    status = body.status or before.status
    items: list[dict[str, Any]] = []
    changes_price = plan["id"] != before.plan_id or period_amount(
        plan["pricing"], plan["price"], quantity
    ) != period_amount(row["pricing"], row["price"], before.quantity)
    billed = before.status in ("active", "past_due") and status != "canceled"
    start, end = before.current_period_start, before.current_period_end
    day = body.effective or datetime.now(UTC).date()
    if changes_price and billed and not (body.effective is None and day >= end):
        if not start <= day < end:
            raise InvalidDateError(
                f"a change takes effect within the current period ({start} to {end})",
                details={"field": "effective"},
            )
        items = _proration_items(row, plan, quantity, day)
    # A period that is over but not billed yet (the run comes later) is billed as it was: the
    # change starts with the next period, nothing to prorate.
    sub = Subscription.model_validate(
        await repo.update_subscription(
            ctx.db,
            subscription_id,
            plan["id"],
            quantity,
            status,
            keep_period=changes_price and billed,
        )
    )
    await repo.insert_items(ctx.db, items)
    if sub != before:
        change = "canceled" if sub.status == "canceled" else "updated"
        if sub.plan_id != before.plan_id:
            change = "plan_changed"
        await _changed(
            ctx,
            sub,
            change,
            previous_plan_id=str(before.plan_id),
            proration=[
                {"description": i["description"], "amount": str(i["amount"])} for i in items
            ],
        )
    return sub


async def pending_items(ctx: PluginContext, subscription_id: UUID) -> list[PendingItem]:
    await _found(ctx, "billing_subscriptions", subscription_id, "subscription")
    rows = await repo.pending_items(ctx.db, subscription_id)
    return [PendingItem.model_validate(r) for r in rows]


# --- usage -----------------------------------------------------------------------------------


async def record_usage(
    ctx: PluginContext, subscription_id: UUID, body: UsageIn
) -> tuple[UsageRecord, bool]:
    """The record and whether it is new; a retry with the same key and the same report
    returns the first record, a different report under a used key is refused."""
    # Unlocked: the invoice run skips locked subscriptions, and a report racing the run is
    # billed on the next invoice (ADR 0105).
    row = await repo.subscription_plan(ctx.db, subscription_id, lock=False)
    if row is None:
        raise BillingNotFoundError("no such subscription")
    existing = await repo.usage_by_key(ctx.db, body.idempotency_key)
    if existing is None:
        if row["status"] != "active":
            raise SubscriptionStateError(
                f"usage is recorded on active subscriptions; this one is {row['status']}"
            )
        if row["pricing"] != "usage":
            raise NotMeteredError("the subscription's plan is not usage-based")
        now = datetime.now(UTC)
        when = body.occurred_at or now
        if when > now + USAGE_CLOCK_SKEW:
            raise InvalidDateError(
                "usage cannot be dated in the future", details={"field": "occurred_at"}
            )
        created = await repo.insert_usage(
            ctx.db,
            {
                "subscription_id": subscription_id,
                "key": body.idempotency_key,
                "quantity": body.quantity,
                "unit_price": row["price"],
                "tax_rate": row["tax_rate"],
                "occurred_at": when,
            },
        )
        if created is not None:
            return UsageRecord.model_validate(created), True
        # A concurrent report with the same key won the insert.
        existing = await repo.usage_by_key(ctx.db, body.idempotency_key)
        assert existing is not None
    same = existing["subscription_id"] == subscription_id and existing["quantity"] == body.quantity
    if body.occurred_at is not None and existing["occurred_at"] != body.occurred_at:
        same = False
    if not same:
        raise IdempotencyKeyReusedError(
            "this idempotency key was used for another usage report",
            details={"idempotency_key": body.idempotency_key},
        )
    return UsageRecord.model_validate(existing), False


async def list_usage(
    ctx: PluginContext, subscription_id: UUID, limit: int, offset: int
) -> Page[UsageRecord]:
    await _found(ctx, "billing_subscriptions", subscription_id, "subscription")
    rows, total = await repo.list_usage(ctx.db, subscription_id, limit, offset)
    return Page(
        items=[UsageRecord.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


# --- invoices --------------------------------------------------------------------------------


async def list_invoices(
    ctx: PluginContext, status: str | None, customer_id: UUID | None, limit: int, offset: int
) -> Page[Invoice]:
    rows, total = await repo.list_invoices(ctx.db, status, customer_id, limit, offset)
    return Page(
        items=[Invoice.model_validate({**r, "amount_due": _amount_due(r)}) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


async def _invoice(ctx: PluginContext, invoice_id: UUID, *, lock: bool = False) -> Invoice:
    row = await repo.get(ctx.db, "billing_invoices", invoice_id, lock=lock)
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
    invoice = await _add_lines(ctx, Invoice.model_validate(row), body.lines)
    await _published(ctx, INVOICE_CREATED, invoice)
    return invoice


async def add_lines(ctx: PluginContext, invoice_id: UUID, body: list[LineIn]) -> Invoice:
    invoice = await _invoice(ctx, invoice_id, lock=True)
    if invoice.status != "draft":
        raise InvoiceStateError(f"lines are added to drafts only; this invoice is {invoice.status}")
    updated = await _add_lines(ctx, invoice, body)
    await _published(ctx, INVOICE_UPDATED, updated)
    return updated


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
    closed = await _invoice(ctx, invoice_id)
    await _published(ctx, INVOICE_VOIDED if status == "void" else INVOICE_UNCOLLECTIBLE, closed)
    return closed


async def pay_invoice(ctx: PluginContext, invoice_id: UUID, body: PaymentIn) -> Payment:
    invoice = await _invoice(ctx, invoice_id, lock=True)
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
    await _published(ctx, INVOICE_PAID, await _invoice(ctx, invoice_id))
    return Payment.model_validate(payment)


# --- credit notes ----------------------------------------------------------------------------


async def credit_invoice(ctx: PluginContext, invoice_id: UUID, body: CreditNoteIn) -> CreditNote:
    """A credit note (ADR 0106): on an open invoice it lowers the amount due (settling the
    invoice when nothing is left), on a paid one it records a refund. Numbered in its own
    gap-free series."""
    invoice = await _invoice(ctx, invoice_id, lock=True)
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
        await _published(ctx, INVOICE_PAID, await _invoice(ctx, invoice_id))
    return note


async def list_credit_notes(ctx: PluginContext, limit: int, offset: int) -> Page[CreditNote]:
    rows, total = await repo.list_credit_notes(ctx.db, limit, offset)
    return Page(
        items=[CreditNote.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


async def list_payments(ctx: PluginContext, invoice_id: UUID) -> list[Payment]:
    await _invoice(ctx, invoice_id)
    return [Payment.model_validate(r) for r in await repo.payments(ctx.db, invoice_id)]


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
    next period, in this transaction. Billed periods leave the due set, so a second run finds
    nothing; concurrent runs skip each other's locked rows and share the numbering lock.
    Proration items and usage are attached to the invoice that bills them (ADR 0105)."""
    day = as_of or datetime.now(UTC).date()
    terms, numbers = _terms(ctx), []
    for row in await repo.end_trials(ctx.db, day):
        await _changed(ctx, Subscription.model_validate(row), "trial_ended")
    while batch := await repo.lock_due_subscriptions(ctx.db, day, RUN_BATCH):
        first = await repo.take_numbers(ctx.db, len(batch))
        pending, usage = await repo.unbilled_for(ctx.db, [sub["id"] for sub in batch])
        items_of: dict[UUID, list[dict[str, Any]]] = {}
        usage_of: dict[UUID, list[dict[str, Any]]] = {}
        for item in pending:
            items_of.setdefault(item["subscription_id"], []).append(item)
        for group in usage:
            usage_of.setdefault(group["subscription_id"], []).append(group)
        invoices, lines, periods = [], [], []
        billed_items, billed_usage = [], []
        for i, sub in enumerate(batch):
            sequence, invoice_id = first + i, uuid.uuid4()
            sub_items, sub_usage = items_of.get(sub["id"], []), usage_of.get(sub["id"], [])
            sub_lines = _period_lines(sub, sub_items, sub_usage)
            amount = sum((ln["amount"] for ln in sub_lines), Decimal(0))
            tax = sum((ln["tax"] for ln in sub_lines), Decimal(0))
            number = _number(ctx, sequence)
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
        await repo.insert_issued_invoices(ctx.db, invoices)
        await repo.insert_lines(ctx.db, lines)
        await repo.mark_billed(ctx.db, billed_items, billed_usage)
        await repo.advance_periods(ctx.db, periods)
    return InvoiceRun(as_of=day, issued=len(numbers), numbers=numbers)


async def scheduled_invoice_run(ctx: PluginContext, now: datetime) -> InvoiceRun:
    """The periodic job (ADR 0107): the invoice run as of the job's day, in UTC."""
    return await invoice_run(ctx, now.astimezone(UTC).date())


# --- CRM -------------------------------------------------------------------------------------


async def deal_won(ctx: PluginContext, event: Event) -> Invoice | None:
    """The customer of the deal's company (created or refreshed) and a draft invoice for the
    deal's amount; a redelivered event or an already invoiced deal changes nothing."""
    if not await repo.first_delivery(ctx.db, event, "billing.deal_won"):
        return None
    won = DealWon.of(event)
    deal_id, amount = won.deal_id, cents(won.amount)
    code = currency(won.currency, ctx)
    title = (won.title or f"Deal {deal_id}")[:200]
    name = (won.company_name or title)[:200]
    existing = await repo.invoice_by_deal(ctx.db, deal_id)
    customer = (
        await repo.upsert_crm_customer(ctx.db, won.company_id, name, code)
        if won.company_id
        else None
    )
    if existing is not None:
        return await _invoice(ctx, existing["id"])
    customer_id = (
        customer["id"]
        if customer is not None
        else (
            await _new_customer(
                ctx, {"name": name, "email": None, "currency": code, "crm_company_id": None}
            )
        ).id
    )
    row = await repo.insert_invoice(
        ctx.db, {"customer_id": customer_id, "currency": code, "crm_deal_id": deal_id}
    )
    line = LineIn(description=title, quantity=Decimal(1), unit_price=amount)
    invoice = await _add_lines(ctx, Invoice.model_validate(row), [line])
    await _published(ctx, INVOICE_CREATED, invoice)
    return invoice


# --- dashboard -------------------------------------------------------------------------------


async def metrics(ctx: PluginContext) -> Metrics:
    data = await repo.metrics(ctx.db)
    return Metrics(
        currency=currency(None, ctx),
        mrr={r["currency"]: cents(r["mrr"]) for r in data["mrr"]},
        open_invoices=sum(int(r["n"]) for r in data["open"]),
        open_amount={r["currency"]: cents(r["amount"]) for r in data["open"]},
    )
