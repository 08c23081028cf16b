"""The routes ``traefik_config`` writes for servers Traefik balances itself (the local
topology's core and plugin replicas, ADRs 0177 and 0219), and the local topology's replica
processes. The same routes on real servers: tests/deploy/test_plugin_replicas.py and
test_rolling_restart.py."""

from __future__ import annotations

from pathlib import Path

from deploy.local.topology import LocalTopology, Process
from plexica.gateway.config import (
    ANY,
    CHECKED,
    LIVE_PATH,
    PASSIVE,
    READ_RETRY,
    READY,
    REPLICA_READY,
    RETRY,
    traefik_config,
)

CORE, CRM, BILLING = "http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"
PLUGINS = {"crm": CRM, "billing": BILLING}


def test_without_replicas_nothing_is_retried() -> None:
    plain = traefik_config(CORE, PLUGINS)
    assert traefik_config(CORE, PLUGINS, plugin_replicas={"crm": []}) == plain
    http = plain["http"]
    assert not {"retry", "retry-reads"} & set(http["middlewares"])
    assert not [name for name in http["routers"] if name.endswith("-reads")]
    assert http["services"]["plugin-crm" + CHECKED]["loadBalancer"]["healthCheck"] == READY


def test_plugin_replicas_are_servers_with_the_cores_checks_and_retries() -> None:
    http = traefik_config(CORE, PLUGINS, plugin_replicas={"crm": ["http://127.0.0.1:4/"]})["http"]
    crm = http["services"]["plugin-crm" + CHECKED]["loadBalancer"]
    assert crm["servers"] == [{"url": CRM}, {"url": "http://127.0.0.1:4"}]
    assert crm["healthCheck"] == REPLICA_READY
    assert crm["passiveHealthCheck"] == PASSIVE
    billing = http["services"]["plugin-billing" + CHECKED]["loadBalancer"]
    assert "passiveHealthCheck" not in billing
    assert billing["healthCheck"] == READY
    assert http["middlewares"]["retry"] == {"retry": RETRY}
    assert http["middlewares"]["retry-reads"] == {"retry": READ_RETRY}
    # Writes: only a failed connection is resent; reads also a 502 (a server that died with
    # the request). Both inside the breaker and the error pages, after the decision.
    base, reads = http["routers"]["plugin-crm"], http["routers"]["plugin-crm-reads"]
    assert base["middlewares"] == [
        "strip-identity", "auth", "plugin-errors", "body-limit", "plugin-breaker", "retry",
        "strip-plugin-crm",
    ]  # fmt: skip
    assert reads["middlewares"] == [*base["middlewares"][:5], "retry-reads", "strip-plugin-crm"]
    assert reads["rule"] == f"({base['rule']}) && (Method(`GET`) || Method(`HEAD`))"
    assert reads["service"] == "plugin-crm"
    assert "plugin-billing-reads" not in http["routers"]
    assert "retry" not in http["routers"]["plugin-billing"]["middlewares"]
    # Statuses Traefik makes itself, or a service's own for an outage, are never resent.
    assert READ_RETRY["status"] == ["502"]


def test_every_balanced_service_falls_back_to_its_live_servers() -> None:
    """Panic routing (ADR 0227): the routes name a failover from the servers that are ready to
    the same servers that are alive, with no passive check (it counts 5xx answers)."""
    http = traefik_config(
        CORE, PLUGINS, "http://127.0.0.1:7", core_replicas=["http://127.0.0.1:5"],
        plugin_replicas={"crm": ["http://127.0.0.1:4"]},
    )["http"]  # fmt: skip
    services = http["services"]
    for name in ("core-api", "plugin-crm", "plugin-billing"):
        assert services[name] == {
            "failover": {"service": name + CHECKED, "fallback": name + ANY, "healthCheck": {}}
        }
        ready, live = services[name + CHECKED]["loadBalancer"], services[name + ANY]["loadBalancer"]
        assert live["servers"] == ready["servers"]
        assert live["healthCheck"] == {**ready["healthCheck"], "path": LIVE_PATH}
        assert ready["healthCheck"]["path"] == "/ready"
        assert "passiveHealthCheck" not in live
        assert live.get("serversTransport") == ready.get("serversTransport")
    assert services["core-api" + CHECKED]["loadBalancer"]["passiveHealthCheck"] == PASSIVE
    # The web pages have no fallback (ADR 0227).
    assert "loadBalancer" in services["web"]
    # Everything that named the core's balancer names the failover.
    assert http["middlewares"]["plugin-errors"]["errors"]["service"] == "core-api"
    assert {r["service"] for r in http["routers"].values()} <= {
        "core-api",
        "plugin-crm",
        "plugin-billing",
        "web",
    }


def test_core_replicas_retry_reads_and_the_decision() -> None:
    http = traefik_config(
        CORE,
        PLUGINS,
        core_replicas=["http://127.0.0.1:5"],
        internal_entry_point="internal=http://127.0.0.1:6",
    )["http"]
    routers = http["routers"]
    assert routers["core-api"]["middlewares"][-2:] == ["retry", "strip-core"]
    assert routers["core-api-reads"]["middlewares"][-2:] == ["retry-reads", "strip-core"]
    assert routers["realms"]["middlewares"] == ["retry"]
    assert routers["realms-reads"]["middlewares"] == ["retry-reads"]
    assert routers["decision"]["middlewares"] == ["retry-reads"]
    # Streamed uploads are never buffered, so never resent.
    assert "core-uploads-reads" not in routers
    assert "retry" not in routers["core-uploads"]["middlewares"]
    # The plugins' single servers get no retry.
    assert "plugin-crm-reads" not in routers


def test_plugin_replica_processes(tmp_path: Path) -> None:
    topology = LocalTopology(tmp_path, plugins=["crm", "billing"], plugin_replicas=3)
    names = [n for n in topology.service_commands() if n.startswith("plugin-")]
    assert names == [
        "plugin-crm", "plugin-crm-2", "plugin-crm-3",
        "plugin-billing", "plugin-billing-2", "plugin-billing-3",
    ]  # fmt: skip
    assert topology.service_commands()["plugin-crm-3"] == ["serve", "plugin", "crm"]
    assert [topology.plugin_of(n) for n in names] == ["crm"] * 3 + ["billing"] * 3
    assert topology.plugin_of("core-2") is None
    topology.plugin_logins = {"crm": "postgresql://crm@h/db", "billing": "postgresql://b@h/db"}
    first, third = topology.env("plugin-crm", 1), topology.env("plugin-crm-3", 2)
    # The same login and data as the first; its own port.
    assert third["PLEXICA_PLUGIN_DATABASE_URL"] == "postgresql://crm@h/db"
    assert third["PLEXICA_DATA_DIR"] == first["PLEXICA_DATA_DIR"]
    assert (first["PLEXICA_PORT"], third["PLEXICA_PORT"]) == ("1", "2")
    assert "PLEXICA_DATABASE_URL" not in third
    ports = {"core": 10, "web": 11, "plugin-crm": 12, "plugin-crm-2": 13, "plugin-billing": 14}
    topology.ports = ports
    for name, port in ports.items():
        topology.processes[name] = Process(name, port, None, tmp_path / "x.log")  # type: ignore[arg-type]
    assert topology.plugin_urls() == {
        "crm": "http://127.0.0.1:12",
        "billing": "http://127.0.0.1:14",
    }
    assert topology.plugin_replica_urls() == {"crm": ["http://127.0.0.1:13"]}
    assert topology.edge_service("plugin-crm-2") == "plugin-crm"
    assert topology.edge_service("core") is None  # one core: Traefik has one server
    static, dynamic = topology.traefik_config(8000, 8082)
    assert "api" in static  # serverStatus, which wait_routed reads
    assert "internal" not in static["entryPoints"]
    assert dynamic == traefik_config(
        "http://127.0.0.1:10",
        {"crm": "http://127.0.0.1:12", "billing": "http://127.0.0.1:14"},
        "http://127.0.0.1:11",
        plugin_replicas={"crm": ["http://127.0.0.1:13"]},
    )
