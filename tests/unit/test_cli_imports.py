"""``plexica --help`` and ``plexica version`` stay quick: importing the CLI's command tree loads
none of the heavy libraries (they load when a command runs; ADR 0132, bench/cli.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = {
    "asyncio", "sqlalchemy", "fastapi", "starlette", "httpx", "pydantic_settings", "yaml",
    "structlog", "redis", "asyncpg", "alembic", "cryptography",
}  # fmt: skip


def _modules_after(imports: str) -> set[str]:
    """The modules loaded by a new interpreter after ``import {imports}``, with no Plexica or
    OpenTelemetry settings in its environment."""
    probe = f"import json, sys; import {imports}; print(json.dumps(sorted(sys.modules)))"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLEXICA_", "OTEL_"))}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True,
        env=env,
    )  # fmt: skip
    return set(json.loads(out.stdout))


def _packages(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_the_command_tree_imports_no_heavy_library() -> None:
    assert _packages(_modules_after("plexica.cli.main")) & HEAVY == set()


def test_version_answers_before_the_command_tree_loads() -> None:
    probe = (
        "import json, sys; sys.argv = ['plexica', 'version']; "
        "from plexica.cli.entry import main; main(); "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    version, modules = out.stdout.splitlines()
    assert version.count(".") == 2
    assert {"typer", "pydantic", "rich"} & set(json.loads(modules)) == set()


def test_help_documents_the_ways_in_and_the_exit_codes() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "plexica.cli", "--help"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    flat = " ".join(out.split())
    for words in ("PLEXICA_DATA_DIR", "PLEXICA_URL", "PLEXICA_TOKEN", "operator-DB",
                  "Exit codes: 0 done; 1", "2 bad input, no platform"):  # fmt: skip
        assert words in flat, out


def test_up_imports_no_client_of_a_service_it_is_not_configured_for() -> None:
    """Redis (whose client pulls in the OpenTelemetry SDK), the tracing SDK, Kafka, S3 and PDF
    load when configured or used, not for a ``plexica up`` with none of them (issue 21)."""
    loaded = _modules_after("plexica.cli.assembly, plexica_billing.app, plexica_crm.app")
    unused = {"redis", "aiokafka", "aiobotocore", "botocore", "fpdf", "PIL", "playwright"}
    assert _packages(loaded) & unused == set()
    assert sorted(m for m in loaded if m.startswith("opentelemetry.sdk")) == []


def test_up_starts_its_database_before_loading_the_web_stack() -> None:
    """The embedded PostgreSQL starts in its own processes while ``plexica.cli.assembly`` loads
    the web stack, SQLAlchemy and the plugins (issue 21): ``plexica.cli.up`` itself loads none."""
    loaded = _packages(_modules_after("plexica.cli.up"))
    assert loaded & {"fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn"} == set()


def test_up_starts_without_the_cyclic_gc_and_turns_it_back_on_once_ready() -> None:
    probe = (
        "import gc, sys\n"
        "sys.argv = ['plexica', 'up', '--help']\n"
        "from plexica.cli.entry import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(gc.isenabled())\n"
        "from plexica.cli.up import collect_once_ready\n"
        "collect_once_ready()\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.splitlines()[-2:] == ["False", "True True"]
