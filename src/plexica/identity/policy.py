"""A tenant's account protection in the built-in provider (ADR 0243): its password policy and
the lifetimes of its sign-in sessions, beside ``mfa_required`` on ``platform.realms``."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from plexica.audit import service as audit
from plexica.identity import policy_repository as repo
from plexica.identity.names import realm_slug
from plexica.identity.schemas import SecurityPolicy
from plexica_sdk.errors import PlexicaError

MAX_PASSWORD = 256
# A shorter local part ("jo") would refuse too many good passwords for what it protects.
_MIN_PART = 4


@dataclass(frozen=True)
class Policy:
    mfa_required: bool = False
    password_min_length: int = 12
    session_max_hours: int = 8
    session_idle_minutes: int = 480


async def of(session: AsyncSession, realm: str) -> Policy:
    found = await repo.policy_of(session, realm)
    return Policy(**found) if found else Policy()


async def put(session: AsyncSession, realm: str, new: SecurityPolicy) -> Policy:
    """The realm's policy set; the policy before."""
    return Policy(**await repo.set_policy(session, realm, new.model_dump()))


def as_schema(policy: Policy) -> SecurityPolicy:
    return SecurityPolicy(**asdict(policy))


def password_problem(policy: Policy, password: str, *, email: str, realm: str) -> str | None:
    """Why ``password`` is refused for that user of that realm, or None."""
    if not policy.password_min_length <= len(password) <= MAX_PASSWORD:
        return f"Use {policy.password_min_length} to {MAX_PASSWORD} characters."
    lowered = password.lower()
    local = email.partition("@")[0].lower()
    if len(local) >= _MIN_PART and local in lowered:
        return "Do not use your e-mail address in your password."
    slug = realm_slug(realm)
    if slug and slug in lowered:
        return "Do not use your organisation's name in your password."
    return None


class WeakPasswordError(PlexicaError):
    """422 ``validation_error`` naming the field, as a request body refused by its schema."""

    status, code = 422, "validation_error"

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(
            "request validation failed",
            details=[{"loc": ["body", field], "msg": reason, "type": "password_policy"}],
        )


async def refused(
    session: AsyncSession,
    realm: str,
    password: str,
    *,
    email: str,
    field: str,
    actor: str,
    tenant_id: UUID | None,
    target: str,
) -> WeakPasswordError | None:
    """The error to raise when the realm's policy refuses ``password``, once its audit entry
    (the rule, never the password) is written in ``session``, which must still commit: the
    caller changes nothing else and raises after the commit."""
    problem = password_problem(await of(session, realm), password, email=email, realm=realm)
    if problem is None:
        return None
    await audit.record(
        session, actor, "identity.password.refused", tenant_id, target,
        after={"field": field, "reason": problem},
    )  # fmt: skip
    return WeakPasswordError(field, problem)


async def generated_password(session: AsyncSession, realm: str, email: str) -> str:
    """A random password the realm's policy accepts."""
    found = await of(session, realm)
    while True:
        password = secrets.token_urlsafe(max(18, found.password_min_length))[
            : max(24, found.password_min_length)
        ]
        if password_problem(found, password, email=email, realm=realm) is None:
            return password
