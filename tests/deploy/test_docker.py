"""The service images: linted with hadolint and checked for the rules that matter in production."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, ROOT

DOCKER = DEPLOY / "docker"
SERVICES = {"core": "core", "worker": "worker", "web": "web", "plugin": "plugin"}
HADOLINT = Path(sys.executable).with_name("hadolint")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfiles() -> list[Path]:
    return sorted(DOCKER.glob("*.Dockerfile"))


def test_one_dockerfile_per_service_and_a_dev_variant() -> None:
    names = {p.name.removesuffix(".Dockerfile") for p in dockerfiles()}
    assert names == {*SERVICES, "dev"}


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: p.name)
def test_hadolint_passes(path: Path) -> None:
    proc = subprocess.run(
        [str(HADOLINT), "--config", str(DOCKER / "hadolint.yaml"), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: p.name)
def test_production_rules(path: Path) -> None:
    ins = instructions(path)
    args = dict(v.split("=", 1) for n, v in ins if n == "ARG" and "=" in v)
    base = "PYTHON_IMAGE=" + args.get("PYTHON_IMAGE", "")
    # Pinned to an exact patch release of a slim Python 3.11 image, never a moving tag.
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+", base), base
    froms = [v for n, v in ins if n == "FROM"]
    assert len(froms) >= 2, "multi-stage: build tools stay out of the runtime image"
    users = [v for n, v in ins if n == "USER"]
    assert users, "no USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert any(n == "HEALTHCHECK" and "/health" in v for n, v in ins)
    assert not [v for n, v in ins if n == "ADD"], "ADD fetches URLs and unpacks archives: use COPY"
    pip = [v for n, v in ins if n == "RUN" and re.search(r"-r \S*requirements", v)]
    assert pip
    assert all("--require-hashes" in v for v in pip)
    # One process: the last instruction runs `plexica serve ...` (or exec's it).
    last = [v for n, v in ins if n in ("CMD", "ENTRYPOINT")]
    assert "serve" in " ".join(last)


def test_runtime_lock_is_the_production_subset_of_the_lock() -> None:
    def pins(path: Path) -> dict[str, str]:
        return dict(re.findall(r"^([a-z0-9_.-]+)==(\S+)", path.read_text(), re.M))

    full, runtime = pins(ROOT / "requirements.lock"), pins(ROOT / "requirements.runtime.lock")
    assert runtime.items() <= full.items(), "run scripts/lock: requirements.runtime.lock is stale"
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"]:
        name = re.split(r"[\[=<>]", req)[0].lower()
        if name != "plexica-sdk":
            assert name in runtime, (
                f"{name} missing from requirements.runtime.lock: run scripts/lock"
            )


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert next(x for x in lines if not x.startswith("#")) == "**"
    assert "!requirements.runtime.lock" in lines
