"""The GitHub Actions workflow parses, follows the seed's pipeline and runs what .ci/run runs."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.conftest import DEPLOY, ROOT, load_yaml

WORKFLOW = ROOT / ".github" / "workflows" / "ci-cd.yml"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    data = load_yaml(WORKFLOW)
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return dict(data)


def run_lines(job: dict[str, Any]) -> list[str]:
    return [
        line.strip() for step in job["steps"] for line in step.get("run", "").splitlines() if line
    ]


def ci_run_commands() -> list[str]:
    commands = []
    for line in (ROOT / ".ci" / "run").read_text().splitlines():
        m = re.match(r'echo "== [^"]+" && (.+)$', line)
        if m:
            commands.append(m.group(1).strip())
    return commands


def test_triggers_and_jobs(workflow: dict[str, Any]) -> None:
    assert workflow["on"]["push"]["branches"] == ["main", "develop"]
    assert workflow["on"]["pull_request"]["branches"] == ["main"]
    jobs = workflow["jobs"]
    assert list(jobs) == ["test", "compose", "build", "deploy"]
    assert jobs["build"]["needs"] == ["test", "compose"]
    assert jobs["deploy"]["needs"] == "build"
    for name in ("build", "deploy"):
        assert "refs/heads/main" in jobs[name]["if"]


def test_test_job_runs_every_ci_run_command(workflow: dict[str, Any]) -> None:
    lines = run_lines(workflow["jobs"]["test"])
    commands = ci_run_commands()
    assert commands[-1] == "scripts/test", ".ci/run must end with the README's test command"
    for command in commands:
        assert any(line.startswith(command) for line in lines), command
    assert "scripts/bootstrap" in lines
    assert "scripts/install-system-packages" in lines
    assert "--fail-under=80" in (ROOT / "scripts" / "test").read_text()


def test_the_chart_is_linted_before_the_tests(workflow: dict[str, Any]) -> None:
    commands = ci_run_commands()
    assert commands.index("scripts/lint-chart") < commands.index("scripts/test")
    steps = workflow["jobs"]["test"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    runs = [s.get("run", "") for s in steps]
    # kube-score is built with Go by scripts/bootstrap.
    assert uses.index("actions/setup-go@v5") < runs.index("scripts/bootstrap")
    assert runs.index("scripts/lint-chart") < runs.index(".venv/bin/pytest -q -n auto tests/unit")


def test_images_are_built_from_the_repository_dockerfiles(workflow: dict[str, Any]) -> None:
    build = workflow["jobs"]["build"]
    for entry in build["strategy"]["matrix"]["include"]:
        assert (DEPLOY / "docker" / f"{entry['dockerfile']}.Dockerfile").is_file()
    push = next(s for s in build["steps"] if s.get("uses", "").startswith("docker/build-push"))
    assert push["with"]["file"] == "deploy/docker/${{ matrix.dockerfile }}.Dockerfile"
    assert "${{ github.sha }}" in push["with"]["tags"]


def test_deploy_upgrades_the_chart_and_verifies_the_rollout(workflow: dict[str, Any]) -> None:
    text = "\n".join(run_lines(workflow["jobs"]["deploy"]))
    assert "helm upgrade --install plexica deploy/helm/plexica" in text
    assert "values-self-hosted.yaml" in text
    assert "--set image.tag=${{ github.sha }}" in text
    assert '--set "image.digests.' in text  # every image pinned by the digest pushed
    # ... and the third-party ones by the digest their tag names at deploy time (ADR 0254).
    assert "python3 deploy/image_pins.py" in text
    assert "-f third-party-digests.json" in text
    assert "kubectl -n plexica rollout status deployment/plexica-$d" in text
    assert (DEPLOY / "helm" / "plexica" / "values-self-hosted.yaml").is_file()


def test_compose_job_uses_the_committed_files(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["compose"]
    text = "\n".join(run_lines(job))
    assert "docker compose config --quiet" in text
    compose = load_yaml(DEPLOY / "compose" / "docker-compose.yml")["services"]
    up = next(line for line in run_lines(job) if line.startswith("docker compose up"))
    started = up.split("--wait-timeout 600", 1)[1].split()
    assert "core" in started
    assert set(started) <= set(compose)


def test_compose_job_sets_every_required_variable_apart(workflow: dict[str, Any]) -> None:
    """`docker compose config` stops on a required variable left empty: the job fills each one
    of the Compose file, every secret with its own random value (ADR 0228)."""
    text = "\n".join(run_lines(workflow["jobs"]["compose"]))
    loop = re.search(r"^for key in (.+); do$", text, re.M)
    assert loop, text
    filled = set(loop.group(1).split())
    assert 'sed -i "s/^$key=\\$/$key=ci-$(openssl rand -hex 24)/" .env' in text
    compose = (DEPLOY / "compose" / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", compose))
    assert required - {"MINIO_ROOT_USER"} <= filled, required - filled
    assert "s/^MINIO_ROOT_USER=$/MINIO_ROOT_USER=plexica/" in text
    assert "PLUGIN_DB_PASSWORD" not in filled


def test_every_action_is_pinned_to_a_major_version(workflow: dict[str, Any]) -> None:
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w./-]+@v\d+", step["uses"]), step["uses"]
