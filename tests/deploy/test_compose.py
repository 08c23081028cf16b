"""The Compose topology: resolved and parsed against the Compose Specification (no compose plugin
here for `docker compose config`), and checked for the deployment rules."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose

from plexica.settings import ENV_PREFIX, Settings, load_settings
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
INTERPOLATION = re.compile(r"\$\{([A-Za-z0-9_]+)(?:(:?)([-?])([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ${V}, ${V:-default}, ${V-default}, ${V:?err}, ${V?err}."""

    def substitute(m: re.Match[str]) -> str:
        name, colon, op, arg = m.groups()
        value = env.get(name)
        missing = value is None or (colon == ":" and value == "")
        if op == "-":
            return arg if missing else str(value)
        if op == "?" and missing:
            raise ValueError(f"required variable {name} is missing: {arg}")
        return value or ""

    return INTERPOLATION.sub(substitute, text)


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


def resolved(path: Path, env: dict[str, str]) -> dict[str, Any]:
    return dict(yaml.safe_load(interpolate(path.read_text(), env)))


def test_compose_spec_validates_the_resolved_files() -> None:
    """What `docker compose config` does without a daemon: interpolate the variables, resolve
    anchors and merge keys, then parse against the Compose Specification (compose_spec, strict:
    unknown keys, bad durations, bad depends_on conditions, bad image references fail)."""
    env = {k: v or f"test-{k.lower()}" for k, v in env_example().items()}
    for name in ("docker-compose.yml", "docker-compose.dev.yml"):
        spec = PyCompose.from_json(json.dumps(resolved(COMPOSE / name, env)))
        assert spec.service_names()
    base = PyCompose.from_json(json.dumps(resolved(COMPOSE / "docker-compose.yml", env)))
    assert set(PLEXICA) | set(SEED_SERVICES) == set(base.service_names())


def test_missing_required_variables_stop_compose() -> None:
    env = env_example()
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        resolved(COMPOSE / "docker-compose.yml", {k: v for k, v in env.items() if v})
    with pytest.raises(ValueError, match="unknown variant"):
        PyCompose.from_yaml(
            "services:\n  a:\n    image: x:1\n    depends_on:\n      b:\n        condition: up\n"
        )


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
            # PLEXICA_PLUGIN_* configure a plugin's own process (plexica_sdk.app), as in
            # load_settings.
            if key.startswith(ENV_PREFIX) and not key.startswith(ENV_PREFIX + "PLUGIN_"):
                assert key in known, f"{name}: {key} would stop the service at start-up"


def test_every_plexica_service_starts_with_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each service's resolved environment passes the checks `plexica serve` runs at start-up
    (e.g. Keycloak needs its admin user); plugins know their issuers, the core its plugins."""
    example = {k: v or "x" for k, v in env_example().items()}
    text = interpolate((COMPOSE / "docker-compose.yml").read_text(), example)
    services = yaml.safe_load(text)["services"]
    plugins = [n for n in services if n.startswith("plugin-")]
    for name in PLEXICA:
        env = {k: str(v) for k, v in services[name].get("environment", {}).items()}
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        load_settings(service=name)
        if name.startswith("plugin-"):
            assert env["PLEXICA_PLUGIN_ISSUER_BASE_URL"].endswith("/realms"), name
    core = services["core"]["environment"]
    assert sorted(core["PLEXICA_PLUGIN_URLS"].split(",")) == sorted(
        f"{p.removeprefix('plugin-')}=http://{p}:3000" for p in plugins
    )
    assert "PLEXICA_KEYCLOAK_ADMIN_PASSWORD" not in services["plugin-crm"]["environment"]


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
