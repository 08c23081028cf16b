"""CloudEvents 1.0 envelope of every Plexica event."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
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
    tenantid: UUID | None = None
    traceparent: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if not EVENT_TYPE_RE.match(value):
            raise ValueError("event type must look like <domain>.<entity>.<event>, lower case")
        return value
