"""The Helm chart: rendered with Helm v4 as a library, linted strictly and validated against the
Kubernetes schemas (kubernetes-validate --strict) for each values file; plain manifests current."""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from deploy import k8s_render
from plexica.gateway.config import kong_config, traefik_config
from plexica.settings import ENV_PREFIX, Settings, load_settings
from tests.deploy.conftest import DEPLOY

VALUES = list(k8s_render.VALUES_FILES)
VALIDATE = Path(sys.executable).with_name("kubernetes-validate")
Doc = dict[str, Any]


@pytest.fixture(scope="module", params=VALUES)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    name = str(request.param)
    return name, docs_for(name)


@functools.cache
def _docs(values: str) -> tuple[Doc, ...]:
    return tuple(
        k8s_render.documents(k8s_render.render(None if values == "values.yaml" else values))
    )


def docs_for(values: str) -> list[Doc]:
    return copy.deepcopy(list(_docs(values)))


def by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[Doc]) -> dict[str, Doc]:
    return {
        f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "Job")
    } | {
        f"CronJob/{d['metadata']['name']}": d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] == "CronJob"
    }


@pytest.mark.parametrize("values", VALUES)
def test_lint_strict_is_clean(values: str) -> None:
    report = k8s_render.lint(None if values == "values.yaml" else values)
    findings = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not findings, findings


def test_kubernetes_validate_strict(rendered: tuple[str, list[Doc]], tmp_path: Path) -> None:
    _, docs = rendered
    files = []
    for i, doc in enumerate(docs):
        path = tmp_path / f"{i:03d}-{doc['kind']}-{doc['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        files.append(str(path))
    proc = subprocess.run(
        [str(VALIDATE), "--strict", "--quiet", *files], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_seed_replicas_resources_and_probes() -> None:
    docs = docs_for("values-self-hosted.yaml")
    deployments = by_kind(docs, "Deployment")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert hpas["plexica-core-api"]["spec"]["minReplicas"] == 3
    assert hpas["plexica-plugin-crm"]["spec"]["minReplicas"] == 2
    assert deployments["plexica-keycloak"]["spec"]["replicas"] == 2
    assert by_kind(docs, "StatefulSet")["plexica-redpanda"]["spec"]["replicas"] == 3
    core = deployments["plexica-core-api"]["spec"]["template"]["spec"]["containers"][0]
    assert core["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "64Mi"},
        "limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1Gi"},
    }
    for name in ("plexica-core-api", "plexica-worker", "plexica-web", "plexica-plugin-crm"):
        c = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert c["livenessProbe"]["httpGet"]["path"] == "/health", name
        assert c["readinessProbe"]["httpGet"]["path"] == "/ready", name
    crm = deployments["plexica-plugin-crm"]["spec"]["template"]["spec"]["containers"][0]
    assert crm["args"] == ["serve", "plugin", "crm"]
    assert crm["image"].endswith("/plugin-crm:1.2.0")
    assert crm["resources"]["limits"] == {
        "cpu": "500m",
        "memory": "512Mi",
        "ephemeral-storage": "1Gi",
    }


def test_every_container_bounds_its_ephemeral_storage(rendered: tuple[str, list[Doc]]) -> None:
    """Read-only roots: emptyDirs and logs are what a container writes to the node's disk, and
    each has a request and a limit for them (values.ephemeralStorage, or its own)."""
    _, docs = rendered
    for name, spec in pod_specs(docs).items():
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            for part in ("requests", "limits"):
                assert "ephemeral-storage" in c["resources"][part], (name, c["name"], part)
    values = k8s_render.values("values-self-hosted.yaml")
    values["keycloak"] = {
        **values["keycloak"],
        "resources": {"limits": {"ephemeral-storage": "4Gi"}},
    }
    own = by_kind(k8s_render.documents(k8s_render.render(None, **values)), "Deployment")
    (keycloak,) = own["plexica-keycloak"]["spec"]["template"]["spec"]["containers"]
    assert keycloak["resources"]["limits"]["ephemeral-storage"] == "4Gi"
    assert keycloak["resources"]["requests"]["ephemeral-storage"] == "64Mi"


def test_services_drain_before_they_stop() -> None:
    docs = docs_for("values-self-hosted.yaml")
    config = by_kind(docs, "ConfigMap")["plexica-config"]["data"]
    drain, grace = (
        int(config["PLEXICA_DRAIN_SECONDS"]),
        int(config["PLEXICA_SHUTDOWN_GRACE_SECONDS"]),
    )
    assert drain == 10
    for name in ("plexica-core-api", "plexica-worker", "plexica-web", "plexica-plugin-crm"):
        pod = by_kind(docs, "Deployment")[name]["spec"]["template"]["spec"]
        stop = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
        assert stop[0] == "sleep", name
        # The kubelet's SIGKILL comes after preStop, the drain and the in-flight grace.
        assert pod["terminationGracePeriodSeconds"] > int(stop[1]) + drain + grace, name


def test_every_pod_is_non_root_read_only_without_capabilities(
    rendered: tuple[str, list[Doc]],
) -> None:
    _, docs = rendered
    for name, spec in pod_specs(docs).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "resources" in c, name
            assert not c["image"].endswith(":latest"), name


def test_pdbs_cover_every_replicated_workload(rendered: tuple[str, list[Doc]]) -> None:
    _, docs = rendered
    pdbs = {
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for d in docs
        if d["kind"] == "PodDisruptionBudget"
    }
    for d in docs:
        if d["kind"] == "Deployment":
            assert d["metadata"]["labels"]["app.kubernetes.io/component"] in pdbs


def plexica_containers(docs: list[Doc]) -> list[tuple[str, Doc]]:
    """(Deployment name, container) of every long-running `plexica` process: services and the
    gateway's routes watcher."""
    return [
        (name, c)
        for name, d in by_kind(docs, "Deployment").items()
        for c in d["spec"]["template"]["spec"]["containers"]
        if c.get("args", [None])[0] in ("serve", "gateway")
    ]


def env_of(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def _setting(key: str) -> bool:
    # PLEXICA_PLUGIN_* configure a plugin's own process (plexica_sdk.app), as in load_settings.
    return key.startswith(ENV_PREFIX) and not key.startswith(ENV_PREFIX + "PLUGIN_")


def test_plexica_environment_is_made_of_real_settings(rendered: tuple[str, list[Doc]]) -> None:
    _, docs = rendered
    known = {ENV_PREFIX + f.upper() for f in Settings.model_fields}
    for cm in by_kind(docs, "ConfigMap").values():
        for key in cm.get("data", {}):
            if _setting(key):
                assert key in known, key
    for name, spec in pod_specs(docs).items():
        for c in spec["containers"]:
            for env in c.get("env", []):
                if _setting(env["name"]):
                    assert env["name"] in known, (name, env["name"])


def test_every_plexica_service_starts_with_its_settings(
    rendered: tuple[str, list[Doc]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each Deployment's environment (ConfigMaps, values; secrets as placeholders) passes the
    checks `plexica serve` runs at start-up; plugins know their issuers, the core its plugins."""
    _, docs = rendered
    maps = {n: cm.get("data", {}) for n, cm in by_kind(docs, "ConfigMap").items()}
    secret_values = {
        "database-url": "postgresql://u:p@db:5432/plexica",
        "redis-url": "redis://redis:6379/0",
        "web-secret": "w" * 48,
        "key-encryption-key": "k" * 48,
    }
    plugins = sorted(n for n in by_kind(docs, "Deployment") if n.startswith("plexica-plugin-"))
    checked = set()
    for name, container in plexica_containers(docs):
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            env |= maps[source["configMapRef"]["name"]]
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef", {})
            key = str(ref.get("key", ""))
            fallback = "postgresql://u:p@db:5432/plexica" if key.endswith("database-url") else "x"
            env[item["name"]] = item.get("value", secret_values.get(key, fallback))
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        load_settings()
        checked.add(name)
        if name in plugins:
            assert env["PLEXICA_PLUGIN_ISSUER_BASE_URL"].endswith("/realms"), name
            assert env["PLEXICA_PLUGIN_CORE_URL"] == "http://plexica-core-api:3000"
    assert {"plexica-core-api", "plexica-worker", "plexica-web", *plugins} <= checked
    core = maps["plexica-platform-config"]
    assert sorted(core["PLEXICA_PLUGIN_URLS"].split(",")) == sorted(
        f"{p.removeprefix('plexica-plugin-')}=http://{p}:3000" for p in plugins
    )


def test_migration_job_is_a_hook_direct_to_postgres() -> None:
    for values, first in (
        ("values-self-hosted.yaml", "post-install"),
        ("values-external-services.yaml", "pre-install"),
    ):
        docs = docs_for(values)
        job = by_kind(docs, "Job")["plexica-migrate"]
        hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
        assert hooks == [first, "pre-upgrade"]
        c = job["spec"]["template"]["spec"]["containers"][0]
        assert c["args"] == ["migrate"]
        db = next(e for e in c["env"] if e["name"] == "PLEXICA_DATABASE_URL")
        assert db["valueFrom"]["secretKeyRef"]["key"] == "database-direct-url"


def test_ingress_terminates_tls_for_the_domain() -> None:
    docs = docs_for("values-self-hosted.yaml")
    ingress = by_kind(docs, "Ingress")["plexica"]
    assert ingress["spec"]["tls"] == [
        {"hosts": ["plexica.example.com"], "secretName": "plexica-tls"}
    ]
    assert (
        ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    )


def test_gateway_routes_every_enabled_plugin_behind_forward_auth() -> None:
    docs = docs_for("values-self-hosted.yaml")
    config = yaml.safe_load(by_kind(docs, "ConfigMap")["plexica-gateway"]["data"]["plexica.yml"])
    plugins = {
        name.removeprefix("plexica-plugin-"): f"http://{name}:3000"
        for name, d in by_kind(docs, "Deployment").items()
        if name.startswith("plexica-plugin-")
    }
    assert {"crm", "billing"} <= set(plugins)
    # The chart's routes are what `plexica gateway config traefik` writes for its services.
    assert config == traefik_config(
        "http://plexica-core-api:3000", plugins, "http://plexica-web:3000", live_host_suffix="-any"
    )
    kong_docs = docs_for("values-external-services.yaml")
    kong = yaml.safe_load(by_kind(kong_docs, "ConfigMap")["plexica-gateway"]["data"]["kong.yml"])
    plugins = {
        name.removeprefix("plexica-plugin-"): f"http://{name}:3000"
        for name in by_kind(kong_docs, "Deployment")
        if name.startswith("plexica-plugin-")
    }
    assert kong == kong_config("http://plexica-core-api:3000", plugins, "http://plexica-web:3000")


def test_panic_routing_reaches_pods_that_are_not_ready() -> None:
    """ADR 0227: with every core (or plugin) pod unready, the Service has no endpoint; the
    gateway's fallback goes through a twin that publishes them, selecting the same pods."""
    docs = docs_for("values-self-hosted.yaml")
    services = by_kind(docs, "Service")
    config = yaml.safe_load(by_kind(docs, "ConfigMap")["plexica-gateway"]["data"]["plexica.yml"])
    balanced = config["http"]["services"]
    for name, route in (("plexica-core-api", "core-api"), ("plexica-plugin-crm", "plugin-crm")):
        ready, live = services[name]["spec"], services[f"{name}-any"]["spec"]
        assert "publishNotReadyAddresses" not in ready
        assert live["publishNotReadyAddresses"] is True
        assert live["selector"] == ready["selector"]
        assert live["ports"] == ready["ports"]
        servers = balanced[f"{route}-any"]["loadBalancer"]["servers"]
        assert servers == [{"url": f"http://{name}-any:3000"}]
        checked = balanced[f"{route}-checked"]["loadBalancer"]["servers"]
        assert checked == [{"url": f"http://{name}:3000"}]
    pod = by_kind(docs, "Deployment")["plexica-gateway"]["spec"]["template"]["spec"]
    watcher = next(c for c in pod["containers"] if c["name"] == "routes")
    assert "--live-host-suffix=-any" in watcher["args"]


def _allowed_peers(policy: Doc) -> list[Doc]:
    return [peer for rule in policy["spec"].get("egress", []) for peer in rule.get("to", [])]


def test_plugins_cannot_reach_postgresql_or_each_other(rendered: tuple[str, list[Doc]]) -> None:
    _, docs = rendered
    policies = by_kind(docs, "NetworkPolicy")
    plugins = policies["plexica-plugins"]
    components = {
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
        for p in _allowed_peers(plugins)
    }
    assert "postgresql" not in components
    for peer in _allowed_peers(plugins):
        assert "matchExpressions" not in peer.get("podSelector", {}), "plugin -> plugin egress"
    ingress_peers = [p for r in plugins["spec"]["ingress"] for p in r["from"]]
    assert all("matchExpressions" not in p.get("podSelector", {}) for p in ingress_peers)
    if "plexica-postgresql" in policies:
        allowed = [p for r in policies["plexica-postgresql"]["spec"]["ingress"] for p in r["from"]]
        assert all("matchExpressions" not in p["podSelector"] for p in allowed)
    deny = policies["plexica-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    # Plugins only get their own database roles' URLs, never the platform's.
    for name, spec in pod_specs(docs).items():
        if "plugin-" in name:
            refs = {
                (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                for e in spec["containers"][0]["env"]
                if "valueFrom" in e
            }
            assert ("plexica-secrets", "database-url") not in refs
            names = [e["name"] for e in spec["containers"][0]["env"]]
            assert len(names) == len(set(names)), names
            assert ("plexica-secrets", "database-direct-url") not in refs


def test_secret_is_made_only_for_dev() -> None:
    for values in ("values-self-hosted.yaml", "values-external-services.yaml"):
        assert not by_kind(docs_for(values), "Secret")
    dev = by_kind(docs_for("values-dev.yaml"), "Secret")
    data = dev["plexica-secrets"]["stringData"]
    assert not any(key.startswith("plugin-") for key in data)
    assert "@plexica-pgbouncer:5432/" in data["database-url"]
    assert "@plexica-postgresql:5432/" in data["database-direct-url"]
    runtime = data["runtime-database-url"]
    assert runtime.startswith("postgresql://plexica_runtime:"), runtime
    assert "@plexica-pgbouncer:5432/" in runtime
    assert data["runtime-database-password"] in runtime


def test_plain_manifests_are_up_to_date() -> None:
    want = k8s_render.plain_manifests()
    have = {
        str(p.relative_to(DEPLOY / "k8s")): p.read_text() for p in (DEPLOY / "k8s").rglob("*.yaml")
    }
    assert have == want, "deploy/k8s/ is stale: run scripts/render-k8s"


def test_nightly_backup_unless_the_database_is_managed() -> None:
    cron = by_kind(docs_for("values-self-hosted.yaml"), "CronJob")["plexica-backup"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    claim = by_kind(docs_for("values-self-hosted.yaml"), "PersistentVolumeClaim")["plexica-backup"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "plexica-backup" not in by_kind(docs_for("values-external-services.yaml"), "CronJob")


@pytest.mark.parametrize("values", VALUES)
def test_values_files_follow_the_schema(values: str) -> None:
    with helm.Chart.load(k8s_render.CHART) as chart:
        chart.validate_schema(k8s_render.values(values))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"gateway": {"kind": "nginx"}}, "traefik"),
        ({"cor": {"replicas": 3}}, "cor"),
        ({"redis": {"enabled": True, "tag": "latest"}}, "redis"),
        ({"plugins": {"Bad_Slug": {"enabled": True, "version": "1"}}}, "Bad_Slug"),
    ],
)
def test_schema_rejects_typos_and_moving_tags(bad: dict[str, Any], message: str) -> None:
    with helm.Chart.load(k8s_render.CHART) as chart, pytest.raises(helm.HelmError, match=message):
        chart.validate_schema(bad)


def _secret_ref(env: dict[str, Doc], name: str) -> Doc:
    return dict(env[name]["valueFrom"]["secretKeyRef"])


def test_web_replicas_share_one_session_secret(rendered: tuple[str, list[Doc]]) -> None:
    """ADR 0091: every web replica signs sessions with PLEXICA_WEB_SECRET from the Secret; the
    pod cannot start without it (not optional), so no replica falls back to a key of its own."""
    _, docs = rendered
    web = by_kind(docs, "Deployment")["plexica-web"]["spec"]["template"]["spec"]["containers"][0]
    ref = _secret_ref(env_of(web), "PLEXICA_WEB_SECRET")
    assert ref == {"name": "plexica-secrets", "key": "web-secret"}
    for secret in by_kind(docs, "Secret").values():
        assert len(secret["stringData"]["web-secret"]) >= 32


def test_web_reaches_its_sessions_in_the_platform_database() -> None:
    """ADR 0120: web sessions are rows of platform.web_sessions, so the web pods get the
    platform's database URL and a network path to PgBouncer (which lets them in)."""
    docs = docs_for("values-self-hosted.yaml")
    web = by_kind(docs, "Deployment")["plexica-web"]["spec"]["template"]["spec"]["containers"][0]
    ref = _secret_ref(env_of(web), "PLEXICA_DATABASE_URL")
    assert ref == {"name": "plexica-secrets", "key": "runtime-database-url"}
    egress = by_kind(docs, "NetworkPolicy")["plexica-web"]["spec"]["egress"]
    db = [r for r in egress if {"port": 5432, "protocol": "TCP"} in r["ports"]]
    assert [
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for r in db for p in r["to"]
    ] == ["pgbouncer"]
    bouncer = by_kind(docs, "NetworkPolicy")["plexica-pgbouncer"]["spec"]["ingress"][0]["from"]
    assert any(
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "web"
        for p in bouncer
    )


def test_chart_made_web_secret_is_given_or_random_and_long_enough() -> None:
    given = "g" * 40
    values = k8s_render.values("values-dev.yaml")
    values["secrets"]["values"]["webSecret"] = given
    docs = k8s_render.documents(k8s_render.render(None, **values))
    assert by_kind(docs, "Secret")["plexica-secrets"]["stringData"]["web-secret"] == given
    values["secrets"]["values"]["webSecret"] = "short"
    # The schema refuses it before the template's own check.
    with pytest.raises(helm.HelmError, match="webSecret"):
        k8s_render.render(None, **values)


def test_only_the_core_gets_the_key_encryption_key(rendered: tuple[str, list[Doc]]) -> None:
    """ADR 0150: key-encryption-key of the Secret is the core's PLEXICA_KEY_ENCRYPTION_KEY
    (optional: unused with Keycloak); no other pod holds it; a chart-made one is long enough."""
    _, docs = rendered
    for name, container in plexica_containers(docs):
        env = env_of(container)
        if name == "plexica-core-api":
            ref = _secret_ref(env, "PLEXICA_KEY_ENCRYPTION_KEY")
            assert ref == {"name": "plexica-secrets", "key": "key-encryption-key", "optional": True}
        else:
            assert "PLEXICA_KEY_ENCRYPTION_KEY" not in env, name
    for secret in by_kind(docs, "Secret").values():
        assert len(secret["stringData"]["key-encryption-key"]) >= 32


def test_chart_made_key_encryption_key_is_given_or_random_and_long_enough() -> None:
    values = k8s_render.values("values-dev.yaml")
    made = by_kind(k8s_render.documents(k8s_render.render(None, **values)), "Secret")
    assert len(made["plexica-secrets"]["stringData"]["key-encryption-key"]) >= 32
    ring = "n" * 40 + "," + "o" * 40  # a new key first, the old one still opens
    values["secrets"]["values"]["keyEncryptionKey"] = ring
    docs = k8s_render.documents(k8s_render.render(None, **values))
    assert by_kind(docs, "Secret")["plexica-secrets"]["stringData"]["key-encryption-key"] == ring
    values["secrets"]["values"]["keyEncryptionKey"] = "n" * 40 + ",short"
    with pytest.raises(helm.HelmError, match="keyEncryptionKey is too short"):
        k8s_render.render(None, **values)


def test_tenant_subdomains_reach_the_shell_when_a_base_domain_is_set() -> None:
    """ADR 0092: PLEXICA_WEB_BASE_DOMAIN for the shell and for the platform (realms allow the
    tenant host's callback); the Ingress serves *.<domain> with TLS. Unset: nothing changes."""
    dev = docs_for("values-dev.yaml")
    web = by_kind(dev, "Deployment")["plexica-web"]["spec"]["template"]["spec"]["containers"][0]
    assert env_of(web)["PLEXICA_WEB_BASE_DOMAIN"]["value"] == "plexica.localtest.me"
    platform = by_kind(dev, "ConfigMap")["plexica-platform-config"]["data"]
    assert platform["PLEXICA_WEB_BASE_DOMAIN"] == "plexica.localtest.me"
    rules = {r["host"]: r for r in by_kind(dev, "Ingress")["plexica"]["spec"]["rules"]}
    assert set(rules) == {"plexica.localtest.me", "*.plexica.localtest.me"}
    wildcard = [
        p["backend"]["service"]["name"] for p in rules["*.plexica.localtest.me"]["http"]["paths"]
    ]
    assert wildcard == ["plexica-gateway"]

    values = k8s_render.values("values-self-hosted.yaml")
    values["web"] = {"baseDomain": "plexica.example.com"}
    prod = k8s_render.documents(k8s_render.render(None, **values))
    (tls,) = by_kind(prod, "Ingress")["plexica"]["spec"]["tls"]
    assert tls["hosts"] == ["plexica.example.com", "*.plexica.example.com"]

    prod = docs_for("values-self-hosted.yaml")
    web = by_kind(prod, "Deployment")["plexica-web"]["spec"]["template"]["spec"]["containers"][0]
    assert "PLEXICA_WEB_BASE_DOMAIN" not in env_of(web)
    assert env_of(web)["PLEXICA_PUBLIC_URL"]["value"] == "https://plexica.example.com"
    assert (
        "PLEXICA_WEB_BASE_DOMAIN"
        not in by_kind(prod, "ConfigMap")["plexica-platform-config"]["data"]
    )
    assert [r["host"] for r in by_kind(prod, "Ingress")["plexica"]["spec"]["rules"]] == [
        "plexica.example.com"
    ]
    with helm.Chart.load(k8s_render.CHART) as chart, pytest.raises(helm.HelmError):
        chart.validate_schema({"web": {"baseDomain": "*.Example.com"}})


def test_plugins_read_their_own_login_from_their_own_secret(
    rendered: tuple[str, list[Doc]],
) -> None:
    """ADR 0076: PLEXICA_PLUGIN_DATABASE_URL from <release>-plugin-<slug>-database (written by
    the operator from `plexica plugin credentials <slug>`), required; and no other database URL
    (ADR 0078: event delivery goes through the plugin_api functions on that login)."""
    _, docs = rendered
    plugins = {n: d for n, d in by_kind(docs, "Deployment").items() if "plugin-" in n}
    assert plugins
    for name, deployment in plugins.items():
        env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
        ref = _secret_ref(env, "PLEXICA_PLUGIN_DATABASE_URL")
        assert ref == {"name": f"{name}-database", "key": "database-url"}, name
        assert "PLEXICA_DATABASE_URL" not in env
    values = k8s_render.values("values-self-hosted.yaml")
    values["plugins"]["crm"]["databaseSecret"] = "crm-login"
    docs = k8s_render.documents(k8s_render.render(None, **values))
    crm = by_kind(docs, "Deployment")["plexica-plugin-crm"]["spec"]["template"]["spec"]
    ref = _secret_ref(env_of(crm["containers"][0]), "PLEXICA_PLUGIN_DATABASE_URL")
    assert ref == {"name": "crm-login", "key": "database-url"}


def test_routes_watcher_runs_beside_traefik_on_a_shared_directory() -> None:
    """ADR 0083: `plexica gateway config traefik --watch` writes the file Traefik's provider
    reads (one emptyDir, seeded with the chart's routes); it asks the core for the routes (ADR
    0213), so the gateway pods hold no credential and have no path to the database."""
    docs = docs_for("values-self-hosted.yaml")
    pod = by_kind(docs, "Deployment")["plexica-gateway"]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"traefik", "routes"}
    routes = containers["routes"]
    assert routes["args"][:4] == ["gateway", "config", "traefik", "--watch"]
    assert "--output=/etc/traefik/dynamic/plexica.yml" in routes["args"]
    config = yaml.safe_load(by_kind(docs, "ConfigMap")["plexica-gateway"]["data"]["plexica.yml"])
    services = config["http"]["services"]
    assert (
        f"--core-url={services['core-api-checked']['loadBalancer']['servers'][0]['url']}"
        in routes["args"]
    )
    assert f"--web-url={services['web']['loadBalancer']['servers'][0]['url']}" in routes["args"]
    assert not [e for e in routes.get("env", []) if "valueFrom" in e]
    mounts = {
        c["name"]: {m["name"]: m for m in c["volumeMounts"]}
        for c in [*pod["containers"], *pod["initContainers"]]
    }
    assert mounts["traefik"]["dynamic"]["readOnly"] is True
    assert not mounts["routes"]["dynamic"].get("readOnly")
    assert mounts["seed-routes"]["dynamic"]["mountPath"] == "/etc/traefik/dynamic"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["dynamic"]
    (init,) = pod["initContainers"]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    egress = by_kind(docs, "NetworkPolicy")["plexica-gateway"]["spec"]["egress"]
    assert all({"port": 5432, "protocol": "TCP"} not in r.get("ports", []) for r in egress)
    bouncer = by_kind(docs, "NetworkPolicy")["plexica-pgbouncer"]["spec"]["ingress"][0]["from"]
    assert all(
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
        != "gateway"
        for p in bouncer
    )

    values = k8s_render.values("values-self-hosted.yaml")
    values["gateway"] = {"kind": "traefik", "traefik": {"watchRoutes": {"enabled": False}}}
    docs = k8s_render.documents(k8s_render.render(None, **values))
    pod = by_kind(docs, "Deployment")["plexica-gateway"]["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["traefik"]
    assert {v["name"]: v for v in pod["volumes"]}["dynamic"]["configMap"][
        "name"
    ] == "plexica-gateway"
    egress = by_kind(docs, "NetworkPolicy")["plexica-gateway"]["spec"]["egress"]
    assert all({"port": 5432, "protocol": "TCP"} not in r["ports"] for r in egress)
    # Kong reads a fixed declarative file: no watcher, no database.
    kong = docs_for("values-external-services.yaml")
    pod = by_kind(kong, "Deployment")["plexica-gateway"]["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    egress = by_kind(kong, "NetworkPolicy")["plexica-gateway"]["spec"]["egress"]
    assert all({"port": 5432, "protocol": "TCP"} not in r["ports"] for r in egress)


def test_the_broker_takes_a_login_per_component(rendered: tuple[str, list[Doc]]) -> None:
    """ADR 0218, 0253: core and worker log in as the platform's principal (password from the
    platform Secret), no super user; the grants pods alone hold the administrator's; a plugin
    reads its own broker login from its own Secret and nothing of the platform's; the in-chart
    Redpanda starts with SASL, ACLs and the administrator as its super user."""
    values, docs = rendered
    external = values == "values-external-services.yaml"
    platform = by_kind(docs, "ConfigMap")["plexica-platform-config"]["data"]
    assert platform["PLEXICA_KAFKA_USERNAME"] == "plexica-platform"
    deployments = by_kind(docs, "Deployment")
    for name in ("plexica-core-api", "plexica-worker"):
        env = env_of(deployments[name]["spec"]["template"]["spec"]["containers"][0])
        assert _secret_ref(env, "PLEXICA_KAFKA_PASSWORD") == {
            "name": "plexica-secrets", "key": "kafka-platform-password", "optional": True,
        }  # fmt: skip
        assert "PLEXICA_KAFKA_ADMIN_PASSWORD" not in env
    cron = by_kind(docs, "CronJob")["plexica-broker-grants"]["spec"]
    hook = by_kind(docs, "Job")["plexica-broker-grants"]
    # The in-chart broker exists only after install; a managed one before.
    first = "pre-install" if external else "post-install"
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == f"{first},pre-upgrade,post-upgrade"
    for pod in (cron["jobTemplate"]["spec"]["template"]["spec"], hook["spec"]["template"]["spec"]):
        env = env_of(pod["containers"][0])
        assert pod["containers"][0]["args"] == ["plugin", "broker-acls", "--json"]
        admin = "plexica-admin" if external else "plexica"
        assert env["PLEXICA_KAFKA_ADMIN_USERNAME"]["value"] == admin
        assert _secret_ref(env, "PLEXICA_KAFKA_ADMIN_PASSWORD")["key"] == "kafka-password"
        assert env["PLEXICA_KAFKA_USERNAME"]["value"] == "plexica-platform"
        assert _secret_ref(env, "PLEXICA_KAFKA_PASSWORD")["key"] == "kafka-platform-password"
        assert _secret_ref(env, "PLEXICA_DATABASE_URL")["key"] == "runtime-database-url"
    plugins = {n: d for n, d in deployments.items() if n.startswith("plexica-plugin-")}
    for name, deployment in plugins.items():
        env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
        for setting, key in (
            ("PLEXICA_KAFKA_USERNAME", "kafka-username"),
            ("PLEXICA_KAFKA_PASSWORD", "kafka-password"),
        ):
            ref = _secret_ref(env, setting)
            assert ref == {"name": f"{name}-database", "key": key, "optional": True}, name
        refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in env.values() if "valueFrom" in e]
        assert "plexica-secrets" not in refs, name
    statefulsets = by_kind(docs, "StatefulSet")
    if "plexica-redpanda" not in statefulsets:
        return
    bootstrap = yaml.safe_load(
        by_kind(docs, "ConfigMap")["plexica-redpanda-bootstrap"]["data"][".bootstrap.yaml"]
    )
    assert bootstrap["enable_sasl"] is True
    assert bootstrap["kafka_enable_authorization"] is True
    assert bootstrap["superusers"] == ["plexica"]
    spec = statefulsets["plexica-redpanda"]["spec"]["template"]["spec"]
    env = env_of(spec["containers"][0])
    assert env["RP_BOOTSTRAP_USER"]["value"] == "plexica:$(BOOTSTRAP_PASSWORD):SCRAM-SHA-512"
    assert _secret_ref(env, "BOOTSTRAP_PASSWORD")["key"] == "kafka-password"
    secrets = by_kind(docs, "Secret")
    if secrets:
        data = secrets["plexica-secrets"]["stringData"]
        assert len(data["kafka-password"]) >= 32, values
        assert len(data["kafka-platform-password"]) >= 32, values
        assert data["kafka-password"] != data["kafka-platform-password"]
