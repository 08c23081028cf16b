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
