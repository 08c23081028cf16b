"""The SDK's manifest model, its published JSON Schema, version ranges, and the import rule."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from plexica_crm.app import manifest as crm_manifest
from plexica_sdk.auth import JwksIssuerResolver
from plexica_sdk.manifest import ManifestError, load_manifest, manifest_json_schema
from plexica_sdk.semver import Version, VersionRange

ROOT = Path(__file__).resolve().parents[2]


def test_published_schema_is_current() -> None:
    published = json.loads((ROOT / "docs" / "plugin-manifest.schema.json").read_text())
    assert published == manifest_json_schema(), (
        "run: plexica plugin schema > docs/plugin-manifest.schema.json"
    )


def test_crm_manifest() -> None:
    m = crm_manifest()
    assert (m.id, m.version, m.data_retention_days) == ("crm", "1.4.0", 30)
    assert m.base_path == "/api/plugins/crm"
    assert {e.type for e in m.events.emits} == {
        "crm.company.created",
        "crm.company.updated",
        "crm.company.deleted",
        "crm.company.restored",
        "crm.contact.created",
        "crm.contact.updated",
        "crm.contact.deleted",
        "crm.contact.restored",
        "crm.deal.created",
        "crm.deal.updated",
        "crm.deal.deleted",
        "crm.deal.restored",
        "crm.deal.stage_changed",
        "crm.deal.won",
        "crm.activity.created",
        "crm.activity.completed",
    }
    assert all(e.data_schema for e in m.events.emits)
    assert m.default_permissions(frozenset({"viewer"})) == {
        "crm:company:read",
        "crm:contact:read",
        "crm:deal:read",
        "crm:activity:read",
    }


def test_manifest_file_errors_name_the_path(tmp_path: Path) -> None:
    (tmp_path / "plexica-plugin.yaml").write_text(
        "id: Bad-Id\nname: x\nversion: 1.0.0\npublisher: p\nsettings_schema: {type: 12}\n"
        "events: {emits: [{type: other.thing.happened}]}\n"
    )
    with pytest.raises(ManifestError) as err:
        load_manifest(tmp_path)
    paths = [d["path"] for d in err.value.details]
    assert paths == ["id", "settings_schema"]
    (tmp_path / "plexica-plugin.yaml").write_text(
        "id: ok\nname: x\nversion: 1.0.0\npublisher: p\nevents: {emits: [{type: other.thing.happened}]}\n"
    )
    with pytest.raises(ManifestError) as err:
        load_manifest(tmp_path)
    assert err.value.details[0]["path"] == "events.emits.0.type"
    (tmp_path / "plexica-plugin.yaml").write_text("id: [unclosed\n")
    with pytest.raises(ManifestError, match="not YAML"):
        load_manifest(tmp_path)


@pytest.mark.parametrize(
    ("rng", "yes", "no"),
    [
        (">=0.1.0 <1.0.0", ["0.1.0", "0.9.9"], ["1.0.0", "0.0.9"]),
        ("^1.2", ["1.2.0", "1.9.0"], ["2.0.0", "1.1.9"]),
        ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0"]),
        ("~1.4.0", ["1.4.7"], ["1.5.0"]),
        ("1.2", ["1.2.5"], ["1.3.0"]),
        ("*", ["0.0.1", "9.9.9"], []),
        (">= 1, < 2", ["1.5.0"], ["2.0.0"]),
    ],
)
def test_version_ranges(rng: str, yes: list[str], no: list[str]) -> None:
    r = VersionRange.parse(rng)
    assert all(r.contains(v) for v in yes)
    assert not any(r.contains(v) for v in no)


def test_versions_order_and_reject_garbage() -> None:
    assert Version.parse("1.0.0-rc.1") < Version.parse("1.0.0") < Version.parse("1.0.1")
    for bad in ("1.0", "v1.0.0", "01.0.0"):
        with pytest.raises(ValueError, match="semantic version"):
            Version.parse(bad)


async def test_jwks_resolver_trusts_only_realms_under_its_base() -> None:
    resolver = JwksIssuerResolver("http://idp.test/realms")
    try:
        tenant = await resolver.issuer("http://idp.test/realms/plexica-acme")
        assert tenant is not None
        assert (tenant.tenant_slug, tenant.tenant_id) == ("acme", None)
        operator = await resolver.issuer("http://idp.test/realms/plexica-platform")
        assert operator is not None
        assert operator.tenant_slug is None
        for url in (
            "http://idp.test/realms/other",
            "http://evil.test/realms/plexica-acme",
            "http://idp.test/realms/plexica-A!",
        ):
            assert await resolver.issuer(url) is None
    finally:
        await resolver.aclose()


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_plugins_and_sdk_never_import_the_platform() -> None:
    sources = [
        *(ROOT / "plugins").glob("*/src/**/*.py"),
        *(ROOT / "plugins").glob("*/tests/**/*.py"),
        *(ROOT / "packages" / "plexica-sdk" / "src").rglob("*.py"),
    ]
    assert len(sources) > 10
    offenders = {
        str(p.relative_to(ROOT)): sorted(
            n for n in _imports(p) if n == "plexica" or n.startswith("plexica.")
        )
        for p in sources
    }
    assert {k: v for k, v in offenders.items() if v} == {}
