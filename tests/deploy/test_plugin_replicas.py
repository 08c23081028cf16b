"""Two CRM processes behind Traefik (``LocalTopology(plugin_replicas=2)``): one killed with
SIGKILL under steady open-loop reads through the edge fails no request (a read it took is sent
again to the other, ADR 0219), and the supervisor brings it back into the rotation."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

from deploy.local.topology import LocalTopology
from plexica.gateway.config import traefik_config
from tests.support.cli import plexica
from tests.support.openloop import OpenLoop
from tests.support.wait import until

pytestmark = pytest.mark.slow

RATE = 8.0
SLUG = "replicas"


def test_a_killed_crm_replica_fails_no_read_and_comes_back() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="plexica-replicas-") as workdir,
        LocalTopology(
            Path(workdir),
            plugins=["crm"],
            plugin_replicas=2,
            extra_env={"PLEXICA_GATEWAY_RATE_LIMITS": f"tenant:{SLUG}/plugin:crm=10000000"},
        ) as topology,
    ):
        env = topology.cli_env()
        email = f"admin@{SLUG}.example"
        plexica(env, "tenant", "create", SLUG, "--name", SLUG, "--admin-email", email)
        plexica(env, "plugin", "install", "crm", "--tenant", SLUG)
        password = plexica(env, "user", "reset-password", email, "--tenant", SLUG)
        token = plexica(
            env | {"PLEXICA_PASSWORD": password}, "token", "--tenant", SLUG, "--user", email
        )
        for name in ("plugin-crm", "plugin-crm-2"):
            topology.wait_routed(name, 120)
        victim = topology.processes["plugin-crm"]
        url = f"{topology.public_url}/api/plugins/crm/v1/contacts?limit=5"
        stop = threading.Event()

        def supervise() -> None:
            while not stop.is_set():
                topology.supervise()
                time.sleep(0.2)

        supervisor = threading.Thread(target=supervise, daemon=True)
        with OpenLoop(url, {"Authorization": f"Bearer {token}"}, RATE) as load:
            until(lambda: sum(s.status.startswith("2") for s in load.shots) >= 10, "answers")
            supervisor.start()
            try:
                old = victim.proc.pid
                os.killpg(old, signal.SIGKILL)
                killed = time.monotonic()
                until(lambda: victim.proc.pid != old, "the supervisor's restart")
                topology.wait_ready(120, only=["plugin-crm"])
                topology.wait_routed("plugin-crm", 120)
                back = len(load.shots)
                # Reads go on past the replica's return: both serve again.
                until(lambda: len(load.shots) >= back + 10, "reads after the return")
            finally:
                stop.set()
                supervisor.join(30)
        during = [s for s in load.shots if s.sent >= killed]
        print(f"\n{len(load.shots)} reads, {len(during)} of them after the kill")
        assert during, "no request was sent after the kill"
        assert victim.restarts == 1
        assert load.failed() == {}, load.failed()
        # The edge balances over both processes: the plugin's route has both servers.
        _, dynamic = topology.traefik_config(topology.gateway_port, 0)
        servers = dynamic["http"]["services"]["plugin-crm-checked"]["loadBalancer"]["servers"]
        assert [s["url"] for s in servers] == [
            topology.processes["plugin-crm"].url,
            topology.processes["plugin-crm-2"].url,
        ]
        assert dynamic == traefik_config(
            topology.processes["core"].url,
            topology.plugin_urls(),
            topology.processes["web"].url,
            plugin_replicas={"crm": [topology.processes["plugin-crm-2"].url]},
        )
