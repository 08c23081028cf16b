"""The built-in OIDC provider: realms, keys, users, clients and permissions (the token grants
are in ``tokens``).

Services take the caller's session and never commit. Secrets are stored only as hashes:
passwords with argon2id, client secrets, codes and refresh tokens (random, high-entropy) with
SHA-256.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncSession

from plexica.identity import key_repository, mfa_repository, repository, signing
from plexica.identity.adapter import WrongPasswordError
from plexica.identity.names import CLI_CLIENT, CLI_REDIRECT, OPERATOR_REALM, issuer_url
from plexica.identity.schemas import User
from plexica_sdk.context import MEMBER, SUPER_ADMIN, TENANT_ADMIN
from plexica_sdk.errors import ConflictError, NotFoundError, PlexicaError

__all__ = ["CLI_CLIENT", "CLI_REDIRECT", "OPERATOR_REALM", "issuer_url"]  # their home: names

AUDIENCE = "plexica-api"
WEB_CLIENT = "plexica-web"
ACCESS_TTL = 300
TENANT_ROLES = frozenset({TENANT_ADMIN, MEMBER})
OPERATOR_ROLES = frozenset({SUPER_ADMIN})

# Granted to every tenant's roles whatever the role_permissions table says; plugins add more.
DEFAULT_PERMISSIONS: dict[str, frozenset[str]] = {
    SUPER_ADMIN: frozenset({"*"}),
    TENANT_ADMIN: frozenset(
        {
            "identity:users:read",
            "identity:users:write",
            "identity:roles:write",
            "identity:clients:read",
            "identity:clients:write",
            "audit:read",
            "tenant:settings:write",
        }
    ),
    MEMBER: frozenset(),
}

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
# Verified against when the account does not exist, so that both paths take as long. Made on
# first use: hashing costs about a second on a busy machine, too much for every CLI start.
_dummy_hash: str | None = None


def use_password_hasher(hasher: PasswordHasher) -> None:
    """Replace the argon2 parameters (tests use cheaper ones; existing hashes still verify)."""
    global _hasher, _dummy_hash  # noqa: PLW0603 - one process-wide policy
    _hasher = hasher
    _dummy_hash = None


class OAuthError(PlexicaError):
    """An OAuth 2.0 error: the token endpoint answers it in RFC 6749 §5.2 form."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description, code=error, status=status)
        self.error = error


class InvalidInputError(PlexicaError):
    status, code = 422, "invalid_input"


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def now_utc() -> datetime:
    return datetime.now(UTC)


def realm_roles(realm: str) -> frozenset[str]:
    return OPERATOR_ROLES if realm == OPERATOR_REALM else TENANT_ROLES


def check_roles(realm: str, roles: Iterable[str]) -> frozenset[str]:
    wanted = frozenset(roles)
    unknown = wanted - realm_roles(realm)
    if unknown:
        raise InvalidInputError(
            f"unknown role {sorted(unknown)[0]}",
            details={"allowed": sorted(realm_roles(realm))},
        )
    return wanted


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def _verify_password(stored: str | None, password: str) -> bool:
    global _dummy_hash  # noqa: PLW0603 - computed once per process
    if stored is None and _dummy_hash is None:
        _dummy_hash = await hash_password(secrets.token_urlsafe(16))
    try:
        ok = await asyncio.to_thread(_hasher.verify, stored or _dummy_hash or "", password)
        return ok and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def generate_client_secret() -> str:
    return secrets.token_urlsafe(32)


# --- realms ---------------------------------------------------------------------------------


async def ensure_realm(
    session: AsyncSession, realm: str, tenant_id: UUID | None, base_url: str
) -> None:
    """Create the realm with a signing key and the web and CLI clients. Idempotent."""
    await repository.lock_realm(session, realm)
    existing = await repository.get_realm(session, realm)
    if existing is not None and existing["tenant_id"] != tenant_id:
        raise ConflictError(f"realm {realm} belongs to another tenant")
    await repository.upsert_realm(session, realm, tenant_id)
    if not await key_repository.of_realm(session, realm):
        await signing.create_first(session, realm)
    # The web shell's callback at the current public URL is added, earlier ones are kept: a
    # deployment that changes PLEXICA_PUBLIC_URL (or serves several) keeps signing users in.
    callback = web_callback(base_url)
    web = await repository.get_client(session, realm, WEB_CLIENT)
    known = list(web["redirect_uris"]) if web is not None else []
    if callback not in known:
        await repository.upsert_client(
            session,
            realm,
            WEB_CLIENT,
            public=True,
            secret_hash=None,
            redirect_uris=[*known, callback],
            roles=[],
        )
    if not await repository.client_exists(session, realm, CLI_CLIENT):
        await repository.upsert_client(
            session, realm, CLI_CLIENT, public=True, secret_hash=None,
            redirect_uris=[CLI_REDIRECT], roles=[],
        )  # fmt: skip


def web_callback(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/auth/callback"


async def sync_web_callbacks(session: AsyncSession, base_url: str) -> int:
    """Register the web shell's callback at ``base_url`` for every realm (run at start-up): a
    tenant made while the platform answered at another URL (another port, host or proxy) still
    signs in. Earlier callbacks are kept, as in ``ensure_realm``. Returns the realms updated."""
    return await repository.add_redirect_uri(session, WEB_CLIENT, web_callback(base_url))


async def find_realm(session: AsyncSession, realm: str) -> dict[str, Any] | None:
    """The realm, enabled or not (``realm_or_404`` hides a disabled one)."""
    return await repository.get_realm(session, realm)


async def purge_expired(session: AsyncSession) -> None:
    """Delete the authorization codes, refresh tokens and sign-in challenges past their expiry."""
    await repository.purge_expired(session, now_utc())
    await mfa_repository.purge_expired_challenges(session)


async def realm_or_404(session: AsyncSession, realm: str) -> dict[str, Any]:
    found = await repository.get_realm(session, realm)
    if found is None or not found["enabled"]:
        raise NotFoundError("no such realm")
    return found


async def rotate_keys(session: AsyncSession, realm: str) -> str:
    """A new key, published now and signing shortly; the previous one stays published until its
    last token expires (ADR 0151)."""
    return (await signing.rotate(session, realm)).kid


async def jwks(session: AsyncSession, realm: str) -> dict[str, Any]:
    return await signing.jwks(session, realm)


# --- users ----------------------------------------------------------------------------------


def to_user(row: dict[str, Any]) -> User:
    return User(id=row["id"], email=row["email"], enabled=row["enabled"], roles=list(row["roles"]))


async def create_user(
    session: AsyncSession,
    realm: str,
    email: str,
    password: str | None,
    roles: Iterable[str],
    *,
    enabled: bool = True,
) -> User:
    wanted = check_roles(realm, roles)
    email = email.strip().lower()
    user_id = uuid.uuid4()
    hashed = await hash_password(password) if password else None
    inserted = await repository.insert_user(
        session, user_id, realm=realm, email=email, password_hash=hashed, roles=sorted(wanted),
        enabled=enabled,
    )  # fmt: skip
    if not inserted:
        raise ConflictError("a user with this email exists")
    return User(id=user_id, email=email, enabled=enabled, roles=sorted(wanted))


async def user_or_404(session: AsyncSession, realm: str, user_id: UUID) -> User:
    row = await repository.user_by_id(session, realm, user_id)
    if row is None:
        raise NotFoundError("no such user")
    return to_user(row)


async def set_user_enabled(session: AsyncSession, realm: str, user_id: UUID, enabled: bool) -> User:
    user = await user_or_404(session, realm, user_id)
    await repository.update_user(session, user_id, enabled=enabled)
    if not enabled:
        await repository.revoke_user_refresh(session, user_id)
    return user.model_copy(update={"enabled": enabled})


async def set_user_roles(
    session: AsyncSession, realm: str, user_id: UUID, roles: Iterable[str]
) -> User:
    wanted = sorted(check_roles(realm, roles))
    user = await user_or_404(session, realm, user_id)
    await repository.update_user(session, user_id, roles=wanted)
    return user.model_copy(update={"roles": wanted})


async def set_password(session: AsyncSession, realm: str, email: str, password: str) -> User:
    row = await repository.user_by_email(session, realm, email.strip().lower())
    if row is None:
        raise NotFoundError("no such user")
    await repository.update_user(session, row["id"], password_hash=await hash_password(password))
    await repository.revoke_user_refresh(session, row["id"])
    return to_user(row)


async def change_password(
    session: AsyncSession, realm: str, user_id: UUID, current: str, new: str, *, keep: UUID | None
) -> set[UUID]:
    """A user's own change, with their current password; ends their other sign-in sessions
    (all but ``keep``) and returns them."""
    row = await repository.user_by_id(session, realm, user_id)
    ok = await _verify_password(row["password_hash"] if row else None, current)
    if row is None or not ok or not row["enabled"]:
        raise WrongPasswordError("The current password is not correct.")
    await repository.update_user(session, user_id, password_hash=await hash_password(new))
    return await repository.end_user_sessions(session, user_id, keep)


async def enabled_user(session: AsyncSession, realm: str, user_id: UUID) -> dict[str, Any] | None:
    row = await repository.user_by_id(session, realm, user_id)
    return row if row is not None and row["enabled"] else None


async def authenticate(
    session: AsyncSession, realm: str, email: str, password: str
) -> dict[str, Any] | None:
    row = await repository.user_by_email(session, realm, email.strip().lower())
    ok = await _verify_password(row["password_hash"] if row else None, password)
    if row is None or not ok or not row["enabled"]:
        return None
    return row


# --- clients --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedClient:
    client_id: str
    public: bool
    redirect_uris: tuple[str, ...]
    secret: str | None


async def create_client(
    session: AsyncSession,
    realm: str,
    client_id: str,
    *,
    public: bool,
    redirect_uris: Iterable[str] = (),
    roles: Iterable[str] = (),
) -> CreatedClient:
    """A confidential client gets a new secret, shown once; only its hash is stored."""
    secret = None if public else generate_client_secret()
    uris = tuple(redirect_uris)
    await repository.upsert_client(
        session,
        realm,
        client_id,
        public=public,
        secret_hash=sha256(secret) if secret else None,
        redirect_uris=uris,
        roles=check_roles(realm, roles),
    )
    return CreatedClient(client_id, public, uris, secret)


async def authenticate_client(
    session: AsyncSession, realm: str, client_id: str | None, secret: str | None
) -> dict[str, Any]:
    client = await repository.get_client(session, realm, client_id) if client_id else None
    if client is None or not client["enabled"]:
        raise OAuthError("invalid_client", "client authentication failed", status=401)
    if not client["public"]:
        expected = client["secret_hash"] or ""
        if secret is None or not hmac.compare_digest(sha256(secret), expected):
            raise OAuthError("invalid_client", "client authentication failed", status=401)
    elif secret is not None:
        raise OAuthError("invalid_client", "client authentication failed", status=401)
    return client


def redirect_allowed(client: dict[str, Any], redirect_uri: str) -> bool:
    return redirect_uri in client["redirect_uris"]


# --- permissions ----------------------------------------------------------------------------


async def resolve_permissions(
    session: AsyncSession, tenant_id: UUID | None, roles: frozenset[str]
) -> frozenset[str]:
    """Defaults of the roles plus the tenant's grants; nothing for unknown roles."""
    granted: set[str] = set()
    for role in roles:
        if role == SUPER_ADMIN and tenant_id is not None:
            continue  # a tenant realm cannot mint an operator
        granted |= DEFAULT_PERMISSIONS.get(role, frozenset())
    if tenant_id is not None and roles:
        granted |= set(await repository.permissions_of(session, tenant_id, roles))
    return frozenset(granted)


async def grant_permissions(
    session: AsyncSession, tenant_id: UUID, role: str, permissions: Iterable[str]
) -> None:
    """Called by plugin installation (and the roles API) to give a role new permissions."""
    await repository.grant(session, tenant_id, role, permissions)


async def revoke_permissions(
    session: AsyncSession, tenant_id: UUID, role: str, permissions: Iterable[str]
) -> None:
    await repository.revoke(session, tenant_id, role, permissions)


async def role_permissions(session: AsyncSession, tenant_id: UUID, role: str) -> list[str]:
    return sorted(
        DEFAULT_PERMISSIONS.get(role, frozenset())
        | set(await repository.permissions_of(session, tenant_id, [role]))
    )


async def last_sign_ins(session: AsyncSession) -> dict[UUID, datetime]:
    """When a user of each tenant last signed in with the built-in provider (none under
    Keycloak, which keeps its own sessions)."""
    return await repository.last_sign_ins(session)
