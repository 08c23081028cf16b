"""Request and response models of the identity domain."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


def _lower_matching(value: str, pattern: re.Pattern[str], refusal: str) -> str:
    """``value`` trimmed and lower-cased, refused unless it matches ``pattern``."""
    value = value.strip().lower()
    if not pattern.match(value):
        raise ValueError(refusal)
    return value


def _email(value: str) -> str:
    return _lower_matching(value, _EMAIL, "not an email address")


Email = Annotated[str, Field(max_length=320), AfterValidator(_email)]


class User(BaseModel):
    id: UUID
    email: str
    enabled: bool
    roles: list[str]


class UserCreate(BaseModel):
    email: Email
    roles: list[str] = Field(default_factory=lambda: ["member"], max_length=10)
    password: Annotated[str | None, Field(min_length=12, max_length=256)] = None


class PasswordReset(BaseModel):
    user: User
    password: str = Field(description="The new generated password, shown once.")


class UserCreated(BaseModel):
    user: User
    initial_password: str | None = Field(
        default=None, description="Set when no password was given: hand it to the user once."
    )


class RolesUpdate(BaseModel):
    roles: list[str] = Field(max_length=10)


class Me(BaseModel):
    subject: str
    issuer: str
    email: str | None
    tenant_id: UUID | None
    tenant_slug: str | None
    roles: list[str]
    permissions: list[str]
    is_operator: bool
    is_service: bool
    client_id: str | None


Permission = Annotated[str, Field(pattern=r"^[a-z0-9*][a-z0-9_:*.-]{0,199}$")]


class RolePermissions(BaseModel):
    role: str
    permissions: list[str]


class PermissionsGrant(BaseModel):
    permissions: list[Permission] = Field(min_length=1, max_length=100)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    refresh_token: str | None = None
    refresh_expires_in: int | None = None
    id_token: str | None = None
    scope: str


ClientId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{2,62}$")]


class ServiceClient(BaseModel):
    client_id: str
    description: str
    roles: list[str]
    state: str = Field(description="active, disabled or revoked")
    revoked_before: int = Field(
        description="Tokens issued before this time (epoch seconds) are refused; 0: none."
    )
    created_by: str
    created_at: datetime
    updated_at: datetime


class ServiceClientCreate(BaseModel):
    client_id: ClientId
    description: str = Field(default="", max_length=500)
    roles: list[str] = Field(default_factory=list, max_length=10)


class ServiceClientSecret(BaseModel):
    client: ServiceClient
    secret: str = Field(description="Shown once: only its hash is kept (built-in provider).")
    token_url: str


# --- invitations (ADR 0225) -------------------------------------------------------------------

Password = Annotated[str, Field(min_length=12, max_length=256)]
InviteTokenText = Annotated[str, Field(min_length=1, max_length=200)]


class InviteCreate(BaseModel):
    email: Email
    roles: list[str] = Field(default_factory=lambda: ["member"], max_length=10)


class Invite(BaseModel):
    id: UUID
    email: str
    roles: list[str]
    user_id: str
    status: str = Field(description="pending, expired, accepted or revoked")
    created_at: datetime
    sent_at: datetime
    expires_at: datetime
    sent_count: int


class AdminInvite(BaseModel):
    """The invitation of a tenant's first admin (ADR 0242)."""

    email: str
    status: str = Field(description="none (never sent), pending, expired, accepted or revoked")
    invite: Invite | None = None


class InviteToken(BaseModel):
    token: InviteTokenText


class InviteInfo(BaseModel):
    email: str
    tenant_slug: str | None
    expires_at: datetime
    password_min_length: int = Field(default=12, description="The tenant's shortest password")


class InviteAccept(BaseModel):
    token: InviteTokenText
    password: Password


class PasswordChange(BaseModel):
    # Whose password is the token's business alone: a user id in the body is refused.
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: Password

    @field_validator("new_password")
    @classmethod
    def _differs(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("current_password"):
            raise ValueError("choose a password other than the current one")
        return value


class PasswordChanged(BaseModel):
    sessions_ended: int = Field(description="Your other sign-in sessions, now ended.")


class InviteAccepted(BaseModel):
    email: str
    tenant_slug: str | None


class MfaStatus(BaseModel):
    enabled: bool
    recovery_codes_left: int


class TotpEnrolment(BaseModel):
    secret: str = Field(description="Base32, for an authenticator app's manual entry")
    otpauth_uri: str = Field(description="The same as an otpauth:// URI (what a QR code holds)")


class MfaCode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=64, description="A current code or a recovery code")


class RecoveryCodes(BaseModel):
    recovery_codes: list[str] = Field(description="Single-use; shown this once")


class SecurityPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mfa_required: bool = Field(
        description="Every user of the tenant signs in with two-step verification; those "
        "without it set it up at their next sign-in"
    )
    password_min_length: int = Field(
        default=12, ge=12, le=128,
        description="The shortest password a user may choose (checked when one is chosen)",
    )  # fmt: skip
    session_max_hours: int = Field(
        default=8, ge=1, le=720,
        description="How long a sign-in session lasts at most, however active (new sessions)",
    )  # fmt: skip
    session_idle_minutes: int = Field(
        default=480, ge=5, le=43200,
        description="A sign-in session unused this long ends (new sessions)",
    )  # fmt: skip

    @field_validator("session_idle_minutes")
    @classmethod
    def _within_max(cls, value: int, info: ValidationInfo) -> int:
        most = info.data.get("session_max_hours")
        if most is not None and value > most * 60:
            raise ValueError("must not be longer than the session's maximum length")
        return value


_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def _domain(value: str) -> str:
    return _lower_matching(value, _DOMAIN, "not a domain name, e.g. example.com")


_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"


def _issuer(value: str) -> str:
    value = value.strip()
    if not re.fullmatch(_PRINTABLE, value) or not re.match(
        r"^https?://[^\s/?#]+(/[^\s?#]*)?$", value
    ):
        raise ValueError("not an issuer URL, e.g. https://login.example.com/realms/acme")
    return value.rstrip("/") if value.count("/") > 2 else value


def _url(value: str) -> str:
    value = value.strip()
    if not re.fullmatch(_PRINTABLE, value) or not re.match(r"^https?://[^\s/?#]+[^\s#]*$", value):
        raise ValueError("not a URL, e.g. https://login.example.com/saml/metadata")
    return value


# The fields each protocol takes, and those of them it needs.
_TAKES = {"oidc": {"issuer", "client_id", "client_secret"}, "saml": {"metadata_url"}}
_NEEDS = {"oidc": {"issuer", "client_id"}, "saml": {"metadata_url"}}


class SsoProviderIn(BaseModel):
    """A tenant's company provider (ADR 0246, SAML: ADR 0248). Users of ``domains`` sign in
    there; an account is made on a first sign-in with ``default_role``."""

    model_config = ConfigDict(extra="forbid")

    display_name: str = Field(
        min_length=1, max_length=80, pattern=_PRINTABLE, description="Shown on the sign-in page"
    )
    protocol: Literal["oidc", "saml"] = Field(
        default="oidc",
        description="OpenID Connect (issuer, client ID and secret), or SAML 2.0 (the "
        "provider's metadata URL; with Keycloak only)",
    )
    issuer: Annotated[str, Field(max_length=500), AfterValidator(_issuer)] | None = Field(
        default=None, validate_default=True,
        description="OpenID Connect: the provider's issuer URL (its discovery document is read "
        "from it)",
    )  # fmt: skip
    client_id: str | None = Field(
        default=None, min_length=1, max_length=255, pattern=_PRINTABLE, validate_default=True
    )
    client_secret: SecretStr | None = Field(
        default=None, max_length=1024, validate_default=True,
        description="OpenID Connect; write-only; left out, the stored one is kept",
    )  # fmt: skip
    metadata_url: Annotated[str, Field(max_length=500), AfterValidator(_url)] | None = Field(
        default=None, validate_default=True,
        description="SAML: where the provider publishes its metadata (read when saved)",
    )  # fmt: skip
    domains: list[Annotated[str, AfterValidator(_domain)]] = Field(
        min_length=1, max_length=20, description="E-mail domains routed to the provider"
    )
    default_role: Literal["member", "tenant_admin"] = Field(
        default="member", description="The role of accounts made at a first sign-in"
    )
    required: bool = Field(
        default=False, description="Users of the domains may not sign in with a password"
    )

    @field_validator("issuer", "client_id", "client_secret", "metadata_url")
    @classmethod
    def _of_the_protocol(cls, value: object, info: ValidationInfo) -> object:
        protocol, name = info.data.get("protocol"), info.field_name
        if protocol is None or name is None:
            return value
        if value is None and name in _NEEDS[protocol]:
            raise ValueError(f"required with {protocol.upper()}")
        if value is not None and name not in _TAKES[protocol]:
            raise ValueError(f"not used with {protocol.upper()}")
        return value


class SsoProvider(BaseModel):
    display_name: str
    protocol: str = Field(description="oidc or saml")
    issuer: str = Field(description="The OpenID Connect issuer, or the SAML provider's entity ID")
    client_id: str | None = Field(description="OpenID Connect only")
    metadata_url: str | None = Field(description="SAML only")
    entity_id: str | None = Field(
        description="SAML only: register this service provider entity ID at the provider"
    )
    domains: list[str]
    default_role: str
    required: bool
    redirect_uri: str = Field(
        description="Register this redirect URI (SAML: assertion consumer service URL) at the "
        "provider"
    )
    updated_at: datetime


class PasswordPolicy(BaseModel):
    min_length: int = Field(description="The shortest password accepted")
    max_length: int = Field(description="The longest password accepted")


class SupportGrantCreate(BaseModel):
    hours: int = Field(ge=1, le=72, description="How long operators may start support sessions")


class SupportGrant(BaseModel):
    id: UUID
    granted_by: str
    granted_at: datetime
    expires_at: datetime
    revoked_by: str | None
    revoked_at: datetime | None


class SupportSession(BaseModel):
    id: UUID
    user_email: str
    operator_email: str
    started_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    end_reason: str | None


class SupportAccess(BaseModel):
    """The tenant's live grant (None: operators cannot act as its users) and recent sessions."""

    grant: SupportGrant | None
    sessions: list[SupportSession]


class SupportSessionStart(BaseModel):
    tenant: str = Field(min_length=1, max_length=63, description="The tenant's slug")
    email: Email


class SupportTokens(BaseModel):
    """Tokens of the user for the operator: an access token whose ``act`` names the operator,
    good until the session's end, without a refresh token."""

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the scheme, not a secret
    expires_in: int
    id_token: str | None = None
    session: SupportSession
