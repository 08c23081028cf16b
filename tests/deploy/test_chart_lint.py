"""The chart, rendered with every values file, linted with checkov (its own venv, made by
scripts/bootstrap) against the committed baseline deploy/lint/checkov-baseline.yaml: a finding
outside it fails, and so does a baseline entry nothing needs any more (ADR 0214)."""

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


def test_checkov_finds_nothing_beyond_the_baseline(tmp_path: Path) -> None:
    baseline = yaml.safe_load(BASELINE.read_text())
    allowed = {(check, res) for check, entry in baseline.items() for res in entry["resources"]}
    for entry in baseline.values():
        assert entry["why"].strip()
    for values in VALUES:
        docs = k8s_render.documents(k8s_render.render(None if values == "values.yaml" else values))
        (tmp_path / values).write_text(yaml.safe_dump_all(docs))
    found: set[tuple[str, str]] = set()
    results = findings(tmp_path)
    assert set(results) == set(VALUES)  # every file was read (each has some accepted finding)
    for values, failed in results.items():
        new = {(c, r) for c, r in failed if (c, r) not in allowed and (c, "*") not in allowed}
        assert not new, f"{values}: {sorted(new)}"
        found |= failed | {(c, "*") for c, _ in failed}
    assert allowed <= found, f"baseline entries nothing needs: {sorted(allowed - found)}"
