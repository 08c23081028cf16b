"""Publishing events: written to the outbox in the caller's transaction, delivered later.

Nothing is published for a change that rolls back, because the event row rolls back with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from plexica.events import catalog
from plexica.events.repository import dead_letters, deliveries, outbox, plugin_api, subscriptions
from plexica.events.schemas import EVENT_TYPE_RE, CloudEvent, DeadLetter, DeadLetterStatus
from plexica_sdk import tracing
from plexica_sdk.errors import ConflictError, NotFoundError
from plexica_sdk.events import Event, InvalidEventError

CORE_SOURCE = "/plexica/core"
CORE_PREFIX = "plexica."


async def publish(
    session: AsyncSession,
    type: str,  # noqa: A002 - the CloudEvents attribute name
    data: dict[str, Any],
    *,
    tenant_id: UUID | None = None,
    subject: str | None = None,
    source: str = CORE_SOURCE,
) -> CloudEvent:
    """Write an event to the outbox in the caller's transaction. A core event (``plexica.*``)
    must meet its schema in the core's registry and carries it as ``dataschema`` (ADR 0182)."""
    dataschema = catalog.check(type, data) if type.startswith(CORE_PREFIX) else None
    event = CloudEvent(
        type=type,
        source=source,
        data=data,
        tenantid=tenant_id,
        subject=subject,
        dataschema=dataschema,
        traceparent=tracing.event_traceparent(),
    )
    await outbox.insert_outbox(session, event)
    return event


async def purge_tenant_events(session: AsyncSession, tenant_id: UUID) -> int:
    """Drop a deleted tenant's undelivered events (outbox and delivery queue); returns how many.

    Already published events stay in the broker until its retention removes them."""
    return await outbox.purge_tenant(session, tenant_id)


async def register_subscriptions(
    session: AsyncSession, plugin_id: str, event_types: Sequence[str]
) -> None:
    """Set the event types a plugin consumes (from its manifest), replacing earlier ones."""
    for event_type in event_types:
        if not EVENT_TYPE_RE.match(event_type):
            raise InvalidEventError(f"not an event type: {event_type!r}")
    await subscriptions.set_subscriptions(session, plugin_id, event_types)


async def set_plugin_active(
    session: AsyncSession, plugin_id: str, tenant_id: UUID, active: bool
) -> None:
    """Install+enable (True) or disable (False) a plugin's event delivery for a tenant."""
    await subscriptions.set_consumer(session, plugin_id, tenant_id, active)


async def remove_plugin(session: AsyncSession, plugin_id: str, tenant_id: UUID) -> None:
    """Uninstall: the plugin receives no more events of the tenant."""
    await subscriptions.delete_consumer(session, plugin_id, tenant_id)


async def replay_for_plugin(
    session: AsyncSession,
    plugin_id: str,
    tenant_id: UUID,
    event_types: Sequence[str] | None = None,
    *,
    schema_base: str = catalog.LOCAL_SCHEMA_BASE,
) -> int:
    """Queue the tenant's published history of the types the plugin consumes (or a subset)
    for delivery to that plugin only, oldest first; returns how many events."""
    subscribed = set(await subscriptions.subscribed_types(session, plugin_id))
    wanted = set(event_types) if event_types is not None else subscribed
    unknown = sorted(wanted - subscribed)
    if unknown:
        raise InvalidEventError(
            f"plugin {plugin_id} does not consume {', '.join(unknown)}",
            details={"subscribed": sorted(subscribed)},
        )
    if not await subscriptions.is_active(session, plugin_id, tenant_id):
        raise ConflictError(
            f"plugin {plugin_id} is not installed and active for this tenant",
            code="plugin_not_active",
        )
    return await deliveries.replay(session, plugin_id, tenant_id, sorted(wanted), schema_base)


async def allow_plugin_login(session: AsyncSession, login: str) -> None:
    """Let a plugin's own login keep its event consumer's state (ADR 0078): the plugin_api
    functions only, each acting on that plugin's rows."""
    await plugin_api.grant_plugin_api(session, login)


async def list_dead_letters(
    session: AsyncSession,
    *,
    plugin_id: str | None = None,
    tenant_id: UUID | None = None,
    status: DeadLetterStatus | None = DeadLetterStatus.PENDING,
    limit: int = 100,
) -> list[DeadLetter]:
    rows = await dead_letters.list_dead_letters(
        session,
        plugin_id=plugin_id,
        tenant_id=tenant_id,
        status=status.value if status is not None else None,
        limit=limit,
    )
    return [DeadLetter.model_validate(row._mapping) for row in rows]


async def retry_dead_letter(session: AsyncSession, dead_letter_id: UUID) -> DeadLetter:
    """Queue the event again for its plugin (with a fresh retry budget)."""
    letter = await _pending_dead_letter(session, dead_letter_id)
    await deliveries.enqueue_delivery(session, letter.plugin_id, letter.event, reason="dlq-retry")
    await dead_letters.resolve_dead_letter(session, dead_letter_id, DeadLetterStatus.RETRIED)
    return letter.model_copy(update={"status": DeadLetterStatus.RETRIED})


async def discard_dead_letter(session: AsyncSession, dead_letter_id: UUID) -> DeadLetter:
    letter = await _pending_dead_letter(session, dead_letter_id)
    await dead_letters.resolve_dead_letter(session, dead_letter_id, DeadLetterStatus.DISCARDED)
    return letter.model_copy(update={"status": DeadLetterStatus.DISCARDED})


async def _pending_dead_letter(session: AsyncSession, dead_letter_id: UUID) -> DeadLetter:
    row = await dead_letters.lock_dead_letter(session, dead_letter_id)
    if row is None:
        raise NotFoundError("no such dead letter", code="dead_letter_not_found")
    letter = DeadLetter.model_validate(row._mapping)
    if letter.status is not DeadLetterStatus.PENDING:
        raise ConflictError(
            f"dead letter is already {letter.status.value}", code="dead_letter_resolved"
        )
    return letter


async def publish_event(session: AsyncSession, event: Event) -> None:
    """The outbox transport behind the SDK's ``EventBus.publish`` (already validated)."""
    await outbox.insert_outbox(
        session,
        CloudEvent(
            id=event.id,
            source=event.source,
            type=event.type,
            time=event.time,
            subject=event.subject,
            tenantid=event.tenant_id,
            traceparent=event.traceparent,
            data=event.data,
        ),
    )


async def event_schema(
    session: AsyncSession, event_type: str, version: int, uri: str
) -> dict[str, Any]:
    """The schema document behind a dataschema: the core's registry for ``plexica.*`` types,
    else the newest catalog manifest of the emitting plugin that declares that version."""
    if event_type.startswith(CORE_PREFIX):
        found = catalog.document(event_type, version, uri)
    else:
        schema = await outbox.plugin_event_schema(session, event_type, version)
        found = catalog.as_document(event_type, version, uri, schema) if schema else None
    if found is None:
        raise NotFoundError(
            f"no schema {version} for event type {event_type}", code="event_schema_not_found"
        )
    return found


async def published_by_tenant(session: AsyncSession, seconds: int) -> dict[UUID, int]:
    """Events each tenant published (core and plugins) in the last ``seconds``."""
    return await outbox.count_by_tenant(session, seconds)
