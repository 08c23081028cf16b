"""Session lifetime: the access token is refreshed through the provider's token endpoint when it
expires; a session whose tokens are refused returns to sign-in and then to the page."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx

from plexica.web.app import Shell
from plexica.web.session import SESSION_COOKIE, WebSession
from tests.web.conftest import Operator, Site, csrf_of, sign_in


def _shell(site: Site) -> Shell:
    shell: Shell = site.web.state.shell
    return shell


def _session(site: Site, browser: httpx.AsyncClient) -> WebSession:
    shell = _shell(site)
    data = shell.signer.loads(browser.cookies.get(SESSION_COOKIE), 3600)
    assert data is not None
    session = WebSession.from_dict(data)
    assert session is not None
    return session


def _replace(site: Site, browser: httpx.AsyncClient, session: WebSession) -> None:
    browser.cookies.delete(SESSION_COOKIE)
    value = _shell(site).signer.dumps(session.to_dict())
    browser.cookies.set(SESSION_COOKIE, value, domain="127.0.0.1", path="/")


async def test_expired_access_token_is_refreshed(
    site: Site, browser: httpx.AsyncClient, operator: Operator
) -> None:
    await sign_in(browser, "/login/start?operator=1", operator.email, operator.password)
    before = _session(site, browser)
    assert len(browser.cookies[SESSION_COOKIE]) < 4000  # fits a browser's cookie limit
    before.expires_at = 0
    _replace(site, browser, before)
    page = await browser.get("/console/tenants")
    assert page.status_code == 200
    after = _session(site, browser)
    assert after.access_token != before.access_token
    assert after.expires_at > before.expires_at
    assert after.csrf == before.csrf


async def test_refused_session_returns_to_login_then_to_the_page(
    site: Site, browser: httpx.AsyncClient, operator: Operator
) -> None:
    await sign_in(browser, "/login/start?operator=1", operator.email, operator.password)
    dead = _session(site, browser)
    dead.expires_at = 0
    dead.refresh_token = "not-a-refresh-token"
    _replace(site, browser, dead)
    page = await browser.get("/console/health")
    assert page.status_code == 303
    login = page.headers["location"]
    assert parse_qs(urlsplit(login).query)["next"] == ["/console/health"]
    back = await sign_in(
        browser, "/login/start?operator=1&next=/console/health", operator.email, operator.password
    )
    assert back.headers["location"] == "/console/health"
    assert (await browser.get("/console/health")).status_code == 200


async def test_tampered_cookie_is_no_session(browser: httpx.AsyncClient) -> None:
    browser.cookies.set(SESSION_COOKIE, "eyJ2Ijp7fX0.forged")
    answer = await browser.get("/console/tenants")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login")


async def test_callback_without_a_pending_login_is_refused(browser: httpx.AsyncClient) -> None:
    answer = await browser.get("/auth/callback", params={"code": "x", "state": "y"})
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?error=")
    assert SESSION_COOKIE not in browser.cookies


async def test_next_is_never_an_open_redirect(browser: httpx.AsyncClient) -> None:
    page = await browser.get("/login", params={"next": "//evil.example/x"})
    assert 'name="next" value="/"' in page.text


async def test_sign_out_revokes_the_refresh_token(
    site: Site, browser: httpx.AsyncClient, operator: Operator
) -> None:
    await sign_in(browser, "/login/start?operator=1", operator.email, operator.password)
    before = _session(site, browser)
    page = await browser.get("/console/tenants")
    out = await browser.post("/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303
    assert out.headers["location"] == "/login"
    # The old cookie, replayed, cannot be refreshed any more: back to sign-in.
    before.expires_at = 0
    _replace(site, browser, before)
    again = await browser.get("/console/tenants")
    assert again.status_code == 303
    assert again.headers["location"].startswith("/login")
