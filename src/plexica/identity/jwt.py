"""Access-token verification: the RS256 core lives in the SDK so that plugins verify alike."""

from __future__ import annotations

from plexica_sdk.auth import (
    ALGORITHMS,
    INVALID,
    Issuer,
    IssuerResolver,
    JwksIssuerResolver,
    JwtVerifier,
    PermissionResolver,
)

__all__ = [
    "ALGORITHMS",
    "INVALID",
    "Issuer",
    "IssuerResolver",
    "JwksIssuerResolver",
    "JwtVerifier",
    "PermissionResolver",
]
