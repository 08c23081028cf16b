"""``plexica up``: the whole platform on one port, with an embedded PostgreSQL by default."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog
import typer
from fastapi import FastAPI

from plexica import __version__
from plexica.app import create_app
from plexica.cli import runtime
from plexica.cli.common import fail, settings_or_exit
from plexica.events.runtime import plugin_event_buses
from plexica.gateway.embedded import create_edge_app
from plexica.identity import custody, sealed
from plexica.identity.bootstrap import OperatorCredentials, bootstrap
from plexica.identity.custody import KeyCustodyError, with_persisted_key
from plexica.identity.names import CREDENTIALS_FILE
from plexica.identity.service import OPERATOR_REALM
from plexica.kit.datadir import DataDir, DataDirBusyError
from plexica.kit.db import Database
from plexica.kit.migrate import upgrade_platform
from plexica.kit.pgserver import EmbeddedPostgres, EmbeddedPostgresError
from plexica.kit.server import PortInUseError, ensure_port_free, serve
from plexica.plugins import devroutes
from plexica.plugins.embedded import mount_plugins
from plexica.plugins.shipped import register_shipped_plugins
from plexica.settings import Settings
from plexica.tenants.fleet import migrate_fleet
from plexica.web.app import create_web_app
from plexica.web.session import with_persisted_secret
from plexica_sdk.events import EventBus
from plexica_sdk.observability import configure_logging

log = structlog.get_logger("plexica.up")


@contextmanager
def _phase(name: str) -> Iterator[None]:
    """Logs how long a start-up phase took (``bench/startup`` reads these)."""
    start = time.perf_counter()
    yield
    log.info("startup_phase", phase=name, seconds=round(time.perf_counter() - start, 3))


def _since_process_start() -> float:
    import psutil

    return time.time() - psutil.Process().create_time()


def run_up(*, port: int, data_dir: Path | None, reset: bool, host: str, demo: bool = False) -> None:
    overrides: dict[str, object] = {"port": port, "host": host}
    if not os.environ.get("PLEXICA_PUBLIC_URL"):
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - compared only
        overrides["public_url"] = f"http://{shown}:{port}"
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    settings = settings_or_exit("plexica", **overrides)
    configure_logging("plexica", settings.log_level, settings.log_format)
    log.info(
        "startup_phase", phase="interpreter_and_imports", seconds=round(_since_process_start(), 3)
    )
    try:
        ensure_port_free(host, port)
    except PortInUseError as exc:
        raise fail(f"{exc}; pass --port to use another") from None
    try:
        with DataDir(settings.data_dir) as held:
            if reset:
                held.reset()
                typer.echo(f"reset: removed all data in {held.path}")
            _run(settings, held.path, demo)
    except DataDirBusyError as exc:
        raise fail(str(exc)) from None


def _run(settings: Settings, data_dir: Path, demo: bool = False) -> None:
    pg: EmbeddedPostgres | None = None
    if settings.database_url is None:
        pg = EmbeddedPostgres(data_dir)
        try:
            with _phase("embedded_postgres"):
                pg.start()
            # The superuser only bootstraps the owner role; everything runs as the owner.
            owner_url = pg.owner_url()
        except EmbeddedPostgresError as exc:
            raise fail(f"embedded PostgreSQL did not start: {exc}") from None
        settings = settings.model_copy(update={"database_url": owner_url})
    # The realms' private keys are sealed with it (ADR 0150): kept in the data dir when unset.
    with _phase("key_loading"):
        settings = with_persisted_key(settings, data_dir)
        custody.install_from(settings)
    try:
        try:
            with _phase("migrations_and_bootstrap"):
                operator = asyncio.run(_migrate(settings, data_dir))
        except KeyCustodyError as exc:
            raise fail(str(exc)) from None
        with _phase("apps_and_plugin_mounting"):
            edge = _apps(settings, data_dir)
        serving = time.perf_counter()
        url = f"http://{settings.host}:{settings.port}"

        def banner() -> None:
            log.info(
                "startup_phase",
                phase="lifespans_to_ready",
                seconds=round(time.perf_counter() - serving, 3),
            )
            log.info("startup_ready", seconds=round(_since_process_start(), 3))
            database = f"embedded PostgreSQL on 127.0.0.1:{pg.port}" if pg else "external"
            typer.echo(
                f"\nPlexica {__version__} is running\n"
                f"  URL:       {url}/\n"
                f"  API docs:  {url}/api/core/docs\n"
                f"  Health:    {url}/health  {url}/ready  {url}/metrics\n"
                f"  Data dir:  {data_dir}\n"
                f"  Database:  {database}\n"
                f"  OIDC:      {settings.public_base_url}/realms/{OPERATOR_REALM}\n"
            )
            if operator is not None:
                # Shown once, on the start that created the operator; also kept (0600) in
                # the data dir. Printed to the terminal only, never to the logs.
                typer.echo(
                    f"  First operator: {operator.email}\n"
                    f"  Password:       {operator.password}\n"
                    f"  (also in {data_dir / CREDENTIALS_FILE})"
                )
            typer.echo("Press Ctrl-C to stop.\n")
            collect_once_ready()
            if demo:
                start_demo(data_dir, settings.public_base_url)

        # Lets `plexica tenant ...` and `plexica migrate` reach this instance's database.
        assert settings.database_url is not None
        runtime.write(
            data_dir, database_url=str(settings.database_url), url=settings.public_base_url
        )
        try:
            serve(edge, settings.host, settings.port, settings.shutdown_grace_seconds, banner)
        finally:
            runtime.remove(data_dir)
    finally:
        if pg is not None:
            pg.stop()
            log.info("embedded_postgres_stopped")


def _apps(settings: Settings, data_dir: Path) -> FastAPI:
    """The core, the mounted plugins and the web shell behind the embedded edge."""
    # The core's event runtime reads the plugins' event buses when it starts serving.
    event_buses: dict[str, EventBus] = {}
    core = create_app(settings, event_buses=event_buses)
    plugins = mount_plugins(core, settings)
    event_buses.update(plugin_event_buses(plugins))
    # The edge asks the core's gateway decision (plugin active included, from its cache).
    web = create_web_app(with_persisted_secret(settings, data_dir))
    return create_edge_app(
        core, web, plugins=plugins, remote=lambda slug: devroutes.lookup(data_dir, slug)
    )


async def _migrate(settings: Settings, data_dir: Path) -> OperatorCredentials | None:
    db = Database(settings.sqlalchemy_url, pool_size=2)
    try:
        with _phase("platform_migrations"):
            await upgrade_platform(db)
        if settings.keycloak_url is None:
            with _phase("signing_keys"):
                await sealed.prepare(db)  # a wrong key stops start-up here; plaintext sealed
        with _phase("tenant_migrations"):
            result = await migrate_fleet(db, concurrency=2)
        if not result.ok:
            log.error("tenant_migration_failed", **result.as_dict())
        with _phase("shipped_plugins"):
            await register_shipped_plugins(db)
        if settings.keycloak_url is not None:
            return None
        operator = await bootstrap(db, settings.public_base_url, settings.operator_email, data_dir)
        await sync_sign_in_urls(db, settings.public_base_url)
        return operator
    finally:
        await db.dispose()


def collect_once_ready() -> None:
    """Start-up ran without the cyclic GC (plexica.cli.entry): collect its garbage once, keep
    what it built out of every later collection, and turn the GC back on."""
    gc.collect()
    gc.freeze()
    gc.enable()


def start_demo(data_dir: Path, url: str) -> None:
    """The demo tenant, made beside the serving platform (it talks to it like a user)."""
    import threading

    from plexica.cli.demo import run_demo

    threading.Thread(target=run_demo, args=(data_dir, url), name="demo", daemon=True).start()


async def sync_sign_in_urls(db: Database, public_url: str) -> None:
    """Every realm's web client accepts the callback at this start's public URL (ADR 0131)."""
    from plexica.identity.service import sync_web_callbacks

    async with db.session() as session:
        updated = await sync_web_callbacks(session, public_url)
    if updated:
        log.info("sign_in_urls_synced", realms=updated, public_url=public_url)
