"""The core's events (``source: /plexica/core``), as the core's schema registry declares them
(served at ``/api/core/v1/events/schemas/<type>/<version>``)."""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from plexica_sdk.contracts.base import EventData


class _Tenant(EventData):
    id: UUID
    slug: str
    name: str
    state: str
    schema_version: str | None


class TenantProvisioned(_Tenant):
    event_type: ClassVar[str] = "plexica.tenant.provisioned"


class TenantSuspended(_Tenant):
    event_type: ClassVar[str] = "plexica.tenant.suspended"


class TenantReactivated(_Tenant):
    event_type: ClassVar[str] = "plexica.tenant.reactivated"


class TenantDeleted(_Tenant):
    event_type: ClassVar[str] = "plexica.tenant.deleted"


class TenantFailed(_Tenant):
    event_type: ClassVar[str] = "plexica.tenant.failed"


class PluginInstalled(EventData):
    event_type: ClassVar[str] = "plexica.plugin.installed"
    plugin_id: str
    version: str


class PluginEnabled(EventData):
    event_type: ClassVar[str] = "plexica.plugin.enabled"
    plugin_id: str


class PluginDisabled(EventData):
    event_type: ClassVar[str] = "plexica.plugin.disabled"
    plugin_id: str


class PluginUninstalled(EventData):
    event_type: ClassVar[str] = "plexica.plugin.uninstalled"
    plugin_id: str
    purged: bool


class UserInvited(EventData):
    event_type: ClassVar[str] = "plexica.user.invited"
    user_id: UUID
    roles: tuple[str, ...]
    # Set when the user was invited by e-mail.
    invite_id: UUID | None = None


class UserRoleChanged(EventData):
    event_type: ClassVar[str] = "plexica.user.role_changed"
    user_id: UUID
    before: tuple[str, ...]
    after: tuple[str, ...]


class _Invite(EventData):
    user_id: UUID
    invite_id: UUID


class UserInviteResent(_Invite):
    event_type: ClassVar[str] = "plexica.user.invite_resent"


class UserInviteRevoked(_Invite):
    event_type: ClassVar[str] = "plexica.user.invite_revoked"


class UserInviteAccepted(_Invite):
    event_type: ClassVar[str] = "plexica.user.invite_accepted"


MODELS: tuple[type[EventData], ...] = (
    TenantProvisioned,
    TenantSuspended,
    TenantReactivated,
    TenantDeleted,
    TenantFailed,
    PluginInstalled,
    PluginEnabled,
    PluginDisabled,
    PluginUninstalled,
    UserInvited,
    UserRoleChanged,
    UserInviteResent,
    UserInviteRevoked,
    UserInviteAccepted,
)
