"""The CRM's record pages as the shell forwards them (ADR 0230), through the SDK test kit: edit
forms with the ETag they were rendered with, delete with confirmation, companies, activity
timelines, and CSV import and export. Imports only the SDK and the plugin."""

from __future__ import annotations

import re

import httpx
import pytest

from plexica_sdk.testing import KitTenant, PluginTestKit
from plexica_sdk.ui import encode_upload

CONFLICT = "was changed by someone else since you opened it. Nothing was saved"


@pytest.fixture(scope="module")
def shop(kit: PluginTestKit) -> KitTenant:
    return kit.tenant("pageshop")


def tag_of(html: str) -> str:
    found = re.search(r'name="if_match" value="([^"]*)"', html)
    assert found, html
    return found.group(1).replace("&#34;", '"')


def test_contact_edit_with_a_stale_form_changes_nothing(
    kit: PluginTestKit, shop: KitTenant
) -> None:
    with kit.client(shop, roles=["member"], sub="sam") as http:
        company = http.post("/v1/companies", json={"name": "Initrode"}).json()
        contact = http.post("/v1/contacts", json={"first_name": "Ada", "last_name": "L"}).json()
        page = http.get(f"/ui/contacts/{contact['id']}")
        assert page.status_code == 200
        tag = tag_of(page.text)
        assert tag == '"1"'
        assert 'value="Ada"' in page.text
        assert f'<option value="{company["id"]}">Initrode</option>' in page.text

        form = {"if_match": tag, "first_name": "Ada", "last_name": "Lovelace", "email": "",
                "phone": "", "company_id": company["id"]}  # fmt: skip
        saved = http.post(f"/ui/contacts/{contact['id']}", data=form, follow_redirects=False)
        assert saved.status_code == 303
        assert saved.headers["location"] == f"ui/contacts/{contact['id']}?done=saved"
        now = http.get(f"/v1/contacts/{contact['id']}").json()
        assert (now["last_name"], now["company_id"], now["version"]) == (
            "Lovelace", company["id"], 2,
        )  # fmt: skip
        shown = http.get("/" + saved.headers["location"]).text
        assert "Saved." in shown
        assert f'href="ui/companies/{company["id"]}">Initrode</a>' in shown

        # Someone else changes it; the form still holds version 1.
        other = http.patch(f"/v1/contacts/{contact['id']}", json={"phone": "+44 1"})
        assert other.status_code == 200
        stale = http.post(f"/ui/contacts/{contact['id']}", data={**form, "last_name": "Byron"})
        assert stale.status_code == 409
        assert CONFLICT in stale.text
        assert 'value="Lovelace"' in stale.text
        assert 'value="+44 1"' in stale.text
        assert tag_of(stale.text) == '"3"'
        assert http.get(f"/v1/contacts/{contact['id']}").json()["last_name"] == "Lovelace"
        untagged = {k: v for k, v in form.items() if k != "if_match"}
        assert http.post(f"/ui/contacts/{contact['id']}", data=untagged).status_code == 409

        bad = http.post(
            f"/ui/contacts/{contact['id']}", data={**form, "if_match": '"3"', "email": "x"}
        )
        assert bad.status_code == 422
        assert 'id="e-email"' in bad.text
        assert 'value="x"' in bad.text
        assert tag_of(bad.text) == '"3"'
        nowhere = {**form, "if_match": '"3"', "company_id": "00000000-0000-0000-0000-000000000000"}
        assert http.post(f"/ui/contacts/{contact['id']}", data=nowhere).status_code == 422
        assert http.get(f"/v1/contacts/{contact['id']}").json()["version"] == 3

    with kit.client(shop, roles=["viewer"], sub="val") as http:
        assert "Save contact" not in http.get(f"/ui/contacts/{contact['id']}").text
        assert http.post(f"/ui/contacts/{contact['id']}", data=form).status_code == 403


def test_delete_asks_first_and_refuses_a_stale_confirmation(
    kit: PluginTestKit, shop: KitTenant
) -> None:
    with kit.client(shop, roles=["member"], sub="sam") as http:
        deal = http.post("/v1/deals", json={"title": "Doomed", "amount": "5"}).json()
        asked = http.get(f"/ui/deals/{deal['id']}/delete")
        assert asked.status_code == 200
        assert "Delete deal Doomed?" in asked.text
        assert f'action="ui/deals/{deal["id"]}/delete"' in asked.text
        tag = tag_of(asked.text)
        http.patch(f"/v1/deals/{deal['id']}", json={"amount": "6"})
        stale = http.post(f"/ui/deals/{deal['id']}/delete", data={"if_match": tag})
        assert stale.status_code == 409
        assert CONFLICT in stale.text
        assert "6.00 EUR" in stale.text
        assert http.get(f"/v1/deals/{deal['id']}").status_code == 200

        done = http.post(
            f"/ui/deals/{deal['id']}/delete",
            data={"if_match": tag_of(stale.text)},
            follow_redirects=False,
        )
        assert done.status_code == 303
        assert done.headers["location"] == f"ui/deals?done=deleted&undo={deal['id']}"
        board = http.get(done.headers["location"]).text
        assert "Deal deleted." in board
        assert f'action="ui/deals/{deal["id"]}/restore"' in board
        assert http.get(f"/v1/deals/{deal['id']}").status_code == 404
        again = http.post(f"/ui/deals/{deal['id']}/delete", data={"if_match": tag})
        assert again.status_code == 404
        assert "no longer exists" in again.text

        # Undo: the deal is back, and a second Undo finds nothing in the trash.
        undone = http.post(f"/ui/deals/{deal['id']}/restore", follow_redirects=False)
        assert undone.status_code == 303
        assert undone.headers["location"] == f"ui/deals/{deal['id']}?done=restored"
        assert "Restored." in http.get(undone.headers["location"]).text
        twice = http.post(f"/ui/deals/{deal['id']}/restore")
        assert twice.status_code == 404
        assert "is not in the trash" in twice.text


def test_the_trash_page_lists_what_the_user_may_restore(
    kit: PluginTestKit, shop: KitTenant
) -> None:
    with kit.client(shop, roles=["member"], sub="sam") as http:
        company = http.post("/v1/companies", json={"name": "Binned Inc"}).json()
        contact = http.post("/v1/contacts", json={"first_name": "Binned", "last_name": "Bo"}).json()
        for path, record in (("companies", company), ("contacts", contact)):
            assert http.delete(f"/v1/{path}/{record['id']}").status_code == 204
        page = http.get("/ui/trash")
        assert page.status_code == 200
        assert "Binned Inc" in page.text
        assert "Binned Bo" in page.text
        assert f'action="ui/contacts/{contact["id"]}/restore"' in page.text
        assert 'aria-label="Restore Binned Bo"' in page.text
        assert http.post(f"/ui/contacts/{contact['id']}/restore").status_code == 303
        assert "Binned Bo" not in http.get("/ui/trash").text
    with kit.client(shop, roles=["viewer"]) as viewer:
        assert viewer.get("/ui/trash").status_code == 403


def test_deal_edit_form(kit: PluginTestKit, shop: KitTenant) -> None:
    with kit.client(shop, roles=["member"], sub="sam") as http:
        deal = http.post("/v1/deals", json={"title": "Edit me", "amount": "10"}).json()
        page = http.get(f"/ui/deals/{deal['id']}").text
        form = {"if_match": tag_of(page), "title": "Edited", "amount": "12.50",
                "currency": "EUR", "company_id": ""}  # fmt: skip
        bad = http.post(f"/ui/deals/{deal['id']}", data={**form, "amount": "-1", "currency": "eu"})
        assert bad.status_code == 422
        assert 'id="e-amount"' in bad.text
        assert 'id="e-currency"' in bad.text
        saved = http.post(f"/ui/deals/{deal['id']}", data=form, follow_redirects=False)
        assert saved.status_code == 303
        assert http.get(f"/v1/deals/{deal['id']}").json()["title"] == "Edited"


def test_companies_list_detail_create_edit_delete(kit: PluginTestKit, shop: KitTenant) -> None:
    with kit.client(shop, roles=["member"], sub="sam") as http:
        bad = http.post("/ui/companies", data={"name": " "})
        assert bad.status_code == 422
        assert 'id="e-name"' in bad.text
        made = http.post(
            "/ui/companies", data={"name": "Globex", "domain": "globex.test"},
            follow_redirects=False,
        )  # fmt: skip
        assert made.status_code == 303
        company_id = made.headers["location"].removeprefix("ui/companies/")
        http.post("/v1/contacts", json={"first_name": "Hank", "company_id": company_id})
        http.post("/v1/contacts", json={"first_name": "Solo"})
        page = http.get(f"/ui/companies/{company_id}").text
        assert "<h2>Globex</h2>" in page
        assert ">Hank </a>" in page
        assert "Solo" not in page

        for i in range(26):
            http.post("/v1/companies", json={"name": f"Paged {i:02}"})
        listed = http.get("/ui/companies", params={"q": "paged"}).text
        assert listed.count("<tr data-company=") == 25
        assert "26 companies" in listed
        assert 'href="ui/companies?offset=25&amp;q=paged">Next page</a>' in listed
        last = http.get("/ui/companies", params={"q": "paged", "offset": 25}).text
        assert last.count("<tr data-company=") == 1
        assert "Previous page" in last
        assert "Globex" not in listed

        form = {"if_match": tag_of(page), "name": "Globex Corp", "domain": ""}
        assert http.post(f"/ui/companies/{company_id}", data=form).status_code == 303
        now = http.get(f"/v1/companies/{company_id}").json()
        assert (now["name"], now["domain"]) == ("Globex Corp", None)
        asked = http.get(f"/ui/companies/{company_id}/delete").text
        assert "Its contacts and deals stay" in asked
        gone = http.post(
            f"/ui/companies/{company_id}/delete", data={"if_match": tag_of(asked)},
            follow_redirects=False,
        )  # fmt: skip
        assert gone.headers["location"] == f"ui/companies?done=deleted&undo={company_id}"
        assert http.get(f"/v1/companies/{company_id}").status_code == 404
        hank = http.get("/v1/contacts", params={"q": "hank"}).json()["items"][0]
        assert hank["company_id"] is None


def test_activity_timelines(kit: PluginTestKit, shop: KitTenant) -> None:
    with kit.client(shop, roles=["member"], sub="sam") as http:
        company = http.post("/v1/companies", json={"name": "Umbrella"}).json()
        alice = http.post(
            "/v1/contacts", json={"first_name": "Alice", "company_id": company["id"]}
        ).json()
        stranger = http.post("/v1/contacts", json={"first_name": "Stranger"}).json()
        deal = http.post(
            "/v1/deals", json={"title": "Umbrella deal", "company_id": company["id"]}
        ).json()

        path = f"/ui/contacts/{alice['id']}/activities"
        bad = http.post(path, data={"kind": "lunch", "subject": ""})
        assert bad.status_code == 422
        assert 'id="e-kind"' in bad.text
        assert 'id="e-subject"' in bad.text
        for subject in ("First call", "Second call"):
            logged = http.post(
                path, data={"kind": "call", "subject": subject}, follow_redirects=False
            )
            assert logged.status_code == 303
            assert logged.headers["location"].endswith("?done=logged#activities")
        http.post(
            f"/ui/deals/{deal['id']}/activities",
            data={"kind": "note", "subject": "Deal note", "body": "Multi\nline"},
        )
        page = http.get(f"/ui/contacts/{alice['id']}").text
        assert page.index("Second call") < page.index("First call")
        assert "Deal note" not in page
        assert "Deal note" in http.get(f"/ui/deals/{deal['id']}").text

        on_company = f"/ui/companies/{company['id']}/activities"
        refused = http.post(
            on_company, data={"kind": "task", "subject": "X", "contact_id": stranger["id"]}
        )
        assert refused.status_code == 422
        assert "Choose one of the company&#39;s contacts." in refused.text
        http.post(
            on_company, data={"kind": "task", "subject": "Company task", "contact_id": alice["id"]}
        )
        timeline = http.get(f"/ui/companies/{company['id']}").text
        found = [timeline.index(s) for s in ("Company task", "Deal note", "Second call")]
        assert found == sorted(found)
        assert "Stranger" not in timeline
        assert http.get(f"/ui/contacts/{stranger['id']}").text.count("data-activity=") == 0

    with kit.client(shop, roles=["viewer"], sub="val") as http:
        page = http.get(f"/ui/contacts/{alice['id']}").text
        assert "Second call" in page
        assert "Log activity" not in page


def _upload(http: httpx.Client, path: str, content: bytes) -> httpx.Response:
    return http.post(path, data={"file": encode_upload(content)}, follow_redirects=False)


def test_csv_import_lists_bad_rows_and_imports_all_or_nothing(kit: PluginTestKit) -> None:
    tenant = kit.tenant("csvpages")
    with kit.client(tenant, roles=["member"], sub="sam") as http:
        companies = b"name,domain\r\nAcme,acme.test\r\nInitech,\r\n"
        made = _upload(http, "/ui/companies/import", companies)
        assert made.status_code == 303
        assert made.headers["location"] == "ui/companies?imported=2"
        assert "2 companies imported." in http.get("/ui/companies?imported=2").text

        bad = b"first_name,email,company\r\nAda,ada@x.test,Acme\r\n,nope,\r\nBob,,Nowhere\r\n"
        refused = _upload(http, "/ui/contacts/import", bad)
        assert refused.status_code == 422
        assert "2 row(s) are invalid; nothing was imported" in refused.text
        assert "Row 3, first_name: Field required" in refused.text
        assert "Row 3, email:" in refused.text
        assert "Row 4, company: no company is named &#39;Nowhere&#39;" in refused.text
        assert http.get("/v1/contacts").json()["total"] == 0

        header = _upload(http, "/ui/contacts/import", b"first_name,shoe\r\nAda,42\r\n")
        assert header.status_code == 422
        assert "Unknown columns: shoe" in header.text
        assert "Choose a CSV file" in _upload(http, "/ui/contacts/import", b"").text
        latin = _upload(http, "/ui/contacts/import", "first_name\r\nJosé\r\n".encode("latin-1"))
        assert "the file must be UTF-8" in latin.text
        junk = http.post("/ui/contacts/import", data={"file": "not base64!"})
        assert junk.status_code == 422
        assert "is not a file sent by the shell" in junk.text
        assert http.get("/v1/contacts").json()["total"] == 0

        good = b"first_name,last_name,company\r\nAda,Lovelace,acme\r\n=cmd,Bob,\r\n"
        done = _upload(http, "/ui/contacts/import", good)
        assert done.headers["location"] == "ui/contacts?imported=2"
        assert http.get("/v1/contacts").json()["total"] == 2

        export = http.get("/ui/contacts/export")
        assert export.status_code == 200
        assert export.headers["content-type"].startswith("text/csv")
        assert export.headers["content-disposition"] == 'attachment; filename="contacts.csv"'
        assert ",Lovelace,,," in export.text
        assert "'=cmd" in export.text
        assert "Initech" in http.get("/ui/companies/export").text

    with kit.client(tenant, roles=["viewer"], sub="val") as http:
        page = http.get("/ui/contacts").text
        assert "Export all contacts as CSV" in page
        assert "Import contacts" not in page
        assert _upload(http, "/ui/contacts/import", good).status_code == 403
