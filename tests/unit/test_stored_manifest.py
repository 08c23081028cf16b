"""A catalogued manifest is parsed once per content (issue 20: each parse checks its event
schemas, tens of milliseconds, and the permission lookups read the same few again and again)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from plexica_sdk.manifest import ManifestError, load_manifest, parse_manifest, stored_manifest

CRM = Path(__file__).resolve().parents[2] / "plugins" / "crm"


def test_the_same_content_is_parsed_once_and_new_content_again() -> None:
    raw = load_manifest(CRM).model_dump(mode="json", by_alias=True, exclude_none=True)
    first = stored_manifest(raw)
    assert stored_manifest(copy.deepcopy(raw)) is first
    changed = copy.deepcopy(raw) | {"name": "CRM renamed"}
    assert stored_manifest(changed).name == "CRM renamed"
    raw["name"] = "mutated by its caller"  # the cache kept its own copy
    assert stored_manifest(changed).name == "CRM renamed"


def test_a_manifest_file_read_twice_is_parsed_once() -> None:
    """``plexica up`` reads each shipped manifest when it registers the plugin and again when
    it mounts it (issue 21)."""
    assert load_manifest(CRM) is load_manifest(CRM)


def test_a_malformed_id_is_refused_as_a_manifest_error_not_a_crash() -> None:
    raw = load_manifest(CRM).model_dump(mode="json", by_alias=True, exclude_none=True)
    for bad in ([1, 2], {"a": 1}, None):
        with pytest.raises(ManifestError, match=r"^invalid manifest: id: "):
            parse_manifest(raw | {"id": bad})


def test_content_that_python_calls_equal_and_json_schema_does_not_is_parsed_anew() -> None:
    raw = load_manifest(CRM).model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["settings_schema"] = {"type": "object", "minProperties": 1}
    assert stored_manifest(raw).settings_schema == {"type": "object", "minProperties": 1}
    with pytest.raises(ManifestError):  # a boolean is not a count: refused, not the cached one
        parse_manifest(copy.deepcopy(raw) | {"settings_schema": {"minProperties": True}})


def test_the_caller_changing_what_it_parsed_does_not_change_the_cached_manifest() -> None:
    raw = load_manifest(CRM).model_dump(mode="json", by_alias=True, exclude_none=True)
    schema = {"type": "object", "properties": {"a": {"const": "x"}}}
    raw["settings_schema"] = copy.deepcopy(schema)
    parse_manifest(raw)
    raw["settings_schema"]["properties"]["a"]["const"] = "changed afterwards"
    fresh = copy.deepcopy(raw)
    fresh["settings_schema"]["properties"]["a"]["const"] = "x"
    assert parse_manifest(fresh).settings_schema == schema
