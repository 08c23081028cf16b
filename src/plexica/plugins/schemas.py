"""API and service models of the plugin catalog and installations."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy.engine import make_url

from plexica_sdk.errors import ConflictError, NotFoundError, PlexicaError


class VersionStatus(StrEnum):
    REGISTERED = "registered"
    PUBLISHED = "published"
    DEPRECATED = "deprecated"


class InstallStatus(StrEnum):
    INSTALLING = "installing"
    ACTIVE = "active"
    DISABLED = "disabled"
    UNINSTALLED = "uninstalled"
    FAILED = "failed"


class MigrationFile(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str = Field(pattern=r"^\d{4}_[a-z0-9_]+$")
    sql: str = Field(max_length=1_000_000)


class RegisterRequest(BaseModel):
    manifest: dict[str, Any]
    migrations: list[MigrationFile] = Field(default_factory=list)


class PluginVersionOut(BaseModel):
    plugin_id: str
    version: str
    status: VersionStatus
    name: str
    core: str
    registered_at: datetime | None = None
    manifest: dict[str, Any]


class InstallRequest(BaseModel):
    plugin_id: str
    version: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


class UpgradeRequest(BaseModel):
    version: str | None = None


class SettingsRequest(BaseModel):
    settings: dict[str, Any]


class InstallationOut(BaseModel):
    tenant_id: UUID
    plugin_id: str
    version: str
    status: InstallStatus
    reason: str | None
    settings: dict[str, Any]
    applied_migrations: list[str]
    retain_until: datetime | None
    updated_at: datetime | None


class CatalogEntryOut(BaseModel):
    """A plugin as one tenant sees it: its latest published version (None when the tenant has
    it but nothing is published any more) and this tenant's installation."""

    plugin_id: str
    name: str
    description: str
    publisher: str
    latest_version: str | None
    installed_version: str | None = None
    install_status: InstallStatus | None = None
    upgrade_available: bool = False
    compatible: bool
    incompatible_reason: str | None = None


class PluginLogin(BaseModel):
    """The plugin's own database login (ADR 0076): what its process connects with."""

    plugin_id: str
    role: str
    password: SecretStr

    def database_url(self, platform_url: str) -> str:
        """The platform's database URL with this login's user and password instead."""
        url = make_url(platform_url).set(
            drivername="postgresql", username=self.role, password=self.password.get_secret_value()
        )
        return url.render_as_string(hide_password=False)


class PluginNotFoundError(NotFoundError):
    code = "plugin_not_found"


class InstallationNotFoundError(NotFoundError):
    code = "installation_not_found"


class IncompatibleError(ConflictError):
    code = "incompatible"


class InvalidStateError(ConflictError):
    code = "invalid_state"


class InstallBusyError(InvalidStateError):
    """Another install, upgrade, uninstall or recovery of the plugin in the tenant holds the
    lease."""


class InvalidSettingsError(PlexicaError):
    status, code = 422, "invalid_settings"


class MigrationRefusedError(PlexicaError):
    status, code = 422, "migration_refused"


class PluginNotReadyError(PlexicaError):
    status, code = 503, "plugin_not_ready"


class InstallFailedError(PlexicaError):
    status, code = 500, "install_failed"
