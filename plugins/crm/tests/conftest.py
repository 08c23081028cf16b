"""One SDK test kit (a real local Plexica through its CLI, a real PostgreSQL) per CRM test
module; ``http``, a member of the module's ``shop`` tenant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from plexica_crm.app import create_app
from plexica_sdk.testing import KitTenant, PluginTestKit

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kit() -> Iterator[PluginTestKit]:
    with PluginTestKit(ROOT, create_app) as kit:
        yield kit


@pytest.fixture
def http(kit: PluginTestKit, shop: KitTenant) -> Iterator[httpx.Client]:
    with kit.client(shop, roles=["member"], sub="sam") as client:
        yield client
