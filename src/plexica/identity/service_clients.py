"""Service clients: confidential clients whose client-credentials tokens are service tokens.

A tenant admin manages the clients of their tenant's realm, an operator those of the operator
realm. The provider (built-in or Keycloak) holds the client; ``platform.service_clients`` is the
registry that lists them and keeps each one's cut-off, which token verification checks (ADR
0016). Services take the caller's session and never commit.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from plexica.audit import service as audit
from plexica.identity import repository, revocation, service
from plexica.identity.adapter import IdentityAdapter
from plexica.identity.schemas import ServiceClient, ServiceClientCreate, ServiceClientSecret
from plexica_sdk.errors import ConflictError, NotFoundError, PlexicaError
from plexica_sdk.revocation import RevocationList

# Clients every realm has (ours and Keycloak's own): not service clients, never touched here.
RESERVED = frozenset(
    {
        service.WEB_CLIENT,
        service.CLI_CLIENT,
        "account",
        "account-console",
        "admin-cli",
        "broker",
        "realm-management",
        "security-admin-console",
    }
)


class ServiceClientNotFoundError(NotFoundError):
    code = "service_client_not_found"


class ServiceClientExistsError(ConflictError):
    code = "service_client_exists"


class ReservedClientIdError(PlexicaError):
    status, code = 422, "reserved_client_id"


def to_model(row: dict[str, Any]) -> ServiceClient:
    return ServiceClient(
        client_id=row["client_id"],
        description=row["description"],
        roles=sorted(row["roles"]),
        state=row["state"],
        revoked_before=row["revoked_before"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


# Tokens carry whole seconds: one got from now on (with a new secret, or once re-enabled)
# must not fall under the cut-off.
_after = revocation.wait_for


def _target(client_id: str) -> str:
    return f"service_client:{client_id}"


class ServiceClients:
    """The operations of one realm's service clients, on behalf of ``actor``."""

    def __init__(  # noqa: PLR0917 - the realm, who acts, and the collaborators
        self,
        session: AsyncSession,
        adapter: IdentityAdapter,
        revocations: RevocationList | None,
        realm: str,
        tenant_id: UUID | None,
        actor: str,
    ) -> None:
        self.session = session
        self.adapter = adapter
        self.revocations = revocations
        self.realm = realm
        self.tenant_id = tenant_id
        self.actor = actor

    async def list(self) -> list[ServiceClient]:
        return [
            to_model(r) for r in await repository.list_service_clients(self.session, self.realm)
        ]

    async def get(self, client_id: str) -> ServiceClient:
        row = await repository.service_client(self.session, self.realm, client_id)
        if row is None:
            raise ServiceClientNotFoundError("no such service client")
        return to_model(row)

    async def create(self, body: ServiceClientCreate) -> ServiceClientSecret:
        if body.client_id in RESERVED or body.client_id.startswith("plexica-"):
            raise ReservedClientIdError(
                "this client id is reserved", details={"client_id": body.client_id}
            )
        roles = service.check_roles(self.realm, body.roles)
        row = await repository.put_service_client(
            self.session, self.realm, body.client_id, self.tenant_id, body.description,
            sorted(roles), self.actor,
        )  # fmt: skip
        if not row:
            raise ServiceClientExistsError(
                "a service client with this id exists", details={"client_id": body.client_id}
            )
        await _after(row["revoked_before"])  # made again after a revocation
        made = await self.adapter.create_client(
            self.realm, body.client_id, public=False, roles=roles
        )
        client = to_model(row)
        await self._audit("created", body.client_id, None, client)
        assert made.secret is not None
        return self._secret(client, made.secret)

    async def set_enabled(self, client_id: str, enabled: bool) -> ServiceClient:
        before = await self._live(client_id)
        if enabled:
            await _after(before.revoked_before)
        await self.adapter.set_client_enabled(self.realm, client_id, enabled)
        if enabled:
            row = await repository.update_service_client(
                self.session, self.realm, client_id, state="active"
            )
        else:
            row = await self._cut(client_id, "disabled")
        after = to_model(row)
        if before != after:
            await self._audit("enabled" if enabled else "disabled", client_id, before, after)
        return after

    async def rotate_secret(self, client_id: str) -> ServiceClientSecret:
        before = await self._live(client_id)
        secret = await self.adapter.rotate_client_secret(self.realm, client_id)
        after = to_model(await self._cut(client_id, None))
        await self._audit("secret_rotated", client_id, before, after)
        await _after(after.revoked_before)
        return self._secret(after, secret)

    async def revoke(self, client_id: str) -> ServiceClient:
        """The client is deleted from the provider and its tokens refused; the registry keeps
        it as ``revoked`` (its cut-off outlives the tokens). Revoking again changes nothing."""
        row = await repository.service_client(self.session, self.realm, client_id, lock=True)
        if row is None:
            raise ServiceClientNotFoundError("no such service client")
        before = to_model(row)
        if before.state == "revoked":
            return before
        await self.adapter.delete_client(self.realm, client_id)
        after = to_model(await self._cut(client_id, "revoked"))
        await self._audit("revoked", client_id, before, after)
        return after

    async def _live(self, client_id: str) -> ServiceClient:
        row = await repository.service_client(self.session, self.realm, client_id, lock=True)
        if row is None or row["state"] == "revoked":
            raise ServiceClientNotFoundError("no such service client")
        return to_model(row)

    async def _cut(self, client_id: str, state: str | None) -> dict[str, Any]:
        """Refuse the client's tokens issued up to now. Taken after the provider changed, so
        that no token got with the old state can carry a later ``iat``."""
        cutoff = revocation.next_second()
        row = await repository.update_service_client(
            self.session, self.realm, client_id, state=state, revoked_before=cutoff
        )
        cut = await revocation.cut_client(
            self.session, self.realm, client_id, int(row["revoked_before"])
        )
        if self.revocations is not None:
            self.revocations.note(cut)
        return row

    def _secret(self, client: ServiceClient, secret: str) -> ServiceClientSecret:
        token_url = self.adapter.issuer_url(self.realm) + "/protocol/openid-connect/token"
        return ServiceClientSecret(client=client, secret=secret, token_url=token_url)

    async def _audit(
        self, what: str, client_id: str, before: ServiceClient | None, after: ServiceClient
    ) -> None:
        await audit.record(
            self.session, self.actor, f"identity.service_client.{what}", self.tenant_id,
            _target(client_id), before.model_dump(mode="json") if before else None,
            after.model_dump(mode="json"),
        )  # fmt: skip
