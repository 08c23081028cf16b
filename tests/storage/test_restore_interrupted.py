"""A whole-tenant restore killed half-way (kill -9 of the CLI while it uploads the files) leaves
a tenant the reconciler marks ``failed``, not one it provisions afresh; running the same restore
again deletes it and finishes (ADR 0171). Real PostgreSQL and the harness's S3 server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from plexica.backup import tenant as whole
from plexica.identity import service as identity_service
from plexica.identity.builtin import BuiltinIdentity, RealmStep
from plexica.kit.db import Database
from plexica.plugins.service import HttpReadinessProbe, Installer
from plexica.settings import Settings
from plexica.storage.provisioning import BucketStep
from plexica.storage.s3 import S3Store
from plexica.tenants.errors import IllegalTransitionError, TenantNotFoundError
from plexica.tenants.reconciler import Reconciler
from plexica.tenants.schemas import State, StepStatus, TenantCreate
from plexica.tenants.service import TenantService
from tests.storage.conftest import new_slug

OBJECTS = 400
PASSWORD = "restore-drill-pass-1"


async def _step(tenants: TenantService, slug: str) -> StepStatus | None:
    try:
        steps = await tenants.steps_of(slug)
    except TenantNotFoundError:  # not made yet
        return None
    return next((s.status for s in steps.steps if s.name == "restore_files"), None)


@pytest.mark.slow
async def test_an_interrupted_restore_is_failed_then_finished_by_running_it_again(
    db: Database, settings: Settings, s3: dict[str, Any], s3_store: S3Store, tmp_path: Path
) -> None:
    identity = BuiltinIdentity(db, settings.public_base_url)
    tenants = TenantService(db, [RealmStep(identity, db), BucketStep(s3_store, db)])
    p = whole.Platform(
        str(settings.database_url), db, s3_store, tenants, identity,
        Installer(db, HttpReadinessProbe({})),
    )  # fmt: skip
    source = await tenants.create(
        TenantCreate(slug=new_slug(), name="Source", admin_email="owner@source.test")
    )
    async with db.session() as s:
        await identity_service.set_password(s, source.ref.realm, "owner@source.test", PASSWORD)

    async def put(i: int) -> None:
        upload = await s3_store.begin_upload(source.ref.bucket, f"f/{i:04}", "text/plain")
        await upload.write(b"x" * (200 + i))
        await upload.commit()

    for start in range(0, OBJECTS, 20):
        await asyncio.gather(*(put(i) for i in range(start, min(start + 20, OBJECTS))))
    archive = tmp_path / "source.tar"
    await whole.backup(p, source.slug, archive)

    # The CLI restores and is killed while it uploads the files.
    copy = new_slug()
    env = {
        **os.environ,
        "PLEXICA_DATABASE_URL": str(settings.database_url),
        "PLEXICA_DATA_DIR": str(settings.data_dir),
        "PLEXICA_STORAGE_ENDPOINT": s3["endpoint"],
        "PLEXICA_STORAGE_ACCESS_KEY": s3["access_key"],
        "PLEXICA_STORAGE_SECRET_KEY": s3["secret_key"],
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "plexica.cli", "restore", "tenant", str(archive), "--as", copy],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while await _step(tenants, copy) is not StepStatus.RUNNING:
            assert proc.poll() is None, f"the restore ended before it was killed: {proc.stdout}"
            assert time.monotonic() < deadline, "the restore never reached its files"
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        await asyncio.to_thread(proc.wait, 60)
    assert (await tenants.get(copy)).state is State.PROVISIONING

    # The killed process's saga lock is freed when PostgreSQL sees its connection gone.
    deadline = time.monotonic() + 60
    while (await tenants.get(copy)).state is State.PROVISIONING:
        assert time.monotonic() < deadline, "the reconciler never took the interrupted restore"
        await Reconciler(tenants).pass_once()
        await asyncio.sleep(0.1)
    failed = await tenants.get(copy)
    assert failed.state is State.FAILED
    assert "restore interrupted" in (failed.failure_reason or "")
    with pytest.raises(IllegalTransitionError):
        await tenants.retry(copy)  # never provisioned afresh as an empty tenant

    # The same restore again: the failed one goes, the new one is whole.
    summary = await whole.restore(p, archive, copy)
    assert summary.objects == OBJECTS
    restored = await tenants.get(copy)
    assert restored.state is State.ACTIVE
    assert restored.id != failed.id
    listed = await s3_store.list(restored.ref.bucket, "f/", None, 1000)
    assert len(listed.items) == OBJECTS
    async with db.session() as s:
        signed_in = await identity_service.authenticate(
            s, restored.ref.realm, "owner@source.test", PASSWORD
        )
    assert signed_in is not None
    assert (await tenants.get(source.id)).state is State.ACTIVE
