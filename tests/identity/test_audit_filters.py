"""The audit log's filters (actor, action, target, time range) and its ``before`` cursor on real
PostgreSQL, bad filter input (422 in the error shape, never a 500) and who may read it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx

from plexica.kit.db import Database
from tests.identity.conftest import Live, add_user, admin_bearer, bearer, login, provision


async def _audit(
    http: httpx.AsyncClient, live: Live, h: dict[str, str], **params: Any
) -> httpx.Response:
    return await http.get(live.url + "/v1/audit", headers=h, params=params)


def _items(answer: httpx.Response) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def test_filters_and_older_pages(live: Live, db: Database, http: httpx.AsyncClient) -> None:
    tenant = await provision(db, live)
    h = await admin_bearer(db, live, http, tenant)
    made: list[str] = []
    request_ids: list[str] = []
    for name in ("ann", "ben", "cid"):
        answer = await http.post(
            live.url + "/v1/users", headers={**h, "X-Request-ID": uuid.uuid4().hex},
            json={"email": f"{name}@{tenant.slug}.example"},
        )  # fmt: skip
        assert answer.status_code == 201, answer.text
        made.append(answer.json()["user"]["id"])
        request_ids.append(answer.headers["x-request-id"])
    promoted = await http.put(
        live.url + f"/v1/users/{made[1]}/roles", headers=h, json={"roles": ["tenant_admin"]}
    )
    assert promoted.status_code == 200, promoted.text

    everything = _items(await _audit(http, live, h))
    assert [e["action"] for e in everything[:4]] == [
        "identity.user.roles_changed", *["identity.user.created"] * 3,
    ]  # fmt: skip
    assert [e["request_id"] for e in everything[1:4]] == request_ids[::-1]

    created = _items(await _audit(http, live, h, action="identity.user.created"))
    assert [e["target"] for e in created] == [f"user:{u}" for u in made[::-1]]
    by_prefix = _items(await _audit(http, live, h, action="identity.user.*"))
    assert {e["action"] for e in by_prefix} == {
        "identity.user.created",
        "identity.user.roles_changed",
    }
    by_target = _items(await _audit(http, live, h, target=f"user:{made[1]}"))
    assert [e["action"] for e in by_target] == [
        "identity.user.roles_changed", "identity.user.created",
    ]  # fmt: skip
    mine = _items(await _audit(http, live, h, actor=tenant.admin_email))
    assert len(mine) == len(everything)
    assert _items(await _audit(http, live, h, actor=tenant.admin_email.upper())) == []
    # LIKE's wildcards in a filter are plain characters.
    assert _items(await _audit(http, live, h, action="identity%")) == []
    assert _items(await _audit(http, live, h, action="identity_user*")) == []

    # The time range: since is inclusive, until exclusive.
    first, last = created[-1], created[0]
    between = _items(
        await _audit(
            http, live, h, action="identity.user.created", since=first["at"], until=last["at"]
        )
    )
    assert [e["id"] for e in between] == [e["id"] for e in created[1:]]
    later = datetime.fromisoformat(last["at"]) + timedelta(hours=1)
    assert _items(await _audit(http, live, h, since=later.isoformat())) == []

    # Older pages: next_before, until the last page says there is none.
    seen: list[str] = []
    params: dict[str, Any] = {"action": "identity.user.created", "limit": 2}
    while True:
        page = await _audit(http, live, h, **params)
        seen += [e["target"] for e in _items(page)]
        if page.json()["next_before"] is None:
            break
        params["before"] = page.json()["next_before"]
    assert seen == [f"user:{u}" for u in made[::-1]]


async def test_bad_filters_are_422_in_the_error_shape(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    tenant = await provision(db, live)
    h = await admin_bearer(db, live, http, tenant)
    bad: list[dict[str, Any]] = [
        {"since": "yesterday"},
        {"since": "2026-12-07T09:30:00"},  # no offset: which time zone is unknown
        {"until": "2026-13-01T00:00:00Z"},
        {"since": "2026-12-07T10:00:00Z", "until": "2026-12-07T10:00:00Z"},
        {"since": "2026-12-07T11:00:00+01:00", "until": "2026-12-07T09:00:00Z"},
        {"before": "0"},
        {"before": str(2**63)},
        {"before": "abc"},
        {"limit": "0"},
        {"limit": "501"},
        {"actor": ""},
        {"action": "x" * 201},
        {"target": "x" * 301},
    ]
    for params in bad:
        answer = await _audit(http, live, h, **params)
        assert answer.status_code == 422, (params, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "validation_error", params
        assert error["message"]
        assert answer.headers["x-request-id"]
    # A character PostgreSQL cannot store is refused before any route: the request's fault.
    nul = await _audit(http, live, h, actor="a\x00b")
    assert nul.status_code == 400, nul.text
    assert nul.json()["error"]["code"] == "invalid_character"


async def test_members_and_other_tenants_read_nothing(
    live: Live, db: Database, http: httpx.AsyncClient
) -> None:
    a, b = await provision(db, live), await provision(db, live)
    admin_a, admin_b = await admin_bearer(db, live, http, a), await admin_bearer(db, live, http, b)
    member_email = f"m@{a.slug}.example"
    member_pw = await add_user(db, live, a.realm, member_email, {"member"})
    member = bearer(await login(http, live, a.realm, member_email, member_pw))
    made = await http.post(
        live.url + "/v1/users", headers=admin_a, json={"email": f"x@{a.slug}.example"}
    )
    assert made.status_code == 201
    for params in ({}, {"actor": a.admin_email}, {"action": "identity.user.*"}):
        denied = await _audit(http, live, member, **params)
        assert denied.status_code == 403, denied.text
        assert denied.json()["error"]["code"] == "forbidden"
    # Filtering on another tenant's actor finds nothing of theirs.
    assert _items(await _audit(http, live, admin_b, actor=a.admin_email)) == []
    assert (
        _items(await _audit(http, live, admin_b, target=f"user:{made.json()['user']['id']}")) == []
    )
