"""Tenant backup and restore.

An archive is a tar file: ``manifest.json``, ``schema.sql`` (``pg_dump`` of the tenant schema,
no owners or grants) and ``objects/<key>`` with ``objects.json`` (content types). It is written
to ``<out>.partial`` and renamed when complete. A restore refuses to overwrite an existing schema
or a non-empty bucket, loads the schema in one transaction, then the objects; if anything fails
it removes what it made, so a failed restore leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import subprocess
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import make_url

from plexica.kit.db import Database, quote_ident
from plexica.kit.pgserver import PG_BIN
from plexica.kit.provisioning import BUCKET_PREFIX, SCHEMA_PREFIX
from plexica.storage.keys import validate_key
from plexica.storage.service import Scope, StorageService
from plexica.storage.store import ObjectStore
from plexica_sdk.errors import ConflictError, NotFoundError, PlexicaError

FORMAT = 2  # 2: manifest with kind and digests, and tenant.json when taken of a whole tenant
FORMATS = (1, 2)
KIND = "plexica-tenant-backup"
PARALLEL = 8
SMALL = 8 * 1024 * 1024
Progress = Callable[[int, int | None], None]  # (objects done, total or None while unknown)


class BackupError(PlexicaError):
    status, code = 500, "backup_failed"


class InvalidArchiveError(PlexicaError):
    status, code = 400, "invalid_archive"


class BackupTooNewError(PlexicaError):
    status, code = 422, "backup_too_new"


@dataclass(frozen=True)
class Summary:
    slug: str
    objects: int
    bytes: int
    seconds: float


def schema_of(slug: str) -> str:
    return SCHEMA_PREFIX + slug.replace("-", "_")


def bucket_of(slug: str) -> str:
    return BUCKET_PREFIX + slug


def libpq(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def _without_password(cmd: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command with the database URL's password moved to ``PGPASSWORD``: a command line is
    readable by every local user (``ps``, ``/proc/<pid>/cmdline``)."""
    out, env = [], {}
    for arg in cmd:
        url = make_url(arg) if arg.startswith("postgresql://") else None
        if url is not None and url.password is not None:
            env["PGPASSWORD"] = str(url.password)
            out.append(url._replace(password=None).render_as_string(hide_password=False))
        else:
            out.append(arg)
    return out, env


def _run(
    cmd: list[str], *, stdout: IO[bytes] | None = None, env: dict[str, str] | None = None
) -> None:
    cmd, hidden = _without_password(cmd)
    done = subprocess.run(
        cmd,
        stdout=stdout or subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=3600,
        check=False,
        env={**os.environ, **hidden, **(env or {})},
    )
    if done.returncode != 0:
        raise BackupError(
            f"{Path(cmd[0]).name} failed: {done.stderr.decode(errors='replace')[-500:]}"
        )


def _psql(url: str, *args: str) -> list[str]:
    return [str(PG_BIN / "psql"), "-d", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", *args]


def schema_exists(url: str, schema: str) -> bool:
    quote_ident(schema)  # only our own identifiers reach the query below
    query = f"SELECT 1 FROM pg_namespace WHERE nspname = '{schema}'"  # noqa: S608
    cmd, hidden = _without_password(_psql(url, "-tAc", query))
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, check=True, env={**os.environ, **hidden}
    )
    return out.stdout.strip() == "1"


async def _all_objects(store: ObjectStore, bucket: str) -> AsyncIterator[str]:
    after: str | None = None
    while True:
        page = await store.list(bucket, "", after, 1000)
        for item in page.items:
            yield item.key
        if page.next_after is None:
            return
        after = page.next_after


async def backup_tenant(
    database_url: str,
    store: ObjectStore,
    slug: str,
    out: Path,
    progress: Progress | None = None,
    *,
    extra: dict[str, bytes] | None = None,
    meta: dict[str, Any] | None = None,
) -> Summary:
    """``progress(done, total)`` counts the objects archived (the total is known at the end).
    ``extra`` files go in the archive beside the schema, with their digests in the manifest."""
    start = time.perf_counter()
    url, schema, bucket = libpq(database_url), schema_of(slug), bucket_of(slug)
    if not await asyncio.to_thread(schema_exists, url, schema):
        raise NotFoundError(f"tenant schema {schema} does not exist")
    partial = out.with_name(out.name + ".partial")
    objects = total = 0
    try:
        with tarfile.open(partial, "w") as tar:
            with tempfile.TemporaryFile() as dump:
                await asyncio.to_thread(
                    _run,
                    [
                        str(PG_BIN / "pg_dump"),
                        "-d",
                        url,
                        "--schema",
                        schema,
                        "--no-owner",
                        "--no-privileges",
                        "--format",
                        "plain",
                    ],
                    stdout=dump,
                )
                digests = {"schema.sql": _digest(dump)}
                _add_file(tar, "schema.sql", dump)
            for name, data in (extra or {}).items():
                digests[name] = hashlib.sha256(data).hexdigest()
                _add_bytes(tar, name, data)
            types: dict[str, str] = {}
            if await store.bucket_exists(bucket):
                batch: list[str] = []
                async for key in _all_objects(store, bucket):
                    batch.append(key)
                    if len(batch) == PARALLEL:
                        await _archive_batch(store, bucket, batch, tar, types)
                        batch = []
                        if progress is not None:
                            progress(len(types), None)
                if batch:
                    await _archive_batch(store, bucket, batch, tar, types)
                objects = len(types)
            if progress is not None:
                progress(objects, objects)
                total = sum(m.size for m in tar.getmembers() if m.name.startswith("objects/"))
            manifest = {
                "kind": KIND,
                "format": FORMAT,
                **(meta or {}),
                "digests": digests,
                "slug": slug,
                "schema": schema,
                "bucket": bucket,
                "objects": objects,
                "bytes": total,
                "created_at": datetime.now(UTC).isoformat(),
            }
            _add_bytes(tar, "objects.json", json.dumps(types).encode())
            _add_bytes(tar, "manifest.json", json.dumps(manifest, indent=2).encode())
        os.replace(partial, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return Summary(slug, objects, total, time.perf_counter() - start)


async def _archive_batch(
    store: ObjectStore, bucket: str, keys: list[str], tar: tarfile.TarFile, types: dict[str, str]
) -> None:
    """Download a few objects at once into temporary files, then append them in order."""
    opened: list[IO[bytes]] = []

    async def fetch(key: str) -> IO[bytes]:
        info, chunks = await store.get(bucket, key)
        tmp = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the caller
        opened.append(tmp)
        async for chunk in chunks:
            await asyncio.to_thread(tmp.write, chunk)
        types[key] = info.content_type
        return tmp

    try:
        files = await asyncio.gather(*(fetch(k) for k in keys))
        for key, tmp in zip(keys, files, strict=True):
            await asyncio.to_thread(_add_file, tar, "objects/" + key, tmp)
    finally:
        for tmp in opened:
            tmp.close()


def _digest(fh: IO[bytes]) -> str:
    fh.flush()
    fh.seek(0)
    h = hashlib.sha256()
    while chunk := fh.read(1024 * 1024):
        h.update(chunk)
    return h.hexdigest()


def _add_file(tar: tarfile.TarFile, name: str, fh: IO[bytes]) -> None:
    fh.flush()
    info = tarfile.TarInfo(name)
    info.size = fh.seek(0, os.SEEK_END)
    info.mtime = int(time.time())
    fh.seek(0)
    tar.addfile(info, fh)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    _add_file(tar, name, io.BytesIO(data))


def _read_json(tar: tarfile.TarFile, name: str) -> Any:
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
    for name, digest in (manifest.get("digests") or {}).items():
        member = tar.extractfile(name)
        if member is None or _digest(member) != digest:
            raise InvalidArchiveError(f"the archive is damaged: {name} does not match its digest")


def read_archive(archive: Path) -> tuple[dict[str, Any], bytes | None]:
    """The checked manifest and ``tenant.json`` (None in a schema-only archive)."""
    try:
        with tarfile.open(archive, "r") as tar:
            manifest = _read_json(tar, "manifest.json")
            check_manifest(tar, manifest)
            if "tenant.json" not in tar.getnames():
                return manifest, None
            member = tar.extractfile("tenant.json")
            return manifest, member.read() if member is not None else None
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise InvalidArchiveError(f"not a readable backup archive: {exc}") from None


async def restore_tenant(
    database_url: str,
    store: ObjectStore,
    archive: Path,
    *,
    as_slug: str | None = None,
    db: Database | None = None,
    progress: Progress | None = None,
) -> Summary:
    """``progress(done, total)`` counts the archive's objects as they are sent to the store."""
    start = time.perf_counter()
    url = libpq(database_url)
    try:
        tar = tarfile.open(archive, "r")  # noqa: SIM115 - closed below
    except (OSError, tarfile.TarError) as exc:
        raise InvalidArchiveError(f"not a backup archive: {exc}") from None
    with tar:
        try:
            manifest = _read_json(tar, "manifest.json")
            types: dict[str, str] = _read_json(tar, "objects.json")
        except (KeyError, ValueError):
            raise InvalidArchiveError("the archive has no valid manifest") from None
        check_manifest(tar, manifest)
        source_slug = str(manifest["slug"])
        slug = as_slug or source_slug
        source_schema, schema, bucket = schema_of(source_slug), schema_of(slug), bucket_of(slug)
        if await asyncio.to_thread(schema_exists, url, schema):
            raise ConflictError(f"schema {schema} already exists in the target database")
        if await store.bucket_exists(bucket) and (await store.list(bucket, "", None, 1)).items:
            raise ConflictError(f"bucket {bucket} exists and is not empty")

        schema_made = bucket_made = False
        try:
            await asyncio.to_thread(load_schema, url, tar, source_schema, schema)
            schema_made = True
            await store.create_bucket(bucket)
            bucket_made = True
            objects, total = await load_objects(store, tar, bucket, types, progress)
            if db is not None:
                async with db.session() as session:
                    await StorageService(store).reconcile(session, Scope(bucket, None))
        except BaseException:
            if bucket_made:
                await store.delete_bucket(bucket)
            if schema_made:
                drop = f"DROP SCHEMA {quote_ident(schema)} CASCADE"
                await asyncio.to_thread(_run, _psql(url, "-c", drop))
            raise
    return Summary(slug, objects, total, time.perf_counter() - start)


def load_schema(url: str, tar: tarfile.TarFile, source_schema: str, schema: str) -> None:
    """Load the archive's schema logged in as a throwaway role that owns only that schema.

    The dump holds the plugins' SQL (functions, CHECK constraints, index expressions, generated
    columns), which loading it evaluates (``COPY`` checks every row): loaded by the platform's
    owner, a plugin's constraint would run as the owner (CREATEROLE, every tenant, the realm
    keys). The throwaway role logs in (no ``SET ROLE`` on a privileged session) with nothing
    but ``CONNECT`` and ``CREATE`` in the schema the owner made for it; the owner then takes
    over what the role made and drops the role. Under another name, the dump's statements (not
    its rows) name the new schema: the source tenant may still have its own."""
    member = tar.extractfile("schema.sql")
    if member is None:
        raise InvalidArchiveError("the archive has no schema.sql")
    role, password = "plexica_restore_" + secrets.token_hex(6), secrets.token_urlsafe(24)
    r, src = quote_ident(role), quote_ident(schema)
    database = quote_ident(make_url(url).database or "")
    with tempfile.NamedTemporaryFile(suffix=".sql") as sql:
        dump = _without_create_schema(member.read(), source_schema)
        sql.write(_renamed(dump, source_schema, schema) if schema != source_schema else dump)
        sql.flush()
        _run(
            _psql(
                url, "--single-transaction",
                "-c", f"CREATE ROLE {r} LOGIN NOINHERIT NOCREATEDB NOCREATEROLE NOREPLICATION"
                f" NOBYPASSRLS CONNECTION LIMIT 1 PASSWORD '{password}'",
                "-c", f"GRANT {r} TO CURRENT_USER WITH INHERIT TRUE, SET FALSE",
                "-c", f"GRANT CONNECT ON DATABASE {database} TO {r}",
                "-c", f"CREATE SCHEMA {src}",
                "-c", f"GRANT USAGE, CREATE ON SCHEMA {src} TO {r}",
            )
        )  # fmt: skip
        try:
            # The password goes in the environment, not in the command line (``ps``).
            role_url = make_url(url)._replace(username=role, password=None)
            _run(
                _psql(
                    role_url.render_as_string(hide_password=False),
                    "--single-transaction",
                    "-f",
                    sql.name,
                ),
                env={"PGPASSWORD": password},
            )
            # What the role made, the owner will own: no routine of it may run as the owner
            # (a plugin's role may have made its own SECURITY DEFINER at run time, and the
            # platform's functions are made again when a plugin is installed or restored).
            invoker = (
                "DO $$ DECLARE f regprocedure; BEGIN FOR f IN SELECT p.oid::regprocedure"  # noqa: S608
                " FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_roles o ON o.oid = p.proowner"
                f" WHERE o.rolname = '{role}' AND p.prosecdef LOOP"
                " EXECUTE pg_catalog.format('ALTER ROUTINE %s SECURITY INVOKER', f);"
                " END LOOP; END $$"
            )
            _run(
                _psql(
                    url, "--single-transaction", "-c", invoker,
                    "-c", f"REASSIGN OWNED BY {r} TO CURRENT_USER",
                    "-c", f"DROP OWNED BY {r}", "-c", f"DROP ROLE {r}",
                )
            )  # fmt: skip
        except BaseException:
            _run(
                _psql(
                    url, "--single-transaction",
                    "-c", f"DROP SCHEMA IF EXISTS {src} CASCADE",
                    "-c", f"DROP OWNED BY {r} CASCADE", "-c", f"DROP ROLE {r}",
                )
            )  # fmt: skip
            raise


def _renamed(dump: bytes, source: str, target: str) -> bytes:
    """``source.`` becomes ``target.`` in the dump's statements; the rows of its ``COPY`` blocks
    are left as they are. pg_dump names every object with its schema."""
    name = re.compile(rb'(?<![\w"$])' + re.escape(source.encode()) + rb"(?=\.)")
    out, copying = [], False
    for line in dump.split(b"\n"):
        if copying:
            copying = line != b"\\."
            out.append(line)
            continue
        if line.startswith(b"COPY ") and line.endswith(b"FROM stdin;"):
            copying = True
        out.append(name.sub(target.encode(), line))
    return b"\n".join(out)


def _without_create_schema(dump: bytes, schema: str) -> bytes:
    """The dump without its ``CREATE SCHEMA`` (the restore makes the schema for the role)."""
    quoted = quote_ident(schema)
    drop = {f"CREATE SCHEMA {schema};".encode(), f"CREATE SCHEMA {quoted};".encode()}
    lines = dump.split(b"\n")
    kept = [line for line in lines if line.strip() not in drop]
    if len(kept) == len(lines):
        raise InvalidArchiveError(f"schema.sql does not create schema {schema}")
    return b"\n".join(kept)


async def load_objects(
    store: ObjectStore,
    tar: tarfile.TarFile,
    bucket: str,
    types: dict[str, str],
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Objects are read from the tar in order; small ones upload a few at a time."""
    objects = total = 0
    pending: set[asyncio.Task[None]] = set()

    async def put(key: str, source: IO[bytes]) -> None:
        upload = await store.begin_upload(bucket, key, types.get(key, "application/octet-stream"))
        try:
            while chunk := await asyncio.to_thread(source.read, 1024 * 1024):
                await upload.write(chunk)
            await upload.commit()
        except BaseException:
            await upload.abort()
            raise

    try:
        for member in tar.getmembers():
            if not member.name.startswith("objects/") or not member.isfile():
                continue
            key = validate_key(member.name.removeprefix("objects/"))
            data = tar.extractfile(member)
            if data is None:
                raise InvalidArchiveError(f"cannot read {member.name}")
            if member.size <= SMALL:
                while len(pending) >= PARALLEL:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
                pending.add(asyncio.create_task(put(key, io.BytesIO(data.read()))))
            else:
                await put(key, data)
            objects += 1
            total += member.size
            if progress is not None:
                progress(objects, len(types))
        if pending:
            done, pending = await asyncio.wait(pending)
            for task in done:
                task.result()
    finally:
        # Let started uploads end rather than cancel them: a cancelled task's thread would go on
        # writing and could re-create the bucket after the caller has removed it.
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    return objects, total
