"""Lint the Helm chart, rendered with every values file, with checkov and kube-score.

``scripts/lint-chart`` runs it in CI before the tests (ADR 0214, 0235). Each linter has its
committed baseline in ``deploy/lint/``: every accepted finding with why. A finding outside it
fails, and so does a baseline entry that no rendering needs any more. kube-score is gated on its
CRITICAL grade; checkov's open-source output has no severity, so each of its failed checks is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from deploy import k8s_render

ROOT = Path(__file__).resolve().parent.parent
CHECKOV = ROOT / ".venv" / "tools" / "checkov" / "bin" / "checkov"
KUBE_SCORE = ROOT / ".venv" / "tools" / "bin" / "kube-score"
CHECKOV_BASELINE = ROOT / "deploy" / "lint" / "checkov-baseline.yaml"
KUBE_SCORE_BASELINE = ROOT / "deploy" / "lint" / "kube-score-baseline.yaml"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion): kube-score's API checks.
KUBERNETES = "v1.29"
CRITICAL = 1  # kube-score's grades: 1 critical, 5 warning, 7 almost OK, 10 OK
ANY = "*"  # a baseline entry's resource that accepts the check for every resource

Finding = tuple[str, str]  # (check id, "Kind/name")


class BaselineError(ValueError):
    """A baseline file that does not say, for each entry, why and for which resources."""


def render_all(folder: Path) -> dict[str, Path]:
    """Values file -> the chart's rendering with it, one multi-document file in ``folder``."""
    out = {}
    for values in k8s_render.VALUES_FILES:
        docs = k8s_render.documents(k8s_render.render(None if values == "values.yaml" else values))
        out[values] = folder / values
        out[values].write_text(yaml.safe_dump_all(docs))
    return out


def accepted(baseline: Path) -> set[Finding]:
    entries = yaml.safe_load(baseline.read_text()) or {}
    if not isinstance(entries, dict):
        raise BaselineError(f"{baseline.name}: a mapping of check id to why and resources")
    out = set()
    for check, entry in entries.items():
        if not isinstance(entry, dict) or not str(entry.get("why") or "").strip():
            raise BaselineError(f"{baseline.name}: {check} does not say why it is accepted")
        resources = entry.get("resources")
        if not isinstance(resources, list) or not resources:
            raise BaselineError(f"{baseline.name}: {check} names no resources")
        out |= {(str(check), str(resource)) for resource in resources}
    return out


def beyond(found: Mapping[str, set[Finding]], allowed: set[Finding]) -> list[str]:
    """What fails the gate: each finding (per values file) the baseline does not accept, then
    each baseline entry that no rendering needs."""
    problems = []
    used: set[Finding] = set()
    for values, failed in sorted(found.items()):
        for check, resource in sorted(failed):
            if (check, resource) in allowed:
                used.add((check, resource))
            elif (check, ANY) in allowed:
                used.add((check, ANY))
            else:
                problems.append(f"{values}: {check} on {resource}")
    problems += [f"baseline entry nothing needs: {c} on {r}" for c, r in sorted(allowed - used)]
    return problems


def checkov(files: Iterable[Path]) -> dict[str, set[Finding]]:
    """File name -> every check checkov fails on it (one run for them all: it takes half a
    minute to start). Offline: no download of the platform's policies or severities."""
    files = list(files)
    folder = files[0].parent
    proc = subprocess.run(
        [str(CHECKOV), "--directory", str(folder), "--framework", "kubernetes", "--output", "json",
         "--quiet", "--compact", "--skip-download", "--soft-fail"],
        capture_output=True, text=True, check=False, timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder), "BC_SKIP_MAPPING": "TRUE"},
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"checkov failed ({proc.returncode}): {proc.stderr[-2000:]}")
    reports: Any = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    out: dict[str, set[Finding]] = {f.name: set() for f in files}
    read: set[str] = set()
    for report in reports:
        summary = report["summary"]
        if summary["parsing_errors"] or not summary["resource_count"]:
            raise RuntimeError(f"checkov could not read the manifests: {summary}")
        # --quiet reports failed checks only; every rendering has some (CKV_K8S_21 at least).
        for f in report["results"]["failed_checks"]:
            kind, _namespace, name = f["resource"].split(".", 2)
            out[Path(f["file_path"]).name].add((f["check_id"], f"{kind}/{name}"))
            read.add(Path(f["file_path"]).name)
    if unread := set(out) - read:
        raise RuntimeError(f"checkov reported nothing on {sorted(unread)}")
    return out


def kube_score(manifests: Path) -> set[Finding]:
    """Every CRITICAL kube-score finding on the objects of ``manifests``."""
    proc = subprocess.run(
        [str(KUBE_SCORE), "score", "--output-format", "json", "--kubernetes-version", KUBERNETES,
         str(manifests)],
        capture_output=True, text=True, check=False, timeout=300, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    # It exits 1 when it finds a critical issue; its report is what counts.
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        raise RuntimeError(f"kube-score failed ({proc.returncode}): {proc.stderr[-2000:]}")
    scored: list[Any] = json.loads(proc.stdout)
    return {
        (check["check"]["id"], f"{obj['type_meta']['kind']}/{obj['object_meta']['name']}")
        for obj in scored
        for check in obj["checks"]
        if check["grade"] == CRITICAL and not check["skipped"]
    }


def main() -> int:
    for tool in (CHECKOV, KUBE_SCORE):
        if not tool.exists():
            print(f"lint-chart: {tool.relative_to(ROOT)} is missing: run scripts/bootstrap")
            return 2
    failed = False
    with tempfile.TemporaryDirectory(prefix="plexica-chart-lint-") as tmp:
        rendered = render_all(Path(tmp))
        for name, baseline, found in (
            ("kube-score", KUBE_SCORE_BASELINE, {v: kube_score(f) for v, f in rendered.items()}),
            ("checkov", CHECKOV_BASELINE, checkov(rendered.values())),
        ):
            problems = beyond(found, accepted(baseline))
            for problem in problems:
                print(f"{name}: {problem}")
            if problems:
                print(f"== {name}: FAILED; accept a finding only in {baseline.name}, with why")
            else:
                print(f"== {name}: ok, {sum(map(len, found.values()))} findings, all accepted")
            failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
