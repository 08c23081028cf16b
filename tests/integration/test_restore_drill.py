"""The restore drill of docs/runbooks/backup-restore.md, run as written against a real ``plexica
up`` (its PostgreSQL) with the harness's S3 server: a tenant with the CRM, contacts, a file, a
flag, a setting and a user with a password is backed up and restored ``--as`` a new slug; the
restored user signs in and lists its contacts, the file downloads, the original is untouched.
Bad archives and slugs are refused in one line with nothing made; a restore that fails half-way
is rolled back and the same restore run again succeeds (ADR 0171)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from plexica.kit.ports import free_port
from tests.harness import servers
from tests.integration.test_cli import PLEXICA, clean_env, data_dir, start, stop, wait_ready
from tests.integration.test_first_hour import cli

__all__ = ["data_dir"]

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "runbooks" / "backup-restore.md"
CRM = "/api/plugins/crm/v1"
CORE = "/api/core/v1"


def drill() -> str:
    """The runbook's restore drill: the one bash block of its section."""
    text = RUNBOOK.read_text()
    start_at = text.index("### Restore drill")
    section = text[start_at : text.find("\n## ", start_at)]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, blocks
    return str(blocks[0])


def until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout}s")
        time.sleep(0.2)


class Up:
    def __init__(self, base: str, env: dict[str, str]) -> None:
        self.base, self.env = base, env

    def token(self, slug: str, email: str, password: str) -> str:
        out = cli(
            ["token", "--tenant", slug, "--user", email], {**self.env, "PLEXICA_PASSWORD": password}
        )
        return out.stdout.strip()

    def call(self, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
        return httpx.request(
            method, self.base + path, headers={"Authorization": f"Bearer {token}"}, timeout=60, **kw
        )

    def tenants(self) -> dict[str, str]:
        listed = json.loads(cli(["tenant", "list", "--json"], self.env).stdout)
        items = listed["items"] if isinstance(listed, dict) else listed
        return {t["slug"]: t["state"] for t in items}

    def refused(self, args: list[str], code: str) -> str:
        r = cli(args, self.env, code=1)
        assert r.stderr.count("\n") == 1, r.stderr
        assert code in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        return r.stderr


@pytest.fixture
def up(data_dir: Path, tmp_path: Path) -> Iterator[Up]:
    s3 = servers.ensure("s3")
    storage = {
        "PLEXICA_STORAGE_ENDPOINT": s3["endpoint"],
        "PLEXICA_STORAGE_ACCESS_KEY": s3["access_key"],
        "PLEXICA_STORAGE_SECRET_KEY": s3["secret_key"],
    }
    port = free_port()
    proc = start(["up", "--port", str(port), "--data-dir", str(data_dir)], clean_env(**storage))
    try:
        wait_ready(port, proc, timeout=240)
        yield Up(f"http://127.0.0.1:{port}", clean_env(PLEXICA_DATA_DIR=str(data_dir), **storage))
    finally:
        output = stop(proc)
    assert proc.returncode == 0, output


def _rewritten(archive: Path, out: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """The archive with tenant.json changed and its digest in the manifest made to match."""
    import hashlib

    with tarfile.open(archive) as src:
        files = {m.name: src.extractfile(m).read() for m in src.getmembers()}  # type: ignore[union-attr]
    saved = json.loads(files["tenant.json"])
    change(saved)
    files["tenant.json"] = json.dumps(saved).encode()
    manifest = json.loads(files["manifest.json"])
    manifest["digests"]["tenant.json"] = hashlib.sha256(files["tenant.json"]).hexdigest()
    files["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(out, "w") as dst:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return out


@pytest.mark.slow
def test_the_restore_drill_brings_back_a_working_tenant(up: Up, tmp_path: Path) -> None:
    slug, new = f"drill-{uuid.uuid4().hex[:6]}", f"copy-{uuid.uuid4().hex[:6]}"
    email = f"admin@{slug}.test"
    cli(["tenant", "create", slug, "--name", "Drill Co", "--admin-email", email], up.env)
    cli(["plugin", "install", "crm", "--tenant", slug], up.env)
    password = cli(["user", "reset-password", email, "--tenant", slug], up.env).stdout.strip()
    token = up.token(slug, email, password)
    for first in ("Ada", "Grace"):
        made = up.call("POST", f"{CRM}/contacts", token, json={"first_name": first})
        assert made.status_code == 201, made.text
    logo = os.urandom(3000)
    put = up.call("PUT", f"{CORE}/files/objects/docs/contract.bin", token, content=logo)
    assert put.status_code == 201, put.text
    setting = up.call("PUT", f"{CORE}/tenant/settings/drill.colour", token, json={"value": "teal"})
    assert setting.status_code == 200, setting.text
    flag = f"drill.{uuid.uuid4().hex[:6]}"
    cli(["flag", "create", flag], up.env)
    cli(["flag", "set", flag, "--tenant", f"{slug}=on"], up.env)
    archive = tmp_path / "drill.tar"

    # The runbook's drill, exactly as written (`plexica` is the CLI of this checkout).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "plexica"
    shim.write_text("#!/bin/sh\nexec " + " ".join(PLEXICA) + ' "$@"\n')
    shim.chmod(0o755)
    env = {
        **up.env, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLUG": slug, "NEW_SLUG": new,
        "ARCHIVE": str(archive), "EMAIL": email, "PASSWORD": password, "PLEXICA_URL": up.base,
    }  # fmt: skip
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", drill()],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}"
    assert f"restored {new}: 1 objects" in ran.stdout
    assert "active" in ran.stdout
    assert {"Ada", "Grace"} <= set(re.findall(r'"first_name":\s*"(\w+)"', ran.stdout))
    assert '"drill.colour"' in ran.stdout

    # The restored tenant's user signs in on its own and uses its data.
    copy = up.token(new, email, password)
    contacts = up.call("GET", f"{CRM}/contacts", copy)
    assert contacts.status_code == 200, contacts.text
    assert sorted(c["first_name"] for c in contacts.json()["items"]) == ["Ada", "Grace"]
    added = up.call("POST", f"{CRM}/contacts", copy, json={"first_name": "Katherine"})
    assert added.status_code == 201, added.text
    got = up.call("GET", f"{CORE}/files/objects/docs/contract.bin", copy)
    assert got.status_code == 200
    assert got.content == logo
    setting = up.call("GET", f"{CORE}/tenant/settings/drill.colour", copy)
    assert setting.json()["value"] == "teal"

    def flag_on() -> bool:
        r = up.call("GET", f"{CORE}/flags/evaluate", copy, params={"key": flag})
        return r.status_code == 200 and r.json()[flag]["variant"] == "on"

    until(flag_on, "serving the restored tenant its flag")

    # The original is untouched.
    contacts = up.call("GET", f"{CRM}/contacts", token)
    assert sorted(c["first_name"] for c in contacts.json()["items"]) == ["Ada", "Grace"]
    assert up.call("GET", f"{CORE}/files/objects/docs/contract.bin", token).content == logo

    # Bad input: one line each, a stable code, nothing made.
    before = up.tenants()
    up.refused(["restore", "tenant", str(archive), "--as", slug], "tenant_exists")
    corrupt = tmp_path / "corrupt.tar"
    corrupt.write_bytes(archive.read_bytes()[: archive.stat().st_size // 3])
    up.refused(["restore", "tenant", str(corrupt), "--as", "corrupt-x"], "invalid_archive")
    foreign = tmp_path / "foreign.tar"
    with tarfile.open(foreign, "w") as tar:
        tar.add(RUNBOOK, arcname="manifest.json")
    up.refused(["restore", "tenant", str(foreign), "--as", "foreign-x"], "invalid_archive")
    newer = _rewritten(
        archive, tmp_path / "newer.tar", lambda t: t.update(schema_revision="ffffffffffff")
    )
    up.refused(["restore", "tenant", str(newer), "--as", "newer-x"], "backup_too_new")
    assert up.tenants() == before

    # A restore that fails half-way (its plugin's version is not in this catalog) is rolled
    # back; the slug stays free and a good archive restores into it.
    def missing_version(t: dict[str, Any]) -> None:
        t["plugins"][0]["version"] = "99.0.0"

    broken = _rewritten(archive, tmp_path / "broken.tar", missing_version)
    again = f"again-{uuid.uuid4().hex[:6]}"
    up.refused(["restore", "tenant", str(broken), "--as", again], "restore_failed")
    assert again not in up.tenants()
    cli(["restore", "tenant", str(archive), "--as", again], up.env)
    contacts = up.call("GET", f"{CRM}/contacts", up.token(again, email, password))
    assert sorted(c["first_name"] for c in contacts.json()["items"]) == ["Ada", "Grace"]
