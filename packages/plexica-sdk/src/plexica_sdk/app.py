"""``create_plugin_app``: a plugin's FastAPI app with verified tenant context and its DB role.

The tenant, user and permissions of a request come only from the forwarded bearer token, verified
here again (defence in depth: the gateway verified it first); ``X-Tenant-ID``/``X-User-ID``
headers are never trusted on their own.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Protocol
from uuid import UUID

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncSession

from plexica_sdk.auth import (
    MAX_TOKEN_BYTES,
    CachingVerifier,
    JwksIssuerResolver,
    JwtVerifier,
    RevocationCheck,
    bearer_challenge,
    bearer_of,
)
from plexica_sdk.client import ClientCredentials, CoreClient
from plexica_sdk.context import Principal
from plexica_sdk.db import Installation, PluginDatabase, publish
from plexica_sdk.errors import ForbiddenError, UnauthenticatedError, UnavailableError
from plexica_sdk.events import DeclaredEvents
from plexica_sdk.jobs import JobRunner, PeriodicJob
from plexica_sdk.manifest import Manifest
from plexica_sdk.revocation import plugin_revocations
from plexica_sdk.service import Lifespan, create_service_app
from plexica_sdk.ui import Fragments

ENV = "PLEXICA_"
DEFAULT_AUDIENCE = "plexica-api"


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Principal: ...


@dataclass
class PluginConfig:
    """Where the plugin finds its database, the issuers it trusts and the core API."""

    database_url: str | None = None
    issuer_base_url: str | None = None
    # Where the realms' keys are fetched, when not at their issuers' public address.
    keys_base_url: str | None = None
    audience: str = DEFAULT_AUDIENCE
    core_url: str | None = None
    service_token: str | None = None
    # A service client instead of a fixed token: tokens are fetched and renewed as needed.
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    verifier: TokenVerifier | None = None
    # Checked on every request (ADR 0115). None: read through the plugin's own database login
    # (plugin_api.revocations, woken by NOTIFY); a plugin mounted in the core gets the core's.
    revocations: RevocationCheck | None = None
    pool_size: int = 5
    # Periodic jobs run in the plugin's own process (from_env turns them on); a plugin mounted
    # or tested elsewhere runs them only when asked.
    run_jobs: bool = False
    job_interval: float | None = None
    # The database URL looked up when the plugin starts, from its id, instead of
    # ``database_url``: the embedded platform gives each in-process plugin its own login so.
    database_login: Callable[[str], Coroutine[Any, Any, str]] | None = None

    @classmethod
    def from_env(cls) -> PluginConfig:
        """The ``PLEXICA_PLUGIN_*`` variables. The database is the plugin's own login
        (``PLEXICA_PLUGIN_DATABASE_URL``, ADR 0076), else ``PLEXICA_DATABASE_URL``."""
        env = os.environ
        issuers, keys = _issuers_from(env)
        return cls(
            database_url=env.get(ENV + "PLUGIN_DATABASE_URL")
            or env.get(ENV + "DATABASE_URL")
            or None,
            issuer_base_url=issuers,
            keys_base_url=keys,
            audience=env.get(ENV + "PLUGIN_AUDIENCE") or DEFAULT_AUDIENCE,
            core_url=env.get(ENV + "PLUGIN_CORE_URL") or None,
            service_token=env.get(ENV + "PLUGIN_SERVICE_TOKEN") or None,
            run_jobs=env.get(ENV + "PLUGIN_JOBS", "on").lower() not in ("0", "false", "off"),
            job_interval=float(env[ENV + "PLUGIN_JOB_INTERVAL_SECONDS"])
            if env.get(ENV + "PLUGIN_JOB_INTERVAL_SECONDS")
            else None,
            token_url=env.get(ENV + "PLUGIN_TOKEN_URL") or None,
            client_id=env.get(ENV + "PLUGIN_CLIENT_ID") or None,
            client_secret=env.get(ENV + "PLUGIN_CLIENT_SECRET") or None,
        )


def _issuers_from(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The realms a plugin trusts and where their keys are, from the platform's own variables
    unless ``PLEXICA_PLUGIN_ISSUER_BASE_URL`` (and ``..._JWKS_BASE_URL``) say otherwise
    (ADR 0244): Keycloak's public address names the issuers; the core serves the keys (ADR
    0252; without a core URL, Keycloak's address in the deployment); the built-in provider's
    issuers live under the public URL and the core serves their keys."""

    def realms(name: str) -> str | None:
        value = env.get(ENV + name)
        return value.rstrip("/") + "/realms" if value else None

    explicit = env.get(ENV + "PLUGIN_ISSUER_BASE_URL") or None
    keys = env.get(ENV + "PLUGIN_JWKS_BASE_URL") or None
    if explicit is not None:
        return explicit, keys
    if env.get(ENV + "KEYCLOAK_URL"):
        # The core passes Keycloak's keys on (ADR 0252): a plugin need not reach Keycloak.
        issuers = realms("KEYCLOAK_PUBLIC_URL") or realms("KEYCLOAK_URL")
        return issuers, keys or realms("PLUGIN_CORE_URL") or realms("KEYCLOAK_URL")
    return realms("PUBLIC_URL"), keys or realms("PLUGIN_CORE_URL")


@dataclass
class PluginRuntime:
    manifest: Manifest
    config: PluginConfig
    db: PluginDatabase | None = None
    verifier: TokenVerifier | None = None
    revocations: RevocationCheck | None = None
    core: CoreClient | None = None
    fragments: Fragments | None = None
    jobs: list[PeriodicJob] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def events(self) -> DeclaredEvents:
        return DeclaredEvents(self.manifest.events.emits)


@dataclass(frozen=True)
class PluginContext:
    """The verified caller of one request and the plugin's state in the caller's tenant."""

    principal: Principal
    tenant_id: UUID
    tenant_slug: str
    permissions: frozenset[str]
    installation: Installation | None
    session: AsyncSession | None
    plugin_id: str
    events: DeclaredEvents | None = None

    @property
    def user_id(self) -> str:
        return self.principal.subject

    @property
    def settings(self) -> dict[str, Any]:
        return self.installation.settings if self.installation else {}

    def has(self, permission: str) -> bool:
        return Principal(subject="", issuer="", permissions=self.permissions).has_permission(
            permission
        )

    @property
    def db(self) -> AsyncSession:
        if self.session is None:
            raise UnavailableError("this plugin has no database configured")
        return self.session

    async def publish(
        self,
        type: str,  # noqa: A002 - the CloudEvents attribute name
        data: dict[str, Any],
        *,
        subject: str | None = None,
    ) -> UUID:
        """Write ``type`` to the platform outbox in this request's transaction, once its data
        meets the schema the manifest declares for it."""
        if self.events is not None:
            self.events.check(type, data)
        return await publish(
            self.db, self.plugin_id, type, data, subject=subject, actor=self.principal.actor
        )


def runtime(request: Request) -> PluginRuntime:
    rt: PluginRuntime = request.app.state.plugin
    return rt


async def _runtime(request: Request) -> PluginRuntime:
    # async: FastAPI runs a plain ``def`` dependency in a worker thread, a hand-off per request.
    return runtime(request)


RuntimeDep = Annotated[PluginRuntime, Depends(_runtime)]


def _bearer(request: Request) -> str:
    token = bearer_of(request.headers.get("authorization"))
    if token is None or len(token) > MAX_TOKEN_BYTES:
        raise UnauthenticatedError("a bearer token is required", headers=bearer_challenge())
    return token.strip()


async def _context(request: Request, rt: RuntimeDep) -> AsyncIterator[PluginContext]:
    if rt.verifier is None:
        raise UnavailableError("authentication is not configured on this plugin")
    principal = await rt.verifier.verify(_bearer(request))
    if principal.tenant_id is None or principal.tenant_slug is None:
        raise ForbiddenError("plugin routes need a tenant member's token")
    structlog.contextvars.bind_contextvars(
        user_id=principal.subject, tenant_id=str(principal.tenant_id)
    )
    permissions = principal.permissions | rt.manifest.default_permissions(principal.roles)
    if rt.db is None:
        yield PluginContext(
            principal, principal.tenant_id, principal.tenant_slug, permissions, None, None,
            rt.manifest.id, rt.events,
        )  # fmt: skip
        return
    async with rt.db.tenant_session(principal.tenant_id, principal.tenant_slug) as (
        session,
        installation,
    ):
        yield PluginContext(
            principal, principal.tenant_id, principal.tenant_slug, permissions, installation,
            session, rt.manifest.id, rt.events,
        )  # fmt: skip


# "function" scope: the transaction commits before the response is sent, so a client that
# reads right after a write sees it.
ContextDep = Annotated[PluginContext, Depends(_context, scope="function")]


def require(permission: str) -> Callable[[PluginContext], Coroutine[Any, Any, PluginContext]]:
    """A dependency that lets through only callers granted ``permission`` in their tenant."""

    async def check(ctx: ContextDep) -> PluginContext:
        if not ctx.has(permission):
            raise ForbiddenError(f"missing permission {permission}")
        return ctx

    return check


def fragments(request: Request) -> Fragments:
    rt = runtime(request)
    if rt.fragments is None:
        raise UnavailableError("this plugin has no templates")
    return rt.fragments


async def _fragments(request: Request) -> Fragments:
    return fragments(request)


FragmentsDep = Annotated[Fragments, Depends(_fragments)]


def _start_jobs(runner: JobRunner) -> Callable[[], Coroutine[Any, Any, None]]:
    task = asyncio.create_task(runner.run(), name="plugin-jobs")

    async def stop() -> None:
        # A pass in progress finishes its tenant's transaction, up to a grace period.
        runner.stop()
        done, _ = await asyncio.wait([task], timeout=10)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return stop


def create_plugin_app(
    manifest: Manifest,
    *,
    routers: Sequence[APIRouter] = (),
    config: PluginConfig | None = None,
    templates: Path | None = None,
    lifespan: Lifespan | None = None,
    jobs: Sequence[PeriodicJob] = (),
) -> FastAPI:
    """The plugin's service: ``/health``, ``/ready`` (its database), ``/metrics``, JSON logs,
    the given routers, its periodic ``jobs`` (see ``plexica_sdk.jobs``) when the config runs
    them, and ``app.state.plugin`` (a ``PluginRuntime``)."""
    cfg = config or PluginConfig.from_env()
    rt = PluginRuntime(
        manifest, cfg, fragments=Fragments(templates) if templates else None, jobs=list(jobs)
    )

    @asynccontextmanager
    async def plugin_lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned: list[Callable[[], Coroutine[Any, Any, None]]] = []
        url = cfg.database_url
        if cfg.database_login is not None:
            url = await cfg.database_login(manifest.id)
        if url:
            rt.db = PluginDatabase(url, manifest.id, pool_size=cfg.pool_size)
            owned.append(rt.db.dispose)
            app.state.readiness.add("database", rt.db.ping)
        rt.revocations = cfg.revocations
        if rt.revocations is None and rt.db is not None:
            watcher = plugin_revocations(rt.db.engine)
            await watcher.start()
            owned.append(watcher.aclose)
            rt.revocations = watcher
        if cfg.verifier is not None:
            rt.verifier = CachingVerifier(cfg.verifier, revocations=rt.revocations)
        elif cfg.issuer_base_url:
            resolver = JwksIssuerResolver(cfg.issuer_base_url, keys_url=cfg.keys_base_url)
            owned.append(resolver.aclose)
            rt.verifier = CachingVerifier(
                JwtVerifier(resolver, cfg.audience), revocations=rt.revocations
            )
        if cfg.core_url:
            auth = None
            if cfg.token_url and cfg.client_id and cfg.client_secret:
                auth = ClientCredentials(cfg.token_url, cfg.client_id, cfg.client_secret)
            rt.core = CoreClient(cfg.core_url, cfg.service_token, auth=auth)
            owned.append(rt.core.aclose)
        if rt.db is not None and rt.jobs and cfg.run_jobs:
            owned.append(_start_jobs(JobRunner(rt.db, rt.jobs, interval=cfg.job_interval)))
        try:
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            for close in reversed(owned):
                await close()

    app = create_service_app(
        f"plugin-{manifest.id}",
        title=manifest.name,
        version=manifest.version,
        lifespan=plugin_lifespan,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.plugin = rt
    for router in routers:
        app.include_router(router)
    return app


__all__ = [
    "ContextDep",
    "FragmentsDep",
    "PluginConfig",
    "PluginContext",
    "PluginRuntime",
    "RuntimeDep",
    "create_plugin_app",
    "require",
]
