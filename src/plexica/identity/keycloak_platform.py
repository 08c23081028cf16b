"""The platform's own client in Keycloak's master realm (ADR 0251): what core and worker log in
with instead of Keycloak's admin. Its service account may create realms, and Keycloak makes the
creator of a realm its administrator; it can do nothing in the master realm, nor in a realm it
did not make unless granted here."""

from __future__ import annotations

from typing import Any

from plexica.identity.keycloak_admin import KeycloakAdminClient, expect
from plexica.identity.keycloak_realm import TENANT_ATTRIBUTE
from plexica.identity.names import OPERATOR_REALM
from plexica.kit.provisioning import REALM_PREFIX

PLATFORM_CLIENT = "plexica-core"
_CLIENTS = "/admin/realms/master/clients"


def _platforms(realm: dict[str, Any]) -> bool:
    """The platform's realms: its operators' and those it made for a tenant (marked with the
    tenant's id); not any other realm of the same Keycloak, whatever its name."""
    tenant = (realm.get("attributes") or {}).get(TENANT_ATTRIBUTE)
    return realm["realm"] == OPERATOR_REALM or (
        realm["realm"].startswith(REALM_PREFIX) and bool(tenant)
    )


class PlatformClientAdmin(KeycloakAdminClient):
    """The master realm's admin, making the platform's client."""

    async def ensure_platform_client(self, client_id: str, secret: str) -> list[str]:
        """Run as the master realm's admin (the deploy's keycloak-client Job): the confidential
        client ``client_id`` with ``secret`` and a service account holding ``create-realm`` and
        the administration of every platform realm made before it existed (an upgrade).
        Idempotent; the realms granted."""
        client: dict[str, Any] = {
            "clientId": client_id, "secret": secret, "enabled": True, "publicClient": False,
            "serviceAccountsEnabled": True, "standardFlowEnabled": False,
            "implicitFlowEnabled": False, "directAccessGrantsEnabled": False,
            "description": "Plexica core and worker (ADR 0251)",
            # Keycloak then reads the account's rights from its database, not the token: a
            # token stays small however many realms it runs, and sees a realm made after it.
            "attributes": {"client.use.lightweight.access.token.enabled": "true"},
        }  # fmt: skip
        found = await self._client(client_id)
        if found is None:
            made = await self._call("POST", _CLIENTS, json=client)
            if made.status_code != 409:  # 409: made meanwhile by another run, updated below
                expect(made, 201)
            found = await self._client(client_id)
            assert found is not None
        attributes = {**found.get("attributes", {}), **client["attributes"]}
        body = {**found, **client, "attributes": attributes}  # as given, also when it was there
        expect(await self._call("PUT", f"{_CLIENTS}/{found['id']}", json=body), 204)
        account_path = f"{_CLIENTS}/{found['id']}/service-account-user"
        account = expect(await self._call("GET", account_path), 200).json()
        mappings = f"/admin/realms/master/users/{account['id']}/role-mappings"
        create_realm = await self._call("GET", "/admin/realms/master/roles/create-realm")
        await self._grant(f"{mappings}/realm", [expect(create_realm, 200).json()])
        granted = []
        realms = expect(await self._call("GET", "/admin/realms"), 200).json()
        for realm in sorted(r["realm"] for r in realms if _platforms(r)):
            # The master realm's client of each realm holds the roles that administer it.
            manager = await self._client(f"{realm}-realm")
            if manager is None:
                continue
            roles_path = f"{_CLIENTS}/{manager['id']}/roles"
            roles = expect(await self._call("GET", roles_path), 200).json()
            await self._grant(f"{mappings}/clients/{manager['id']}", roles)
            granted.append(realm)
        return granted

    async def _client(self, client_id: str) -> dict[str, Any] | None:
        found = await self._call("GET", _CLIENTS, params={"clientId": client_id})
        clients = expect(found, 200).json()
        return dict(clients[0]) if clients else None

    async def _grant(self, path: str, roles: list[dict[str, Any]]) -> None:
        held = {r["id"] for r in expect(await self._call("GET", path), 200).json()}
        missing = [{"id": r["id"], "name": r["name"]} for r in roles if r["id"] not in held]
        if missing:
            expect(await self._call("POST", path, json=missing), 204)
