"""Names the identity provider and its clients agree on. Standard library only: the CLI imports
this module without the provider's stack (``plexica.cli.api``)."""

from __future__ import annotations

from plexica.kit.provisioning import REALM_PREFIX

OPERATOR_REALM = "plexica-platform"
CLI_CLIENT = "plexica-cli"
CLI_REDIRECT = "http://127.0.0.1/plexica-cli/callback"
CREDENTIALS_FILE = "operator-credentials.json"  # the first operator's, in `plexica up`'s data dir


def realm_slug(realm: str) -> str | None:
    """The slug of the tenant a realm belongs to; None for the operator's realm."""
    if realm == OPERATOR_REALM or not realm.startswith(REALM_PREFIX):
        return None
    return realm.removeprefix(REALM_PREFIX)


def issuer_url(base_url: str, realm: str) -> str:
    return f"{base_url.rstrip('/')}/realms/{realm}"
