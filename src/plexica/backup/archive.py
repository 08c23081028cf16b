"""The archive's format: a tar file with ``manifest.json`` (kind, format, digests), ``schema.sql``,
``objects/<key>`` with ``objects.json`` (content types), and ``tenant.json`` when taken of a whole
tenant. Here: writing its members, and reading back a manifest this version understands."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import IO, Any

from plexica_sdk.errors import PlexicaError

FORMAT = 2  # 2: manifest with kind and digests, and tenant.json when taken of a whole tenant
FORMATS = (1, 2)
KIND = "plexica-tenant-backup"


class InvalidArchiveError(PlexicaError):
    status, code = 400, "invalid_archive"


class BackupTooNewError(PlexicaError):
    status, code = 422, "backup_too_new"


def digest(fh: IO[bytes]) -> str:
    fh.flush()
    fh.seek(0)
    h = hashlib.sha256()
    while chunk := fh.read(1024 * 1024):
        h.update(chunk)
    return h.hexdigest()


def add_file(tar: tarfile.TarFile, name: str, fh: IO[bytes]) -> None:
    fh.flush()
    info = tarfile.TarInfo(name)
    info.size = fh.seek(0, os.SEEK_END)
    info.mtime = int(time.time())
    fh.seek(0)
    tar.addfile(info, fh)


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    add_file(tar, name, io.BytesIO(data))


def read_json(tar: tarfile.TarFile, name: str) -> Any:
    member = tar.extractfile(name)
    if member is None:
        raise InvalidArchiveError(f"the archive has no {name}")
    return json.loads(member.read())


def check_manifest(tar: tarfile.TarFile, manifest: Any) -> None:
    """A manifest of ours, of a format this version reads, whose files match their digests."""
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if isinstance(found, int) and found > FORMAT and manifest.get("kind") == KIND:
        raise BackupTooNewError(
            f"the archive's format {found} is newer than this Plexica reads ({FORMAT}): restore"
            " it with the version that made it or newer",
            details={"format": found},
        )
    if not isinstance(manifest, dict) or found not in FORMATS:
        raise InvalidArchiveError(f"not a Plexica tenant backup (format {found})")
    if manifest["format"] >= 2 and manifest.get("kind") != KIND:
        raise InvalidArchiveError("not a Plexica tenant backup")
    for name, expected in (manifest.get("digests") or {}).items():
        member = tar.extractfile(name)
        if member is None or digest(member) != expected:
            raise InvalidArchiveError(f"the archive is damaged: {name} does not match its digest")


def read_archive(archive: Path) -> tuple[dict[str, Any], bytes | None]:
    """The checked manifest and ``tenant.json`` (None in a schema-only archive)."""
    try:
        with tarfile.open(archive, "r") as tar:
            manifest = read_json(tar, "manifest.json")
            check_manifest(tar, manifest)
            if "tenant.json" not in tar.getnames():
                return manifest, None
            member = tar.extractfile("tenant.json")
            return manifest, member.read() if member is not None else None
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise InvalidArchiveError(f"not a readable backup archive: {exc}") from None
