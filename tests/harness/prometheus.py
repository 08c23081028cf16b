"""A real Prometheus server (Debian's ``prometheus`` package, installed by
scripts/install-system-packages) of one test's own on a free loopback port, with a configuration
the test writes: it scrapes the test's services and answers PromQL through its HTTP API."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from plexica.kit.ports import free_port
from tests.harness.servers import _stop, spawn


class PromQLError(AssertionError):
    """Prometheus refused a query (parse or evaluation error)."""


class PrometheusServer:
    """``with PrometheusServer(workdir, config) as prom:`` starts the server and stops it on the
    way out, also when the block fails; its data and log stay in ``workdir``."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.workdir = workdir
        self.config = config
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        exe = shutil.which("prometheus")
        assert exe, "prometheus missing: scripts/install-system-packages installs it"
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config))
        self.proc = spawn(
            [
                exe, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
            ],
            self.log,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}: {self.logs()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/-/ready", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"prometheus not ready after {timeout}s: {self.logs()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, grace=10)
            self.proc = None

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` (at ``at``, else now) as the API's ``result`` list:
        ``{"metric": {labels}, "value": [time, "value"]}``; a scalar is one unlabelled entry."""
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        answer = httpx.get(self.url + "/api/v1/query", params=params, timeout=30).json()
        if answer.get("status") != "success":
            raise PromQLError(f"{expr}: {answer.get('errorType')}: {answer.get('error')}")
        data = answer["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def targets(self) -> list[dict[str, Any]]:
        answer = httpx.get(self.url + "/api/v1/targets", timeout=30).json()
        return list(answer["data"]["activeTargets"])
