"""A catalogued manifest is parsed once per content (issue 20: each parse checks its event
schemas, tens of milliseconds, and the permission lookups read the same few again and again)."""

from __future__ import annotations

import copy
from pathlib import Path

from plexica_sdk.manifest import load_manifest, stored_manifest

CRM = Path(__file__).resolve().parents[2] / "plugins" / "crm"


def test_the_same_content_is_parsed_once_and_new_content_again() -> None:
    raw = load_manifest(CRM).model_dump(mode="json", by_alias=True, exclude_none=True)
    first = stored_manifest(raw)
    assert stored_manifest(copy.deepcopy(raw)) is first
    changed = copy.deepcopy(raw) | {"name": "CRM renamed"}
    assert stored_manifest(changed).name == "CRM renamed"
    raw["name"] = "mutated by its caller"  # the cache kept its own copy
    assert stored_manifest(changed).name == "CRM renamed"
