"""The ``plexica`` CLI run in process against a running topology, as an operator would."""

from __future__ import annotations

from typer.testing import CliRunner

from plexica.cli.main import app as cli


def plexica(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env=env)
    if result.exit_code != 0:
        raise RuntimeError(f"plexica {' '.join(args)}: {result.output}")
    return result.stdout.strip()


def tenant_token(env: dict[str, str], slug: str) -> str:
    """A new tenant and its admin's token (the banner's steps of deploy/local/up)."""
    email = f"admin@{slug}.example"
    plexica(env, "tenant", "create", slug, "--name", slug, "--admin-email", email)
    password = plexica(env, "user", "reset-password", email, "--tenant", slug)
    return plexica(env | {"PLEXICA_PASSWORD": password}, "token", "--tenant", slug, "--user", email)
