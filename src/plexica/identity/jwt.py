"""Access-token verification shared by the core, the gateway decision and every service.

RS256 only (``alg: none`` and HS256-with-a-public-key are refused by construction). Which issuers
are accepted, and with which keys, is decided by an ``IssuerResolver``: the identity domain's
resolver knows the tenant realms and fetches their JWKS; tests may resolve a static key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

import jwt

from plexica.kit.security import MAX_TOKEN_BYTES
from plexica_sdk.context import Principal
from plexica_sdk.errors import UnauthenticatedError

ALGORITHMS = ["RS256"]
INVALID = "invalid token"


@dataclass(frozen=True)
class Issuer:
    """An accepted issuer: the operator realm (tenant None) or one tenant's realm."""

    url: str
    tenant_id: UUID | None
    tenant_slug: str | None
    keys: Mapping[str, Any] = field(default_factory=dict)  # kid -> public key


class IssuerResolver(Protocol):
    async def issuer(self, url: str) -> Issuer | None:
        """The issuer at ``url`` if it is one of ours, else None."""
        ...

    async def key(self, issuer: Issuer, kid: str) -> Any | None:
        """The public key ``kid`` of ``issuer`` (may refetch the JWKS once); None if unknown."""
        ...


PermissionResolver = Callable[[UUID | None, frozenset[str]], Awaitable[frozenset[str]]]


async def _no_permissions(_: UUID | None, __: frozenset[str]) -> frozenset[str]:
    return frozenset()


class JwtVerifier:
    def __init__(
        self,
        resolver: IssuerResolver,
        audience: str,
        *,
        leeway_seconds: int = 30,
        permissions: PermissionResolver = _no_permissions,
    ) -> None:
        self.resolver = resolver
        self.audience = audience
        self.leeway = leeway_seconds
        self.permissions = permissions

    async def verify(self, token: str) -> Principal:
        # Every failure gives the same answer: nothing tells a caller which check failed.
        if len(token) > MAX_TOKEN_BYTES:
            raise UnauthenticatedError(INVALID)
        try:
            parsed = jwt.decode_complete(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise UnauthenticatedError(INVALID) from None
        header, unverified = parsed["header"], parsed["payload"]
        if header.get("alg") not in ALGORITHMS or not isinstance(header.get("kid"), str):
            raise UnauthenticatedError(INVALID)
        iss = unverified.get("iss")
        issuer = await self.resolver.issuer(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise UnauthenticatedError(INVALID)
        key = await self.resolver.key(issuer, header["kid"])
        if key is None:
            raise UnauthenticatedError(INVALID)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=issuer.url,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "sub", "aud"]},
            )
        except jwt.PyJWTError:
            raise UnauthenticatedError(INVALID) from None
        return await self._principal(issuer, claims)

    async def _principal(self, issuer: Issuer, claims: dict[str, Any]) -> Principal:
        claimed_tenant = claims.get("tenant_id")
        if issuer.tenant_id is None:
            if claimed_tenant is not None:
                raise UnauthenticatedError(INVALID)
        elif claimed_tenant is not None and str(claimed_tenant) != str(issuer.tenant_id):
            raise UnauthenticatedError(INVALID)
        roles = frozenset(_roles(claims))
        return Principal(
            subject=str(claims["sub"]),
            issuer=issuer.url,
            tenant_id=issuer.tenant_id,
            tenant_slug=issuer.tenant_slug,
            email=claims.get("email"),
            roles=roles,
            permissions=await self.permissions(issuer.tenant_id, roles),
            client_id=claims.get("azp"),
            is_service=bool(claims.get("service", False)),
        )


def _roles(claims: dict[str, Any]) -> list[str]:
    """Roles from Keycloak's ``realm_access.roles`` or a flat ``roles`` claim."""
    realm_access = claims.get("realm_access")
    roles = realm_access.get("roles", []) if isinstance(realm_access, dict) else []
    flat = claims.get("roles", [])
    return [r for r in [*roles, *(flat if isinstance(flat, list) else [])] if isinstance(r, str)]
