"""The first admin's invitation is the last provisioning step (ADR 0242): exactly one live link,
also when the process dies half-way through the step and the reconciler resumes the saga."""

from __future__ import annotations

import contextlib

from plexica.identity import service as identity
from plexica.identity.builtin import BuiltinIdentity, RealmStep
from plexica.identity.first_admin import AdminInviteStep, FirstAdmin
from plexica.identity.invites import Invites
from plexica.kit.db import Database
from plexica.kit.mail import Mail
from plexica.kit.provisioning import ProvisioningStep, TenantRef
from plexica.mail.service import DevMailbox, latest
from plexica.settings import Settings
from plexica.tenants.reconciler import Reconciler
from plexica.tenants.schemas import State, TenantCreate
from plexica.tenants.service import TenantService
from tests.support.smtp import LINK_RE
from tests.tenants.conftest import new_slug


class Crash(BaseException):
    """The process dies: nothing after it runs, no compensation."""


class DyingMailbox(DevMailbox):
    """Hands the mail over, then the process dies before the invite's row commits."""

    dying = True

    async def send(self, mail: Mail) -> None:
        await super().send(mail)
        if self.dying:
            raise Crash


class DiesAfter:
    """The wrapped step finishes (and commits), then the process dies before it is marked done."""

    def __init__(self, step: ProvisioningStep) -> None:
        self.step, self.name, self.dying = step, step.name, True

    async def apply(self, tenant: TenantRef) -> None:
        await self.step.apply(tenant)
        if self.dying:
            raise Crash

    async def undo(self, tenant: TenantRef) -> None:
        await self.step.undo(tenant)

    async def purge(self, tenant: TenantRef) -> None:
        await self.step.purge(tenant)


def _first_admin(db: Database, settings: Settings, mailbox: DevMailbox) -> FirstAdmin:
    adapter = BuiltinIdentity(db, settings.public_base_url)
    return FirstAdmin(Invites(db, adapter, mailbox, settings))


def _service(db: Database, admin: FirstAdmin, last: ProvisioningStep) -> TenantService:
    return TenantService(db, [RealmStep(admin.invites.adapter, db), last])


def _body(slug: str) -> TenantCreate:
    return TenantCreate(slug=slug, name="First", admin_email=f"Boss@{slug}.example")


async def _links(db: Database, email: str) -> list[str]:
    """The tokens of every invitation mail to ``email``, oldest first."""
    mails = await latest(db, recipient=email)
    return [m[1] for mail in reversed(mails) for m in LINK_RE.findall(mail.body)]


async def _live(admin: FirstAdmin, tokens: list[str]) -> list[str]:
    live = []
    for token in tokens:
        with contextlib.suppress(Exception):
            await admin.invites.inspect(token)
            live.append(token)
    return live


async def test_provisioning_sends_the_first_admin_one_invitation(
    db: Database, settings: Settings
) -> None:
    admin = _first_admin(db, settings, DevMailbox(db))
    service = _service(db, admin, AdminInviteStep(admin))
    slug = new_slug("fa")
    tenant = await service.create(_body(slug))
    email = f"boss@{slug}.example"
    tokens = await _links(db, email)
    assert len(tokens) == 1
    info = await admin.invites.inspect(tokens[0])
    assert (info.email, info.tenant_slug) == (email, slug)
    status = await admin.status(tenant.ref)
    assert (status.status, status.invite and status.invite.roles) == ("pending", ["tenant_admin"])

    # Running the step again (a retry) sends nothing more.
    await AdminInviteStep(admin).apply(tenant.ref)
    assert len(await _links(db, email)) == 1


async def test_a_crash_after_the_invite_committed_sends_no_second_one(
    db: Database, settings: Settings
) -> None:
    admin = _first_admin(db, settings, DevMailbox(db))
    step = DiesAfter(AdminInviteStep(admin))
    service = _service(db, admin, step)
    slug = new_slug("fc")
    with contextlib.suppress(Crash):
        await service.create(_body(slug))
    tenant = await service.get(slug)
    assert tenant.state is State.PROVISIONING
    step.dying = False
    assert tenant.id in await Reconciler(service).pass_once()
    assert (await service.get(slug)).state is State.ACTIVE
    tokens = await _links(db, f"boss@{slug}.example")
    assert len(tokens) == 1
    assert await _live(admin, tokens) == tokens


async def test_a_crash_while_mailing_leaves_exactly_one_live_link(
    db: Database, settings: Settings
) -> None:
    mailbox = DyingMailbox(db)
    admin = _first_admin(db, settings, mailbox)
    service = _service(db, admin, AdminInviteStep(admin))
    slug = new_slug("fm")
    with contextlib.suppress(Crash):
        await service.create(_body(slug))
    mailbox.dying = False
    tenant = await service.get(slug)
    assert tenant.id in await Reconciler(service).pass_once()
    tokens = await _links(db, f"boss@{slug}.example")
    # The first mail left, but its row never committed: its link is dead, the second one works.
    assert len(tokens) == 2
    assert await _live(admin, tokens) == tokens[1:]
    assert (await admin.status(tenant.ref)).status == "pending"


async def test_a_failed_provisioning_revokes_the_link_and_a_retry_sends_a_new_one(
    db: Database, settings: Settings
) -> None:
    admin = _first_admin(db, settings, DevMailbox(db))

    class FailsAfter(DiesAfter):
        async def apply(self, tenant: TenantRef) -> None:
            await self.step.apply(tenant)
            if self.dying:
                raise RuntimeError("the step after the invitation fails")

    step = FailsAfter(AdminInviteStep(admin))
    service = _service(db, admin, step)
    slug = new_slug("ff")
    with contextlib.suppress(Exception):
        await service.create(_body(slug))
    assert (await service.get(slug)).state is State.FAILED
    email = f"boss@{slug}.example"
    assert await _live(admin, await _links(db, email)) == []
    step.dying = False
    tenant = await service.retry(slug)
    tokens = await _links(db, email)
    assert len(tokens) == 2
    assert await _live(admin, tokens) == tokens[1:]
    # The realm was made again, and its admin accepts the new link.
    await admin.invites.accept(tokens[1], "a-good-long-passphrase")
    assert (await admin.status(tenant.ref)).status == "accepted"
    async with db.session() as session:
        signed_in = await identity.authenticate(
            session, tenant.ref.realm, email, "a-good-long-passphrase"
        )
    assert signed_in is not None
