"""The embedded mode's data directory, held by one process at a time."""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
from pathlib import Path
from types import TracebackType

import platformdirs


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("plexica", appauthor=False))


def persisted_secret(path: Path) -> str:
    """A secret kept in the data directory (mode 0600): read it, or make it on first use (two
    processes starting at once agree: only one creates the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    value = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


class DataDirBusyError(RuntimeError):
    pass


class DataDir:
    """An exclusive ``flock`` on ``<dir>/plexica.lock``; the kernel frees it if we die."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser().resolve()
        self._fd: int | None = None

    def __enter__(self) -> DataDir:
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / "plexica.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DataDirBusyError(
                f"another Plexica instance (pid {holder}) holds the data directory {self.path}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def reset(self) -> None:
        """Remove everything in the directory but the lock we hold."""
        for child in self.path.iterdir():
            if child.name == "plexica.lock":
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
