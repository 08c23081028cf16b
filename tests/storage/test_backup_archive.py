"""What a restore refuses before it makes anything, from the archive alone: not a backup,
damaged (a file that does not match its digest), from a newer Plexica, a schema-only archive
where a whole tenant is asked for; and the schema rename that leaves rows alone (ADR 0171)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from plexica.backup.archive import (
    FORMAT,
    KIND,
    BackupTooNewError,
    InvalidArchiveError,
    read_archive,
)
from plexica.backup.postgres import _renamed
from plexica.backup.tenant import check_revision, read_saved

SCHEMA = b"CREATE SCHEMA tenant_acme;\nCREATE TABLE tenant_acme.crm_contacts (id int);\n"
TENANT = json.dumps(
    {"id": "00000000-0000-0000-0000-000000000001", "slug": "acme", "name": "Acme",
     "admin_email": "a@acme.test", "schema_revision": "s0001"}
).encode()  # fmt: skip


def _archive(path: Path, files: dict[str, bytes], **manifest: object) -> Path:
    digests = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    base = {"kind": KIND, "format": FORMAT, "backup_id": "b1", "digests": digests, "slug": "acme"}
    body = {
        **files,
        "objects.json": b"{}",
        "manifest.json": json.dumps({**base, **manifest}).encode(),
    }
    with tarfile.open(path, "w") as tar:
        for name, data in body.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_good_archive_reads(tmp_path: Path) -> None:
    backup_id, saved = read_saved(
        _archive(tmp_path / "a.tar", {"schema.sql": SCHEMA, "tenant.json": TENANT})
    )
    assert (backup_id, saved.slug, saved.schema_revision) == ("b1", "acme", "s0001")


def test_refused_archives(tmp_path: Path) -> None:
    not_tar = tmp_path / "x.tar"
    not_tar.write_bytes(b"hello")
    with pytest.raises(InvalidArchiveError):
        read_archive(not_tar)
    good = _archive(tmp_path / "g.tar", {"schema.sql": SCHEMA, "tenant.json": TENANT})
    cut = tmp_path / "cut.tar"
    cut.write_bytes(good.read_bytes()[:700])
    with pytest.raises(InvalidArchiveError):
        read_saved(cut)
    damaged = _archive(tmp_path / "d.tar", {"schema.sql": SCHEMA, "tenant.json": TENANT})
    manifest = {"digests": {"schema.sql": "0" * 64}}
    with pytest.raises(InvalidArchiveError, match="digest"):
        read_saved(_archive(damaged, {"schema.sql": SCHEMA, "tenant.json": TENANT}, **manifest))
    with pytest.raises(InvalidArchiveError, match="not a Plexica"):
        read_saved(_archive(tmp_path / "f.tar", {"schema.sql": SCHEMA}, kind="something-else"))
    with pytest.raises(BackupTooNewError):
        read_saved(_archive(tmp_path / "n.tar", {"schema.sql": SCHEMA}, format=FORMAT + 1))
    with pytest.raises(InvalidArchiveError, match="no tenant"):
        read_saved(_archive(tmp_path / "s.tar", {"schema.sql": SCHEMA}))
    with pytest.raises(BackupTooNewError):
        check_revision("ffffffffffff")
    check_revision("s0001")


def test_the_rename_touches_statements_not_rows() -> None:
    dump = (
        b"CREATE TABLE tenant_acme.crm_notes (body text);\n"
        b"COPY tenant_acme.crm_notes (body) FROM stdin;\n"
        b"see tenant_acme.crm_notes\n"
        b"\\.\n"
        b"SELECT pg_catalog.setval('tenant_acme.crm_seq', 3, true);\n"
        b"CREATE TABLE tenant_acme_co.other (id int);\n"
    )
    out = _renamed(dump, "tenant_acme", "tenant_copy").split(b"\n")
    assert out[0] == b"CREATE TABLE tenant_copy.crm_notes (body text);"
    assert out[1] == b"COPY tenant_copy.crm_notes (body) FROM stdin;"
    assert out[2] == b"see tenant_acme.crm_notes"  # a row
    assert out[4] == b"SELECT pg_catalog.setval('tenant_copy.crm_seq', 3, true);"
    assert out[5] == b"CREATE TABLE tenant_acme_co.other (id int);"
