"""CloudEvents 1.0 envelope of every Plexica event."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){2,}$")


class CloudEvent(BaseModel):
    """``type`` is ``<domain-or-plugin>.<entity>.<event>``, e.g. ``plexica.tenant.provisioned``
    or ``crm.deal.won``; ``tenantid`` and ``traceparent`` are CloudEvents extensions."""

    model_config = ConfigDict(frozen=True)

    id: UUID = Field(default_factory=uuid.uuid4)
    source: str
    type: str
    specversion: str = "1.0"
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = None
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    tenantid: UUID | None = None
    traceparent: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if not EVENT_TYPE_RE.match(value):
            raise ValueError("event type must look like <domain>.<entity>.<event>, lower case")
        return value


class DeadLetterStatus(StrEnum):
    PENDING = "pending"
    RETRIED = "retried"
    DISCARDED = "discarded"


class DeadLetter(BaseModel):
    """An event a plugin's handler failed on too many times."""

    id: UUID
    plugin_id: str
    event_id: UUID
    tenant_id: UUID | None
    type: str
    event: dict[str, Any]
    error: str
    attempts: int
    status: DeadLetterStatus
    created_at: datetime
    resolved_at: datetime | None


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plugin_id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=63)
    tenant_id: UUID
    event_types: list[str] | None = Field(default=None, max_length=200)


class ReplayResult(BaseModel):
    plugin_id: str
    tenant_id: UUID
    queued: int
