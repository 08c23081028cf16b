"""The chart's least-privilege boundaries (issue #28, ADR 0210-0213), read from the rendered
objects of every values file: who holds which credential, and which pod can reach which over
the NetworkPolicies (evaluated here as Kubernetes does: a path needs the sender's egress and the
receiver's ingress)."""

from __future__ import annotations

import copy
from typing import Any

import helm_python as helm
import pytest

from deploy import k8s_render
from tests.deploy.test_helm import VALUES, Doc, by_kind, docs_for

# Secret keys that log in as the database's owner (directly or through PgBouncer) or as its
# superuser. A plugin's own Secret also has a database-url: its login, no owner's.
OWNER_KEYS = {
    "database-url",
    "database-direct-url",
    "postgres-password",
    "postgres-superuser-password",
}
OWNER_HOLDERS = {"Job/plexica-migrate", "CronJob/plexica-backup", "StatefulSet/plexica-postgresql"}
# The object store's root (the in-chart MinIO's MINIO_ROOT_USER/_PASSWORD): a superuser too. Core
# and worker use the platform's user, limited to the tenant buckets (ADR 0220).
STORAGE_ROOT_KEYS = {"storage-access-key", "storage-secret-key"}
STORAGE_ROOT_HOLDERS = {"StatefulSet/plexica-minio", "Job/plexica-minio-users"}
STORAGE_PLATFORM_KEYS = {"storage-platform-access-key", "storage-platform-secret-key"}
# Keycloak's admin: Keycloak itself and the Job that makes the platform's client (ADR 0251);
# core and worker log in as that client.
KEYCLOAK_ADMIN_KEYS = {"keycloak-admin-password"}
KEYCLOAK_ADMIN_HOLDERS = {"Deployment/plexica-keycloak", "Job/plexica-keycloak-client"}
# The broker's super user (the platform Secret's kafka-password; a plugin's own Secret has a
# kafka-password too: its principal's): Redpanda and the grants pods (ADR 0253).
BROKER_ADMIN_KEYS = {"kafka-password"}
BROKER_ADMIN_HOLDERS = {
    "StatefulSet/plexica-redpanda", "Job/plexica-broker-grants", "CronJob/plexica-broker-grants",
}  # fmt: skip


def pods(docs: list[Doc]) -> dict[str, Doc]:
    """kind/name -> pod template (metadata and spec) of every workload."""
    out = {}
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            out[f"{d['kind']}/{d['metadata']['name']}"] = d["spec"]["template"]
        elif d["kind"] == "CronJob":
            out[f"CronJob/{d['metadata']['name']}"] = d["spec"]["jobTemplate"]["spec"]["template"]
    return out


def containers(pod: Doc) -> list[Doc]:
    return [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]


def secret_keys(pod: Doc) -> set[tuple[str, str]]:
    """(Secret, key) pairs a pod can read: env references, whole-Secret envFrom and volumes."""
    refs = set()
    for c in containers(pod):
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.add((ref["name"], ref["key"]))
        for source in c.get("envFrom", []):
            if "secretRef" in source:
                refs.add((source["secretRef"]["name"], "*"))
    for v in pod["spec"].get("volumes", []):
        if "secret" in v:
            refs.add((v["secret"]["secretName"], "*"))
    return refs


def _selects(selector: Doc, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
        }[op]
        if not ok:
            return False
    return True


def _peer_admits(peer: Doc, labels: dict[str, str] | None) -> bool:
    """A peer of a rule admits a pod of this release (labels), or an outside address (None)."""
    if labels is None:
        return "ipBlock" in peer
    if "ipBlock" in peer or "namespaceSelector" in peer:
        return False  # other namespaces or addresses, not this release's pods
    return _selects(peer.get("podSelector", {}), labels)


def _port_ok(rule: Doc, port: int) -> bool:
    return "ports" not in rule or any(p.get("port") == port for p in rule["ports"])


def can_reach(docs: list[Doc], src: dict[str, str], dst: dict[str, str] | None, port: int) -> bool:
    """Whether the policies let a pod with labels ``src`` open ``port`` on a pod with labels
    ``dst`` (None: an address outside the cluster)."""
    policies = [d["spec"] for d in docs if d["kind"] == "NetworkPolicy"]
    out = [p for p in policies if _selects(p["podSelector"], src) and "Egress" in p["policyTypes"]]
    egress = any(
        _port_ok(rule, port) and any(_peer_admits(peer, dst) for peer in rule.get("to", []))
        for p in out
        for rule in p.get("egress", [])
    )
    if dst is None or not egress:
        return egress
    into = [
        p for p in policies if _selects(p["podSelector"], dst) and "Ingress" in p["policyTypes"]
    ]
    return any(
        _port_ok(rule, port)
        and ("from" not in rule or any(_peer_admits(peer, src) for peer in rule["from"]))
        for p in into
        for rule in p.get("ingress", [])
    )


def labels_of(docs: list[Doc], kind_name: str) -> dict[str, str]:
    return dict(pods(docs)[kind_name]["metadata"]["labels"])


@pytest.fixture(scope="module", params=VALUES)
def docs(request: pytest.FixtureRequest) -> list[Doc]:
    return docs_for(str(request.param))


# The values files with the in-chart data servers (Redis, PostgreSQL, Keycloak).
IN_CHART = [v for v in VALUES if v != "values-external-services.yaml"]


@pytest.fixture(scope="module", params=IN_CHART)
def in_chart(request: pytest.FixtureRequest) -> list[Doc]:
    return docs_for(str(request.param))


def plugin_pods(docs: list[Doc]) -> dict[str, Doc]:
    found = {n: p for n, p in pods(docs).items() if "plexica.io/plugin" in p["metadata"]["labels"]}
    assert found
    return found


def _holders(docs: list[Doc], keys: set[str], *, platform_secret: bool = False) -> set[str]:
    """Pods that read any of ``keys`` (of the platform's Secrets only, with
    ``platform_secret``: a plugin's own Secret has keys of the same names for its own logins)."""
    return {
        name
        for name, pod in pods(docs).items()
        if any(
            (key in keys and not (platform_secret and "-plugin-" in secret)) or key == "*"
            for secret, key in secret_keys(pod)
        )
    }


def test_only_the_migration_the_backup_and_the_server_hold_owner_or_superuser_logins(
    docs: list[Doc],
) -> None:
    holders = _holders(docs, OWNER_KEYS, platform_secret=True)
    assert holders <= OWNER_HOLDERS, holders


def test_only_minio_and_its_user_job_hold_the_object_stores_root(docs: list[Doc]) -> None:
    holders = _holders(docs, STORAGE_ROOT_KEYS)
    if "StatefulSet/plexica-minio" in pods(docs):
        assert holders == STORAGE_ROOT_HOLDERS
    else:
        assert holders == set()  # an external store: the chart reads no root of it


def test_only_keycloak_and_its_client_job_hold_keycloaks_admin(docs: list[Doc]) -> None:
    holders = _holders(docs, KEYCLOAK_ADMIN_KEYS)
    assert holders == KEYCLOAK_ADMIN_HOLDERS & pods(docs).keys()
    assert "Job/plexica-keycloak-client" in holders
    found = pods(docs)
    for name in ("Deployment/plexica-core-api", "Deployment/plexica-worker"):
        assert _env_secret(found[name], "PLEXICA_KEYCLOAK_CLIENT_SECRET") == (
            "keycloak-client-secret"
        ), name


def test_only_redpanda_and_the_grants_pods_hold_the_brokers_admin(docs: list[Doc]) -> None:
    holders = _holders(docs, BROKER_ADMIN_KEYS, platform_secret=True)
    assert holders == BROKER_ADMIN_HOLDERS & pods(docs).keys()
    assert "CronJob/plexica-broker-grants" in holders
    found = pods(docs)
    for name in ("Deployment/plexica-core-api", "Deployment/plexica-worker"):
        assert _env_secret(found[name], "PLEXICA_KAFKA_PASSWORD") == "kafka-platform-password"


def test_no_serving_pod_holds_an_owner_or_superuser_credential(docs: list[Doc]) -> None:
    """Issue #28's rule in one place: the database's owner and superuser, the object store's
    root, Keycloak's admin and the broker's super user reach only the migration, the backup,
    the Jobs that make the platform's object-store user, Keycloak client and broker principals,
    and the servers themselves."""
    admins = OWNER_HOLDERS | STORAGE_ROOT_HOLDERS | KEYCLOAK_ADMIN_HOLDERS | BROKER_ADMIN_HOLDERS
    serving = {
        name
        for name, pod in pods(docs).items()
        if name not in admins
        and any(
            (key in OWNER_KEYS | BROKER_ADMIN_KEYS and "-plugin-" not in secret)
            or key in STORAGE_ROOT_KEYS | KEYCLOAK_ADMIN_KEYS
            or key == "*"
            for secret, key in secret_keys(pod)
        )
    }
    assert serving == set(), serving


def test_core_and_worker_use_the_object_stores_platform_user(docs: list[Doc]) -> None:
    found = pods(docs)
    for name in ("Deployment/plexica-core-api", "Deployment/plexica-worker"):
        assert _env_secret(found[name], "PLEXICA_STORAGE_ACCESS_KEY") == (
            "storage-platform-access-key"
        ), name
        assert _env_secret(found[name], "PLEXICA_STORAGE_SECRET_KEY") == (
            "storage-platform-secret-key"
        ), name
    assert _holders(docs, STORAGE_PLATFORM_KEYS) == {
        "Deployment/plexica-core-api",
        "Deployment/plexica-worker",
        *({"Job/plexica-minio-users"} if "StatefulSet/plexica-minio" in found else set()),
    }


def _env_secret(pod: Doc, variable: str) -> str | None:
    for c in containers(pod):
        for e in c.get("env", []):
            if e["name"] == variable:
                return str(e["valueFrom"]["secretKeyRef"]["key"])
    return None


def test_core_worker_and_web_serve_with_the_runtime_login_the_migration_makes(
    docs: list[Doc],
) -> None:
    """ADR 0215: the serving pods log in as the runtime role; the migrate Job, as the owner,
    creates it from the same Secret key."""
    found = pods(docs)
    for name in (
        "Deployment/plexica-core-api",
        "Deployment/plexica-worker",
        "Deployment/plexica-web",
    ):
        assert _env_secret(found[name], "PLEXICA_DATABASE_URL") == "runtime-database-url", name
    migrate = found["Job/plexica-migrate"]
    assert _env_secret(migrate, "PLEXICA_DATABASE_URL") == "database-direct-url"
    assert _env_secret(migrate, "PLEXICA_RUNTIME_DATABASE_URL") == "runtime-database-url"


def test_plugins_hold_only_their_own_login(docs: list[Doc]) -> None:
    for name, pod in plugin_pods(docs).items():
        slug = pod["metadata"]["labels"]["plexica.io/plugin"]
        own = f"plexica-plugin-{slug}-database"
        # Its database login (ADR 0076) and its broker principal (ADR 0218), nothing else.
        assert secret_keys(pod) == {
            (own, "database-url"),
            (own, "kafka-username"),
            (own, "kafka-password"),
        }, name
        env = {e["name"] for c in containers(pod) for e in c.get("env", [])}
        assert not {n for n in env if "REDIS" in n}, name


def test_plugins_have_no_path_to_redis_postgresql_or_each_other(docs: list[Doc]) -> None:
    workloads = pods(docs)
    for name, pod in plugin_pods(docs).items():
        src = pod["metadata"]["labels"]
        if "StatefulSet/plexica-redis" in workloads:
            assert not can_reach(docs, src, labels_of(docs, "StatefulSet/plexica-redis"), 6379)
        if "StatefulSet/plexica-postgresql" in workloads:
            pg = labels_of(docs, "StatefulSet/plexica-postgresql")
            assert not can_reach(docs, src, pg, 5432), name
        for other, other_pod in plugin_pods(docs).items():
            if other != name:
                assert not can_reach(docs, src, other_pod["metadata"]["labels"], 3000), other
        # Outside the cluster: PostgreSQL only through PgBouncer; no Redis at all.
        assert not can_reach(docs, src, None, 6379), name
        if "Deployment/plexica-pgbouncer" in workloads:
            assert can_reach(docs, src, labels_of(docs, "Deployment/plexica-pgbouncer"), 5432)
        assert can_reach(docs, src, labels_of(docs, "Deployment/plexica-core-api"), 3000)


def test_plugins_take_the_realms_keys_from_the_core_they_can_reach(docs: list[Doc]) -> None:
    """ADR 0252: the keys come from the core, the one platform service plugins reach."""
    core = labels_of(docs, "Deployment/plexica-core-api")
    for name, pod in plugin_pods(docs).items():
        env = {e["name"]: e.get("value") for c in containers(pod) for e in c.get("env", [])}
        assert env["PLEXICA_PLUGIN_JWKS_BASE_URL"] == "http://plexica-core-api:3000/realms", name
        assert can_reach(docs, pod["metadata"]["labels"], core, 3000), name


def test_plugin_egress_names_every_address_it_allows(docs: list[Doc]) -> None:
    """No 0.0.0.0/0 for a plugin, whatever the values: only the core and its own dependencies."""
    (policy,) = [
        d
        for d in by_kind(docs, "NetworkPolicy").values()
        if d["metadata"]["name"].endswith("-plugins")
    ]
    blocks = [
        peer["ipBlock"]["cidr"]
        for rule in policy["spec"]["egress"]
        for peer in rule["to"]
        if "ipBlock" in peer
    ]
    assert "0.0.0.0/0" not in blocks


@pytest.mark.parametrize(
    ("change", "required"),
    [
        ({"external": {"kafkaCidr": ""}}, "external.kafkaCidr"),
        (
            {"external": {"postgresql": {"cidr": ""}}, "pgbouncer": {"enabled": False}},
            "external.postgresql.cidr",
        ),
    ],
)
def test_plugin_egress_to_an_unnamed_external_server_refuses_to_render(
    change: dict[str, Any], required: str
) -> None:
    """ADR 0211: an external server a plugin needs and no CIDR for it would be 0.0.0.0/0."""
    values: dict[str, Any] = k8s_render.values("values-external-services.yaml")
    for top, sub in change.items():
        values[top] = _merged(values.get(top, {}), sub)
    with pytest.raises(helm.HelmError, match=rf"{required} is required .* never 0\.0\.0\.0/0"):
        k8s_render.render(None, **values)


def _merged(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in change.items():
        out[key] = _merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def test_redis_requires_a_password_the_core_and_worker_know(in_chart: list[Doc]) -> None:
    docs = in_chart
    workloads = pods(docs)
    (redis,) = workloads["StatefulSet/plexica-redis"]["spec"]["containers"]
    assert "--requirepass" in redis["args"]
    holders = {
        name
        for name, pod in workloads.items()
        if any(key in ("redis-url", "redis-password") for _, key in secret_keys(pod))
    }
    assert holders == {
        "Deployment/plexica-core-api",
        "Deployment/plexica-worker",
        "StatefulSet/plexica-redis",
    }
    redis_labels = labels_of(docs, "StatefulSet/plexica-redis")
    for name in ("Deployment/plexica-core-api", "Deployment/plexica-worker"):
        assert can_reach(docs, labels_of(docs, name), redis_labels, 6379), name


def test_the_gateway_holds_no_credential_and_reaches_no_data(docs: list[Doc]) -> None:
    gateway = pods(docs)["Deployment/plexica-gateway"]
    assert secret_keys(gateway) == set()
    src = gateway["metadata"]["labels"]
    for name, pod in pods(docs).items():
        if name.split("/")[1] in ("plexica-postgresql", "plexica-pgbouncer", "plexica-redis"):
            for port in (5432, 6379):
                assert not can_reach(docs, src, pod["metadata"]["labels"], port), name
    for port in (5432, 6379):
        assert not can_reach(docs, src, None, port)


def test_serving_pods_reach_postgresql_through_pgbouncer_only(in_chart: list[Doc]) -> None:
    workloads = pods(in_chart)
    pg = labels_of(in_chart, "StatefulSet/plexica-postgresql")
    through_bouncer = "Deployment/plexica-pgbouncer" in workloads
    for name in (
        "Deployment/plexica-core-api",
        "Deployment/plexica-worker",
        "Deployment/plexica-web",
    ):
        assert can_reach(in_chart, labels_of(in_chart, name), pg, 5432) != through_bouncer, name
    for name in ("Job/plexica-migrate", "CronJob/plexica-backup"):
        assert can_reach(in_chart, labels_of(in_chart, name), pg, 5432), name


def test_pgbouncer_holds_only_its_lookup_login_and_forces_no_user(docs: list[Doc]) -> None:
    workloads = pods(docs)
    bouncer = workloads["Deployment/plexica-pgbouncer"]
    assert {key for _, key in secret_keys(bouncer)} == {"pgbouncer-auth-password"}
    ini = by_kind(docs, "ConfigMap")["plexica-pgbouncer"]["data"]["pgbouncer.ini"]
    databases = ini.split("[databases]", 1)[1].split("[pgbouncer]", 1)[0]
    assert "user=" not in databases
    assert "auth_query = SELECT usename, passwd FROM pgbouncer.user_lookup($1)" in ini


def test_keycloak_is_reached_from_the_ingress_controller_and_the_platform_only(
    in_chart: list[Doc],
) -> None:
    docs = in_chart
    policies = by_kind(docs, "NetworkPolicy")
    for rule in policies["plexica-keycloak"]["spec"]["ingress"]:
        assert rule.get("from"), rule  # never open to every namespace
    web = labels_of(docs, "Deployment/plexica-web")
    keycloak = labels_of(docs, "Deployment/plexica-keycloak")
    assert not can_reach(docs, web, keycloak, 8080)
    assert can_reach(docs, labels_of(docs, "Deployment/plexica-core-api"), keycloak, 8080)
    for name, pod in plugin_pods(docs).items():  # keys come from the core (ADR 0252)
        assert not can_reach(docs, pod["metadata"]["labels"], keycloak, 8080), name
    # The Job that makes the platform's client, by hook policies that exist before it runs.
    client_job = labels_of(docs, "Job/plexica-keycloak-client")
    assert can_reach(docs, client_job, keycloak, 8080)
    assert not can_reach(docs, client_job, labels_of(docs, "StatefulSet/plexica-postgresql"), 5432)
    hooks = {
        d["metadata"]["name"]: d["metadata"]["annotations"]["helm.sh/hook"]
        for d in docs
        if d["kind"] == "NetworkPolicy" and "keycloak-" in d["metadata"]["name"]
    }
    assert hooks == {
        "plexica-keycloak-client": "pre-install,pre-upgrade",
        "plexica-keycloak-from-client": "pre-install,pre-upgrade",
    }
    (ingress,) = by_kind(docs, "Ingress").values()
    to_keycloak = {
        path["path"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
        if path["backend"]["service"]["name"] == "plexica-keycloak"
    }
    assert to_keycloak == {"/auth/realms", "/auth/resources"}  # no /auth/admin


def test_the_grants_pods_reach_the_broker_and_the_database_only(in_chart: list[Doc]) -> None:
    """ADR 0253: by hook policies that exist before the pre-upgrade Job runs; the CronJob's pods
    carry the same labels."""
    docs = in_chart
    grants = labels_of(docs, "Job/plexica-broker-grants")
    assert grants == labels_of(docs, "CronJob/plexica-broker-grants")
    redpanda = labels_of(docs, "StatefulSet/plexica-redpanda")
    assert can_reach(docs, grants, redpanda, 9092)
    assert can_reach(docs, grants, labels_of(docs, "Deployment/plexica-pgbouncer"), 5432)
    for target, port in (
        ("StatefulSet/plexica-postgresql", 5432),
        ("StatefulSet/plexica-redis", 6379),
        ("Deployment/plexica-keycloak", 8080),
        ("Deployment/plexica-core-api", 3000),
    ):
        assert not can_reach(docs, grants, labels_of(docs, target), port), target
    hooks = {
        d["metadata"]["name"]: d["metadata"]["annotations"].get("helm.sh/hook")
        for d in docs
        if d["kind"] == "NetworkPolicy" and "broker-grants" in d["metadata"]["name"]
    }
    assert set(hooks.values()) == {"pre-install,pre-upgrade"}, hooks


def test_disruption_budgets_let_unhealthy_pods_go(docs: list[Doc]) -> None:
    for pdb in by_kind(docs, "PodDisruptionBudget").values():
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow", pdb["metadata"]["name"]


def test_replicated_workloads_spread_over_hosts_and_zones(docs: list[Doc]) -> None:
    scaled = {
        d["spec"]["scaleTargetRef"]["name"]
        for d in by_kind(docs, "HorizontalPodAutoscaler").values()
    }
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        name = d["metadata"]["name"]
        if d["spec"].get("replicas", 1) < 2 and name not in scaled:
            continue
        keys = {
            c["topologyKey"]
            for c in d["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
        }
        assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= keys, name


@pytest.mark.parametrize("server", ["postgresql", "redis", "redpanda", "minio"])
def test_data_servers_liveness_waits_for_crash_recovery(in_chart: list[Doc], server: str) -> None:
    """WAL, append-only file, log segments, drive checks: an hour before liveness may kill it."""
    workloads = pods(in_chart)
    (container,) = workloads[f"StatefulSet/plexica-{server}"]["spec"]["containers"]
    probe = container["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 3600


def test_every_liveness_probe_waits_for_a_startup_probe(docs: list[Doc]) -> None:
    for name, pod in pods(docs).items():
        for c in containers(pod):
            if "livenessProbe" in c:
                assert "startupProbe" in c, f"{name} {c['name']}"


def test_images_pinned_by_digest_when_ci_gives_them() -> None:
    digest = "sha256:" + "ab" * 32
    values: dict[str, Any] = k8s_render.values("values-self-hosted.yaml")
    values["image"] = {**values["image"], "digests": {"core-api": digest, "postgres": digest}}
    docs = k8s_render.documents(k8s_render.render(None, **values))
    images = {c["image"] for pod in pods(docs).values() for c in containers(pod)}
    assert f"registry.plexica.example.com/plexica/core-api@{digest}" in images
    assert f"postgres@{digest}" in images
    assert not [i for i in images if "/core-api:" in i or i.startswith("postgres:")]
