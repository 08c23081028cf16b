"""Billing logic shared by its parts (event types, settings and checks), customers and plans, and
the dashboard. Subscriptions and usage are in ``subscriptions``, invoices, payments and credit
notes in ``invoices``, the invoice run and CRM's won deals in ``invoicing``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from plexica_billing import repository as repo
from plexica_billing.money import cents, is_currency
from plexica_billing.schemas import (
    BillingNotFoundError,
    Customer,
    CustomerHasInvoicesError,
    CustomerIn,
    CustomerInUseError,
    CustomerPatch,
    DuplicateError,
    Metrics,
    Plan,
    PlanIn,
    PlanInUseError,
    PlanPatch,
    UnknownCurrencyError,
)
from plexica_sdk.app import PluginContext
from plexica_sdk.errors import UnknownReferenceError
from plexica_sdk.pagination import Page, page_of

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


# --- settings and checks ---------------------------------------------------------------------


def currency(code: str | None, ctx: PluginContext) -> str:
    value = (code or str(ctx.settings.get("default_currency", "EUR"))).upper()
    if not is_currency(value):
        raise UnknownCurrencyError(
            f"{value} is not an ISO 4217 currency", details={"currency": value}
        )
    return value


def default_tax_rate(ctx: PluginContext) -> Decimal:
    return Decimal(str(ctx.settings.get("tax_rate", "0")))


def payment_terms(ctx: PluginContext) -> int:
    return int(ctx.settings.get("payment_terms_days", 30))


def invoice_number(ctx: PluginContext, sequence: int) -> str:
    return f"{ctx.settings.get('invoice_prefix', 'INV-')}{sequence:06d}"


async def found(
    ctx: PluginContext, table: str, id_: UUID, what: str, *, lock: bool | str = False
) -> dict[str, Any]:
    row = await repo.get(ctx.db, table, id_, lock=lock)
    if row is None:
        raise BillingNotFoundError(f"no such {what}")
    return row


async def reference(ctx: PluginContext, table: str, id_: UUID, field: str) -> dict[str, Any]:
    # Key share: a customer or plan being removed is waited for, then it is unknown here.
    row = await repo.get(ctx.db, table, id_, lock="key share")
    if row is None:
        raise UnknownReferenceError(f"{field}: no such record", details={"field": field})
    return row


# --- customers and plans ---------------------------------------------------------------------


async def list_customers(
    ctx: PluginContext, q: str | None, limit: int, offset: int
) -> Page[Customer]:
    rows, total = await repo.list_customers(ctx.db, q, limit, offset)
    return page_of(Customer, rows, total, limit, offset)


async def create_customer(ctx: PluginContext, body: CustomerIn) -> Customer:
    values = {**body.model_dump(), "currency": currency(body.currency, ctx)}
    return await new_customer(ctx, values)


async def new_customer(ctx: PluginContext, values: dict[str, Any]) -> Customer:
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
    return Customer.model_validate(await found(ctx, "billing_customers", customer_id, "customer"))


async def update_customer(ctx: PluginContext, customer_id: UUID, body: CustomerPatch) -> Customer:
    """The fields given, under the customer's row lock: parallel changes apply one after the
    other and each event's ``from`` is what its change really replaced (ADR 0223)."""
    before = await found(ctx, "billing_customers", customer_id, "customer", lock="update")
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
    customer = await found(ctx, "billing_customers", customer_id, "customer", lock="update")
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
    return page_of(Plan, rows, total, limit, offset)


async def create_plan(ctx: PluginContext, body: PlanIn) -> Plan:
    values = {
        **body.model_dump(),
        "currency": currency(body.currency, ctx),
        "tax_rate": default_tax_rate(ctx) if body.tax_rate is None else body.tax_rate,
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
    before = await found(ctx, "billing_plans", plan_id, "plan", lock="no key update")
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
    plan = await found(ctx, "billing_plans", plan_id, "plan", lock="update")
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


# --- dashboard -------------------------------------------------------------------------------


async def metrics(ctx: PluginContext) -> Metrics:
    data = await repo.metrics(ctx.db)
    return Metrics(
        currency=currency(None, ctx),
        mrr={r["currency"]: cents(r["mrr"]) for r in data["mrr"]},
        open_invoices=sum(int(r["n"]) for r in data["open"]),
        open_amount={r["currency"]: cents(r["amount"]) for r in data["open"]},
    )
