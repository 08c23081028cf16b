"""Server-side web sessions seen by their users (ADR 0120): the sessions page lists a user's
browsers and ends any of them; a tenant admin ends all of a user's sessions; an ended session's
cookie opens the sign-in page at its next request."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from plexica.kit.db import Database
from plexica.web.session import SESSION_COOKIE
from plexica.web.store import SessionStore, agent_summary
from tests.web.conftest import Operator, Site, add_user, csrf_of, sign_in

ROW = re.compile(r'<tr data-session="([0-9a-f-]{36})">(.*?)</tr>', re.S)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1"
)


def rows_of(html: str) -> dict[str, str]:
    return dict(ROW.findall(html))


@pytest.fixture
async def two_browsers(site: Site) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=site.url, timeout=30.0, headers={"User-Agent": FIREFOX}) as a,
        httpx.AsyncClient(base_url=site.url, timeout=30.0, headers={"User-Agent": PHONE}) as b,
    ):
        yield a, b


async def lands_on_sign_in(client: httpx.AsyncClient, path: str) -> bool:
    answer = await client.get(path, follow_redirects=True)
    return answer.url.path == "/login" and "<h1>Sign in</h1>" in answer.text


async def until_refused(client: httpx.AsyncClient, access_token: str) -> None:
    """Waits (condition, generous deadline) until the core refuses the token."""
    deadline = time.monotonic() + 30
    while True:
        me = await client.get(
            "/api/core/v1/me", headers={"Authorization": f"Bearer {access_token}"}
        )
        if me.status_code == 401:
            return
        assert me.status_code == 200, me.text
        assert time.monotonic() < deadline, "the ended session's token is still accepted"
        await asyncio.sleep(0.05)


def test_the_device_is_summarised() -> None:
    assert agent_summary(FIREFOX) == "Firefox on Linux"
    assert agent_summary(PHONE) == "Safari on iOS"
    assert agent_summary("") == "Unknown browser"


async def test_a_user_sees_their_sessions_and_ends_another(
    site: Site,
    db: Database,
    sessions: SessionStore,
    two_browsers: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    laptop, phone = two_browsers
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    password = await add_user(db, site, "plexica-platform", email, {"super_admin"})
    for client in (laptop, phone):
        await sign_in(client, "/login/start?operator=1", email, password)
    page = await laptop.get("/sessions")
    assert page.status_code == 200
    rows = rows_of(page.text)
    assert len(rows) == 2
    mine = await sessions.load(laptop.cookies[SESSION_COOKIE])
    theirs = await sessions.load(phone.cookies[SESSION_COOKIE])
    assert mine is not None
    assert theirs is not None
    assert "this browser" in rows[str(mine.id)]
    assert "Firefox on Linux" in rows[str(mine.id)]
    assert "this browser" not in rows[str(theirs.id)]
    assert "Safari on iOS" in rows[str(theirs.id)]
    assert "End session" in rows[str(theirs.id)]

    ended = await laptop.post(f"/sessions/{theirs.id}/end", data={"csrf": csrf_of(page.text)})
    assert ended.status_code == 303, ended.text
    assert "The session was ended." in (await laptop.get(ended.headers["location"])).text
    assert await lands_on_sign_in(phone, "/console/tenants")
    assert (await laptop.get("/console/tenants")).status_code == 200
    # Its sign-in session ended at the provider too: the access token it held is refused.
    await until_refused(phone, theirs.access_token)
    assert (await laptop.get("/console/tenants")).status_code == 200
    assert list(rows_of((await laptop.get("/sessions")).text)) == [str(mine.id)]


async def test_nobody_ends_another_users_session(
    site: Site,
    db: Database,
    operator: Operator,
    two_browsers: tuple[httpx.AsyncClient, httpx.AsyncClient],
    sessions: SessionStore,
) -> None:
    mallory, victim = two_browsers
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    password = await add_user(db, site, "plexica-platform", email, {"super_admin"})
    await sign_in(mallory, "/login/start?operator=1", email, password)
    await sign_in(victim, "/login/start?operator=1", operator.email, operator.password)
    target = await sessions.load(victim.cookies[SESSION_COOKIE])
    assert target is not None
    page = await mallory.get("/sessions")
    assert str(target.id) not in page.text
    tried = await mallory.post(f"/sessions/{target.id}/end", data={"csrf": csrf_of(page.text)})
    assert tried.status_code == 303
    assert "already ended" in (await mallory.get(tried.headers["location"])).text
    assert (await victim.get("/console/tenants")).status_code == 200
    junk = await mallory.post("/sessions/not-a-uuid/end", data={"csrf": csrf_of(page.text)})
    assert junk.status_code == 303


async def test_ending_the_current_session_signs_out(
    sessions: SessionStore, browser: httpx.AsyncClient, operator: Operator
) -> None:
    await sign_in(browser, "/login/start?operator=1", operator.email, operator.password)
    cookie = browser.cookies[SESSION_COOKIE]
    current = await sessions.load(cookie)
    assert current is not None
    page = await browser.get("/sessions")
    out = await browser.post(f"/sessions/{current.id}/end", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303
    assert "/protocol/openid-connect/logout?" in out.headers["location"]
    assert await sessions.load(cookie) is None
