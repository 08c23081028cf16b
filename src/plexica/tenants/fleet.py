"""Fleet migrations: every tenant schema to the head of the tenant tree (ADR 0033).

Bounded parallelism, resumable (a schema already at the head is skipped, and each schema's
upgrade and its recorded version commit together), canary tenants first, then waves, halting at
the first failure. Alembic keeps its migration context in module globals, so two upgrades must
never interleave in one process: the parallel upgrades run in a pool of worker processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from plexica.kit.db import Database
from plexica.kit.migrate import MIGRATIONS
from plexica.tenants import repository
from plexica.tenants.saga import describe
from plexica.tenants.schemas import State, Tenant
from plexica_sdk.errors import PlexicaError

MIGRATED_STATES = (State.ACTIVE, State.SUSPENDED)
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    slug: str
    version: str | None
    error: str | None = None


@dataclass
class FleetResult:
    head: str
    total: int
    migrated: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_started: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, object]:
        return {
            "head": self.head,
            "total": self.total,
            "migrated": len(self.migrated),
            "up_to_date": len(self.up_to_date),
            "failed": self.failed,
            "not_started": len(self.not_started),
            "ok": self.ok,
        }


class UnknownCanaryError(PlexicaError):
    status, code = 422, "unknown_canary"


def _config(tree: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(tree))
    return cfg


_SCRIPTS: dict[Path, ScriptDirectory] = {}


def _script(tree: Path) -> ScriptDirectory:
    """The tree's scripts, read once per process (forked workers inherit the parent's)."""
    if tree not in _SCRIPTS:
        _SCRIPTS[tree] = ScriptDirectory.from_config(_config(tree))
    return _SCRIPTS[tree]


def _upgrade(conn: Connection, tree: Path, schema: str) -> str | None:
    """``alembic upgrade head`` for one schema, without re-reading the tree every time."""
    script = _script(tree)
    cfg = _config(tree)
    cfg.attributes["connection"] = conn
    cfg.attributes["schema"] = schema

    def upgrade(rev: Any, _: Any) -> Any:
        return script._upgrade_revs("head", rev)

    with EnvironmentContext(cfg, script, fn=upgrade, destination_rev="head"):
        script.run_env()
    return script.get_current_head()


async def migrate_tenant(db: Database, tenant_id: UUID, schema: str, tree: Path) -> str | None:
    async with db.engine.begin() as conn:
        await repository.lock_schema_migration(conn, schema)
        version = await conn.run_sync(_upgrade, tree, schema)
        await repository.set_schema_version(conn, tenant_id, version)
    return version


class _Worker:
    """State of one worker process: its own event loop and a one-connection engine."""

    loop: asyncio.AbstractEventLoop | None = None
    db: Database | None = None


def _die_with(parent: int) -> None:
    """A worker outlives a killed ``plexica migrate`` otherwise (it waits on a queue whose other
    end it holds itself). Its transaction dies with its connection: the schema is retried by
    the next run."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)


def _init_worker(url: str, parent: int) -> None:
    _die_with(parent)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _Worker.loop = asyncio.new_event_loop()
    _Worker.db = Database(url, pool_size=1)


def _migrate_in_worker(tenant_id: UUID, schema: str, tree: str) -> str | None:
    assert _Worker.loop is not None
    assert _Worker.db is not None
    return _Worker.loop.run_until_complete(
        migrate_tenant(_Worker.db, tenant_id, schema, Path(tree))
    )


def plan_waves(
    pending: Sequence[Tenant], canary: Sequence[str], wave: int | None
) -> list[list[Tenant]]:
    by_slug = {t.slug: t for t in pending}
    first = [by_slug[s] for s in canary if s in by_slug]
    rest = [t for t in pending if t.slug not in set(canary)]
    size = wave or max(len(rest), 1)
    waves = [first] if first else []
    waves += [rest[i : i + size] for i in range(0, len(rest), size)]
    return waves


async def migrate_fleet(
    db: Database,
    *,
    concurrency: int = 4,
    canary: Sequence[str] = (),
    wave: int | None = None,
    tree: Path | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> FleetResult:
    tree = tree or MIGRATIONS / "tenant"
    head = _script(tree).get_current_head()
    assert head is not None
    async with db.session() as session:
        fleet = await repository.fleet(session, MIGRATED_STATES)
    known = {t.slug for t in fleet}
    unknown = [s for s in canary if s not in known]
    if unknown:
        raise UnknownCanaryError(
            f"canary tenants not found or not in service: {', '.join(unknown)}",
            details={"unknown": unknown},
        )
    result = FleetResult(head=head, total=len(fleet))
    result.up_to_date = [t.slug for t in fleet if t.schema_version == head]
    pending = [t for t in fleet if t.schema_version != head]
    if not pending:
        return result
    workers = min(max(1, concurrency), len(pending))
    gate = asyncio.Semaphore(workers)
    halt = asyncio.Event()
    done = len(result.up_to_date)
    loop = asyncio.get_running_loop()
    url = db.engine.url.render_as_string(hide_password=False)
    # Forked before the workers touch anything of ours: each opens its own loop and engine.
    pool = ProcessPoolExecutor(
        workers,
        mp_context=mp.get_context("fork"),
        initializer=_init_worker,
        initargs=(url, os.getpid()),
    )

    async def one(tenant: Tenant) -> None:
        nonlocal done
        async with gate:
            if halt.is_set():
                result.not_started.append(tenant.slug)
                return
            try:
                version = await loop.run_in_executor(
                    pool, _migrate_in_worker, tenant.id, tenant.schema_name, str(tree)
                )
            except Exception as exc:  # noqa: BLE001 - recorded, and the rollout halts
                halt.set()
                result.failed[tenant.slug] = describe(exc)
                done += 1
                if progress:
                    progress(Progress(done, result.total, tenant.slug, None, describe(exc)))
                return
            result.migrated.append(tenant.slug)
            done += 1
            if progress:
                progress(Progress(done, result.total, tenant.slug, version))

    waves = plan_waves(pending, canary, wave)
    try:
        for index, batch in enumerate(waves):
            if halt.is_set():
                result.not_started += [t.slug for w in waves[index:] for t in w]
                break
            await asyncio.gather(*(one(t) for t in batch))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return result
