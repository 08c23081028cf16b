"""``plexica --help`` and ``plexica version`` stay quick: importing the CLI's command tree loads
none of the heavy libraries (they load when a command runs; ADR 0132, bench/cli.py)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = {
    "asyncio", "sqlalchemy", "fastapi", "starlette", "httpx", "pydantic_settings", "yaml",
    "structlog", "redis", "asyncpg", "alembic", "cryptography",
}  # fmt: skip


def test_the_command_tree_imports_no_heavy_library() -> None:
    probe = (
        "import json, sys; import plexica.cli.main; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(json.loads(out.stdout))
    assert loaded & HEAVY == set()


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
