"""What every typed event model shares: frozen, tolerant of properties it does not know, and
written back (``model_dump(mode="json")``) as a document that meets the schema again."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, ClassVar, Generic, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from plexica_sdk.events import Event, InvalidEventError

# ``{type: string, pattern: "^[0-9]+(\\.[0-9]+)?$"}``
Amount = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
# ``{type: string, pattern: "^-?[0-9]+(\\.[0-9]+)?$"}``
SignedAmount = Annotated[Decimal, Field(allow_inf_nan=False)]
# ``{type: string, pattern: "^[A-Z]{3}$"}``
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class EventModel(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    @model_serializer(mode="wrap")
    def _without_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # An optional property the schema does not let be null is left out, not written null.
        data: dict[str, Any] = handler(self)
        for name, field in type(self).model_fields.items():
            if not field.is_required() and getattr(self, name) is None:
                data.pop(name, None)
                if field.alias:
                    data.pop(field.alias, None)
        return data


class EventData(EventModel):
    """The data of one event type at one schema version."""

    event_type: ClassVar[str]
    event_version: ClassVar[int] = 1

    @classmethod
    def of(cls, event: Event) -> Self:
        """The data of ``event``; raises InvalidEventError when it is not of this model."""
        if event.type != cls.event_type:
            raise InvalidEventError(f"{event.type} is not {cls.event_type}")
        try:
            return cls.model_validate(event.data)
        except ValueError as exc:
            raise InvalidEventError(f"data of {event.type} does not fit: {exc}") from None


T = TypeVar("T")


class Change(EventModel, Generic[T]):
    """One changed field: the value it replaced and the new one."""

    from_: T = Field(alias="from")
    to: T


class Changes(EventModel):
    """Only the fields that changed (``minProperties: 1``); those not changed are None."""

    @model_validator(mode="before")
    @classmethod
    def _not_empty(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data:
            raise ValueError("changes must name at least one field")
        return data
