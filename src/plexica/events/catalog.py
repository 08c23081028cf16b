"""The core's event schemas: the JSON Schema (2020-12) of each core event's data, by version.

The one registry of the core's events, as a plugin's manifest is of its own (ADR 0181): checked
when the event is published and served at ``/v1/events/schemas/<type>/<version>`` (ADR 0182).
A breaking change of a type's data adds a version here; the old one stays served.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from plexica.events.events import CoreEvent
from plexica.settings import Settings
from plexica_sdk.events import InvalidEventError

SCHEMAS_PATH = "/v1/events/schemas"
# The core API of a platform run with the default settings; a deployment's is
# ``schema_base(settings)``.
LOCAL_SCHEMA_BASE = "http://127.0.0.1:3000/api/core"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

_UUID = {"type": "string", "format": "uuid"}
_TENANT: dict[str, Any] = {
    "type": "object",
    "required": ["id", "slug", "name", "state", "schema_version"],
    "properties": {
        "id": _UUID,
        "slug": {"type": "string"},
        "name": {"type": "string"},
        "state": {"type": "string"},
        "schema_version": {"type": ["string", "null"]},
    },
}
_PLUGIN: dict[str, Any] = {
    "type": "object",
    "required": ["plugin_id"],
    "properties": {"plugin_id": {"type": "string"}},
}
_ROLES = {"type": "array", "items": {"type": "string"}}
_INVITE: dict[str, Any] = {
    "type": "object",
    "required": ["user_id", "invite_id"],
    "properties": {"user_id": _UUID, "invite_id": _UUID},
}

# (type, version) -> schema; the newest version of a type is the one published.
SCHEMAS: dict[tuple[str, int], dict[str, Any]] = {
    (CoreEvent.TENANT_PROVISIONED, 1): _TENANT,
    (CoreEvent.TENANT_SUSPENDED, 1): _TENANT,
    (CoreEvent.TENANT_REACTIVATED, 1): _TENANT,
    (CoreEvent.TENANT_DELETED, 1): _TENANT,
    (CoreEvent.TENANT_FAILED, 1): _TENANT,
    (CoreEvent.PLUGIN_INSTALLED, 1): {
        **_PLUGIN,
        "required": ["plugin_id", "version"],
        "properties": {"plugin_id": {"type": "string"}, "version": {"type": "string"}},
    },
    (CoreEvent.PLUGIN_ENABLED, 1): _PLUGIN,
    (CoreEvent.PLUGIN_DISABLED, 1): _PLUGIN,
    (CoreEvent.PLUGIN_UNINSTALLED, 1): {
        **_PLUGIN,
        "required": ["plugin_id", "purged"],
        "properties": {"plugin_id": {"type": "string"}, "purged": {"type": "boolean"}},
    },
    (CoreEvent.USER_INVITED, 1): {
        "type": "object",
        "required": ["user_id", "roles"],
        # invite_id: set when the user was invited by e-mail (ADR 0225).
        "properties": {"user_id": _UUID, "roles": _ROLES, "invite_id": _UUID},
    },
    (CoreEvent.USER_INVITE_RESENT, 1): _INVITE,
    (CoreEvent.USER_INVITE_REVOKED, 1): _INVITE,
    (CoreEvent.USER_INVITE_ACCEPTED, 1): _INVITE,
    (CoreEvent.USER_ROLE_CHANGED, 1): {
        "type": "object",
        "required": ["user_id", "before", "after"],
        "properties": {"user_id": _UUID, "before": _ROLES, "after": _ROLES},
    },
}


def schema_base(settings: Settings) -> str:
    """Where consumers fetch schemas: the core API behind the platform's public URL."""
    return settings.public_base_url + "/api/core"


def schema_path(event_type: str, version: int) -> str:
    return f"{SCHEMAS_PATH}/{event_type}/{version}"


def current_version(event_type: str) -> int | None:
    versions = [v for t, v in SCHEMAS if t == event_type]
    return max(versions) if versions else None


@cache
def _validator(event_type: str, version: int) -> Draft202012Validator:
    return Draft202012Validator(
        SCHEMAS[(event_type, version)], format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def check(event_type: str, data: dict[str, Any]) -> str:
    """The schema path of a core event whose data meets its current schema; InvalidEventError
    otherwise (an undeclared core type, or data that does not fit)."""
    version = current_version(event_type)
    if version is None:
        raise InvalidEventError(
            f"event type {event_type!r} is not a core event",
            details={"type": event_type, "declared": sorted({t for t, _ in SCHEMAS})},
        )
    # As the consumer will read it: the JSON the outbox stores.
    as_stored = json.loads(json.dumps(data, default=str))
    errors = sorted(_validator(event_type, version).iter_errors(as_stored), key=str)
    if errors:
        raise InvalidEventError(
            f"data of {event_type} does not meet its schema: {errors[0].message}",
            details=[{"path": list(e.absolute_path), "message": e.message} for e in errors],
        )
    return schema_path(event_type, version)


def document(event_type: str, version: int, uri: str) -> dict[str, Any] | None:
    schema = SCHEMAS.get((event_type, version))
    return as_document(event_type, version, uri, schema) if schema is not None else None


def as_document(event_type: str, version: int, uri: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as served: its own URI as ``$id`` and the dialect it is written in."""
    return {"$schema": DIALECT, "$id": uri, "title": f"{event_type} v{version}", **schema}
