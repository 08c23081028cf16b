"""The kinds of record that can be deleted into the trash and restored (companies, contacts and
deals): each one's table, the names of its events, and its models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar
from uuid import UUID

from plexica_crm.schemas import (
    Company,
    Contact,
    Deal,
    TrashedCompany,
    TrashedContact,
    TrashedDeal,
)

M = TypeVar("M", Company, Contact, Deal)
T = TypeVar("T", TrashedCompany, TrashedContact, TrashedDeal)


@dataclass(frozen=True)
class Kind(Generic[M, T]):
    table: str
    what: str  # "company": its events are crm.<what>.*, their data names it <what>_id
    path: str  # "companies": its events' subject is <path>/<id>
    model: type[M]
    trashed: type[T]

    def event(self, action: str) -> str:
        return f"crm.{self.what}.{action}"

    def subject(self, id_: UUID) -> str:
        return f"{self.path}/{id_}"


COMPANIES = Kind("crm_companies", "company", "companies", Company, TrashedCompany)
CONTACTS = Kind("crm_contacts", "contact", "contacts", Contact, TrashedContact)
DEALS = Kind("crm_deals", "deal", "deals", Deal, TrashedDeal)
