"""Request and response models of the flags API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from plexica_sdk.flags import FLAG_KEY, Rollout, Value


class FlagIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=FLAG_KEY.pattern)
    kind: Literal["boolean", "variant"] = "boolean"
    description: str = Field(default="", max_length=500)
    variants: dict[str, Value] | None = None
    default_variant: str = "off"
    off_variant: str | None = None
    enabled: bool = True
    tenants: dict[str, str] = Field(default_factory=dict)
    plans: dict[str, str] = Field(default_factory=dict)
    rings: dict[str, str] = Field(default_factory=dict)
    rollout: Rollout | None = None


class FlagPatch(BaseModel):
    """Only the fields given change; ``rollout: null`` removes the rollout."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=500)
    variants: dict[str, Value] | None = None
    default_variant: str | None = None
    off_variant: str | None = None
    enabled: bool | None = None
    tenants: dict[str, str] | None = None
    plans: dict[str, str] | None = None
    rings: dict[str, str] | None = None
    rollout: Rollout | None = None


class ToggleIn(BaseModel):
    enabled: bool | None = None


class FlagChange(BaseModel):
    id: int
    action: str
    actor: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    at: datetime


class Evaluation(BaseModel):
    value: Value | None
    variant: str | None
    reason: str
