"""Paths shared by the static checks of the deployment artefacts, and the local topology."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.local.topology import LocalTopology

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# Files of the chart that Compose mounts too: the object store's platform policy and the script
# that applies it (ADR 0220).
CHART_FILES = DEPLOY / "helm" / "plexica" / "files"
STORAGE_PLATFORM_POLICY = CHART_FILES / "storage-platform-policy.json"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all_yaml(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


# Tenants of the shared local topology; GLOBEX's CRM limit is low so that a test reaches it.
ACME, GLOBEX = "acme", "globex"
GLOBEX_CRM_LIMIT = 8


@pytest.fixture(scope="session")
def local_topology() -> Iterator[LocalTopology]:
    """One local distributed topology per session (core, worker, web, CRM, Redis, PostgreSQL,
    Traefik). Not under pytest's temporary root: pytest resets it to 0700 at every session
    start, which would lock out the unprivileged user PostgreSQL runs as when tests run as root."""
    limits = f"tenant:{GLOBEX}/plugin:crm={GLOBEX_CRM_LIMIT}"
    with (
        tempfile.TemporaryDirectory(prefix="plexica-local-") as workdir,
        LocalTopology(
            Path(workdir),
            plugins=["crm"],
            # The worker's platform gauges (ADR 0204) follow the tests' changes within a second.
            extra_env={"PLEXICA_GATEWAY_RATE_LIMITS": limits, "PLEXICA_METRICS_GAUGE_SECONDS": "1"},
        ) as running,
    ):
        yield running
