"""pytest plugin: one session directory for the real servers, stopped at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.harness.servers import SESSION_ENV, stop_all


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if _is_controller(config) and SESSION_ENV not in os.environ:
        base = Path(tempfile.mkdtemp(prefix="plexica-test-"))
        base.chmod(0o755)
        os.environ[SESSION_ENV] = str(base)
        config.stash[_OWNED] = base


def pytest_unconfigure(config: pytest.Config) -> None:
    base = config.stash.get(_OWNED, None)
    if base is not None:
        stop_all(base)
        shutil.rmtree(base, ignore_errors=True)


_OWNED = pytest.StashKey[Path]()
