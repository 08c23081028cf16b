"""The CRM's events (``source: /plugins/crm``), as ``plugins/crm/plexica-plugin.yaml`` declares."""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from pydantic import Field

from plexica_sdk.contracts.base import Amount, Change, Changes, Currency, EventData


class CompanyCreated(EventData):
    event_type: ClassVar[str] = "crm.company.created"
    company_id: UUID
    name: str
    domain: str | None
    created_by: str


class CompanyChanges(Changes):
    name: Change[str] | None = None
    domain: Change[str | None] | None = None


class CompanyUpdated(EventData):
    event_type: ClassVar[str] = "crm.company.updated"
    company_id: UUID
    changes: CompanyChanges
    updated_by: str


class CompanyDeleted(EventData):
    event_type: ClassVar[str] = "crm.company.deleted"
    company_id: UUID
    deleted_by: str


class CompanyRestored(EventData):
    """Out of the trash (ADR 0236): the record and the links to it are back."""

    event_type: ClassVar[str] = "crm.company.restored"
    company_id: UUID
    restored_by: str


class ContactCreated(EventData):
    event_type: ClassVar[str] = "crm.contact.created"
    contact_id: UUID
    email: str | None
    created_by: str


class ContactChanges(Changes):
    first_name: Change[str] | None = None
    last_name: Change[str] | None = None
    email: Change[str | None] | None = None
    phone: Change[str | None] | None = None
    company_id: Change[UUID | None] | None = None


class ContactUpdated(EventData):
    event_type: ClassVar[str] = "crm.contact.updated"
    contact_id: UUID
    changes: ContactChanges
    updated_by: str


class ContactDeleted(EventData):
    event_type: ClassVar[str] = "crm.contact.deleted"
    contact_id: UUID
    deleted_by: str


class ContactRestored(EventData):
    """Out of the trash (ADR 0236): the record and the links to it are back."""

    event_type: ClassVar[str] = "crm.contact.restored"
    contact_id: UUID
    restored_by: str


class DealCreated(EventData):
    event_type: ClassVar[str] = "crm.deal.created"
    deal_id: UUID
    title: str
    amount: Amount
    currency: Currency
    stage_id: str
    company_id: UUID | None
    contact_id: UUID | None
    created_by: str


class DealChanges(Changes):
    """Never the stage: moves are ``crm.deal.stage_changed``."""

    title: Change[str] | None = None
    amount: Change[Amount] | None = None
    currency: Change[Currency] | None = None
    company_id: Change[UUID | None] | None = None
    contact_id: Change[UUID | None] | None = None


class DealUpdated(EventData):
    event_type: ClassVar[str] = "crm.deal.updated"
    deal_id: UUID
    changes: DealChanges
    updated_by: str


class DealDeleted(EventData):
    event_type: ClassVar[str] = "crm.deal.deleted"
    deal_id: UUID
    deleted_by: str


class DealRestored(EventData):
    """Out of the trash (ADR 0236): the record and the links to it are back."""

    event_type: ClassVar[str] = "crm.deal.restored"
    deal_id: UUID
    restored_by: str


class DealStageChanged(EventData):
    event_type: ClassVar[str] = "crm.deal.stage_changed"
    deal_id: UUID
    from_: str = Field(alias="from")
    to: str


class DealWon(EventData):
    """``crm.deal.won``: a deal entered a won stage, once per deal."""

    event_type: ClassVar[str] = "crm.deal.won"
    deal_id: UUID
    amount: Amount
    currency: Currency
    title: str
    company_id: UUID | None
    company_name: str | None


class _Activity(EventData):
    activity_id: UUID
    kind: str
    subject: str
    contact_id: UUID | None
    deal_id: UUID | None
    done: bool


class ActivityCreated(_Activity):
    event_type: ClassVar[str] = "crm.activity.created"


class ActivityCompleted(_Activity):
    event_type: ClassVar[str] = "crm.activity.completed"


MODELS: tuple[type[EventData], ...] = (
    CompanyCreated,
    CompanyUpdated,
    CompanyDeleted,
    CompanyRestored,
    ContactCreated,
    ContactUpdated,
    ContactDeleted,
    ContactRestored,
    DealCreated,
    DealUpdated,
    DealDeleted,
    DealRestored,
    DealStageChanged,
    DealWon,
    ActivityCreated,
    ActivityCompleted,
)
