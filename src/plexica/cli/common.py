"""Helpers shared by the CLI commands."""

from __future__ import annotations

from pathlib import Path

import typer

from plexica.cli import runtime
from plexica.identity.custody import install_from, with_found_key
from plexica.settings import Settings, SettingsError, load_settings


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def settings_or_exit(service: str, **overrides: object) -> Settings:
    try:
        return load_settings(service=service, **overrides)
    except SettingsError as exc:
        raise fail(str(exc)) from None


def database_settings(command: str = "cli", data_dir: Path | None = None) -> Settings:
    """Settings with a database: PLEXICA_DATABASE_URL, else that of a running ``plexica up``."""
    overrides: dict[str, object] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    settings = settings_or_exit(command, **overrides)
    # The realms' keys are sealed with PLEXICA_KEY_ENCRYPTION_KEY, or `plexica up`'s own key.
    settings = with_found_key(settings, settings.data_dir.expanduser())
    install_from(settings)
    if settings.database_url is not None:
        return settings
    running = runtime.read(settings.data_dir.expanduser())
    if running is None:
        raise fail(
            "no database: set PLEXICA_DATABASE_URL, or start `plexica up`"
            f" (no running instance found in {settings.data_dir})"
        )
    updated = settings.model_copy(update={"database_url": running["database_url"]})
    updated.__dict__.pop("sqlalchemy_url", None)
    return updated
