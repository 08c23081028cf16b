"""Alerts and dashboards against reality: after a little traffic through the local topology's
edge, every metric that an alert rule or a dashboard panel uses is exported by a running service,
the per-tenant metrics name the busy tenant, and a real Prometheus scraping the services answers
every query of the Tenants dashboard with the noisy tenant on top."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from deploy.local.topology import LocalTopology
from tests.deploy.conftest import DEPLOY, load_yaml
from tests.deploy.test_local_crm import Tenant, new_tenant
from tests.deploy.test_monitoring import (
    PROM,
    base,
    contract,
    dashboard_exprs,
    metric_names,
    rules,
)
from tests.harness.prometheus import PrometheusServer

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


def list_contacts(topology: LocalTopology, tenant: Tenant) -> None:
    r = httpx.get(
        f"{topology.public_url}/api/plugins/crm/v1/contacts",
        headers={"Authorization": f"Bearer {tenant.token}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def busy(local_topology: LocalTopology) -> tuple[Tenant, Tenant]:
    noisy, quiet = new_tenant(local_topology, "obs-noisy"), new_tenant(local_topology, "obs-quiet")
    for tenant, n in ((noisy, 60), (quiet, 2)):
        for _ in range(n):
            list_contacts(local_topology, tenant)
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


# --- the Tenants dashboard on a real Prometheus ------------------------------------------------

TENANTS_DASHBOARD = DEPLOY / "grafana" / "dashboards" / "plexica-tenants.json"
# The panels that rank tenants by requests: the noisy tenant first, above the quiet one.
TOP_BY_REQUESTS = ("Top 10 tenants by request rate", "Top 10 tenants, requests in range")
BY_STORAGE = "Top 10 tenants by storage"
LATENCY = "P95 latency by tenant"
BY_STATE = "Tenants by state"
# The panels with nothing to show after this module's traffic, and why. Every other one has data.
CLI_PROVISIONS = (
    "the banner's `plexica tenant create` provisions in the CLI's own process, on the database:"
    " no scraped service observes the provisioning histogram"
)
MAY_BE_EMPTY = {
    "Error ratio (5xx) by tenant": "no request fails, so the 5xx numerator has no series",
    "Rate-limit rejections (429) by tenant": "no tenant of this module reaches its limit",
    "Provisioning results": CLI_PROVISIONS,
    "Provisioning time P95 (target < 30 s)": CLI_PROVISIONS,
}
# After the requests the fixture made before Prometheus ran, rounds of requests that each land in
# a scrape of their own: rate() and increase() need two samples and more of a counter.
ROUNDS, NOISY_PER_ROUND = 3, 10
# The deployments' scrape interval (prometheus.yml), for Grafana's interval variables.
DEPLOYED_SCRAPE_S = 15
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
Result = list[dict[str, Any]]


def grafana_expr(expr: str, dashboard: Mapping[str, Any], variables: Mapping[str, str]) -> str:
    """``expr`` as Grafana sends it for an instant query over the dashboard's default time range
    (``now-6h`` to ``now``): its built-in variables, and the template ``variables``.
    ``$__interval`` is its lower bound, the scrape interval; ``$__rate_interval`` four of them."""
    assert dashboard["time"]["to"] == "now"
    span = re.fullmatch(r"now-(\d+)([smhdw])", dashboard["time"]["from"])
    assert span, dashboard["time"]
    range_s = int(span.group(1)) * UNITS[span.group(2)]
    values = {
        "__range": f"{range_s}s", "__range_s": str(range_s), "__range_ms": str(range_s * 1000),
        "__interval": f"{DEPLOYED_SCRAPE_S}s", "__interval_ms": str(DEPLOYED_SCRAPE_S * 1000),
        "__rate_interval": f"{4 * DEPLOYED_SCRAPE_S}s",
        **variables,
    }  # fmt: skip

    def value(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g)
        assert name in values, f"no value for ${name} in {expr}"
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", value, expr)


def loopback_prometheus_config(topology: LocalTopology) -> dict[str, Any]:
    """The Compose topology's Prometheus configuration (its jobs, its rules) with this
    topology's loopback targets, scraped and evaluated every second."""
    config: dict[str, Any] = load_yaml(PROM / "prometheus.compose.yml")
    config["global"] = {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "evaluation_interval": "1s",
    }
    config["rule_files"] = [str(PROM / name) for name in config["rule_files"]]
    port = {name: process.port for name, process in topology.processes.items()}
    targets = {
        "plexica": [f"127.0.0.1:{port[name]}" for name in SERVICES],
        "plexica-gateway": [f"127.0.0.1:{port['gateway-admin']}"],  # Traefik's own metrics
    }
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": targets.pop(job["job_name"])}]
    assert not targets, f"jobs missing from prometheus.compose.yml: {sorted(targets)}"
    return config


@pytest.fixture
def prometheus(local_topology: LocalTopology, tmp_path: Path) -> Iterator[PrometheusServer]:
    with PrometheusServer(tmp_path, loopback_prometheus_config(local_topology)) as server:
        yield server


def wait_until(done: Callable[[], bool], state: Callable[[], object], timeout: float = 180) -> None:
    """Poll ``done()`` until it holds; after ``timeout`` seconds fail with ``state()``."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"after {timeout:.0f} s: {state()}"
        time.sleep(0.25)


def by_tenant(result: Result) -> list[tuple[str, float]]:
    """(tenant, value) from the largest value down, without NaN (a quantile of no requests)."""
    found = [(r["metric"].get("tenant", ""), float(r["value"][1])) for r in result]
    return sorted(((t, v) for t, v in found if not math.isnan(v)), key=lambda tv: -tv[1])


def test_the_tenants_dashboard_shows_the_noisy_tenant(
    local_topology: LocalTopology, busy: tuple[Tenant, Tenant], prometheus: PrometheusServer
) -> None:
    """A real Prometheus scrapes the topology (services and Traefik) every second; after more of
    the tenants' traffic, every query of the Tenants dashboard is valid, the request panels rank
    the noisy tenant first, the storage panel shows its file, and the panels have data."""
    noisy, quiet = busy
    dashboard = json.loads(TENANTS_DASHBOARD.read_text())
    queries = [
        (panel["title"], grafana_expr(t["expr"], dashboard, {"tenant": noisy.slug}))
        for panel in dashboard["panels"]
        for t in panel["targets"]
    ]
    # The queries the static checks know (test_monitoring), all of them evaluated here.
    known = {e for name, e in dashboard_exprs() if name == TENANTS_DASHBOARD.name}
    assert {t["expr"] for p in dashboard["panels"] for t in p["targets"]} == known
    # Evaluated once, at the end of the range: what a bar gauge shows when its query is instant
    # (as a range query a top-10 bar gauge shows each tenant's last value while in the top 10).
    for panel in dashboard["panels"]:
        if panel["type"] == "bargauge":
            assert all(t.get("instant") and not t.get("range") for t in panel["targets"]), panel
    titles = {title for title, _ in queries}
    assert {*TOP_BY_REQUESTS, BY_STORAGE, LATENCY, BY_STATE, *MAY_BE_EMPTY} <= titles

    # Every target (four services, Traefik) answered a scrape, if not necessarily the last one.
    answered = 'max by (job, instance) (max_over_time(up{job=~"plexica.*"}[1h])) == 1'
    wait_until(
        lambda: len(prometheus.query(answered)) == len(SERVICES) + 1,
        lambda: [(t["scrapeUrl"], t["health"], t["lastError"]) for t in prometheus.targets()],
    )
    slugs = (noisy.slug, quiet.slug)

    def counted() -> dict[str, float]:
        found = [
            sample
            for name in SERVICES
            for sample in scrape(local_topology.processes[name].url + "/metrics").get(
                "plexica_tenant_requests_total", []
            )
        ]
        return {slug: total(found, tenant=slug) for slug in slugs}

    def seen() -> dict[str, float]:
        expr = f'sum by (tenant) (plexica_tenant_requests_total{{tenant=~"{"|".join(slugs)}"}})'
        return {r["metric"]["tenant"]: float(r["value"][1]) for r in prometheus.query(expr)}

    def in_sync() -> bool:
        want, got = counted(), seen()
        return all(got.get(slug, 0) >= n for slug, n in want.items())

    for round_ in range(ROUNDS + 1):
        if round_:
            for _ in range(NOISY_PER_ROUND):
                list_contacts(local_topology, noisy)
            list_contacts(local_topology, quiet)
        # Prometheus holds what the services count before the next round's requests.
        wait_until(in_sync, lambda: {"services": counted(), "prometheus": seen()})

    def evaluate() -> dict[str, Result]:
        at = time.time()
        out: dict[str, Result] = {}
        for title, expr in queries:
            out.setdefault(title, []).extend(prometheus.query(expr, at))  # PromQLError: invalid
        return out

    def problems(results: dict[str, Result]) -> list[str]:
        out = [f"{t}: no data" for t, r in results.items() if not r and t not in MAY_BE_EMPTY]
        for title in TOP_BY_REQUESTS:
            ranked = by_tenant(results[title])
            value = dict(ranked)
            first = ranked[0][0] if ranked else None
            if first != noisy.slug or not value[noisy.slug] > value.get(quiet.slug, 0) > 0:
                out.append(f"{title}: not the noisy tenant first, the quiet one after: {ranked}")
        stored = by_tenant(results[BY_STORAGE])
        if not stored or stored[0][0] != noisy.slug or stored[0][1] < 1000:
            out.append(f"{BY_STORAGE}: not the noisy tenant's 1000 bytes first: {stored}")
        latency = dict(by_tenant(results[LATENCY]))
        if not all(latency.get(slug, 0) > 0 for slug in slugs):
            out.append(f"{LATENCY}: no P95 for the tenants: {latency}")
        states = {r["metric"].get("state"): float(r["value"][1]) for r in results[BY_STATE]}
        if states.get("active", 0) < 2:
            out.append(f"{BY_STATE}: fewer than the two active tenants: {states}")
        return out

    # The worker's storage gauge and the core's tenants by state follow within a pass or two.
    deadline = time.monotonic() + 180
    while found := problems(results := evaluate()):
        assert time.monotonic() < deadline, (found, results)
        time.sleep(0.5)
