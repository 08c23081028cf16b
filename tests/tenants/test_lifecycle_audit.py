"""Every step of a tenant's lifecycle made through the operator API is in the audit log, with
the operator as actor, the tenant and its state before and after (issue 23)."""

from __future__ import annotations

import uuid

import httpx

from plexica.audit import service as audit
from plexica.audit.schemas import AuditFilter, TextMatch
from plexica.kit.db import Database
from plexica_sdk.context import SUPER_ADMIN, Principal
from tests.support.tokens import StaticIssuers
from tests.tenants.conftest import new_slug
from tests.tenants.test_api import create


async def test_the_operator_s_lifecycle_steps_are_audited(
    api: httpx.AsyncClient, issuers: StaticIssuers, db: Database
) -> None:
    op = issuers.operator_headers()
    slug = new_slug()
    tenant = await create(api, issuers, slug)
    for step in ("suspend", "reactivate"):
        r = await api.post(f"/v1/tenants/{slug}/{step}", headers=op)
        assert r.status_code == 200, r.text
    gone = await api.delete(f"/v1/tenants/{slug}", headers=op)
    assert gone.status_code == 200, gone.text

    reader = Principal(subject="ops", issuer="test", roles=frozenset({SUPER_ADMIN}))
    async with db.session() as s:
        page = await audit.query(s, reader, where=AuditFilter(target=TextMatch(f"tenant:{slug}")))
    entries = list(reversed(page.items))
    assert [e.action for e in entries] == [
        "tenant.created", "tenant.suspended", "tenant.reactivated", "tenant.deletion_started",
        "tenant.deleted",
    ]  # fmt: skip
    assert {e.tenant_id for e in entries} == {uuid.UUID(tenant["id"])}
    assert "platform" not in {e.actor for e in entries}  # the operator's token names them
    assert entries[0].after["admin_email"] == "it@initech.example"
    assert (entries[1].before, entries[1].after) == ({"state": "active"}, {"state": "suspended"})
