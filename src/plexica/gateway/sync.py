"""Keeps a data plane's configuration file in step with the plugin registry (ADR 0083).

A reconcile loop, not an event handler: every ``interval`` seconds it reads which plugins are
installed somewhere on the platform, renders the configuration and, when the text differs from
the file, writes it whole and renames it over the old one. Traefik's file provider (``watch:
true``) then reloads. A missed event, a restart of the watcher or a database blip cannot leave
the file stale for longer than one successful pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import httpx
import structlog
from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError

from plexica.gateway.config import deployed
from plexica.kit.db import Database
from plexica.plugins import service as plugins

log = structlog.get_logger("plexica.gateway.sync")
CONFIG_WRITES = Counter(
    "plexica_gateway_config_writes_total", "Gateway configuration files rewritten."
)
CONFIG_FAILURES = Counter(
    "plexica_gateway_config_failures_total", "Passes that could not read the plugin registry."
)

# The routed plugins' URLs and their upstream timeouts (seconds) to the configuration's text.
Render = Callable[[Mapping[str, str], Mapping[str, float]], str]
# The plugins to route (installed somewhere) and their upstream timeouts, from the registry.
Registry = Callable[[], Awaitable[tuple[list[str], dict[str, float]]]]
ROUTES_PATH = "/v1/gateway/routes"


def database_registry(db: Database) -> Registry:
    """The registry read from the platform database: the core's side of ``ROUTES_PATH``."""

    async def read() -> tuple[list[str], dict[str, float]]:
        async with db.session() as session:
            return await plugins.routed_ids(session), await plugins.upstream_timeouts(session)

    return read


class RegistryError(RuntimeError):
    """The core answered the routes request with something else than the routes."""


def core_registry(http: httpx.AsyncClient) -> Registry:
    """The registry asked of the core (``ROUTES_PATH``): the watcher beside the gateway holds
    no database login (ADR 0213). ``http`` has the core's base URL."""

    async def read() -> tuple[list[str], dict[str, float]]:
        r = await http.get(ROUTES_PATH)
        if r.status_code != 200:
            raise RegistryError(f"{ROUTES_PATH} answered {r.status_code}")
        try:
            body = r.json()
            routed = [str(p) for p in body["plugins"]]
            timeouts = {str(k): float(v) for k, v in body["timeouts"].items()}
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise RegistryError(f"{ROUTES_PATH} answered an unexpected body") from exc
        return routed, timeouts

    return read


def write_atomically(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename, so a
    watcher never reads half a file; False (and nothing written) when the file already says it.
    The temporary name ends in ``.tmp``: Traefik's directory provider ignores it."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


class ConfigSync:
    def __init__(
        self,
        registry: Registry,
        urls: Mapping[str, object],
        render: Render,
        output: Path,
        interval: float = 1.0,
    ) -> None:
        self.registry = registry
        self.urls = urls
        self.render = render
        self.output = output
        self.interval = interval
        self.missing: list[str] = []
        self.written = False

    async def once(self) -> bool:
        """One pass: True when the file was rewritten."""
        installed, timeouts = await self.registry()
        routes = deployed(installed, self.urls)
        changed = write_atomically(self.output, self.render(routes, timeouts))
        if changed or not self.written:
            CONFIG_WRITES.inc(int(changed))
            event = "gateway_config_written" if changed else "gateway_config_current"
            log.info(event, path=str(self.output), plugins=sorted(routes))
        missing = sorted(set(installed) - set(routes))
        if missing and missing != self.missing:
            # Installed but this gateway has no address for it: its requests stay 404 here.
            log.warning("gateway_plugins_without_url", plugins=missing)
        self.missing = missing
        self.written = True
        return changed

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.once()
            except (OSError, SQLAlchemyError, httpx.HTTPError, RegistryError) as exc:
                # Keep serving the last good file: routes of installed plugins stay up.
                CONFIG_FAILURES.inc()
                log.warning("gateway_config_refresh_failed", error=str(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
