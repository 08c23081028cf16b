"""The chart's object-store credentials (ADR 0220): the in-chart MinIO's root reaches only MinIO
and the minio-users hook Job, which makes the platform's user with the policy the chart ships;
core and worker read that user's keys. Read from the rendered objects."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import helm_python as helm
import pytest

from deploy import k8s_render
from plexica.kit.provisioning import BUCKET_PREFIX
from tests.deploy.conftest import CHART_FILES, STORAGE_PLATFORM_POLICY
from tests.deploy.test_boundaries import can_reach, labels_of
from tests.deploy.test_helm import Doc, by_kind, docs_for, env_of

IN_CHART = ["values.yaml", "values-dev.yaml", "values-self-hosted.yaml"]


def _job(docs: list[Doc]) -> Doc:
    return by_kind(docs, "Job")["plexica-minio-users"]


@pytest.mark.parametrize("values", IN_CHART)
def test_minio_users_job_applies_the_charts_policy_with_the_root_keys(values: str) -> None:
    docs = docs_for(values)
    job = _job(docs)
    config = next(
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "plexica-minio-users"
    )
    # Before an upgrade rolls core and worker onto the user; after install, once MinIO exists.
    for hooked in (job, config):
        assert hooked["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    weight = {
        d["kind"]: int(d["metadata"]["annotations"]["helm.sh/hook-weight"]) for d in (job, config)
    }
    assert weight["ConfigMap"] < weight["Job"]
    data = config["data"]
    assert data["minio-users.sh"] == (CHART_FILES / "minio-users.sh").read_text()
    assert json.loads(data["storage-platform-policy.json"]) == json.loads(
        STORAGE_PLATFORM_POLICY.read_text()
    )
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    minio = by_kind(docs, "StatefulSet")["plexica-minio"]["spec"]["template"]["spec"]
    assert container["image"] == minio["containers"][0]["image"]  # the image's own mc
    assert container["command"] == ["/bin/sh", "/plexica/minio-users.sh"]
    env = env_of(container)
    keys = {
        name: e["valueFrom"]["secretKeyRef"]["key"] for name, e in env.items() if "valueFrom" in e
    }
    assert keys == {
        "MINIO_ROOT_USER": "storage-access-key",
        "MINIO_ROOT_PASSWORD": "storage-secret-key",
        "PLATFORM_ACCESS_KEY": "storage-platform-access-key",
        "PLATFORM_SECRET_KEY": "storage-platform-secret-key",
    }
    assert env["MINIO_URL"]["value"] == "http://plexica-minio:9000"
    assert env["POLICY_NAME"]["value"] == "plexica-platform"
    # It reaches MinIO and nothing else.
    src = labels_of(docs, "Job/plexica-minio-users")
    assert can_reach(docs, src, labels_of(docs, "StatefulSet/plexica-minio"), 9000)
    assert not can_reach(docs, src, labels_of(docs, "StatefulSet/plexica-postgresql"), 5432)
    assert not can_reach(docs, src, None, 443)


def test_an_external_store_gets_no_job_and_the_operators_platform_keys() -> None:
    docs = docs_for("values-external-services.yaml")
    assert "plexica-minio-users" not in by_kind(docs, "Job")
    values = k8s_render.values("values-external-services.yaml")
    values["secrets"] = {"create": True, "values": {"postgresPassword": "p" * 20}}
    with pytest.raises(helm.HelmError, match="storagePlatformSecretKey is required"):
        k8s_render.render(None, **values)
    values["secrets"]["values"] |= {
        "storagePlatformAccessKey": "plexica-s3",
        "storagePlatformSecretKey": "s" * 40,
    }
    data = by_kind(k8s_render.documents(k8s_render.render(None, **values)), "Secret")[
        "plexica-secrets"
    ]["stringData"]
    assert data["storage-platform-access-key"] == "plexica-s3"
    assert data["storage-platform-secret-key"] == "s" * 40
    assert "storage-access-key" not in data  # no root of an external store in the chart


def test_chart_made_platform_keys_are_given_or_random() -> None:
    values = k8s_render.values("values-dev.yaml")
    data = by_kind(k8s_render.documents(k8s_render.render(None, **values)), "Secret")[
        "plexica-secrets"
    ]["stringData"]
    assert data["storage-platform-access-key"] == "plexica-platform"
    assert len(data["storage-platform-secret-key"]) >= 32
    assert data["storage-platform-secret-key"] != data["storage-secret-key"]
    values["secrets"]["values"]["storagePlatformSecretKey"] = "short"
    with pytest.raises(helm.HelmError, match="storagePlatformSecretKey"):
        k8s_render.render(None, **values)


def test_the_policy_names_only_the_tenant_buckets() -> None:
    """Every bucket and object the policy allows carries the platform's bucket prefix; the only
    exception is listing bucket names, which the readiness check does (ListAllMyBuckets
    cannot be scoped to a prefix)."""
    policy = json.loads(STORAGE_PLATFORM_POLICY.read_text())
    buckets, objects = f"arn:aws:s3:::{BUCKET_PREFIX}*", f"arn:aws:s3:::{BUCKET_PREFIX}*/*"
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        actions, resources = statement["Action"], statement["Resource"]
        assert not [a for a in actions if "*" in a or a.startswith(("s3:PutBucket", "admin:"))]
        if actions == ["s3:ListAllMyBuckets"]:
            assert resources == ["arn:aws:s3:::*"]
        else:
            assert resources in ([buckets], [objects]), statement


FAKE_MC = """#!/bin/sh
echo "$*" >> "$MC_LOG"
case "$1 $2" in
  "alias set") [ -e "$MC_LOG.up" ] || { touch "$MC_LOG.up"; exit 1; } ;;  # MinIO not up at first
  "admin policy") [ "$3" = attach ] && [ -n "$MC_ATTACH" ] && { echo "$MC_ATTACH" >&2; exit 1; } ;;
esac
exit 0
"""


@pytest.mark.parametrize(
    ("attach", "status"),
    [
        ("", 0),
        ("mc: <ERROR> The specified policy change is already in effect.", 0),
        ("mc: <ERROR> Unable to attach the policy: Access Denied.", 1),
    ],
)
def test_the_user_script_waits_for_minio_and_is_idempotent(
    tmp_path: Path, attach: str, status: int
) -> None:
    """files/minio-users.sh against a stand-in `mc` (no MinIO here): it retries until MinIO
    answers, then replaces the policy and the user and attaches the policy; an attach that
    changes nothing is success, any other failure is not."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mc").write_text(FAKE_MC)
    (bin_dir / "mc").chmod(0o755)
    log = tmp_path / "mc.log"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "MC_LOG": str(log),
        "MC_ATTACH": attach,
        "MC_CONFIG_DIR": str(tmp_path / "mc"),
        "MINIO_URL": "http://plexica-minio:9000",
        "MINIO_ROOT_USER": "root",
        "MINIO_ROOT_PASSWORD": "root-secret",
        "POLICY_NAME": "plexica-platform",
        "PLATFORM_ACCESS_KEY": "plexica-platform",
        "PLATFORM_SECRET_KEY": "platform-secret",
    }
    script = CHART_FILES / "minio-users.sh"
    done = subprocess.run(
        ["/bin/sh", str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == status, done.stderr
    calls = log.read_text().splitlines()
    assert calls[:5] == [
        "alias set root http://plexica-minio:9000 root root-secret",  # refused: MinIO not up
        "alias set root http://plexica-minio:9000 root root-secret",
        "admin info root",
        f"admin policy create root plexica-platform {CHART_FILES}/storage-platform-policy.json",
        "admin user add root plexica-platform platform-secret",
    ]
    assert calls[5:] == ["admin policy attach root plexica-platform --user plexica-platform"]
