"""The sign-in settings of a tenant's Keycloak realm, through the Admin REST API: its policy
(two-step sign-in as the OTP required action, password length, session lifetimes; ADR 0245) and
its company identity provider (identity brokering: OpenID Connect, ADR 0247, or SAML, ADR 0248)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from plexica.identity.keycloak_admin import (
    REALM_NAME,
    IdentityInvalidError,
    IdentityNotFoundError,
    KeycloakAdminClient,
    check,
    expect,
)

_CONFIGURE_TOTP = "CONFIGURE_TOTP"
# Company sign-in (ADR 0247): the identity provider's alias, its role mapper, Keycloak's mask of
# a secret, and the platform's own keys in the provider's config.
COMPANY_IDP = "company"
_DEFAULT_ROLE_MAPPER = "plexica-default-role"
_MASKED = "**********"
_DOMAINS, _REQUIRED, _UPDATED_AT = "plexicaDomains", "plexicaRequired", "plexicaUpdatedAt"
_METADATA_URL = "plexicaMetadataUrl"
_EMAIL_NAME_ID = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
# What is taken from the company's SAML metadata as Keycloak parsed it; the rest is ours.
_SAML_FROM_METADATA = frozenset({
    "idpEntityId", "singleSignOnServiceUrl", "singleLogoutServiceUrl", "signingCertificate",
    "postBindingResponse", "postBindingAuthnRequest", "postBindingLogout",
})  # fmt: skip
# Company sign-in required (ADR 0249): the realm's browser flow and its password gate.
_BROWSER_FLOW, _GATE = "plexica-browser", "plexica-company-sign-in-required"
_ORGANIZATIONS = "organizationsEnabled"


def _plain(text: str) -> str:
    """A name as plain text in a Keycloak message, which is a template (braces, quotes and
    markup mean something there)."""
    return re.sub(r"[{}'\"<>&]", "", text)


class KeycloakSignIn(KeycloakAdminClient):
    # -- sign-in policy ------------------------------------------------------------------------

    async def set_sign_in_policy(
        self,
        realm: str,
        *,
        mfa_required: bool,
        password_min_length: int,
        session_max_hours: int,
        session_idle_minutes: int,
    ) -> None:
        """A tenant's sign-in policy as its realm's settings (ADR 0245): the password policy's
        ``length``, the SSO session's maximum and idle lifetimes, and two-step sign-in as the
        OTP required action. Idempotent: applying it again finishes an interrupted one."""
        current = await self._realm(realm)
        kept = [
            term.strip()
            for term in str(current.get("passwordPolicy") or "").split(" and ")
            if term.strip() and not term.strip().startswith("length(")
        ]
        settings = {
            "passwordPolicy": " and ".join([f"length({password_min_length})", *kept]),
            "ssoSessionMaxLifespan": session_max_hours * 3600,
            "ssoSessionIdleTimeout": session_idle_minutes * 60,
        }
        expect(await self._call("PUT", f"/admin/realms/{realm}", json=settings), 204)
        await self._require_otp(realm, mfa_required)

    async def _require_otp(self, realm: str, required: bool) -> None:
        """Keycloak's ``CONFIGURE_TOTP`` as a default action (users created from now on get it,
        those made through the Admin API included) and pending for every user without an OTP
        credential; or no longer default and withdrawn where still pending."""
        path = f"/admin/realms/{realm}/authentication/required-actions/{_CONFIGURE_TOTP}"
        action = expect(await self._call("GET", path), 200).json()
        if required:
            action["enabled"] = True
        action["defaultAction"] = required
        expect(await self._call("PUT", path, json=action), 204)
        users = await self._paged(f"/admin/realms/{realm}/users", {"briefRepresentation": "false"})
        for user in users:
            pending = list(user.get("requiredActions") or [])
            if required == (_CONFIGURE_TOTP in pending):
                continue
            user_path = self._user_path(realm, user["id"])
            if required:
                credentials = expect(await self._call("GET", f"{user_path}/credentials"), 200)
                if any(c.get("type") == "otp" for c in credentials.json()):
                    continue
                pending.append(_CONFIGURE_TOTP)
            else:
                pending.remove(_CONFIGURE_TOTP)
            expect(await self._call("PUT", user_path, json={"requiredActions": pending}), 204)

    # -- company sign-in -----------------------------------------------------------------------

    async def company_sign_in(self, realm: str) -> dict[str, Any] | None:
        """The realm's company identity provider (ADR 0247, 0248) as ``SsoProvider`` fields,
        read back from Keycloak (no secret: Keycloak masks it, it is not returned); None
        without."""
        path = self._idp_path(realm)
        try:
            idp = expect(await self._call("GET", path), 200).json()
        except IdentityNotFoundError:
            return None
        config = idp.get("config") or {}
        mappers = expect(await self._call("GET", f"{path}/mappers"), 200).json()
        role = next(
            (m["config"].get("role") for m in mappers if m.get("name") == _DEFAULT_ROLE_MAPPER),
            None,
        )
        saml = idp.get("providerId") == "saml"
        return {
            "display_name": idp.get("displayName") or COMPANY_IDP,
            "protocol": "saml" if saml else "oidc",
            "issuer": config.get("idpEntityId" if saml else "issuer", ""),
            "client_id": None if saml else config.get("clientId", ""),
            "metadata_url": config.get(_METADATA_URL) if saml else None,
            "domains": [d for d in config.get(_DOMAINS, "").split(",") if d],
            "default_role": role or "member",
            # As Keycloak enforces it: a save that stopped before the gate did not make it so.
            "required": config.get(_REQUIRED) == "true" and await self._gate_on(realm),
            "updated_at": config.get(_UPDATED_AT),
        }

    async def set_company_oidc(
        self,
        realm: str,
        *,
        display_name: str,
        meta: dict[str, Any],
        client_id: str,
        client_secret: str | None,
        domains: list[str],
        default_role: str,
        required: bool,
    ) -> None:
        """Creates or updates the realm's OpenID Connect identity provider ``company`` from the
        company's checked discovery document ``meta``, and the mapper giving the accounts it
        makes ``default_role``. ``client_secret`` None keeps the one Keycloak holds (refused
        when there is none yet). Idempotent: a PUT again finishes an interrupted one."""
        await self._roles(realm, frozenset({default_role}))  # unknown roles are bad input
        current = await self._company_idp(realm)
        if client_secret is None and (current is None or current["providerId"] != "oidc"):
            raise IdentityInvalidError(
                "enter the client secret", details={"client_secret": "required"}
            )
        config = {
            "issuer": str(meta["issuer"]),
            "authorizationUrl": str(meta["authorization_endpoint"]),
            "tokenUrl": str(meta["token_endpoint"]),
            "jwksUrl": str(meta["jwks_uri"]),
            "useJwksUrl": "true",
            "validateSignature": "true",
            "clientId": client_id,
            # Keycloak's mask keeps the secret it holds.
            "clientSecret": client_secret if client_secret is not None else _MASKED,
            "clientAuthMethod": "client_secret_post",
            "pkceEnabled": "true",
            "pkceMethod": "S256",
            "defaultScope": "openid email",
        }
        if meta.get("userinfo_endpoint"):
            config["userInfoUrl"] = str(meta["userinfo_endpoint"])
        if meta.get("end_session_endpoint"):
            config["logoutUrl"] = str(meta["end_session_endpoint"])
        await self._put_company_idp(
            realm, current, "oidc", config, display_name=display_name, domains=domains,
            default_role=default_role, required=required,
        )  # fmt: skip

    async def set_company_saml(
        self,
        realm: str,
        *,
        display_name: str,
        metadata: bytes,
        metadata_url: str,
        domains: list[str],
        default_role: str,
        required: bool,
    ) -> None:
        """Creates or updates the realm's SAML 2.0 identity provider ``company`` (ADR 0248) from
        the company's metadata document, which Keycloak parses: its single sign-on address,
        bindings and signing certificates. Answers must be signed; the person is the e-mail
        address in the NameID; requests are signed with the realm's key, and Keycloak names the
        realm's issuer URL as the service provider's entity ID."""
        await self._roles(realm, frozenset({default_role}))
        parsed = await self._call(
            "POST", f"/admin/realms/{realm}/identity-provider/import-config",
            files={"file": ("metadata.xml", metadata, "application/samlmetadata+xml")},
            data={"providerId": "saml"},
        )  # fmt: skip
        if parsed.status_code != 200 or not parsed.json().get("singleSignOnServiceUrl"):
            raise IdentityInvalidError(
                "the metadata names no SAML identity provider",
                details={"metadata_url": "no IDPSSODescriptor"},
            )
        imported = {k: str(v) for k, v in parsed.json().items() if k in _SAML_FROM_METADATA}
        if not imported.get("signingCertificate"):
            raise IdentityInvalidError(
                "the metadata has no signing certificate: unsigned answers are not accepted",
                details={"metadata_url": "no signing key"},
            )
        config = {
            **imported,
            "validateSignature": "true",
            "nameIDPolicyFormat": _EMAIL_NAME_ID,
            "principalType": "SUBJECT",
            "wantAuthnRequestsSigned": "true",
            "signatureAlgorithm": "RSA_SHA256",
            # Keycloak calls no address of the metadata's itself: no artifact resolution, no
            # back-channel logout (the browser carries every message).
            "artifactBindingResponse": "false",
            "backchannelSupported": "false",
            _METADATA_URL: metadata_url,
        }
        await self._put_company_idp(
            realm, await self._company_idp(realm), "saml", config, display_name=display_name,
            domains=domains, default_role=default_role, required=required,
        )  # fmt: skip

    async def _company_idp(self, realm: str) -> dict[str, Any] | None:
        try:
            return dict(expect(await self._call("GET", self._idp_path(realm)), 200).json())
        except IdentityNotFoundError:
            return None

    async def _put_company_idp(
        self, realm: str, current: dict[str, Any] | None, provider_id: str,
        config: dict[str, str], *, display_name: str, domains: list[str], default_role: str,
        required: bool,
    ) -> None:  # fmt: skip
        """The identity provider ``company`` as ``provider_id`` with ``config`` (one of another
        protocol is replaced), and its default-role mapper."""
        idp = {
            "alias": COMPANY_IDP,
            "providerId": provider_id,
            "displayName": display_name,
            "enabled": True,
            "trustEmail": True,
            "config": {
                **config,
                "syncMode": "IMPORT",
                "updateProfileFirstLoginMode": "off",
                _DOMAINS: ",".join(domains),
                _REQUIRED: "true" if required else "false",
                _UPDATED_AT: datetime.now(UTC).isoformat(),
            },
        }
        if current is not None and current.get("providerId") != provider_id:
            # Keycloak keeps an identity provider's type: another protocol is a new provider.
            await self.remove_company_sign_in(realm)
            current = None
        if current is None:
            created = await self._call(
                "POST", f"/admin/realms/{realm}/identity-provider/instances", json=idp
            )
            expect(created, 201)
        else:
            expect(await self._call("PUT", self._idp_path(realm), json={**current, **idp}), 204)
        await self._default_role_mapper(realm, default_role)
        await self._route_domains(realm, domains)
        await self._passwords_refused(
            realm, domains if required else [], f"Sign in with {_plain(display_name)}: passwords "
            "are not accepted for your e-mail address.",
        )  # fmt: skip

    async def remove_company_sign_in(self, realm: str) -> bool:
        """Removes the realm's company identity provider (and its mappers); whether there was
        one. Accounts it made stay, without their link to the company."""
        await self._passwords_refused(realm, [], "")
        await self._route_domains(realm, [])
        response = await self._call("DELETE", self._idp_path(realm))
        if response.status_code == 404:
            return False
        expect(response, 204)
        return True

    async def _default_role_mapper(self, realm: str, role: str) -> None:
        path = f"{self._idp_path(realm)}/mappers"
        mappers = expect(await self._call("GET", path), 200).json()
        mapper = {
            "name": _DEFAULT_ROLE_MAPPER,
            "identityProviderAlias": COMPANY_IDP,
            "identityProviderMapper": "oidc-hardcoded-role-idp-mapper",
            "config": {"role": role, "syncMode": "INHERIT"},
        }
        found = next((m for m in mappers if m.get("name") == _DEFAULT_ROLE_MAPPER), None)
        if found is None:
            expect(await self._call("POST", path, json=mapper), 201)
        else:
            body = {**found, **mapper}
            expect(await self._call("PUT", f"{path}/{found['id']}", json=body), 204)

    async def _route_domains(self, realm: str, domains: list[str]) -> None:
        """E-mail domain routing on Keycloak's sign-in page (ADR 0250): Keycloak's Organizations
        turned on for the realm, one organization ``company`` with ``domains``, the company's
        provider linked to it and chosen for an address at any of them. The page then asks for
        the e-mail address first. No domains: the organization removed and the feature off."""
        path = f"/admin/realms/{realm}/organizations"
        enabled = bool((await self._realm(realm)).get(_ORGANIZATIONS))
        if not domains and not enabled:
            return
        if not enabled:  # Keycloak answers 404 on organizations while the feature is off
            await self._organizations(realm, on=True)
        org = await self._company_org(path)
        if not domains:
            if org is not None:
                expect(await self._call("DELETE", f"{path}/{org['id']}"), 204)
            if not expect(await self._call("GET", path), 200).json():  # none made by hand
                await self._organizations(realm, on=False)
            return
        body = {
            "name": COMPANY_IDP, "alias": COMPANY_IDP, "enabled": True,
            "domains": [{"name": d, "verified": True} for d in domains],
        }  # fmt: skip
        if org is None:
            expect(await self._call("POST", path, json=body), 201)
            org = await self._company_org(path)
            assert org is not None
        else:
            expect(await self._call("PUT", f"{path}/{org['id']}", json={**org, **body}), 204)
        idp = expect(await self._call("GET", self._idp_path(realm)), 200).json()
        if idp.get("organizationId") != org["id"]:
            linked = await self._call(
                "POST", f"{path}/{org['id']}/identity-providers", json=COMPANY_IDP
            )
            expect(linked, 204)
            idp = expect(await self._call("GET", self._idp_path(realm)), 200).json()
        routed = {"kc.org.domain": "ANY", "kc.org.broker.redirect.mode.email-matches": "true"}
        if any(idp["config"].get(k) != v for k, v in routed.items()):
            idp["config"] |= routed
            expect(await self._call("PUT", self._idp_path(realm), json=idp), 204)

    async def _organizations(self, realm: str, *, on: bool) -> None:
        expect(await self._call("PUT", f"/admin/realms/{realm}", json={_ORGANIZATIONS: on}), 204)

    async def _company_org(self, path: str) -> dict[str, Any] | None:
        found = expect(await self._call("GET", path, params={"search": COMPANY_IDP}), 200).json()
        return next((o for o in found if o.get("alias") == COMPANY_IDP), None)

    async def _passwords_refused(self, realm: str, domains: list[str], message: str) -> None:
        """The realm's browser sign-in refuses the password of every user whose e-mail address
        is at one of ``domains`` (none: nobody's), with ``message`` (ADR 0249): the realm's own
        copy of Keycloak's browser flow, whose password form is followed by a conditional step
        that denies access when the user's ``email`` matches. Sign-ins through the company's
        provider take the broker's flows and are not affected. Idempotent; a realm that never
        required it keeps Keycloak's flow."""
        base = f"/admin/realms/{realm}/authentication"
        flows = expect(await self._call("GET", f"{base}/flows"), 200).json()
        if _BROWSER_FLOW not in {f["alias"] for f in flows}:
            if not domains:
                return
            copied = await self._call(
                "POST", f"{base}/flows/browser/copy", json={"newName": _BROWSER_FLOW}
            )
            expect(copied, 201)
        gate = await self._password_gate(base)
        if domains:
            pattern = "|".join(re.escape(d) for d in domains)
            await self._step_config(base, gate["condition"], {
                "attribute_name": "email", "attribute_expected_value": f"(?i)^.+@({pattern})$",
                "regex": "true", "not": "false",
            })  # fmt: skip
            await self._step_config(base, gate["deny"], {"denyErrorMessage": message})
            await self._no_password_grants(realm)
        steps = {"condition": "REQUIRED", "deny": "REQUIRED"}
        steps["gate"] = "CONDITIONAL" if domains else "DISABLED"
        turned_on = bool(domains) and gate["gate"]["requirement"] != "CONDITIONAL"
        for name, requirement in steps.items():
            if gate[name]["requirement"] != requirement:
                step = {**gate[name], "requirement": requirement}
                path = f"{base}/flows/{_BROWSER_FLOW}/executions"
                expect(await self._call("PUT", path, json=step), 204)
        realm_now = await self._realm(realm)
        if realm_now.get("browserFlow") != _BROWSER_FLOW:
            bound = await self._call(
                "PUT", f"/admin/realms/{realm}", json={"browserFlow": _BROWSER_FLOW}
            )
            expect(bound, 204)
        if turned_on:
            await self._end_password_sessions(realm, domains)

    async def _end_password_sessions(self, realm: str, domains: list[str]) -> None:
        """Ends the sessions of the domains' users who have a password: signed in with it
        before the gate, they would keep their access until the sessions end."""
        ends = tuple(f"@{d}" for d in domains)
        users = await self._paged(f"/admin/realms/{realm}/users", {"briefRepresentation": "true"})
        for user in users:
            if not str(user.get("email") or "").lower().endswith(ends):
                continue
            user_path = self._user_path(realm, user["id"])
            credentials = expect(await self._call("GET", f"{user_path}/credentials"), 200).json()
            if any(c.get("type") == "password" for c in credentials):
                expect(await self._call("POST", f"{user_path}/logout"), 204)

    async def _no_password_grants(self, realm: str) -> None:
        """No client of the realm takes passwords outside the browser flow (Keycloak's own
        ``admin-cli`` does by default): the gate would not see them."""
        clients = expect(await self._call("GET", f"/admin/realms/{realm}/clients"), 200).json()
        for client in clients:
            if client.get("directAccessGrantsEnabled"):
                path = f"/admin/realms/{realm}/clients/{client['id']}"
                body = {**client, "directAccessGrantsEnabled": False}
                expect(await self._call("PUT", path, json=body), 204)

    async def _gate_on(self, realm: str) -> bool:
        """Whether the realm's browser sign-in refuses the domains' passwords now."""
        if (await self._realm(realm)).get("browserFlow") != _BROWSER_FLOW:
            return False
        path = f"/admin/realms/{realm}/authentication/flows/{_BROWSER_FLOW}/executions"
        steps = expect(await self._call("GET", path), 200).json()
        return any(
            e.get("displayName") == _GATE and e.get("requirement") == "CONDITIONAL" for e in steps
        )

    async def _password_gate(self, base: str) -> dict[str, dict[str, Any]]:
        """The gate's executions in the realm's browser flow (made when missing, right after
        the password form): ``gate`` (the sub-flow), ``condition`` and ``deny``."""
        path = f"{base}/flows/{_BROWSER_FLOW}/executions"
        steps = expect(await self._call("GET", path), 200).json()
        gate = next((e for e in steps if e.get("displayName") == _GATE), None)
        if gate is None:
            forms = next(e for e in steps if e["level"] == 0 and e["displayName"].endswith("forms"))
            made = await self._call(
                "POST", f"{base}/flows/{quote(forms['displayName'])}/executions/flow",
                json={"alias": _GATE, "type": "basic-flow", "provider": "registration-page-form",
                      "description": "Company sign-in required: no passwords for its domains"},
            )  # fmt: skip
            expect(made, 201)
            steps = expect(await self._call("GET", path), 200).json()
            gate = next(e for e in steps if e.get("displayName") == _GATE)
            # Before two-step sign-in: a refused password asks for no code first.
            expect(await self._call("POST", f"{base}/executions/{gate['id']}/raise-priority"), 204)
        for provider in ("conditional-user-attribute", "deny-access-authenticator"):
            if not any(e.get("providerId") == provider for e in steps):
                added = await self._call(
                    "POST", f"{base}/flows/{quote(_GATE)}/executions/execution",
                    json={"provider": provider},
                )  # fmt: skip
                expect(added, 201)
        steps = expect(await self._call("GET", path), 200).json()
        found = {e.get("providerId"): e for e in steps}
        return {
            "gate": next(e for e in steps if e.get("displayName") == _GATE),
            "condition": found["conditional-user-attribute"],
            "deny": found["deny-access-authenticator"],
        }

    async def _step_config(self, base: str, step: dict[str, Any], config: dict[str, str]) -> None:
        if step.get("authenticationConfig"):
            path = f"{base}/config/{step['authenticationConfig']}"
            current = expect(await self._call("GET", path), 200).json()
            expect(await self._call("PUT", path, json={**current, "config": config}), 204)
        else:
            body = {"alias": f"{_GATE} {step['providerId']}", "config": config}
            made = await self._call("POST", f"{base}/executions/{step['id']}/config", json=body)
            expect(made, 201)

    def _idp_path(self, realm: str) -> str:
        check(realm, REALM_NAME, "realm")
        return f"/admin/realms/{realm}/identity-provider/instances/{COMPANY_IDP}"
