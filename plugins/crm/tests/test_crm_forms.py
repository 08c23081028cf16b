"""The CRM's page forms (what the shell forwards) through the SDK test kit: a real local Plexica
and PostgreSQL, the plugin over HTTP with real tokens. Imports only the SDK and the plugin."""

from __future__ import annotations

import re

import pytest

from plexica_sdk.testing import KitTenant, PluginTestKit


@pytest.fixture(scope="module")
def shop(kit: PluginTestKit) -> KitTenant:
    return kit.tenant("formshop")


def test_contact_form_errors_redirect_and_escaping(kit: PluginTestKit, shop: KitTenant) -> None:
    with kit.client(shop, roles=["member"], sub="sam") as http:
        bad = http.post("/ui/contacts", data={"first_name": "Ada", "email": "nope"})
        assert bad.status_code == 422
        assert '<span class="px-field-error" id="e-email">Enter an e-mail address' in bad.text
        assert 'value="Ada"' in bad.text
        assert http.get("/v1/contacts").json()["total"] == 0
        blank = http.post("/ui/contacts", data={"first_name": " "})
        assert blank.status_code == 422
        assert 'id="e-first_name"' in blank.text

        made = http.post(
            "/ui/contacts",
            data={"first_name": "<script>x()</script>", "email": "ada@example.com"},
            follow_redirects=False,
        )
        assert made.status_code == 303
        location = made.headers["location"]
        assert re.fullmatch(r"ui/contacts\?added=[0-9a-f-]{36}", location), location
        page = http.get("/" + location)
        assert "Contact &lt;script&gt;x()&lt;/script&gt; added." in page.text
        assert "<script>x()</script>" not in page.text

    with kit.client(shop, roles=["viewer"], sub="val") as http:
        refused = http.post("/ui/contacts", data={"first_name": "Eve"})
        assert refused.status_code == 403


def test_deal_form_and_moves_on_the_board(kit: PluginTestKit, shop: KitTenant) -> None:
    with kit.client(shop, roles=["member"], sub="sam") as http:
        bad = http.post("/ui/deals", data={"title": "", "amount": "-5"})
        assert bad.status_code == 422
        assert 'id="e-title"' in bad.text
        assert 'id="e-amount"' in bad.text
        made = http.post(
            "/ui/deals", data={"title": "Board deal", "amount": "10"}, follow_redirects=False
        )
        assert made.status_code == 303
        deal_id = made.headers["location"].removeprefix("ui/deals#deal-")
        moved = http.post(
            f"/ui/deals/{deal_id}/stage", data={"stage_id": "won"}, follow_redirects=False
        )
        assert moved.status_code == 303
        assert http.get(f"/v1/deals/{deal_id}").json()["stage_id"] == "won"
        board = http.get("/ui/deals").text
        won = board.index('data-stage="won"')
        assert won < board.index('data-deal="Board deal"') < board.index('data-stage="lost"')
        nowhere = http.post(f"/ui/deals/{deal_id}/stage", data={"stage_id": "nowhere"})
        assert nowhere.status_code == 422
        assert "Choose one of the stages." in nowhere.text
