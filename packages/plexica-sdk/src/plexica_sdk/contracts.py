"""Typed data of the events that shipped plugins emit, for their consumers.

Each model matches the JSON Schema its emitter declares in its manifest (``events.emits``);
a test holds the two together. A consumer reads ``DealWon.of(event)`` instead of keys of a dict.
A breaking change of an event's data is a new ``schema_version`` and a new model here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from plexica_sdk.events import Event, InvalidEventError


class EventData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]

    @classmethod
    def of(cls, event: Event) -> Self:
        """The data of ``event``; raises InvalidEventError when it is not of this model."""
        if event.type != cls.event_type:
            raise InvalidEventError(f"{event.type} is not {cls.event_type}")
        try:
            return cls.model_validate(event.data)
        except ValueError as exc:
            raise InvalidEventError(f"data of {event.type} does not fit: {exc}") from None


class DealWon(EventData):
    """``crm.deal.won`` (schema version 1): a deal entered a won stage, once per deal."""

    event_type: ClassVar[str] = "crm.deal.won"
    deal_id: UUID
    amount: Decimal = Field(ge=0, allow_inf_nan=False)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    title: str
    company_id: UUID | None
    company_name: str | None
