"""The chart, rendered with every values file, linted with checkov (its own venv) and kube-score
(built from the Go module proxy), both made by scripts/bootstrap, each against its committed
baseline in deploy/lint/: a finding outside it fails, and so does a baseline entry nothing needs
any more (ADR 0214)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from deploy import k8s_render
from tests.deploy.conftest import DEPLOY
from tests.deploy.test_helm import VALUES

CHECKOV = DEPLOY.parent / ".venv" / "tools" / "checkov" / "bin" / "checkov"
BASELINE = DEPLOY / "lint" / "checkov-baseline.yaml"
KUBE_SCORE = DEPLOY.parent / ".venv" / "tools" / "bin" / "kube-score"
KUBE_SCORE_BASELINE = DEPLOY / "lint" / "kube-score-baseline.yaml"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion): kube-score's API checks.
KUBERNETES = "v1.29"
CRITICAL = 1  # kube-score's grades: 1 critical, 5 warning, 7 almost OK, 10 OK


def findings(folder: Path) -> dict[str, set[tuple[str, str]]]:
    """File name -> (check id, kind/name) of every failed check on the manifests in ``folder``
    (one checkov run for them all: it takes half a minute to start)."""
    proc = subprocess.run(
        [str(CHECKOV), "--directory", str(folder), "--framework", "kubernetes", "--output", "json",
         "--quiet", "--compact", "--skip-download", "--soft-fail"],
        capture_output=True, text=True, check=False, timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder), "BC_SKIP_MAPPING": "TRUE"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    reports: Any = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    out: dict[str, set[tuple[str, str]]] = {}
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0, report["summary"]
        assert report["summary"]["resource_count"] > 0, report["summary"]
        for f in report["results"]["failed_checks"]:
            kind, _namespace, name = f["resource"].split(".", 2)
            out.setdefault(Path(f["file_path"]).name, set()).add((f["check_id"], f"{kind}/{name}"))
    return out


def accepted(baseline: Path) -> set[tuple[str, str]]:
    entries = yaml.safe_load(baseline.read_text())
    for check, entry in entries.items():
        assert entry["why"].strip(), check
    return {(check, res) for check, entry in entries.items() for res in entry["resources"]}


def render_all(folder: Path) -> None:
    for values in VALUES:
        docs = k8s_render.documents(k8s_render.render(None if values == "values.yaml" else values))
        (folder / values).write_text(yaml.safe_dump_all(docs))


def test_checkov_finds_nothing_beyond_the_baseline(tmp_path: Path) -> None:
    allowed = accepted(BASELINE)
    render_all(tmp_path)
    found: set[tuple[str, str]] = set()
    results = findings(tmp_path)
    assert set(results) == set(VALUES)  # every file was read (each has some accepted finding)
    for values, failed in results.items():
        new = {(c, r) for c, r in failed if (c, r) not in allowed and (c, "*") not in allowed}
        assert not new, f"{values}: {sorted(new)}"
        found |= failed | {(c, "*") for c, _ in failed}
    assert allowed <= found, f"baseline entries nothing needs: {sorted(allowed - found)}"


def critical(manifests: Path) -> set[tuple[str, str]]:
    """(check id, kind/name) of every CRITICAL kube-score finding on ``manifests``."""
    proc = subprocess.run(
        [str(KUBE_SCORE), "score", "--output-format", "json", "--kubernetes-version", KUBERNETES,
         str(manifests)],
        capture_output=True, text=True, check=False, timeout=300, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    # It exits 1 when it finds a critical issue; its report is what counts.
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    scored: list[Any] = json.loads(proc.stdout)
    assert scored
    return {
        (check["check"]["id"], f"{obj['type_meta']['kind']}/{obj['object_meta']['name']}")
        for obj in scored
        for check in obj["checks"]
        if check["grade"] == CRITICAL and not check["skipped"]
    }


def test_kube_score_finds_nothing_critical_beyond_the_baseline(tmp_path: Path) -> None:
    assert KUBE_SCORE.exists(), "scripts/bootstrap builds kube-score with Go"
    allowed = accepted(KUBE_SCORE_BASELINE)
    render_all(tmp_path)
    found: set[tuple[str, str]] = set()
    for values in VALUES:
        failed = critical(tmp_path / values)
        new = {(c, r) for c, r in failed if (c, r) not in allowed and (c, "*") not in allowed}
        assert not new, f"{values}: {sorted(new)}"
        found |= failed | {(c, "*") for c, _ in failed}
    assert allowed <= found, f"baseline entries nothing needs: {sorted(allowed - found)}"
