"""Monitoring: alert rules checked and unit-tested with promtool (Debian's prometheus package,
installed by scripts/install-system-packages), scrape configs, Grafana dashboards, and that every
metric they use is one the code exports or the metric contract (deploy/prometheus/metrics.yml)
names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import DEPLOY, ROOT, load_yaml

PROM = DEPLOY / "prometheus"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip
SUFFIXES = ("_bucket", "_sum", "_count")


def promtool(*args: str) -> str:
    exe = shutil.which("promtool")
    assert exe, "promtool missing: scripts/install-system-packages installs it"
    proc = subprocess.run([exe, *args], cwd=PROM, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, groupings and ranges removed)."""
    text = re.sub(r"label_values\(([^,]+),\s*\w+\)", r"\1", expr)
    text = re.sub(r'"[^"]*"', "", text)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\w+", "", text)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text):
        name = m.group(1)
        if name.lower() not in KEYWORDS and not re.fullmatch(r"\d.*", name):
            names.add(name)
    return names


def base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def contract() -> dict[str, dict[str, Any]]:
    return dict(load_yaml(PROM / "metrics.yml")["metrics"])


def rules() -> list[dict[str, Any]]:
    return [r for g in load_yaml(PROM / "alerts.yml")["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            out.extend((path.name, t["expr"]) for t in panel["targets"])
        variables = dash["templating"]["list"]
        out.extend((path.name, v["definition"]) for v in variables if v["type"] == "query")
    return out


def test_promtool_checks_the_rules_and_the_compose_config() -> None:
    assert "SUCCESS" in promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in promtool("check", "config", "prometheus.compose.yml")


def test_promtool_unit_tests_pass_and_cover_every_alert() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yml")
    tested = set(re.findall(r"alertname: (\w+)", (PROM / "alerts.test.yml").read_text()))
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert alerts == tested, alerts ^ tested
    required = {
        "PlexicaHighErrorRate", "PlexicaHighLatencyP95", "PlexicaOutboxLag", "PlexicaConsumerLag",
        "PlexicaTenantProvisioningFailures", "PlexicaServiceNotReady", "PlexicaNoisyTenant",
        "PlexicaDeadLettersGrowing", "PlexicaRateLimiterFailOpen", "PlexicaCertificateExpiresSoon",
    }  # fmt: skip
    assert required <= alerts


def test_every_alert_has_a_severity_and_an_existing_runbook_section() -> None:
    for rule in rules():
        if "alert" not in rule:
            continue
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        doc, _, anchor = rule["annotations"]["runbook"].partition("#")
        headings = re.findall(r"^#+ (.+)$", (ROOT / doc).read_text(), re.M)
        slugs = {re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-") for h in headings}
        assert anchor in slugs, (rule["alert"], anchor)


def test_kubernetes_scrape_config_shape() -> None:
    # Debian's Prometheus is built without Kubernetes discovery, so promtool cannot load this one.
    config = load_yaml(PROM / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert {"plexica", "plexica-gateway"} <= set(jobs)
    for job in jobs.values():
        assert job["kubernetes_sd_configs"][0]["role"] == "pod"
        for relabel in job["relabel_configs"]:
            re.compile(relabel.get("regex", "(.*)"))
    keep = jobs["plexica"]["relabel_configs"][0]
    assert keep["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]


def test_dashboards_parse_with_unique_ids() -> None:
    assert {p.stem for p in DASHBOARDS} == {"plexica-red", "plexica-tenants", "plexica-plugins"}
    uids = set()
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        assert dash["uid"] == path.stem
        uids.add(dash["uid"])
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids))
        for panel in dash["panels"]:
            assert panel["targets"], panel["title"]
            assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
            if panel["type"] == "bargauge":
                # A range query would show every series that was ever in the top N of the range.
                assert all(t.get("instant") and not t.get("range") for t in panel["targets"])
    assert len(uids) == len(DASHBOARDS)


def test_every_referenced_metric_exists() -> None:
    known = contract()
    recorded = {r["record"] for r in rules() if "record" in r}
    exprs = [("alerts.yml", r["expr"]) for r in rules()] + dashboard_exprs()
    for where, expr in exprs:
        for name in metric_names(expr):
            if ":" in name:
                assert name in recorded, (where, name)
            else:
                assert base(name) in known, f"{where}: {name} is not in metrics.yml"


def test_metrics_marked_as_code_are_exported_by_the_code() -> None:
    sources = "\n".join(
        p.read_text() for d in ("src", "packages") for p in (ROOT / d).rglob("*.py")
    )
    for name, spec in contract().items():
        assert spec["source"] in ("code", "external"), name
        if spec["source"] == "code":
            assert f'"{name}"' in sources, f"{name} is marked code but not defined"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (service) (rate(x_total{a="b"}[5m])) / y', {"x_total", "y"}),
        ("histogram_quantile(0.95, sum by (le) (rate(h_bucket[5m]))) > 0.5", {"h_bucket"}),
        ("up == 0 and on(instance) z", {"up", "z"}),
        ('label_values(m_total{s=~"p-.*"}, service)', {"m_total"}),
    ],
)
def test_metric_name_extraction(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "plexica.yml")
    assert provider["providers"][0]["type"] == "file"
    source = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "plexica.yml")
    assert source["datasources"][0]["type"] == "prometheus"
    assert isinstance(Path(provider["providers"][0]["options"]["path"]), Path)
