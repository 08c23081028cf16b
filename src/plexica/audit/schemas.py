"""Audit entries as the API returns them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel


class AuditEntry(BaseModel):
    seq: int
    id: UUID
    at: datetime
    actor: str
    action: str
    tenant_id: UUID | None
    target: str | None
    before: Any
    after: Any
    trace_id: str | None


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_before: int | None
