"""CSV import and export of contacts and companies (ADR 0226) through the SDK test kit (real
local Plexica and PostgreSQL, the plugin over HTTP): all or nothing with every bad row reported,
one event per record, exports safe to open in a spreadsheet, malformed files refused with a 4xx
in the one error shape."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from plexica_sdk.testing import KitTenant, PluginTestKit

CSV = {"Content-Type": "text/csv"}


@pytest.fixture(scope="module")
def refusals(kit: PluginTestKit) -> KitTenant:
    """Where nothing is ever written: the refusal tests share it."""
    return kit.tenant("csv-refusals")


@pytest.fixture
def shop(kit: PluginTestKit) -> KitTenant:
    """A tenant per test: counts of records and events are its own."""
    return kit.tenant(f"csv-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def http(kit: PluginTestKit, shop: KitTenant) -> Iterator[httpx.Client]:
    with kit.client(shop, roles=["member"], sub="sam") as client:
        client.timeout = httpx.Timeout(120)
        yield client


def _csv(*rows: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


def _created(kit: PluginTestKit, shop: KitTenant, kind: str) -> list[Any]:
    return asyncio.run(
        kit.fetch(
            "SELECT subject FROM platform.outbox WHERE tenant_id = $1 AND type = $2 ORDER BY seq",
            shop.id,
            f"crm.{kind}.created",
        )
    )


def _error(r: httpx.Response, status: int, code: str) -> Any:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code, body
    return body["error"]["details"]


def test_a_thousand_contacts_are_imported_with_one_event_each(
    kit: PluginTestKit, shop: KitTenant, http: httpx.Client
) -> None:
    initech = http.post("/v1/companies", json={"name": "Initech"}).json()
    globex = http.post("/v1/companies", json={"name": "Globex"}).json()
    rows = [["First_Name", " last_name ", "email", "phone", "company", "company_id"]]
    for n in range(1000):
        company = [["initech", ""], ["", globex["id"]], ["", ""]][n % 3]
        rows.append([f"P{n}", f"L{n}", f"p{n}@x.test", "", *company])
    r = http.post("/v1/contacts/import", content=_csv(*rows), headers=CSV)
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 1000}

    assert http.get("/v1/contacts?limit=1").json()["total"] == 1000
    assert http.get(f"/v1/contacts?company_id={initech['id']}&limit=1").json()["total"] == 334
    assert http.get(f"/v1/contacts?company_id={globex['id']}&limit=1").json()["total"] == 333
    events = _created(kit, shop, "contact")
    assert len(events) == 1000
    found = http.get("/v1/contacts?q=p999@x.test").json()["items"]
    assert [(c["first_name"], c["phone"]) for c in found] == [("P999", None)]
    assert f"contacts/{found[0]['id']}" in {e["subject"] for e in events}


def test_bad_rows_are_all_reported_and_nothing_is_written(
    kit: PluginTestKit, shop: KitTenant, http: httpx.Client
) -> None:
    for name in ("Twin", "twin"):
        assert http.post("/v1/companies", json={"name": name}).status_code == 201
    body = _csv(
        ["first_name", "email", "company", "company_id"],
        ["Good", "good@x.test", "", ""],
        ["", "no-name@x.test", "", ""],  # row 3: no first name
        ["Bad", "not-an-email", "", ""],  # row 4
        ["Nowhere", "", "Nowhere Inc", ""],  # row 5: no such company
        ["Double", "", "TWIN", ""],  # row 6: two companies of that name
        ["Ghost", "", "", "0190a000-0000-7000-8000-000000000000"],  # row 7: unknown id
        ["Short", ""],  # row 8: cells missing
        ["", "", "", ""],  # blank: skipped
        ["Worse", "x", "", "not-a-uuid"],  # row 10: two bad fields
        ["Fine", "", "", ""],
    )
    details = _error(
        http.post("/v1/contacts/import", content=body, headers=CSV), 422, "invalid_rows"
    )
    errors = details["errors"]
    assert [(e["row"], e["field"]) for e in errors] == [
        (3, "first_name"),
        (4, "email"),
        (5, "company"),
        (6, "company"),
        (7, "company_id"),
        (8, None),
        (10, "email"),
        (10, "company_id"),
    ]
    assert all(e["message"] for e in errors)
    assert "2 companies are named 'TWIN'" in errors[3]["message"]
    assert http.get("/v1/contacts").json()["total"] == 0
    assert _created(kit, shop, "contact") == []

    companies = _csv(["name", "domain"], ["Fine", ""], ["", "x.test"], ["x" * 201, ""])
    details = _error(
        http.post("/v1/companies/import", content=companies, headers=CSV), 422, "invalid_rows"
    )
    assert [(e["row"], e["field"]) for e in details["errors"]] == [(3, "name"), (4, "name")]
    assert http.get("/v1/companies").json()["total"] == 2


def test_exports_parse_back_with_formulas_defused(
    kit: PluginTestKit, shop: KitTenant, http: httpx.Client
) -> None:
    acme = http.post("/v1/companies", json={"name": '=HYPERLINK("http://evil")'}).json()
    plain = http.post("/v1/companies", json={"name": 'Plain, "quoted"\nand two lines'}).json()
    contacts = [
        {
            "first_name": "+Plus",
            "last_name": "-Minus",
            "phone": "+49 30 1234",
            "company_id": acme["id"],
        },
        {"first_name": "@At", "email": "at@x.test"},
        {"first_name": "Tab", "last_name": "\tcell"},
    ]
    made = [http.post("/v1/contacts", json=c).json() for c in contacts]

    r = http.get("/v1/companies/export")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text, newline="")))
    assert [(c["id"], c["name"]) for c in rows] == [
        (acme["id"], '\'=HYPERLINK("http://evil")'),
        (plain["id"], 'Plain, "quoted"\nand two lines'),
    ]

    r = http.get("/v1/contacts/export")
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text, newline="")))
    assert list(rows[0]) == [
        "id", "first_name", "last_name", "email", "phone", "company_id", "company", "created_at",
    ]  # fmt: skip
    assert [r["id"] for r in rows] == [c["id"] for c in made]
    first = rows[0]
    assert (first["first_name"], first["last_name"], first["phone"]) == (
        "'+Plus",
        "'-Minus",
        "'+49 30 1234",
    )
    assert (first["company_id"], first["company"]) == (acme["id"], '\'=HYPERLINK("http://evil")')
    assert (rows[1]["first_name"], rows[1]["email"], rows[1]["company"]) == (
        "'@At",
        "at@x.test",
        "",
    )
    # Trimmed on the way in? No: only an import trims cells. The export keeps the tab, defused.
    assert rows[2]["last_name"] == "'\tcell"

    # The export imports again (its id and created_at are read past): new records, the same
    # values without the apostrophes, the company by its id.
    r = http.post("/v1/contacts/import", content=r.content, headers=CSV)
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 3}
    again = http.get("/v1/contacts?q=%2Bplus").json()["items"]
    assert (
        sorted((c["last_name"], c["phone"], c["company_id"]) for c in again)
        == [
            ("-Minus", "+49 30 1234", acme["id"]),
        ]
        * 2
    )
    assert len(_created(kit, shop, "contact")) == 6


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"first_name\r\nA\x00B\r\n", 400, "invalid_character"),
        (b"first_name\r\n\xff\xfeA\r\n", 400, "invalid_encoding"),
        (b'first_name\r\n"unterminated\r\n', 400, "invalid_csv"),
        (b'first_name\r\n"a"b\r\n', 400, "invalid_csv"),
        (b"", 422, "invalid_csv_header"),
        (b"last_name,email\r\nX,x@x.test\r\n", 422, "invalid_csv_header"),
        (b"first_name,First_Name\r\nA,B\r\n", 422, "invalid_csv_header"),
        (b"first_name,emial\r\nA,a@x.test\r\n", 422, "invalid_csv_header"),
        (b"first_name\r\n" + b"A\r\n" * 10_001, 413, "too_many_rows"),
        (b"first_name\r\n" + b"A" * (5 * 1024 * 1024), 413, "payload_too_large"),
    ],
)
def test_malformed_files_are_refused(
    kit: PluginTestKit, refusals: KitTenant, body: bytes, status: int, code: str
) -> None:
    with kit.client(refusals, roles=["member"]) as http:
        r = http.post("/v1/contacts/import", content=body, headers=CSV)
        details = _error(r, status, code)
        if code == "invalid_csv_header":
            assert details["missing"] or details["duplicates"] or details["unknown"]
        assert http.get("/v1/contacts").json()["total"] == 0
    assert _created(kit, refusals, "contact") == []


def test_other_refusals(kit: PluginTestKit, refusals: KitTenant) -> None:
    with kit.client(refusals, roles=["member"]) as http:
        _other_refusals(kit, refusals, http)


def _other_refusals(kit: PluginTestKit, shop: KitTenant, http: httpx.Client) -> None:
    ok = _csv(["name"], ["A"])
    _error(http.post("/v1/companies/import", content=ok), 415, "unsupported_media_type")
    _error(http.post("/v1/companies/import", json={"name": "A"}), 415, "unsupported_media_type")
    _error(
        http.post(
            "/v1/companies/import",
            content=ok,
            headers={"Content-Type": "text/csv; charset=latin-1"},
        ),
        415,
        "unsupported_media_type",
    )
    # Header details name what is wrong.
    details = _error(
        http.post("/v1/companies/import", content=b"Name,name,www\r\n", headers=CSV),
        422,
        "invalid_csv_header",
    )
    assert (details["duplicates"], details["unknown"]) == (["name"], ["www"])
    with kit.client(shop, roles=["viewer"]) as viewer:
        _error(viewer.post("/v1/companies/import", content=ok, headers=CSV), 403, "forbidden")
        assert viewer.get("/v1/companies/export").status_code == 200
    # A byte order mark and a header only: nothing to import, and that is fine.
    r = http.post("/v1/companies/import", content=b"\xef\xbb\xbfname,domain\r\n", headers=CSV)
    assert (r.status_code, r.json()) == (200, {"created": 0})
