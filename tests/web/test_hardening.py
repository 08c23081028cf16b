"""Browser hardening of the shell, over HTTP against the running platform: state-changing requests
from another origin are refused even with a valid CSRF token; every answer carries the security
headers; cookies are HttpOnly and SameSite=Lax, and Secure with ``__Host-`` when served over
https (ADR 0121, 0122)."""

from __future__ import annotations

import uuid
from http.cookies import SimpleCookie

import httpx
import pytest
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from plexica.web.app import create_web_app
from plexica.web.security import cross_site_reason, origin_of
from plexica.web.session import WebSession
from plexica.web.shell import Shell
from tests.web.conftest import Operator, Site, csrf_of, sign_in

HEADERS = ("content-security-policy", "x-frame-options", "x-content-type-options")


def assert_hardened(answer: httpx.Response) -> None:
    csp = answer.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'", csp
    assert "unsafe-inline" not in csp
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "same-origin"


def test_origins_are_normalised() -> None:
    assert origin_of("HTTP://Example.COM:80/x?y") == "http://example.com"
    assert origin_of("https://a.example:8443/") == "https://a.example:8443"
    assert origin_of("null") is None
    assert origin_of("javascript:alert(1)") is None
    assert origin_of("http://[::1]:99/") == "http://[::1]:99"


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({"origin": "http://evil.example", "sec-fetch-site": "cross-site"}, True),
        ({"origin": "http://shell.example", "sec-fetch-site": "same-site"}, True),
        ({"sec-fetch-site": "none"}, True),
        ({"origin": "http://evil.example"}, True),
        ({"origin": "null"}, True),
        ({"referer": "http://evil.example/page"}, True),
        ({"origin": "http://shell.example", "sec-fetch-site": "same-origin"}, False),
        ({"origin": "http://shell.example"}, False),
        ({"referer": "http://shell.example/t/admin/users"}, False),
        ({}, False),  # not a browser: no victim's cookies; the CSRF token still applies
    ],
)
def test_the_origin_rule(headers: dict[str, str], refused: bool) -> None:
    reason = cross_site_reason(Headers(headers=headers), lambda: {"http://shell.example"})
    assert (reason is not None) == refused


async def test_a_cross_site_post_with_a_valid_csrf_token_is_refused(
    site: Site, browser: httpx.AsyncClient, operator: Operator
) -> None:
    await sign_in(browser, "/login/start?operator=1", operator.email, operator.password)
    page = await browser.get("/console/flags")
    token = csrf_of(page.text)
    form = {"csrf": token, "key": "never-made", "description": "", "default": "off"}
    for attack in (
        {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://acme.localtest.me"},
        {"Referer": "http://evil.example/form.html"},
    ):
        refused = await browser.post("/console/flags", data=form, headers=attack)
        assert refused.status_code == 403, (attack, refused.text)
        assert "<h1>Refused</h1>" in refused.text
        assert_hardened(refused)
    as_json = await browser.post(
        "/console/flags",
        data=form,
        headers={"Origin": "http://evil.example", "Accept": "application/json"},
    )
    assert as_json.status_code == 403
    error = as_json.json()["error"]
    assert error["code"] == "cross_site_request"
    assert set(error) == {"code", "message", "details"}
    assert "never-made" not in (await browser.get("/console/flags")).text
    # The same form from the shell's own page goes through.
    same = await browser.post(
        "/console/flags",
        data={**form, "key": f"same-origin-{uuid.uuid4().hex[:8]}"},
        headers={"Origin": site.url, "Sec-Fetch-Site": "same-origin", "Referer": site.url + "/"},
    )
    assert same.status_code == 303, same.text


async def test_a_cross_site_sign_out_is_refused(
    site: Site, browser: httpx.AsyncClient, operator: Operator
) -> None:
    await sign_in(browser, "/login/start?operator=1", operator.email, operator.password)
    page = await browser.get("/console/tenants")
    refused = await browser.post(
        "/logout", data={"csrf": csrf_of(page.text)}, headers={"Origin": "http://evil.example"}
    )
    assert refused.status_code == 403
    assert (await browser.get("/console/tenants")).status_code == 200


async def test_every_answer_carries_the_security_headers(
    site: Site, browser: httpx.AsyncClient, operator: Operator
) -> None:
    anonymous = ["/", "/login", "/login?error=x", "/static/plexica.css", "/no-such-page", "/t"]
    for path in anonymous:
        assert_hardened(await browser.get(path))
    await sign_in(browser, "/login/start?operator=1", operator.email, operator.password)
    for path in ("/console/tenants", "/console/flags", "/console/health", "/sessions"):
        answer = await browser.get(path)
        assert answer.status_code == 200, path
        assert_hardened(answer)
        assert "<script>" not in answer.text
        assert " onclick=" not in answer.text


async def test_cookies_over_http_are_httponly_and_lax(
    site: Site, browser: httpx.AsyncClient, operator: Operator
) -> None:
    start = await browser.get("/login/start", params={"operator": "1"})
    login = SimpleCookie(start.headers["set-cookie"])["plexica_login"]
    assert (login["httponly"], login["samesite"], login["secure"]) == (True, "lax", "")
    # The scheme is the public URL's: a client's X-Forwarded-Proto changes nothing.
    forwarded = await browser.get(
        "/login/start", params={"operator": "1"}, headers={"X-Forwarded-Proto": "https"}
    )
    assert "__Host-" not in forwarded.headers["set-cookie"]
    await sign_in(browser, "/login/start?operator=1", operator.email, operator.password)
    jar = [c for c in browser.cookies.jar if c.name == "plexica_session"]
    assert len(jar) == 1
    assert jar[0].has_nonstandard_attr("HttpOnly")
    assert jar[0].get_nonstandard_attr("SameSite", "").lower() == "lax"
    assert not jar[0].secure


async def test_cookies_over_https_are_secure_host_cookies(site: Site) -> None:
    """A shell whose public URL is https (TLS ends at the proxy in front of it)."""
    settings = site.settings.model_copy(
        update={
            "public_url": "https://shell.example",
            "web_base_domain": None,
            "web_secret": SecretStr("an-https-deployment-secret-0123456789"),
        }
    )
    app = create_web_app(settings)
    shell: Shell = app.state.shell
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://shell.example") as c:
            start = await c.get("/login/start", params={"operator": "1"})
            assert start.status_code == 303
            login = SimpleCookie(start.headers["set-cookie"])["__Host-plexica_login"]
            assert (login["secure"], login["httponly"], login["path"]) == (True, True, "/")
            assert login["samesite"] == "lax"
            assert not login["domain"]
            page = await c.get("/login")
            assert_hardened(page)
            assert (
                "form-action 'self' https://shell.example"
                in (page.headers["content-security-policy"])
            )
        request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
        response = Response()
        signed_in = WebSession("plexica-platform", "a.e30.b", None, 0.0)
        await shell.start(request, response, signed_in)
        cookie = SimpleCookie(response.headers["set-cookie"])["__Host-plexica_session"]
        assert (cookie["secure"], cookie["httponly"], cookie["path"]) == (True, True, "/")
        assert cookie["samesite"] == "lax"
        assert await shell.sessions.load(cookie.value) is not None
        assert signed_in.id is not None
        await shell.sessions.delete("plexica-platform", session_id=signed_in.id)
    finally:
        await shell.upstream.aclose()
        await shell.db.dispose()
