"""``<data-dir>/runtime.json``: how commands reach a running ``plexica up`` (ADR 0034)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import psutil

FILE = "runtime.json"


def write(data_dir: Path, *, database_url: str, url: str) -> Path:
    path = data_dir / FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"database_url": database_url, "url": url, "pid": os.getpid()}, f)
    os.replace(tmp, path)
    return path


def remove(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / FILE).unlink()


def read(data_dir: Path) -> dict[str, Any] | None:
    """The runtime of a live ``plexica up`` in ``data_dir``; None if none is running."""
    try:
        data = json.loads((data_dir / FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("database_url"), str):
        return None
    pid = data.get("pid")
    if not isinstance(pid, int) or not psutil.pid_exists(pid):
        return None
    return data
