"""Audit entries as the API returns them, and the filters of a query."""

from __future__ import annotations

from dataclasses import dataclass
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
    request_id: str | None = None


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_before: int | None


@dataclass(frozen=True)
class TextMatch:
    """A filter on a text column: the whole value, or (``prefix``) its beginning."""

    value: str
    prefix: bool = False

    @classmethod
    def of(cls, given: str | None) -> TextMatch | None:
        """``identity.user.*``: entries whose value starts with ``identity.user.``."""
        if given is None:
            return None
        if given.endswith("*"):
            return cls(given[:-1], prefix=True)
        return cls(given)


@dataclass(frozen=True)
class AuditFilter:
    actor: TextMatch | None = None
    action: TextMatch | None = None
    target: TextMatch | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
