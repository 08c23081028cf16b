"""Which realms a plugin process trusts, and where it fetches their keys, from the variables the
platform's services already have (ADR 0244)."""

from __future__ import annotations

import pytest

from plexica_sdk.app import PluginConfig


@pytest.mark.parametrize(
    ("env", "issuers", "keys"),
    [
        # Keycloak behind a public name: issuers as tokens name them, keys at the inside address.
        (
            {"PLEXICA_KEYCLOAK_URL": "http://keycloak:8080/auth",
             "PLEXICA_KEYCLOAK_PUBLIC_URL": "https://plexica.example.com/auth/"},
            "https://plexica.example.com/auth/realms", "http://keycloak:8080/auth/realms",
        ),
        (
            {"PLEXICA_KEYCLOAK_URL": "http://127.0.0.1:8080"},
            "http://127.0.0.1:8080/realms", "http://127.0.0.1:8080/realms",
        ),
        # With the core's address, keys from the core, which passes Keycloak's on (ADR 0252).
        (
            {"PLEXICA_KEYCLOAK_URL": "http://keycloak:8080/auth",
             "PLEXICA_KEYCLOAK_PUBLIC_URL": "https://plexica.example.com/auth",
             "PLEXICA_PLUGIN_CORE_URL": "http://core:3000"},
            "https://plexica.example.com/auth/realms", "http://core:3000/realms",
        ),
        # The built-in provider: issuers under the public URL, keys from the core.
        (
            {"PLEXICA_PUBLIC_URL": "https://plexica.example.com",
             "PLEXICA_PLUGIN_CORE_URL": "http://core:3000"},
            "https://plexica.example.com/realms", "http://core:3000/realms",
        ),
        # Said outright, it wins; keys then default to the issuers' address.
        (
            {"PLEXICA_PLUGIN_ISSUER_BASE_URL": "https://idp.example.com/realms",
             "PLEXICA_KEYCLOAK_URL": "http://keycloak:8080"},
            "https://idp.example.com/realms", None,
        ),
        ({}, None, None),
    ],
)  # fmt: skip
def test_issuers_and_keys_from_the_platform_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], issuers: str | None, keys: str | None
) -> None:
    for name in (
        "PLEXICA_KEYCLOAK_URL", "PLEXICA_KEYCLOAK_PUBLIC_URL", "PLEXICA_PUBLIC_URL",
        "PLEXICA_PLUGIN_CORE_URL", "PLEXICA_PLUGIN_ISSUER_BASE_URL", "PLEXICA_PLUGIN_JWKS_BASE_URL",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = PluginConfig.from_env()
    assert (config.issuer_base_url, config.keys_base_url) == (issuers, keys)
