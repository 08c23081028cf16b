"""Bad manifests, incompatible versions, bad migrations and plugins that never become ready are
refused or rolled back, and the tenant is left untouched with the reason on its installation."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text

from plexica.kit.db import Database
from plexica.plugins import service
from plexica.plugins.schemas import IncompatibleError
from plexica_sdk.app import PluginConfig, create_plugin_app
from plexica_sdk.db import plugin_role
from plexica_sdk.manifest import parse_manifest
from tests.conftest import error_of
from tests.plugins.conftest import (
    Platform,
    Tenant,
    TenantFactory,
    bare_app,
    plugin_doc,
    register_doc,
)
from tests.support.tokens import StaticIssuers

CORE = "/api/core/v1"


def pid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:8]


async def _untouched(db: Database, tenant: Tenant, plugin_id: str) -> None:
    async with db.session() as s:
        objects = await s.execute(
            text(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = :s"
            ),
            {"s": tenant.ref.schema},
        )
        assert objects.scalar_one() == 0, "objects left in the tenant schema"
        functions = await s.execute(
            text(
                "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = :s"
            ),
            {"s": tenant.ref.schema},
        )
        assert functions.scalar_one() == 0
        role = await s.execute(
            text("SELECT 1 FROM pg_roles WHERE rolname = :r"),
            {"r": plugin_role(plugin_id, tenant.id)},
        )
        assert role.scalar() is None, "role left behind"


async def _install(platform: Platform, tenant: Tenant, plugin_id: str) -> Any:
    return await platform.http.post(
        f"{CORE}/tenants/{tenant.id}/plugins",
        json={"plugin_id": plugin_id},
        headers=tenant.headers("tenant_admin"),
    )


async def _status(platform: Platform, tenant: Tenant, plugin_id: str) -> dict[str, Any]:
    r = await platform.http.get(
        f"{CORE}/tenants/{tenant.id}/plugins/{plugin_id}", headers=tenant.headers("tenant_admin")
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_bad_manifest_names_the_field_path(
    platform: Platform, issuers: StaticIssuers
) -> None:
    doc = plugin_doc("badmf", version="1.0", permissions=[{"key": "other:thing:read"}])
    r = await platform.http.post(
        f"{CORE}/plugins", json={"manifest": doc}, headers=issuers.operator_headers()
    )
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "invalid_manifest"
    assert [d["path"] for d in err["details"]] == ["version"]
    assert err["message"].startswith("invalid manifest: version:")

    doc = plugin_doc("badmf", permissions=[{"key": "other:thing:read"}])
    r = await platform.http.post(
        f"{CORE}/plugins", json={"manifest": doc}, headers=issuers.operator_headers()
    )
    assert error_of(r)["details"][0]["path"] == "permissions.0.key"

    doc = plugin_doc("badmf", ui={"pages": [{"id": "x", "title": "X", "path": "no-slash"}]})
    r = await platform.http.post(
        f"{CORE}/plugins", json={"manifest": doc}, headers=issuers.operator_headers()
    )
    assert error_of(r)["details"][0]["path"] == "ui.pages.0.path"
    r = await platform.http.get(
        f"{CORE}/plugins/badmf/versions", headers=issuers.operator_headers()
    )
    assert r.status_code == 404


async def test_catalog_refuses_incompatible_versions(
    platform: Platform, issuers: StaticIssuers
) -> None:
    op = issuers.operator_headers()
    http = platform.http

    r = await http.post(
        f"{CORE}/plugins", json={"manifest": plugin_doc(pid("old"), core=">=9.0.0")}, headers=op
    )
    assert r.status_code == 409
    assert error_of(r)["details"]["check"] == "core"

    r = await http.post(
        f"{CORE}/plugins",
        json={
            "manifest": plugin_doc(pid("dep"), dependencies=[{"id": "ghost", "version": "^1.0.0"}])
        },
        headers=op,
    )
    assert error_of(r)["details"] == {
        "check": "dependency",
        "plugin": "ghost",
        "required": "^1.0.0",
    }

    a, b = pid("cyca"), pid("cycb")
    r = await http.post(
        f"{CORE}/plugins",
        json={"manifest": plugin_doc(a, dependencies=[{"id": b, "optional": True}])},
        headers=op,
    )
    assert r.status_code == 201, r.text
    r = await http.post(
        f"{CORE}/plugins", json={"manifest": plugin_doc(b, dependencies=[{"id": a}])}, headers=op
    )
    assert r.status_code == 409
    assert error_of(r)["details"]["cycle"] == [b, a, b]

    # Publish, deprecate; a deprecated version is no longer installable.
    r = await http.post(f"{CORE}/plugins/{a}/versions/1.0.0/publish", headers=op)
    assert r.json()["status"] == "published"
    r = await http.post(f"{CORE}/plugins/{a}/versions/1.0.0/deprecate", headers=op)
    assert r.json()["status"] == "deprecated"
    r = await http.post(f"{CORE}/plugins/{a}/versions/1.0.0/publish", headers=op)
    assert error_of(r)["code"] == "invalid_state"

    r = await http.post(
        f"{CORE}/plugins",
        json={
            "manifest": plugin_doc(pid("esc")),
            "migrations": [{"name": "0001_x", "sql": "RESET ROLE; SELECT 1"}],
        },
        headers=op,
    )
    assert error_of(r)["code"] == "migration_refused"


def test_compatibility_check_on_ranges() -> None:
    crm2 = parse_manifest(plugin_doc("base", version="2.1.0"))
    needs = parse_manifest(
        plugin_doc("needs", dependencies=[{"id": "base", "version": ">=1.0.0 <2.0.0"}])
    )
    with pytest.raises(IncompatibleError):
        service.check_compatibility(needs, {"base": [crm2]})
    ok = parse_manifest(plugin_doc("needs", dependencies=[{"id": "base", "version": "^2.0"}]))
    service.check_compatibility(ok, {"base": [crm2]})
    with pytest.raises(IncompatibleError):
        service.check_compatibility(ok, {"base": [crm2]}, core_version="1.0.0")


async def test_missing_dependency_at_install_is_refused(
    platform: Platform, make_tenant: TenantFactory, db: Database
) -> None:
    base, top = pid("base"), pid("top")
    await register_doc(db, plugin_doc(base), [("0001_init", f"CREATE TABLE {base}_x (id int)")])
    await register_doc(db, plugin_doc(top, dependencies=[{"id": base, "version": "^1.0.0"}]), [])
    for manifest_id in (base, top):
        platform.endpoints[manifest_id] = bare_app(parse_manifest(plugin_doc(manifest_id)))
    t = await make_tenant()
    r = await _install(platform, t, top)
    assert r.status_code == 409
    assert error_of(r)["code"] == "incompatible"
    status = await _status(platform, t, top)
    assert status["status"] == "failed"
    assert base in status["reason"]
    await _untouched(db, t, top)

    # With the dependency active the same install succeeds.
    assert (await _install(platform, t, base)).status_code == 201
    assert (await _install(platform, t, top)).status_code == 201


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("CREATE TABLE {p}_ok (id int); CREATE TABLE notmine (id int);", "outside the prefix"),
        (
            "CREATE TABLE {p}_ok (id int); SELECT * FROM platform.plugin_installations;",
            "permission denied",
        ),
        ("CREATE TABLE public.{p}_elsewhere (id int);", "permission denied"),
        (
            "CREATE TABLE {p}_ok (id int); CREATE VIEW {p}_v AS SELECT 1; CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql AS 'SELECT 1';",
            "sneaky",
        ),
        ("CREATE TABLE {p}_ok (id int); SELECT * FROM crm_contacts;", "crm_contacts"),
    ],
)
async def test_bad_migration_rolls_everything_back(
    platform: Platform, make_tenant: TenantFactory, db: Database, sql: str, expected: str
) -> None:
    t = await make_tenant()
    # Another plugin's tables exist in this tenant: the bad one must not reach them.
    await _install(platform, t, "crm")
    async with db.session() as s:
        before = (
            await s.execute(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = :s"), {"s": t.ref.schema}
            )
        ).scalar_one()
    p = pid("bad")
    await register_doc(
        db, plugin_doc(p), [("0001_init", "SELECT 1"), ("0002_bad", sql.format(p=p))]
    )
    platform.endpoints[p] = bare_app(parse_manifest(plugin_doc(p)))
    r = await _install(platform, t, p)
    assert r.status_code == 422, r.text
    err = error_of(r)
    assert err["code"] == "migration_refused"
    assert expected in err["message"]
    status = await _status(platform, t, p)
    assert status["status"] == "failed"
    assert expected in status["reason"]
    async with db.session() as s:
        after = (
            await s.execute(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = :s"), {"s": t.ref.schema}
            )
        ).scalar_one()
        role = await s.execute(
            text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": plugin_role(p, t.id)}
        )
    assert after == before
    assert role.scalar() is None
    # A failed installation can be removed and leaves nothing.
    r = await platform.http.delete(
        f"{CORE}/tenants/{t.id}/plugins/{p}", headers=t.headers("tenant_admin")
    )
    assert r.status_code == 204


async def test_plugin_that_never_becomes_ready_is_rolled_back(
    platform: Platform, make_tenant: TenantFactory, db: Database
) -> None:
    p = pid("slow")
    manifest = await register_doc(
        db, plugin_doc(p), [("0001_init", f"CREATE TABLE {p}_x (id int)")]
    )
    app = create_plugin_app(manifest, config=PluginConfig())

    async def never() -> None:
        raise RuntimeError("warming up")

    app.state.readiness.add("cache", never)
    platform.endpoints[p] = app
    t = await make_tenant()
    r = await _install(platform, t, p)
    assert r.status_code == 503
    assert error_of(r)["code"] == "plugin_not_ready"
    status = await _status(platform, t, p)
    assert status["status"] == "failed"
    assert "did not become ready" in status["reason"]
    await _untouched(db, t, p)

    # Not deployed at all: the same.
    q = pid("gone")
    await register_doc(db, plugin_doc(q), [])
    r = await _install(platform, t, q)
    assert error_of(r)["code"] == "plugin_not_ready"
    await _untouched(db, t, q)


async def test_upgrade_runs_only_new_migrations_and_rolls_back_a_failure(
    platform: Platform, make_tenant: TenantFactory, db: Database
) -> None:
    p = pid("up")
    v1 = [
        (
            "0001_init",
            f"CREATE TABLE {p}_items (id int PRIMARY KEY); INSERT INTO {p}_items VALUES (1)",
        )
    ]
    await register_doc(db, plugin_doc(p), v1)
    platform.endpoints[p] = bare_app(parse_manifest(plugin_doc(p)))
    t = await make_tenant()
    assert (await _install(platform, t, p)).status_code == 201

    # 1.1.0 adds a column; 0001 is not run again (it would fail on the existing table).
    v2 = [*v1, ("0002_name", f"ALTER TABLE {p}_items ADD COLUMN name text DEFAULT 'x'")]
    await register_doc(db, plugin_doc(p, version="1.1.0"), v2)
    admin = t.headers("tenant_admin")
    r = await platform.http.post(
        f"{CORE}/tenants/{t.id}/plugins/{p}/upgrade", json={}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == "1.1.0"
    assert r.json()["applied_migrations"] == ["0001_init", "0002_name"]

    v3 = [
        *v2,
        ("0003_ok", f"ALTER TABLE {p}_items ADD COLUMN n int"),
        ("0004_bad", "DROP TABLE crm_contacts"),
    ]
    await register_doc(db, plugin_doc(p, version="1.2.0"), v3)
    r = await platform.http.post(
        f"{CORE}/tenants/{t.id}/plugins/{p}/upgrade", json={"version": "1.2.0"}, headers=admin
    )
    assert r.status_code == 422
    status = await _status(platform, t, p)
    assert (status["status"], status["version"]) == ("active", "1.1.0")
    assert status["reason"].startswith("upgrade to 1.2.0 failed")
    async with db.session() as s:
        cols = await s.execute(
            text(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = :s AND table_name = :t ORDER BY 1"
            ),
            {"s": t.ref.schema, "t": f"{p}_items"},
        )
        assert [c for (c,) in cols] == ["id", "name"]
    r = await platform.http.post(
        f"{CORE}/tenants/{t.id}/plugins/{p}/upgrade", json={"version": "1.0.0"}, headers=admin
    )
    assert error_of(r)["code"] == "invalid_state"


async def test_invalid_settings_at_install_change_nothing(
    platform: Platform, make_tenant: TenantFactory, db: Database
) -> None:
    t = await make_tenant()
    r = await platform.http.post(
        f"{CORE}/tenants/{t.id}/plugins",
        json={"plugin_id": "crm", "settings": {"page_size": 1000, "colour": "red"}},
        headers=t.headers("tenant_admin"),
    )
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "invalid_settings"
    assert {d["path"] for d in err["details"]} == {"(root)", "page_size"}
    r = await platform.http.get(
        f"{CORE}/tenants/{t.id}/plugins/crm", headers=t.headers("tenant_admin")
    )
    assert r.status_code == 404
    await _untouched(db, t, "crm")


async def test_upgrade_fleet_is_resumable(
    platform: Platform, make_tenant: TenantFactory, db: Database
) -> None:
    p = pid("fleet")
    v1 = [("0001_init", f"CREATE TABLE {p}_items (id int)")]
    await register_doc(db, plugin_doc(p), v1)
    platform.endpoints[p] = bare_app(parse_manifest(plugin_doc(p)))
    a, b = await make_tenant(), await make_tenant()
    for t in (a, b):
        assert (await _install(platform, t, p)).status_code == 201
    await register_doc(
        db,
        plugin_doc(p, version="1.1.0"),
        [*v1, ("0002_x", f"ALTER TABLE {p}_items ADD COLUMN x int")],
    )
    installer = platform.installer
    seen: list[tuple[int, int | None]] = []
    upgraded = await installer.upgrade_fleet(p, progress=lambda d, t: seen.append((d, t)))
    assert upgraded == {str(a.id): "upgraded", str(b.id): "upgraded"}
    assert seen == [(1, 2), (2, 2)]  # what `plexica plugin upgrade-all`'s progress bar shows
    assert await installer.upgrade_fleet(p) == {str(a.id): "current", str(b.id): "current"}
    await register_doc(
        db,
        plugin_doc(p, version="1.2.0"),
        [*v1, ("0002_x", "SELECT 1"), ("0003_bad", "DROP TABLE nothing_here")],
    )
    results = await installer.upgrade_fleet(p, "1.2.0")
    assert all("0003_bad failed" in r for r in results.values())
    assert (await _status(platform, a, p))["version"] == "1.1.0"
