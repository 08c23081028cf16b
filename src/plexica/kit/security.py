"""Request authentication and authorization for the platform's routes.

The verifier behind ``get_principal`` is the core state's ``verifier`` (set by the composition
root): the identity domain provides the JWKS-backed implementation. Deny by default: a route is
protected by depending on ``PrincipalDep`` or one of the ``require_*`` dependencies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Protocol

import structlog
from fastapi import Depends, Request

from plexica.kit.state import configured, core_state
from plexica_sdk.auth import MAX_TOKEN_BYTES, bearer_challenge, bearer_of
from plexica_sdk.context import Principal
from plexica_sdk.errors import ForbiddenError, UnauthenticatedError


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Principal:
        """Return the principal of a valid token; raise UnauthenticatedError otherwise."""
        ...


def bearer_token(request: Request) -> str:
    token = bearer_of(request.headers.get("authorization"))
    if token is None:
        raise UnauthenticatedError("a bearer token is required", headers=bearer_challenge())
    if len(token) > MAX_TOKEN_BYTES:
        raise UnauthenticatedError("invalid token", headers=bearer_challenge())
    return token.strip()


async def get_principal(request: Request) -> Principal:
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    verifier = configured(
        core_state(request).verifier, "authentication is not configured on this service"
    )
    principal = await verifier.verify(bearer_token(request))
    request.state.principal = principal
    structlog.contextvars.bind_contextvars(
        user_id=principal.subject,
        tenant_id=str(principal.tenant_id) if principal.tenant_id else None,
    )
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def require_operator(principal: PrincipalDep) -> Principal:
    if not principal.is_operator:
        raise ForbiddenError("this action needs the platform operator role")
    return principal


OperatorDep = Annotated[Principal, Depends(require_operator)]


def require_permission(permission: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets through only principals granted ``permission``."""

    async def check(principal: PrincipalDep) -> Principal:
        if not principal.has_permission(permission):
            raise ForbiddenError(f"missing permission {permission}")
        return principal

    return check


def require_role(*roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: PrincipalDep) -> Principal:
        if not principal.roles.intersection(roles):
            raise ForbiddenError(f"needs one of the roles: {', '.join(roles)}")
        return principal

    return check
