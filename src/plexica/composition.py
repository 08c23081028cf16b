"""Builds the domain services with their collaborators, for the API and the CLI alike.

Domains that give a tenant a resource add their ``ProvisioningStep`` to ``provisioning_steps``
(in order: identity realm, storage bucket, default plugins, the first admin's invitation).
"""

from __future__ import annotations

from dataclasses import dataclass

from plexica.identity.adapter import IdentityAdapter
from plexica.identity.builtin import BuiltinIdentity, RealmStep
from plexica.identity.first_admin import AdminInviteStep, FirstAdmin
from plexica.identity.invites import Invites
from plexica.identity.keycloak import KeycloakAdapter
from plexica.kit.db import Database
from plexica.kit.mail import Mailer
from plexica.kit.provisioning import ProvisioningStep
from plexica.mail.service import mailer_for
from plexica.plugins.service import DefaultPluginsStep, Installer
from plexica.settings import Settings
from plexica.storage.adapters import store_from_settings
from plexica.storage.provisioning import BucketStep
from plexica.storage.store import ObjectStore
from plexica.tenants.service import TenantService


def identity_adapter(settings: Settings, db: Database) -> IdentityAdapter:
    """Keycloak when PLEXICA_KEYCLOAK_URL is set, else the built-in provider."""
    if settings.keycloak_url is not None:
        return KeycloakAdapter.from_settings(settings)
    return BuiltinIdentity(db, settings.public_base_url)


def provisioning_steps(
    settings: Settings,
    db: Database,
    installer: Installer | None,
    store: ObjectStore,
    identity: IdentityAdapter,
    *,
    admin: FirstAdmin,
) -> list[ProvisioningStep]:
    """The steps after the tenant's schema: identity realm, storage bucket, default plugins, and
    last the first admin's invitation (ADR 0242), once the tenant has everything it needs."""
    steps: list[ProvisioningStep] = [
        RealmStep(identity, db),
        BucketStep(store, db),
    ]
    defaults = [p.strip() for p in (settings.default_plugins or "").split(",") if p.strip()]
    if defaults and installer is not None:
        steps.append(DefaultPluginsStep(installer, defaults))
    steps.append(AdminInviteStep(admin))
    return steps


@dataclass
class Services:
    tenants: TenantService
    first_admin: FirstAdmin
    owned_store: ObjectStore | None = None  # started and closed here when no app owns one

    async def start(self) -> None:
        if self.owned_store is not None:
            await self.owned_store.start()
        await self.tenants.start()

    async def stop(self) -> None:
        await self.tenants.stop()
        if self.owned_store is not None:
            await self.owned_store.close()


def build_services(
    settings: Settings,
    db: Database,
    *,
    installer: Installer | None = None,
    store: ObjectStore | None = None,
    identity: IdentityAdapter | None = None,
    mailer: Mailer | None = None,
) -> Services:
    """The app passes what its lifespan already owns; the CLI gets its own (closed on stop)."""
    redis_url = str(settings.redis_url) if settings.redis_url else None
    owned = None
    if store is None:
        store = owned = store_from_settings(settings)
    identity = identity or identity_adapter(settings, db)
    admin = FirstAdmin(Invites(db, identity, mailer or mailer_for(settings, db), settings))
    steps = provisioning_steps(settings, db, installer, store, identity, admin=admin)
    return Services(TenantService(db, steps, redis_url=redis_url), admin, owned_store=owned)
