"""Invitations by e-mail (ADR 0225) against a real SMTP server (aiosmtpd on loopback) and the
core served by uvicorn: the mail arrives with the link, the link sets a password once, expired
(by an injected clock), reused, revoked and replaced links are refused, and an SMTP outage
leaves nothing half-made."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text

from plexica.app import create_app
from plexica.identity.bootstrap import OperatorCredentials
from plexica.identity.client import LoginError
from plexica.identity.names import OPERATOR_REALM
from plexica.identity.throttle import MemoryThrottle
from plexica.kit.db import Database
from plexica.kit.mail import Mailer, SmtpMailer
from plexica.kit.ports import free_port
from plexica.kit.provisioning import TenantRef
from plexica.kit.state import started, state_of
from plexica.settings import Settings
from tests.identity.conftest import Live, bearer, login, new_tenant, provision, set_password
from tests.support.smtp import REFUSED_DOMAIN, Inbox, smtp_server

PASSWORD = "a-good-long-passphrase"


@dataclass
class Clock:
    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Platform:
    live: Live
    app: Any
    inbox: Inbox
    clock: Clock

    @property
    def url(self) -> str:
        return self.live.url

    def use_mailer(self, mailer: Mailer) -> Mailer:
        before = started(state_of(self.app).mailer, "mailer")
        state_of(self.app).mailer = mailer
        return before


@pytest.fixture(scope="module")
def platform(database_url: str) -> Iterator[Platform]:
    with smtp_server() as (smtp_url, inbox):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        settings = Settings(
            database_url=database_url, public_url=url, port=port, smtp_url=smtp_url,
            smtp_timeout_seconds=5, reconcile_seconds=0,
        )  # fmt: skip
        app = create_app(settings)
        clock = Clock()
        state_of(app).clock = clock
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the core app did not start")
            time.sleep(0.02)
        try:
            yield Platform(Live(url, settings), app, inbox, clock)
        finally:
            server.should_exit = True
            thread.join(10)


@pytest.fixture(autouse=True)
def _own_throttle(platform: Platform) -> None:
    """Each test starts with no failed attempts counted against 127.0.0.1."""
    state_of(platform.app).login_throttle = MemoryThrottle()


async def _admin(
    p: Platform, db: Database, http: httpx.AsyncClient
) -> tuple[TenantRef, dict[str, str]]:
    tenant = await provision(db, p.live)
    password = await set_password(db, tenant.realm, tenant.admin_email)
    return tenant, bearer(await login(http, p.live, tenant.realm, tenant.admin_email, password))


async def _invite(p: Platform, http: httpx.AsyncClient, h: dict[str, str], email: str) -> Any:
    made = await http.post(p.url + "/v1/invites", headers=h, json={"email": email})
    assert made.status_code == 201, made.text
    return made.json()


async def _accept(p: Platform, http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post(
        p.url + "/v1/invites/accept", json={"token": token, "password": PASSWORD}
    )


async def _invite_actions(p: Platform, http: httpx.AsyncClient, h: dict[str, str]) -> list[str]:
    items = (await http.get(p.url + "/v1/audit", headers=h)).json()["items"]
    return [e["action"] for e in items if e["action"].startswith("identity.invite.")]


def _code(answer: httpx.Response) -> str:
    return str(answer.json()["error"]["code"])


async def test_invite_mail_link_sets_the_password_once(
    platform: Platform, db: Database, http: httpx.AsyncClient
) -> None:
    tenant, h = await _admin(platform, db, http)
    email = f"new@{tenant.slug}.example"
    invite = await _invite(platform, http, h, email)
    assert invite["status"] == "pending"
    assert invite["roles"] == ["member"]

    # The mail went over SMTP, from the configured sender, with the link to the shell.
    mail = platform.inbox.to(email)[-1]
    assert mail["Subject"] == "Your invitation to Plexica"
    assert "noreply@plexica.local" in mail["From"]
    link, token = platform.inbox.last_link(email)
    assert link == f"{platform.url}/invite/{token}"

    # Until accepted the user exists, disabled, and cannot sign in.
    users = {u["email"]: u for u in (await http.get(platform.url + "/v1/users", headers=h)).json()}
    assert users[email]["enabled"] is False
    with pytest.raises(LoginError):
        await login(http, platform.live, tenant.realm, email, PASSWORD)
    listed = (await http.get(platform.url + "/v1/invites", headers=h)).json()
    assert [i["id"] for i in listed] == [invite["id"]]

    info = await http.post(platform.url + "/v1/invites/inspect", json={"token": token})
    assert info.status_code == 200, info.text
    assert info.json()["email"] == email
    assert info.json()["tenant_slug"] == tenant.slug

    short = await http.post(
        platform.url + "/v1/invites/accept", json={"token": token, "password": "short"}
    )
    assert short.status_code == 422
    accepted = await _accept(platform, http, token)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"email": email, "tenant_slug": tenant.slug}

    member = await login(http, platform.live, tenant.realm, email, PASSWORD)
    me = (await http.get(platform.url + "/v1/me", headers=bearer(member))).json()
    assert me["roles"] == ["member"]

    again = await _accept(platform, http, token)
    assert again.status_code == 410
    assert _code(again) == "invite_used"
    assert (await http.get(platform.url + "/v1/invites", headers=h)).json() == []
    unknown = await _accept(platform, http, "not-a-token-anyone-issued")
    assert unknown.status_code == 404
    assert _code(unknown) == "invite_not_found"

    # A member cannot invite.
    denied = await http.post(
        platform.url + "/v1/invites", headers=bearer(member), json={"email": "x@example.com"}
    )
    assert denied.status_code == 403

    actions = await _invite_actions(platform, http, h)
    assert actions[:2] == ["identity.invite.accepted", "identity.invite.created"]
    async with db.session() as s:
        rows = await s.execute(
            text(
                "SELECT type, data FROM platform.outbox WHERE tenant_id = :t"
                " AND type LIKE 'plexica.user.%' ORDER BY seq"
            ),
            {"t": tenant.id},
        )
        events = [(r.type, r.data) for r in rows]
        stored = (
            await s.execute(
                text("SELECT token_hash FROM platform.invites WHERE id = :id"),
                {"id": invite["id"]},
            )
        ).scalar_one()
    assert [t for t, _ in events] == ["plexica.user.invited", "plexica.user.invite_accepted"]
    assert events[0][1]["invite_id"] == invite["id"]
    assert stored == hashlib.sha256(token.encode()).hexdigest()  # only the hash is kept


async def test_expired_link_is_refused_and_resend_replaces_it(
    platform: Platform, db: Database, http: httpx.AsyncClient
) -> None:
    tenant, h = await _admin(platform, db, http)
    email = f"late@{tenant.slug}.example"
    invite = await _invite(platform, http, h, email)
    _, old = platform.inbox.last_link(email)
    try:
        platform.clock.offset = timedelta(hours=72, seconds=1)
        expired = await _accept(platform, http, old)
        assert expired.status_code == 410
        assert _code(expired) == "invite_expired"
        listed = (await http.get(platform.url + "/v1/invites", headers=h)).json()
        assert listed[0]["status"] == "expired"

        resent = await http.post(platform.url + f"/v1/invites/{invite['id']}/resend", headers=h)
        assert resent.status_code == 200, resent.text
        assert resent.json()["status"] == "pending"
        assert resent.json()["sent_count"] == 2
    finally:
        platform.clock.offset = timedelta()
    assert len(platform.inbox.to(email)) == 2
    _, new = platform.inbox.last_link(email)
    assert new != old
    dead = await _accept(platform, http, old)
    assert dead.status_code == 404
    assert _code(dead) == "invite_not_found"
    assert (await _accept(platform, http, new)).status_code == 200
    await login(http, platform.live, tenant.realm, email, PASSWORD)
    used = await http.post(platform.url + f"/v1/invites/{invite['id']}/resend", headers=h)
    assert used.status_code == 409
    assert _code(used) == "invite_not_pending"


async def test_the_first_admin_is_invited_at_provisioning_and_resent_until_accepted(
    platform: Platform, http: httpx.AsyncClient, operator: OperatorCredentials
) -> None:
    op = bearer(await login(http, platform.live, OPERATOR_REALM, operator.email, operator.password))
    slug = new_tenant("fa").slug
    email, base = f"boss@{slug}.example", f"{platform.url}/v1/tenants/{slug}/admin-invite"
    made = await http.post(
        platform.url + "/v1/tenants", headers=op,
        json={"slug": slug, "name": "First", "admin_email": email.upper()},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    assert len(platform.inbox.to(email)) == 1
    link, old = platform.inbox.last_link(email)
    assert link.startswith(platform.url)
    shown = (await http.get(base, headers=op)).json()
    assert (shown["status"], shown["invite"]["roles"]) == ("pending", ["tenant_admin"])

    # Sent again: a new link, the old one is unknown from now on.
    resent = await http.post(base, headers=op)
    assert resent.status_code == 200, resent.text
    assert resent.json()["sent_count"] == 2
    assert len(platform.inbox.to(email)) == 2
    _, new = platform.inbox.last_link(email)
    dead = await _accept(platform, http, old)
    assert (dead.status_code, _code(dead)) == (404, "invite_not_found")
    assert (await _accept(platform, http, new)).status_code == 200
    h = bearer(await login(http, platform.live, f"plexica-{slug}", email, PASSWORD))
    assert (await http.get(base, headers=op)).json()["status"] == "accepted"

    # Accepted: not sent again, and the tenant admin sees who invited them and who resent.
    again = await http.post(base, headers=op)
    assert (again.status_code, _code(again)) == (409, "invite_not_pending")
    assert len(platform.inbox.to(email)) == 2
    items = (await http.get(platform.url + "/v1/audit", headers=h)).json()["items"]
    actors = {e["action"]: e["actor"] for e in items if e["action"].startswith("identity.invite")}
    assert actors["identity.invite.created"] == "provisioning"
    assert actors["identity.invite.resent"] == operator.email


async def test_the_first_admin_is_not_invited_again_while_the_tenant_is_not_active(
    platform: Platform, http: httpx.AsyncClient, operator: OperatorCredentials
) -> None:
    op = bearer(await login(http, platform.live, OPERATOR_REALM, operator.email, operator.password))
    slug = new_tenant("fs").slug
    made = await http.post(
        platform.url + "/v1/tenants", headers=op,
        json={"slug": slug, "name": "Paused", "admin_email": f"boss@{slug}.example"},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    assert (await http.post(f"{platform.url}/v1/tenants/{slug}/suspend", headers=op)).is_success
    refused = await http.post(f"{platform.url}/v1/tenants/{slug}/admin-invite", headers=op)
    assert (refused.status_code, _code(refused)) == (409, "tenant_not_active")
    assert len(platform.inbox.to(f"boss@{slug}.example")) == 1


async def test_revoked_link_is_refused_and_the_user_removed(
    platform: Platform, db: Database, http: httpx.AsyncClient
) -> None:
    tenant, h = await _admin(platform, db, http)
    email = f"gone@{tenant.slug}.example"
    invite = await _invite(platform, http, h, email)
    _, token = platform.inbox.last_link(email)
    revoked = await http.delete(platform.url + f"/v1/invites/{invite['id']}", headers=h)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    refused = await _accept(platform, http, token)
    assert refused.status_code == 410
    assert _code(refused) == "invite_revoked"
    users = [u["email"] for u in (await http.get(platform.url + "/v1/users", headers=h)).json()]
    assert email not in users
    assert (await http.get(platform.url + "/v1/invites", headers=h)).json() == []
    twice = await http.delete(platform.url + f"/v1/invites/{invite['id']}", headers=h)
    assert twice.status_code == 409
    # The address can be invited again.
    await _invite(platform, http, h, email)
    actions = await _invite_actions(platform, http, h)
    assert actions[:3] == [
        "identity.invite.created",
        "identity.invite.revoked",
        "identity.invite.created",
    ]


async def test_smtp_down_leaves_nothing_half_made(
    platform: Platform, db: Database, http: httpx.AsyncClient
) -> None:
    tenant, h = await _admin(platform, db, http)
    email = f"wait@{tenant.slug}.example"
    dead = SmtpMailer(f"smtp://127.0.0.1:{free_port()}", "noreply@plexica.local", 5)
    before = platform.use_mailer(dead)
    try:
        failed = await http.post(platform.url + "/v1/invites", headers=h, json={"email": email})
    finally:
        platform.use_mailer(before)
    assert failed.status_code == 503, failed.text
    assert _code(failed) == "mail_unavailable"
    assert failed.headers["Retry-After"]
    users = [u["email"] for u in (await http.get(platform.url + "/v1/users", headers=h)).json()]
    assert email not in users
    assert (await http.get(platform.url + "/v1/invites", headers=h)).json() == []

    # A server that refuses the recipient: 502, and nothing kept either.
    refused = await http.post(
        platform.url + "/v1/invites", headers=h, json={"email": f"x@{REFUSED_DOMAIN}"}
    )
    assert refused.status_code == 502, refused.text
    assert _code(refused) == "mail_rejected"
    assert (await http.get(platform.url + "/v1/invites", headers=h)).json() == []

    # With the server back the same address is invited; a failed resend keeps the old link.
    invite = await _invite(platform, http, h, email)
    _, token = platform.inbox.last_link(email)
    before = platform.use_mailer(dead)
    try:
        resend = await http.post(platform.url + f"/v1/invites/{invite['id']}/resend", headers=h)
    finally:
        platform.use_mailer(before)
    assert resend.status_code == 503
    assert (await _accept(platform, http, token)).status_code == 200


async def test_bad_links_are_throttled_per_address(
    platform: Platform, http: httpx.AsyncClient
) -> None:
    codes = [
        (await http.post(platform.url + "/v1/invites/inspect", json={"token": "nope"}))
        for _ in range(6)
    ]
    assert [c.status_code for c in codes] == [404] * 5 + [429]
    assert _code(codes[-1]) == "too_many_attempts"
    assert codes[-1].headers["Retry-After"]


async def test_accepting_an_invite_follows_the_tenant_password_policy(
    platform: Platform, db: Database, http: httpx.AsyncClient
) -> None:
    tenant, h = await _admin(platform, db, http)
    policy = platform.url + "/v1/security-policy"
    rules = {**(await http.get(policy, headers=h)).json(), "password_min_length": 30}
    assert (await http.put(policy, headers=h, json=rules)).status_code == 200
    email = f"newcomer@{tenant.slug}.example"
    await _invite(platform, http, h, email)
    _, token = platform.inbox.last_link(email)
    info = await http.post(platform.url + "/v1/invites/inspect", json={"token": token})
    assert info.json()["password_min_length"] == 30

    for weak, why in (
        (PASSWORD, "Use 30 to 256 characters."),
        ("the-newcomer-is-here-with-a-long-one", "Do not use your e-mail address"),
    ):
        answer = await http.post(
            platform.url + "/v1/invites/accept", json={"token": token, "password": weak}
        )
        assert answer.status_code == 422, answer.text
        detail = answer.json()["error"]["details"][0]
        assert detail["loc"][-1] == "password"
        assert detail["msg"].startswith(why)
    # Nothing changed: the link still works, the user is still disabled.
    users = {u["email"]: u for u in (await http.get(platform.url + "/v1/users", headers=h)).json()}
    assert users[email]["enabled"] is False
    good = "a-passphrase-long-enough-for-thirty"
    done = await http.post(
        platform.url + "/v1/invites/accept", json={"token": token, "password": good}
    )
    assert done.status_code == 200, done.text
    await login(http, platform.live, tenant.realm, email, good)
