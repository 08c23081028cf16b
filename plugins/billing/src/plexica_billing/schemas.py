"""Request and response models of the Billing API, and its errors."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from plexica_sdk.errors import ConflictError, NotFoundError, PlexicaError

T = TypeVar("T")

Currency = Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")]
Money = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2, allow_inf_nan=False)]
Rate = Annotated[Decimal, Field(ge=0, le=100, max_digits=5, decimal_places=2, allow_inf_nan=False)]
SubscriptionStatus = Literal["trialing", "active", "past_due", "canceled"]
InvoiceStatus = Literal["draft", "open", "paid", "void", "uncollectible"]


class CustomerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    currency: Currency | None = None
    crm_company_id: UUID | None = None


def _patch_schema(*required_values: str) -> Any:
    """A PATCH body's JSON Schema: at least one field, and ``null`` only where it clears."""

    def edit(schema: dict[str, Any]) -> None:
        schema["minProperties"] = 1
        for name in required_values:
            prop = schema["properties"][name]
            kinds = [k for k in prop.pop("anyOf", []) if k.get("type") != "null"]
            if len(kinds) == 1:
                prop.update(kinds[0])
            elif kinds:
                prop["anyOf"] = kinds
            prop.pop("default", None)

    return edit


class _Patch(BaseModel):
    """Only the fields given change; ``null`` clears a field of ``clearable`` and is refused
    for the others."""

    clearable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _given(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        for name in sorted(self.model_fields_set - self.clearable):
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class CustomerPatch(_Patch):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_patch_schema("name", "currency"))
    clearable = frozenset({"email", "crm_company_id"})
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    # Only while the customer has no invoices: an invoice keeps the currency it was made in.
    currency: Currency | None = None
    crm_company_id: UUID | None = None


class Customer(BaseModel):
    id: UUID
    name: str
    email: str | None
    currency: str
    crm_company_id: UUID | None
    created_at: datetime


class PlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    name: str = Field(min_length=1, max_length=200)
    pricing: Literal["flat", "per_seat", "usage"] = "flat"
    billing_interval: Literal["month", "year"] = "month"
    # For usage plans: the price of one usage unit.
    price: Money
    currency: Currency | None = None
    tax_rate: Rate | None = None


class PlanPatch(_Patch):
    """Name and price; the code, pricing, interval, currency and tax rate are what subscriptions
    and their invoices are built on: a different one is a new plan."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_patch_schema("name", "price"))
    name: str | None = Field(default=None, min_length=1, max_length=200)
    # From each subscription's next period on; the current period keeps the price it began with.
    price: Money | None = None


class Plan(BaseModel):
    id: UUID
    code: str
    name: str
    pricing: str
    billing_interval: str
    price: Decimal
    currency: str
    tax_rate: Decimal


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: UUID
    plan_id: UUID
    quantity: int = Field(default=1, ge=1, le=1_000_000)
    start: date | None = None
    trial_days: int = Field(default=0, ge=0, le=365)


class SubscriptionChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan_id: UUID | None = None
    quantity: int | None = Field(default=None, ge=1, le=1_000_000)
    status: Literal["active", "past_due", "canceled"] | None = None
    # The day a plan or seat change takes effect, within the current period (default: today).
    effective: date | None = None
    # True: canceled by the invoice run that bills the current period; false undoes that.
    cancel_at_period_end: bool | None = None


class Subscription(BaseModel):
    id: UUID
    customer_id: UUID
    plan_id: UUID
    status: SubscriptionStatus
    quantity: int
    current_period_start: date
    current_period_end: date
    canceled_at: datetime | None
    cancel_at_period_end: bool


class PendingItem(BaseModel):
    """A proration item waiting for the invoice of its subscription's period."""

    id: UUID
    description: str
    amount: Decimal
    tax_rate: Decimal
    invoice_id: UUID | None
    created_at: datetime


class UsageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    idempotency_key: str = Field(min_length=1, max_length=200)
    quantity: Decimal = Field(ge=0, max_digits=12, decimal_places=2, allow_inf_nan=False)
    occurred_at: AwareDatetime | None = None


class UsageRecord(BaseModel):
    id: UUID
    subscription_id: UUID
    idempotency_key: str
    quantity: Decimal
    unit_price: Decimal
    occurred_at: datetime
    invoice_id: UUID | None
    created_at: datetime


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field(min_length=1, max_length=500)
    quantity: Decimal = Field(
        default=Decimal(1), gt=0, max_digits=12, decimal_places=2, allow_inf_nan=False
    )
    unit_price: Money
    currency: Currency | None = None
    tax_rate: Rate | None = None


class InvoiceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: UUID
    currency: Currency | None = None
    lines: list[LineIn] = Field(default_factory=list, max_length=500)


class Line(BaseModel):
    id: UUID
    position: int
    kind: Literal["charge", "proration", "usage"] = "charge"
    description: str
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal
    amount: Decimal
    tax: Decimal


class CreditNoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Annotated[Decimal, Field(gt=0, max_digits=14, decimal_places=2, allow_inf_nan=False)]
    reason: str = Field(min_length=1, max_length=500)


class CreditNote(BaseModel):
    id: UUID
    invoice_id: UUID
    number: str
    kind: Literal["credit", "refund"]
    amount: Decimal
    tax: Decimal
    currency: str
    reason: str
    created_at: datetime


class Invoice(BaseModel):
    id: UUID
    customer_id: UUID
    subscription_id: UUID | None
    crm_deal_id: UUID | None
    period_start: date | None
    period_end: date | None
    status: InvoiceStatus
    number: str | None
    currency: str
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    issued_at: datetime | None
    due_at: datetime | None
    paid_at: datetime | None
    created_at: datetime
    credited: Decimal = Decimal(0)
    # What the customer still owes: an open invoice's total less its credit notes.
    amount_due: Decimal = Decimal(0)
    lines: list[Line] = Field(default_factory=list)
    # Filled on single-invoice reads only.
    credit_notes: list[CreditNote] = Field(default_factory=list)


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Money
    currency: Currency | None = None
    provider: str = Field(default="bank_transfer", max_length=40)
    reference: str = Field(default="", max_length=200)


class Payment(BaseModel):
    id: UUID
    invoice_id: UUID
    amount: Decimal
    currency: str
    provider: str
    reference: str
    created_at: datetime


class InvoiceRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    as_of: date | None = None


class InvoiceRun(BaseModel):
    as_of: date
    issued: int
    numbers: list[str]


class Metrics(BaseModel):
    currency: str
    mrr: dict[str, Decimal]
    open_invoices: int
    open_amount: dict[str, Decimal]


class BillingNotFoundError(NotFoundError):
    pass


class UnknownCurrencyError(PlexicaError):
    status, code = 422, "unknown_currency"


class CurrencyMismatchError(PlexicaError):
    status, code = 422, "currency_mismatch"


class InvalidAmountError(PlexicaError):
    status, code = 422, "invalid_amount"


class UnknownProviderError(PlexicaError):
    status, code = 422, "unknown_payment_provider"


class OverCreditError(PlexicaError):
    status, code = 422, "credit_exceeds_invoice"


class IntervalMismatchError(PlexicaError):
    status, code = 422, "billing_interval_mismatch"


class InvalidDateError(PlexicaError):
    status, code = 422, "invalid_date"


class NotMeteredError(PlexicaError):
    status, code = 422, "plan_not_metered"


class IdempotencyKeyReusedError(ConflictError):
    code = "idempotency_key_reused"


class InvoiceStateError(ConflictError):
    code = "invalid_invoice_state"


class AlreadyPaidError(ConflictError):
    code = "invoice_already_paid"


class SubscriptionStateError(ConflictError):
    code = "invalid_subscription_state"


class CancellationScheduledError(ConflictError):
    code = "cancellation_scheduled"


class CustomerInUseError(ConflictError):
    code = "customer_in_use"


class CustomerHasInvoicesError(ConflictError):
    code = "customer_has_invoices"


class PlanInUseError(ConflictError):
    code = "plan_in_use"


class DuplicateError(ConflictError):
    code = "already_exists"
