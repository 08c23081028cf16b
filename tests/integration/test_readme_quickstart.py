"""The README's quick start, run as a new user would: its three bash blocks exactly as written
(``./plexica up`` in one process, the rest in bash), the browser steps in real Chromium, and the
contact created there listed through the API by the README's own ``curl``.

The only differences from a user's terminal: ``PLEXICA_DATA_DIR`` is a temporary folder and
``PLEXICA_PORT`` a free port (both named in the README), and ``http://127.0.0.1:8000`` in the
blocks is replaced by that port's URL, so that the test runs beside a real ``plexica up``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

from plexica.kit.ports import free_port
from tests.integration.test_cli import clean_env, data_dir, wait_ready

__all__ = ["data_dir"]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DEFAULT_URL = "http://127.0.0.1:8000"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def quickstart() -> tuple[str, list[str]]:
    """The quick start section's text and its bash blocks, in order."""
    text = README.read_text()
    start = text.index("## Quick start")
    end = text.index("\n## ", start + 1)
    section = text[start:end]
    return section, re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)


def test_the_quick_start_is_three_blocks_and_browser_steps() -> None:
    section, blocks = quickstart()
    assert len(blocks) == 3
    assert blocks[0].strip() == "./plexica up"
    assert "plugin install crm --tenant acme" in blocks[1]
    assert "/api/plugins/crm/v1/contacts" in blocks[2]
    # The browser steps the test takes are the ones the README tells.
    for words in ("`acme`", "**Contacts**", "First name `Ada`", "Last name `Lovelace`",
                  "Email `ada@example.com`", "**Add contact**", f"{DEFAULT_URL}/"):  # fmt: skip
        assert words in section


def _bash(script: str, env: dict[str, str]) -> str:
    r = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, f"{script}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.mark.slow
async def test_readme_quick_start_ends_with_a_contact_listed(
    data_dir: Path, chromium: Browser
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env(PLEXICA_DATA_DIR=str(data_dir), PLEXICA_PORT=str(port))
    up_block, setup_block, api_block = (b.replace(DEFAULT_URL, url) for b in quickstart()[1])
    up = subprocess.Popen(
        ["bash", "-c", up_block],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        await asyncio.to_thread(wait_ready, port, up, 300)
        printed = await asyncio.to_thread(_bash, setup_block, env)
        password = printed.strip().splitlines()[-1]
        assert len(password) >= 16, printed

        page = await (await chromium.new_context()).new_page()
        await page.goto(url + "/")
        await page.get_by_label("Organisation (tenant slug)").fill("acme")
        await page.keyboard.press("Enter")
        await page.fill("input[name=username]", "admin@acme.example")
        await page.fill("input[name=password]", password)
        await page.click("button[type=submit]")
        await page.get_by_role("link", name="Contacts").click()
        await expect(page.get_by_role("heading", name="Contacts")).to_be_visible()
        await page.get_by_label("First name").fill("Ada")
        await page.get_by_label("Last name").fill("Lovelace")
        await page.get_by_label("Email").fill("ada@example.com")
        await page.get_by_role("button", name="Add contact").click()
        await expect(page.get_by_role("status")).to_contain_text("Contact Ada Lovelace added.")

        listed = await asyncio.to_thread(_bash, api_block, {**env, "PLEXICA_PASSWORD": password})
        body = json.loads(listed)
        items = body["items"] if isinstance(body, dict) else body
        assert [(c["first_name"], c["last_name"], c["email"]) for c in items] == [
            ("Ada", "Lovelace", "ada@example.com")
        ]
    finally:
        os.killpg(up.pid, signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
