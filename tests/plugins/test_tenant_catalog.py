"""The catalog a tenant's admin browses (ADR 0241): published plugins (and those the tenant has),
each with this tenant's install state, the upgrade on offer and whether it would install; asked for another
tenant it answers as if that tenant did not exist. And a settings change is in the audit log with
its secrets named, never shown. Through the embedded gateway on a real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from plexica.audit import service as audit
from plexica.audit.schemas import AuditFilter, TextMatch
from plexica.kit.db import Database
from plexica.plugins import service
from plexica.plugins.schemas import VersionStatus
from plexica_sdk.context import Principal
from tests.plugins.conftest import Platform, TenantFactory, bare_app, plugin_doc, register_doc

CORE = "/api/core/v1"


def _pid(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def _register(db: Database, doc: dict[str, Any], status: VersionStatus | None) -> None:
    """A version in the catalog left ``registered``, or moved to ``status``."""
    async with db.session() as s:
        await service.register(s, doc, [])
        if status is not None:
            await service.set_status(s, doc["id"], doc["version"], status)


async def _catalog(
    http: httpx.AsyncClient, tenant_id: uuid.UUID, headers: dict[str, str]
) -> dict[str, dict[str, Any]]:
    r = await http.get(f"{CORE}/tenants/{tenant_id}/catalog", headers=headers)
    assert r.status_code == 200, r.text
    return {e["plugin_id"]: e for e in r.json()}


async def test_the_catalog_offers_published_plugins_with_this_tenants_state(
    platform: Platform, db: Database, make_tenant: TenantFactory
) -> None:
    http = platform.http
    a, b = await make_tenant(), await make_tenant()
    admin_a, admin_b = a.headers("tenant_admin"), b.headers("tenant_admin")
    tool, hidden, old, needs = _pid("ct"), _pid("ch"), _pid("co"), _pid("cn")
    platform.endpoints[tool] = bare_app(
        await register_doc(db, plugin_doc(tool, description="Does things"), [])
    )
    await _register(db, plugin_doc(tool, "2.0.0"), None)
    await _register(db, plugin_doc(hidden), None)
    await _register(db, plugin_doc(old), VersionStatus.DEPRECATED)
    await register_doc(db, plugin_doc(needs, dependencies=[{"id": tool, "version": ">=1.0.0"}]), [])

    before = await _catalog(http, a.id, admin_a)
    assert hidden not in before
    assert old not in before
    assert before[tool] == {
        "plugin_id": tool, "name": tool.title(), "description": "Does things",
        "publisher": "Tests", "latest_version": "1.0.0", "installed_version": None,
        "install_status": None, "upgrade_available": False, "compatible": True,
        "incompatible_reason": None,
    }  # fmt: skip
    assert before["crm"]["publisher"] == "Plexica"
    assert before[needs]["compatible"] is False
    assert tool in before[needs]["incompatible_reason"]

    r = await http.post(f"{CORE}/tenants/{a.id}/plugins", json={"plugin_id": tool}, headers=admin_a)
    assert r.status_code == 201, r.text
    await register_doc(db, plugin_doc(tool, "1.1.0"), [])

    mine, theirs = await _catalog(http, a.id, admin_a), await _catalog(http, b.id, admin_b)
    assert mine[tool]["latest_version"] == "1.1.0"
    assert (mine[tool]["installed_version"], mine[tool]["install_status"]) == ("1.0.0", "active")
    assert mine[tool]["upgrade_available"] is True
    assert mine[needs]["compatible"] is True
    assert theirs[tool]["installed_version"] is None
    assert theirs[tool]["upgrade_available"] is False
    assert theirs[needs]["compatible"] is False

    r = await http.post(f"{CORE}/tenants/{a.id}/plugins/{tool}/upgrade", json={}, headers=admin_a)
    assert r.status_code == 200, r.text
    upgraded = (await _catalog(http, a.id, admin_a))[tool]
    assert (upgraded["installed_version"], upgraded["upgrade_available"]) == ("1.1.0", False)

    gone = _pid("cg")
    platform.endpoints[gone] = bare_app(await register_doc(db, plugin_doc(gone), []))
    r = await http.post(f"{CORE}/tenants/{a.id}/plugins", json={"plugin_id": gone}, headers=admin_a)
    assert r.status_code == 201, r.text
    async with db.session() as s:
        await service.set_status(s, gone, "1.0.0", VersionStatus.DEPRECATED)
    # What the tenant has stays listed, with nothing to install or upgrade to.
    kept = (await _catalog(http, a.id, admin_a))[gone]
    assert (kept["latest_version"], kept["install_status"]) == (None, "active")
    assert (kept["upgrade_available"], kept["compatible"]) == (False, False)
    assert gone not in await _catalog(http, b.id, admin_b)

    async with db.session() as s:
        future = {e.plugin_id: e for e in await service.tenant_catalog(s, a.id, "9.0.0")}
    assert future[tool].compatible is False
    assert future[tool].incompatible_reason == "needs core >=0.1.0 <1.0.0, this is 9.0.0"


async def test_another_tenants_catalog_is_not_found(
    platform: Platform, make_tenant: TenantFactory
) -> None:
    http = platform.http
    a, b = await make_tenant(), await make_tenant()
    missing = await http.get(
        f"{CORE}/tenants/{uuid.uuid4()}/catalog", headers=a.headers("tenant_admin")
    )
    assert missing.status_code == 404
    for headers in (b.headers("tenant_admin"), a.headers("member")):
        r = await http.get(f"{CORE}/tenants/{a.id}/catalog", headers=headers)
        assert (r.status_code, r.json()) == (404, missing.json())


SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "region": {"type": "string"},
        "api_key": {"type": "string", "writeOnly": True},
        "password": {"type": "string", "format": "password"},
    },
}


async def test_a_settings_change_is_audited_with_its_secrets_hidden(
    platform: Platform, db: Database, make_tenant: TenantFactory
) -> None:
    http = platform.http
    tenant = await make_tenant()
    admin = tenant.headers("tenant_admin", sub="ada")
    p = _pid("cs")
    platform.endpoints[p] = bare_app(
        await register_doc(db, plugin_doc(p, settings_schema=SCHEMA), [])
    )
    first = {"region": "eu", "api_key": "key-one-secret", "password": "pw-one-secret"}
    r = await http.post(
        f"{CORE}/tenants/{tenant.id}/plugins", json={"plugin_id": p, "settings": first},
        headers=admin,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    path = f"{CORE}/tenants/{tenant.id}/plugins/{p}/settings"

    refused = await http.put(path, json={"settings": {"region": 3}}, headers=admin)
    assert refused.status_code == 422
    assert await _entries(db, tenant.id, p) == []

    second = {"region": "us", "api_key": "key-two-secret", "password": "pw-one-secret"}
    r = await http.put(path, json={"settings": second}, headers=admin)
    assert r.status_code == 200, r.text
    [entry] = await _entries(db, tenant.id, p)
    assert (entry["actor"], entry["tenant_id"]) == ("ada", str(tenant.id))
    assert entry["before"] == {"settings": {"region": "eu"}}
    assert entry["after"] == {"settings": {"region": "us"}, "changed": ["api_key", "region"]}
    assert "secret" not in json.dumps(entry)


async def _entries(db: Database, tenant_id: uuid.UUID, plugin_id: str) -> list[dict[str, Any]]:
    reader = Principal(subject="reader", issuer="test", tenant_id=tenant_id)
    where = AuditFilter(
        action=TextMatch.of("plugin.settings_updated"), target=TextMatch.of(f"plugin:{plugin_id}")
    )
    async with db.session() as s:
        page = await audit.query(s, reader, where=where)
    return [e.model_dump(mode="json") for e in page.items]
