"""Session lifetime: the access token is refreshed through the provider's token endpoint when it
expires; a session whose tokens are refused returns to sign-in and then to the page."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import httpx

from plexica.web.session import SESSION_COOKIE, WebSession
from plexica.web.store import SessionStore
from tests.web.conftest import Operator, Site, csrf_of, sign_in


async def _session(sessions: SessionStore, browser: httpx.AsyncClient) -> WebSession:
    session = await sessions.load(browser.cookies.get(SESSION_COOKIE))
    assert session is not None
    return session


async def _expire_access(sessions: SessionStore, session: WebSession) -> None:
    """The stored access token is made due for a refresh (the session row itself lives on)."""
    session.expires_at = 0
    assert await sessions.save_tokens(session)


async def test_expired_access_token_is_refreshed(
    sessions: SessionStore, browser: httpx.AsyncClient, operator: Operator
) -> None:
    await sign_in(browser, "/login/start?operator=1", operator.email, operator.password)
    cookie = browser.cookies[SESSION_COOKIE]
    before = await _session(sessions, browser)
    await _expire_access(sessions, before)
    page = await browser.get("/console/tenants")
    assert page.status_code == 200
    after = await _session(sessions, browser)
    assert after.access_token != before.access_token
    assert after.expires_at > 0
    assert (after.csrf, after.id) == (before.csrf, before.id)
    # The refresh changed the stored session, not the cookie.
    assert browser.cookies[SESSION_COOKIE] == cookie


async def test_requests_at_expiry_refresh_once_and_keep_the_session(
    sessions: SessionStore, browser: httpx.AsyncClient, operator: Operator
) -> None:
    """The provider ends a whole sign-in session when a refresh token comes back twice: pages
    loaded side by side at expiry (tabs, replicas) must not both use it."""
    await sign_in(browser, "/login/start?operator=1", operator.email, operator.password)
    before = await _session(sessions, browser)
    await _expire_access(sessions, before)
    pages = await asyncio.gather(
        *(browser.get(p) for p in ("/console/tenants", "/console/health", "/sessions") * 2)
    )
    assert [p.status_code for p in pages] == [200] * 6
    after = await _session(sessions, browser)
    assert after.refresh_token != before.refresh_token
    assert (await browser.get("/console/tenants")).status_code == 200


async def test_refused_session_returns_to_login_then_to_the_page(
    sessions: SessionStore, browser: httpx.AsyncClient, operator: Operator
) -> None:
    await sign_in(browser, "/login/start?operator=1", operator.email, operator.password)
    dead = await _session(sessions, browser)
    dead.refresh_token = "not-a-refresh-token"
    await _expire_access(sessions, dead)
    page = await browser.get("/console/health")
    assert page.status_code == 303
    login = page.headers["location"]
    assert parse_qs(urlsplit(login).query)["next"] == ["/console/health"]
    back = await sign_in(
        browser, "/login/start?operator=1&next=/console/health", operator.email, operator.password
    )
    assert back.headers["location"] == "/console/health"
    assert (await browser.get("/console/health")).status_code == 200


async def test_an_unknown_cookie_is_no_session(browser: httpx.AsyncClient) -> None:
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


async def test_sign_out_ends_the_session_and_the_providers(
    site: Site, sessions: SessionStore, browser: httpx.AsyncClient, operator: Operator
) -> None:
    await sign_in(browser, "/login/start?operator=1", operator.email, operator.password)
    cookie = browser.cookies[SESSION_COOKIE]
    before = await _session(sessions, browser)
    page = await browser.get("/console/tenants")
    out = await browser.post("/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303
    # The row is gone before the browser leaves for the provider's end-session endpoint.
    assert await sessions.load(cookie) is None
    end = urlsplit(out.headers["location"])
    assert end.path == "/realms/plexica-platform/protocol/openid-connect/logout"
    query = parse_qs(end.query)
    assert query["id_token_hint"] == [before.id_token]
    assert query["post_logout_redirect_uri"] == [f"{site.url}/auth/callback"]
    assert query["client_id"] == ["plexica-web"]
    back = await browser.get(out.headers["location"])
    assert back.status_code in (302, 303), back.text
    landed = await browser.get(back.headers["location"])
    assert landed.status_code == 303
    signed_out = await browser.get(landed.headers["location"])
    assert "You are signed out." in signed_out.text
    # The old cookie, replayed, opens nothing: the sign-in page.
    browser.cookies.set(SESSION_COOKIE, cookie)
    again = await browser.get("/console/tenants", follow_redirects=True)
    assert urlsplit(str(again.url)).path == "/login"
    assert "<h1>Sign in</h1>" in again.text
    # Its refresh token was revoked at the provider too.
    refreshed = await browser.post(
        "/realms/plexica-platform/protocol/openid-connect/token",
        data={"grant_type": "refresh_token", "refresh_token": before.refresh_token,
              "client_id": "plexica-web"},
    )  # fmt: skip
    assert refreshed.status_code == 400
