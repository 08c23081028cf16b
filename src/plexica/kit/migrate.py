"""Run the Alembic trees programmatically on an async engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from plexica.kit.db import PLATFORM_SCHEMA, Database

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(tree: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS / tree))
    return cfg


def heads(tree: str) -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(alembic_config(tree)).get_heads())


def _upgrade(conn: Connection, tree: str, schema: str, target: str) -> None:
    cfg = alembic_config(tree)
    cfg.attributes["connection"] = conn
    cfg.attributes["schema"] = schema
    command.upgrade(cfg, target)


def _current(conn: Connection, schema: str) -> str | None:
    ctx = MigrationContext.configure(conn, opts={"version_table_schema": schema})
    return ctx.get_current_revision()


async def upgrade_platform(db: Database, target: str = "heads") -> None:
    async with db.engine.begin() as conn:
        # One migrator at a time across replicas: the others wait, then find nothing to do.
        await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('plexica.migrate'))")
        await conn.run_sync(_upgrade, "platform", PLATFORM_SCHEMA, target)


async def upgrade_schema(db: Database, schema: str, target: str = "head") -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(_upgrade, "tenant", schema, target)


async def current_revision(db: Database, schema: str = PLATFORM_SCHEMA) -> str | None:
    async with db.engine.connect() as conn:
        return await conn.run_sync(_current, schema)
