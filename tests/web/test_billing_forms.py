"""Billing's page forms through the shell over HTTP (real sign-in, real PostgreSQL, Billing
mounted in-process): invoices from draft to paid, void and uncollectible, credit notes, the PDF;
customers, plans and subscriptions created, changed and deleted; every refusal shows the API's
message on the page and changes nothing."""

from __future__ import annotations

import re
import uuid

import httpx

from plexica.kit.db import Database
from tests.web.conftest import Operator, Site, add_user, csrf_of, set_password, sign_in
from tests.web.test_shell import create_tenant, operator_signed_in

BASE = "/t/p/billing/ui"


async def billing_admin(
    site: Site, db: Database, operator: Operator, me: httpx.AsyncClient
) -> tuple[str, str]:
    """A new tenant with Billing installed (payments due on the day of issue), its admin signed
    in on ``me``; answers the tenant's slug and the session's CSRF token."""
    slug = f"b{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=site.url, timeout=15.0) as ops:
        await operator_signed_in(ops, operator)
        assert (await create_tenant(ops, slug, "Billing Forms Co")).status_code == 303
    password = await set_password(db, f"plexica-{slug}", f"admin@{slug}.example")
    await sign_in(me, f"/login/start?tenant={slug}&next=/t", f"admin@{slug}.example", password)
    token = csrf_of((await me.get("/t/admin/plugins")).text)
    installed = await me.post("/t/admin/plugins", data={"csrf": token, "plugin_id": "billing"})
    assert installed.status_code == 303, installed.text
    terms = await me.post(
        "/t/admin/plugins/billing/settings", data={"csrf": token, "payment_terms_days": "0"}
    )
    assert terms.status_code == 303, terms.text
    return slug, token


def ids(html: str, attribute: str) -> list[str]:
    return re.findall(rf'{attribute}="([0-9a-f-]{{36}})"', html)


async def test_invoice_forms_from_draft_to_paid_and_refusals_change_nothing(
    site: Site, db: Database, operator: Operator, billing_published: None
) -> None:
    async with httpx.AsyncClient(base_url=site.url, timeout=15.0) as me:
        slug, token = await billing_admin(site, db, operator, me)
        page = await me.get("/t/p/billing/customers")
        assert page.status_code == 200
        for link in ("invoices", "customers", "plans", "subscriptions"):
            assert f'href="/t/p/billing/{link}"' in page.text

        bad = await me.post(f"{BASE}/customers", data={"csrf": token, "email": "nope"})
        assert bad.status_code == 422
        assert 'id="e-customer-name"' in bad.text
        assert 'id="e-customer-email"' in bad.text
        made = await me.post(
            f"{BASE}/customers", data={"csrf": token, "name": "Ada Ltd", "currency": "eur"}
        )
        assert made.status_code == 303
        assert made.headers["location"] == "/t/p/billing/customers?done=added"
        listed = (await me.get(made.headers["location"])).text
        assert "Customer added." in listed
        [customer] = ids(listed, "data-customer")

        draft = await me.post(f"{BASE}/invoices", data={"csrf": token, "customer_id": customer})
        assert draft.status_code == 303
        invoice = draft.headers["location"].rsplit("/", 1)[1]
        url = f"{BASE}/invoices/{invoice}"

        empty = await me.post(f"{url}/issue", data={"csrf": token})
        assert empty.status_code == 422
        assert "The invoice was not issued: an invoice without lines cannot be issued" in empty.text
        line = {"csrf": token, "description": "Consulting", "quantity": "2", "tax_rate": "20"}
        refused = await me.post(f"{url}/lines", data={**line, "unit_price": "a lot"})
        assert refused.status_code == 422
        assert 'id="e-line-unit_price"' in refused.text
        assert 'value="Consulting"' in refused.text
        assert "No lines yet." in refused.text
        added = await me.post(f"{url}/lines", data={**line, "unit_price": "50"})
        assert added.headers["location"] == f"{url}?done=line"
        shown = (await me.get(added.headers["location"])).text
        assert "Line added." in shown
        assert "120.00 EUR" in shown

        issued = await me.post(f"{url}/issue", data={"csrf": token})
        assert issued.status_code == 303
        shown = (await me.get(url)).text
        assert 'data-status="open"' in shown
        assert 'data-overdue="true"' in shown  # due on the day of issue: already past
        assert 'class="amount-due">120.00 EUR' in shown

        too_much = await me.post(f"{url}/payments", data={"csrf": token, "amount": "500"})
        assert too_much.status_code == 422
        assert (
            "The payment was not recorded: invoices are paid in full: 120.00 EUR" in too_much.text
        )
        assert 'value="500"' in too_much.text
        over = await me.post(
            f"{url}/credit-notes", data={"csrf": token, "amount": "200", "reason": "Oops"}
        )
        assert over.status_code == 422
        assert "The credit note was not issued: at most 120.00 EUR" in over.text
        shown = (await me.get(url)).text
        assert 'data-status="open"' in shown
        assert 'class="amount-due">120.00 EUR' in shown
        assert "<h3>Payments</h3>" not in shown
        assert "<h3>Credit notes</h3>" not in shown

        credited = await me.post(
            f"{url}/credit-notes", data={"csrf": token, "amount": "20", "reason": "Discount"}
        )
        assert credited.headers["location"] == f"{url}?done=credit"
        assert 'class="amount-due">100.00 EUR' in (await me.get(url)).text
        paid = await me.post(
            f"{url}/payments", data={"csrf": token, "amount": "100.00", "reference": "TX-1"}
        )
        assert paid.headers["location"] == f"{url}?done=payment"
        shown = (await me.get(paid.headers["location"])).text
        assert "Payment recorded." in shown
        assert 'data-status="paid"' in shown
        assert 'data-overdue="false"' in shown
        assert "TX-1" in shown
        again = await me.post(f"{url}/void", data={"csrf": token})
        assert again.status_code == 409
        assert "The invoice was not voided: a paid invoice cannot become void" in again.text

        pdf = await me.get(f"{url}/pdf")
        assert pdf.status_code == 200
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["content-disposition"] == 'attachment; filename="INV-000001.pdf"'
        assert pdf.content.startswith(b"%PDF")

        # A second invoice is voided as a draft, a third marked uncollectible once issued.
        for close in ("void", "uncollectible"):
            other = await me.post(f"{BASE}/invoices", data={"csrf": token, "customer_id": customer})
            other_url = other.headers["location"]
            await me.post(f"{other_url}/lines", data={**line, "unit_price": "1"})
            if close == "uncollectible":
                await me.post(f"{other_url}/issue", data={"csrf": token})
            closed = await me.post(f"{other_url}/{close}", data={"csrf": token})
            assert closed.status_code == 303
            assert f'data-status="{close}"' in (await me.get(other_url)).text
        listed = (await me.get("/t/p/billing/invoices")).text
        assert listed.count("data-invoice=") == 3

        # The customer has invoices: its currency stays, it is not deleted.
        customer_url = f"{BASE}/customers/{customer}"
        moved = await me.post(
            customer_url, data={"csrf": token, "name": "Ada Ltd", "currency": "USD"}
        )
        assert moved.status_code == 409
        assert "The customer was not saved: the currency of a customer with invoices" in moved.text
        confirm = await me.get(f"{customer_url}/delete")
        assert "Delete customer Ada Ltd?" in confirm.text
        kept = await me.post(f"{customer_url}/delete", data={"csrf": token})
        assert kept.status_code == 409
        assert "The customer was not deleted: a customer with invoices" in kept.text
        renamed = await me.post(
            customer_url,
            data={
                "csrf": token,
                "name": "Ada Limited",
                "email": "ada@example.com",
                "currency": "EUR",
            },
        )
        assert renamed.headers["location"] == f"/t/p/billing/ui/customers/{customer}?done=saved"
        shown = (await me.get(renamed.headers["location"])).text
        assert "Customer saved." in shown
        assert "ada@example.com" in shown
        assert "<dd>EUR</dd>" in shown

    # A member (no payments, no plans) sees those pages without their forms; posted anyway,
    # the plugin refuses them.
    email = f"viv@{slug}.example"
    viewer_pw = await add_user(db, site, f"plexica-{slug}", email, {"member"})
    async with httpx.AsyncClient(base_url=site.url, timeout=15.0) as viewer:
        await sign_in(viewer, f"/login/start?tenant={slug}&next=/t", email, viewer_pw)
        shown = (await viewer.get(url)).text
        assert "INV-000001" in shown
        assert "<form" not in shown.split('<main class="px-main"')[1].split("</main>")[0]
        assert "Add a plan" not in (await viewer.get("/t/p/billing/plans")).text
        refused = await viewer.post(
            f"{url}/credit-notes", data={"csrf": csrf_of(shown), "amount": "1", "reason": "x"}
        )
        assert refused.status_code == 403
        assert "not allowed" in refused.text


async def test_plan_and_subscription_forms(
    site: Site, db: Database, operator: Operator, billing_published: None
) -> None:
    async with httpx.AsyncClient(base_url=site.url, timeout=15.0) as me:
        _, token = await billing_admin(site, db, operator, me)
        made = await me.post(f"{BASE}/customers", data={"csrf": token, "name": "Grace Inc"})
        assert made.status_code == 303
        [customer] = ids((await me.get(made.headers["location"])).text, "data-customer")

        plan = {"csrf": token, "name": "Basic", "price": "10", "tax_rate": "20"}
        bad = await me.post(f"{BASE}/plans", data={**plan, "code": "Not A Code", "price": "-1"})
        assert bad.status_code == 422
        assert 'id="e-new-plan-code"' in bad.text
        assert 'id="e-new-plan-price"' in bad.text
        assert "No plans yet." in bad.text
        for code, price in (("basic", "10"), ("pro", "30"), ("spare", "5")):
            added = await me.post(f"{BASE}/plans", data={**plan, "code": code, "price": price})
            assert added.headers["location"] == "/t/p/billing/plans?done=added", added.text
        twice = await me.post(f"{BASE}/plans", data={**plan, "code": "basic"})
        assert twice.status_code == 409
        assert "The plan was not added: a plan with code basic exists" in twice.text
        plans = (await me.get("/t/p/billing/plans")).text
        found = dict(
            re.findall(
                r'<tr data-plan="([a-z]+)">.*?action="ui/plans/([0-9a-f-]{36})"', plans, re.S
            )
        )
        saved = await me.post(
            f"{BASE}/plans/{found['pro']}", data={"csrf": token, "name": "Pro", "price": "35"}
        )
        assert saved.headers["location"] == "/t/p/billing/plans?done=saved"
        assert "35.00 EUR" in (await me.get(saved.headers["location"])).text
        confirm = await me.get(f"{BASE}/plans/{found['spare']}/delete")
        assert "Delete plan spare?" in confirm.text
        gone = await me.post(f"{BASE}/plans/{found['spare']}/delete", data={"csrf": token})
        assert gone.headers["location"] == "/t/p/billing/plans?done=deleted"
        assert 'data-plan="spare"' not in (await me.get(gone.headers["location"])).text

        nobody = await me.post(
            f"{BASE}/subscriptions",
            data={"csrf": token, "customer_id": str(uuid.uuid4()), "plan_id": found["basic"]},
        )
        assert nobody.status_code == 422
        assert "The subscription was not started: customer_id: no such record" in nobody.text
        started = await me.post(
            f"{BASE}/subscriptions",
            data={"csrf": token, "customer_id": customer, "plan_id": found["basic"]},
        )
        assert started.headers["location"] == "/t/p/billing/subscriptions?done=started"
        listed = (await me.get(started.headers["location"])).text
        [sub] = ids(listed, "data-subscription")
        assert "Grace Inc" in listed

        in_use = await me.post(f"{BASE}/plans/{found['basic']}/delete", data={"csrf": token})
        assert in_use.status_code == 409
        assert (
            "The plan was not deleted: a plan with subscriptions cannot be deleted" in in_use.text
        )
        late = await me.post(
            f"{BASE}/subscriptions/{sub}",
            data={"csrf": token, "plan_id": found["pro"], "effective": "2000-01-01"},
        )
        assert late.status_code == 422
        assert 'id="e-sub-' in late.text  # the date, marked on this subscription's form
        changed = await me.post(
            f"{BASE}/subscriptions/{sub}", data={"csrf": token, "plan_id": found["pro"]}
        )
        assert changed.headers["location"] == "/t/p/billing/subscriptions?done=changed"
        row = (await me.get(changed.headers["location"])).text
        assert "<td>Pro</td>" in row
        assert "ends on" not in row

        ending = await me.post(
            f"{BASE}/subscriptions/{sub}/cancel-at-period-end", data={"csrf": token}
        )
        assert ending.headers["location"] == "/t/p/billing/subscriptions?done=ending"
        row = (await me.get(ending.headers["location"])).text
        assert re.search(r'data-status="active".*?· ends on \d{4}-\d\d-\d\d', row, re.S)
        assert "Keep subscription</button>" in row
        assert "Cancel at period end</button>" not in row
        # No plan change while it ends: the API's message, the plan unchanged.
        stuck = await me.post(
            f"{BASE}/subscriptions/{sub}", data={"csrf": token, "plan_id": found["basic"]}
        )
        assert stuck.status_code == 409
        assert "The subscription was not changed: the subscription is canceled at the end" in (
            stuck.text
        )
        kept = await me.post(f"{BASE}/subscriptions/{sub}/keep", data={"csrf": token})
        assert kept.headers["location"] == "/t/p/billing/subscriptions?done=kept"
        row = (await me.get(kept.headers["location"])).text
        assert "Subscription kept: it renews as usual." in row
        assert "ends on" not in row
        assert "<td>Pro</td>" in row
        canceled = await me.post(f"{BASE}/subscriptions/{sub}/cancel", data={"csrf": token})
        assert canceled.headers["location"] == "/t/p/billing/subscriptions?done=canceled"
        assert 'data-status="canceled"' in (await me.get(canceled.headers["location"])).text

        # Never invoiced, its subscription canceled: the customer may go.
        deleted = await me.post(f"{BASE}/customers/{customer}/delete", data={"csrf": token})
        assert deleted.headers["location"] == "/t/p/billing/customers?done=deleted"
        assert "No customers yet." in (await me.get(deleted.headers["location"])).text
