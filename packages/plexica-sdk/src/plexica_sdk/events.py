"""Events for plugins: subscribe handlers, publish validated events, handle each event once.

A plugin declares what it consumes with ``EventBus.subscribe`` and what it emits with
``EventBus.emits``; the platform delivers events (at least once) and supplies the transport
behind ``EventBus.publish`` (its transactional outbox). Handlers must be idempotent by event id:
``first_delivery`` records the id in the plugin's own schema, in the handler's transaction.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from jsonschema import Draft202012Validator
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from plexica_sdk import tracing
from plexica_sdk.errors import PlexicaError
from plexica_sdk.manifest import EventRef

EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){2,}$")
MAX_EVENT_BYTES = 256 * 1024


class InvalidEventError(PlexicaError):
    status, code = 422, "invalid_event"


class Event(BaseModel):
    """A CloudEvents 1.0 event as a handler sees it; ``tenant_id`` is the ``tenantid``
    extension."""

    model_config = ConfigDict(frozen=True)

    id: UUID = Field(default_factory=uuid.uuid4)
    source: str
    type: str
    specversion: str = "1.0"
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = None
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    tenant_id: UUID | None = None
    traceparent: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def family(self) -> str:
        return event_family(self.type)


def event_family(event_type: str) -> str:
    """``crm.deal.won`` → ``crm.deal``: the Kafka topic an event type is published to."""
    return ".".join(event_type.split(".")[:2])


# CloudEvents Kafka protocol binding, binary content mode: attributes in ``ce_*`` headers,
# ``datacontenttype`` in ``content-type``, the data as the record value.
_CE_ATTRS = (
    "id", "source", "type", "specversion", "time", "subject", "dataschema", "traceparent",
)  # fmt: skip


def to_kafka(event: Event) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """Key (tenant id), value (JSON data) and headers of an event's Kafka record."""
    headers = [
        ("ce_id", str(event.id).encode()),
        ("ce_source", event.source.encode()),
        ("ce_type", event.type.encode()),
        ("ce_specversion", event.specversion.encode()),
        ("ce_time", event.time.isoformat().encode()),
        ("content-type", event.datacontenttype.encode()),
    ]
    if event.subject is not None:
        headers.append(("ce_subject", event.subject.encode()))
    if event.dataschema is not None:
        headers.append(("ce_dataschema", event.dataschema.encode()))
    if event.tenant_id is not None:
        headers.append(("ce_tenantid", str(event.tenant_id).encode()))
    if event.traceparent is not None:
        headers.append(("ce_traceparent", event.traceparent.encode()))
    key = str(event.tenant_id).encode() if event.tenant_id is not None else None
    return key, json.dumps(event.data, separators=(",", ":")).encode(), headers


def from_kafka(value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> Event:
    """The event of a binary-mode record; raises InvalidEventError when it is not one."""
    attrs = {k[3:]: v.decode() for k, v in headers if k.startswith("ce_")}
    content_type = next((v.decode() for k, v in headers if k == "content-type"), None)
    try:
        data = json.loads(value) if value else {}
        return Event(
            **{k: attrs[k] for k in _CE_ATTRS if k in attrs},
            tenant_id=attrs.get("tenantid"),
            datacontenttype=content_type or "application/json",
            data=data,
        )
    except (ValueError, TypeError, ValidationError) as exc:
        raise InvalidEventError(f"not a CloudEvents binary-mode record: {exc}") from None


class DeclaredEvents:
    """The event types a plugin's manifest says it emits, each with the JSON Schema its data
    must meet. Checked when an event is published, so a consumer can rely on the schema."""

    def __init__(self, emits: Iterable[EventRef]) -> None:
        self._validators = {
            e.type: Draft202012Validator(
                e.data_schema, format_checker=Draft202012Validator.FORMAT_CHECKER
            )
            if e.data_schema is not None
            else None
            for e in emits
        }

    def check(self, event_type: str, data: dict[str, Any]) -> None:
        if event_type not in self._validators:
            raise InvalidEventError(
                f"event type {event_type!r} is not in the manifest's events.emits",
                details={"type": event_type, "declared": sorted(self._validators)},
            )
        validator = self._validators[event_type]
        if validator is None:
            return
        # As the consumer will read it: the JSON the outbox stores.
        errors = sorted(validator.iter_errors(json.loads(json.dumps(data, default=str))), key=str)
        if errors:
            raise InvalidEventError(
                f"data of {event_type} does not meet its declared schema: {errors[0].message}",
                details=[{"path": list(e.absolute_path), "message": e.message} for e in errors],
            )


Handler = Callable[[Event], Awaitable[None]]
H = TypeVar("H", bound=Handler)


class Publisher(Protocol):
    """Writes an event in the transaction of ``session`` (the platform's outbox)."""

    async def __call__(self, session: Any, event: Event) -> None: ...


class EventBus:
    """The events of one plugin: handlers by type, declared payload models, publishing."""

    def __init__(self, plugin_id: str, *, source: str | None = None) -> None:
        if not re.match(r"^[a-z][a-z0-9_]*$", plugin_id):
            raise ValueError(f"not a plugin id usable in event types: {plugin_id!r}")
        self.plugin_id = plugin_id
        self.source = source or f"/plugins/{plugin_id}"
        self._handlers: dict[str, list[Handler]] = {}
        self._schemas: dict[str, type[BaseModel] | None] = {}
        self._publisher: Publisher | None = None

    def subscribe(self, *event_types: str) -> Callable[[H], H]:
        """Register the decorated coroutine for these event types (exact names)."""
        for event_type in event_types:
            _check_type(event_type)

        def register(handler: H) -> H:
            for event_type in event_types:
                self._handlers.setdefault(event_type, []).append(handler)
            return handler

        return register

    def emits(self, event_type: str, schema: type[BaseModel] | None = None) -> None:
        """Declare an event type this plugin publishes, with the model its data must fit."""
        _check_type(event_type)
        if not event_type.startswith(self.plugin_id + "."):
            raise ValueError(f"{event_type!r} is outside this plugin's namespace {self.plugin_id}")
        self._schemas[event_type] = schema

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def handlers(self, event_type: str) -> list[Handler]:
        return list(self._handlers.get(event_type, ()))

    def use_publisher(self, publisher: Publisher) -> None:
        """Called by the platform that hosts the plugin."""
        self._publisher = publisher

    def build(
        self,
        event_type: str,
        data: BaseModel | dict[str, Any],
        *,
        tenant_id: UUID,
        subject: str | None = None,
        traceparent: str | None = None,
    ) -> Event:
        """A validated event; raises InvalidEventError with the reason otherwise."""
        if event_type not in self._schemas:
            raise InvalidEventError(
                f"event type {event_type!r} is not declared by plugin {self.plugin_id}",
                details={"type": event_type, "declared": sorted(self._schemas)},
            )
        schema = self._schemas[event_type]
        payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
        if not isinstance(payload, dict):
            raise InvalidEventError("event data must be a JSON object")
        if schema is not None:
            try:
                payload = schema.model_validate(payload).model_dump(mode="json")
            except ValidationError as exc:
                raise InvalidEventError(
                    f"data of {event_type} does not match {schema.__name__}",
                    details=exc.errors(include_url=False, include_context=False),
                ) from None
        try:
            encoded = json.dumps(payload, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidEventError(f"event data is not JSON: {exc}") from None
        if "\\u0000" in encoded:
            raise InvalidEventError("event data contains a NUL character")
        size = len(encoded)
        if size > MAX_EVENT_BYTES:
            raise InvalidEventError(f"event data is {size} bytes; the limit is {MAX_EVENT_BYTES}")
        return Event(
            source=self.source,
            type=event_type,
            subject=subject,
            tenant_id=tenant_id,
            traceparent=traceparent,
            data=payload,
        )

    async def publish(
        self,
        session: Any,
        event_type: str,
        data: BaseModel | dict[str, Any],
        *,
        tenant_id: UUID,
        subject: str | None = None,
    ) -> Event:
        """Publish in the transaction of ``session``: it is delivered only if that commits."""
        event = self.build(
            event_type,
            data,
            tenant_id=tenant_id,
            subject=subject,
            traceparent=tracing.event_traceparent(),
        )
        if self._publisher is None:
            raise RuntimeError("this plugin is not hosted by a platform: no event transport")
        await self._publisher(session, event)
        return event


def _check_type(event_type: str) -> None:
    if not EVENT_TYPE_RE.match(event_type):
        raise ValueError(f"event type must look like <domain>.<entity>.<event>: {event_type!r}")


PROCESSED_EVENTS_DDL = (
    "CREATE TABLE IF NOT EXISTS plexica_processed_events ("
    " consumer text NOT NULL, event_id uuid NOT NULL,"
    " processed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (consumer, event_id))"
)


async def ensure_processed_events_table(session: AsyncSession) -> None:
    """Create the dedupe table in the session's schema (or put the DDL in a migration)."""
    await session.execute(text(PROCESSED_EVENTS_DDL))


async def first_delivery(
    session: AsyncSession, event: Event, consumer: str, *, table: str = "plexica_processed_events"
) -> bool:
    """True the first time ``consumer`` sees ``event``; records it in the same transaction as
    the handler's own writes, so a handler that fails leaves the event unprocessed.

    ``table`` (same columns as ``PROCESSED_EVENTS_DDL``) lets an installed plugin keep the ids
    in a table named with its own prefix, the only names its role may create."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", table):
        raise ValueError(f"not a table name: {table!r}")
    result = await session.execute(
        text(
            f"INSERT INTO {table} (consumer, event_id) VALUES (:c, :e)"  # noqa: S608
            " ON CONFLICT DO NOTHING RETURNING 1"
        ),
        {"c": consumer, "e": event.id},
    )
    return result.scalar_one_or_none() is not None
