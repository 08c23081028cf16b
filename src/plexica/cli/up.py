"""``plexica up``: the whole platform on one port, with an embedded PostgreSQL by default."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import structlog
import typer

from plexica import __version__
from plexica.cli import runtime
from plexica.cli.common import fail, settings_or_exit
from plexica.identity import custody
from plexica.identity.custody import KeyCustodyError, with_persisted_key
from plexica.identity.names import CREDENTIALS_FILE, OPERATOR_REALM
from plexica.kit.datadir import DataDir, DataDirBusyError
from plexica.kit.pgserver import EmbeddedPostgres, EmbeddedPostgresError
from plexica.kit.ports import PortInUseError, ensure_port_free
from plexica.settings import Settings
from plexica_sdk.logs import configure_logging

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
    starting: Future[None] | None = None
    if settings.database_url is None:
        pg = EmbeddedPostgres(data_dir)
        # initdb and pg_ctl run in their own processes: the web stack imports meanwhile.
        pool = ThreadPoolExecutor(1, thread_name_prefix="embedded-postgres")
        starting = pool.submit(pg.start)
        pool.shutdown(wait=False)
    try:
        with _phase("platform_imports"):
            from plexica.cli import assembly
        if pg is not None and starting is not None:
            settings = _as_owner(settings, pg, starting)
        # The realms' private keys are sealed with it (ADR 0150): kept in the data dir when unset.
        with _phase("key_loading"):
            settings = with_persisted_key(settings, data_dir)
            custody.install_from(settings)
        try:
            with _phase("migrations_and_bootstrap"):
                operator = asyncio.run(assembly.prepare_database(settings, data_dir, _phase))
        except KeyCustodyError as exc:
            raise fail(str(exc)) from None
        with _phase("apps_and_plugin_mounting"):
            edge = assembly.build_edge(settings, data_dir)
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
            assembly.serve_edge(edge, settings, banner)
        finally:
            runtime.remove(data_dir)
    finally:
        if pg is not None:
            if starting is not None:
                _wait_through_interrupts(starting)
            pg.stop()
            log.info("embedded_postgres_stopped")


def _wait_through_interrupts(starting: Future[None]) -> None:
    """A stop waits for a start still running, however often Ctrl-C is pressed meanwhile:
    stopping first would leave the server it then starts running on its own."""
    while True:
        try:
            starting.exception()
        except KeyboardInterrupt:
            continue
        return


def _as_owner(settings: Settings, pg: EmbeddedPostgres, starting: Future[None]) -> Settings:
    """Once the embedded PostgreSQL is up: the settings with the owner's URL (the superuser
    only bootstraps the owner role; everything runs as the owner)."""
    try:
        with _phase("embedded_postgres"):
            starting.result()
            owner_url = pg.owner_url()
    except EmbeddedPostgresError as exc:
        raise fail(f"embedded PostgreSQL did not start: {exc}") from None
    return settings.model_copy(update={"database_url": owner_url})


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
