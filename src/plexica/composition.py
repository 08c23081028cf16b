"""Builds the domain services with their collaborators, for the API and the CLI alike.

Domains that give a tenant a resource add their ``ProvisioningStep`` to ``provisioning_steps``
(in order: identity realm, storage bucket, default plugins).
"""

from __future__ import annotations

from dataclasses import dataclass

from plexica.identity.adapter import IdentityAdapter
from plexica.identity.builtin import BuiltinIdentity, RealmStep
from plexica.kit.db import Database
from plexica.kit.provisioning import ProvisioningStep
from plexica.plugins.service import DefaultPluginsStep, Installer
from plexica.settings import Settings
from plexica.tenants.service import TenantService


def identity_adapter(settings: Settings, db: Database) -> IdentityAdapter:
    return BuiltinIdentity(db, settings.public_base_url)


def provisioning_steps(
    settings: Settings, db: Database, installer: Installer | None = None
) -> list[ProvisioningStep]:
    """The steps after the tenant's schema: identity realm, storage bucket, default plugins."""
    steps: list[ProvisioningStep] = [RealmStep(identity_adapter(settings, db), db)]
    defaults = [p.strip() for p in (settings.default_plugins or "").split(",") if p.strip()]
    if defaults and installer is not None:
        steps.append(DefaultPluginsStep(installer, defaults))
    return steps


@dataclass
class Services:
    tenants: TenantService

    async def start(self) -> None:
        await self.tenants.start()

    async def stop(self) -> None:
        await self.tenants.stop()


def build_services(
    settings: Settings, db: Database, installer: Installer | None = None
) -> Services:
    redis_url = str(settings.redis_url) if settings.redis_url else None
    steps = provisioning_steps(settings, db, installer)
    return Services(tenants=TenantService(db, steps, redis_url=redis_url))
