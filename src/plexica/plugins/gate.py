"""Which requests may reach a mounted plugin: those of tenants where it is installed and active.

The embedded gateway asks ``InstallationGate.allows`` for every ``/api/plugins/<slug>`` request;
the answer is read from the database each time, so disabling a plugin stops traffic at once.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import Scope

from plexica.kit.state import state_of
from plexica.plugins import service
from plexica_sdk.auth import bearer_of
from plexica_sdk.errors import PlexicaError

OPEN_PATHS = frozenset({"/health"})


class InstallationGate:
    def __init__(self, core: FastAPI) -> None:
        self.core = core

    async def allows(self, slug: str, path: str, scope: Scope) -> bool:
        if path in OPEN_PATHS:
            return True
        core = state_of(self.core)
        verifier, db = core.verifier, core.db
        token = _bearer(scope)
        if verifier is None or db is None or token is None:
            return False
        try:
            principal = await verifier.verify(token)
        except PlexicaError:
            return False
        if principal.tenant_id is None:
            return False
        async with db.session() as session:
            return await service.is_active(session, principal.tenant_id, slug)


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            token = bearer_of(value.decode("latin-1"))
            return None if token is None else token.strip()
    return None
