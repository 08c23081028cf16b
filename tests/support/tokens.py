"""Real RS256 tokens for tests of features that need an authenticated caller.

The keys are generated per test session and verified by the production ``JwtVerifier``; only the
source of the issuer's keys is static (identity's own tests cover JWKS discovery).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from plexica.identity.jwt import Issuer, JwtVerifier

AUDIENCE = "plexica-api"
BASE = "http://issuer.test/realms"
OPERATOR_REALM = "plexica-platform"


@dataclass
class StaticIssuers:
    """Issuers and keys known up front: the operator realm plus any tenant realm registered."""

    signing_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    kid: str = "test-key-1"
    issuers: dict[str, Issuer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.add(OPERATOR_REALM, None, None)

    def add(self, realm: str, tenant_id: UUID | None, tenant_slug: str | None) -> Issuer:
        issuer = Issuer(
            f"{BASE}/{realm}", tenant_id, tenant_slug, {self.kid: self.signing_key.public_key()}
        )
        self.issuers[issuer.url] = issuer
        return issuer

    def add_tenant(self, tenant_id: UUID, slug: str) -> Issuer:
        return self.add(f"plexica-{slug}", tenant_id, slug)

    async def issuer(self, url: str) -> Issuer | None:
        return self.issuers.get(url)

    async def key(self, issuer: Issuer, kid: str) -> Any | None:
        return issuer.keys.get(kid)

    def verifier(self) -> JwtVerifier:
        return JwtVerifier(self, AUDIENCE)

    def token(
        self,
        realm: str = OPERATOR_REALM,
        *,
        sub: str | None = None,
        roles: list[str] | None = None,
        ttl: int = 300,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload = {
            "iss": f"{BASE}/{realm}",
            "sub": sub or str(uuid.uuid4()),
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + ttl,
            "realm_access": {"roles": roles or []},
            **claims,
        }
        return jwt.encode(payload, self.signing_key, algorithm="RS256", headers={"kid": self.kid})

    def operator_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(roles=['super_admin'])}"}
