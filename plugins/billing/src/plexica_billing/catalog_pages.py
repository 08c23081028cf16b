"""Billing's pages of customers, plans and subscriptions: lists with the forms that create,
change and delete them (see ``pages``)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from plexica_billing import forms, service
from plexica_billing import subscriptions as subscription_service
from plexica_billing.api import (
    CustomerRead,
    CustomerWrite,
    Offset,
    PlanRead,
    PlanWrite,
    SubRead,
    SubWrite,
)
from plexica_billing.forms import CHOICES, Done, RefusedError, parse, submit
from plexica_billing.schemas import (
    CustomerIn,
    CustomerPatch,
    PlanIn,
    PlanPatch,
    SubscriptionChange,
    SubscriptionIn,
)
from plexica_sdk.app import FragmentsDep, PluginContext
from plexica_sdk.pagination import Search
from plexica_sdk.ui import filled, form_fields, page_size


def catalog_routes(router: APIRouter) -> None:
    customer_routes(router)
    plan_routes(router)
    subscription_routes(router)


def customer_routes(router: APIRouter) -> None:

    async def customer_list(
        ctx: PluginContext,
        ui: FragmentsDep,
        q: str | None,
        offset: int,
        *,
        done: str = "",
        form: dict[str, str] | None = None,
        refused: RefusedError | None = None,
    ) -> HTMLResponse:
        limit = page_size(ctx.settings)
        found = await service.list_customers(ctx, q, limit, offset)
        return forms.page(
            ui, "customers.html", refused, "new-customer", form, page=found, q=q or "",
            can_write=ctx.has("billing:customer:write"), done=done,
        )  # fmt: skip

    @router.get("/customers", response_class=HTMLResponse)
    async def customers_page(
        ctx: CustomerRead, ui: FragmentsDep, q: Search = None, offset: Offset = 0, done: Done = ""
    ) -> HTMLResponse:
        return await customer_list(ctx, ui, q, offset, done=done)

    @router.post("/customers", response_class=HTMLResponse)
    async def add_customer(request: Request, ctx: CustomerWrite, ui: FragmentsDep) -> Response:
        form = await form_fields(request)

        async def create() -> object:
            body = parse(CustomerIn, filled(form, ("name", "email", "currency")))
            return await service.create_customer(ctx, body)

        return await submit(
            ctx,
            create,
            "ui/customers?done=added",
            lambda refused: customer_list(ctx, ui, None, 0, form=form, refused=refused),
        )

    async def customer_view(
        ctx: PluginContext,
        ui: FragmentsDep,
        customer_id: UUID,
        *,
        action: str = "",
        form: dict[str, str] | None = None,
        refused: RefusedError | None = None,
        done: str = "",
    ) -> HTMLResponse:
        customer = await service.get_customer(ctx, customer_id)
        return forms.page(
            ui, "customer.html", refused, action, form, customer=customer,
            can_write=ctx.has("billing:customer:write"), done=done,
        )  # fmt: skip

    @router.get("/customers/{customer_id}", response_class=HTMLResponse)
    async def customer_page(
        customer_id: UUID, ctx: CustomerRead, ui: FragmentsDep, done: Done = ""
    ) -> HTMLResponse:
        return await customer_view(ctx, ui, customer_id, done=done)

    @router.post("/customers/{customer_id}", response_class=HTMLResponse)
    async def edit_customer(
        customer_id: UUID, request: Request, ctx: CustomerWrite, ui: FragmentsDep
    ) -> Response:
        form = await form_fields(request)

        async def save() -> object:
            # The whole form: an empty e-mail clears it, a field as it was changes nothing.
            values = {k: form.get(k, "") for k in ("name", "currency")}
            body = parse(CustomerPatch, {**values, "email": form.get("email") or None})
            return await service.update_customer(ctx, customer_id, body)

        return await submit(
            ctx,
            save,
            f"ui/customers/{customer_id}?done=saved",
            lambda refused: customer_view(
                ctx, ui, customer_id, action="customer", form=form, refused=refused
            ),
        )

    @router.get("/customers/{customer_id}/delete", response_class=HTMLResponse)
    async def confirm_delete_customer(
        customer_id: UUID, ctx: CustomerWrite, ui: FragmentsDep
    ) -> HTMLResponse:
        return await customer_view(ctx, ui, customer_id, action="confirm")

    @router.post("/customers/{customer_id}/delete", response_class=HTMLResponse)
    async def delete_customer(customer_id: UUID, ctx: CustomerWrite, ui: FragmentsDep) -> Response:
        return await submit(
            ctx,
            lambda: service.delete_customer(ctx, customer_id),
            "ui/customers?done=deleted",
            lambda refused: customer_view(
                ctx, ui, customer_id, action="delete-customer", refused=refused
            ),
        )


def plan_routes(router: APIRouter) -> None:

    async def plan_list(
        ctx: PluginContext,
        ui: FragmentsDep,
        *,
        done: str = "",
        action: str = "",
        target: UUID | None = None,
        form: dict[str, str] | None = None,
        refused: RefusedError | None = None,
    ) -> HTMLResponse:
        return forms.page(
            ui, "plans.html", refused, action, form, page=await service.list_plans(ctx, CHOICES, 0),
            can_write=ctx.has("billing:plan:write"), target=target, done=done,
        )  # fmt: skip

    @router.get("/plans", response_class=HTMLResponse)
    async def plans_page(ctx: PlanRead, ui: FragmentsDep, done: Done = "") -> HTMLResponse:
        return await plan_list(ctx, ui, done=done)

    @router.post("/plans", response_class=HTMLResponse)
    async def add_plan(request: Request, ctx: PlanWrite, ui: FragmentsDep) -> Response:
        form = await form_fields(request)
        names = ("code", "name", "pricing", "billing_interval", "price", "currency", "tax_rate")

        async def create() -> object:
            return await service.create_plan(ctx, parse(PlanIn, filled(form, names)))

        return await submit(
            ctx,
            create,
            "ui/plans?done=added",
            lambda refused: plan_list(ctx, ui, action="new-plan", form=form, refused=refused),
        )

    @router.post("/plans/{plan_id}", response_class=HTMLResponse)
    async def edit_plan(
        plan_id: UUID, request: Request, ctx: PlanWrite, ui: FragmentsDep
    ) -> Response:
        form = await form_fields(request)

        async def save() -> object:
            body = parse(PlanPatch, {k: form.get(k, "") for k in ("name", "price")})
            return await service.update_plan(ctx, plan_id, body)

        return await submit(
            ctx,
            save,
            "ui/plans?done=saved",
            lambda refused: plan_list(
                ctx, ui, action="plan", target=plan_id, form=form, refused=refused
            ),
        )

    @router.get("/plans/{plan_id}/delete", response_class=HTMLResponse)
    async def confirm_delete_plan(plan_id: UUID, ctx: PlanWrite, ui: FragmentsDep) -> Response:
        return await plan_list(ctx, ui, action="confirm", target=plan_id)

    @router.post("/plans/{plan_id}/delete", response_class=HTMLResponse)
    async def delete_plan(plan_id: UUID, ctx: PlanWrite, ui: FragmentsDep) -> Response:
        return await submit(
            ctx,
            lambda: service.delete_plan(ctx, plan_id),
            "ui/plans?done=deleted",
            lambda refused: plan_list(
                ctx, ui, action="delete-plan", target=plan_id, refused=refused
            ),
        )


def subscription_routes(router: APIRouter) -> None:

    async def subscription_list(
        ctx: PluginContext,
        ui: FragmentsDep,
        offset: int,
        *,
        done: str = "",
        action: str = "",
        target: UUID | None = None,
        form: dict[str, str] | None = None,
        refused: RefusedError | None = None,
    ) -> HTMLResponse:
        limit = page_size(ctx.settings)
        found = await subscription_service.list_subscriptions(ctx, None, None, limit, offset)
        readable = ctx.has("billing:customer:read") and ctx.has("billing:plan:read")
        customers = (await service.list_customers(ctx, None, CHOICES, 0)).items if readable else []
        plans = (await service.list_plans(ctx, CHOICES, 0)).items if readable else []
        return forms.page(
            ui, "subscriptions.html", refused, action, form, page=found,
            customers={c.id: c for c in customers}, plans={p.id: p for p in plans},
            can_write=readable and ctx.has("billing:subscription:write"), target=target,
            done=done,
        )  # fmt: skip

    @router.get("/subscriptions", response_class=HTMLResponse)
    async def subscriptions_page(
        ctx: SubRead, ui: FragmentsDep, offset: Offset = 0, done: Done = ""
    ) -> HTMLResponse:
        return await subscription_list(ctx, ui, offset, done=done)

    @router.post("/subscriptions", response_class=HTMLResponse)
    async def start_subscription(request: Request, ctx: SubWrite, ui: FragmentsDep) -> Response:
        form = await form_fields(request)
        names = ("customer_id", "plan_id", "quantity", "trial_days")

        async def start() -> object:
            body = parse(SubscriptionIn, filled(form, names))
            return await subscription_service.create_subscription(ctx, body)

        return await submit(
            ctx,
            start,
            "ui/subscriptions?done=started",
            lambda refused: subscription_list(
                ctx, ui, 0, action="new-subscription", form=form, refused=refused
            ),
        )

    @router.post("/subscriptions/{subscription_id}", response_class=HTMLResponse)
    async def change_subscription(
        subscription_id: UUID, request: Request, ctx: SubWrite, ui: FragmentsDep
    ) -> Response:
        form = await form_fields(request)

        async def change() -> object:
            body = parse(SubscriptionChange, filled(form, ("plan_id", "quantity", "effective")))
            return await subscription_service.change_subscription(ctx, subscription_id, body)

        return await submit(
            ctx,
            change,
            "ui/subscriptions?done=changed",
            lambda refused: subscription_list(
                ctx,
                ui,
                0,
                action="subscription",
                target=subscription_id,
                form=form,
                refused=refused,
            ),
        )

    async def set_subscription(
        ctx: PluginContext,
        ui: FragmentsDep,
        subscription_id: UUID,
        body: SubscriptionChange,
        done: str,
    ) -> Response:
        return await submit(
            ctx,
            lambda: subscription_service.change_subscription(ctx, subscription_id, body),
            f"ui/subscriptions?done={done}",
            lambda refused: subscription_list(
                ctx, ui, 0, action="subscription", target=subscription_id, refused=refused
            ),
        )

    @router.post("/subscriptions/{subscription_id}/cancel", response_class=HTMLResponse)
    async def cancel_subscription(
        subscription_id: UUID, ctx: SubWrite, ui: FragmentsDep
    ) -> Response:
        body = SubscriptionChange(status="canceled")
        return await set_subscription(ctx, ui, subscription_id, body, "canceled")

    @router.post(
        "/subscriptions/{subscription_id}/cancel-at-period-end", response_class=HTMLResponse
    )
    async def cancel_at_period_end(
        subscription_id: UUID, ctx: SubWrite, ui: FragmentsDep
    ) -> Response:
        body = SubscriptionChange(cancel_at_period_end=True)
        return await set_subscription(ctx, ui, subscription_id, body, "ending")

    @router.post("/subscriptions/{subscription_id}/keep", response_class=HTMLResponse)
    async def keep_subscription(subscription_id: UUID, ctx: SubWrite, ui: FragmentsDep) -> Response:
        body = SubscriptionChange(cancel_at_period_end=False)
        return await set_subscription(ctx, ui, subscription_id, body, "kept")
