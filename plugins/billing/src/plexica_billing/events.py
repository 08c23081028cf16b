"""Billing's event handlers: run outside a request, in the event's tenant, as the plugin."""

from __future__ import annotations

from collections.abc import Callable

from plexica_billing import invoicing, service
from plexica_billing import repository as repo
from plexica_billing.schemas import Invoice
from plexica_sdk.app import PluginContext
from plexica_sdk.context import Principal
from plexica_sdk.db import NotInstalledError, PluginDatabase, installation_function, plugin_role
from plexica_sdk.events import Event, EventBus

PLUGIN_ID = "billing"
DEAL_WON = "crm.deal.won"


async def handle_deal_won(db: PluginDatabase, event: Event) -> Invoice | None:
    if event.tenant_id is None:
        return None
    async with db.sessions() as session, session.begin():
        schema = await repo.tenant_schema_of(
            session, plugin_role(PLUGIN_ID, event.tenant_id), installation_function(PLUGIN_ID)
        )
    if schema is None:
        raise NotInstalledError
    slug = schema.removeprefix("tenant_")
    async with db.tenant_session(event.tenant_id, slug) as (session, installation):
        ctx = PluginContext(
            Principal(subject=f"event:{event.id}", issuer=event.source),
            event.tenant_id, slug, frozenset(), installation, session, PLUGIN_ID,
        )  # fmt: skip
        return await invoicing.deal_won(ctx, event)


def event_bus(db: Callable[[], PluginDatabase | None]) -> EventBus:
    """Handlers and declared events; ``db`` gives the runtime's database once it is started."""
    bus = EventBus(PLUGIN_ID)
    for event_type in (
        service.CUSTOMER_CREATED,
        service.CUSTOMER_UPDATED,
        service.CUSTOMER_DELETED,
        service.PLAN_CREATED,
        service.PLAN_UPDATED,
        service.PLAN_DELETED,
        service.INVOICE_CREATED,
        service.INVOICE_UPDATED,
        service.INVOICE_VOIDED,
        service.INVOICE_UNCOLLECTIBLE,
        service.INVOICE_ISSUED,
        service.INVOICE_PAID,
        service.SUBSCRIPTION_CHANGED,
        service.CREDIT_NOTE_ISSUED,
    ):
        bus.emits(event_type)

    @bus.subscribe(DEAL_WON)
    async def on_deal_won(event: Event) -> None:
        database = db()
        if database is None:
            raise RuntimeError("billing has no database configured")
        await handle_deal_won(database, event)

    return bus
