"""What the revocation list refuses, and that cached verifiers ask it on every hit (pure logic:
the loader is a list in memory; propagation is tested on real servers in tests/identity)."""

from __future__ import annotations

import time

import pytest

from plexica_sdk.auth import CachingVerifier
from plexica_sdk.context import Principal
from plexica_sdk.errors import UnauthenticatedError
from plexica_sdk.revocation import (
    CLIENT,
    REALM,
    SESSION,
    SUBJECT,
    Revocation,
    RevocationList,
    Stamp,
    TenantSuspendedError,
)
from tests.support.tokens import StaticIssuers

ISS = "http://x.test/realms/plexica-acme"


def stamp(sub: str = "u1", iat: int = 100, sid: str | None = None, azp: str | None = None) -> Stamp:
    claims: dict[str, object] = {"sub": sub, "iat": iat}
    if sid:
        claims["sid"] = sid
    if azp:
        claims["azp"] = azp
    return Stamp.of(ISS, claims)


def listed(*entries: Revocation) -> RevocationList:
    async def load() -> list[Revocation]:
        return list(entries)

    return RevocationList(load)


async def test_each_kind_refuses_what_it_names() -> None:
    revocations = listed(
        Revocation("plexica-acme", SUBJECT, "u1", 200),
        Revocation("plexica-acme", SESSION, "s1", 0),
        Revocation("plexica-acme", CLIENT, "svc", 300),
        Revocation("plexica-gone", REALM, "", 0),
    )
    await revocations.load()
    assert stamp().realm == "plexica-acme"
    assert revocations.check(stamp(iat=199)) == "revoked"
    assert revocations.check(stamp(iat=200)) is None  # issued at the cut-off: a new token
    assert revocations.check(stamp(sub="u2", iat=1)) is None
    assert revocations.check(stamp(sub="u2", iat=500, sid="s1")) == "revoked"
    assert revocations.check(stamp(sub="u2", iat=299, azp="svc")) == "revoked"
    assert revocations.check(stamp(sub="u2", iat=300, azp="svc")) is None
    other = Stamp.of("http://x.test/realms/plexica-gone", {"sub": "u9", "iat": 10**10})
    assert revocations.check(other) == "suspended"


async def test_noted_entries_survive_a_reload_that_read_before_the_commit() -> None:
    revocations = listed()
    await revocations.load()
    revocations.note(Revocation("plexica-acme", SUBJECT, "u1", 200))
    assert revocations.check(stamp(iat=150)) == "revoked"
    await revocations.load()
    assert revocations.check(stamp(iat=150)) == "revoked"
    # A realm's suspension is lifted again: it only comes from the table, never from a note.
    revocations.note(Revocation("plexica-acme", REALM, "", 0))
    assert revocations.check(stamp(sub="u3")) is None


async def test_caching_verifier_checks_every_hit() -> None:
    issuers = StaticIssuers()
    issuers.add("plexica-acme", None, None)
    entries: list[Revocation] = []

    async def load() -> list[Revocation]:
        return list(entries)

    revocations = RevocationList(load)
    verifier = CachingVerifier(issuers.verifier(), revocations=revocations)
    token = issuers.token("plexica-acme", sub="u1", sid="s-1")
    principal: Principal = await verifier.verify(token)
    assert principal.subject == "u1"
    assert (await verifier.verify(token)).subject == "u1"  # remembered
    entries.append(Revocation("plexica-acme", SESSION, "s-1", int(time.time())))
    await revocations.load()
    with pytest.raises(UnauthenticatedError):
        await verifier.verify(token)
    entries[:] = [Revocation("plexica-acme", REALM, "", 0)]
    await revocations.load()
    with pytest.raises(TenantSuspendedError):
        await verifier.verify(token)
    entries.clear()
    await revocations.load()
    assert (await verifier.verify(token)).subject == "u1"
