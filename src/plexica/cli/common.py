"""Helpers shared by the CLI commands, and the one way every command finds the platform.

Only ``typer`` and the standard library are imported here: every module of the CLI imports this
one, and ``plexica --help`` must stay quick (the settings, the database and the web stack are
imported when a command runs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from plexica.settings import Settings

# Exit codes (README "Exit codes"): 0 done; 1 the platform refused or the work failed;
# 2 bad input, or no platform to talk to.
EXIT_REFUSED = 1
EXIT_USAGE = 2
START_HINT = "start one with `./plexica up` (in another terminal)"

DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="PLEXICA_DATA_DIR",
        show_envvar=True,
        help="Data directory of the running `plexica up` (default: the per-user one).",
    ),
]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="PLEXICA_URL",
        show_envvar=True,
        help="The platform's public URL (default: the running `plexica up`'s).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def settings_or_exit(service: str, **overrides: object) -> Settings:
    from plexica.settings import SettingsError, load_settings

    try:
        return load_settings(service=service, **overrides)
    except SettingsError as exc:
        raise fail(str(exc)) from None


def checked_url(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail(f"--url {url!r} is not an http(s) URL such as http://127.0.0.1:8000")
    return url.rstrip("/")


def platform_settings(
    command: str = "cli",
    data_dir: Path | None = None,
    url: str | None = None,
    *,
    database: bool = True,
) -> Settings:
    """Settings that reach the platform (ADR 0132), the same way for every command:

    - the database: ``PLEXICA_DATABASE_URL``, else the running ``plexica up`` of the data dir
      (``--data-dir``, ``PLEXICA_DATA_DIR``, else the per-user default);
    - the public URL (issuers, sign-in callbacks, tokens): ``--url``/``PLEXICA_URL``, else
      ``PLEXICA_PUBLIC_URL``, else the running ``plexica up``'s.

    With ``database=False`` a URL is enough (e.g. ``plexica token --url ...``).
    """
    from plexica.cli import runtime
    from plexica.identity.custody import install_from, with_found_key

    overrides: dict[str, object] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if url:
        overrides["public_url"] = checked_url(url)
    settings = settings_or_exit(command, **overrides)
    # The realms' keys are sealed with PLEXICA_KEY_ENCRYPTION_KEY, or `plexica up`'s own key.
    settings = with_found_key(settings, settings.data_dir.expanduser())
    install_from(settings)
    folder = settings.data_dir.expanduser()
    running = runtime.read(folder)
    update: dict[str, Any] = {}
    # The running `up`'s URL goes with its database: with PLEXICA_DATABASE_URL set, an `up`
    # found in the default folder may be another platform.
    same = settings.database_url is None or str(settings.database_url) == running_db(running)
    if running is not None and settings.public_url is None and same:
        update["public_url"] = str(running["url"])
    if settings.database_url is None:
        if running is not None:
            update["database_url"] = running["database_url"]
        elif database:
            raise fail(no_platform(folder, url))
    if not update:
        return settings
    return settings.model_copy(update=update)


def running_db(running: dict[str, Any] | None) -> str | None:
    return str(running["database_url"]) if running is not None else None


def no_platform(folder: Path, url: str | None) -> str:
    if url or os.environ.get("PLEXICA_TOKEN"):
        return (
            # migrate, backup, restore, keys, plugin settings/credentials/upgrade-all/testdb
            # (ADR 0165, 0166)
            "this is an operator-DB command (it works on the database, not through the API):"
            f" no `plexica up` runs in {folder}; set PLEXICA_DATABASE_URL to the deployment's"
            " database (its plexica.env), or run it beside `plexica up`"
        )
    if not folder.exists():
        return (
            f"no Plexica data directory at {folder}: {START_HINT},"
            " or pass the --data-dir it printed"
        )
    return (
        f"no running Plexica in {folder}: {START_HINT}, or pass --data-dir,"
        " or set PLEXICA_DATABASE_URL"
    )


def database_settings(command: str = "cli", data_dir: Path | None = None) -> Settings:
    """Settings with a database (kept for callers that take no URL)."""
    return platform_settings(command, data_dir)


# --- output for people (tables, key-value blocks) and for scripts (--json) -------------------


def _cell(value: object) -> str:
    if value is None:
        return "-"
    text = getattr(value, "value", value)  # enums show their value
    return str(text).replace("\n", " ")


def table(rows: list[dict[str, Any]], columns: list[str], empty: str = "nothing to show") -> None:
    """Rows as an aligned table under upper-case headers."""
    if not rows:
        typer.echo(empty)
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))
    typer.echo(line.rstrip())
    for r in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def key_values(pairs: list[tuple[str, object]]) -> None:
    """``key:  value`` lines with the values aligned."""
    width = max((len(k) for k, _ in pairs), default=0) + 1
    for key, value in pairs:
        typer.echo(f"{key + ':':<{width}}  {_cell(value)}")


def echo_fields(value: dict[str, Any], as_json: bool, shown: Callable[[Any], object]) -> None:
    """One JSON object with --json, else a ``key: value`` line per field, the value as ``shown``."""
    if as_json:
        typer.echo(json.dumps(value))
        return
    for key, item in value.items():
        typer.echo(f"{key}: {shown(item)}")


def to_jsonable(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    if isinstance(value, list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(to_jsonable(value), default=str))
