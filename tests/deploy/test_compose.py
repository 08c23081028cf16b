"""The Compose topology, checked structurally (no Docker engine here; the CLI has no compose)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from plexica.settings import ENV_PREFIX, Settings
from tests.deploy.conftest import DEPLOY, ROOT, load_yaml

COMPOSE = DEPLOY / "compose"
SEED_SERVICES = {
    "postgres": "postgres:18.",
    "redis": "redis:8.",
    "redpanda": "redpandadata/redpanda:",
    "keycloak": "quay.io/keycloak/keycloak:26.5",
    "minio": "minio/minio:",
    "traefik": "traefik:v3.",
    "kong": "kong:3.",
}
PLEXICA = ("core", "worker", "web", "plugin-crm", "plugin-billing", "migrate")
VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(load_yaml(COMPOSE / "docker-compose.yml"))


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (COMPOSE / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def test_seed_topology_with_pinned_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, image in SEED_SERVICES.items():
        assert services[name]["image"].startswith(image), name
    for name, svc in services.items():
        image = svc.get("image", "")
        assert image
        assert not image.endswith(":latest"), name
        assert ":" in image, f"{name}: image without a tag"
    assert set(PLEXICA) <= set(services)
    assert services["kong"]["profiles"] == ["kong"]


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        if name == "migrate":
            assert svc["command"] == ["migrate"]
            continue
        check = svc["healthcheck"]
        assert check["test"], name


def test_dependencies_wait_for_health_and_for_the_migration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            want = "service_completed_successfully" if dep == "migrate" else "service_healthy"
            assert cond == {"condition": want}, (name, dep)
            assert dep == "migrate" or "healthcheck" in services[dep]
    for name in ("core", "worker"):
        assert "migrate" in services[name]["depends_on"]


def test_builds_point_at_existing_dockerfiles(compose: dict[str, Any]) -> None:
    for name in PLEXICA:
        build = compose["services"][name]["build"]
        context = (COMPOSE / build["context"]).resolve()
        assert context == ROOT
        assert (context / build["dockerfile"]).is_file(), name
    dev = load_yaml(COMPOSE / "docker-compose.dev.yml")
    for name, svc in dev["services"].items():
        assert name in compose["services"]
        assert (ROOT / svc["build"]["dockerfile"]).is_file()


def test_mounted_config_files_exist(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE / source).exists(), f"{name}: {source}"


def test_plexica_variables_are_real_settings(compose: dict[str, Any]) -> None:
    known = {ENV_PREFIX + f.upper() for f in Settings.model_fields}
    for name in PLEXICA:
        for key in compose["services"][name]["environment"]:
            if key.startswith(ENV_PREFIX):
                assert key in known, f"{name}: {key} would stop the service at start-up"


def test_variables_are_documented_and_no_secret_is_committed() -> None:
    text = (COMPOSE / "docker-compose.yml").read_text()
    used = set(VAR.findall(text))
    documented = env_example()
    assert used <= set(documented), used - set(documented)
    for key, value in documented.items():
        if re.search(r"PASSWORD|SECRET|TOKEN|MINIO_ROOT_USER", key):
            assert value == "", f"{key} has a value in .env.example"
    required = {m.group(1) for m in re.finditer(r"\$\{([A-Z0-9_]+):\?", text)}
    assert {"POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "KEYCLOAK_ADMIN_PASSWORD"} <= required
    assert "deploy/compose/.env" in (ROOT / ".gitignore").read_text().splitlines()


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_initdb_script_is_executable() -> None:
    for script in (COMPOSE / "initdb").iterdir():
        assert script.stat().st_mode & 0o111, script
        assert Path(script).read_text().startswith("#!/bin/sh")
