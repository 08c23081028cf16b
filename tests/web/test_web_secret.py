"""PLEXICA_WEB_SECRET: every web replica with the same secret shares the sessions of the others
through the database, one with another secret finds none; the embedded mode keeps a generated
secret in its data directory; a short secret is refused at start."""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from plexica.identity.client import _FormParser
from plexica.settings import Settings, SettingsError, load_settings
from plexica.web.app import create_web_app
from plexica.web.session import (
    SECRET_FILE,
    SESSION_COOKIE,
    session_key,
    with_persisted_secret,
)
from tests.web.conftest import Operator, Site


def replica(site: Site, secret: str) -> httpx.AsyncClient:
    """One more web shell process (its own app, its own key material from the setting) in front
    of the same platform."""
    settings = site.settings.model_copy(update={"web_secret": SecretStr(secret)})
    app = create_web_app(settings)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=site.url)


async def test_a_session_made_by_one_replica_is_accepted_by_another(
    site: Site, operator: Operator
) -> None:
    secret = "a-shared-secret-of-the-deployment-0123456789"
    one, two = replica(site, secret), replica(site, secret)
    stranger = replica(site, "another-deployment-secret-0123456789abcdef")
    async with one, two, stranger, httpx.AsyncClient(timeout=30.0) as provider:
        start = await one.get("/login/start", params={"operator": "1", "next": "/console/tenants"})
        assert start.status_code == 303
        page = await provider.get(start.headers["location"], follow_redirects=True)
        form = _FormParser()
        form.feed(page.text)
        assert form.action is not None
        signed = await provider.post(
            urljoin(str(page.url), form.action),
            data={**form.fields, "username": operator.email, "password": operator.password},
        )
        callback = urlsplit(signed.headers["location"])
        back = await one.get(f"{callback.path}?{callback.query}")
        assert back.status_code == 303, back.text
        assert back.headers["location"] == "/console/tenants"
        cookie = one.cookies[SESSION_COOKIE]
        two.cookies.set(SESSION_COOKIE, cookie)
        seen = await two.get("/console/tenants")
        assert seen.status_code == 200, seen.text
        assert "<h1>Tenants</h1>" in seen.text
        stranger.cookies.set(SESSION_COOKIE, cookie)
        refused = await stranger.get("/console/tenants")
        assert refused.status_code == 303
        assert refused.headers["location"].startswith("/login")


def test_plexica_up_keeps_one_generated_secret_in_its_data_dir(tmp_path: Path) -> None:
    base = Settings(data_dir=tmp_path)
    first = with_persisted_secret(base, tmp_path)
    again = with_persisted_secret(base, tmp_path)
    assert first.web_secret is not None
    assert session_key(first) == session_key(again)
    stored = tmp_path / SECRET_FILE
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert len(stored.read_text()) >= 32
    elsewhere = with_persisted_secret(base, tmp_path / "other")
    assert session_key(elsewhere) != session_key(first)
    # A configured secret wins, and nothing is written for it.
    configured = Settings(data_dir=tmp_path / "set", web_secret=SecretStr("c" * 40))
    assert with_persisted_secret(configured, tmp_path / "set") is configured
    assert not (tmp_path / "set" / SECRET_FILE).exists()


def test_a_short_secret_is_a_clear_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXICA_WEB_SECRET", "too-short")
    with pytest.raises(SettingsError, match=r"PLEXICA_WEB_SECRET is too short: use at least 32"):
        load_settings()
