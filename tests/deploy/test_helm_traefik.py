"""The chart's Traefik static settings, run by the real Traefik binary: the header budget of
ADR 0084 holds at the chart's entry point (Traefik ignores command-line flags once it reads a
configuration file, so the budget lives in the chart's traefik.yml, not in args)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from deploy import k8s_render
from plexica.kit.ports import free_port
from tests.deploy.conftest import DEPLOY, load_yaml

TRAEFIK = Path(sys.executable).with_name("traefik")


def chart_gateway_files() -> dict[str, str]:
    docs = k8s_render.documents(k8s_render.render("values-self-hosted.yaml"))
    (cm,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "plexica-gateway"
    ]
    return dict(cm["data"])


def test_chart_and_compose_traefik_share_the_header_budget() -> None:
    chart = yaml.safe_load(chart_gateway_files()["traefik.yml"])
    committed = load_yaml(DEPLOY / "traefik" / "traefik.yml")
    budget = committed["entryPoints"]["web"]["http"]["maxHeaderBytes"]
    assert budget == 32768
    assert chart["entryPoints"]["web"]["http"]["maxHeaderBytes"] == budget


@pytest.fixture(scope="module")
def chart_traefik(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Traefik with the chart's traefik.yml and routes (addresses moved to loopback)."""
    work = tmp_path_factory.mktemp("chart-traefik")
    files = chart_gateway_files()
    static = yaml.safe_load(files["traefik.yml"])
    web, admin = free_port(), free_port()
    static["entryPoints"]["web"]["address"] = f"127.0.0.1:{web}"
    static["entryPoints"]["traefik"]["address"] = f"127.0.0.1:{admin}"
    (work / "dynamic").mkdir()
    (work / "dynamic" / "plexica.yml").write_text(files["plexica.yml"])
    static["providers"]["file"]["directory"] = str(work / "dynamic")
    (work / "traefik.yml").write_text(yaml.safe_dump(static))
    log = (work / "traefik.log").open("w")
    proc = subprocess.Popen(
        [str(TRAEFIK), f"--configFile={work / 'traefik.yml'}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{admin}/ping", timeout=1).text == "OK":
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (work / "traefik.log").read_text()
            assert time.monotonic() < deadline, "traefik did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{web}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_chart_traefik_refuses_oversized_headers(chart_traefik: str) -> None:
    small = httpx.get(chart_traefik + "/", headers={"X-Pad": "a" * 8192}, timeout=5)
    big = httpx.get(chart_traefik + "/", headers={"X-Pad": "a" * 65536}, timeout=5)
    assert small.status_code != 431
    assert big.status_code == 431
