"""``plexica up --demo``: a demo tenant with the CRM and Billing and sample data, made once the
platform serves, by the same commands and API calls a user would make (ADR 0130)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import structlog
import typer

DEMO = "demo"
ADMIN = "admin@demo.example"
log = structlog.get_logger("plexica.demo")


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plexica.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _checked(args: list[str], env: dict[str, str]) -> str:
    done = _cli(args, env)
    if done.returncode != 0:
        raise RuntimeError(f"plexica {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def run_demo(data_dir: Path, url: str) -> None:
    """Create (once) the tenant ``demo`` with the CRM and Billing and sample records, give its
    admin a new password, and print where and how to sign in. Never stops the platform."""
    env = {**os.environ, "PLEXICA_DATA_DIR": str(data_dir)}
    try:
        made = _cli(["tenant", "show", DEMO, "--json"], env).returncode != 0
        if made:
            _checked(
                ["tenant", "create", DEMO, "--name", "Demo Company", "--admin-email", ADMIN], env
            )
        listed = json.loads(_checked(["plugin", "list", "--tenant", DEMO, "--json"], env))
        active = {i["plugin_id"] for i in listed if i["status"] == "active"}
        for plugin in ("crm", "billing"):
            if plugin not in active:
                _checked(["plugin", "install", plugin, "--tenant", DEMO], env)
        password = _checked(["user", "reset-password", ADMIN, "--tenant", DEMO], env).strip()
        if made:
            _seed(url, password)
    except Exception as exc:  # noqa: BLE001 - a convenience: the platform keeps serving
        log.warning("demo_failed", error=str(exc))
        typer.secho(f"demo: not created ({exc})", err=True, fg=typer.colors.RED)
        return
    typer.echo(
        f"\nDemo tenant ready: open {url}/ , organisation `{DEMO}`,\n"
        f"  sign in as {ADMIN} with password {password}\n"
    )


def _seed(url: str, password: str) -> None:
    import asyncio

    import httpx

    from plexica.identity.client import password_login
    from plexica.identity.service import issuer_url
    from plexica.kit.provisioning import REALM_PREFIX

    async def seed() -> None:
        async with httpx.AsyncClient(timeout=30.0) as http:
            token = await password_login(
                http, issuer_url(url, REALM_PREFIX + DEMO), ADMIN, password
            )
            auth = {"Authorization": f"Bearer {token['access_token']}"}

            async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
                r = await http.post(f"{url}/api/plugins/{path}", json=body, headers=auth)
                r.raise_for_status()
                out: dict[str, Any] = r.json()
                return out

            acme = await post("crm/v1/companies", {"name": "Acme Corp", "domain": "acme.example"})
            globex = await post("crm/v1/companies", {"name": "Globex", "domain": "globex.example"})
            ada = await post(
                "crm/v1/contacts",
                {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@acme.example",
                 "company_id": acme["id"]},
            )  # fmt: skip
            await post(
                "crm/v1/contacts",
                {"first_name": "Hank", "last_name": "Scorpio", "email": "hank@globex.example",
                 "company_id": globex["id"]},
            )  # fmt: skip
            await post(
                "crm/v1/deals",
                {"title": "Acme: annual licence", "amount": "12000", "company_id": acme["id"],
                 "contact_id": ada["id"]},
            )  # fmt: skip
            pilot = {"title": "Globex: pilot", "amount": "3000", "company_id": globex["id"]}
            await post("crm/v1/deals", pilot)
            customer = {"name": "Acme Corp", "email": "billing@acme.example"}
            await post("billing/v1/customers", {**customer, "crm_company_id": acme["id"]})

    asyncio.run(seed())
