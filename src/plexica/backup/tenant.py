"""A whole tenant in one archive, and a restore that makes a working tenant of it (ADR 0171).

Beside the schema and the files (``service``), ``tenant.json`` keeps what lives outside them:
the tenant record, its realm's users and permissions, its plugin installations and its flag
targeting. ``restore`` checks the archive, the slug and the schema revision before it makes
anything, then makes a new tenant (new id) through the tenancy saga with restore steps: schema,
realm, files, plugins, flags. A failing step undoes the ones before it and the tenant is
deleted; a restore a crash interrupted is left ``failed`` by the reconciler, and running the
same restore again deletes it first.
"""

from __future__ import annotations

import asyncio
import json
import tarfile
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from alembic.script import ScriptDirectory
from alembic.util import CommandError
from pydantic import BaseModel, Field, ValidationError

from plexica.backup.archive import BackupTooNewError, InvalidArchiveError, read_archive
from plexica.backup.postgres import libpq, load_schema, schema_exists
from plexica.backup.service import Progress, Summary, backup_tenant, load_objects
from plexica.flags import restore as saved_flags
from plexica.identity import restore as saved_identity
from plexica.identity.adapter import IdentityAdapter
from plexica.kit.db import Database
from plexica.kit.migrate import alembic_config, upgrade_schema
from plexica.kit.provisioning import ProvisioningStep, TenantRef
from plexica.plugins import restore as saved_plugins
from plexica.plugins.service import Installer
from plexica.storage.provisioning import BucketStep
from plexica.storage.service import Scope, StorageService
from plexica.storage.store import ObjectStore
from plexica.tenants import saga
from plexica.tenants.errors import TenantExistsError, TenantNotFoundError
from plexica.tenants.schemas import State, TenantCreate, validate_slug
from plexica.tenants.service import RESTORE_STEP, TenantService
from plexica_sdk.errors import ConflictError


class SavedTenant(BaseModel):
    id: UUID
    slug: str
    name: str
    admin_email: str
    schema_revision: str | None = None
    realm: saved_identity.SavedRealm = Field(default_factory=saved_identity.SavedRealm)
    plugins: list[saved_plugins.SavedInstallation] = Field(default_factory=list)
    flags: list[saved_flags.SavedFlag] = Field(default_factory=list)


@dataclass
class Platform:
    """What a whole-tenant backup or restore works with."""

    database_url: str
    db: Database
    store: ObjectStore
    tenants: TenantService
    identity: IdentityAdapter
    installer: Installer


def origin_of(backup_id: str) -> str:
    return f"restore of backup {backup_id}"


async def backup(p: Platform, slug: str, out: Path, progress: Progress | None = None) -> Summary:
    tenant = await p.tenants.get(slug)
    if tenant.state not in (State.ACTIVE, State.SUSPENDED):
        raise ConflictError(
            f"tenant {slug} is {tenant.state.value}; only a live tenant is backed up"
        )
    realm = await saved_identity.saved_realm(p.identity, p.db, tenant.ref.realm, tenant.id)
    async with p.db.session() as session:
        installs = await saved_plugins.saved_installations(session, tenant.id)
        targets = await saved_flags.tenant_targets(session, tenant.id, tenant.slug)
    saved = SavedTenant(
        id=tenant.id, slug=tenant.slug, name=tenant.name, admin_email=tenant.admin_email,
        schema_revision=tenant.schema_version, realm=realm, plugins=installs, flags=targets,
    )  # fmt: skip
    meta = {"backup_id": str(uuid.uuid4()), "schema_revision": tenant.schema_version}
    return await backup_tenant(
        p.database_url, p.store, tenant.slug, out, progress,
        extra={"tenant.json": saved.model_dump_json(indent=2).encode()}, meta=meta,
    )  # fmt: skip


def read_saved(archive: Path) -> tuple[str, SavedTenant]:
    """The archive's backup id and tenant, checked; raises before anything is made."""
    manifest, raw = read_archive(archive)
    if raw is None:
        raise InvalidArchiveError(
            "the archive holds a schema and files but no tenant (taken before whole-tenant"
            " backups); restore it with `plexica restore tenant` into a database of its own"
        )
    try:
        saved = SavedTenant.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        raise InvalidArchiveError("the archive's tenant.json is not valid") from None
    backup_id = manifest.get("backup_id")
    if not isinstance(backup_id, str):
        raise InvalidArchiveError("the archive's manifest has no backup id")
    return backup_id, saved


def check_revision(revision: str | None) -> None:
    """The backup's tenant schema must be one this version knows (then it is migrated to the
    head); an unknown revision comes from a newer Plexica."""
    if revision is None:
        raise InvalidArchiveError("the archive does not say its tenant schema revision")
    script = ScriptDirectory.from_config(alembic_config("tenant"))
    try:
        known = script.get_revision(revision)
    except CommandError:
        known = None
    if known is None:
        raise BackupTooNewError(
            f"the backup's tenant schema revision {revision} is unknown here: it was taken by a"
            " newer Plexica; restore it with that version or newer",
            details={"schema_revision": revision},
        )


async def restore(
    p: Platform, archive: Path, as_slug: str | None = None, progress: Progress | None = None
) -> Summary:
    began = asyncio.get_running_loop().time()
    backup_id, saved = read_saved(archive)
    check_revision(saved.schema_revision)
    slug = validate_slug(as_slug or saved.slug)
    await _clear_the_way(p, slug, backup_id)
    files = FilesFromArchive(p, archive, progress)
    steps: list[ProvisioningStep] = [
        SchemaFromArchive(p, archive, saved),
        saved_identity.RestoredRealmStep(p.identity, p.db, saved.realm),
        files,
        PluginsFromArchive(p.installer, saved.plugins),
        FlagsFromArchive(p.db, saved.flags),
    ]
    data = TenantCreate(slug=slug, name=saved.name, admin_email=saved.admin_email)
    await p.tenants.restore(data, steps, origin_of(backup_id))
    return Summary(slug, files.objects, files.bytes, asyncio.get_running_loop().time() - began)


async def _clear_the_way(p: Platform, slug: str, backup_id: str) -> None:
    """Refuse a slug in use; a failed earlier run of this same restore is deleted first."""
    try:
        existing = await p.tenants.get(slug)
    except TenantNotFoundError:
        existing = None
    if existing is not None and existing.state is not State.DELETED:
        again = existing.state is State.FAILED and (
            await p.tenants.origin(existing.id) == origin_of(backup_id)
        )
        if not again:
            raise TenantExistsError(
                f"a tenant with the slug {slug!r} already exists; restore --as another slug",
                details={"slug": slug},
            )
        await _purge_plugins(p.installer, existing.ref)
        await p.tenants.delete(existing.id)
    ref = TenantRef(uuid.uuid4(), slug, slug, "")
    if await asyncio.to_thread(schema_exists, libpq(p.database_url), ref.schema):
        raise ConflictError(f"schema {ref.schema} already exists in the target database")
    bucket = ref.bucket
    if await p.store.bucket_exists(bucket) and (await p.store.list(bucket, "", None, 1)).items:
        raise ConflictError(f"bucket {bucket} exists and is not empty")


async def _purge_plugins(installer: Installer, tenant: TenantRef) -> None:
    await installer.purge_tenant(tenant)


class _RestoreStep(ABC):
    """Undoing a restore step, when a later one failed, purges what it loaded."""

    @abstractmethod
    async def purge(self, tenant: TenantRef) -> None: ...

    async def undo(self, tenant: TenantRef) -> None:
        await self.purge(tenant)


class SchemaFromArchive(_RestoreStep):
    """The archive's schema under the new tenant's name, migrated to this version's head."""

    name = RESTORE_STEP

    def __init__(self, p: Platform, archive: Path, saved: SavedTenant) -> None:
        self.p, self.archive, self.saved = p, archive, saved
        self.schema_step = saga.SchemaStep(p.db)

    async def apply(self, tenant: TenantRef) -> None:
        await self.schema_step.undo(tenant)  # what an earlier attempt left
        source = TenantRef(self.saved.id, self.saved.slug, "", "").schema
        url = libpq(self.p.database_url)
        with tarfile.open(self.archive, "r") as tar:
            await asyncio.to_thread(load_schema, url, tar, source, tenant.schema)
        if self.saved.schema_revision != self.schema_step.head:
            await upgrade_schema(self.p.db, tenant.schema)
        await self.schema_step.apply(tenant)  # records the stamped revision on the tenant

    async def purge(self, tenant: TenantRef) -> None:
        await self.schema_step.undo(tenant)


class FilesFromArchive(_RestoreStep):
    name = "restore_files"

    def __init__(self, p: Platform, archive: Path, progress: Progress | None) -> None:
        self.p, self.archive, self.progress = p, archive, progress
        self.bucket = BucketStep(p.store, p.db)
        self.objects = self.bytes = 0

    async def apply(self, tenant: TenantRef) -> None:
        await self.bucket.apply(tenant)
        with tarfile.open(self.archive, "r") as tar:
            member = tar.extractfile("objects.json")
            types: dict[str, str] = json.loads(member.read()) if member is not None else {}
            self.objects, self.bytes = await load_objects(
                self.p.store, tar, tenant.bucket, types, self.progress
            )
        async with self.p.db.session() as session:
            await StorageService(self.p.store).reconcile(
                session, Scope.of_tenant(tenant.id, tenant.slug)
            )

    async def purge(self, tenant: TenantRef) -> None:
        await self.bucket.purge(tenant)


class PluginsFromArchive(_RestoreStep):
    name = "restore_plugins"

    def __init__(self, installer: Installer, saved: list[saved_plugins.SavedInstallation]) -> None:
        self.installer, self.saved = installer, saved

    async def apply(self, tenant: TenantRef) -> None:
        await saved_plugins.restore_installations(self.installer, tenant, self.saved)

    async def purge(self, tenant: TenantRef) -> None:
        await self.installer.purge_tenant(tenant)


class FlagsFromArchive(_RestoreStep):
    name = "restore_flags"

    def __init__(self, db: Database, saved: list[saved_flags.SavedFlag]) -> None:
        self.db, self.saved = db, saved

    async def apply(self, tenant: TenantRef) -> None:
        async with self.db.session() as session:
            await saved_flags.target(session, tenant.id, self.saved)

    async def purge(self, tenant: TenantRef) -> None:
        async with self.db.session() as session:
            await saved_flags.untarget(session, tenant.id, [f.key for f in self.saved])


def summary_line(s: Summary) -> str:
    return f"restored {s.slug}: {s.objects} objects, {s.bytes} bytes in {s.seconds:.1f}s"
