"""A restored tenant's plugins (ADR 0172): an installed plugin comes back installed, a disabled
one disabled, a retained one retained; each under the new tenant's role of the plugin, which owns
its tables again, with its rows; the source tenant keeps its own. Real PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text

from plexica.backup import tenant as whole
from plexica.identity.builtin import BuiltinIdentity
from plexica.kit.db import Database
from plexica.plugins.schemas import InstallStatus
from plexica.plugins.service import HttpReadinessProbe, Installer
from plexica.settings import Settings
from plexica.storage.local import LocalStore
from plexica.tenants.schemas import State, TenantCreate
from plexica.tenants.service import TenantService
from plexica_sdk.db import plugin_role
from tests.plugins.conftest import bare_app, plugin_doc, register_doc


async def _owner_and_rows(db: Database, schema: str, table: str) -> tuple[str, int]:
    async with db.session() as s:
        owner = (
            await s.execute(
                text("SELECT tableowner FROM pg_tables WHERE schemaname = :s AND tablename = :t"),
                {"s": schema, "t": table},
            )
        ).scalar_one()
        rows = (await s.execute(text(f'SELECT count(*) FROM "{schema}"."{table}"'))).scalar_one()
    return str(owner), int(rows)


async def test_installed_disabled_and_retained_plugins_come_back_as_they_were(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    ids = [f"rs{uuid.uuid4().hex[:8]}" for _ in range(3)]
    endpoints: dict[str, Any] = {}
    for p in ids:
        manifest = await register_doc(
            db, plugin_doc(p),
            [("0001_init", f"CREATE TABLE {p}_items (id serial PRIMARY KEY, v text);"
                           f" INSERT INTO {p}_items (v) VALUES ('kept');")],
        )  # fmt: skip
        endpoints[p] = bare_app(manifest)
    installer = Installer(db, HttpReadinessProbe(endpoints))
    tenants = TenantService(db, [])
    platform = whole.Platform(
        str(settings.database_url), db, LocalStore(tmp_path / "objects"), tenants,
        BuiltinIdentity(db, settings.public_base_url), installer,
    )  # fmt: skip
    slug = f"src{uuid.uuid4().hex[:8]}"
    source = await tenants.create(TenantCreate(slug=slug, name="Src", admin_email="a@src.test"))
    active, disabled, retained = ids
    for p in ids:
        await installer.install(source.ref, p)
    await installer.set_enabled(source.ref, disabled, False)
    await installer.uninstall(source.ref, retained)
    archive = tmp_path / "src.tar"
    await whole.backup(platform, slug, archive)

    copy_slug = f"cpy{uuid.uuid4().hex[:8]}"
    copy = None
    try:
        await whole.restore(platform, archive, copy_slug)
        copy = await tenants.get(copy_slug)
        assert copy.state is State.ACTIVE
        async with db.session() as s:
            rows = await s.execute(
                text(
                    "SELECT plugin_id, status, db_role FROM platform.plugin_installations"
                    " WHERE tenant_id = :t"
                ),
                {"t": copy.id},
            )
            found = {r.plugin_id: (r.status, r.db_role) for r in rows}
        assert found == {
            active: (InstallStatus.ACTIVE, plugin_role(active, copy.id)),
            disabled: (InstallStatus.DISABLED, plugin_role(disabled, copy.id)),
            retained: (InstallStatus.UNINSTALLED, plugin_role(retained, copy.id)),
        }
        for p in ids:
            assert await _owner_and_rows(db, copy.ref.schema, f"{p}_items") == (
                plugin_role(p, copy.id),
                1,
            )
            assert await _owner_and_rows(db, source.ref.schema, f"{p}_items") == (
                plugin_role(p, source.id),
                1,
            )
        # The retained one installs back from its retained data, as in the source tenant.
        out = await installer.install(copy.ref, retained)
        assert out.status == InstallStatus.ACTIVE
    finally:
        for t in (source, copy):
            if t is not None:
                await installer.purge_tenant(t.ref)
                await tenants.delete(t.id)
