"""What provisioning and user management need from an identity provider.

Two implementations: the built-in OIDC provider (embedded mode) and Keycloak (Admin REST API).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from plexica_sdk.errors import PlexicaError
from plexica_sdk.revocation import Revocation


class WrongPasswordError(PlexicaError):
    """The current password given to change it is not the user's (403: the caller is signed
    in, but did not prove they know the password)."""

    status, code = 403, "wrong_password"


@dataclass(frozen=True)
class RealmUser:
    id: str
    email: str
    enabled: bool
    roles: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class RealmClient:
    client_id: str
    public: bool
    redirect_uris: tuple[str, ...] = ()
    secret: str | None = None


class IdentityAdapter(Protocol):
    async def create_realm(self, realm: str, tenant_id: UUID | None) -> None:
        """Create the realm with roles ``tenant_admin`` and ``member``, the public web client
        (PKCE) and an audience + ``tenant_id`` claim in access tokens. Idempotent."""
        ...

    async def delete_realm(self, realm: str) -> None:
        """Idempotent: deleting a missing realm succeeds."""
        ...

    async def set_realm_enabled(self, realm: str, enabled: bool) -> None: ...

    async def create_user(
        self,
        realm: str,
        email: str,
        password: str | None,
        roles: frozenset[str],
        *,
        enabled: bool = True,
    ) -> RealmUser:
        """``enabled=False`` with no password: an invited user, who cannot sign in until they
        accept the invitation (ADR 0225)."""
        ...

    async def delete_user(self, realm: str, user_id: str) -> None:
        """Idempotent: deleting a missing user succeeds."""
        ...

    async def list_users(self, realm: str) -> list[RealmUser]: ...

    async def set_password(self, realm: str, email: str, password: str) -> RealmUser:
        """Replace the password of the user ``email``; their sessions end."""
        ...

    async def change_password(
        self, realm: str, user_id: str, current: str, new: str, *, keep_session: str | None
    ) -> list[Revocation]:
        """The user's own change: ``current`` must be their password (else
        ``WrongPasswordError``, nothing changed); then their other sign-in sessions end, all but
        ``keep_session`` (the caller's ``sid``; None: every one). Returns the revocations to
        note once committed."""
        ...

    async def set_user_enabled(self, realm: str, user_id: str, enabled: bool) -> None: ...

    async def set_user_roles(self, realm: str, user_id: str, roles: frozenset[str]) -> None: ...

    async def end_sessions(self, realm: str, user_id: str) -> None:
        """End the user's sign-in sessions at the provider: their refresh tokens stop working."""
        ...

    async def create_client(
        self,
        realm: str,
        client_id: str,
        *,
        public: bool,
        redirect_uris: tuple[str, ...] = (),
        roles: frozenset[str] = frozenset(),
    ) -> RealmClient:
        """A confidential client without redirect URIs is a service client: client credentials
        only, its tokens carry ``roles`` and ``service: true``."""
        ...

    async def set_client_enabled(self, realm: str, client_id: str, enabled: bool) -> None:
        """A disabled client gets no new tokens. Unknown client: NotFoundError."""
        ...

    async def rotate_client_secret(self, realm: str, client_id: str) -> str:
        """A new secret (returned once); the old one stops working at once."""
        ...

    async def delete_client(self, realm: str, client_id: str) -> None:
        """Idempotent: deleting a missing client succeeds."""
        ...

    async def rotate_keys(self, realm: str) -> None: ...

    def issuer_url(self, realm: str) -> str: ...
