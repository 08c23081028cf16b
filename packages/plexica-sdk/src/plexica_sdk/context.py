"""Who is calling: the verified principal of a request, shared by the platform and plugins."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

SUPER_ADMIN = "super_admin"
TENANT_ADMIN = "tenant_admin"
MEMBER = "member"


class Principal(BaseModel):
    """A verified caller. Built only from a verified token, never from request headers.

    ``tenant_id``/``tenant_slug`` are None for platform operators (the operator realm) and for
    service tokens that are not bound to a tenant.
    """

    model_config = ConfigDict(frozen=True)

    subject: str
    issuer: str
    tenant_id: UUID | None = None
    tenant_slug: str | None = None
    email: str | None = None
    roles: frozenset[str] = Field(default_factory=frozenset)
    permissions: frozenset[str] = Field(default_factory=frozenset)
    client_id: str | None = None
    is_service: bool = False
    # The sign-in session the token belongs to (its ``sid``): what survives when a user ends
    # their other sessions.
    session_id: str | None = None
    # The operator acting as this user in a support session: the token's ``act`` claim
    # (RFC 8693), by e-mail or subject.
    acting_operator: str | None = None

    @property
    def actor(self) -> str:
        """Who the audit log names for this caller: both identities in a support session."""
        own = self.email or self.subject
        return f"{self.acting_operator} as {own}" if self.acting_operator else own

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None and SUPER_ADMIN in self.roles

    def has_permission(self, permission: str) -> bool:
        """``crm:deal:write`` is granted by itself, ``crm:deal:*``, ``crm:*`` or ``*``."""
        if permission in self.permissions or "*" in self.permissions:
            return True
        parts = permission.split(":")
        return any(":".join(parts[:i]) + ":*" in self.permissions for i in range(1, len(parts)))
