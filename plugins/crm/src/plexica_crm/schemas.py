"""Request and response models of the CRM API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from plexica_sdk.errors import NotFoundError

T = TypeVar("T")


class CompanyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    domain: str | None = Field(default=None, max_length=200)


def _patch_schema(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    # What the validator below enforces, in the OpenAPI too: at least one field, and no null
    # for a column that has none (an omitted field keeps its value).
    schema["minProperties"] = 1
    not_null: frozenset[str] = getattr(cls, "NOT_NULL", frozenset())
    for name, prop in schema.get("properties", {}).items():
        prop.pop("default", None)
        if name in not_null and "anyOf" in prop:
            kept = [s for s in prop.pop("anyOf") if s.get("type") != "null"]
            prop.update(kept[0] if len(kept) == 1 else {"anyOf": kept})


class Patch(BaseModel):
    """A partial update: only the fields given change."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_patch_schema)
    NOT_NULL: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _something(self) -> Patch:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        nulls = sorted(n for n in self.model_fields_set & self.NOT_NULL if getattr(self, n) is None)
        if nulls:
            raise ValueError(f"cannot be null: {', '.join(nulls)}")
        return self

    def given(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class CompanyPatch(Patch):
    NOT_NULL = frozenset({"name"})
    name: str | None = Field(default=None, min_length=1, max_length=200)
    domain: str | None = Field(default=None, max_length=200)


VERSION = Field(description="Bumped by every change of the record; its ETag is this, quoted.")


class Company(CompanyIn):
    model_config = ConfigDict(extra="ignore")
    id: UUID
    created_at: datetime
    version: int = VERSION


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(default="", max_length=100)
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    phone: str | None = Field(default=None, max_length=40)
    company_id: UUID | None = None


class ContactPatch(Patch):
    NOT_NULL = frozenset({"first_name", "last_name"})
    first_name: str | None = Field(default=None, min_length=1, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    phone: str | None = Field(default=None, max_length=40)
    company_id: UUID | None = None


class Contact(BaseModel):
    id: UUID
    first_name: str
    last_name: str
    email: str | None
    phone: str | None
    company_id: UUID | None
    created_at: datetime
    version: int = VERSION


class Stage(BaseModel):
    id: str
    name: str
    position: int
    is_won: bool
    is_lost: bool


class DealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200)
    amount: Decimal = Field(default=Decimal(0), ge=0, max_digits=14, decimal_places=2)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    stage_id: str = "lead"
    company_id: UUID | None = None
    contact_id: UUID | None = None


class DealPatch(Patch):
    """The stage is not here: moves go through ``POST /deals/{id}/stage`` (their own events)."""

    NOT_NULL = frozenset({"title", "amount", "currency"})
    title: str | None = Field(default=None, min_length=1, max_length=200)
    amount: Decimal | None = Field(default=None, ge=0, max_digits=14, decimal_places=2)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    company_id: UUID | None = None
    contact_id: UUID | None = None


class Deal(BaseModel):
    id: UUID
    title: str
    amount: Decimal
    currency: str
    stage_id: str
    company_id: UUID | None
    contact_id: UUID | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    version: int = VERSION


class StageChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage_id: str


class ActivityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["note", "call", "task"]
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=20_000)
    due_at: datetime | None = None
    contact_id: UUID | None = None
    deal_id: UUID | None = None

    @model_validator(mode="after")
    def _linked(self) -> ActivityIn:
        if self.contact_id is None and self.deal_id is None:
            raise ValueError("an activity is linked to a contact, a deal or both")
        return self


class Activity(BaseModel):
    id: UUID
    kind: str
    subject: str
    body: str
    due_at: datetime | None
    done: bool
    contact_id: UUID | None
    deal_id: UUID | None
    created_at: datetime


class InTrash(BaseModel):
    deleted_at: datetime
    deleted_by: str = Field(description="The user who deleted it.")


class TrashedCompany(Company, InTrash):
    pass


class TrashedContact(Contact, InTrash):
    pass


class TrashedDeal(Deal, InTrash):
    pass


class CrmNotFoundError(NotFoundError):
    pass


class ImportResult(BaseModel):
    created: int = Field(description="Records created, one per data row, in the file's order.")
