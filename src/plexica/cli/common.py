"""Helpers shared by the CLI commands."""

from __future__ import annotations

import typer

from plexica.settings import Settings, SettingsError, load_settings


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def settings_or_exit(service: str, **overrides: object) -> Settings:
    try:
        return load_settings(service=service, **overrides)
    except SettingsError as exc:
        raise fail(str(exc)) from None
