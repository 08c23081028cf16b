"""A rolling restart of the core on the local topology (two core instances behind Traefik) under
steady open-loop load fails no request: each instance drains (ADR 0142) while the edge stops
routing to it and retries a failed connection on the other (ADR 0177). The full 200 rps run is
``bench/rolling_restart.py``."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from deploy.local.topology import LocalTopology
from tests.support.cli import tenant_token
from tests.support.openloop import OpenLoop

pytestmark = pytest.mark.slow

# 10 rps and their decisions, on a CPU that other work may saturate: the core
# left serving during a restart must keep answering its health check within 3 s.
RATE = 10.0
SLUG = "rolling"


def test_a_rolling_restart_of_two_cores_under_load_fails_no_request() -> None:
    # A short folder, not pytest's: PostgreSQL's socket path must fit in 107 bytes, and pytest's
    # root is reset to 0700 (see tests/deploy/conftest.py).
    with (
        tempfile.TemporaryDirectory(prefix="plexica-rolling-") as workdir,
        LocalTopology(
            Path(workdir),
            plugins=[],
            core_replicas=2,
            # Longer than Traefik's health check (every 1 s, 3 s timeout): a draining core is out
            # of the rotation before its listener closes.
            extra_env={
                "PLEXICA_DRAIN_SECONDS": "6",
                "PLEXICA_GATEWAY_RATE_LIMITS": f"tenant:{SLUG}/core=10000000",
            },
        ) as topology,
    ):
        env = topology.cli_env()
        token = tenant_token(env, SLUG)
        url = f"{env['PLEXICA_PUBLIC_URL']}/api/core/v1/tenant"
        with OpenLoop(url, {"Authorization": f"Bearer {token}"}, RATE) as load:
            topology.rolling_restart(["core", "core-2"])
        assert len(load.shots) > RATE  # it ran through both restarts
        assert load.failed() == {}, load.failures()
