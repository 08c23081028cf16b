"""One SDK test kit (a real local Plexica through its CLI, a real PostgreSQL) for every Billing
test module of the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from plexica_billing.app import create_app
from plexica_sdk.testing import PluginTestKit

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def kit() -> Iterator[PluginTestKit]:
    with PluginTestKit(ROOT, create_app) as kit:
        yield kit
