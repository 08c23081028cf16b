"""``plexica plugin dev``: one plugin served as its own process, restarted when its files change.

The plugin runs in a child process (uvicorn, its app factory) so that a restart loads the edited
code from scratch and a broken edit only kills the child: the loop reports it and waits for the
next change. The child gets the plugin's own database login and never the platform's.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
import watchfiles

from plexica.plugins.loader import PluginNotFoundError, find_plugin
from plexica_sdk.manifest import MANIFEST_FILE, Manifest, ManifestError, load_manifest

# Files whose change restarts the plugin: code, templates, manifest, migrations, assets.
WATCHED_SUFFIXES = (".py", ".yaml", ".yml", ".toml", ".sql", ".html", ".jinja", ".j2", ".json")
ENTRY_POINT_GROUP = "plexica.plugins"


class DevError(Exception):
    """The plugin cannot be found or started; the message says why, in one line."""


@dataclass(frozen=True)
class PluginSource:
    root: Path
    manifest: Manifest
    factory: str
    python_path: Path | None

    @property
    def plugin_id(self) -> str:
        return self.manifest.id


def find_source(target: str) -> PluginSource:
    """A plugin's folder (with ``plexica-plugin.yaml`` and a ``pyproject.toml`` naming its
    ``plexica.plugins`` entry point), or the slug of an installed plugin distribution."""
    path = Path(target)
    if path.exists():
        root = (path if path.is_dir() else path.parent).resolve()
        manifest = _manifest(root)
        factory = _factory_from_pyproject(root, manifest.id)
        src = root / "src"
        return PluginSource(root, manifest, factory, src if src.is_dir() else root)
    try:
        ep = find_plugin(target)
    except PluginNotFoundError as exc:
        raise DevError(f"{target!r} is neither a folder nor an installed plugin: {exc}") from None
    spec = importlib.util.find_spec(ep.module.split(".")[0])
    if spec is None or not spec.submodule_search_locations:
        raise DevError(f"cannot locate the package of plugin {target!r}")
    package = Path(next(iter(spec.submodule_search_locations))).resolve()
    for candidate in (package, package.parent, package.parent.parent):
        if (candidate / MANIFEST_FILE).exists():
            return PluginSource(candidate, _manifest(candidate), ep.value, None)
    raise DevError(f"no {MANIFEST_FILE} found near {package}")


def _manifest(root: Path) -> Manifest:
    try:
        return load_manifest(root)
    except ManifestError as exc:
        raise DevError(str(exc)) from None


def _factory_from_pyproject(root: Path, plugin_id: str) -> str:
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DevError(f"cannot read {root / 'pyproject.toml'}: {exc}") from None
    eps = data.get("project", {}).get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
    factory = eps.get(plugin_id)
    if not isinstance(factory, str):
        raise DevError(
            f'{root / "pyproject.toml"} has no [project.entry-points."{ENTRY_POINT_GROUP}"]'
            f" {plugin_id} = ..."
        )
    return factory


def child_env(
    base: Mapping[str, str], source: PluginSource, extra: Mapping[str, str]
) -> dict[str, str]:
    """The child's environment: the plugin's own ``PLEXICA_PLUGIN_*`` settings, none of the
    platform's (no ``PLEXICA_DATABASE_URL``, no admin secrets)."""
    env = {
        k: v
        for k, v in base.items()
        if not k.startswith("PLEXICA_") or k.startswith("PLEXICA_PLUGIN_")
    }
    env.update(extra)
    if source.python_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(source.python_path), base.get("PYTHONPATH", "")) if p
        )
    return env


def _watched(change: watchfiles.Change, path: str) -> bool:
    return path.endswith(WATCHED_SUFFIXES) and watchfiles.DefaultFilter()(change, path)


class ForkServer:
    """The ``devfork`` process: forks a fresh child per load with the libraries preloaded."""

    def __init__(self, source: PluginSource, port: int, env: Mapping[str, str]) -> None:
        self._read, write = os.pipe()
        os.set_blocking(self._read, False)
        command = [sys.executable, "-m", "plexica.plugins.devfork", source.factory]
        self.proc = subprocess.Popen(
            [*command, "127.0.0.1", str(port), str(write)],
            stdin=subprocess.PIPE,
            env=dict(env),
            cwd=source.root,
            pass_fds=(write,),
        )
        os.close(write)
        self._buffer = b""
        self.exits: dict[int, int] = {}
        self.pids: list[int] = []

    def _pump(self) -> None:
        try:
            while chunk := os.read(self._read, 4096):
                self._buffer += chunk
        except BlockingIOError:
            pass
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            kind, *values = line.decode().split()
            if kind == "pid":
                self.pids.append(int(values[0]))
            elif kind == "exit":
                self.exits[int(values[0])] = int(values[1])

    def spawn(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is not None or self.proc.stdin is None:
            raise DevError(f"the fork server stopped (exit code {self.proc.returncode})")
        known = len(self.pids)
        self.proc.stdin.write(b"spawn\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while len(self.pids) == known:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise DevError("the fork server did not start the plugin")
            time.sleep(0.02)
            self._pump()
        return self.pids[-1]

    def exit_code(self, pid: int) -> int | None:
        self._pump()
        return self.exits.get(pid)

    def terminate(self, pid: int, timeout: float = 10.0) -> None:
        if self.exit_code(pid) is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.exit_code(pid) is None and self.proc.poll() is None:
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline += timeout
            time.sleep(0.02)

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._read)


class DevRunner:
    """Runs the plugin's child process and restarts it on every change under its folder."""

    def __init__(
        self,
        source: PluginSource,
        port: int,
        env: Mapping[str, str],
        *,
        say: Callable[[str], None],
        on_ready: Callable[[], None] | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.source = source
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        # Each load compiles the sources again: a cached .pyc of an edit made within the same
        # second and of the same size would otherwise be served.
        self.env = {**env, "PYTHONDONTWRITEBYTECODE": "1"}
        self.say = say
        self.on_ready = on_ready
        self.ready_timeout = ready_timeout
        self.forks: ForkServer | None = None
        self.pid: int | None = None
        self.stopping = threading.Event()
        self.watching = threading.Event()
        self.reported_exit = False
        self.synced = False

    def _exit_code(self) -> int | None:
        if self.forks is None or self.pid is None:
            return None
        return self.forks.exit_code(self.pid)

    def start(self, *, sync: bool = True) -> bool:
        """Start the child and wait until it answers ready (True) or exits (False)."""
        started = time.monotonic()
        if self.forks is not None and self.forks.proc.poll() is not None:
            self.say(f"fork server stopped ({self.forks.proc.returncode}); restarting it")
            self.forks.close()
            self.forks = None
        if self.forks is None:
            self.forks = ForkServer(self.source, self.port, self.env)
        self.pid = self.forks.spawn()
        self.reported_exit = False
        if not self._wait_ready():
            self._report_exit()
            return False
        self.say(
            f"{self.source.plugin_id} is serving at {self.url}"
            f" (ready in {time.monotonic() - started:.1f} s)"
        )
        if self.on_ready is not None and (sync or not self.synced):
            self.on_ready()
            self.synced = True
        return True

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.ready_timeout
        with httpx.Client(base_url=self.url, timeout=1.0) as http:
            while time.monotonic() < deadline and not self.stopping.is_set():
                if self._exit_code() is not None:
                    return False
                try:
                    if http.get(self.source.manifest.api.readiness_path).status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        if self._exit_code() is None and not self.stopping.is_set():
            self.say(f"{self.source.plugin_id} did not become ready in {self.ready_timeout:g} s")
        return False

    def _report_exit(self) -> None:
        if self.reported_exit or self.stopping.is_set():
            return
        code = self._exit_code()
        if code is None:
            return
        self.reported_exit = True
        self.say(
            f"{self.source.plugin_id} stopped (exit code {code}); fix the error above,"
            " watching for changes"
        )

    def stop(self) -> None:
        pid, self.pid = self.pid, None
        if self.forks is not None and pid is not None:
            self.forks.terminate(pid)

    def reload(self, changes: Iterable[tuple[watchfiles.Change, str]]) -> None:
        names = sorted({os.path.relpath(path, self.source.root) for _, path in changes})
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        self.say(f"changed: {shown}; reloading {self.source.plugin_id}")
        self.stop()
        self.source = self._reread()
        # The catalog and the installation only change with the manifest or the migrations.
        folder = self.source.manifest.migrations
        platform_files = (MANIFEST_FILE, *([os.path.normpath(folder) + os.sep] if folder else []))
        self.start(sync=any(n.startswith(platform_files) for n in names))

    def _reread(self) -> PluginSource:
        # A broken manifest is reported by the child itself; keep the last good one here.
        try:
            return PluginSource(
                self.source.root,
                load_manifest(self.source.root),
                self.source.factory,
                self.source.python_path,
            )
        except ManifestError:
            return self.source

    def _watch(self, changes: queue.Queue[set[tuple[watchfiles.Change, str]]]) -> None:
        for batch in watchfiles.watch(
            self.source.root,
            watch_filter=_watched,
            stop_event=self.stopping,
            rust_timeout=200,
            yield_on_timeout=True,
            debounce=400,
            raise_interrupt=False,
        ):
            self.watching.set()
            if batch:
                changes.put(batch)

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM, restarting the child on every change."""

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.stopping.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        changes: queue.Queue[set[tuple[watchfiles.Change, str]]] = queue.Queue()
        # Watching starts before the first load, so that no edit made meanwhile is missed.
        watcher = threading.Thread(target=self._watch, args=(changes,), daemon=True)
        watcher.start()
        try:
            self.watching.wait(10)
            self.say(f"watching {self.source.root} for changes (Ctrl-C stops)")
            self.start()
            while not self.stopping.is_set():
                try:
                    batch = changes.get(timeout=0.2)
                except queue.Empty:
                    self._report_exit()
                    continue
                while not changes.empty():
                    batch |= changes.get_nowait()
                if not self.stopping.is_set():
                    self.reload(batch)
        finally:
            self.stopping.set()
            self.stop()
            if self.forks is not None:
                self.forks.close()
            watcher.join(timeout=5)
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.say(f"{self.source.plugin_id} stopped")
