"""The malformed-input catalogue of issue 18, sent through the embedded edge to the core, the
CRM and Billing: every answer is a documented 4xx in the one error shape with a request id, and
no exception text reaches the client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import error_of
from tests.errors.conftest import Stack

CORE = "/api/core/v1"
CRM = "/api/plugins/crm/v1"
BILLING = "/api/plugins/billing/v1"

NUL = "a\u0000b"
SURROGATE = "a\ud800b"
HUGE = 2**64
POISONS: list[Any] = [NUL, SURROGATE, HUGE, -HUGE]
REFUSALS = {400, 413, 415, 422}

# (method, path, who, body with the poison in place of "X")
BODY_TARGETS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("POST", f"{CRM}/contacts", "admin", {"first_name": "X"}),
    ("POST", f"{CRM}/companies", "admin", {"name": "X"}),
    ("POST", f"{CRM}/deals", "admin", {"title": "X"}),
    ("POST", f"{BILLING}/customers", "admin", {"name": "X"}),
    ("POST", f"{CORE}/users", "admin", {"email": "X"}),
    ("PUT", f"{CORE}/tenant/settings/theme", "admin", {"value": "X"}),
    ("PATCH", f"{CORE}/tenant/branding", "admin", {"name": "X"}),
    ("POST", f"{CORE}/service-clients", "admin", {"client_id": "X"}),
    ("POST", f"{CORE}/tenants", "operator", {"slug": "X", "name": "X", "admin_email": "X"}),
    ("POST", f"{CORE}/flags", "operator", {"key": "X", "description": "X"}),
    ("PUT", f"{CORE}/files/limits/acme", "operator", {"quota_bytes": "X"}),
]
# (path with "X" where the poison goes, who)
QUERY_TARGETS: list[tuple[str, str]] = [
    (f"{CRM}/contacts?q=X", "admin"),
    (f"{CRM}/companies?q=X", "admin"),
    (f"{CRM}/deals?q=X", "admin"),
    (f"{CRM}/deals?stage_id=X", "admin"),
    (f"{CRM}/contacts?limit=X", "admin"),
    (f"{BILLING}/customers?q=X", "admin"),
    (f"{CORE}/audit?action=X", "operator"),
    (f"{CORE}/audit?before=X", "operator"),
    (f"{CORE}/tenants?after=X", "operator"),
    (f"{CORE}/tenants?state=X", "operator"),
    (f"{CORE}/files?prefix=X", "admin"),
    (f"{CORE}/flags/evaluate?key=X", "admin"),
]
INT_QUERIES = {f"{CRM}/contacts?limit=X", f"{CORE}/audit?before=X"}
QUERY_POISONS = ["a%00b", "a%ED%A0%80b", "%ff%fe", str(HUGE), "-" + str(HUGE)]


def _put(template: dict[str, Any], poison: Any) -> dict[str, Any]:
    return {k: (poison if v == "X" else v) for k, v in template.items()}


def assert_refused(r: httpx.Response, *allowed: int) -> dict[str, Any]:
    assert r.status_code in (set(allowed) or REFUSALS), (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert r.headers.get("x-request-id"), r.headers
    error = error_of(r)
    for leak in ("Traceback", "asyncpg", "sqlalchemy", "Error:", "psycopg"):
        assert leak not in r.text, r.text
    return error


def _headers(stack: Stack, who: str) -> dict[str, str]:
    return stack.admin if who == "admin" else stack.operator


@pytest.mark.parametrize("poison", POISONS, ids=["nul", "surrogate", "huge", "-huge"])
async def test_poisoned_bodies_are_refused_everywhere(stack: Stack, poison: Any) -> None:
    for method, path, who, template in BODY_TARGETS:
        body = json.dumps(_put(template, poison))
        r = await stack.http.request(
            method,
            path,
            content=body.encode(),
            headers=_headers(stack, who) | {"content-type": "application/json"},
        )
        assert_refused(r)


async def test_poisoned_query_parameters_are_refused_everywhere(stack: Stack) -> None:
    for template, who in QUERY_TARGETS:
        for poison in QUERY_POISONS:
            r = await stack.http.get(template.replace("X", poison), headers=_headers(stack, who))
            if poison.lstrip("-").isdigit() and template not in INT_QUERIES:
                # A long number is a fine search text; it only must not break anything.
                assert r.status_code < 500, r.text
                assert r.headers["content-type"] == "application/json"
            else:
                assert_refused(r)


async def test_a_nul_in_the_path_is_refused(stack: Stack) -> None:
    for path in (f"{CORE}/tenant/settings/a%00b", f"{CRM}/contacts/a%00b"):
        assert_refused(await stack.http.get(path, headers=stack.admin), 400)


async def test_structurally_bad_json_is_refused(stack: Stack) -> None:
    cases: list[bytes] = [
        b'{"name": "\xff\xfe"}',  # invalid UTF-8
        b'{"name": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 65 + b"1" + b"}" * 65,
        b'{"name": "x", "tags": [' + b",".join([b"1"] * 20_000) + b"]}",
        b'{"name": NaN}',
        b'{"name": 1e999}',
        b'{"name": "x"',
        b'{"name": "x", "name": "y"',
    ]
    for path in (f"{CRM}/companies", f"{CORE}/tenant/branding", f"{BILLING}/customers"):
        method = "PATCH" if "branding" in path else "POST"
        for body in cases:
            r = await stack.http.request(
                method,
                path,
                content=body,
                headers=stack.admin | {"content-type": "application/json"},
            )
            assert_refused(r)


async def test_a_json_route_refuses_other_media_types_with_415(stack: Stack) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        r = await stack.http.post(
            f"{CRM}/companies",
            content=b'{"name": "Umbrella"}',
            headers=stack.admin | {"content-type": content_type},
        )
        assert assert_refused(r, 415)["code"] == "unsupported_media_type"


async def test_malformed_and_excessive_query_strings_are_refused(stack: Stack) -> None:
    many = "&".join(f"p{i}=1" for i in range(200))
    cases = [
        f"{CRM}/contacts?{many}",
        f"{CRM}/contacts?limit=1&limit=x",
        f"{CRM}/contacts?limit=1&limit=2",
        f"{CORE}/audit?before=1&before=2",
        f"{CRM}/contacts?q=%zz&limit=",
    ]
    for path in cases:
        assert_refused(await stack.http.get(path, headers=stack.admin))


async def test_a_body_over_the_limit_is_refused_before_it_is_read(stack: Stack) -> None:
    pulled = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(64):
            pulled += 1
            yield b" " * (1024 * 1024)

    r = await stack.http.post(
        f"{CRM}/companies",
        content=chunks(),
        headers=stack.admin
        | {"content-type": "application/json", "content-length": str(64 * 1024 * 1024)},
    )
    assert assert_refused(r, 413)["code"] == "payload_too_large"
    assert pulled <= 1


async def test_a_chunked_body_stops_being_read_at_the_limit(stack: Stack) -> None:
    pulled = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(64):
            pulled += 1
            yield b" " * (256 * 1024)

    r = await stack.http.post(
        f"{CORE}/tenants",
        content=chunks(),
        headers=stack.operator | {"content-type": "application/json"},
    )
    assert assert_refused(r, 413)["code"] == "payload_too_large"
    assert pulled <= 5


async def test_bodies_under_the_limit_still_work(stack: Stack) -> None:
    r = await stack.http.post(
        f"{CRM}/companies", json={"name": "Umbrella " + "x" * 100}, headers=stack.admin
    )
    assert r.status_code == 201, r.text
    r = await stack.http.get(f"{CRM}/companies?q=Umbrella&limit=5", headers=stack.admin)
    assert r.status_code == 200, r.text
    assert r.headers.get("x-request-id")


async def test_page_sizes_and_offsets_are_bounded_everywhere(stack: Stack) -> None:
    cases = [
        (f"{CRM}/contacts?limit=201", stack.admin),
        (f"{CRM}/contacts?limit=0", stack.admin),
        (f"{CRM}/contacts?offset=1000001", stack.admin),
        (f"{BILLING}/customers?limit=201", stack.admin),
        (f"{CORE}/tenants?limit=201", stack.operator),
        (f"{CORE}/audit?limit=501", stack.operator),
        (f"{CORE}/files?limit=1001", stack.admin),
    ]
    for path, headers in cases:
        assert assert_refused(await stack.http.get(path, headers=headers), 422)
    r = await stack.http.get(f"{CRM}/contacts?limit=200", headers=stack.admin)
    assert r.status_code == 200, r.text
