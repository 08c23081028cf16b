"""Billing's subscriptions: their periods, plan and seat changes prorated by day (ADR 0104), and
the usage of metered plans."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from plexica_billing import subscription_repository as repo
from plexica_billing.money import cents
from plexica_billing.schemas import (
    BillingNotFoundError,
    CancellationScheduledError,
    CurrencyMismatchError,
    IdempotencyKeyReusedError,
    IntervalMismatchError,
    InvalidDateError,
    NotMeteredError,
    PendingItem,
    Subscription,
    SubscriptionChange,
    SubscriptionIn,
    SubscriptionStateError,
    UsageIn,
    UsageRecord,
)
from plexica_billing.service import SUBSCRIPTION_CHANGED, found, reference
from plexica_sdk.app import PluginContext
from plexica_sdk.pagination import Page, page_of

# How far ahead of the server's clock a usage report may be dated (clients' clocks drift).
USAGE_CLOCK_SKEW = timedelta(minutes=5)


# --- periods ---------------------------------------------------------------------------------


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


# --- subscriptions ---------------------------------------------------------------------------


async def list_subscriptions(
    ctx: PluginContext, status: str | None, customer_id: UUID | None, limit: int, offset: int
) -> Page[Subscription]:
    rows, total = await repo.list_subscriptions(ctx.db, status, customer_id, limit, offset)
    return page_of(Subscription, rows, total, limit, offset)


async def subscription_changed(
    ctx: PluginContext, sub: Subscription, change: str, **extra: Any
) -> None:
    await ctx.publish(
        SUBSCRIPTION_CHANGED,
        {
            "subscription_id": str(sub.id),
            "customer_id": str(sub.customer_id),
            "plan_id": str(sub.plan_id),
            "status": sub.status,
            "quantity": sub.quantity,
            "cancel_at_period_end": sub.cancel_at_period_end,
            "change": change,
            **extra,
        },
        subject=f"subscriptions/{sub.id}",
    )


async def create_subscription(ctx: PluginContext, body: SubscriptionIn) -> Subscription:
    await reference(ctx, "billing_customers", body.customer_id, "customer_id")
    plan = await reference(ctx, "billing_plans", body.plan_id, "plan_id")
    start = body.start or datetime.now(UTC).date()
    if body.trial_days:
        status, end = "trialing", start + timedelta(days=body.trial_days)
    else:
        status, end = "active", add_months(start, _period_months(plan["billing_interval"]))
    row = await repo.insert_subscription(
        ctx.db, {**body.model_dump(), "status": status, "start": start, "end": end}
    )
    sub = Subscription.model_validate(row)
    await subscription_changed(ctx, sub, "created")
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
    """Plan, seats, status or a cancellation at the period's end (ADR 0237). A plan or seat
    change of a billed (active, past-due) subscription is prorated by day: the period's invoice
    keeps the plan it started with and gets a credit for the unused part of the old plan and a
    charge for the rest of the period on the new one (ADR 0104)."""
    row = await repo.subscription_plan(ctx.db, subscription_id)
    if row is None:
        raise BillingNotFoundError("no such subscription")
    before = Subscription.model_validate(row)
    if before.status == "canceled":
        raise SubscriptionStateError("a canceled subscription cannot change")
    plan: dict[str, Any] = {**row, "id": row["plan_id"], "name": row["plan_name"]}
    ending = before.cancel_at_period_end
    if body.cancel_at_period_end is not None:
        ending = body.cancel_at_period_end
    if body.plan_id is not None and body.plan_id != before.plan_id:
        if ending:
            # Prorating a plan the subscription is leaving anyway is most likely a mistake: the
            # caller undoes the cancellation first, or in the same request (ADR 0237).
            raise CancellationScheduledError(
                "the subscription is canceled at the end of its period"
                f" ({before.current_period_end}): keep it (cancel_at_period_end: false) before"
                " changing its plan",
                details={"current_period_end": before.current_period_end.isoformat()},
            )
        plan = await reference(ctx, "billing_plans", body.plan_id, "plan_id")
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
            cancel_at_period_end=ending,
            keep_period=changes_price and billed,
        )
    )
    await repo.insert_items(ctx.db, items)
    if sub != before:
        change = "canceled" if sub.status == "canceled" else "updated"
        if sub.plan_id != before.plan_id:
            change = "plan_changed"
        await subscription_changed(
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
    await found(ctx, "billing_subscriptions", subscription_id, "subscription")
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
    await found(ctx, "billing_subscriptions", subscription_id, "subscription")
    rows, total = await repo.list_usage(ctx.db, subscription_id, limit, offset)
    return page_of(UsageRecord, rows, total, limit, offset)
