"""Names of the core events: the domains that own these changes publish them with
``events.service.publish`` in the transaction of the change."""

from __future__ import annotations

from enum import StrEnum


class CoreEvent(StrEnum):
    TENANT_PROVISIONED = "plexica.tenant.provisioned"
    TENANT_SUSPENDED = "plexica.tenant.suspended"
    TENANT_REACTIVATED = "plexica.tenant.reactivated"
    TENANT_DELETED = "plexica.tenant.deleted"
    TENANT_FAILED = "plexica.tenant.failed"
    PLUGIN_INSTALLED = "plexica.plugin.installed"
    PLUGIN_ENABLED = "plexica.plugin.enabled"
    PLUGIN_DISABLED = "plexica.plugin.disabled"
    PLUGIN_UNINSTALLED = "plexica.plugin.uninstalled"
    USER_INVITED = "plexica.user.invited"
    USER_ROLE_CHANGED = "plexica.user.role_changed"
    USER_INVITE_RESENT = "plexica.user.invite_resent"
    USER_INVITE_REVOKED = "plexica.user.invite_revoked"
    USER_INVITE_ACCEPTED = "plexica.user.invite_accepted"
