"""The Compose topology: resolved and parsed against the Compose Specification (no compose plugin
here for `docker compose config`), and checked for the deployment rules."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose

from plexica.events.acl import PLATFORM_PRINCIPAL, plugin_principal
from plexica.kit.kafka import KafkaLogin
from plexica.settings import ENV_PREFIX, Settings, SettingsError, load_settings
from plexica_sdk.app import PluginConfig
from tests.deploy.conftest import CHART_FILES, DEPLOY, ROOT, load_yaml

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
MONITORING = {
    "prometheus": "prom/prometheus:v3.",
    "grafana": "grafana/grafana:",
    "jaeger": "jaegertracing/jaeger:2.",
}
PLEXICA = (
    "core", "worker", "web", "plugin-crm", "plugin-billing", "migrate", "gateway-config",
    "broker-grants",
)  # fmt: skip
# Run to completion before what depends on them.
ONE_SHOT = {"migrate", "minio-users", "keycloak-client"}
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


def placeholders() -> dict[str, str]:
    """.env.example filled in: a placeholder for each required value, optional ones left empty."""
    fill = {"PLEXICA_WEB_SECRET": "w" * 48, "PLEXICA_KEY_ENCRYPTION_KEY": "k" * 48}
    return {
        k: v or ("" if k.endswith(("DATABASE_URL", "BASE_DOMAIN")) else fill.get(k, "x"))
        for k, v in env_example().items()
    }


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (COMPOSE / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def test_seed_topology_with_pinned_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, image in (SEED_SERVICES | MONITORING).items():
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
    want = set(PLEXICA) | set(SEED_SERVICES) | set(MONITORING) | ONE_SHOT
    assert want == set(base.service_names())


def test_missing_required_variables_stop_compose() -> None:
    env = env_example()
    with pytest.raises(ValueError, match=r"RUNTIME_DB_PASSWORD|POSTGRES_PASSWORD"):
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
        if name in ONE_SHOT:
            assert svc["restart"] == "no", name
            continue
        check = svc["healthcheck"]
        assert check["test"], name


def test_dependencies_wait_for_health_and_for_the_migration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            want = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert cond == {"condition": want}, (name, dep)
            assert dep in ONE_SHOT or "healthcheck" in services[dep]
    for name in ("core", "worker"):
        assert {"migrate", "minio-users", "keycloak-client"} <= set(services[name]["depends_on"])


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
    example = placeholders()
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
            # Tokens name Keycloak's public address; the core passes its keys on (ADR 0252).
            found = PluginConfig.from_env()
            assert found.issuer_base_url == "http://localhost:8080/realms", name
            assert found.keys_base_url == "http://core:3000/realms", name
    core = services["core"]["environment"]
    assert sorted(core["PLEXICA_PLUGIN_URLS"].split(",")) == sorted(
        f"{p.removeprefix('plugin-')}=http://{p}:3000" for p in plugins
    )
    assert "PLEXICA_KEYCLOAK_ADMIN_PASSWORD" not in services["plugin-crm"]["environment"]
    # Keycloak's admin: Keycloak and the one-shot keycloak-client only (ADR 0251).
    distinct = {k: v or f"value-of-{k.lower()}" for k, v in env_example().items()}
    admin = distinct["KEYCLOAK_ADMIN_PASSWORD"]
    holders = {name for name, env in _service_env(distinct).items() if admin in env.values()}
    assert holders == {"keycloak", "keycloak-client"}, holders
    for name in ("core", "worker"):
        assert "PLEXICA_KEYCLOAK_CLIENT_SECRET" in services[name]["environment"], name


def test_variables_are_documented_and_no_secret_is_committed() -> None:
    text = (COMPOSE / "docker-compose.yml").read_text()
    used = set(VAR.findall(text))
    documented = env_example()
    assert used <= set(documented), used - set(documented)
    for key, value in documented.items():
        if re.search(r"PASSWORD|SECRET|TOKEN|MINIO_ROOT_USER|DATABASE_URL", key):
            assert value == "", f"{key} has a value in .env.example"
    required = {m.group(1) for m in re.finditer(r"\$\{([A-Z0-9_]+):\?", text)}
    assert {
        "POSTGRES_PASSWORD",
        "RUNTIME_DB_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "KEYCLOAK_ADMIN_PASSWORD",
        "PLEXICA_WEB_SECRET",
    } <= required
    assert "deploy/compose/.env" in (ROOT / ".gitignore").read_text().splitlines()


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_initdb_script_is_executable() -> None:
    for script in (COMPOSE / "initdb").iterdir():
        assert script.stat().st_mode & 0o111, script
        assert Path(script).read_text().startswith("#!/bin/sh")


def _service_env(env: dict[str, str]) -> dict[str, dict[str, str]]:
    text = interpolate((COMPOSE / "docker-compose.yml").read_text(), env)
    return {
        name: {k: str(v) for k, v in svc.get("environment", {}).items()}
        for name, svc in yaml.safe_load(text)["services"].items()
    }


def test_web_session_secret_and_tenant_domain_come_from_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ADR 0091/0092: the web shell's key from .env (required, no value committed), the tenant
    domain optional for web and platform; loaded as `plexica serve web` loads them."""
    example = placeholders()
    secret = "s" * 48
    services = _service_env(example | {"PLEXICA_WEB_SECRET": secret})
    web = services["web"]
    assert web["PLEXICA_WEB_SECRET"] == secret
    # ADR 0120: the sessions are in the platform database, reached as the platform's own login.
    assert web["PLEXICA_DATABASE_URL"] == services["core"]["PLEXICA_DATABASE_URL"]
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    for key, value in (web | {"PLEXICA_WEB_BASE_DOMAIN": ""}).items():
        monkeypatch.setenv(key, value)
    settings = load_settings(service="web")
    assert settings.web_secret is not None
    assert settings.web_secret.get_secret_value() == secret
    assert settings.web_base_domain is None
    assert settings.public_base_url == "http://localhost:8000"
    monkeypatch.setenv("PLEXICA_WEB_BASE_DOMAIN", "localtest.me")
    assert load_settings(service="web").tenant_web_url("acme") == "http://acme.localtest.me:8000"
    with_domain = _service_env(example | {"PLEXICA_WEB_BASE_DOMAIN": "localtest.me"})
    for name in ("web", "core", "worker"):
        assert with_domain[name]["PLEXICA_WEB_BASE_DOMAIN"] == "localtest.me", name
    # Too short a key stops the shell at start, with one line.
    monkeypatch.setenv("PLEXICA_WEB_SECRET", "short")
    with pytest.raises(SettingsError, match="PLEXICA_WEB_SECRET is too short"):
        load_settings(service="web")
    with pytest.raises(ValueError, match="PLEXICA_WEB_SECRET"):
        _service_env({k: v for k, v in example.items() if k != "PLEXICA_WEB_SECRET"})


def test_plugins_take_their_own_login_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """ADR 0076: PLEXICA_PLUGIN_DATABASE_URL (from `plexica plugin credentials`) wins over
    PLEXICA_DATABASE_URL in the plugin's process; unset, the plugin starts as before."""
    example = {
        k: v or ("" if k.endswith("DATABASE_URL") else "x") for k, v in env_example().items()
    }
    login = "postgresql://plx_crm_login_0a1b2c3d:pw@postgres:5432/plexica"
    services = _service_env(example | {"PLUGIN_CRM_DATABASE_URL": login})
    for slug in ("crm", "billing"):
        env = services[f"plugin-{slug}"]
        assert "PLEXICA_DATABASE_URL" in env
        assert "PLEXICA_PLUGIN_DATABASE_URL" in env
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        config = PluginConfig.from_env()
        want = login if slug == "crm" else env["PLEXICA_DATABASE_URL"]
        assert config.database_url == want, slug


def test_routes_watcher_shares_its_file_with_traefik(compose: dict[str, Any]) -> None:
    """ADR 0083: gateway-config rewrites the routes into a volume Traefik's provider reads."""
    services = compose["services"]
    watcher, traefik = services["gateway-config"], services["traefik"]
    assert watcher["command"][:4] == ["gateway", "config", "traefik", "--watch"]
    output = watcher["command"][watcher["command"].index("--output") + 1]
    (mount,) = [v for v in watcher["volumes"] if output.startswith(v.split(":")[1] + "/")]
    volume = mount.split(":")[0]
    assert volume in compose["volumes"]
    assert f"{volume}:/etc/traefik/dynamic:ro" in traefik["volumes"]
    static = load_yaml(DEPLOY / "traefik" / "traefik.yml")
    assert static["providers"]["file"]["directory"] == "/etc/traefik/dynamic"
    assert traefik["depends_on"]["gateway-config"] == {"condition": "service_healthy"}
    assert output.rsplit("/", 1)[1] in watcher["healthcheck"]["test"][-1]
    # The image makes that directory for its non-root user: the empty volume takes its owner.
    dockerfile = (ROOT / watcher["build"]["dockerfile"]).read_text()
    assert f"install -d -o plexica -g plexica {output.rsplit('/', 1)[0]}" in dockerfile
    assert watcher["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_prometheus_grafana_and_jaeger_see_the_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mounts = {v.split(":")[1] for v in services["prometheus"]["volumes"]}
    assert {"/etc/prometheus/prometheus.yml", "/etc/prometheus/alerts.yml"} <= mounts
    grafana = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]}
    assert grafana["/etc/grafana/provisioning"] == "../grafana/provisioning"
    assert grafana["/var/lib/grafana/dashboards/plexica"] == "../grafana/dashboards"
    endpoint = compose["x-plexica-env"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == "${OTEL_EXPORTER_OTLP_ENDPOINT:-http://jaeger:4318}"
    for name in ("core", "worker", "plugin-crm", "plugin-billing"):
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" in services[name]["environment"], name


def test_only_core_and_worker_hold_the_redis_password() -> None:
    """ADR 0210/0213: Redis requires a password; plugins and the routes watcher get no Redis,
    no object-store keys, and the watcher no database URL."""
    example = {k: v or "x" for k, v in env_example().items()}
    services = _service_env(example | {"REDIS_PASSWORD": "redis-secret"})
    holders = {
        n for n, env in services.items() if "redis-secret" in env.get("PLEXICA_REDIS_URL", "")
    }
    assert {"core", "worker"} <= holders
    assert not holders & {"plugin-crm", "plugin-billing", "gateway-config"}
    for name in ("plugin-crm", "plugin-billing", "gateway-config"):
        env = services[name]
        for key in (
            "PLEXICA_REDIS_URL",
            "PLEXICA_STORAGE_ACCESS_KEY",
            "PLEXICA_STORAGE_SECRET_KEY",
        ):
            assert env[key] == "", (name, key)
    assert services["gateway-config"]["PLEXICA_DATABASE_URL"] == ""
    redis = resolved(COMPOSE / "docker-compose.yml", example | {"REDIS_PASSWORD": "redis-secret"})
    server = redis["services"]["redis"]
    assert server["command"][-2:] == ["--requirepass", "redis-secret"]


def test_only_migrate_and_the_server_hold_the_owner_login() -> None:
    """ADR 0215: core, worker and web serve as the runtime role; `migrate`, the only service with
    the owner's password, makes that role from the URL it is given."""
    example = {k: v or "x" for k, v in env_example().items()}
    services = _service_env(
        example | {"POSTGRES_PASSWORD": "owner-secret", "RUNTIME_DB_PASSWORD": "runtime-secret"}
    )
    holders = {n for n, env in services.items() if any("owner-secret" in v for v in env.values())}
    # The server's first-start script makes the owner role with it.
    assert holders == {"migrate", "postgres"}, holders
    runtime = "postgresql://plexica_runtime:runtime-secret@postgres:5432/plexica"
    for name in ("core", "worker", "web"):
        assert services[name]["PLEXICA_DATABASE_URL"] == runtime, name
    assert services["migrate"]["PLEXICA_DATABASE_URL"].startswith("postgresql://plexica:owner-")
    assert services["migrate"]["PLEXICA_RUNTIME_DATABASE_URL"] == runtime


def test_only_minio_and_its_user_service_hold_the_minio_root() -> None:
    """ADR 0220: core and worker use the platform's MinIO user (made by `minio-users` with the
    chart's script and policy); the root keys reach MinIO and that one-shot only."""
    example = {k: v or "x" for k, v in env_example().items()}
    secrets = {"MINIO_ROOT_PASSWORD": "root-secret", "MINIO_PLATFORM_PASSWORD": "platform-secret"}
    services = _service_env(example | secrets)
    holders = {n for n, env in services.items() if "root-secret" in env.values()}
    assert holders == {"minio", "minio-users"}, holders
    for name in ("core", "worker"):
        assert services[name]["PLEXICA_STORAGE_SECRET_KEY"] == "platform-secret", name
        assert services[name]["PLEXICA_STORAGE_ACCESS_KEY"] == "x"
    without_user = _service_env(example | secrets | {"MINIO_PLATFORM_USER": ""})
    assert without_user["core"]["PLEXICA_STORAGE_ACCESS_KEY"] == "plexica-platform"
    users = services["minio-users"]
    assert users["PLATFORM_SECRET_KEY"] == "platform-secret"
    assert users["MINIO_URL"] == services["core"]["PLEXICA_STORAGE_ENDPOINT"]
    compose = load_yaml(COMPOSE / "docker-compose.yml")
    job = compose["services"]["minio-users"]
    assert job["image"] == compose["services"]["minio"]["image"]  # its mc
    (mount,) = job["volumes"]
    source, target, _ = mount.split(":")
    assert (COMPOSE / source).resolve() == CHART_FILES
    assert job["entrypoint"] == ["/bin/sh", f"{target}/minio-users.sh"]
    assert (CHART_FILES / "minio-users.sh").is_file()
    assert (CHART_FILES / "storage-platform-policy.json").is_file()


PLUGINS = {"crm": "CRM", "billing": "BILLING"}  # slug -> its variables' infix


def _settings_of(env: dict[str, str], service: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings(service=service)


def test_redpanda_requires_sasl_on_its_kafka_listeners() -> None:
    """ADR 0218, 0228: the chart's cluster properties, from a file mounted where Redpanda reads
    them at its first start: SASL/SCRAM on every Kafka listener (the published one too), ACLs,
    no topic auto-creation, `plexica` the super user, made from RP_BOOTSTRAP_USER."""
    compose = load_yaml(COMPOSE / "docker-compose.yml")
    redpanda = compose["services"]["redpanda"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in redpanda["volumes"]}
    source = COMPOSE / mounts["/etc/redpanda/.bootstrap.yaml"]
    assert redpanda["volumes"][-1].endswith(":ro")
    bootstrap = load_yaml(source)
    assert bootstrap["enable_sasl"] is True
    assert bootstrap["kafka_enable_authorization"] is True
    assert bootstrap["sasl_mechanisms"] == ["SCRAM"]
    assert bootstrap["superusers"] == ["plexica"]
    assert bootstrap["auto_create_topics_enabled"] is False
    # The same properties as the chart's ConfigMap (rendered from this block of its template).
    chart = (DEPLOY / "helm" / "plexica" / "templates" / "messaging" / "redpanda.yaml").read_text()
    block = re.search(r"\.bootstrap\.yaml: \|\n((?: {4}.*\n)+)", chart)
    assert block, "the chart's .bootstrap.yaml"
    assert yaml.safe_load(textwrap.dedent(block.group(1))) == bootstrap
    # No listener opts out of SASL (a listener's own authentication_method would).
    command = " ".join(redpanda["command"])
    assert "authentication_method" not in command
    assert "kafka_api" not in command
    listeners = re.search(r"--kafka-addr (\S+)", command)
    assert listeners
    assert {a.split("://")[0] for a in listeners.group(1).split(",")} == {"internal", "external"}
    env = _service_env({k: v or "x" for k, v in env_example().items()} | {"KAFKA_PASSWORD": "kp"})
    assert env["redpanda"]["RP_BOOTSTRAP_USER"] == "plexica:kp:SCRAM-SHA-512"
    with pytest.raises(ValueError, match="KAFKA_PASSWORD"):
        _service_env({k: v or "x" for k, v in env_example().items()} | {"KAFKA_PASSWORD": ""})


def test_the_broker_takes_a_login_per_component(monkeypatch: pytest.MonkeyPatch) -> None:
    """ADR 0218, 0228, 0253: the broker's super user is held by Redpanda and broker-grants
    only; core and worker log in as the platform's principal; each plugin as
    `plexica-plugin-<id>` with its own password, and nothing of the platform's or of another
    plugin's."""
    secrets = {
        "KAFKA_PASSWORD": "admin-kafka-secret",
        "KAFKA_PLATFORM_PASSWORD": "platform-kafka-secret",
    } | {
        f"PLUGIN_{infix}_KAFKA_PASSWORD": f"{slug}-kafka-secret" for slug, infix in PLUGINS.items()
    }
    services = _service_env(placeholders() | secrets)

    def holders(secret: str) -> set[str]:
        return {n for n, env in services.items() if any(secret in v for v in env.values())}

    assert holders("admin-kafka-secret") == {"redpanda", "broker-grants"}
    assert holders("platform-kafka-secret") == {"core", "worker", "broker-grants"}
    for name in ("core", "worker", "broker-grants"):
        settings = _settings_of(services[name], name, monkeypatch)
        assert settings.kafka_brokers == "redpanda:9092"
        want = KafkaLogin(PLATFORM_PRINCIPAL, "platform-kafka-secret")
        assert settings.kafka_login() == want, name
    grants = _settings_of(services["broker-grants"], "broker-grants", monkeypatch)
    assert grants.kafka_admin_login() == KafkaLogin("plexica", "admin-kafka-secret")
    # The catalog and the broker only: nothing else of the platform's.
    assert grants.redis_url is None
    assert grants.storage_access_key is None
    assert grants.keycloak_url is None
    grants_service = load_yaml(COMPOSE / "docker-compose.yml")["services"]["broker-grants"]
    assert grants_service["command"][:3] == ["plugin", "broker-acls", "--watch"]
    for slug in PLUGINS:
        env = services[f"plugin-{slug}"]
        settings = _settings_of(env, f"plugin-{slug}", monkeypatch)
        want = KafkaLogin(plugin_principal(slug), f"{slug}-kafka-secret")
        assert settings.kafka_login() == want, slug
        others = {v for k, v in secrets.items() if v != want.password}
        leaked = {v for v in env.values() if any(o in v for o in others)}
        assert not leaked, (slug, leaked)
    # Before `plugin credentials` has printed it: the plugin starts, without a broker login.
    unset = _service_env(placeholders() | {"PLUGIN_CRM_KAFKA_PASSWORD": ""})
    assert _settings_of(unset["plugin-crm"], "plugin-crm", monkeypatch).kafka_login() is None


def test_each_plugin_has_its_own_database_password() -> None:
    """ADR 0228: one password per plugin role, seen by that plugin and by the server whose
    first-start script makes the role, no other service; no shared PLUGIN_DB_PASSWORD."""
    secrets = {
        f"PLUGIN_{infix}_DB_PASSWORD": f"{slug}-db-secret" for slug, infix in PLUGINS.items()
    }
    services = _service_env(placeholders() | secrets)
    for slug, infix in PLUGINS.items():
        secret = f"{slug}-db-secret"
        holders = {n for n, env in services.items() if any(secret in v for v in env.values())}
        assert holders == {"postgres", f"plugin-{slug}"}, (slug, holders)
        url = services[f"plugin-{slug}"]["PLEXICA_DATABASE_URL"]
        assert url == f"postgresql://plugin_{slug}:{secret}@postgres:5432/plexica"
        assert services["postgres"][f"PLUGIN_{infix}_DB_PASSWORD"] == secret
    script = (COMPOSE / "initdb" / "10-roles.sh").read_text()
    for slug, infix in PLUGINS.items():
        line = f"CREATE ROLE plugin_{slug} LOGIN PASSWORD '${{PLUGIN_{infix}_DB_PASSWORD}}';"
        assert line in script, slug
    for text in (
        script,
        (COMPOSE / "docker-compose.yml").read_text(),
        (COMPOSE / ".env.example").read_text(),
    ):
        assert "PLUGIN_DB_PASSWORD" not in text
    with pytest.raises(ValueError, match="PLUGIN_BILLING_DB_PASSWORD"):
        _service_env(placeholders() | {"PLUGIN_BILLING_DB_PASSWORD": ""})
