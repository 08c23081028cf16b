"""Alerts and dashboards against reality: after a little traffic through the local topology's
edge, every metric that an alert rule or a dashboard panel uses is exported by a running service,
and the per-tenant metrics name the busy tenant."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from deploy.local.topology import LocalTopology
from tests.deploy.test_local_crm import Tenant, new_tenant
from tests.deploy.test_monitoring import (
    PROM,
    base,
    contract,
    dashboard_exprs,
    metric_names,
    rules,
)

pytestmark = pytest.mark.slow

SERVICES = ("core", "worker", "web", "plugin-crm")
# Series that only exist once there is something to say: a served certificate (none on the
# loopback topology's plain HTTP entry point); `up` is Prometheus's own.
NOT_ON_LOOPBACK = {"up", "traefik_tls_certs_not_after"}


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, url
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        samples = [(s.labels, s.value) for s in family.samples]
        # The text format names a counter's family without `_total`; the rules use the sample.
        name = family.name + "_total" if family.type == "counter" else family.name
        out.setdefault(name, []).extend(samples)
    return out


def total(found: list[tuple[dict[str, str], float]], **labels: str) -> float:
    return sum(v for sample, v in found if labels.items() <= sample.items())


@pytest.fixture(scope="module")
def busy(local_topology: LocalTopology) -> tuple[Tenant, Tenant]:
    noisy, quiet = new_tenant(local_topology, "obs-noisy"), new_tenant(local_topology, "obs-quiet")
    for tenant, n in ((noisy, 60), (quiet, 2)):
        for _ in range(n):
            r = httpx.get(
                f"{local_topology.public_url}/api/plugins/crm/v1/contacts",
                headers={"Authorization": f"Bearer {tenant.token}"},
                timeout=10,
            )
            assert r.status_code == 200, r.text
    # The noisy tenant also stores a file (storage per tenant).
    auth = {"Authorization": f"Bearer {noisy.token}"}
    signed = httpx.post(
        f"{local_topology.public_url}/api/core/v1/files/presign",
        json={"key": "reports/q1.txt", "method": "PUT", "content_type": "text/plain", "size": 1000},
        headers=auth,
        timeout=10,
    )
    assert signed.status_code == 200, signed.text
    put = httpx.put(
        signed.json()["url"], content=b"x" * 1000, headers=signed.json()["headers"], timeout=10
    )
    assert put.status_code in (200, 201, 204), put.text
    return noisy, quiet


def test_every_metric_of_an_alert_or_a_panel_is_exported(
    local_topology: LocalTopology, busy: tuple[Tenant, Tenant]
) -> None:
    exported: set[str] = set()
    for name in SERVICES:
        exported |= set(scrape(local_topology.processes[name].url + "/metrics"))
    exported |= set(scrape(local_topology.processes["gateway-admin"].url + "/metrics"))
    used = {
        base(name)
        for _, expr in [("alerts.yml", r["expr"]) for r in rules()] + dashboard_exprs()
        for name in metric_names(expr)
        if ":" not in name
    }
    assert used <= set(contract())
    missing = sorted(used - NOT_ON_LOOPBACK - exported)
    assert not missing, f"used by alerts or dashboards but exported by no service: {missing}"


def test_the_plugin_counts_requests_by_tenant(
    local_topology: LocalTopology, busy: tuple[Tenant, Tenant]
) -> None:
    noisy, quiet = busy
    crm = scrape(local_topology.processes["plugin-crm"].url + "/metrics")
    requests = crm["plexica_tenant_requests_total"]
    route = {"service": "plugin-crm", "route": "/v1/contacts", "status": "200"}
    assert total(requests, tenant=noisy.slug, **route) >= 60
    assert total(requests, tenant=quiet.slug, **route) >= 2
    latency = crm["plexica_tenant_request_duration_seconds"]
    assert total(latency, tenant=noisy.slug) > 0


def test_the_worker_gauges_installations_and_storage_per_tenant(
    local_topology: LocalTopology, busy: tuple[Tenant, Tenant]
) -> None:
    """ADR 0204: the worker's pass reads what the tenants did (two CRM installations, the noisy
    tenant's file) within a few of its one-second passes."""
    noisy, quiet = busy
    deadline = time.monotonic() + 60
    while True:
        worker = scrape(local_topology.processes["worker"].url + "/metrics")
        installs = worker.get("plexica_plugin_installations", [])
        stored = worker.get("plexica_tenant_storage_bytes", [])
        if (
            total(installs, plugin="crm", state="active") >= 2
            and total(stored, tenant=noisy.slug) >= 1000
            and any(labels == {"tenant": quiet.slug} for labels, _ in stored)
        ):
            break
        assert time.monotonic() < deadline, (installs, stored)
        time.sleep(0.2)


def series(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def test_the_noisy_tenant_alert_fires_on_the_real_counters(
    local_topology: LocalTopology, busy: tuple[Tenant, Tenant], tmp_path: Path
) -> None:
    """The CRM's real per-tenant counters after the load, replayed by promtool as if the load ran
    once a second for half an hour: the alert names the noisy tenant and no other."""
    noisy, _ = busy
    crm = scrape(local_topology.processes["plugin-crm"].url + "/metrics")
    found = [(labels, v) for labels, v in crm["plexica_tenant_requests_total"] if v > 0]
    per_second = total(found, tenant=noisy.slug)
    named = sum(v for labels, v in found if labels["tenant"] not in ("none", "other"))
    assert per_second > 0.5 * named
    spec = {
        "rule_files": [str(PROM / "alerts.yml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": series("plexica_tenant_requests_total", labels),
                        "values": f"0+{v * 60:g}x30",
                    }
                    for labels, v in found
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "25m",
                        "alertname": "PlexicaNoisyTenant",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "ticket", "tenant": noisy.slug},
                                "exp_annotations": {
                                    "summary": f"Tenant {noisy.slug} sends {per_second:.1f}"
                                    " requests/s, over half of all traffic",
                                    "runbook": "docs/runbooks/incident-response.md#noisy-tenant",
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    }
    test_file = tmp_path / "noisy.test.yml"
    test_file.write_text(yaml.safe_dump(spec))
    exe = shutil.which("promtool")
    assert exe, "promtool missing: scripts/install-system-packages installs it"
    run = subprocess.run(
        [exe, "test", "rules", str(test_file)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
