"""``/v1/invites``: a tenant admin invites users by e-mail; the invitee accepts with the link's
token (ADR 0225). ``inspect`` and ``accept`` need no bearer: the token is the capability, and
guessed tokens are throttled per client address with the sign-in throttle."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request

from plexica.identity.api import ReadUsers, WriteUsers, _adapter, _realm_of
from plexica.identity.invites import Actor, InviteInvalidError, Invites
from plexica.identity.schemas import (
    Invite,
    InviteAccept,
    InviteAccepted,
    InviteCreate,
    InviteInfo,
    InviteToken,
)
from plexica.identity.service import now_utc
from plexica.identity.throttle import LoginThrottle, refuse_while_blocked
from plexica.kit.db import request_db
from plexica.kit.state import configured, core_state, started
from plexica_sdk.context import Principal

router = APIRouter(prefix="/v1/invites", tags=["identity"])
THROTTLE_REALM = "plexica-invites"


def _answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {
        410: "The invitation expired, was used or was withdrawn (`invite_expired`, `invite_used`,"
        " `invite_revoked`)",
        502: "The mail server refused the message (`mail_rejected`)",
        503: "The mail server cannot be reached (`mail_unavailable`)",
    }
    return {s: {"description": text[s]} for s in statuses}


def invites_of(request: Request) -> Invites:
    mailer = configured(core_state(request).mailer, "no mailer is configured on this service")
    clock = core_state(request).clock or now_utc
    return Invites(
        request_db(request), _adapter(request), mailer, core_state(request).settings, clock=clock
    )


InvitesDep = Annotated[Invites, Depends(invites_of)]


def _actor(principal: Principal) -> Actor:
    return Actor(principal.actor, _realm_of(principal), principal.tenant_id)


@router.post(
    "", status_code=201, summary="Invite a user by e-mail (a link to set their password)",
    responses=_answers(502, 503),
)  # fmt: skip
async def create_invite(principal: WriteUsers, body: InviteCreate, invites: InvitesDep) -> Invite:
    return await invites.create(_actor(principal), body.email, body.roles)


@router.get("", summary="Invitations of the caller's tenant not yet accepted or revoked")
async def list_invites(principal: ReadUsers, invites: InvitesDep) -> list[Invite]:
    return await invites.pending(_realm_of(principal))


@router.post(
    "/{invite_id}/resend", summary="Send a new link; the previous one stops working",
    responses=_answers(502, 503),
)  # fmt: skip
async def resend_invite(principal: WriteUsers, invite_id: UUID, invites: InvitesDep) -> Invite:
    return await invites.resend(_actor(principal), invite_id)


@router.delete("/{invite_id}", summary="Withdraw an invitation (the invited user is removed)")
async def revoke_invite(principal: WriteUsers, invite_id: UUID, invites: InvitesDep) -> Invite:
    return await invites.revoke(_actor(principal), invite_id)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _throttled(request: Request) -> LoginThrottle:
    throttle = started(core_state(request).login_throttle, "login_throttle")
    address = _address(request)
    await refuse_while_blocked(
        throttle, THROTTLE_REALM, address, address, "invalid invitation links"
    )
    return throttle


async def _count_failure(
    request: Request, throttle: LoginThrottle, exc: InviteInvalidError
) -> None:
    """Only unknown tokens count: they are guesses. An expired or used link is a real one."""
    if exc.status == 404:
        address = _address(request)
        await throttle.failed(THROTTLE_REALM, address, address)


@router.post(
    "/inspect", summary="What an invitation link is for (no bearer: the token is the key)",
    responses=_answers(410),
)  # fmt: skip
async def inspect_invite(request: Request, body: InviteToken, invites: InvitesDep) -> InviteInfo:
    throttle = await _throttled(request)
    try:
        return await invites.inspect(body.token)
    except InviteInvalidError as exc:
        await _count_failure(request, throttle, exc)
        raise


@router.post(
    "/accept", summary="Accept an invitation: set the password; the link is then used up",
    responses=_answers(410),
)  # fmt: skip
async def accept_invite(
    request: Request, body: InviteAccept, invites: InvitesDep
) -> InviteAccepted:
    throttle = await _throttled(request)
    try:
        return await invites.accept(body.token, body.password)
    except InviteInvalidError as exc:
        await _count_failure(request, throttle, exc)
        raise
