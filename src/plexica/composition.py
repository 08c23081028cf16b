"""Builds the domain services with their collaborators, for the API and the CLI alike.

Domains that give a tenant a resource add their ``ProvisioningStep`` to ``provisioning_steps``
(in order: identity realm, storage bucket, default plugins).
"""

from __future__ import annotations

from dataclasses import dataclass

from plexica.kit.db import Database
from plexica.kit.provisioning import ProvisioningStep
from plexica.settings import Settings
from plexica.tenants.service import TenantService


def provisioning_steps(settings: Settings, db: Database) -> list[ProvisioningStep]:
    """The steps after the tenant's schema; identity and storage add theirs here."""
    return []


@dataclass
class Services:
    tenants: TenantService

    async def start(self) -> None:
        await self.tenants.start()

    async def stop(self) -> None:
        await self.tenants.stop()


def build_services(settings: Settings, db: Database) -> Services:
    redis_url = str(settings.redis_url) if settings.redis_url else None
    return Services(
        tenants=TenantService(db, provisioning_steps(settings, db), redis_url=redis_url)
    )
