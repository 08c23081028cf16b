"""What Plexica makes in Keycloak: a tenant's (or the operators') realm, imported in one piece
with its roles, the web and CLI clients, their token mappers and the user profile; and the
representation of any client it adds later."""

from __future__ import annotations

from typing import Any
from uuid import UUID

WEB_CLIENT = "plexica-web"
# `plexica token` signs in through this client, as against the built-in provider.
CLI_CLIENT = "plexica-cli"
CLI_REDIRECT = "http://127.0.0.1/plexica-cli/callback"
API_AUDIENCE = "plexica-api"
TENANT_ROLES = ("tenant_admin", "member")
OPERATOR_ROLES = ("super_admin",)
TENANT_ATTRIBUTE = "plexicaTenantId"

# Keycloak's default user profile with first and last name optional: Plexica knows users by
# e-mail only, and a required name would block every login with "Account is not fully set up".
_USER_PROFILE = """{"attributes":[
{"name":"username","displayName":"${username}","validations":{"length":{"min":3,"max":255},
 "username-prohibited-characters":{},"up-username-not-idn-homograph":{}},
 "permissions":{"view":["admin","user"],"edit":["admin","user"]},"multivalued":false},
{"name":"email","displayName":"${email}","validations":{"email":{},"length":{"max":255}},
 "required":{"roles":["user"]},"permissions":{"view":["admin","user"],"edit":["admin","user"]},
 "multivalued":false},
{"name":"firstName","displayName":"${firstName}","validations":{"length":{"max":255},
 "person-name-prohibited-characters":{}},"permissions":{"view":["admin","user"],
 "edit":["admin","user"]},"multivalued":false},
{"name":"lastName","displayName":"${lastName}","validations":{"length":{"max":255},
 "person-name-prohibited-characters":{}},"permissions":{"view":["admin","user"],
 "edit":["admin","user"]},"multivalued":false}],
"groups":[{"name":"user-metadata","displayHeader":"User metadata",
 "displayDescription":"Attributes, which refer to user metadata"}]}"""


def realm_representation(
    realm: str, tenant_id: UUID | None, audience: str, web_callbacks: tuple[str, ...]
) -> dict[str, Any]:
    """``web_callbacks``: the redirect URIs of the web shell's client in this realm."""
    tenant = str(tenant_id) if tenant_id else None
    roles = TENANT_ROLES if tenant_id else OPERATOR_ROLES
    return {
        "realm": realm,
        "enabled": True,
        "attributes": {TENANT_ATTRIBUTE: tenant} if tenant else {},
        "registrationAllowed": False,
        "registrationEmailAsUsername": True,
        "loginWithEmailAllowed": True,
        "duplicateEmailsAllowed": False,
        "editUsernameAllowed": False,
        "bruteForceProtected": True,
        "failureFactor": 10,
        "waitIncrementSeconds": 60,
        "maxFailureWaitSeconds": 900,
        "accessTokenLifespan": 300,
        # Refresh tokens rotate and are single use, as with the built-in provider (ADR 0126).
        "revokeRefreshToken": True,
        "refreshTokenMaxReuse": 0,
        "roles": {"realm": [{"name": r} for r in roles]},
        "clients": [
            client_representation(WEB_CLIENT, True, web_callbacks, tenant, audience),
            client_representation(CLI_CLIENT, True, (CLI_REDIRECT,), tenant, audience),
        ],
        "components": {
            "org.keycloak.userprofile.UserProfileProvider": [
                {
                    "providerId": "declarative-user-profile",
                    "subComponents": {},
                    "config": {"kc.user.profile.config": [_USER_PROFILE]},
                }
            ]
        },
    }


def client_representation(
    client_id: str,
    public: bool,
    redirect_uris: tuple[str, ...],
    tenant: str | None,
    audience: str,
) -> dict[str, Any]:
    mappers: list[dict[str, Any]] = [
        {
            "name": "plexica-audience",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-audience-mapper",
            "config": {
                "included.custom.audience": audience,
                "access.token.claim": "true",
                "introspection.token.claim": "true",
                "id.token.claim": "false",
            },
        }
    ]
    if tenant:
        mappers.append(_claim("plexica-tenant-id", "tenant_id", tenant, "String", id_token=True))
    browser = public or bool(redirect_uris)
    if not browser:
        # Only client credentials reach this client: its tokens are service tokens.
        mappers.append(_claim("plexica-service", "service", "true", "boolean", id_token=False))
    return {
        "clientId": client_id,
        "protocol": "openid-connect",
        "publicClient": public,
        "standardFlowEnabled": browser,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "serviceAccountsEnabled": not public,
        "redirectUris": list(redirect_uris),
        "webOrigins": ["+"] if browser else [],
        "attributes": {"pkce.code.challenge.method": "S256", "post.logout.redirect.uris": "+"},
        "protocolMappers": mappers,
    }


def _claim(name: str, claim: str, value: str, json_type: str, *, id_token: bool) -> dict[str, Any]:
    """A mapper that puts a fixed claim in the access token (and, with ``id_token``, in the ID
    token and userinfo too)."""
    also = "true" if id_token else "false"
    return {
        "name": name,
        "protocol": "openid-connect",
        "protocolMapper": "oidc-hardcoded-claim-mapper",
        "config": {
            "claim.name": claim,
            "claim.value": value,
            "jsonType.label": json_type,
            "access.token.claim": "true",
            "id.token.claim": also,
            "userinfo.token.claim": also,
            "introspection.token.claim": "true",
        },
    }
