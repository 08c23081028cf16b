"""Tenant models, states and the slug rules."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from plexica.kit.provisioning import SLUG_MAX, SLUG_MIN, TenantRef
from plexica_sdk.errors import PlexicaError

SLUG_RE = re.compile(rf"^[a-z][a-z0-9-]{{{SLUG_MIN - 2},{SLUG_MAX - 2}}}[a-z0-9]$", re.ASCII)
RESERVED_SLUGS = frozenset(
    {
        "platform", "admin", "api", "www", "public", "system", "root", "core", "plexica",
        "internal", "static", "assets", "auth", "login", "logout", "oauth", "sso", "mail",
        "support", "status", "health", "ready", "metrics", "docs", "web", "app", "apps",
        "default", "template", "tenant", "tenants", "pg-catalog", "information-schema",
    }
)  # fmt: skip
COLOUR_PATTERN = r"^#[0-9a-fA-F]{6}$"
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$")


class InvalidSlugError(PlexicaError):
    status, code = 422, "invalid_slug"


class State(StrEnum):
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    PENDING_DELETION = "pending_deletion"
    DELETED = "deleted"
    FAILED = "failed"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.PROVISIONING: frozenset({State.ACTIVE, State.FAILED}),
    State.ACTIVE: frozenset({State.SUSPENDED, State.PENDING_DELETION}),
    State.SUSPENDED: frozenset({State.ACTIVE, State.PENDING_DELETION}),
    State.FAILED: frozenset({State.PROVISIONING, State.PENDING_DELETION}),
    State.PENDING_DELETION: frozenset({State.DELETED}),
    State.DELETED: frozenset(),
}


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    UNDONE = "undone"


class Phase(StrEnum):
    PROVISION = "provision"
    DELETE = "delete"


def validate_slug(slug: object) -> str:
    """The one gate a slug passes before it becomes part of any identifier."""
    if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug):
        raise InvalidSlugError(
            f"a slug is {SLUG_MIN} to {SLUG_MAX} characters (it names a schema, a bucket and a "
            "realm): lowercase ASCII letters, digits and '-', starting with a letter and not "
            "ending with '-'",
            details={"slug": slug if isinstance(slug, str) and len(slug) <= 100 else None},
        )
    if slug in RESERVED_SLUGS:
        raise InvalidSlugError(f"the slug {slug!r} is reserved", details={"slug": slug})
    # "xn--..." in a host name is punycode: a slug could pose as a look-alike unicode name.
    if "--" in slug:
        raise InvalidSlugError("a slug may not contain '--'", details={"slug": slug})
    return slug


def validate_email(email: str) -> str:
    if not _EMAIL_RE.fullmatch(email):
        raise PlexicaError("admin_email is not an e-mail address", code="invalid_email", status=422)
    return email


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str = Field(max_length=200, examples=["acme"])
    name: str = Field(min_length=1, max_length=200, examples=["Acme Corp"])
    admin_email: str = Field(max_length=320, examples=["admin@acme.example"])


class Tenant(BaseModel):
    id: UUID
    slug: str
    name: str
    admin_email: str
    state: State
    schema_name: str
    schema_version: str | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None

    @property
    def ref(self) -> TenantRef:
        return TenantRef(id=self.id, slug=self.slug, name=self.name, admin_email=self.admin_email)


class TenantPage(BaseModel):
    items: list[Tenant]
    next: str | None = Field(description="Pass as `after` to get the next page; null at the end.")


class Step(BaseModel):
    phase: Phase
    position: int
    name: str
    status: StepStatus
    error: str | None
    attempts: int
    updated_at: datetime


class Transition(BaseModel):
    from_state: State | None
    to_state: State
    reason: str | None
    at: datetime


class TenantSteps(BaseModel):
    tenant_id: UUID
    state: State
    steps: list[Step]
    history: list[Transition]


class ProvisioningStatus(BaseModel):
    """Where a tenant's provisioning saga is: polled by the console while it runs."""

    tenant_id: UUID
    slug: str
    name: str
    state: State
    finished: bool = Field(description="False while the saga runs (state provisioning).")
    current: str | None = Field(description="The step running now.")
    failed_step: str | None = Field(description="The step that failed (its error is on it).")
    failure_reason: str | None
    done: int
    total: int
    steps: list[Step] = Field(
        description="The provisioning steps in order; `undone` ones "
        "were compensated after a later step failed."
    )


class CurrentTenant(BaseModel):
    id: UUID
    slug: str
    name: str
    state: State


class SettingValue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Any


class Setting(BaseModel):
    key: str
    value: Any
    updated_at: datetime


# The tenant's logo, checked by the API and by the shell before it uploads or shows one.
LOGO_MAX_BYTES = 512 * 1024
# Raster images only: an SVG can carry script, and the logo is shown on every page.
LOGO_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


class BrandingLogo(BaseModel):
    content_type: str
    size: int
    etag: str


class Branding(BaseModel):
    name: str
    primary_color: str | None
    logo: BrandingLogo | None


class BrandingUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    primary_color: str | None = Field(default=None, pattern=COLOUR_PATTERN, examples=["#1d4ed8"])


class TenantHealth(BaseModel):
    """One tenant's use of the platform (ADR 0205). Requests, errors and P95 are counted since
    the reporting processes started, and only for tenants with a metrics label of their own
    (null for the rest, counted under `other`)."""

    id: UUID
    slug: str
    name: str
    state: State
    requests: int | None
    errors: int | None = Field(description="Answers with a 5xx status.")
    p95_seconds: float | None
    storage_bytes: int
    events_24h: int = Field(description="Events the tenant published in the last 24 hours.")
    last_sign_in: datetime | None


class FleetHealth(BaseModel):
    tenants: list[TenantHealth]
    sources: list[str] = Field(description="The services whose metrics were read.")
    unreachable: list[str] = Field(description="Plugin services whose metrics did not answer.")
