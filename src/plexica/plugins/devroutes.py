"""Plugins served by ``plexica plugin dev`` beside a running ``plexica up`` (ADR 0134).

The dev loop writes ``<data-dir>/dev-plugins/<id>.json`` (its URL and process id) while it runs;
``up``'s edge routes ``/api/plugins/<id>/`` there when no plugin of that id is mounted in-process,
so the API, the gateway decision and the web shell reach the plugin under development exactly as
they reach a shipped one.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import psutil

FOLDER = "dev-plugins"


def _file(data_dir: Path, plugin_id: str) -> Path:
    return data_dir / FOLDER / f"{plugin_id}.json"


def announce(data_dir: Path, plugin_id: str, url: str) -> Path:
    """Route ``plugin_id`` to ``url`` while this process lives; returns the file to withdraw."""
    path = _file(data_dir, plugin_id)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": url.rstrip("/"), "pid": os.getpid()}))
    os.replace(tmp, path)
    return path


def withdraw(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def lookup(data_dir: Path, plugin_id: str) -> str | None:
    """The URL of ``plugin_id``'s dev server, if a live dev loop announced one."""
    if not plugin_id.replace("-", "").replace("_", "").isalnum():
        return None  # a path segment from a request: never a file name outside the folder
    try:
        data = json.loads(_file(data_dir, plugin_id).read_text())
    except (OSError, ValueError):
        return None
    pid, url = data.get("pid"), data.get("url")
    if not isinstance(pid, int) or not isinstance(url, str) or not psutil.pid_exists(pid):
        return None
    return url
