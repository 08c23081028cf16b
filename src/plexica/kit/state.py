"""The core app's state: one typed object on ``app.state.core``, made by ``create_app``.

The composition root sets ``settings`` (and ``verifier`` when the caller owns it); the lifespan
and the domains' ``wiring`` modules fill the rest as they start. A field typed ``X | None`` is
empty before the lifespan has run, or in the modes that have no such object. Tests may set the
fields marked "(tests)" before the lifespan runs, or replace an object while the app serves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from fastapi import Request
from starlette.applications import Starlette

from plexica_sdk.errors import UnavailableError

# Type-only: the domains read this state and it names their types, so these imports stay out
# of the runtime (import-linter's `top-level-acyclic` ignores them, see pyproject.toml).
if TYPE_CHECKING:
    import httpx
    from starlette.types import ASGIApp

    from plexica.composition import Services
    from plexica.events.runtime import EventRuntime
    from plexica.flags.service import FlagService
    from plexica.gateway.service import Gateway
    from plexica.identity.adapter import IdentityAdapter
    from plexica.identity.throttle import LoginThrottle
    from plexica.kit.db import Database
    from plexica.kit.mail import Mailer
    from plexica.kit.security import TokenVerifier
    from plexica.plugins.api import TenantLookup
    from plexica.plugins.service import Installer, ReadinessProbe
    from plexica.settings import Settings
    from plexica.storage.service import StorageService
    from plexica_sdk.revocation import RevocationList

T = TypeVar("T")


@dataclass
class CoreState:
    settings: Settings
    # Passed in by a caller that owns it, else built by identity's lifespan and cleared after.
    verifier: TokenVerifier | None = None
    db: Database | None = None
    # Plugin apps mounted in-process (embedded mode) or URLs; the plugins wiring adds the URLs.
    plugin_endpoints: dict[str, str | ASGIApp] = field(default_factory=dict)
    plugin_probe: ReadinessProbe | None = None  # (tests) else an HTTP probe of the endpoints
    plugin_installer: Installer | None = None
    plugin_tenants: TenantLookup | None = None  # a composition root's tenant lookup (ADR 0073)
    storage: StorageService | None = None
    flags: FlagService | None = None
    login_throttle: LoginThrottle | None = None
    mailer: Mailer | None = None  # (tests) else the settings' mailer
    identity: IdentityAdapter | None = None  # (tests) else built-in or Keycloak
    jwks_transport: httpx.AsyncBaseTransport | None = None  # (tests) JWKS without a socket
    revocations: RevocationList | None = None
    services: Services | None = None
    gateway: Gateway | None = None
    events: EventRuntime | None = None  # the embedded mode's outbox relay and delivery
    clock: Callable[[], datetime] | None = None  # (tests) else the wall clock


def started(value: T | None, name: str) -> T:
    """A field the lifespan fills, read by a route (which runs only once the lifespan has)."""
    if value is None:
        msg = f"the core's {name} is set by its lifespan, which has not run"
        raise RuntimeError(msg)
    return value


def configured(value: T | None, message: str) -> T:
    """A field left empty in the modes that run without it: a route needing it answers 503."""
    if value is None:
        raise UnavailableError(message)
    return value


def state_of(app: Starlette) -> CoreState:
    state: CoreState = app.state.core
    return state


def core_state(request: Request) -> CoreState:
    return state_of(request.app)
