"""Typed data of the core's and the shipped plugins' events, for their consumers.

Each model matches the JSON Schema its emitter declares (a plugin's manifest ``events.emits``,
the core's schema registry); ``tests/unit/test_event_models.py`` holds the two together. A
consumer reads ``DealWon.of(event)`` instead of keys of a dict, or ``parse(event)`` to dispatch
on the type. A breaking change of an event's data is a new schema version and a new model here.
"""

from __future__ import annotations

from plexica_sdk.contracts import billing, core, crm
from plexica_sdk.contracts.base import (
    Amount,
    Change,
    Changes,
    Currency,
    EventData,
    EventModel,
    SignedAmount,
)
from plexica_sdk.contracts.billing import (
    BillingInterval,
    CreditNoteIssued,
    CreditNoteKind,
    CustomerChanges,
    CustomerCreated,
    CustomerDeleted,
    CustomerUpdated,
    InvoiceCreated,
    InvoiceIssued,
    InvoiceMarkedUncollectible,
    InvoicePaid,
    InvoiceUpdated,
    InvoiceVoided,
    PlanChanges,
    PlanCreated,
    PlanDeleted,
    PlanUpdated,
    Pricing,
    ProrationLine,
    SubscriptionChange,
    SubscriptionChanged,
)
from plexica_sdk.contracts.core import (
    PluginDisabled,
    PluginEnabled,
    PluginInstalled,
    PluginUninstalled,
    TenantDeleted,
    TenantFailed,
    TenantProvisioned,
    TenantReactivated,
    TenantSuspended,
    UserInviteAccepted,
    UserInvited,
    UserInviteResent,
    UserInviteRevoked,
    UserRoleChanged,
)
from plexica_sdk.contracts.crm import (
    ActivityCompleted,
    ActivityCreated,
    CompanyChanges,
    CompanyCreated,
    CompanyDeleted,
    CompanyRestored,
    CompanyUpdated,
    ContactChanges,
    ContactCreated,
    ContactDeleted,
    ContactRestored,
    ContactUpdated,
    DealChanges,
    DealCreated,
    DealDeleted,
    DealRestored,
    DealStageChanged,
    DealUpdated,
    DealWon,
)
from plexica_sdk.events import Event, InvalidEventError

MODELS: dict[str, type[EventData]] = {
    model.event_type: model for model in (*core.MODELS, *crm.MODELS, *billing.MODELS)
}


def model_for(event_type: str) -> type[EventData] | None:
    """The model of an event type, None for a type without one (e.g. another plugin's)."""
    return MODELS.get(event_type)


def parse(event: Event) -> EventData:
    """The typed data of ``event``; raises InvalidEventError for a type without a model or data
    that does not fit its model."""
    model = model_for(event.type)
    if model is None:
        raise InvalidEventError(f"no model for event type {event.type!r}")
    return model.of(event)


__all__ = [
    "MODELS",
    "ActivityCompleted",
    "ActivityCreated",
    "Amount",
    "BillingInterval",
    "Change",
    "Changes",
    "CompanyChanges",
    "CompanyCreated",
    "CompanyDeleted",
    "CompanyRestored",
    "CompanyUpdated",
    "ContactChanges",
    "ContactCreated",
    "ContactDeleted",
    "ContactRestored",
    "ContactUpdated",
    "CreditNoteIssued",
    "CreditNoteKind",
    "Currency",
    "CustomerChanges",
    "CustomerCreated",
    "CustomerDeleted",
    "CustomerUpdated",
    "DealChanges",
    "DealCreated",
    "DealDeleted",
    "DealRestored",
    "DealStageChanged",
    "DealUpdated",
    "DealWon",
    "EventData",
    "EventModel",
    "InvoiceCreated",
    "InvoiceIssued",
    "InvoiceMarkedUncollectible",
    "InvoicePaid",
    "InvoiceUpdated",
    "InvoiceVoided",
    "PlanChanges",
    "PlanCreated",
    "PlanDeleted",
    "PlanUpdated",
    "PluginDisabled",
    "PluginEnabled",
    "PluginInstalled",
    "PluginUninstalled",
    "Pricing",
    "ProrationLine",
    "SignedAmount",
    "SubscriptionChange",
    "SubscriptionChanged",
    "TenantDeleted",
    "TenantFailed",
    "TenantProvisioned",
    "TenantReactivated",
    "TenantSuspended",
    "UserInviteAccepted",
    "UserInviteResent",
    "UserInviteRevoked",
    "UserInvited",
    "UserRoleChanged",
    "model_for",
    "parse",
]
