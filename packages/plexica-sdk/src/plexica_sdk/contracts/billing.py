"""Billing's events (``source: /plugins/billing``), as ``plugins/billing/plexica-plugin.yaml``
declares."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from plexica_sdk.contracts.base import (
    Amount,
    Change,
    Changes,
    Currency,
    EventData,
    EventModel,
    SignedAmount,
)

Pricing = Literal["flat", "per_seat", "usage"]
BillingInterval = Literal["month", "year"]
SubscriptionChange = Literal["created", "updated", "plan_changed", "canceled", "trial_ended"]
CreditNoteKind = Literal["credit", "refund"]


class CustomerCreated(EventData):
    event_type: ClassVar[str] = "billing.customer.created"
    customer_id: UUID
    name: str
    currency: Currency
    crm_company_id: UUID | None


class CustomerChanges(Changes):
    name: Change[str] | None = None
    email: Change[str | None] | None = None
    currency: Change[Currency] | None = None
    crm_company_id: Change[UUID | None] | None = None


class CustomerUpdated(EventData):
    event_type: ClassVar[str] = "billing.customer.updated"
    customer_id: UUID
    changes: CustomerChanges
    updated_by: str


class CustomerDeleted(EventData):
    event_type: ClassVar[str] = "billing.customer.deleted"
    customer_id: UUID
    name: str
    crm_company_id: UUID | None
    deleted_by: str


class PlanCreated(EventData):
    event_type: ClassVar[str] = "billing.plan.created"
    plan_id: UUID
    code: str
    pricing: Pricing
    billing_interval: BillingInterval
    price: Amount
    currency: Currency


class PlanChanges(Changes):
    """A new price bills from each subscription's next period on."""

    name: Change[str] | None = None
    price: Change[Amount] | None = None


class PlanUpdated(EventData):
    event_type: ClassVar[str] = "billing.plan.updated"
    plan_id: UUID
    code: str
    changes: PlanChanges
    updated_by: str


class PlanDeleted(EventData):
    event_type: ClassVar[str] = "billing.plan.deleted"
    plan_id: UUID
    code: str
    deleted_by: str


class _DraftInvoice(EventData):
    invoice_id: UUID
    number: str | None
    customer_id: UUID
    currency: Currency
    total: SignedAmount


class InvoiceCreated(_DraftInvoice):
    event_type: ClassVar[str] = "billing.invoice.created"


class InvoiceUpdated(_DraftInvoice):
    event_type: ClassVar[str] = "billing.invoice.updated"


class InvoiceVoided(_DraftInvoice):
    event_type: ClassVar[str] = "billing.invoice.voided"


class InvoiceMarkedUncollectible(_DraftInvoice):
    event_type: ClassVar[str] = "billing.invoice.marked_uncollectible"


class _Invoice(EventData):
    invoice_id: UUID
    number: str
    customer_id: UUID
    subscription_id: UUID | None = None
    currency: Currency
    total: SignedAmount


class InvoiceIssued(_Invoice):
    event_type: ClassVar[str] = "billing.invoice.issued"


class InvoicePaid(_Invoice):
    event_type: ClassVar[str] = "billing.invoice.paid"


class ProrationLine(EventModel):
    description: str
    # Declared without a pattern: any string.
    amount: str


class SubscriptionChanged(EventData):
    event_type: ClassVar[str] = "billing.subscription.changed"
    subscription_id: UUID
    customer_id: UUID
    plan_id: UUID
    previous_plan_id: UUID | None = None
    status: str
    quantity: int = Field(ge=0)
    cancel_at_period_end: bool | None = None
    change: SubscriptionChange
    proration: tuple[ProrationLine, ...] | None = None


class CreditNoteIssued(EventData):
    event_type: ClassVar[str] = "billing.credit_note.issued"
    credit_note_id: UUID
    number: str
    invoice_id: UUID
    invoice_number: str
    kind: CreditNoteKind
    amount: Amount
    currency: Currency


MODELS: tuple[type[EventData], ...] = (
    CustomerCreated,
    CustomerUpdated,
    CustomerDeleted,
    PlanCreated,
    PlanUpdated,
    PlanDeleted,
    InvoiceCreated,
    InvoiceUpdated,
    InvoiceVoided,
    InvoiceMarkedUncollectible,
    InvoiceIssued,
    InvoicePaid,
    SubscriptionChanged,
    CreditNoteIssued,
)
