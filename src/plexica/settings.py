"""Typed settings for every Plexica process, read from ``PLEXICA_*`` environment variables."""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    AnyHttpUrl,
    BeforeValidator,
    Field,
    PostgresDsn,
    RedisDsn,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from plexica.kit.datadir import default_data_dir
from plexica.kit.kafka import KafkaLogin

ENV_PREFIX = "PLEXICA_"
MIN_WEB_SECRET = 32
MIN_KEY_ENCRYPTION_KEY = 32
SMTP_SCHEMES = frozenset({"smtp", "smtps", "smtp+starttls"})


class SettingsError(Exception):
    """A setting is unknown or malformed; the message is one line naming the variable."""


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


def _empty_to_none(value: object) -> object:
    return None if value == "" else value


def _asyncpg_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


_DOMAIN_RE = re.compile(
    r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)


def _domain(value: object) -> object:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 200 or not _DOMAIN_RE.match(value):
        raise ValueError("a lowercase DNS name such as example.com")
    return value


Optional = Annotated[str | None, BeforeValidator(_empty_to_none)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    service: str = "core"
    environment: str = "development"
    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    data_dir: Path = Field(default_factory=default_data_dir)
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    log_format: LogFormat = LogFormat.AUTO
    # Read by the SDK's request metrics (plexica_sdk.toptenants, ADR 0200); declared here so
    # that a deployment's value is checked and known to `plexica serve`.
    metrics_top_tenants: int = Field(default=20, ge=1, le=1000)
    # How often the worker reads the platform's gauges from the database (ADR 0204).
    metrics_gauge_seconds: float = Field(default=15.0, gt=0)

    database_url: Annotated[PostgresDsn | None, BeforeValidator(_empty_to_none)] = None
    # The runtime login (ADR 0215), read only by `plexica migrate`, which runs as the owner:
    # it creates or updates that role and grants it what serving needs.
    runtime_database_url: Annotated[PostgresDsn | None, BeforeValidator(_empty_to_none)] = None
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_statement_timeout_ms: int = Field(default=15_000, ge=0)
    redis_url: Annotated[RedisDsn | None, BeforeValidator(_empty_to_none)] = None
    kafka_brokers: Optional = None
    # SASL/SCRAM login at the broker (ADR 0218): the platform's principal for core and worker,
    # a plugin's own (`plexica plugin credentials`) in a plugin's process.
    kafka_username: Optional = None
    kafka_password: Annotated[SecretStr | None, BeforeValidator(_empty_to_none)] = None
    # The broker's administrator (ADR 0253), read only by `plexica plugin broker-acls`, the
    # grants job: it makes the platform's and the plugins' principals and their ACLs.
    kafka_admin_username: Optional = None
    kafka_admin_password: Annotated[SecretStr | None, BeforeValidator(_empty_to_none)] = None
    keycloak_url: Annotated[AnyHttpUrl | None, BeforeValidator(_empty_to_none)] = None
    # Where browsers reach Keycloak, which its tokens name as issuer (its KC_HOSTNAME), when
    # that is not PLEXICA_KEYCLOAK_URL, the address the platform's own calls use (ADR 0244).
    keycloak_public_url: Annotated[AnyHttpUrl | None, BeforeValidator(_empty_to_none)] = None
    # The URL users reach the platform at: the built-in provider's issuers live under it.
    public_url: Annotated[AnyHttpUrl | None, BeforeValidator(_empty_to_none)] = None
    operator_email: str = Field(default="admin@plexica.local", pattern=r"^[^@\s]+@[^@\s]+$")

    # Keycloak's master-realm admin: only `plexica keycloak platform-client`, run by the deploy's
    # migrate Job, needs it (and tests and `plexica up` may serve with it). Serving processes use
    # the platform's client, whose service account creates realms and administers only those
    # (ADR 0251).
    keycloak_admin_user: Optional = None
    keycloak_admin_password: Annotated[SecretStr | None, BeforeValidator(_empty_to_none)] = None
    keycloak_client_id: Optional = None
    keycloak_client_secret: Annotated[SecretStr | None, BeforeValidator(_empty_to_none)] = None
    storage_endpoint: Annotated[AnyHttpUrl | None, BeforeValidator(_empty_to_none)] = None
    storage_access_key: Optional = None
    storage_secret_key: Optional = None
    plugin_urls: Optional = None
    # Plugins installed into every new tenant by provisioning, e.g. "crm,billing".
    default_plugins: Optional = None
    # Edge rate limits (ADR 0081): requests per minute per tenant+user+route group, overrides as
    # "plugin:crm=300,tenant:acme=1000,tenant:acme/plugin:crm=50".
    gateway_rate_limit: int = Field(default=100, ge=1)
    gateway_rate_limits: Optional = None
    gateway_rate_limit_fail_open: bool = True
    # Budget of one Redis call on the request path, after which the in-process fallback answers
    # and a breaker skips Redis for a while (ADR 0143).
    redis_timeout_ms: int = Field(default=100, ge=10, le=5000)
    gateway_plugin_cache_seconds: float = Field(default=1.0, ge=0, le=60)

    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    # On SIGTERM /ready answers 503 and requests are still served this long, so that the edge
    # and Kubernetes stop routing here before the listener closes (ADR 0142).
    drain_seconds: float = Field(default=10.0, ge=0)
    # How often a core looks for tenant sagas that a crash interrupted (ADR 0140); 0: never
    # (a core that must not touch other cores' tenants, e.g. beside a shared test database).
    reconcile_seconds: float = Field(default=10.0, ge=0)
    # How often `plexica plugin broker-acls --watch` makes the broker's principals and ACLs
    # equal to the catalog (ADR 0218, 0253).
    broker_acl_seconds: float = Field(default=30.0, gt=0)

    # Web shell (ADR 0091, 0092): the key of the session cookies, shared by every web replica;
    # tenants at <slug>.<web_base_domain>.
    web_secret: Annotated[SecretStr | None, BeforeValidator(_empty_to_none)] = None
    web_base_domain: Annotated[str | None, BeforeValidator(_domain)] = None
    # Seals the built-in provider's private signing keys at rest (ADR 0150): one secret, or
    # several separated by commas (the first seals, all open).
    key_encryption_key: Annotated[SecretStr | None, BeforeValidator(_empty_to_none)] = None
    # Mail (ADR 0225): invitations go out over SMTP; without a URL they are kept in the dev
    # mailbox (`plexica mail list`) and the link is logged. smtp://, smtps:// (TLS from the
    # first byte) or smtp+starttls://, with user:password@ when the server wants a login.
    smtp_url: Annotated[SecretStr | None, BeforeValidator(_empty_to_none)] = None
    mail_from: str = Field(default="Plexica <noreply@plexica.local>", pattern=r"@[^@\s>]+>?$")
    # Budget of each SMTP step (connect, login, each command), not of the whole conversation.
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    invite_ttl_hours: float = Field(default=72.0, gt=0, le=24 * 30)

    @property
    def sqlalchemy_url(self) -> str:
        # Not cached: a copy with another database_url (model_copy) must not keep this one.
        assert self.database_url is not None
        return _asyncpg_url(str(self.database_url))

    def kafka_login(self) -> KafkaLogin | None:
        return _kafka_login(self.kafka_username, self.kafka_password)

    def kafka_admin_login(self) -> KafkaLogin | None:
        return _kafka_login(self.kafka_admin_username, self.kafka_admin_password)

    @property
    def public_base_url(self) -> str:
        if self.public_url is not None:
            return str(self.public_url).rstrip("/")
        return f"http://{self.host}:{self.port}"

    @property
    def issuer_base_url(self) -> str:
        """Where the realms' issuers live, as browsers reach them and tokens name them:
        Keycloak when configured, else the built-in provider under the public URL."""
        if self.keycloak_url is not None:
            return str(self.keycloak_public_url or self.keycloak_url).rstrip("/")
        return self.public_base_url

    @property
    def keycloak_base_url(self) -> str | None:
        """Keycloak as the platform's own calls reach it (admin API, tokens, keys)."""
        return str(self.keycloak_url).rstrip("/") if self.keycloak_url is not None else None

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    def tenant_web_url(self, slug: str) -> str | None:
        """Where a tenant's users reach the shell: ``<slug>.<web_base_domain>``, with the public
        URL's scheme and port."""
        if self.web_base_domain is None:
            return None
        public = urlsplit(self.public_base_url)
        port = f":{public.port}" if public.port else ""
        return f"{public.scheme}://{slug}.{self.web_base_domain}{port}"

    @model_validator(mode="after")
    def _web_secret_long_enough(self) -> Settings:
        if self.web_secret is not None and len(self.web_secret.get_secret_value()) < MIN_WEB_SECRET:
            # Sessions are signed with it: a short key could be guessed offline from one cookie.
            raise ValueError(
                f"PLEXICA_WEB_SECRET is too short: use at least {MIN_WEB_SECRET} characters "
                "(e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        return self

    @model_validator(mode="after")
    def _key_encryption_key_long_enough(self) -> Settings:
        if self.key_encryption_key is None:
            return self
        ring = [p.strip() for p in self.key_encryption_key.get_secret_value().split(",")]
        if any(len(p) < MIN_KEY_ENCRYPTION_KEY for p in ring):
            raise ValueError(
                "PLEXICA_KEY_ENCRYPTION_KEY is too short: use at least "
                f"{MIN_KEY_ENCRYPTION_KEY} characters per key (comma-separated)"
            )
        return self

    @model_validator(mode="after")
    def _smtp_url_known(self) -> Settings:
        if self.smtp_url is not None:
            parts = urlsplit(self.smtp_url.get_secret_value())
            if parts.scheme not in SMTP_SCHEMES or not parts.hostname:
                raise ValueError(
                    "PLEXICA_SMTP_URL must look like smtp://host:port, smtps://user:pass@host:465"
                    " or smtp+starttls://host:587"
                )
        return self

    @model_validator(mode="after")
    def _keycloak_needs_admin(self) -> Settings:
        if (
            self.keycloak_url is not None
            and self.keycloak_admin_user is None
            and self.keycloak_client_id is None
            and self.service != "token"  # `plexica token` only signs in
        ):
            # Provisioning creates each tenant's realm through Keycloak's Admin API.
            raise ValueError(
                "PLEXICA_KEYCLOAK_CLIENT_ID (or PLEXICA_KEYCLOAK_ADMIN_USER) is required with "
                "PLEXICA_KEYCLOAK_URL"
            )
        return self


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise SettingsError with one readable line."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    unknown = sorted(k for k in os.environ if k.startswith(ENV_PREFIX) and k not in known)
    # Variables that tools and tests set for themselves are not settings of a service.
    # PLEXICA_PLUGIN_* configure a plugin's own process (read by plexica_sdk.app).
    unknown = [
        k
        for k in unknown
        if not k.startswith(
            (
                ENV_PREFIX + "TEST_",
                ENV_PREFIX + "PASSWORD",
                ENV_PREFIX + "OTP",
                ENV_PREFIX + "PLUGIN_",
            )
        )
        # The CLI's --url (ADR 0132) and operator token (ADR 0165), not a service's settings.
        and k not in {ENV_PREFIX + "URL", ENV_PREFIX + "TOKEN"}
    ]
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]} (known: {', '.join(sorted(known))})")
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:  # a rule across settings: its message names them
            raise SettingsError(err["msg"].removeprefix("Value error, ")) from None
        field = str(err["loc"][0])
        raise SettingsError(f"invalid setting {ENV_PREFIX}{field.upper()}: {err['msg']}") from None


def _kafka_login(username: str | None, password: SecretStr | None) -> KafkaLogin | None:
    if username is None or password is None:
        return None
    return KafkaLogin(username, password.get_secret_value())
