"""The chart lint's gate (deploy/chart_lint.py, run by scripts/lint-chart in CI before the tests,
ADR 0214, 0235): every values file is linted, each baseline entry says why, and a finding outside
the baseline fails as an entry nothing needs does. The chart itself is linted by the script, not
here again: checkov takes half a minute to start."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deploy import chart_lint, k8s_render

IDENTICAL_PROBES = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "probed"},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "probed"}},
        "template": {
            "metadata": {"labels": {"app": "probed"}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "example/app:1.0",
                        "livenessProbe": {"tcpSocket": {"port": 8080}},
                        "readinessProbe": {"tcpSocket": {"port": 8080}},
                    }
                ]
            },
        },
    },
}


def test_every_values_file_is_linted() -> None:
    beside = {p.name for p in k8s_render.CHART.glob("values*.yaml")}
    assert set(k8s_render.VALUES_FILES) == beside


def test_each_committed_baseline_entry_says_why() -> None:
    for baseline in (chart_lint.CHECKOV_BASELINE, chart_lint.KUBE_SCORE_BASELINE):
        assert chart_lint.accepted(baseline), baseline


@pytest.mark.parametrize(
    "entry",
    [{"resources": ["*"]}, {"why": " ", "resources": ["*"]}, {"why": "fine"}, "just because"],
)
def test_a_baseline_entry_without_why_or_resources_is_refused(
    tmp_path: Path, entry: object
) -> None:
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(yaml.safe_dump({"some-check": entry}))
    with pytest.raises(chart_lint.BaselineError, match="some-check"):
        chart_lint.accepted(baseline)


def test_a_critical_finding_outside_the_baseline_fails_and_so_does_an_unneeded_entry(
    tmp_path: Path,
) -> None:
    manifest = tmp_path / "probed.yaml"
    manifest.write_text(yaml.safe_dump(IDENTICAL_PROBES))
    found = chart_lint.kube_score(manifest)
    assert ("pod-probes-identical", "Deployment/probed") in found

    problems = chart_lint.beyond({"probed.yaml": found}, set())
    assert "probed.yaml: pod-probes-identical on Deployment/probed" in problems

    accepted = {(check, chart_lint.ANY) for check, _ in found}
    assert chart_lint.beyond({"probed.yaml": found}, accepted) == []
    stale = accepted | {("statefulset-has-servicename", "StatefulSet/gone")}
    assert chart_lint.beyond({"probed.yaml": found}, stale) == [
        "baseline entry nothing needs: statefulset-has-servicename on StatefulSet/gone"
    ]
